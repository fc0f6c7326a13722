//! The StatefulSet controller (upstream pkg/controller/statefulset): pods with stable names
//! `<set>-<ordinal>`, created in order and each waited for until Running and Ready
//! (`OrderedReady`) or all at once (`Parallel`), removed in reverse order, rolled to a new
//! template from the highest ordinal down to `partition` one pod at a time (`RollingUpdate`) or
//! only when the user deletes them (`OnDelete`); ControllerRevisions record each template.
//!
//! The failure trap is upstream's by construction: a pod name is reused only once the old pod
//! object is gone, so a pod whose node died stays `Terminating` (its kubelet never confirms)
//! and is not replaced until it is force-deleted or its Node object is deleted (pod GC).
//!
//! Start at [`StatefulSetController`]; `sync` is the per-set reconcile, `update_pods` the
//! ordered pod walk (upstream `updateStatefulSet`), [`revision`] the history, [`pods`] the
//! identity of each pod.

pub mod pods;
pub mod revision;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;

use crate::events::{self, EventRecord, EventType};
use crate::workloads::util::{
    WorkQueue, available_at, controller_key, owner_ref, selector_matches,
};
use crate::{Action, Cache, Change, Controller, Key, Kind, Moment, Object, WriteError};
use pods::{
    KIND, has_ended, identity_matches, is_healthy, is_running_and_available, is_running_and_ready,
    is_terminating, new_pod, ordinal_of, pod_name, revision_of, with_identity,
};
use revision::{RevisionWrite, Revisions};
use runtime::Outbox;

/// Upstream event source of the StatefulSet controller (`statefulset-controller`).
pub const COMPONENT: &str = "statefulset-controller";

/// Tunables, named after upstream's constants.
#[derive(Clone, Debug)]
pub struct StatefulSetConfig {
    /// First retry delay after a failed write: upstream's `DefaultControllerRateLimiter`
    /// (client-go util/workqueue) starts at 5 ms ...
    pub retry_base_ms: Duration,
    /// ... and doubles up to 1000 s.
    pub retry_max_ms: Duration,
    /// A write issued but never observed is forgotten after this long (upstream
    /// `ExpectationsTimeout = 5 * time.Minute`, pkg/controller/controller_utils.go).
    pub in_flight_timeout_ms: Duration,
}

impl Default for StatefulSetConfig {
    fn default() -> Self {
        StatefulSetConfig {
            retry_base_ms: Duration::from_millis(5),
            retry_max_ms: Duration::from_millis(1_000_000),
            in_flight_timeout_ms: Duration::from_millis(5 * 60 * 1000),
        }
    }
}

/// A pod write issued and not yet seen through the informer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodOp {
    Create,
    Delete,
    /// Adopt or release: an update of the pod's owner references.
    Claim,
    /// Restore the pod's identity labels.
    Update,
}

#[derive(Clone, Debug)]
struct InFlight {
    set: Key,
    op: PodOp,
    at: Moment,
}

/// What the ordered walk over a set's pods decided.
struct Walk<'a> {
    set: &'a StatefulSet,
    revs: &'a Revisions,
    /// `spec.replicas` slots by ordinal offset: the pod there, if it exists.
    slots: Vec<Option<&'a Arc<Pod>>>,
    /// Pods whose ordinal is outside the slots, highest ordinal first.
    condemned: Vec<&'a Arc<Pod>>,
    start: i32,
    monotonic: bool,
    min_ready_seconds: i32,
}

/// The StatefulSet controller.
pub struct StatefulSetController {
    cfg: StatefulSetConfig,
    queue: WorkQueue,
    /// Writes and Events for the driver to poll; a newer status write of an object replaces
    /// a pending one (`push_coalesced`), so a burst of events yields one write.
    out: Outbox,
    /// Pod creates and deletes issued and not yet observed, by pod key: a pod name is never
    /// asked for twice while the informer catches up.
    in_flight: BTreeMap<Key, InFlight>,
    /// ControllerRevision writes issued and not yet observed, by revision key.
    revisions_in_flight: BTreeMap<Key, Moment>,
}

impl StatefulSetController {
    pub fn new(cfg: StatefulSetConfig) -> StatefulSetController {
        let queue = WorkQueue::new(cfg.retry_base_ms, cfg.retry_max_ms);
        StatefulSetController {
            cfg,
            queue,
            out: Outbox::new(),
            in_flight: BTreeMap::new(),
            revisions_in_flight: BTreeMap::new(),
        }
    }

