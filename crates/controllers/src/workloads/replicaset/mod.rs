//! The ReplicaSet controller (upstream pkg/controller/replicaset): keeps `spec.replicas` active
//! pods per ReplicaSet, with creation/deletion expectations so late-observed writes never
//! cause duplicate creates, and reports status.
//!
//! Start at [`ReplicaSetController`]; `sync` is the per-ReplicaSet reconcile.

#[cfg(test)]
mod conflict_tests;
mod rank;
mod tally;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::events::{self, EventRecord, EventType};
use crate::workloads::util::{
    Expectations, WorkQueue, available_at, controller_key, owner_ref, pod_is_active,
    selector_matches,
};
use crate::{Action, Cache, Change, Controller, Key, Kind, Moment, Object, WriteError};
use runtime::Outbox;

pub use rank::{POD_DELETION_COST, pods_to_delete};
use tally::{Counts, Tally};

/// Tunables, named after upstream's constants and flags.
#[derive(Clone, Debug)]
pub struct ReplicaSetConfig {
    /// Most creates or deletes issued per sync. Upstream `BurstReplicas = 500`
    /// (pkg/controller/replicaset/replica_set.go).
    pub burst_replicas: i32,
    /// After this long, unobserved expectations are treated as satisfied. Upstream
    /// `ExpectationsTimeout = 5 * time.Minute` (pkg/controller/controller_utils.go).
    pub expectations_timeout_ms: Duration,
    /// First retry delay after a failed write. Upstream `DefaultControllerRateLimiter`
    /// (client-go util/workqueue): exponential from 5ms.
    pub retry_base_ms: Duration,
    /// Retry delay cap: 1000s in `DefaultControllerRateLimiter`.
    pub retry_max_ms: Duration,
}

impl Default for ReplicaSetConfig {
    fn default() -> Self {
        ReplicaSetConfig {
            burst_replicas: 500,
            expectations_timeout_ms: Duration::from_millis(5 * 60 * 1000),
            retry_base_ms: Duration::from_millis(5),
            retry_max_ms: Duration::from_millis(1_000_000),
        }
    }
}

/// The ReplicaSet controller.
pub struct ReplicaSetController {
    cfg: ReplicaSetConfig,
    /// Pods by the uid of their controlling ReplicaSet (own bookkeeping over the cache,
    /// holding the same `Arc`s: a sync reads its pods without a lookup per pod).
    pods_by_owner: BTreeMap<String, BTreeMap<Key, Arc<Pod>>>,
    /// Running status counts per ReplicaSet over that index.
    tally: Tally,
    expectations: BTreeMap<Key, Expectations>,
    queue: WorkQueue,
    /// Writes and Events for the driver to poll; a newer status write of an object replaces
    /// a pending one (`push_coalesced`), so a burst of events yields one write.
    out: Outbox,
}

