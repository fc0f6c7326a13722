//! The node lifecycle controller (upstream kube-controller-manager
//! `pkg/controller/nodelifecycle`): node health from Lease/heartbeat observation, conditions
//! Unknown past the grace period, pods marked not Ready, NoSchedule and rate-limited NoExecute
//! `unreachable`/`not-ready` taints, zone disruption states. Pod eviction from NoExecute taints
//! is the separate [`TaintEvictionController`] (upstream `pkg/controller/tainteviction`).
//!
//! Start at [`NodeLifecycleController::new`] and the monitor pass
//! (`NodeLifecycleController::monitor_node_health`); timers: a monitor pass every
//! `node_monitor_period` from start, a NoExecute tainting pass on a 100 ms grid from start.

mod health;
mod node_writes;
mod rate_limited_queue;
pub mod taint_eviction;
pub mod taints;
mod zones;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_takeover;
#[cfg(test)]
mod tests_zones;

use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::cache::{Cache, Change, Key, Object};
use crate::events::{self, EventRecord, EventType};
use crate::time::duration_ms;
use crate::{Action, Controller, Moment, WriteError};
use runtime::Outbox;

use health::{Graces, NodeHealth, Status, condition, pod_marked_not_ready, try_update_health};
use node_writes::{NoExecuteOp, NodeWriter, StatusOp};
use rate_limited_queue::RateLimitedTimedQueue;
use taints::{TAINT_NOT_READY, TAINT_UNREACHABLE};

pub use taint_eviction::TaintEvictionController;
pub use zones::{ZoneCount, ZoneState, compute_zone_state, zone_key};

/// Namespace of node Leases (`v1.NamespaceNodeLease`).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Period of the NoExecute tainting pass (upstream `scheduler.NodeEvictionPeriod` = 100 ms,
/// `pkg/controller/nodelifecycle/scheduler/rate_limited_queue.go`).
pub const NODE_EVICTION_PERIOD_MS: Duration = Duration::from_millis(100);
/// Retry delay of a queued node without a Ready condition (upstream: "retry in 50 millisecond"
/// in `doNoExecuteTaintingPass`).
const NO_READY_CONDITION_RETRY_MS: Duration = Duration::from_millis(50);

/// Invalid controller configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{flag} must be greater than zero")]
    NotPositive { flag: &'static str },
    #[error("{flag} must be a finite number >= 0, got {value}")]
    BadRate { flag: &'static str, value: f32 },
}

/// Flags of the node lifecycle controller, named as upstream, with upstream defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-period`: 5 s (`SetDefaults_KubeCloudSharedConfiguration`,
    /// `pkg/controller/apis/config/v1alpha1/defaults.go`).
    pub node_monitor_period: Duration,
    /// `--node-monitor-grace-period`: 50 s since v1.32, PR #126287
    /// (`pkg/controller/nodelifecycle/config/v1alpha1/defaults.go`; 40 s before).
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: 60 s (same defaults.go).
    pub node_startup_grace_period: Duration,
    /// `--node-eviction-rate`: 0.1 nodes/s (`cmd/kube-controller-manager/app/options/nodelifecyclecontroller.go`).
    pub node_eviction_rate: f32,
    /// `--secondary-node-eviction-rate`: 0.01 nodes/s (same options file).
    pub secondary_node_eviction_rate: f32,
    /// `--unhealthy-zone-threshold`: 0.55 (same options file).
    pub unhealthy_zone_threshold: f32,
    /// `--large-cluster-size-threshold`: 50 (same options file; compared with the zone's size).
    pub large_cluster_size_threshold: u32,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
        }
    }
}

impl NodeLifecycleConfig {
    /// Reject values the controller cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (flag, d) in [
            ("node-monitor-period", self.node_monitor_period),
            ("node-monitor-grace-period", self.node_monitor_grace_period),
            ("node-startup-grace-period", self.node_startup_grace_period),
        ] {
            if d.is_zero() {
                return Err(ConfigError::NotPositive { flag });
            }
        }
        for (flag, value) in [
            ("node-eviction-rate", self.node_eviction_rate),
            (
                "secondary-node-eviction-rate",
                self.secondary_node_eviction_rate,
            ),
            ("unhealthy-zone-threshold", self.unhealthy_zone_threshold),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::BadRate { flag, value });
            }
        }
        Ok(())
    }
}