    /// Record an event about the set (upstream `recorder.Event(set, …)`).
    fn record(
        &mut self,
        set: &StatefulSet,
        type_: EventType,
        reason: &'static str,
        msg: String,
        now: Moment,
    ) {
        let involved = events::object_ref(pods::API_VERSION, KIND, &set.metadata);
        self.out.push_event(EventRecord::new(
            COMPONENT, involved, type_, reason, msg, now,
        ));
    }

    /// The pods `set` controls: its controller reference, a name `<set>-<n>`, and selected.
    fn claimed<'a>(cache: &'a Cache, set: &'a StatefulSet) -> Vec<&'a Arc<Pod>> {
        let uid = set.metadata.uid.as_deref().unwrap_or("");
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        let Some(spec) = set.spec.as_ref() else {
            return Vec::new();
        };
        cache
            .pods_in(ns)
            .filter(|p| {
                crate::workloads::util::controller_of(&p.metadata)
                    .is_some_and(|r| r.kind == KIND && r.uid == uid)
            })
            .filter(|p| ordinal_of(set, p).is_some())
            .filter(|p| selector_matches(&spec.selector, p.metadata.labels.as_ref()))
            .collect()
    }

    fn push_status(&mut self, set: StatefulSet) {
        let action = Action::UpdateStatus(Object::StatefulSet(Arc::new(set)));
        self.out.push_coalesced(action);
    }

    fn forget_set(&mut self, key: &Key) {
        self.queue.remove(key);
        self.in_flight.retain(|_, f| f.set != *key);
    }

    /// Drop writes of `set` that were never observed within the timeout (upstream's
    /// expectations expire the same way); returns the earliest remaining expiry.
    fn expire_in_flight(&mut self, set: &Key, now: Moment) -> Option<Moment> {
        let timeout = self.cfg.in_flight_timeout_ms;
        self.in_flight
            .retain(|_, f| f.set != *set || now < f.at + timeout);
        self.revisions_in_flight.retain(|_, at| now < *at + timeout);
        self.in_flight
            .values()
            .filter(|f| f.set == *set)
            .map(|f| f.at + timeout)
            .min()
    }