const RS_API_VERSION: &str = "apps/v1";

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_min_ready(rs: &ReplicaSet) -> i32 {
    rs.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

impl ReplicaSetController {
    pub fn new(cfg: ReplicaSetConfig) -> ReplicaSetController {
        let queue = WorkQueue::new(cfg.retry_base_ms, cfg.retry_max_ms);
        ReplicaSetController {
            cfg,
            pods_by_owner: BTreeMap::new(),
            tally: Tally::default(),
            expectations: BTreeMap::new(),
            queue,
            out: Outbox::new(),
        }
    }

    fn push_status(&mut self, rs: ReplicaSet) {
        let action = Action::UpdateStatus(Object::ReplicaSet(Arc::new(rs)));
        self.out.push_coalesced(action);
    }

    /// Upstream `updateReplicaSetStatus` retries a status write that lost a race once, with a
    /// GET/PUT: the same status on the object as stored now. The status subresource write
    /// without a `resourceVersion` is that retry in one request (it replaces the status only,
    /// as the PUT after the GET does). Without it the write was retried from the informer's
    /// copy, which lags the controller's own last write and conflicted again (1,258 conflicts
    /// while 1,500 pods started, docs/performance.md). False when this was already the retry
    /// (the caller requeues, as upstream returns the error).
    fn retry_status_on_conflict(&mut self, rs: &ReplicaSet) -> bool {
        if rs.metadata.resource_version.is_none() {
            return false;
        }
        // A newer status write of this ReplicaSet is queued: it supersedes this one.
        if !self
            .out
            .has_pending_update(Kind::ReplicaSet, &Key::of(&rs.metadata))
        {
            let mut retry = rs.clone();
            retry.metadata.resource_version = None;
            self.push_status(retry);
        }
        true
    }

    fn index_pod(&mut self, pod: &Arc<Pod>, add: bool) {
        let Some((_, uid)) = controller_key(&pod.metadata, "ReplicaSet") else {
            return;
        };
        let key = Key::of(&pod.metadata);
        if add {
            let set = self.pods_by_owner.entry(uid.clone()).or_default();
            if let Some(prev) = set.insert(key, pod.clone()) {
                self.tally.pod(&uid, &prev, -1);
            }
            self.tally.pod(&uid, pod, 1);
        } else if let Some(set) = self.pods_by_owner.get_mut(&uid) {
            if let Some(prev) = set.remove(&key) {
                self.tally.pod(&uid, &prev, -1);
            }
            if set.is_empty() {
                self.pods_by_owner.remove(&uid);
            }
        }
    }

    /// Pods controlled by `rs` that match its selector (upstream claims these; adoption of
    /// matching orphans and release of non-matching pods are not done here).
    fn owned_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let uid = rs.metadata.uid.as_deref().unwrap_or("");
        let Some(spec) = rs.spec.as_ref() else {
            return Vec::new();
        };
        self.pods_by_owner
            .get(uid)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|p| selector_matches(&spec.selector, p.metadata.labels.as_ref()))
            .cloned()
            .collect()
    }

    fn satisfied(&self, key: &Key, now: Moment) -> bool {
        self.expectations.get(key).is_none_or(|e| {
            (e.creates <= 0 && e.deletes.is_empty())
                || now >= e.set_at + self.cfg.expectations_timeout_ms
        })
    }

    fn observe_pod(&mut self, cache: &Cache, change: &Change, now: Moment) {
        let pod = match change {
            Change::Applied {
                new: Object::Pod(p),
                ..
            }
            | Change::Deleted(Object::Pod(p)) => p,
            _ => return,
        };
        let Some((rs, _)) = controller_key(&pod.metadata, "ReplicaSet") else {
            return;
        };
        let Some(exp) = self.expectations.get_mut(&rs) else {
            return;
        };
        let key = Key::of(&pod.metadata);
        let gone =
            matches!(change, Change::Deleted(_)) || pod.metadata.deletion_timestamp.is_some();
        let name = key.name.clone();
        let mut events = Vec::new();
        if gone && exp.deletes.remove(&key) {
            events.push(("SuccessfulDelete", format!("Deleted pod: {name}")));
        }
        if matches!(change, Change::Applied { old: None, .. }) {
            exp.creates -= 1;
            if exp.creates >= 0 {
                events.push(("SuccessfulCreate", format!("Created pod: {name}")));
            }
        }
        for (reason, message) in events {
            self.record(cache, &rs, EventType::Normal, reason, message, now);
        }
    }

    /// Record an event about the ReplicaSet `rs` (upstream `rsc.eventRecorder.Eventf(rs, …)`).
    fn record(
        &mut self,
        cache: &Cache,
        rs: &Key,
        type_: EventType,
        reason: &'static str,
        message: String,
        now: Moment,
    ) {
        let Some(obj) = cache.replica_sets.get(rs) else {
            return;
        };
        let involved = events::object_ref(RS_API_VERSION, "ReplicaSet", &obj.metadata);
        self.out.push_event(EventRecord::new(
            events::source::REPLICASET,
            involved,
            type_,
            reason,
            message,
            now,
        ));
    }

    fn on_pod_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        let mut affected = BTreeSet::new();
        if let Change::Applied {
            old: Some(Object::Pod(old)),
            ..
        } = change
        {
            self.index_pod(old, false);
            affected.extend(controller_key(&old.metadata, "ReplicaSet").map(|(k, _)| k));
        }
        match change {
            Change::Applied {
                new: Object::Pod(p),
                ..
            } => {
                self.index_pod(p, true);
                affected.extend(controller_key(&p.metadata, "ReplicaSet").map(|(k, _)| k));
            }
            Change::Deleted(Object::Pod(p)) => {
                self.index_pod(p, false);
                affected.extend(controller_key(&p.metadata, "ReplicaSet").map(|(k, _)| k));
            }
            _ => {}
        }
        self.observe_pod(cache, change, now);
        for key in affected {
            self.sync(cache, &key, now);
        }
    }

    /// Reconcile one ReplicaSet: create or delete pods (when expectations are satisfied),
    /// then write status and schedule the next availability check.
    fn sync(&mut self, cache: &Cache, key: &Key, now: Moment) {
        let Some(rs) = cache.replica_sets.get(key).cloned() else {
            self.expectations.remove(key);
            self.queue.remove(key);
            return;
        };
        let min_ready = rs_min_ready(&rs);
        let manage = self.satisfied(key, now) && rs.metadata.deletion_timestamp.is_none();
        // minReadySeconds 0: the running counts, and the pods themselves only to pick the
        // victims of a scale-down.
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let tallied = (min_ready <= 0).then(|| {
            let pods = self
                .pods_by_owner
                .get(&uid)
                .into_iter()
                .flat_map(BTreeMap::values);
            self.tally.counts(&rs, pods)
        });
        let listed = tallied.is_none_or(|c| manage && c.active > rs_replicas(&rs));
        let pods = if listed {
            self.owned_pods(&rs)
        } else {
            Vec::new()
        };
        let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| pod_is_active(p)).collect();
        #[cfg(test)]
        if let Some(c) = tallied {
            let all = self.owned_pods(&rs);
            assert_eq!(
                c,
                counts(&rs, all.iter(), 0, now),
                "the running counts of {key}"
            );
        }
        let before = self.out.pending_actions();
        if manage {
            let n = tallied.map_or(active.len(), |c| c.active as usize);
            self.manage_replicas(cache, &rs, n, &active, now);
        }
        if let Some(e) = self.expectations.get(key)
            && !self.satisfied(key, now)
        {
            self.queue
                .add_at(key.clone(), e.set_at + self.cfg.expectations_timeout_ms);
        }
        let status = status_from(
            &rs,
            tallied.unwrap_or_else(|| counts(&rs, active.iter().copied(), min_ready, now)),
        );
        // A pending write is replaced even by an unchanged status: it may be stale now.
        if rs.status.as_ref() != Some(&status) || self.out.has_pending_update(Kind::ReplicaSet, key)
        {
            let mut copy = (*rs).clone();
            copy.status = Some(status);
            self.push_status(copy);
        }
        if let Some(t) = active
            .iter()
            .filter_map(|p| available_at(p, min_ready))
            .filter(|t| *t > now)
            .min()
        {
            self.queue.add_at(key.clone(), t);
        }
        if self.out.pending_actions() == before {
            self.queue.forget(key);
        }
    }

    /// Create or delete pods towards `spec.replicas`, with `n_active` active pods (`active`
    /// lists them whenever there are too many).
    fn manage_replicas(
        &mut self,
        cache: &Cache,
        rs: &ReplicaSet,
        n_active: usize,
        active: &[&Arc<Pod>],
        now: Moment,
    ) {
        let key = Key::of(&rs.metadata);
        let diff = n_active as i64 - i64::from(rs_replicas(rs));
        let burst = i64::from(self.cfg.burst_replicas.max(1));
        if diff < 0 {
            let n = (-diff).min(burst);
            // One body shared by the burst's creates (the API copies what it stores).
            let Some(pod) = pod_from_template(rs).map(Arc::new) else {
                return;
            };
            self.expectations.insert(
                key,
                Expectations {
                    creates: n,
                    deletes: BTreeSet::new(),
                    set_at: now,
                },
            );
            for _ in 0..n {
                self.out
                    .push_action(Action::Create(Object::Pod(Arc::clone(&pod))));
            }
        } else if diff > 0 {
            let n = diff.min(burst) as usize;
            let related = self.related_pods(cache, rs);
            let related: Vec<&Arc<Pod>> = related.iter().collect();
            let victims = pods_to_delete(active, &related, n);
            let deletes: BTreeSet<Key> = victims.iter().map(|p| Key::of(&p.metadata)).collect();
            self.expectations.insert(
                key,
                Expectations {
                    creates: 0,
                    deletes,
                    set_at: now,
                },
            );
            for p in victims {
                self.out.push_action(Action::Delete {
                    kind: Kind::Pod,
                    key: Key::of(&p.metadata),
                    uid: p.metadata.uid.clone(),
                    grace_period_seconds: None,
                });
            }
        }
    }

    /// Active pods of `rs` and of the ReplicaSets sharing its controller (upstream
    /// `getIndirectlyRelatedPods`), used to rank pods doubled up on a node.
    fn related_pods(&self, cache: &Cache, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let owner = crate::workloads::util::controller_of(&rs.metadata).map(|r| r.uid.clone());
        let siblings: Vec<&Arc<ReplicaSet>> = match owner {
            None => vec![],
            Some(uid) => cache
                .replica_sets
                .range(Key::new(&ns, "")..)
                .take_while(|(k, _)| k.namespace == ns)
                .map(|(_, r)| r)
                .filter(|r| {
                    crate::workloads::util::controller_of(&r.metadata).is_some_and(|o| o.uid == uid)
                })
                .collect(),
        };
        let mut out: Vec<Arc<Pod>> = Vec::new();
        let mut seen = BTreeSet::new();
        for r in siblings
            .into_iter()
            .map(|r| &**r)
            .chain(std::iter::once(rs))
        {
            if !seen.insert(r.metadata.uid.clone()) {
                continue;
            }
            out.extend(self.owned_pods(r).into_iter().filter(|p| pod_is_active(p)));
        }
        out
    }
}

