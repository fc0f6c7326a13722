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
pub mod http;
pub mod status_watch;

use runtime::Moment;
use std::sync::Arc;

use controllers::autoscaler::{AutoscalerConfig, ConfigError};
use controllers::nodegroups::{Cloud, CloudConfig, NodeGroupSpec};
use scenario::Scenario;

use crate::flags::Profile;
pub use cloud::{CloudHost, LabTarget, Recorder};

/// The cluster autoscaler's flags (upstream names), crate `profile`'s like every config flag. In
/// a scenario they go under `flags:` like the other roles' flags.
pub use profile::AutoscalerFlags;

/// The autoscaler's settings: upstream's under `profile`, `flags` winning (crate `profile`),
/// with the run's `seed` for the random expander.
pub fn config(
    flags: &AutoscalerFlags,
    profile: Profile,
    seed: u64,
) -> Result<AutoscalerConfig, ConfigError> {
    let mut c = profile::autoscaler(profile, flags)?;
    c.seed = seed;
    Ok(c)
}

/// `zonelab autoscaler`: the cluster autoscaler as its own process (upstream runs it as its own
/// Deployment), against an API server and the lab's cloud API.
#[derive(clap::Args, Debug)]
pub struct AutoscalerArgs {
    /// API server URL; overrides the kubeconfig's server.
    #[arg(long)]
    pub server: Option<String>,
    /// The autoscaler's kubeconfig (cluster-autoscaler `--kubeconfig`): the API server's CA
    /// and a client certificate. The lab passes its admin kubeconfig (docs/lab.md).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The cloud's API: `http://HOST:PORT` of the lab's node-group endpoint (`zonelab run`
    /// serves it on loopback for scenarios with `nodeGroups`).
    #[arg(long)]
    pub cloud_provider_url: String,
    #[arg(long, value_enum, default_value_t = Profile::Upstream)]
    pub profile: Profile,
    /// Seed of the random expander.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub flags: AutoscalerFlags,
}

/// Run `zonelab autoscaler` until the process is stopped.
pub async fn run_role(args: AutoscalerArgs) -> anyhow::Result<()> {
    let config = config(&args.flags, args.profile, args.seed)?;
    let cloud = http::HttpCloud::parse(&args.cloud_provider_url)?;
    let idle = args
        .profile
        .duration(crate::client::UPSTREAM_READ_IDLE_TIMEOUT);
    let kc = crate::kubeconfig::role_config(
        args.kubeconfig.as_deref(),
        args.server.as_deref(),
        idle,
        "autoscaler",
    )?;
    let client = crate::client::client(kc, idle)?;
    driver::run(client, config, cloud).await;
    Ok(())
}

/// The long names of the autoscaler's flags.
pub fn names() -> Vec<String> {
    AutoscalerFlags::names()
}

/// The node groups of `s` as the lab's cloud: instances named like the lab's nodes
/// (`<prefix>-<zone>-<n>`), a zone's first instances being the nodes the lab starts with;
/// templates are the Node a kubelet with the scenario's node capacity registers.
pub fn cloud_of(s: &Scenario, prefix: &str, profile: Profile) -> Cloud {
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
                node_labels: vec![(cloud::NODEGROUP_LABEL.to_string(), g.name.clone())],
                ..kubelet::KubeletConfig::default()
            };
            NodeGroupSpec {
                name: g.name.clone(),
                zone: g.zone.clone(),
                min: g.min as usize,
                max: g.max as usize,
                desired: g.desired as usize,
                boot_delay: g.boot_delay(profile),
                template: kubelet::core::initial_node(&kubelet, false, Moment::EPOCH),
            }
        })
        .collect();
    let config = CloudConfig {
        zone_node_prefix: Some(prefix.to_string()),
        ..profile::cloud(profile)
    };
    Cloud::new(specs, config)
}

/// The cloud and the autoscaler of a run; dropping it stops both.
pub struct Capacity {
    pub cloud: CloudHost,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    lab: LabTarget,
}

