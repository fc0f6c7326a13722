//! The simulated cluster's configuration: the scenario's profile and flag overrides turned
//! into the typed configs of the controllers, kubelets and kube-proxies, with the same
//! upstream defaults and `fast` scaling as `zonelab server`/`zonelab agent`.
//!
//! Start at [`SimConfig::from_scenario`]. This is the one place to swap for the shared
//! "profile + flags -> typed configs" function once it exists (today `zonelab`'s server.rs
//! and agent.rs build the live ones).

use std::time::Duration;

use controllers::Controller;
use controllers::endpointslice::{EndpointSliceConfig, EndpointSliceController};
use controllers::nodelifecycle::{
    NodeLifecycleConfig, NodeLifecycleController, TaintEvictionController,
};
use kubelet::core::KubeletConfig;
use proxy::syncer::{ProxyMode, SyncerConfig};
use scenario::Scenario;

use crate::SimError;

/// The kernel's `nf_conntrack_tcp_timeout_syn_sent` default, 120 s (Linux
/// `net/netfilter/nf_conntrack_proto_tcp.c`).
pub const DEFAULT_SYN_SENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything the simulated components are configured with.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// `upstream` or `fast`.
    pub profile: &'static str,
    /// Every timer is divided by this (10 for `fast`).
    pub divisor: u32,
    pub node_lifecycle: NodeLifecycleConfig,
    pub max_endpoints_per_slice: usize,
    pub not_ready_toleration_seconds: i64,
    pub unreachable_toleration_seconds: i64,
    /// The kubelet config every node starts from (name, zone, addresses filled per node).
    pub kubelet: KubeletConfig,
    /// The kube-proxy config every node starts from (`plan.node_name` filled per node).
    pub syncer: SyncerConfig,
    pub syn_sent_timeout: Duration,
    /// Seed of the scheduler's tie-break RNG.
    pub scheduler_seed: u64,
}

fn flag<'a>(s: &'a Scenario, name: &str) -> Option<&'a str> {
    s.flags
        .iter()
        .find(|(k, _)| k.trim_start_matches('-') == name)
        .map(|(_, v)| v.as_str())
}

fn bad(name: &str, value: &str, expected: &str) -> SimError {
    SimError::Flag(format!(
        "flag {name}: invalid value {value:?}: expected {expected}"
    ))
}

fn duration_flag(s: &Scenario, name: &str, default: Duration) -> Result<Duration, SimError> {
    match flag(s, name) {
        None => Ok(default),
        Some(v) => scenario::parse_duration(v).map_err(|_| bad(name, v, "a duration like 5s")),
    }
}

fn number_flag<T: std::str::FromStr>(s: &Scenario, name: &str, default: T) -> Result<T, SimError> {
    match flag(s, name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| bad(name, v, "a number")),
    }
}