/// The node lifecycle controller. Sans-IO: reads the shared cache, keeps only its own
/// bookkeeping (probe times, zone states, tainting queues, pending node writes).
#[derive(Clone, Debug)]
pub struct NodeLifecycleController {
    config: NodeLifecycleConfig,
    graces: Graces,
    period: Duration,
    /// Start time: origin of the 100 ms tainting grid.
    anchor: Option<Moment>,
    next_monitor: Option<Moment>,
    last_taint_tick: Moment,
    /// Known nodes (upstream `knownNodeSet` + `nodeHealthMap`), in name order like the cache.
    nodes: BTreeMap<String, Tracked>,
    zone_states: BTreeMap<String, ZoneState>,
    tainters: BTreeMap<String, RateLimitedTimedQueue>,
    /// Nodes whose pods must be marked not ready again (a pod write failed).
    nodes_to_retry: BTreeSet<String>,
    writer: NodeWriter,
    /// Writes and Events for the driver to poll.
    out: Outbox,
}

/// What the controller keeps per known node.
#[derive(Clone, Debug)]
struct Tracked {
    /// The node object `zone` was computed from (recomputed when the object changes).
    seen: Arc<Node>,
    zone: String,
    health: Option<NodeHealth>,
}

/// The node Leases, in name order (the same order as `cache.nodes`).
fn node_leases(cache: &Cache) -> impl Iterator<Item = (&Key, &Arc<Lease>)> {
    cache
        .leases
        .range(Key::new(NODE_LEASE_NAMESPACE, "")..)
        .take_while(|(k, _)| k.namespace == NODE_LEASE_NAMESPACE)
}

/// The renew time of `node`'s Lease, advancing the ordered lease iterator (a merge join:
/// nodes are visited in name order).
fn lease_renew<'a, I>(leases: &mut Peekable<I>, node: &str) -> Option<Moment>
where
    I: Iterator<Item = (&'a Key, &'a Arc<Lease>)>,
{
    while leases.next_if(|(k, _)| k.name.as_str() < node).is_some() {}
    let (_, lease) = leases.next_if(|(k, _)| k.name == node)?;
    lease
        .spec
        .as_ref()?
        .renew_time
        .as_ref()
        .map(|t| Moment::from_millis(t.0.as_millisecond()))
}

/// The node reference the node controller's events use (node uid, as upstream).
fn node_event_ref(node: &Node) -> k8s_openapi::api::core::v1::ObjectReference {
    let name = node.metadata.name.as_deref().unwrap_or("");
    events::node_ref(name, node.metadata.uid.as_deref().unwrap_or(""))
}

fn node_name_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