impl Drop for Capacity {
    fn drop(&mut self) {
        crate::lab::group_nodes::stop_autoscaler(&self.lab.state_dir, &self.lab.prefix);
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Start the scenario's node groups as the lab's cloud (with its HTTP API on loopback) and a
/// `zonelab autoscaler` process against the lab's API server (its admin kubeconfig) and that cloud; the
/// autoscaler's halts are read back from its status ConfigMap.
pub async fn start(
    s: &Scenario,
    lab: LabTarget,
    profile: Profile,
    seed: u64,
    record: Recorder,
) -> anyhow::Result<Capacity> {
    let cloud = cloud_of(s, &lab.prefix, profile);
    let kubeconfig = crate::lab::kubeconfig_path(&lab.state_dir, &lab.prefix);
    let client = crate::lab::kube_client(&kubeconfig)?;
    let (host, ticker) = CloudHost::start(cloud, lab.clone(), client, Arc::clone(&record));
    let (addr, server) = http::serve(host.clone(), ([127, 0, 0, 1], 0).into()).await?;
    let mut argv = vec![
        "autoscaler".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--cloud-provider-url=http://{addr}"),
        format!("--profile={profile}"),
        format!("--seed={seed}"),
    ];
    let ours = names();
    for (name, value) in &s.flags {
        let bare = name.trim_start_matches('-');
        if ours.iter().any(|f| f == bare) {
            argv.push(format!("--{bare}={value}"));
        }
    }
    let mut capacity = Capacity {
        cloud: host,
        tasks: vec![ticker, server],
        lab: lab.clone(),
    };
    crate::lab::group_nodes::start_autoscaler(&lab.state_dir, &lab.prefix, &argv)?;
    let watch_client = crate::lab::kube_client(&kubeconfig)?;
    capacity
        .tasks
        .push(tokio::spawn(status_watch::run(watch_client, record)));
    Ok(capacity)
}
#[cfg(test)]
mod tests {
    use super::*;
    use clap::Args;
    use controllers::autoscaler::ExpanderKind;
    use std::time::Duration;

    #[test]
    fn flags_take_upstream_names_and_the_profile_divides_the_defaults() {
        let f = AutoscalerFlags {
            scan_interval: Some(Duration::from_secs(2)),
            expander: Some("least-waste".into()),
            balance_similar_node_groups: Some(true),
            ..AutoscalerFlags::default()
        };
        let c = config(&f, Profile::Fast, 7).expect("valid");
        assert_eq!(c.scan_interval, Duration::from_secs(2));
        assert_eq!(c.expander, ExpanderKind::LeastWaste);
        assert!(c.balance_similar_node_groups);
        // Not given: upstream's default under the profile.
        assert_eq!(c.max_node_provision_time, Duration::from_secs(90));
        assert_eq!(c.scale_down_unneeded_time, Duration::from_secs(60));
        assert_eq!(c.seed, 7);
    }

    #[test]
    fn the_role_takes_go_style_bare_booleans() {
        use clap::FromArgMatches;
        let cmd = AutoscalerArgs::augment_args(clap::Command::new("autoscaler"));
        let m = cmd
            .try_get_matches_from([
                "autoscaler",
                "--server=http://127.0.0.1:6443",
                "--cloud-provider-url=http://127.0.0.1:7000",
                "--balance-similar-node-groups",
                "--scale-down-enabled=false",
                "--expander=priority",
            ])
            .expect("valid flags");
        let a = AutoscalerArgs::from_arg_matches(&m).expect("args");
        let c = config(&a.flags, a.profile, a.seed).expect("config");
        assert!(c.balance_similar_node_groups);
        assert!(!c.scale_down_enabled);
        assert_eq!(c.expander, ExpanderKind::Priority);
        assert_eq!(
            c.scan_interval,
            Duration::from_secs(10),
            "upstream profile by default"
        );
    }
}
