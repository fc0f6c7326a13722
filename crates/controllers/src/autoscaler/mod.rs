//! The cluster autoscaler with upstream's semantics (kubernetes/autoscaler, `RunOnce` of
//! core/static_autoscaler.go) as a sans-IO state machine: every `--scan-interval` it reads the
//! informer cache and the cloud's node groups, and hands back cloud calls (`IncreaseSize`,
//! `DeleteNodes`), API writes (taints, evictions), the status ConfigMap and pod Events.
//!
//! Start at [`ClusterAutoscaler::handle_timeout`]. One scan, in upstream's order: refresh the
//! cluster state ([`clusterstate`]); remove instances that never registered; halt if too many
//! nodes are unready; remove instances that failed to launch; scale up ([`scaleup`], with the
//! [`expander`]s and [`balance`]); otherwise scale down ([`scaledown`]); write the status
//! ([`status`]). The calling convention is the [`crate::Controller`]'s (time passed in,
//! actions drained, next wake-up polled), but the input includes the cloud and the actions
//! include cloud calls, so it is its own type.

pub mod balance;
pub mod cloud;
pub mod clusterstate;
pub mod config;
pub mod expander;
pub mod scaledown;
pub mod scaleup;
pub mod status;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_scaledown;
#[cfg(test)]
mod tests_zone_outage;
#[cfg(test)]
pub(crate) mod testworld;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Taint};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use self::cloud::{CloudAction, Instance, InstanceError, InstanceState, NodeGroupView};
use self::clusterstate::{ClusterState, TO_BE_DELETED_TAINT};
pub use self::config::{AutoscalerConfig, ConfigError, ExpanderKind};
use self::expander::{Priorities, PriorityConfigError};
use self::scaledown::{ScaleDown, ScaleDownInput, ScaleDownPlan};
use self::scaleup::{ScaleUpInput, ScaleUpPlan};
use crate::events::{self, EventRecord, EventType};
use crate::{Action, Cache, Key, Kind, Moment, Object};

/// The component name on Events (upstream's recorder source).
pub const COMPONENT: &str = "cluster-autoscaler";

/// Something the autoscaler asks of the world.
#[derive(Clone, Debug, PartialEq)]
pub enum AutoscalerAction {
    /// An API write (node taint, pod eviction).
    Api(Action),
    /// A cloud call.
    Cloud(CloudAction),
    /// Create or replace the status ConfigMap in kube-system.
    WriteStatus(Box<ConfigMap>),
}

/// What the last scan did (for tests, logs and the lab's report).
#[derive(Clone, Debug, Default)]
pub struct ScanSummary {
    pub at: Moment,
    pub healthy: bool,
    pub scale_up: ScaleUpPlan,
    pub scale_down: ScaleDownPlan,
    /// Instances removed because they failed to launch or never registered.
    pub removed_instances: Vec<String>,
}

/// The autoscaler. See the module docs.
pub struct ClusterAutoscaler {
    config: AutoscalerConfig,
    rng: ChaCha8Rng,
    state: ClusterState,
    scale_down: ScaleDown,
    priorities: Option<Result<Priorities, PriorityConfigError>>,
    next_scan: Moment,
    started: Option<Moment>,
    last_scale_up: Moment,
    last_scale_down_fail: Moment,
    healthy: bool,
    health_since: Moment,
    /// When autoscaling halted (cluster unhealthy), if it is halted now.
    halted_since: Option<Moment>,
    summary: ScanSummary,
    actions: VecDeque<AutoscalerAction>,
    events: VecDeque<EventRecord>,
}