    /// Reconcile one StatefulSet (upstream `syncStatefulSet` → `UpdateStatefulSet`).
    fn sync(&mut self, cache: &Cache, key: &Key, now: Moment) {
        let Some(set) = cache.stateful_sets.get(key).cloned() else {
            self.forget_set(key);
            return;
        };
        let Some(revs) = Revisions::resolve(cache, &set) else {
            return;
        };
        let before = self.out.pending_actions();
        if let Some(expiry) = self.expire_in_flight(key, now) {
            self.queue.add_at(key.clone(), expiry);
        }
        self.write_revision(&revs, now);
        if set.metadata.deletion_timestamp.is_none() {
            self.claim(cache, &set, now);
        }
        let pods = Self::claimed(cache, &set);
        if set.metadata.deletion_timestamp.is_none() {
            self.update_pods(&set, &revs, &pods, now);
        }
        self.truncate_history(&set, &revs, &pods, now);
        let status = compute_status(&set, &revs, &pods, now);
        if set.status.as_ref() != Some(&status)
            || self.out.has_pending_update(Kind::StatefulSet, key)
        {
            let mut copy = (*set).clone();
            copy.status = Some(status);
            // Upstream `UpdateStatefulSetStatus` retries a conflict with the lister's latest
            // copy: only this controller writes the status, so write it without a precondition
            // (a stale one is replaced by the sync its own watch event triggers).
            copy.metadata.resource_version = None;
            self.push_status(copy);
        }
        let min_ready = min_ready_seconds(&set);
        if let Some(t) = pods
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

    /// Upstream `ClaimPods` (ControllerRefManager) for a set not being deleted: adopt orphans
    /// named `<set>-<n>` that match the selector, release controlled pods that no longer match
    /// (terminating pods are left alone either way).
    fn claim(&mut self, cache: &Cache, set: &StatefulSet, now: Moment) {
        let uid = set.metadata.uid.as_deref().unwrap_or("");
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        let Some(spec) = set.spec.as_ref() else {
            return;
        };
        let mut updates = Vec::new();
        for p in cache.pods_in(ns) {
            if is_terminating(p) {
                continue;
            }
            let matches = ordinal_of(set, p).is_some()
                && selector_matches(&spec.selector, p.metadata.labels.as_ref());
            let owner = crate::workloads::util::controller_of(&p.metadata);
            let mut pod = (**p).clone();
            let refs = pod.metadata.owner_references.get_or_insert_with(Vec::new);
            match owner {
                None if matches => refs.push(owner_ref(pods::API_VERSION, KIND, &set.metadata)),
                Some(r) if r.uid == uid && !matches => refs.retain(|r| r.uid != uid),
                _ => continue,
            }
            updates.push(pod);
        }
        for pod in updates {
            let key = Key::of(&pod.metadata);
            if self.in_flight.contains_key(&key) {
                continue;
            }
            self.track(&key, set, PodOp::Claim, now);
            self.out
                .push_action(Action::Update(Object::Pod(Arc::new(pod))));
        }
    }

    fn write_revision(&mut self, revs: &Revisions, now: Moment) {
        let Some(write) = &revs.write else { return };
        let (rev, action): (_, fn(Object) -> Action) = match write {
            RevisionWrite::Create(r) => (r, Action::Create),
            RevisionWrite::Renumber(r) => (r, Action::Update),
        };
        let key = Key::of(&rev.metadata);
        if self.revisions_in_flight.contains_key(&key) {
            return;
        }
        self.revisions_in_flight.insert(key, now);
        self.out
            .push_action(action(Object::ControllerRevision(Arc::new(rev.clone()))));
    }

    fn truncate_history(
        &mut self,
        set: &StatefulSet,
        revs: &Revisions,
        pods: &[&Arc<Pod>],
        now: Moment,
    ) {
        if revs.write.is_some() {
            return;
        }
        let live: BTreeSet<&str> = pods.iter().map(|p| revision_of(p)).collect();
        let victims: Vec<Key> = revs
            .to_truncate(set, &live)
            .into_iter()
            .map(|r| Key::of(&r.metadata))
            .collect();
        for key in victims {
            if self.revisions_in_flight.contains_key(&key) {
                continue;
            }
            self.revisions_in_flight.insert(key.clone(), now);
            self.out.push_action(Action::Delete {
                kind: Kind::ControllerRevision,
                key,
                uid: None,
                grace_period_seconds: None,
            });
        }
    }

    fn create_pod(&mut self, w: &Walk, ordinal: i32, now: Moment) {
        let spec = w.set.spec.as_ref();
        let partition = rolling_partition(w.set);
        // Upstream `newVersionedStatefulSetPod`: below the partition a rolling update keeps
        // the current revision; everything else gets the update revision.
        let (template, rev) = match partition {
            Some(p) if ordinal < p => (
                revision::template_of(&w.revs.current),
                revision::name(&w.revs.current),
            ),
            _ => (
                spec.map(|s| s.template.clone()),
                revision::name(&w.revs.update),
            ),
        };
        let Some(template) = template else { return };
        let pod = new_pod(w.set, &template, rev, ordinal);
        self.track(&Key::of(&pod.metadata), w.set, PodOp::Create, now);
        self.out
            .push_action(Action::Create(Object::Pod(Arc::new(pod))));
    }

    fn delete_pod(&mut self, set: &StatefulSet, pod: &Pod, now: Moment) {
        let key = Key::of(&pod.metadata);
        self.track(&key, set, PodOp::Delete, now);
        self.out.push_action(Action::Delete {
            kind: Kind::Pod,
            key,
            uid: pod.metadata.uid.clone(),
            grace_period_seconds: None,
        });
    }

    fn in_flight_for(&self, pod: &Key) -> Option<PodOp> {
        self.in_flight.get(pod).map(|f| f.op)
    }

    /// Upstream `updateStatefulSet`, minus status: create missing pods, recreate ended ones,
    /// remove condemned ones from the highest ordinal, then roll the update from the highest
    /// ordinal down to the partition. `OrderedReady` stops at the first pod not yet Running,
    /// Ready (and available) or still Terminating: the trap's wait.
    fn update_pods(
        &mut self,
        set: &StatefulSet,
        revs: &Revisions,
        pods: &[&Arc<Pod>],
        now: Moment,
    ) {
        let w = walk(set, revs, pods);
        let first_unhealthy = w
            .slots
            .iter()
            .position(|s| s.is_none_or(|p| !is_healthy(p)))
            .map(|i| {
                pod_name(
                    set.metadata.name.as_deref().unwrap_or(""),
                    w.start + i as i32,
                )
            })
            .or_else(|| {
                w.condemned
                    .iter()
                    .rev()
                    .find(|p| !is_healthy(p))
                    .and_then(|p| p.metadata.name.clone())
            });
        if !self.walk_replicas(&w, now) {
            return;
        }
        if !self.walk_condemned(&w, first_unhealthy.as_deref(), now) {
            return;
        }
        if rolling_partition(set).is_none() {
            return; // OnDelete: pods change only when the user deletes them.
        }
        self.roll(&w, now);
    }

    /// The replicas loop; false when an `OrderedReady` set must wait.
    fn walk_replicas(&mut self, w: &Walk, now: Moment) -> bool {
        let set_name = w.set.metadata.name.clone().unwrap_or_default();
        let ns = w.set.metadata.namespace.clone().unwrap_or_default();
        for (i, slot) in w.slots.iter().enumerate() {
            let ordinal = w.start + i as i32;
            let key = Key::new(&ns, &pod_name(&set_name, ordinal));
            let Some(pod) = slot else {
                if self.in_flight_for(&key).is_none() {
                    self.create_pod(w, ordinal, now);
                }
                if w.monotonic {
                    return false;
                }
                continue;
            };
            if let Some(ended) = has_ended(pod) {
                if !is_terminating(pod) && self.in_flight_for(&key).is_none() {
                    let (reason, what) = match ended {
                        "Failed" => ("RecreatingFailedPod", "failed"),
                        _ => ("RecreatingTerminatedPod", "terminated"),
                    };
                    let msg = format!(
                        "StatefulSet {ns}/{set_name} is recreating {what} Pod {}",
                        key.name
                    );
                    self.record(w.set, EventType::Warning, reason, msg, now);
                    self.delete_pod(w.set, pod, now);
                }
                if w.monotonic {
                    return false;
                }
                continue;
            }
            let waiting = is_terminating(pod)
                || !is_running_and_ready(pod)
                || !is_running_and_available(pod, w.min_ready_seconds, now);
            if waiting && w.monotonic {
                tracing::debug!(set = %set_name, pod = %key.name, terminating = is_terminating(pod),
                    "StatefulSet is waiting for Pod to be Running and Ready or to Terminate");
                return false;
            }
            if !is_terminating(pod)
                && !identity_matches(pod, ordinal)
                && self.in_flight_for(&key).is_none()
            {
                self.track(&key, w.set, PodOp::Update, now);
                let fixed = with_identity(pod, ordinal);
                self.out
                    .push_action(Action::Update(Object::Pod(Arc::new(fixed))));
            }
        }
        true
    }

    fn track(&mut self, pod: &Key, set: &StatefulSet, op: PodOp, now: Moment) {
        self.in_flight.insert(
            pod.clone(),
            InFlight {
                set: Key::of(&set.metadata),
                op,
                at: now,
            },
        );
    }

    /// Scale down from the highest ordinal; false when an `OrderedReady` set must wait.
    fn walk_condemned(&mut self, w: &Walk, first_unhealthy: Option<&str>, now: Moment) -> bool {
        for pod in &w.condemned {
            let key = Key::of(&pod.metadata);
            if is_terminating(pod) || self.in_flight_for(&key) == Some(PodOp::Delete) {
                if w.monotonic {
                    return false;
                }
                continue;
            }
            if !is_running_and_ready(pod)
                && w.monotonic
                && pod.metadata.name.as_deref() != first_unhealthy
            {
                return false;
            }
            self.delete_pod(w.set, pod, now);
            if w.monotonic {
                return false;
            }
        }
        true
    }

    /// Rolling update: delete the highest-ordinal pod not at the update revision, one at a
    /// time, waiting for each replacement to be healthy; pods below the partition stay.
    fn roll(&mut self, w: &Walk, now: Moment) {
        let partition = rolling_partition(w.set).unwrap_or(0).max(0) as usize;
        let update = revision::name(&w.revs.update);
        for target in (partition..w.slots.len()).rev() {
            let Some(pod) = w.slots[target] else { return };
            let key = Key::of(&pod.metadata);
            if revision_of(pod) != update && !is_terminating(pod) {
                if self.in_flight_for(&key).is_none() {
                    self.delete_pod(w.set, pod, now);
                }
                return;
            }
            if !is_healthy(pod) {
                return;
            }
        }
    }

    /// A pod write came back through the informer: the upstream success events.
    fn observe_pod(&mut self, cache: &Cache, change: &Change, now: Moment) {
        let (pod, created, gone) = match change {
            Change::Applied {
                new: Object::Pod(p),
                old,
            } => (p, old.is_none(), p.metadata.deletion_timestamp.is_some()),
            Change::Deleted(Object::Pod(p)) => (p, false, true),
            _ => return,
        };
        let key = Key::of(&pod.metadata);
        let Some(f) = self.in_flight.get(&key).cloned() else {
            return;
        };
        if f.op == PodOp::Claim {
            if matches!(change, Change::Applied { .. }) || gone {
                self.in_flight.remove(&key);
            }
            return;
        }
        let verb = match f.op {
            PodOp::Create if created => "create",
            PodOp::Delete if gone => "delete",
            PodOp::Update if matches!(change, Change::Applied { old: Some(_), .. }) => "update",
            _ => return,
        };
        self.in_flight.remove(&key);
        let Some(set) = cache.stateful_sets.get(&f.set).cloned() else {
            return;
        };
        let reason = match verb {
            "create" => "SuccessfulCreate",
            "update" => "SuccessfulUpdate",
            _ => "SuccessfulDelete",
        };
        let msg = format!(
            "{verb} Pod {} in StatefulSet {} successful",
            key.name,
            set.metadata.name.as_deref().unwrap_or("")
        );
        self.record(&set, EventType::Normal, reason, msg, now);
    }
}

/// Sort a set's pods into `spec.replicas` slots and the condemned rest.
fn walk<'a>(set: &'a StatefulSet, revs: &'a Revisions, pods: &[&'a Arc<Pod>]) -> Walk<'a> {
    let spec = set.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1).max(0);
    let start = spec
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let mut slots = vec![None; replicas as usize];
    let mut condemned = Vec::new();
    for p in pods {
        let Some(ord) = ordinal_of(set, p) else {
            continue;
        };
        match ord.checked_sub(start) {
            Some(i) if i >= 0 && i < replicas => slots[i as usize] = Some(*p),
            _ => condemned.push((ord, *p)),
        }
    }
    condemned.sort_by_key(|(ord, _)| std::cmp::Reverse(*ord));
    Walk {
        set,
        revs,
        slots,
        condemned: condemned.into_iter().map(|(_, p)| p).collect(),
        start,
        monotonic: spec.and_then(|s| s.pod_management_policy.as_deref()) != Some("Parallel"),
        min_ready_seconds: min_ready_seconds(set),
    }
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// `Some(partition)` for a RollingUpdate set (0 when unset), `None` for OnDelete.
fn rolling_partition(set: &StatefulSet) -> Option<i32> {
    let strategy = set.spec.as_ref()?.update_strategy.as_ref();
    match strategy.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => None,
        _ => Some(
            strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0),
        ),
    }
}