/// A new pod from the ReplicaSet's template (upstream `GetPodFromTemplate`).
fn pod_from_template(rs: &ReplicaSet) -> Option<Pod> {
    let template = rs.spec.as_ref()?.template.as_ref()?;
    let tmeta = template.metadata.clone().unwrap_or_default();
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or(""))),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner_ref(RS_API_VERSION, "ReplicaSet", &rs.metadata)]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// Upstream `calculateStatus`: counts over the active pods; keeps existing conditions.
/// The status counts of `rs`'s active, selected `pods` at `now`.
fn counts<'a>(
    rs: &ReplicaSet,
    pods: impl IntoIterator<Item = &'a Arc<Pod>>,
    min_ready: i32,
    now: Moment,
) -> Counts {
    let Some(spec) = rs.spec.as_ref() else {
        return Counts::default();
    };
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    Counts::of(pods, &spec.selector, &template_labels, min_ready, now)
}

/// Upstream `calculateStatus` from the counts.
fn status_from(rs: &ReplicaSet, c: Counts) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    status.replicas = c.active;
    status.fully_labeled_replicas = Some(c.fully_labeled);
    status.ready_replicas = Some(c.ready);
    status.available_replicas = Some(c.available);
    status.observed_generation = Some(rs.metadata.generation.unwrap_or(0));
    status
}

