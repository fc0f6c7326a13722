//! The simulated cluster's configuration: the scenario's profile and flags resolved through
//! the `profile` crate (`profile::Configs::resolve`, the same function the live roles use), so
//! the controllers, kubelets and kube-proxies get the upstream defaults, `fast` scaling and
//! overrides of `zonelab server`/`zonelab agent`; plus the simulator's own `image-policy`.
//!
//! Start at [`SimConfig::from_scenario`].

use std::time::Duration;

use controllers::Controller;
use controllers::endpointslice::EndpointSliceController;
use controllers::nodelifecycle::{
    NodeLifecycleConfig, NodeLifecycleController, TaintEvictionController,
};
use kubelet::core::KubeletConfig;
use proxy::syncer::{ProxyMode, SyncerConfig};
use scenario::Scenario;

use crate::SimError;

/// The kernel's `nf_conntrack_tcp_timeout_syn_sent` default, 120 s (Linux
/// `net/netfilter/nf_conntrack_proto_tcp.c`).
pub const DEFAULT_SYN_SENT_TIMEOUT: Duration = profile::KERNEL_SYN_SENT_TIMEOUT;

/// Everything the simulated components are configured with.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// `upstream` or `fast`.
    pub profile: &'static str,
    /// Every timer is divided by this (10 for `fast`).
    pub divisor: u32,
    /// Every component's config as the live roles resolve it.
    pub configs: profile::Configs,
    pub node_lifecycle: NodeLifecycleConfig,
    pub max_endpoints_per_slice: usize,
    pub not_ready_toleration_seconds: i64,
    pub unreachable_toleration_seconds: i64,
    /// The kubelet config every node starts from (name, zone, addresses filled per node).
    pub kubelet: KubeletConfig,
    /// The kube-proxy config every node starts from (its pacing is what a node uses).
    pub syncer: SyncerConfig,
    pub syn_sent_timeout: Duration,
    /// Seed of the scheduler's tie-break RNG.
    pub scheduler_seed: u64,
}

impl SimConfig {
    /// Upstream defaults, scaled by the scenario's profile, overridden by its flags.
    pub fn from_scenario(s: &Scenario, seed: u64) -> Result<SimConfig, SimError> {
        // The scenario's own check (with file:line:column) ran in `parse_for(.., Sim)`; this
        // one keeps a hand-built scenario from slipping a live-only flag past the simulator.
        let modelled = scenario::sim::SIM_FLAGS;
        let mut flags = profile::Flags::default();
        let mut image_policy = None;
        for (name, value) in &s.flags {
            let bare = name.trim_start_matches('-');
            if !modelled.contains(&bare) {
                return Err(SimError::Flag(format!(
                    "flag {bare} is not modelled by the simulator (modelled: {})",
                    modelled.join(", ")
                )));
            }
            if bare == "image-policy" {
                let p = kubelet::core::standin::ImagePolicy::parse(value).map_err(|_| {
                    SimError::Flag(format!(
                        "flag image-policy: invalid value {value:?}: expected stand-in or fail"
                    ))
                })?;
                image_policy = Some(p);
                continue;
            }
            flags
                .set(bare, value)
                .map_err(|e| SimError::Flag(format!("flag {bare}: {e}")))?;
        }
        let configs = profile::Configs::resolve(s.profile, &flags)
            .map_err(|e| SimError::Flag(e.to_string()))?;
        let (profile, divisor) = match s.profile {
            scenario::Profile::Upstream => ("upstream", 1u32),
            scenario::Profile::Fast => ("fast", 10u32),
        };
        let mut kubelet = KubeletConfig {
            capacity_cpu: s.topology.node_capacity.cpu.clone(),
            capacity_memory: s.topology.node_capacity.memory.clone(),
            max_pods: s.topology.node_capacity.pods,
            ..configs.kubelet.clone()
        };
        if let Some(p) = image_policy {
            kubelet.image_policy = p;
        }
        let syncer = SyncerConfig {
            mode: match s.proxy_mode {
                scenario::ProxyMode::Nftables => ProxyMode::Nftables,
                scenario::ProxyMode::Iptables => ProxyMode::Iptables,
            },
            ..configs.proxy.clone()
        };
        Ok(SimConfig {
            profile,
            divisor,
            node_lifecycle: configs.node_lifecycle.clone(),
            max_endpoints_per_slice: configs.endpointslice.max_endpoints_per_slice,
            not_ready_toleration_seconds: configs.admission.not_ready_toleration_seconds,
            unreachable_toleration_seconds: configs.admission.unreachable_toleration_seconds,
            kubelet,
            syncer,
            syn_sent_timeout: configs
                .conntrack_tcp_timeout_syn_sent
                .unwrap_or(DEFAULT_SYN_SENT_TIMEOUT),
            scheduler_seed: seed,
            configs,
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
            Box::new(EndpointSliceController::new(
                self.configs.endpointslice.clone(),
            )),
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
            Box::new(controllers::zonalshift::ZonalShiftController::new()),
        ])
    }

    /// The timers the report shows (what this run used).
    pub fn timers(&self) -> lab::report::Timers {
        self.configs.report_timers()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::SimConfig;

    fn config(profile: &str, flags: &str) -> Result<SimConfig, crate::SimError> {
        let text = format!(
            "name: cfg
topology: {{zones: [a], nodesPerZone: 1}}
profile: {profile}
flags: {{{flags}}}
run: {{duration: 1m}}
"
        );
        let s = scenario::Scenario::parse_for(&text, "cfg.yaml", scenario::sim::Mode::Sim)
            .expect("scenario");
        SimConfig::from_scenario(&s, 1)
    }

    #[test]
    fn the_profile_scales_and_a_flag_wins_as_in_the_live_roles() {
        let up = config("upstream", "").expect("upstream");
        assert_eq!(
            up.node_lifecycle.node_monitor_grace_period,
            Duration::from_secs(50)
        );
        assert_eq!(up.syncer.min_sync_period_ms, Duration::from_millis(1_000));
        assert_eq!(up.unreachable_toleration_seconds, 300);
        let fast = config("fast", "node-monitor-grace-period: 20s").expect("fast");
        assert_eq!(
            fast.node_lifecycle.node_monitor_grace_period,
            Duration::from_secs(20)
        );
        assert_eq!(fast.syncer.min_sync_period_ms, Duration::from_millis(100));
        assert_eq!(fast.unreachable_toleration_seconds, 30);
        assert_eq!(fast.timers().node_monitor_grace_period_s, 20.0);
    }

    #[test]
    fn a_bad_flag_value_is_refused() {
        let e = config("upstream", "min-sync-period: soon").expect_err("not a duration");
        assert!(e.to_string().contains("min-sync-period"), "{e}");
        let e = config("upstream", "image-policy: maybe").expect_err("not a policy");
        assert!(e.to_string().contains("stand-in or fail"), "{e}");
    }
}
