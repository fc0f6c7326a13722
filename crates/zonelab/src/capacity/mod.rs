//! Node groups and the cluster autoscaler running live in the lab: the scenario's `nodeGroups`
//! become the lab's cloud ([`cloud::CloudHost`], which builds a netns node for every instance
//! that boots), and the autoscaler ([`driver::run`]) scans the cluster through its own
//! informers and API client and calls that cloud — upstream's cluster-autoscaler is likewise
//! its own component, talking to the API server and to the cloud's API. The flags are
//! upstream's ([`AutoscalerFlags`]).
//!
//! Start at [`start`].

pub mod cloud;
pub mod driver;

use std::time::Duration;

use clap::Args;
use controllers::autoscaler::{AutoscalerConfig, ConfigError, ExpanderKind};
use controllers::nodegroups::{Cloud, CloudConfig, NodeGroupSpec};
use scenario::Scenario;

use crate::flags::{Profile, parse_duration};
pub use cloud::{CloudHost, LabTarget, Recorder};

/// The cluster autoscaler's flags (upstream names; durations default to upstream's divided by
/// the profile's divisor). In a scenario they go under `flags:` like the other roles' flags.
#[derive(Args, Debug, Clone, Default)]
pub struct AutoscalerFlags {
    /// Time between scans [upstream 10s; fast 1s].
    #[arg(long, value_parser = parse_duration)]
    pub scan_interval: Option<Duration>,
    /// `random`, `least-waste` or `priority` [random].
    #[arg(long)]
    pub expander: Option<String>,
    /// Split a scale-up over similar node groups [false].
    #[arg(long)]
    pub balance_similar_node_groups: Option<bool>,
    /// A scale-up whose nodes have not registered by then failed [upstream 15m; fast 1m30s].
    #[arg(long, value_parser = parse_duration)]
    pub max_node_provision_time: Option<Duration>,
    /// With --ok-total-unready-count: halt when more nodes are unready [45].
    #[arg(long)]
    pub max_total_unready_percentage: Option<f64>,
    /// [3].
    #[arg(long)]
    pub ok_total_unready_count: Option<usize>,
    /// Remove unneeded nodes [true].
    #[arg(long)]
    pub scale_down_enabled: Option<bool>,
    /// A node unneeded this long is removed [upstream 10m; fast 1m].
    #[arg(long, value_parser = parse_duration)]
    pub scale_down_unneeded_time: Option<Duration>,
    /// An unready node unneeded this long is removed [upstream 20m; fast 2m].
    #[arg(long, value_parser = parse_duration)]
    pub scale_down_unready_time: Option<Duration>,
}

impl AutoscalerFlags {
    /// The settings under `profile` with these flags applied.
    pub fn config(&self, profile: Profile, seed: u64) -> Result<AutoscalerConfig, ConfigError> {
        let mut c = AutoscalerConfig::default().scaled(profile.divisor());
        c.seed = seed;
        if let Some(e) = &self.expander {
            c.expander = ExpanderKind::parse(e)?;
        }
        let set = |slot: &mut Duration, v: Option<Duration>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut c.scan_interval, self.scan_interval);
        set(&mut c.max_node_provision_time, self.max_node_provision_time);
        set(
            &mut c.scale_down_unneeded_time,
            self.scale_down_unneeded_time,
        );
        set(&mut c.scale_down_unready_time, self.scale_down_unready_time);
        if let Some(v) = self.balance_similar_node_groups {
            c.balance_similar_node_groups = v;
        }
        if let Some(v) = self.max_total_unready_percentage {
            c.max_total_unready_percentage = v;
        }
        if let Some(v) = self.ok_total_unready_count {
            c.ok_total_unready_count = v;
        }
        if let Some(v) = self.scale_down_enabled {
            c.scale_down_enabled = v;
        }
        c.validate()?;
        Ok(c)
    }

    /// The flags of a scenario's `flags:` map that are the autoscaler's.
    pub fn from_scenario(s: &Scenario) -> anyhow::Result<AutoscalerFlags> {
        use clap::FromArgMatches;
        let ours = names();
        let mut argv = vec!["cluster-autoscaler".to_string()];
        for (name, value) in &s.flags {
            let bare = name.trim_start_matches('-');
            if ours.iter().any(|f| f == bare) {
                argv.push(format!("--{bare}={value}"));
            }
        }
        let cmd = AutoscalerFlags::augment_args(clap::Command::new("cluster-autoscaler"));
        let m = cmd.try_get_matches_from(argv)?;
        Ok(AutoscalerFlags::from_arg_matches(&m)?)
    }
}