impl ClusterAutoscaler {
    pub fn new(config: AutoscalerConfig) -> Result<ClusterAutoscaler, ConfigError> {
        config.validate()?;
        Ok(ClusterAutoscaler {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            state: ClusterState::default(),
            scale_down: ScaleDown::default(),
            priorities: None,
            next_scan: Moment::MIN,
            started: None,
            last_scale_up: Moment::MIN,
            last_scale_down_fail: Moment::MIN,
            healthy: true,
            health_since: Moment::EPOCH,
            halted_since: None,
            summary: ScanSummary::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &AutoscalerConfig {
        &self.config
    }

    /// The cluster state as of the last scan.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// What the last scan did.
    pub fn last_scan(&self) -> &ScanSummary {
        &self.summary
    }

    /// When autoscaling halted, if it is halted.
    pub fn halted_since(&self) -> Option<Moment> {
        self.halted_since
    }

    /// Since when each unneeded node has been unneeded.
    pub fn unneeded_since(&self) -> &BTreeMap<String, Moment> {
        &self.scale_down.unneeded_since
    }

    /// The `cluster-autoscaler-priority-expander` ConfigMap's data changed (`None`: deleted).
    /// Returns the parse error, if any; the expander then passes every option on (upstream).
    pub fn set_priority_config(
        &mut self,
        data: Option<&BTreeMap<String, String>>,
    ) -> Result<(), PriorityConfigError> {
        self.priorities = data.map(Priorities::parse);
        match &self.priorities {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// When the next scan is due (`handle_timeout`).
    pub fn poll_timeout(&self) -> Option<Moment> {
        Some(self.next_scan)
    }

    /// The next cloud call or API write, oldest first (one scan's worth at most).
    pub fn poll_action(&mut self) -> Option<AutoscalerAction> {
        self.actions.pop_front()
    }

    /// The next Event recorded, oldest first (one scan's worth at most).
    pub fn poll_event(&mut self) -> Option<EventRecord> {
        self.events.pop_front()
    }

    /// Run a scan if one is due at `now`.
    pub fn handle_timeout(&mut self, cache: &Cache, groups: &[NodeGroupView], now: Moment) {
        if now < self.next_scan {
            return;
        }
        self.next_scan = now + self.config.scan_interval;
        let started = *self.started.get_or_insert(now);
        if self.last_scale_up == Moment::MIN {
            // Upstream starts its cool-down clocks at start-up.
            self.last_scale_up = started;
            self.last_scale_down_fail = started;
            // The health condition holds since start-up (not since the epoch).
            self.health_since = started;
        }
        self.summary = ScanSummary {
            at: now,
            ..ScanSummary::default()
        };
        self.run_once(cache, groups, now);
        self.write_status(groups, now);
    }

    fn run_once(&mut self, cache: &Cache, groups: &[NodeGroupView], now: Moment) {
        for f in self.state.update(cache, groups, &self.config, now) {
            tracing::info!(group = %f.group, code = %f.error_code, message = %f.error_message,
                "scale-up failed; node group backs off");
        }
        if self.remove_instances(groups, true) {
            return;
        }
        let healthy = self
            .state
            .is_cluster_healthy(&self.config, cache.nodes.len());
        if healthy != self.healthy {
            self.healthy = healthy;
            self.health_since = now;
        }
        self.summary.healthy = healthy;
        if !healthy {
            tracing::warn!(
                unready = self.state.total_unready(),
                "Cluster is not ready for autoscaling"
            );
            self.halted_since.get_or_insert(now);
            self.scale_down.clear();
            return;
        }
        self.halted_since = None;
        if self.remove_instances(groups, false) {
            return;
        }
        let plan = self.scale_up(cache, groups, now);
        let scaled = !plan.increases.is_empty();
        self.summary.scale_up = plan;
        if scaled {
            self.last_scale_up = now;
            return;
        }
        if self.config.scale_down_enabled {
            self.scale_down(cache, groups, now);
        }
    }

    /// Upstream `removeOldUnregisteredNodes` (`long`) and `deleteCreatedNodesWithErrors`:
    /// true if something was removed (the scan ends there, as upstream's does).
    fn remove_instances(&mut self, groups: &[NodeGroupView], long: bool) -> bool {
        let lists = if long {
            &self.state.long_unregistered
        } else {
            &self.state.failed_instances
        };
        let mut calls = Vec::new();
        for (group, names) in lists {
            let Some(g) = groups.iter().find(|g| &g.name == group) else {
                continue;
            };
            let mut nodes = names.clone();
            if long {
                // Never below the min size for instances that may still come.
                let room = g.target_size.saturating_sub(g.min_size);
                nodes.truncate(room);
            }
            if !nodes.is_empty() {
                calls.push(CloudAction::DeleteNodes {
                    group: group.clone(),
                    nodes,
                });
            }
        }
        for call in calls {
            if let CloudAction::DeleteNodes { nodes, .. } = &call {
                self.summary.removed_instances.extend(nodes.iter().cloned());
            }
            self.actions.push_back(AutoscalerAction::Cloud(call));
        }
        !self.summary.removed_instances.is_empty()
    }

    fn scale_up(&mut self, cache: &Cache, groups: &[NodeGroupView], now: Moment) -> ScaleUpPlan {
        let priorities = self.priorities.as_ref().and_then(|p| p.as_ref().ok());
        let input = ScaleUpInput {
            cache,
            groups,
            state: &self.state,
            config: &self.config,
            priorities,
            now,
        };
        let plan = scaleup::plan(&input, &mut self.rng);
        for inc in &plan.increases {
            let delta = inc.to - inc.from;
            self.actions
                .push_back(AutoscalerAction::Cloud(CloudAction::IncreaseSize {
                    group: inc.group.clone(),
                    delta,
                }));
            self.state
                .register_scale_up(&inc.group, delta, &self.config, now);
        }
        if !plan.increases.is_empty() {
            let infos: Vec<String> = plan.increases.iter().map(ToString::to_string).collect();
            let message = format!("pod triggered scale-up: [{}]", infos.join(" "));
            for key in &plan.triggered {
                self.pod_event(cache, key, "TriggeredScaleUp", &message, now);
            }
        }
        for (key, reasons) in &plan.not_triggered {
            let message = format!("pod didn't trigger scale-up: {reasons}");
            self.pod_event(cache, key, "NotTriggerScaleUp", &message, now);
        }
        plan
    }

    fn pod_event(
        &mut self,
        cache: &Cache,
        key: &Key,
        reason: &'static str,
        msg: &str,
        now: Moment,
    ) {
        if let Some(pod) = cache.pods.get(key) {
            self.events.push_back(EventRecord::new(
                COMPONENT,
                events::pod_ref(pod),
                EventType::Normal,
                reason,
                msg.to_string(),
                now,
            ));
        }
    }

    fn scale_down(&mut self, cache: &Cache, groups: &[NodeGroupView], now: Moment) {
        let cooldown = now < self.last_scale_up + self.config.scale_down_delay_after_add
            || now < self.last_scale_down_fail + self.config.scale_down_delay_after_failure;
        let input = ScaleDownInput {
            cache,
            groups,
            state: &self.state,
            config: &self.config,
            cooldown,
            now,
        };
        let plan = self.scale_down.plan(&input);
        let mut per_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &plan.removals {
            if let Some(node) = cache.nodes.get(&r.node) {
                self.actions
                    .push_back(AutoscalerAction::Api(Action::Update(Object::Node(
                        Arc::new(tainted(node, now)),
                    ))));
                let uid = node.metadata.uid.as_deref().unwrap_or("");
                self.events.push_back(EventRecord::new(
                    COMPONENT,
                    events::node_ref(&r.node, uid),
                    EventType::Normal,
                    "ScaleDown",
                    "marked the node as toBeDeleted/unschedulable".to_string(),
                    now,
                ));
            }
            for pod in &r.evict {
                self.events.push_back(EventRecord::new(
                    COMPONENT,
                    events::pod_ref(pod),
                    EventType::Normal,
                    "ScaleDown",
                    "deleting pod for node scale down".to_string(),
                    now,
                ));
                self.actions
                    .push_back(AutoscalerAction::Api(Action::Delete {
                        kind: Kind::Pod,
                        key: Key::of(&pod.metadata),
                        uid: pod.metadata.uid.clone(),
                        grace_period_seconds: None,
                    }));
            }
            per_group
                .entry(r.group.clone())
                .or_default()
                .push(r.node.clone());
            self.scale_down.unneeded_since.remove(&r.node);
        }
        for (group, nodes) in per_group {
            tracing::info!(%group, ?nodes, "Scale-down: removing nodes");
            self.actions
                .push_back(AutoscalerAction::Cloud(CloudAction::DeleteNodes {
                    group,
                    nodes,
                }));
        }
        self.summary.scale_down = plan;
    }

    /// A write of ours failed: a failed node taint or eviction counts as a failed scale-down
    /// (upstream's `--scale-down-delay-after-failure` cool-down).
    pub fn handle_write_failed(&mut self, action: &AutoscalerAction, now: Moment) {
        if matches!(action, AutoscalerAction::Api(_)) {
            self.last_scale_down_fail = now;
        }
    }

    fn write_status(&mut self, groups: &[NodeGroupView], now: Moment) {
        let mut candidates: BTreeMap<String, usize> = BTreeMap::new();
        for n in self.scale_down.unneeded_since.keys() {
            if let Some(g) = self.state.group_of.get(n) {
                *candidates.entry(g.clone()).or_default() += 1;
            }
        }
        let message = if self.healthy {
            String::new()
        } else {
            format!(
                "Cluster is not ready for autoscaling: {} of {} nodes unready",
                self.state.total_unready(),
                self.state.total.registered()
            )
        };
        let text = status::render(&status::StatusInput {
            state: &self.state,
            groups,
            healthy: self.healthy,
            candidates: &candidates,
            now,
            health_since: self.health_since,
            message: &message,
        });
        let cm = status::config_map(&self.config.status_config_map_name, text, now);
        self.actions
            .push_back(AutoscalerAction::WriteStatus(Box::new(cm)));
    }
}

/// The node with the autoscaler's `ToBeDeletedByClusterAutoscaler=<unix seconds>:NoSchedule`.
fn tainted(node: &Node, now: Moment) -> Node {
    let mut n = node.clone();
    let taints = n
        .spec
        .get_or_insert_with(Default::default)
        .taints
        .get_or_insert_with(Vec::new);
    if !taints.iter().any(|t| t.key == TO_BE_DELETED_TAINT) {
        taints.push(Taint {
            key: TO_BE_DELETED_TAINT.into(),
            value: Some((now.as_millis() / 1000).to_string()),
            effect: "NoSchedule".into(),
            time_added: None,
        });
    }
    n
}