impl SimConfig {
    /// Upstream defaults, scaled by the scenario's profile, overridden by its flags.
    pub fn from_scenario(s: &Scenario, seed: u64) -> Result<SimConfig, SimError> {
        // The scenario's own check (with file:line:column) ran in `parse_for(.., Sim)`; this
        // one keeps a hand-built scenario from slipping a live-only flag past the simulator.
        let modelled = scenario::sim::SIM_FLAGS;
        let bare = |f: &String| f.trim_start_matches('-').to_string();
        if let Some(f) = s
            .flags
            .keys()
            .map(bare)
            .find(|f| !modelled.contains(&f.as_str()))
        {
            return Err(SimError::Flag(format!(
                "flag {f} is not modelled by the simulator (modelled: {})",
                modelled.join(", ")
            )));
        }
        let (profile, divisor) = match s.profile {
            scenario::Profile::Upstream => ("upstream", 1u32),
            scenario::Profile::Fast => ("fast", 10u32),
        };
        let d = |secs: u64| Duration::from_secs(secs) / divisor;
        let secs = |upstream: i64| (upstream / i64::from(divisor)).max(1);
        let node_lifecycle = NodeLifecycleConfig {
            node_monitor_period: duration_flag(s, "node-monitor-period", d(5))?,
            node_monitor_grace_period: duration_flag(s, "node-monitor-grace-period", d(50))?,
            node_startup_grace_period: duration_flag(s, "node-startup-grace-period", d(60))?,
            node_eviction_rate: number_flag(s, "node-eviction-rate", 0.1 * divisor as f32)?,
            secondary_node_eviction_rate: number_flag(
                s,
                "secondary-node-eviction-rate",
                0.01 * divisor as f32,
            )?,
            unhealthy_zone_threshold: number_flag(s, "unhealthy-zone-threshold", 0.55)?,
            large_cluster_size_threshold: number_flag(s, "large-cluster-size-threshold", 50)?,
        };
        let mut kubelet = KubeletConfig {
            capacity_cpu: s.topology.node_capacity.cpu.clone(),
            capacity_memory: s.topology.node_capacity.memory.clone(),
            max_pods: s.topology.node_capacity.pods,
            ..KubeletConfig::default()
        };
        if divisor == 10 {
            kubelet = kubelet.fast();
        }
        kubelet.node_lease_duration_seconds = number_flag(
            s,
            "node-lease-duration-seconds",
            kubelet.node_lease_duration_seconds,
        )?;
        if let Some(p) = flag(s, "image-policy") {
            kubelet.image_policy = kubelet::core::standin::ImagePolicy::parse(p)
                .map_err(|_| bad("image-policy", p, "stand-in or fail"))?;
        }
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let syncer = SyncerConfig {
            mode: match s.proxy_mode {
                scenario::ProxyMode::Nftables => ProxyMode::Nftables,
                scenario::ProxyMode::Iptables => ProxyMode::Iptables,
            },
            min_sync_period_ms: ms(duration_flag(s, "min-sync-period", d(1))?),
            sync_period_ms: ms(duration_flag(s, "sync-period", d(30))?),
            ..SyncerConfig::default()
        };
        Ok(SimConfig {
            profile,
            divisor,
            node_lifecycle,
            max_endpoints_per_slice: number_flag(s, "max-endpoints-per-slice", 100)?,
            not_ready_toleration_seconds: number_flag(
                s,
                "default-not-ready-toleration-seconds",
                secs(300),
            )?,
            unreachable_toleration_seconds: number_flag(
                s,
                "default-unreachable-toleration-seconds",
                secs(300),
            )?,
            kubelet,
            syncer,
            syn_sent_timeout: duration_flag(
                s,
                "conntrack-tcp-timeout-syn-sent",
                DEFAULT_SYN_SENT_TIMEOUT,
            )?,
            scheduler_seed: seed,
        })
    }

    /// The controllers `zonelab server` runs by default (`--controllers '*'`), in its order,
    /// without leader election and without the load-balancer controller (no balancers here).
    pub fn controllers(&self) -> Result<Vec<Box<dyn Controller>>, SimError> {
        use controllers::workloads::{
            DaemonSetController, DeploymentController, ReplicaSetController, StatefulSetController,
        };
        let lifecycle = NodeLifecycleController::new(self.node_lifecycle.clone())
            .map_err(|e| SimError::Flag(e.to_string()))?;
        let scheduler =
            controllers::scheduler::Scheduler::new(controllers::scheduler::SchedulerConfig {
                seed: self.scheduler_seed,
                ..Default::default()
            });
        Ok(vec![
            Box::new(EndpointSliceController::new(EndpointSliceConfig {
                max_endpoints_per_slice: self.max_endpoints_per_slice,
                ..Default::default()
            })),
            Box::new(lifecycle),
            Box::new(TaintEvictionController::new()),
            Box::new(DeploymentController::new(Default::default())),
            Box::new(ReplicaSetController::new(Default::default())),
            Box::new(StatefulSetController::new(Default::default())),
            Box::new(controllers::podgc::PodGcController::new(Default::default())),
            Box::new(DaemonSetController::new(Default::default())),
            Box::new(scheduler),
            Box::new(controllers::disruption::DisruptionController::new(
                Default::default(),
            )),
            Box::new(controllers::serviceaccounts::ServiceAccountsController::new()),
        ])
    }

    /// The timers the report shows (what this run used).
    pub fn timers(&self) -> lab::report::Timers {
        lab::report::Timers {
            node_monitor_grace_period_s: self
                .node_lifecycle
                .node_monitor_grace_period
                .as_secs_f64(),
            node_monitor_period_s: self.node_lifecycle.node_monitor_period.as_secs_f64(),
            lease_renew_interval_s: self.kubelet.lease_renew_interval() as f64 / 1e3,
            unreachable_toleration_s: self.unreachable_toleration_seconds as f64,
            conntrack_tcp_timeout_syn_sent_s: self.syn_sent_timeout.as_secs().max(1) as f64,
        }
    }
}