/// Check one autoscaler flag of a scenario (`name` without dashes): its value must parse and
/// be accepted (e.g. `expander: most-pods` gives upstream's `Expander most-pods not supported`).
pub fn check_flag(name: &str, value: &str) -> Result<(), String> {
    use clap::FromArgMatches;
    let cmd = AutoscalerFlags::augment_args(clap::Command::new("cluster-autoscaler"));
    let m = cmd
        .try_get_matches_from([
            "cluster-autoscaler".to_string(),
            format!("--{name}={value}"),
        ])
        .map_err(|e| e.kind().to_string() + &format!(": --{name}={value}"))?;
    let flags = AutoscalerFlags::from_arg_matches(&m).map_err(|e| e.to_string())?;
    flags
        .config(Profile::Fast, 0)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The long names of the autoscaler's flags.
pub fn names() -> Vec<String> {
    AutoscalerFlags::augment_args(clap::Command::new("cluster-autoscaler"))
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

/// The node groups of `s` as the lab's cloud: instances named like the lab's nodes
/// (`<prefix>-<zone>-<n>`), a zone's first instances being the nodes the lab starts with;
/// templates are the Node a kubelet with the scenario's node capacity registers.
pub fn cloud_of(s: &Scenario, prefix: &str, profile: Profile) -> Cloud {
    let pr = match profile {
        Profile::Fast => scenario::Profile::Fast,
        Profile::Upstream => scenario::Profile::Upstream,
    };
    let flag = |name: &str, default: &str| {
        s.flags
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let cap = &s.topology.node_capacity;
    let (cpu, memory) = (
        flag("node-capacity-cpu", &cap.cpu),
        flag("node-capacity-memory", &cap.memory),
    );
    let max_pods = flag("max-pods", &cap.pods.to_string())
        .parse()
        .unwrap_or(cap.pods);
    let specs = s
        .node_groups
        .iter()
        .map(|g| {
            let kubelet = kubelet::KubeletConfig {
                node_name: format!("template-{}", g.name),
                zone: g.zone.clone(),
                capacity_cpu: cpu.clone(),
                capacity_memory: memory.clone(),
                max_pods,
                ..kubelet::KubeletConfig::default()
            };
            NodeGroupSpec {
                name: g.name.clone(),
                zone: g.zone.clone(),
                min: g.min as usize,
                max: g.max as usize,
                desired: g.desired as usize,
                boot_delay: g.boot_delay(pr),
                template: kubelet::core::initial_node(&kubelet, false, 0),
            }
        })
        .collect();
    let config = CloudConfig {
        zone_node_prefix: Some(prefix.to_string()),
        ..CloudConfig::default()
    }
    .scaled(profile.divisor());
    Cloud::new(specs, config)
}

/// The cloud and the autoscaler of a run; dropping it stops both.
pub struct Capacity {
    pub cloud: CloudHost,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Capacity {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Start the scenario's node groups as the lab's cloud and the autoscaler against `api`.
pub fn start(
    s: &Scenario,
    lab: LabTarget,
    api: std::net::SocketAddr,
    profile: Profile,
    seed: u64,
    record: Recorder,
) -> anyhow::Result<Capacity> {
    let config = AutoscalerFlags::from_scenario(s)?.config(profile, seed)?;
    let cloud = cloud_of(s, &lab.prefix, profile);
    let client = crate::lab::kube_client(api)?;
    let (host, ticker) = CloudHost::start(cloud, lab, client, record);
    let ca_client = crate::lab::kube_client(api)?;
    let driver = tokio::spawn(driver::run(ca_client, config, host.clone()));
    Ok(Capacity {
        cloud: host,
        tasks: vec![ticker, driver],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_upstream_names_and_the_profile_divides_the_defaults() {
        let f = AutoscalerFlags {
            scan_interval: Some(Duration::from_secs(2)),
            expander: Some("least-waste".into()),
            balance_similar_node_groups: Some(true),
            ..AutoscalerFlags::default()
        };
        let c = f.config(Profile::Fast, 7).expect("valid");
        assert_eq!(c.scan_interval, Duration::from_secs(2));
        assert_eq!(c.expander, ExpanderKind::LeastWaste);
        assert!(c.balance_similar_node_groups);
        // Not given: upstream's default under the profile.
        assert_eq!(c.max_node_provision_time, Duration::from_secs(90));
        assert_eq!(c.scale_down_unneeded_time, Duration::from_secs(60));
        assert_eq!(c.seed, 7);
    }

    #[test]
    fn bad_values_are_refused_with_upstreams_words() {
        assert_eq!(
            check_flag("expander", "most-pods").unwrap_err(),
            "Expander most-pods not supported"
        );
        assert!(check_flag("max-total-unready-percentage", "140").is_err());
        assert!(check_flag("scan-interval", "soon").is_err());
        assert!(check_flag("scale-down-enabled", "false").is_ok());
    }
}
