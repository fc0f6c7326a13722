//! The flags that feed the typed configs, with upstream's names, as clap argument groups that
//! each role flattens into its command line; [`Flags`] is all of them (what a scenario's
//! `flags:` may set). Unset means upstream's default under the profile. Start at [`Flags`].

use std::time::Duration;

use clap::{Args, FromArgMatches};
use scenario::parse_duration;

/// kube-apiserver's DefaultTolerationSeconds flags and kube-controller-manager's node lifecycle
/// and EndpointSlice flags (`zonelab server`).
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct ServerFlags {
    /// DefaultTolerationSeconds admission for not-ready nodes [upstream 300; fast 30].
    #[arg(long)]
    pub default_not_ready_toleration_seconds: Option<i64>,
    /// DefaultTolerationSeconds admission for unreachable nodes [upstream 300; fast 30].
    #[arg(long)]
    pub default_unreachable_toleration_seconds: Option<i64>,
    /// How often the node lifecycle controller checks nodes [upstream 5s; fast 500ms].
    #[arg(long, value_parser = parse_duration)]
    pub node_monitor_period: Option<Duration>,
    /// How long a node may be silent before it is marked Unknown [upstream 50s; fast 5s].
    #[arg(long, value_parser = parse_duration)]
    pub node_monitor_grace_period: Option<Duration>,
    /// Grace for a node that never became Ready [upstream 1m; fast 6s].
    #[arg(long, value_parser = parse_duration)]
    pub node_startup_grace_period: Option<Duration>,
    /// Nodes per second whose pods are evicted in a healthy zone [upstream 0.1; fast 1].
    #[arg(long)]
    pub node_eviction_rate: Option<f32>,
    /// The same in an unhealthy zone of a large cluster [upstream 0.01; fast 0.1].
    #[arg(long)]
    pub secondary_node_eviction_rate: Option<f32>,
    /// Share of not-ready nodes that makes a zone unhealthy [upstream 0.55].
    #[arg(long)]
    pub unhealthy_zone_threshold: Option<f32>,
    /// Zones with at most this many nodes stop evictions when partially disrupted [upstream 50].
    #[arg(long)]
    pub large_cluster_size_threshold: Option<u32>,
    /// Endpoints per EndpointSlice [upstream 100].
    #[arg(long)]
    pub max_endpoints_per_slice: Option<usize>,
}

/// kube-controller-manager's (and kube-scheduler's) leader election timers.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct ElectionFlags {
    /// How long a candidate waits after the last observed renew before taking over [upstream
    /// 15s; fast 1.5s: the Lease says 1 (whole seconds, truncated), candidates wait 1.5s].
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_lease_duration: Option<Duration>,
    /// How long the leader keeps trying to renew before giving up [upstream 10s; fast 1s].
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Option<Duration>,
    /// How often candidates try to acquire and the leader renews [upstream 2s; fast 200ms].
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_retry_period: Option<Duration>,
}

/// The node's timers: the kubelet's lease, kube-proxy's sync pacing, and the kernel's conntrack
/// `SYN_SENT` timeout (`zonelab agent`).
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFlags {
    /// Minimum time between proxy syncs [upstream 1s; fast 100ms].
    #[arg(long, value_parser = parse_duration)]
    pub min_sync_period: Option<Duration>,
    /// Retry interval after a failed proxy sync (the current runner has no periodic sync at
    /// this period; it syncs on changes and every hour) [upstream 30s; fast 3s].
    #[arg(long, value_parser = parse_duration)]
    pub sync_period: Option<Duration>,
    /// Lease duration; the lease is renewed every quarter of it [upstream 40; fast 4].
    #[arg(long)]
    pub node_lease_duration_seconds: Option<i32>,
    /// Sets this node's `net.netfilter.nf_conntrack_tcp_timeout_syn_sent` (kernel default
    /// 120s): how long an unanswered connection's conntrack entry, and its DNAT to the endpoint
    /// it picked, outlives the endpoint for a client that reuses the source port. A lab knob,
    /// like kube-proxy's `--conntrack-tcp-timeout-*` flags; not scaled by the profile.
    #[arg(long, value_parser = parse_duration)]
    pub conntrack_tcp_timeout_syn_sent: Option<Duration>,
}