/// Upstream `computeReplicaStatus` + `completeRollingUpdate`, over the pods as observed.
fn compute_status(
    set: &StatefulSet,
    revs: &Revisions,
    pods: &[&Arc<Pod>],
    now: Moment,
) -> StatefulSetStatus {
    let current = revision::name(&revs.current);
    let update = revision::name(&revs.update);
    let min_ready = min_ready_seconds(set);
    let count = |f: &dyn Fn(&Pod) -> bool| pods.iter().filter(|p| f(p)).count() as i32;
    let live = |p: &Pod| !is_terminating(p);
    let mut status = set.status.clone().unwrap_or_default();
    status.observed_generation = set.metadata.generation;
    status.replicas = pods.len() as i32;
    status.ready_replicas = Some(count(&is_running_and_ready));
    status.available_replicas = Some(count(&|p| is_running_and_available(p, min_ready, now)));
    status.current_replicas = Some(count(&|p| live(p) && revision_of(p) == current));
    status.updated_replicas = Some(count(&|p| live(p) && revision_of(p) == update));
    status.current_revision = Some(current.to_string());
    status.update_revision = Some(update.to_string());
    if revs.collision_count > 0 || status.collision_count.is_some() {
        status.collision_count = Some(revs.collision_count);
    }
    if rolling_partition(set).is_some()
        && status.updated_replicas == Some(status.replicas)
        && status.ready_replicas == Some(status.replicas)
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
    status
}

