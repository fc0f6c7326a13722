//! The scheduler: binds pending pods to nodes with kube-scheduler semantics (default profile:
//! NodeUnschedulable, TaintToleration, NodeAffinity, NodeResourcesFit + LeastAllocated and
//! BalancedAllocation scoring, PodTopologySpread, required pod anti-affinity), and marks pods
//! that fit nowhere `PodScheduled=False/Unschedulable` with upstream's message.
//!
//! Start at [`Scheduler`]; one cycle is [`cycle::schedule_one`], the retry policy is
//! [`queue::SchedulingQueue`], per-node accounting (with assumed pods) is [`nodes::NodeTable`].
//!
//! Ties between equally scored nodes are broken at random, as upstream `selectHost` does, with
//! a `ChaCha8Rng` seeded from [`SchedulerConfig::seed`], so runs are reproducible.
//! Not implemented: preemption (the message reports it as upstream would with equal
//! priorities), required pod affinity, preferred node/pod affinity scores, host ports,
//! volumes, image locality, extenders.

mod affinity;
mod cycle;
mod nodes;
mod queue;
mod resources;
pub mod selectors;
pub mod simulate;
mod spread;
mod spread_counts;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sampling;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use resources::{PodUsage, Resources, node_allocatable, parse_milli, pod_requests};

use self::cycle::{CycleParams, Snapshot, is_terminal, schedule_one};
use self::nodes::NodeTable;
use self::queue::{QueueTiming, SchedulingQueue};
use self::selectors::Selector;
use self::spread_counts::{Placed, SpreadCounts};
use crate::events::{self, EventRecord, EventType};
use crate::time::to_time;
use crate::{Action, Cache, Change, Controller, Key, Moment, Object, WriteError};
use runtime::Outbox;
use runtime::time::span_secs;

/// Scheduler settings, named after upstream's `KubeSchedulerConfiguration` fields.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Profile `schedulerName`; pods with this name (or none) are ours. Upstream default
    /// `v1.DefaultSchedulerName` = `default-scheduler` (k8s.io/api/core/v1/types.go).
    pub scheduler_name: String,
    /// `podInitialBackoffSeconds`; upstream default 1 (pkg/scheduler/apis/config/v1/defaults.go).
    pub pod_initial_backoff_seconds: i64,
    /// `podMaxBackoffSeconds`; upstream default 10 (same file).
    pub pod_max_backoff_seconds: i64,
    /// How long a pod may sit in the unschedulable pool before it is retried anyway. Upstream
    /// `DefaultPodMaxInUnschedulablePodsDuration` = 5 min
    /// (pkg/scheduler/internal/queue/scheduling_queue.go).
    pub pod_max_in_unschedulable_pods_duration_seconds: i64,
    /// `percentageOfNodesToScore`; 0 means upstream's adaptive rule (50% minus 1% per 125
    /// nodes, at least 5%, at least 100 nodes). Upstream default 0 (unset).
    pub percentage_of_nodes_to_score: u32,
    /// Seed of the tie-break RNG (not an upstream setting; upstream uses a global RNG).
    pub seed: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".to_string(),
            pod_initial_backoff_seconds: 1,
            pod_max_backoff_seconds: 10,
            pod_max_in_unschedulable_pods_duration_seconds: 300,
            percentage_of_nodes_to_score: 0,
            seed: 0,
        }
    }
}

/// Bound on [`Scheduler`]'s cache of default spreading selectors (one per distinct pod label
/// set; StatefulSet pods each have their own).
const MAX_DEFAULT_SELECTORS: usize = 4096;

/// A pod we bound but have not yet seen bound (upstream's assumed pod in the scheduler cache).
#[derive(Clone, Debug)]
struct Assumed {
    node: String,
    uid: Option<String>,
    usage: PodUsage,
    priority: i32,
}

