//! The DaemonSet controller (upstream pkg/controller/daemon): one pod per eligible node,
//! pinned to it by required node affinity and placed by the scheduler, with the automatic
//! tolerations that keep daemon pods on not-ready and unreachable nodes, rolling updates with
//! `maxUnavailable` or `maxSurge`, creation/deletion expectations, Events and status.
//!
//! Start at [`DaemonSetController`]; `sync` is the per-DaemonSet reconcile, [`placement`]
//! decides which nodes should run a pod, `manage` (in [`sync`]) what to create and delete,
//! [`rolling`] what a rolling update replaces. A DaemonSet annotated [`NODE_AGENT`] describes
//! an agent every node's zonelab agent already runs (kube-proxy): the controller creates no
//! pods for it and derives its status from the nodes (docs/controllers.md).

pub mod placement;
mod rolling;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::events::{self, EventRecord, EventType};
use crate::workloads::util::{Expectations, WorkQueue, controller_key, controller_of};
use crate::{Action, Cache, Change, Controller, Key, Kind, Moment, Object, WriteError};
use runtime::Outbox;

pub use placement::{CONTROLLER_REVISION_HASH, POD_TEMPLATE_GENERATION, node_should_run};

/// Annotation marking a DaemonSet whose pods are the zonelab agents themselves (value: the
/// agent, e.g. `kube-proxy`): no pods are created for it; its status counts the nodes.
pub const NODE_AGENT: &str = "zonelab.io/node-agent";

/// Tunables, named after upstream's constants.
#[derive(Clone, Debug)]
pub struct DaemonSetConfig {
    /// Most creates or deletes issued per sync. Upstream `BurstReplicas = 250`
    /// (pkg/controller/daemon/daemon_controller.go).
    pub burst_replicas: i32,
    /// Unobserved expectations count as satisfied after this long. Upstream
    /// `ExpectationsTimeout = 5 * time.Minute` (pkg/controller/controller_utils.go).
    pub expectations_timeout_ms: Duration,
    /// Retry backoff after a failed write (client-go `DefaultControllerRateLimiter`).
    pub retry_base_ms: Duration,
    pub retry_max_ms: Duration,
    /// Backoff before deleting another failed daemon pod on the same node: upstream
    /// `failedPodsBackoff = flowcontrol.NewBackOff(1*time.Second, 15*time.Minute)`.
    pub failed_pod_backoff_initial_ms: Duration,
    pub failed_pod_backoff_max_ms: Duration,
}

impl Default for DaemonSetConfig {
    fn default() -> Self {
        DaemonSetConfig {
            burst_replicas: 250,
            expectations_timeout_ms: Duration::from_millis(5 * 60 * 1000),
            retry_base_ms: Duration::from_millis(5),
            retry_max_ms: Duration::from_millis(1_000_000),
            failed_pod_backoff_initial_ms: Duration::from_millis(1000),
            failed_pod_backoff_max_ms: Duration::from_millis(15 * 60 * 1000),
        }
    }
}

/// Per (DaemonSet, node) backoff for failed pods (upstream `flowcontrol.Backoff` entry).
#[derive(Clone, Copy, Debug)]
struct Backoff {
    delay_ms: Duration,
    last_ms: Moment,
}

/// The DaemonSet controller.
pub struct DaemonSetController {
    cfg: DaemonSetConfig,
    /// Pods by the uid of their controlling DaemonSet (own bookkeeping over the cache).
    pods_by_owner: BTreeMap<String, BTreeSet<Key>>,
    expectations: BTreeMap<Key, Expectations>,
    failed_backoff: BTreeMap<(Key, String), Backoff>,
    queue: WorkQueue,
    /// Writes and Events for the driver to poll; a newer status write of an object replaces
    /// a pending one (`push_coalesced`), so a burst of events yields one write.
    out: Outbox,
}

