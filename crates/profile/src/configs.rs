//! The typed config of every component under a profile and explicit flags. Upstream's
//! defaults (with their sources) are the components' own `Default`s and constants; here they
//! are scaled by the profile, then the flags win. Start at [`Configs::resolve`].

use std::time::Duration;

use controllers::autoscaler::{AutoscalerConfig, ExpanderKind};
use controllers::disruption::DisruptionConfig;
use controllers::endpointslice::EndpointSliceConfig;
use controllers::leaderelection::{
    DEFAULT_LEASE_DURATION_MS, DEFAULT_RENEW_DEADLINE_MS, DEFAULT_RETRY_PERIOD_MS, ElectionConfig,
};
use controllers::nodegroups::CloudConfig;
use controllers::nodelifecycle::NodeLifecycleConfig;
use controllers::podgc::PodGcConfig;
use controllers::scheduler::SchedulerConfig;
use controllers::workloads::{
    DaemonSetConfig, DeploymentConfig, ReplicaSetConfig, StatefulSetConfig,
};
use kubelet::KubeletConfig;
use proxy::syncer::SyncerConfig;
use scenario::Profile;

use crate::flags::{AutoscalerFlags, ElectionFlags, Flags, NodeFlags, ServerFlags};

/// The kernel's `nf_conntrack_tcp_timeout_syn_sent` default, 120 s (Linux
/// Documentation/networking/nf_conntrack-sysctl.rst). A kernel setting: no profile scales it.
pub const KERNEL_SYN_SENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The API server's DefaultTolerationSeconds admission plugin settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// `--default-not-ready-toleration-seconds` (upstream 300, `api::admit::pod`).
    pub not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds` (upstream 300).
    pub unreachable_toleration_seconds: i64,
}

/// The leader election timers (component-base's `--leader-elect-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionTimers {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl ElectionTimers {
    /// The election of Lease `namespace/name` by candidate `identity` with these timers.
    pub fn config(&self, namespace: &str, name: &str, identity: &str, seed: u64) -> ElectionConfig {
        ElectionConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration_ms: self.lease_duration,
            renew_deadline_ms: self.renew_deadline,
            retry_period_ms: self.retry_period,
            seed,
        }
    }
}

/// The workload controllers' tunables (upstream constants; no profile scales them).
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    pub deployment: DeploymentConfig,
    pub replicaset: ReplicaSetConfig,
    pub statefulset: StatefulSetConfig,
    pub daemonset: DaemonSetConfig,
}

/// Settings a component refuses.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    NodeLifecycle(#[from] controllers::nodelifecycle::ConfigError),
    #[error(transparent)]
    Autoscaler(#[from] controllers::autoscaler::ConfigError),
}

/// The config of every component. Node-specific fields (the kubelet's node name and address,
/// the proxy's node and mode) keep their defaults: the driver of each node fills them in.
#[derive(Clone, Debug)]
pub struct Configs {
    pub profile: Profile,
    pub admission: Admission,
    pub node_lifecycle: NodeLifecycleConfig,
    pub endpointslice: EndpointSliceConfig,
    pub workloads: Workloads,
    pub disruption: DisruptionConfig,
    pub podgc: PodGcConfig,
    pub scheduler: SchedulerConfig,
    pub election: ElectionTimers,
    /// The load-balancer controller divides every balancer timer by this.
    pub load_balancer_time_divisor: u32,
    pub autoscaler: AutoscalerConfig,
    /// The node groups' cloud.
    pub cloud: CloudConfig,
    pub kubelet: KubeletConfig,
    pub proxy: SyncerConfig,
    /// Every node's `nf_conntrack_tcp_timeout_syn_sent`; `None` leaves the kernel's
    /// ([`KERNEL_SYN_SENT_TIMEOUT`]).
    pub conntrack_tcp_timeout_syn_sent: Option<Duration>,
}

impl Configs {
    /// Upstream's defaults scaled by `profile`, overridden by `flags`; checked as each
    /// component checks its settings.
    pub fn resolve(profile: Profile, flags: &Flags) -> Result<Configs, ConfigError> {
        let node_lifecycle = node_lifecycle(profile, &flags.server);
        node_lifecycle.validate()?;
        Ok(Configs {
            profile,
            admission: admission(profile, &flags.server),
            node_lifecycle,
            endpointslice: endpointslice(&flags.server),
            // The profile leaves these at upstream's values, as the live lab always has.
            workloads: Workloads::default(),
            disruption: DisruptionConfig::default(),
            podgc: PodGcConfig::default(),
            scheduler: SchedulerConfig::default(),
            election: election(profile, &flags.election),
            load_balancer_time_divisor: profile.divisor(),
            autoscaler: autoscaler(profile, &flags.autoscaler)?,
            cloud: cloud(profile),
            kubelet: kubelet(profile, &flags.node),
            proxy: proxy(profile, &flags.node),
            conntrack_tcp_timeout_syn_sent: flags.node.conntrack_tcp_timeout_syn_sent,
        })
    }

    /// The timers a run's report shows.
    pub fn report_timers(&self) -> lab::report::Timers {
        let syn_sent = self
            .conntrack_tcp_timeout_syn_sent
            .unwrap_or(KERNEL_SYN_SENT_TIMEOUT);
        lab::report::Timers {
            node_monitor_grace_period_s: self
                .node_lifecycle
                .node_monitor_grace_period
                .as_secs_f64(),
            node_monitor_period_s: self.node_lifecycle.node_monitor_period.as_secs_f64(),
            lease_renew_interval_s: self.kubelet.lease_renew_interval().as_millis() as f64 / 1000.0,
            unreachable_toleration_s: self.admission.unreachable_toleration_seconds as f64,
            // The sysctl takes whole seconds, at least 1.
            conntrack_tcp_timeout_syn_sent_s: syn_sent.as_secs().max(1) as f64,
        }
    }
}