impl Controller for StatefulSetController {
    fn name(&self) -> &'static str {
        "statefulset"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        let keys: Vec<Key> = cache.stateful_sets.keys().cloned().collect();
        for k in keys {
            self.sync(cache, &k, now);
        }
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        let mut affected = BTreeSet::new();
        match change.object() {
            Object::Pod(_) => {
                self.observe_pod(cache, change, now);
                if let Change::Applied {
                    old: Some(Object::Pod(old)),
                    ..
                } = change
                {
                    affected.extend(controller_key(&old.metadata, KIND).map(|(k, _)| k));
                }
                let meta = change.object().meta();
                affected.extend(controller_key(meta, KIND).map(|(k, _)| k));
            }
            Object::StatefulSet(s) => {
                affected.insert(Key::of(&s.metadata));
            }
            Object::ControllerRevision(r) => {
                self.revisions_in_flight.remove(&Key::of(&r.metadata));
                affected.extend(controller_key(&r.metadata, KIND).map(|(k, _)| k));
            }
            _ => return,
        }
        for key in affected {
            self.sync(cache, &key, now);
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
        let set = match action {
            Action::Update(Object::Pod(p)) => {
                let f = self.in_flight.remove(&Key::of(&p.metadata));
                if let Some(f) = f.as_ref().filter(|f| f.op == PodOp::Update) {
                    let set = Some(f.set.clone());
                    self.record_failure(set.as_ref(), p, "update", error, now);
                }
                f.map(|f| f.set)
            }
            Action::Create(Object::Pod(p)) => {
                self.in_flight.remove(&Key::of(&p.metadata));
                let set = controller_key(&p.metadata, KIND).map(|(k, _)| k);
                if !matches!(error, WriteError::AlreadyExists) {
                    self.record_failure(set.as_ref(), p, "create", error, now);
                }
                set
            }
            Action::Delete {
                kind: Kind::Pod,
                key,
                ..
            } => self.in_flight.remove(key).map(|f| f.set),
            Action::Create(Object::ControllerRevision(r))
            | Action::Update(Object::ControllerRevision(r)) => {
                self.revisions_in_flight.remove(&Key::of(&r.metadata));
                controller_key(&r.metadata, KIND).map(|(k, _)| k)
            }
            Action::Delete {
                kind: Kind::ControllerRevision,
                key,
                ..
            } => {
                self.revisions_in_flight.remove(key);
                None
            }
            Action::UpdateStatus(Object::StatefulSet(s)) => Some(Key::of(&s.metadata)),
            _ => None,
        };
        if let Some(set) = set {
            tracing::debug!(%set, ?error, "statefulset write failed; requeueing");
            self.queue.retry(set, now);
        }
    }
}