/// Node changes that can change where daemon pods belong (upstream `shouldIgnoreNodeUpdate`
/// ignores the rest): labels, spec (taints, unschedulable) and condition statuses.
fn node_placement_changed(old: &Node, new: &Node) -> bool {
    let conditions = |n: &Node| -> Vec<(String, String)> {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect()
    };
    old.metadata.labels != new.metadata.labels
        || old.spec != new.spec
        || conditions(old) != conditions(new)
}

impl DaemonSetController {
    pub fn new(cfg: DaemonSetConfig) -> DaemonSetController {
        let queue = WorkQueue::new(cfg.retry_base_ms, cfg.retry_max_ms);
        DaemonSetController {
            cfg,
            pods_by_owner: BTreeMap::new(),
            expectations: BTreeMap::new(),
            failed_backoff: BTreeMap::new(),
            queue,
            out: Outbox::new(),
        }
    }

    fn index_pod(&mut self, pod: &Pod, add: bool) {
        let Some((_, uid)) = controller_key(&pod.metadata, "DaemonSet") else {
            return;
        };
        let key = Key::of(&pod.metadata);
        if add {
            self.pods_by_owner.entry(uid).or_default().insert(key);
        } else if let Some(set) = self.pods_by_owner.get_mut(&uid) {
            set.remove(&key);
            if set.is_empty() {
                self.pods_by_owner.remove(&uid);
            }
        }
    }

    fn satisfied(&self, key: &Key, now: Moment) -> bool {
        self.expectations
            .get(key)
            .is_none_or(|e| e.satisfied(now, self.cfg.expectations_timeout_ms))
    }

    /// Record an Event about the DaemonSet `ds` (upstream `dsc.eventRecorder.Eventf(ds, …)`).
    fn record(
        &mut self,
        ds: &DaemonSet,
        type_: EventType,
        reason: &'static str,
        message: String,
        now: Moment,
    ) {
        let involved = events::object_ref("apps/v1", "DaemonSet", &ds.metadata);
        self.out.push_event(EventRecord::new(
            events::source::DAEMONSET,
            involved,
            type_,
            reason,
            message,
            now,
        ));
    }

    /// Count an observed create or delete against the owner's expectations; the pod
    /// control's SuccessfulCreate/SuccessfulDelete Events are recorded then.
    fn observe_pod(&mut self, cache: &Cache, change: &Change, now: Moment) {
        let pod = match change {
            Change::Applied {
                new: Object::Pod(p),
                ..
            }
            | Change::Deleted(Object::Pod(p)) => p,
            _ => return,
        };
        let Some((ds_key, _)) = controller_key(&pod.metadata, "DaemonSet") else {
            return;
        };
        let Some(exp) = self.expectations.get_mut(&ds_key) else {
            return;
        };
        let key = Key::of(&pod.metadata);
        let gone =
            matches!(change, Change::Deleted(_)) || pod.metadata.deletion_timestamp.is_some();
        let mut recorded = Vec::new();
        if gone && exp.deletes.remove(&key) {
            recorded.push(("SuccessfulDelete", format!("Deleted pod: {}", key.name)));
        }
        if matches!(change, Change::Applied { old: None, .. }) {
            exp.creates -= 1;
            if exp.creates >= 0 {
                recorded.push(("SuccessfulCreate", format!("Created pod: {}", key.name)));
            }
        }
        if let Some(ds) = cache.daemon_sets.get(&ds_key).cloned() {
            for (reason, message) in recorded {
                self.record(&ds, EventType::Normal, reason, message, now);
            }
        }
    }