impl NodeLifecycleController {
    /// A controller with `config` (see [`NodeLifecycleConfig::default`] for upstream defaults).
    pub fn new(config: NodeLifecycleConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(NodeLifecycleController {
            graces: Graces {
                monitor: config.node_monitor_grace_period,
                startup: config.node_startup_grace_period,
            },
            period: config.node_monitor_period,
            config,
            anchor: None,
            next_monitor: None,
            last_taint_tick: Moment::EPOCH,
            nodes: BTreeMap::new(),
            zone_states: BTreeMap::new(),
            tainters: BTreeMap::new(),
            nodes_to_retry: BTreeSet::new(),
            writer: NodeWriter::default(),
            out: Outbox::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &NodeLifecycleConfig {
        &self.config
    }

    /// The state of a zone (key as [`zone_key`]), if known.
    pub fn zone_state(&self, zone: &str) -> Option<ZoneState> {
        self.zone_states.get(zone).copied()
    }

    /// When the controller last observed a heartbeat of `node`.
    pub fn probe_time(&self, node: &str) -> Option<Moment> {
        self.nodes.get(node).and_then(|t| t.health).map(|h| h.probe)
    }

    /// Nodes waiting in a zone's NoExecute tainting queue.
    pub fn queued_for_tainting(&self, zone: &str) -> usize {
        self.tainters
            .get(zone)
            .map_or(0, RateLimitedTimedQueue::len)
    }

    /// The current NoExecute tainting rate of a zone, nodes/s (0: stopped).
    pub fn zone_tainting_rate(&self, zone: &str) -> Option<f32> {
        self.tainters.get(zone).map(RateLimitedTimedQueue::qps)
    }

    /// First 100 ms tick at or after `t`.
    fn grid_ceil(&self, t: Moment) -> Moment {
        let anchor = self.anchor.unwrap_or(t);
        let k = duration_ms(t.saturating_since(anchor));
        let p = duration_ms(NODE_EVICTION_PERIOD_MS);
        anchor + Duration::from_millis(((k + p - 1) / p * p) as u64)
    }

    /// Upstream `classifyNodes` + its follow-up: new nodes get their zone's queue and their
    /// NoExecute taints removed (so a restarted controller re-taints at its own pace); zones
    /// are refreshed when a node object changed; deleted nodes are forgotten (upstream keeps
    /// their health data).
    fn classify_nodes(&mut self, cache: &Cache, now: Moment) {
        let mut added: Vec<(&String, &Arc<Node>)> = Vec::new();
        let mut new_zones: Vec<String> = Vec::new();
        let mut stale = false;
        // Merge join: both maps are in name order.
        let mut known = self.nodes.iter_mut().peekable();
        for (name, node) in &cache.nodes {
            while known.next_if(|(k, _)| *k < name).is_some() {
                stale = true;
            }
            let Some((_, t)) = known.next_if(|(k, _)| *k == name) else {
                added.push((name, node));
                continue;
            };
            if !Arc::ptr_eq(&t.seen, node) {
                let zone = zone_key(node);
                if zone != t.zone {
                    t.zone = zone;
                }
                t.seen = Arc::clone(node);
            }
            if !self.zone_states.contains_key(&t.zone) {
                new_zones.push(t.zone.clone());
            }
        }
        stale |= known.next().is_some();
        for zone in new_zones {
            self.add_zone(&zone, now);
        }
        for (name, node) in added {
            tracing::debug!(node = %name, "observed a new node");
            // Upstream `classifyNodes` → `RecordNodeEvent(…, "RegisteredNode", …)`.
            self.out.push_event(EventRecord::new(
                events::source::NODE_CONTROLLER,
                node_event_ref(node),
                EventType::Normal,
                "RegisteredNode",
                format!("Node {name} event: Registered Node {name} in Controller"),
                now,
            ));
            let zone = zone_key(node);
            self.add_zone(&zone, now);
            self.mark_node_as_reachable(node, name, &zone);
            self.nodes.insert(
                name.clone(),
                Tracked {
                    seen: Arc::clone(node),
                    zone,
                    health: None,
                },
            );
        }
        if stale {
            let gone: Vec<(String, Arc<Node>)> = self
                .nodes
                .iter()
                .filter(|(n, _)| !cache.nodes.contains_key(*n))
                .map(|(n, t)| (n.clone(), Arc::clone(&t.seen)))
                .collect();
            for (name, node) in gone {
                // Upstream `classifyNodes` → `RecordNodeEvent(…, "RemovingNode", …)`.
                self.out.push_event(EventRecord::new(
                    events::source::NODE_CONTROLLER,
                    node_event_ref(&node),
                    EventType::Normal,
                    "RemovingNode",
                    format!("Node {name} event: Removing Node {name} from Controller"),
                    now,
                ));
            }
            self.nodes.retain(|n, _| cache.nodes.contains_key(n));
        }
    }

    /// Upstream `monitorNodeHealth`: one pass over all nodes.
    fn monitor_node_health(&mut self, cache: &Cache, now: Moment) {
        self.classify_nodes(cache, now);
        let mut tracked = std::mem::take(&mut self.nodes);
        let mut counts: BTreeMap<String, ZoneCount> = BTreeMap::new();
        let mut leases = node_leases(cache).peekable();
        debug_assert_eq!(tracked.len(), cache.nodes.len());
        for ((name, node), (_, t)) in cache.nodes.iter().zip(tracked.iter_mut()) {
            let renew = lease_renew(&mut leases, name);
            self.update_node(cache, name, node, t, renew, &mut counts, now);
        }
        self.nodes = tracked;
        self.handle_disruption(cache, &counts, now);
    }

    /// The per-node part of the pass (upstream `updateNodeFunc`).
    #[allow(clippy::too_many_arguments)]
    fn update_node(
        &mut self,
        cache: &Cache,
        name: &str,
        node: &Node,
        t: &mut Tracked,
        renew: Option<Moment>,
        counts: &mut BTreeMap<String, ZoneCount>,
        now: Moment,
    ) {
        let outcome = try_update_health(&mut t.health, node, renew, self.graces, now);
        if let Some((at, heartbeat)) = outcome.mark_unknown {
            self.writer.mark_unknown(name, StatusOp { at, heartbeat });
        }
        let zone = t.zone.as_str();
        if !zones::excluded_from_disruption(node) {
            let count = match counts.get_mut(zone) {
                Some(c) => c,
                None => counts.entry(zone.to_string()).or_default(),
            };
            if outcome.current == Some(Status::True) {
                count.ready += 1;
            } else {
                count.not_ready += 1;
            }
        }
        let Some(current) = outcome.current else {
            return;
        };
        let observed = outcome.observed;
        self.process_taint_based_eviction(node, name, zone, observed, now);
        let needs_retry = !self.nodes_to_retry.is_empty() && self.nodes_to_retry.remove(name);
        if (current != Status::True && observed == Status::True)
            || (needs_retry && observed != Status::True)
        {
            if observed == Status::True {
                tracing::info!(node = %name, "node is not ready: marking its pods not ready");
                // Upstream `RecordNodeStatusChange(node, "NodeNotReady")`.
                self.out.push_event(EventRecord::new(
                    events::source::NODE_CONTROLLER,
                    node_event_ref(node),
                    EventType::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                    now,
                ));
            }
            self.mark_pods_not_ready(cache, name, now);
        }
    }

    /// Upstream `MarkPodsNotReady` for every pod bound to `node`: one status write per pod.
    fn mark_pods_not_ready(&mut self, cache: &Cache, node: &str, now: Moment) {
        for pod in cache.pods_on_node(node) {
            if let Some(new) = pod_marked_not_ready(pod, now) {
                // Upstream `MarkPodsNotReady`: a Warning on every pod it marks.
                self.out.push_event(EventRecord::new(
                    events::source::NODE_CONTROLLER,
                    events::pod_ref(pod),
                    EventType::Warning,
                    "NodeNotReady",
                    "Node is not ready".to_string(),
                    now,
                ));
                self.out
                    .push_action(Action::UpdateStatus(Object::Pod(Arc::new(new))));
            }
        }
    }

    /// Upstream `processTaintBaseEviction`, keyed on the Ready status seen at the start of
    /// the pass: not ready -> queue for the NoExecute taint (or swap the opposite taint at
    /// once); ready -> NoExecute taints off.
    fn process_taint_based_eviction(
        &mut self,
        node: &Node,
        name: &str,
        zone: &str,
        observed: Status,
        now: Moment,
    ) {
        let (key, opposite) = match observed {
            Status::False => (TAINT_NOT_READY, TAINT_UNREACHABLE),
            Status::Unknown => (TAINT_UNREACHABLE, TAINT_NOT_READY),
            Status::True => {
                self.mark_node_as_reachable(node, name, zone);
                return;
            }
            Status::Other => return,
        };
        if self.writer.effective_no_execute(node, name, opposite) {
            self.writer
                .no_execute(name, NoExecuteOp::Set { key, at: now });
            return;
        }
        // Upstream `markNodeForTainting`: re-queue (as of now) unless already tainted.
        let uid = node.metadata.uid.as_deref().unwrap_or("");
        let tainted = self.writer.effective_no_execute(node, name, key);
        if let Some(q) = self.tainters.get_mut(zone) {
            if !tainted {
                q.remove(name);
            }
            q.add(name, uid, now);
        }
    }

    /// Upstream `doNoExecuteTaintingPass`: each zone's queue hands out nodes at its rate; a
    /// node still not ready gets the NoExecute taint matching its Ready status.
    fn do_no_execute_tainting_pass(&mut self, cache: &Cache, now: Moment) {
        let mut ops: Vec<(String, NoExecuteOp)> = Vec::new();
        for q in self.tainters.values_mut() {
            q.try_pass(now, |v| {
                let Some(node) = cache.nodes.get(&v.value) else {
                    return Ok(());
                };
                let Some(ready) = condition(node, "Ready") else {
                    return Err(NO_READY_CONDITION_RETRY_MS);
                };
                let key = match ready.status.as_str() {
                    "False" => TAINT_NOT_READY,
                    "Unknown" => TAINT_UNREACHABLE,
                    _ => return Ok(()),
                };
                ops.push((v.value.clone(), NoExecuteOp::Set { key, at: now }));
                Ok(())
            });
        }
        for (name, op) in ops {
            tracing::info!(node = %name, ?op, "tainting node");
            self.writer.no_execute(&name, op);
        }
    }

    /// Upstream `processPod`: a pod newly bound to a node seen not ready is marked not ready.
    fn process_pod(&mut self, cache: &Cache, pod: &Pod, now: Moment) {
        let node = node_name_of(pod);
        let not_ready = self
            .nodes
            .get(node)
            .and_then(|t| t.health)
            .and_then(|h| h.saved_ready)
            .is_some_and(|r| r.status != Status::True);
        if not_ready
            && cache.nodes.contains_key(node)
            && let Some(new) = pod_marked_not_ready(pod, now)
        {
            self.out
                .push_action(Action::UpdateStatus(Object::Pod(Arc::new(new))));
        }
    }

    fn flush_pending(&mut self, cache: &Cache, now: Moment) {
        for name in self.writer.pending_nodes() {
            self.writer.flush(cache, &name, now, &mut self.out);
        }
    }
}

impl Controller for NodeLifecycleController {
    fn name(&self) -> &'static str {
        "nodelifecycle"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        self.anchor = Some(now);
        self.last_taint_tick = now;
        self.do_no_execute_tainting_pass(cache, now);
        self.monitor_node_health(cache, now);
        self.next_monitor = Some(now + self.period);
        // Informer "add" events: the NoSchedule pass runs for every node.
        for name in cache.nodes.keys() {
            self.writer.flush(cache, name, now, &mut self.out);
        }
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        match change {
            Change::Applied {
                new: Object::Node(n),
                ..
            } => {
                let name = n.metadata.name.as_deref().unwrap_or("");
                self.writer.acknowledge(name);
                self.writer.flush(cache, name, now, &mut self.out);
            }
            Change::Deleted(Object::Node(n)) => {
                let name = n.metadata.name.as_deref().unwrap_or("");
                self.writer.forget(name);
                self.nodes_to_retry.remove(name);
            }
            Change::Applied {
                new: Object::Pod(p),
                old,
            } => {
                let bound = node_name_of(p);
                let was = match old {
                    Some(Object::Pod(o)) => Some(node_name_of(o)),
                    _ => None,
                };
                if !bound.is_empty() && was != Some(bound) {
                    self.process_pod(cache, p, now);
                }
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        if self.anchor.is_none() {
            return;
        }
        self.writer.expire(now);
        if now >= self.grid_ceil(self.last_taint_tick + Duration::from_millis(1)) {
            self.last_taint_tick = now;
            self.do_no_execute_tainting_pass(cache, now);
        }
        if self.next_monitor.is_some_and(|t| now >= t) {
            self.monitor_node_health(cache, now);
            self.next_monitor = Some(now + self.period);
        }
        self.flush_pending(cache, now);
    }

    fn poll_timeout(&self) -> Option<Moment> {
        let after = self.last_taint_tick + Duration::from_millis(1);
        let taint = self
            .tainters
            .values()
            .filter_map(RateLimitedTimedQueue::next_attempt)
            .map(|t| self.grid_ceil(t.max(after)))
            .min();
        match (self.next_monitor, taint) {
            (Some(m), Some(t)) => Some(m.min(t)),
            (m, t) => m.or(t),
        }
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, _now: Moment) {
        match action {
            Action::Update(Object::Node(n)) | Action::UpdateStatus(Object::Node(n)) => {
                let name = n.metadata.name.as_deref().unwrap_or("");
                self.writer.failed(name, *error == WriteError::NotFound);
            }
            Action::UpdateStatus(Object::Pod(p)) if *error != WriteError::NotFound => {
                let node = node_name_of(p);
                if !node.is_empty() {
                    self.nodes_to_retry.insert(node.to_string());
                }
            }
            _ => {}
        }
    }
}