/// The scheduler controller. See the module docs.
pub struct Scheduler {
    config: SchedulerConfig,
    rng: ChaCha8Rng,
    nodes: NodeTable,
    assumed: BTreeMap<Key, Assumed>,
    /// Assumed pods' uid → node, for the plugins' pod → node lookups (never iterated).
    assumed_nodes: HashMap<String, String>,
    /// Placed (bound or assumed) pods with required anti-affinity terms.
    anti_affinity_pods: BTreeSet<Key>,
    /// Placed pods counted per (namespace, selector, node) for topology spreading.
    spread_counts: SpreadCounts,
    /// Default spreading selectors by (namespace, pod labels): a scan of the namespace's
    /// Services and ReplicaSets each, so kept until one of those changes (bounded in size).
    default_selectors: BTreeMap<(String, Option<BTreeMap<String, String>>), Selector>,
    queue: SchedulingQueue,
    next_start_node: usize,
    /// Writes and Events for the driver to poll.
    out: Outbox,
}

fn pod_of(obj: &Object) -> Option<&Arc<Pod>> {
    match obj {
        Object::Pod(p) => Some(p),
        _ => None,
    }
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Bound and not terminal: the pod takes resources on its node.
fn occupies(pod: &Pod) -> Option<&str> {
    if is_terminal(pod) {
        None
    } else {
        bound_node(pod)
    }
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Scheduler {
        let timing = QueueTiming {
            initial_backoff_ms: span_secs(config.pod_initial_backoff_seconds),
            max_backoff_ms: span_secs(config.pod_max_backoff_seconds),
            max_in_unschedulable_ms: span_secs(
                config.pod_max_in_unschedulable_pods_duration_seconds,
            ),
        };
        Scheduler {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            nodes: NodeTable::default(),
            assumed: BTreeMap::new(),
            assumed_nodes: HashMap::new(),
            anti_affinity_pods: BTreeSet::new(),
            spread_counts: SpreadCounts::default(),
            default_selectors: BTreeMap::new(),
            queue: SchedulingQueue::new(timing),
            next_start_node: 0,
            out: Outbox::new(),
        }
    }

    /// Pods waiting to be scheduled (active, backing off or unschedulable).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Pods waiting in the unschedulable pool.
    pub fn unschedulable(&self) -> usize {
        self.queue.unschedulable_len()
    }

    /// Pods bound by us whose binding has not been observed yet.
    pub fn assumed(&self) -> usize {
        self.assumed.len()
    }

    /// True if this scheduler should place the pod now.
    fn wants(&self, pod: &Pod) -> bool {
        let Some(spec) = pod.spec.as_ref() else {
            return false;
        };
        let name = spec
            .scheduler_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("default-scheduler");
        bound_node(pod).is_none()
            && pod.metadata.deletion_timestamp.is_none()
            && !is_terminal(pod)
            && name == self.config.scheduler_name
            && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
    }

    fn forget_assumed(&mut self, key: &Key) {
        if let Some(a) = self.assumed.remove(key) {
            self.nodes.sub_usage(&a.node, &a.usage);
            if let Some(uid) = &a.uid {
                self.assumed_nodes.remove(uid);
            }
            self.anti_affinity_pods.remove(key);
            self.spread_counts.forget_assumed(key, &self.nodes);
        }
    }

    /// Re-record how the pod at `key` (its latest state, `None` if gone) counts for spreading.
    fn refresh_spread(&mut self, key: &Key, pod: Option<&Pod>) {
        let placed = pod.and_then(|p| {
            let assumed = p
                .metadata
                .uid
                .as_ref()
                .and_then(|u| self.assumed_nodes.get(u));
            Placed::of(p, assumed.map(String::as_str))
        });
        self.spread_counts.set(key, placed, &self.nodes);
    }

    fn assume(&mut self, key: &Key, pod: &Pod, node: &str) {
        let usage = pod_requests(pod);
        self.nodes.add_usage(node, &usage);
        let uid = pod.metadata.uid.clone();
        if let Some(u) = &uid {
            self.assumed_nodes.insert(u.clone(), node.to_string());
        }
        if affinity::has_required_anti_affinity(pod) {
            self.anti_affinity_pods.insert(key.clone());
        }
        self.assumed.insert(
            key.clone(),
            Assumed {
                node: node.to_string(),
                uid,
                usage,
                priority: priority(pod),
            },
        );
        self.refresh_spread(key, Some(pod));
    }

    /// Account a pod event: node usage, assumed pods, the queue, and the cluster events that
    /// retry unschedulable pods (an assigned pod deleted, finished or relabelled).
    fn on_pod_change(&mut self, new: Option<&Arc<Pod>>, old: Option<&Arc<Pod>>, now: Moment) {
        let Some(meta) = new.or(old).map(|p| &p.metadata) else {
            return;
        };
        let key = Key::of(meta);
        let old_node = old.and_then(|p| occupies(p));
        if let (Some(o), Some(node)) = (old, old_node) {
            self.nodes.sub_usage(node, &pod_requests(o));
            self.anti_affinity_pods.remove(&key);
        }
        let resolved = match new {
            None => true,
            Some(p) => {
                bound_node(p).is_some()
                    || p.metadata.uid != self.assumed.get(&key).and_then(|a| a.uid.clone())
            }
        };
        if self.assumed.contains_key(&key) && resolved {
            self.forget_assumed(&key);
        }
        let new_node = new.and_then(|p| occupies(p));
        if let (Some(p), Some(node)) = (new, new_node) {
            self.nodes.add_usage(node, &pod_requests(p));
            if affinity::has_required_anti_affinity(p) {
                self.anti_affinity_pods.insert(key.clone());
            }
        }
        self.refresh_spread(&key, new.map(|p| &**p));
        let relabelled = old_node.is_some()
            && new_node.is_some()
            && old.map(|p| &p.metadata.labels) != new.map(|p| &p.metadata.labels);
        if (old_node.is_some() && new_node.is_none()) || relabelled {
            self.queue.move_all_unschedulable(now);
        }
        match new {
            Some(p) if self.wants(p) && !self.assumed.contains_key(&key) => {
                if !self.queue.contains(&key) {
                    self.queue.add(&key, priority(p));
                } else if old
                    .is_none_or(|o| o.spec != p.spec || o.metadata.labels != p.metadata.labels)
                {
                    self.queue.updated(&key, priority(p), now);
                }
            }
            _ => self.queue.forget(&key),
        }
    }

    /// Run scheduling cycles until the active queue is empty.
    fn schedule_pending(&mut self, cache: &Cache, now: Moment) {
        while let Some(key) = self.queue.pop() {
            let Some(pod) = cache.pods.get(&key) else {
                self.queue.forget(&key);
                continue;
            };
            if !self.wants(pod) || self.assumed.contains_key(&key) {
                self.queue.forget(&key);
                continue;
            }
            let default = self.default_selector(cache, pod);
            let keys = spread::topology_keys(pod);
            for k in &keys {
                self.nodes.prepare_topology(k);
            }
            for selector in spread::count_selectors(cache, pod, default.as_ref()) {
                self.spread_counts
                    .prepare(&key.namespace, &selector, &keys, &self.nodes);
            }
            let snap = Snapshot {
                cache,
                nodes: &self.nodes,
                assumed_nodes: &self.assumed_nodes,
                anti_affinity_pods: &self.anti_affinity_pods,
                spread_counts: &self.spread_counts,
                default_selector: default.as_ref(),
            };
            let mut params = CycleParams {
                percentage_of_nodes_to_score: self.config.percentage_of_nodes_to_score,
                next_start_node: &mut self.next_start_node,
                rng: &mut self.rng,
            };
            match schedule_one(&snap, pod, &mut params) {
                Ok(node) => {
                    self.assume(&key, pod, &node);
                    self.queue.forget(&key);
                    tracing::debug!(pod = %key, %node, "binding");
                    // Upstream `bindingCycle`: Scheduled "Successfully assigned ns/pod to node".
                    self.out.push_event(EventRecord::new(
                        events::source::SCHEDULER,
                        events::pod_ref(pod),
                        EventType::Normal,
                        "Scheduled",
                        format!("Successfully assigned {key} to {node}"),
                        now,
                    ));
                    self.out.push_action(Action::Bind { pod: key, node });
                }
                Err(message) => {
                    tracing::debug!(pod = %key, %message, "unschedulable");
                    // Upstream `handleSchedulingFailure`: FailedScheduling with the fit error.
                    self.out.push_event(EventRecord::new(
                        events::source::SCHEDULER,
                        events::pod_ref(pod),
                        EventType::Warning,
                        "FailedScheduling",
                        message.clone(),
                        now,
                    ));
                    self.mark_unschedulable(pod, message, now);
                    self.queue.unschedulable(&key, now);
                }
            }
        }
    }

    /// The pod's default spreading selector when it has no explicit spread constraint (else
    /// `None`: the plugin does not read it), from `default_selectors` or computed and kept.
    fn default_selector(&mut self, cache: &Cache, pod: &Pod) -> Option<Selector> {
        let spec = pod.spec.as_ref()?;
        if spec
            .topology_spread_constraints
            .as_ref()
            .is_some_and(|c| !c.is_empty())
        {
            return None;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let key = (ns.to_string(), pod.metadata.labels.clone());
        if let Some(s) = self.default_selectors.get(&key) {
            return Some(s.clone());
        }
        if self.default_selectors.len() >= MAX_DEFAULT_SELECTORS {
            self.default_selectors.clear();
        }
        let selector = spread::default_selector(cache, ns, pod.metadata.labels.as_ref());
        self.default_selectors.insert(key, selector.clone());
        Some(selector)
    }

    /// A Service or ReplicaSet changed: default spreading selectors may differ.
    fn selectors_changed(&mut self) {
        self.default_selectors.clear();
    }

    /// Set `PodScheduled=False, reason Unschedulable` unless the pod already says exactly that.
    fn mark_unschedulable(&mut self, pod: &Pod, message: String, now: Moment) {
        let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        let current = conds.and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(&message)
        }) {
            return;
        }
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone(),
            _ => Some(to_time(now)),
        };
        let mut updated = pod.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "PodScheduled");
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message),
            last_transition_time: transition,
            ..PodCondition::default()
        });
        self.out
            .push_action(Action::UpdateStatus(Object::Pod(Arc::new(updated))));
    }
}