impl Controller for ReplicaSetController {
    fn name(&self) -> &'static str {
        "replicaset"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        self.pods_by_owner.clear();
        self.tally.clear();
        let pods: Vec<Arc<Pod>> = cache.pods.values().cloned().collect();
        for p in &pods {
            self.index_pod(p, true);
        }
        let keys: Vec<Key> = cache.replica_sets.keys().cloned().collect();
        for k in keys {
            self.sync(cache, &k, now);
        }
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        match change.object() {
            Object::Pod(_) => self.on_pod_change(cache, change, now),
            Object::ReplicaSet(rs) => {
                let key = Key::of(&rs.metadata);
                if matches!(change, Change::Deleted(_)) {
                    self.expectations.remove(&key);
                    self.queue.remove(&key);
                    self.tally.remove(rs.metadata.uid.as_deref().unwrap_or(""));
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
        if let (Action::UpdateStatus(Object::ReplicaSet(rs)), WriteError::Conflict) =
            (action, error)
            && self.retry_status_on_conflict(rs)
        {
            return;
        }
        if let Action::Create(Object::Pod(p)) = action
            && let Some(owner) = crate::workloads::util::controller_of(&p.metadata)
        {
            // Upstream `manageReplicas`: FailedCreate "Error creating: <err>" (Warning).
            let err = match error {
                WriteError::Invalid(m) | WriteError::Other(m) => m.clone(),
                other => format!("{other:?}"),
            };
            let involved = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some(RS_API_VERSION.to_string()),
                kind: Some("ReplicaSet".to_string()),
                namespace: p.metadata.namespace.clone(),
                name: Some(owner.name.clone()),
                uid: Some(owner.uid.clone()),
                ..Default::default()
            };
            self.out.push_event(EventRecord::new(
                events::source::REPLICASET,
                involved,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating: {err}"),
                now,
            ));
        }
        let rs = match action {
            Action::Create(Object::Pod(p)) => {
                let rs = controller_key(&p.metadata, "ReplicaSet").map(|(k, _)| k);
                if let Some(e) = rs.as_ref().and_then(|k| self.expectations.get_mut(k)) {
                    e.creates -= 1;
                }
                rs
            }
            Action::Delete {
                kind: Kind::Pod,
                key,
                ..
            } => {
                let rs = self
                    .expectations
                    .iter()
                    .find(|(_, e)| e.deletes.contains(key))
                    .map(|(k, _)| k.clone());
                if let Some(e) = rs.as_ref().and_then(|k| self.expectations.get_mut(k)) {
                    e.deletes.remove(key);
                }
                rs
            }
            Action::UpdateStatus(Object::ReplicaSet(rs)) => Some(Key::of(&rs.metadata)),
            _ => None,
        };
        if let Some(rs) = rs {
            tracing::debug!(%rs, ?error, "replicaset write failed; requeueing");
            self.queue.retry(rs, now);
        }
    }
}