/// The cluster autoscaler's flags (upstream names; durations default to upstream's divided by
/// the profile's divisor).
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct AutoscalerFlags {
    /// Time between scans [upstream 10s; fast 1s].
    #[arg(long, value_parser = parse_duration)]
    pub scan_interval: Option<Duration>,
    /// `random`, `least-waste` or `priority` [random].
    #[arg(long)]
    pub expander: Option<String>,
    /// Split a scale-up over similar node groups [false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub balance_similar_node_groups: Option<bool>,
    /// A scale-up whose nodes have not registered by then failed [upstream 15m; fast 1m30s].
    #[arg(long, value_parser = parse_duration)]
    pub max_node_provision_time: Option<Duration>,
    /// A registered node not Ready for this long is unready, not still starting [upstream 15m;
    /// fast 1m30s].
    #[arg(long, value_parser = parse_duration)]
    pub max_node_startup_time: Option<Duration>,
    /// With --ok-total-unready-count: halt when more nodes are unready [45].
    #[arg(long)]
    pub max_total_unready_percentage: Option<f64>,
    /// [3].
    #[arg(long)]
    pub ok_total_unready_count: Option<usize>,
    /// Remove unneeded nodes [true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub scale_down_enabled: Option<bool>,
    /// A node unneeded this long is removed [upstream 10m; fast 1m].
    #[arg(long, value_parser = parse_duration)]
    pub scale_down_unneeded_time: Option<Duration>,
    /// An unready node unneeded this long is removed [upstream 20m; fast 2m].
    #[arg(long, value_parser = parse_duration)]
    pub scale_down_unready_time: Option<Duration>,
}

impl AutoscalerFlags {
    /// The long names of the autoscaler's flags.
    pub fn names() -> Vec<String> {
        longs(AutoscalerFlags::augment_args(clap::Command::new(
            "cluster-autoscaler",
        )))
    }
}

/// Every flag that feeds a config, of every role.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct Flags {
    #[command(flatten)]
    pub server: ServerFlags,
    #[command(flatten)]
    pub election: ElectionFlags,
    #[command(flatten)]
    pub node: NodeFlags,
    #[command(flatten)]
    pub autoscaler: AutoscalerFlags,
}

/// A flag that could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// No config takes a flag of this name.
    #[error("unknown flag --{0}")]
    Unknown(String),
    /// The value does not parse, or the component refuses it (upstream's words where it has
    /// them).
    #[error("{0}")]
    Invalid(String),
}

fn longs(cmd: clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

impl Flags {
    fn command() -> clap::Command {
        Flags::augment_args(clap::Command::new("flags").no_binary_name(true))
    }

    /// The long names of every flag here.
    pub fn names() -> Vec<String> {
        longs(Flags::command())
    }

    /// Whether `name` (without dashes) is one of these flags.
    pub fn knows(name: &str) -> bool {
        Flags::command()
            .get_arguments()
            .any(|a| a.get_long() == Some(name))
    }

    /// Set flag `name` (leading dashes optional) to `value`, parsed as on a command line
    /// (`--name=value`); a component's refusal of the value shows when the configs are
    /// resolved.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), FlagError> {
        let bare = name.trim_start_matches('-');
        if !Flags::knows(bare) {
            return Err(FlagError::Unknown(bare.to_string()));
        }
        let m = Flags::command()
            .try_get_matches_from([format!("--{bare}={value}")])
            .map_err(|e| FlagError::Invalid(clap_message(&e)))?;
        self.update_from_arg_matches(&m)
            .map_err(|e| FlagError::Invalid(clap_message(&e)))
    }

    /// Flags from `--name=value` pairs (as a scenario's `flags:` map holds them).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Flags, FlagError> {
        let mut f = Flags::default();
        for (name, value) in pairs {
            f.set(name, value)?;
        }
        Ok(f)
    }
}

/// The first line of a clap error without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}