    fn on_pod_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        let mut affected = BTreeSet::new();
        let owner = |p: &Pod| controller_key(&p.metadata, "DaemonSet").map(|(k, _)| k);
        if let Change::Applied {
            old: Some(Object::Pod(old)),
            ..
        } = change
        {
            self.index_pod(old, false);
            affected.extend(owner(old));
        }
        match change {
            Change::Applied {
                new: Object::Pod(p),
                ..
            } => {
                self.index_pod(p, true);
                affected.extend(owner(p));
            }
            Change::Deleted(Object::Pod(p)) => {
                self.index_pod(p, false);
                affected.extend(owner(p));
            }
            _ => {}
        }
        self.observe_pod(cache, change, now);
        for key in affected {
            self.sync(cache, &key, now);
        }
    }

    fn on_node_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        let relevant = match change {
            Change::Applied {
                new: Object::Node(new),
                old: Some(Object::Node(old)),
            } => node_placement_changed(old, new),
            _ => true,
        };
        if !relevant {
            return;
        }
        let keys: Vec<Key> = cache.daemon_sets.keys().cloned().collect();
        for key in keys {
            self.sync(cache, &key, now);
        }
    }

    fn push_status(&mut self, ds: DaemonSet) {
        let action = Action::UpdateStatus(Object::DaemonSet(Arc::new(ds)));
        self.out.push_coalesced(action);
    }

    fn forget(&mut self, key: &Key) {
        self.expectations.remove(key);
        self.queue.remove(key);
        self.failed_backoff.retain(|(k, _), _| k != key);
    }
}

impl Controller for DaemonSetController {
    fn name(&self) -> &'static str {
        "daemonset"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        self.pods_by_owner.clear();
        let pods: Vec<Arc<Pod>> = cache.pods.values().cloned().collect();
        for p in &pods {
            self.index_pod(p, true);
        }
        let keys: Vec<Key> = cache.daemon_sets.keys().cloned().collect();
        for k in keys {
            self.sync(cache, &k, now);
        }
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        match change.object() {
            Object::Pod(_) => self.on_pod_change(cache, change, now),
            Object::Node(_) => self.on_node_change(cache, change, now),
            Object::DaemonSet(ds) => {
                let key = Key::of(&ds.metadata);
                if matches!(change, Change::Deleted(_)) {
                    self.forget(&key);
                } else {
                    self.sync(cache, &key, now);
                }
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        for key in self.queue.pop_due(now) {
            self.sync(cache, &key, now);
        }
    }

    fn poll_timeout(&self) -> Option<Moment> {
        self.queue.next()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        let ds_key = match action {
            Action::Create(Object::Pod(p)) => {
                let key = controller_key(&p.metadata, "DaemonSet").map(|(k, _)| k);
                if let Some(e) = key.as_ref().and_then(|k| self.expectations.get_mut(k)) {
                    e.creates -= 1;
                }
                if let Some(owner) = controller_of(&p.metadata) {
                    // Upstream pod control: FailedCreate "Error creating: <err>" (Warning).
                    let err = match error {
                        WriteError::Invalid(m) | WriteError::Other(m) => m.clone(),
                        other => format!("{other:?}"),
                    };
                    let involved = k8s_openapi::api::core::v1::ObjectReference {
                        api_version: Some("apps/v1".to_string()),
                        kind: Some("DaemonSet".to_string()),
                        namespace: p.metadata.namespace.clone(),
                        name: Some(owner.name.clone()),
                        uid: Some(owner.uid.clone()),
                        ..Default::default()
                    };
                    self.out.push_event(EventRecord::new(
                        events::source::DAEMONSET,
                        involved,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {err}"),
                        now,
                    ));
                }
                key
            }
            Action::Delete {
                kind: Kind::Pod,
                key,
                ..
            } => {
                let owner = self
                    .expectations
                    .iter()
                    .find(|(_, e)| e.deletes.contains(key))
                    .map(|(k, _)| k.clone());
                if let Some(e) = owner.as_ref().and_then(|k| self.expectations.get_mut(k)) {
                    e.deletes.remove(key);
                }
                owner
            }
            Action::UpdateStatus(Object::DaemonSet(ds)) => Some(Key::of(&ds.metadata)),
            _ => None,
        };
        if let Some(key) = ds_key {
            tracing::debug!(%key, ?error, "daemonset write failed; requeueing");
            self.queue.retry(key, now);
        }
    }
}