impl Controller for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    /// Pods and Nodes only: kube-scheduler's role lists no Leases, EndpointSlices, … .
    fn kinds(&self) -> &'static [runtime::Kind] {
        &[runtime::Kind::Pod, runtime::Kind::Node]
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        self.nodes.load(cache.nodes.values());
        for pod in cache.pods.values() {
            self.on_pod_change(Some(pod), None, now);
        }
        self.schedule_pending(cache, now);
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        match change {
            Change::Applied {
                new: Object::Node(n),
                ..
            } => {
                if self.nodes.upsert(n.clone()) {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Change::Deleted(Object::Node(n)) => {
                self.nodes.remove(n.metadata.name.as_deref().unwrap_or(""))
            }
            Change::Applied {
                new: Object::Pod(p),
                old,
            } => {
                self.on_pod_change(Some(p), old.as_ref().and_then(pod_of), now);
            }
            Change::Deleted(Object::Pod(p)) => self.on_pod_change(None, Some(p), now),
            Change::Applied {
                new: Object::Service(_) | Object::ReplicaSet(_),
                ..
            }
            | Change::Deleted(Object::Service(_) | Object::ReplicaSet(_)) => {
                return self.selectors_changed();
            }
            _ => return,
        }
        if self.queue.has_active() {
            self.schedule_pending(cache, now);
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        self.queue.tick(now);
        self.schedule_pending(cache, now);
    }

    fn poll_timeout(&self) -> Option<Moment> {
        self.queue.next_wakeup()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        match action {
            Action::Bind { pod, node } => {
                tracing::debug!(%pod, %node, ?error, "binding failed");
                let prio = self.assumed.get(pod).map(|a| a.priority).unwrap_or(0);
                self.forget_assumed(pod);
                self.queue.add(pod, prio);
                self.queue.errored(pod, now);
            }
            Action::UpdateStatus(obj) => self.queue.errored(&obj.key(), now),
            _ => {}
        }
    }
}