/// DefaultTolerationSeconds: 300 s each, scaled.
pub fn admission(profile: Profile, f: &ServerFlags) -> Admission {
    let upstream = api::admit::pod::DEFAULT_TOLERATION_S;
    Admission {
        not_ready_toleration_seconds: f
            .default_not_ready_toleration_seconds
            .unwrap_or(profile.seconds(upstream)),
        unreachable_toleration_seconds: f
            .default_unreachable_toleration_seconds
            .unwrap_or(profile.seconds(upstream)),
    }
}

/// The node lifecycle controller: its timers divided, its eviction rates multiplied by the
/// profile's divisor; the zone thresholds are counts and shares, not scaled.
pub fn node_lifecycle(profile: Profile, f: &ServerFlags) -> NodeLifecycleConfig {
    let up = NodeLifecycleConfig::default();
    NodeLifecycleConfig {
        node_monitor_period: f
            .node_monitor_period
            .unwrap_or(profile.duration(up.node_monitor_period)),
        node_monitor_grace_period: f
            .node_monitor_grace_period
            .unwrap_or(profile.duration(up.node_monitor_grace_period)),
        node_startup_grace_period: f
            .node_startup_grace_period
            .unwrap_or(profile.duration(up.node_startup_grace_period)),
        node_eviction_rate: f
            .node_eviction_rate
            .unwrap_or(profile.rate(up.node_eviction_rate)),
        secondary_node_eviction_rate: f
            .secondary_node_eviction_rate
            .unwrap_or(profile.rate(up.secondary_node_eviction_rate)),
        unhealthy_zone_threshold: f
            .unhealthy_zone_threshold
            .unwrap_or(up.unhealthy_zone_threshold),
        large_cluster_size_threshold: f
            .large_cluster_size_threshold
            .unwrap_or(up.large_cluster_size_threshold),
    }
}

/// The EndpointSlice controller (no timer the profile scales, as before).
pub fn endpointslice(f: &ServerFlags) -> EndpointSliceConfig {
    let up = EndpointSliceConfig::default();
    EndpointSliceConfig {
        max_endpoints_per_slice: f
            .max_endpoints_per_slice
            .unwrap_or(up.max_endpoints_per_slice),
        ..up
    }
}

/// Leader election: 15 s / 10 s / 2 s (`controllers::leaderelection`), scaled.
pub fn election(profile: Profile, f: &ElectionFlags) -> ElectionTimers {
    ElectionTimers {
        lease_duration: f
            .leader_elect_lease_duration
            .unwrap_or(profile.duration(DEFAULT_LEASE_DURATION_MS)),
        renew_deadline: f
            .leader_elect_renew_deadline
            .unwrap_or(profile.duration(DEFAULT_RENEW_DEADLINE_MS)),
        retry_period: f
            .leader_elect_retry_period
            .unwrap_or(profile.duration(DEFAULT_RETRY_PERIOD_MS)),
    }
}

/// The cluster autoscaler: every timer scaled, then the flags; checked as upstream checks them
/// (an unknown `--expander` gets upstream's `Expander X not supported`).
pub fn autoscaler(
    profile: Profile,
    f: &AutoscalerFlags,
) -> Result<AutoscalerConfig, controllers::autoscaler::ConfigError> {
    let mut c = AutoscalerConfig::default().scaled(profile.divisor());
    if let Some(e) = &f.expander {
        c.expander = ExpanderKind::parse(e)?;
    }
    let set = |slot: &mut Duration, v: Option<Duration>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut c.scan_interval, f.scan_interval);
    set(&mut c.max_node_provision_time, f.max_node_provision_time);
    set(&mut c.max_node_startup_time, f.max_node_startup_time);
    set(&mut c.scale_down_unneeded_time, f.scale_down_unneeded_time);
    set(&mut c.scale_down_unready_time, f.scale_down_unready_time);
    if let Some(v) = f.balance_similar_node_groups {
        c.balance_similar_node_groups = v;
    }
    if let Some(v) = f.max_total_unready_percentage {
        c.max_total_unready_percentage = v;
    }
    if let Some(v) = f.ok_total_unready_count {
        c.ok_total_unready_count = v;
    }
    if let Some(v) = f.scale_down_enabled {
        c.scale_down_enabled = v;
    }
    c.validate()?;
    Ok(c)
}

/// The node groups' cloud: its launch-failure timeout scaled.
pub fn cloud(profile: Profile) -> CloudConfig {
    CloudConfig::default().scaled(profile.divisor())
}

/// The kubelet's timers (lease, status, restart backoff) under the profile, then
/// `--node-lease-duration-seconds`.
pub fn kubelet(profile: Profile, f: &NodeFlags) -> KubeletConfig {
    let mut cfg = KubeletConfig::default();
    if profile == Profile::Fast {
        cfg = cfg.fast();
    }
    if let Some(d) = f.node_lease_duration_seconds {
        cfg.node_lease_duration_seconds = d;
    }
    cfg
}

/// kube-proxy's sync pacing: `--min-sync-period` 1 s and `--sync-period` 30 s
/// (`proxy::syncer`), scaled.
pub fn proxy(profile: Profile, f: &NodeFlags) -> SyncerConfig {
    let up = SyncerConfig::default();
    SyncerConfig {
        min_sync_period_ms: f
            .min_sync_period
            .unwrap_or(profile.duration(up.min_sync_period_ms)),
        sync_period_ms: f.sync_period.unwrap_or(profile.duration(up.sync_period_ms)),
        ..up
    }
}