impl StatefulSetController {
    /// Upstream `recordPodEvent` on failure: `FailedCreate` "create Pod web-0 in StatefulSet
    /// web failed error: …" (Warning).
    fn record_failure(
        &mut self,
        set: Option<&Key>,
        pod: &Pod,
        verb: &str,
        error: &WriteError,
        now: Moment,
    ) {
        let Some(set) = set else { return };
        let err = match error {
            WriteError::Invalid(m) | WriteError::Other(m) => m.clone(),
            other => format!("{other:?}"),
        };
        let involved = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(pods::API_VERSION.to_string()),
            kind: Some(KIND.to_string()),
            namespace: Some(set.namespace.clone()),
            name: Some(set.name.clone()),
            uid: crate::workloads::util::controller_of(&pod.metadata).map(|r| r.uid.clone()),
            ..Default::default()
        };
        let reason = match verb {
            "create" => "FailedCreate",
            "update" => "FailedUpdate",
            _ => "FailedDelete",
        };
        let msg = format!(
            "{verb} Pod {} in StatefulSet {} failed error: {err}",
            pod.metadata.name.as_deref().unwrap_or(""),
            set.name
        );
        self.out.push_event(EventRecord::new(
            COMPONENT,
            involved,
            EventType::Warning,
            reason,
            msg,
            now,
        ));
    }
}
