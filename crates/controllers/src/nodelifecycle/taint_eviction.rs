//! The taint eviction controller (upstream `pkg/controller/tainteviction/taint_eviction.go`):
//! deletes pods from nodes with NoExecute taints they do not tolerate, at once, or after the
//! smallest `tolerationSeconds` of the tolerations used; cancels when the taints go.
//!
//! An eviction is two writes in order, as upstream's `addConditionAndDeletePod`: the
//! `DisruptionTarget` condition, then (once the informer shows it) the delete. A failed write
//! is retried with a bounded backoff until the pod is gone, marked for deletion, or no longer
//! due (its node lost the taint): a lost write must not leave a pod on a dead node forever.
//!
//! Start at [`TaintEvictionController::process_pod_on_node`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition, Taint, Toleration};

use super::taints::{TolerationTime, matching_tolerations, min_toleration_time, no_execute_taints};
use crate::cache::{Cache, Change, Key, Object};
use crate::time::to_time;
use crate::{Action, Controller, Kind, Moment, WriteError};
use runtime::{DelayQueue, Outbox};

/// Condition upstream adds before deleting (`v1.DisruptionTarget`).
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
/// Its reason.
pub const REASON_DELETION_BY_TAINT_MANAGER: &str = "DeletionByTaintManager";
/// Its message.
pub const MESSAGE_DELETION_BY_TAINT_MANAGER: &str =
    "Taint manager: deleting due to NoExecute taint";

/// First retry of a failed eviction write (upstream retries `addConditionAndDeletePod`
/// after 10 ms).
pub const EVICTION_RETRY_BASE_MS: Duration = Duration::from_millis(10);
/// Longest wait between retries of one eviction (a bound; upstream gives up after 5 tries and
/// waits for the next pod update, which never comes for a pod on a dead node).
pub const EVICTION_RETRY_MAX_MS: Duration = Duration::from_millis(10_000);

/// An eviction under way: which write it waits for, and its retries.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Eviction {
    /// The pod being evicted (a new pod of the same name is not this eviction's business).
    uid: Option<String>,
    /// The condition is written (seen, or was already there): the delete is next.
    deleting: bool,
    /// Consecutive failed writes.
    failures: u32,
    /// When to retry after a failure (`None`: waiting for the informer or the write).
    retry_at: Option<Moment>,
}

/// A scheduled deletion (upstream `TimedWorker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Work {
    created_at: Moment,
    fire_at: Moment,
}

/// Pods scheduled for deletion because of NoExecute taints. Keeps the NoExecute taints of
/// tainted nodes and the timers; reads pods and nodes from the shared cache.
#[derive(Clone, Debug, Default)]
pub struct TaintEvictionController {
    tainted_nodes: BTreeMap<String, Vec<Taint>>,
    work: BTreeMap<Key, Work>,
    /// Deletion timers (one per pod, earliest first).
    schedule: DelayQueue<Key>,
    /// Evictions whose writes are under way, and their retry timers.
    evicting: BTreeMap<Key, Eviction>,
    retries: DelayQueue<Key>,
    /// Writes and Events for the driver to poll.
    out: Outbox,
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn tolerations_of(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

impl TaintEvictionController {
    pub fn new() -> TaintEvictionController {
        TaintEvictionController::default()
    }

    /// When the pod's deletion is scheduled, if it is.
    pub fn scheduled_deletion(&self, pod: &Key) -> Option<Moment> {
        self.work.get(pod).map(|w| w.fire_at)
    }

    /// Number of scheduled deletions.
    pub fn scheduled(&self) -> usize {
        self.work.len()
    }

    /// Number of evictions whose writes are not done yet.
    pub fn evicting(&self) -> usize {
        self.evicting.len()
    }

    fn cancel(&mut self, pod: &Key) {
        if let Some(w) = self.work.remove(pod) {
            debug_assert_eq!(self.schedule.due_at(pod), Some(w.fire_at));
            self.schedule.remove(pod);
            tracing::debug!(%pod, "cancelling pod deletion");
        }
        self.stop_evicting(pod);
    }

    fn stop_evicting(&mut self, pod: &Key) {
        if self.evicting.remove(pod).is_some() {
            self.retries.remove(pod);
        }
    }

    /// Upstream `AddWork`: a delay <= 0 runs at once; otherwise a timer.
    fn add_work(&mut self, cache: &Cache, pod: &Key, created_at: Moment, fire_at: Moment) {
        if self.work.contains_key(pod) {
            return;
        }
        if fire_at <= created_at {
            self.delete_pod(cache, pod, created_at);
            return;
        }
        if let Err(full) = self.schedule.schedule(pod.clone(), fire_at) {
            tracing::warn!(%pod, "taint eviction: {full}; the pod's next change schedules it");
            return;
        }
        self.work.insert(
            pod.clone(),
            Work {
                created_at,
                fire_at,
            },
        );
    }

    /// Upstream `addConditionAndDeletePod`: DisruptionTarget=True on the pod, then delete it
    /// (uid precondition: the pod read now, not a later one of the same name).
    fn delete_pod(&mut self, cache: &Cache, key: &Key, now: Moment) {
        self.record(cache, key, format!("Marking for deletion Pod {key}"), now);
        let Some(pod) = cache.pods.get(key) else {
            return;
        };
        if self.evicting.contains_key(key) {
            return;
        }
        tracing::info!(pod = %key, "deleting pod for a NoExecute taint");
        self.evicting.insert(
            key.clone(),
            Eviction {
                uid: pod.metadata.uid.clone(),
                deleting: false,
                failures: 0,
                retry_at: None,
            },
        );
        self.advance_eviction(cache, key, now);
    }

    /// Issue the next write of `key`'s eviction from the pod as the cache has it now: the
    /// condition if it is missing, else the delete; stop once the pod is going or gone.
    fn advance_eviction(&mut self, cache: &Cache, key: &Key, now: Moment) {
        let Some(e) = self.evicting.get(key).cloned() else {
            return;
        };
        let pod = match cache.pods.get(key) {
            Some(p) if p.metadata.uid == e.uid && p.metadata.deletion_timestamp.is_none() => p,
            // Gone, replaced by a new pod of the same name, or marked for deletion: done.
            _ => {
                self.stop_evicting(key);
                return;
            }
        };
        match with_disruption_target(pod, now) {
            Some(new) if !e.deleting => {
                self.out
                    .push_action(Action::UpdateStatus(Object::Pod(Arc::new(new))));
            }
            // The condition is there (or went missing after being written: delete anyway).
            _ => {
                if let Some(e) = self.evicting.get_mut(key) {
                    e.deleting = true;
                }
                self.out.push_action(Action::Delete {
                    kind: Kind::Pod,
                    key: key.clone(),
                    uid: pod.metadata.uid.clone(),
                    grace_period_seconds: None,
                });
            }
        }
    }

    /// A write of an eviction failed: retry it after a bounded, doubling backoff.
    fn eviction_write_failed(&mut self, key: &Key, now: Moment) {
        let Some(e) = self.evicting.get_mut(key) else {
            return;
        };
        e.retry_at = None;
        self.retries.remove(key);
        e.failures += 1;
        let delay = EVICTION_RETRY_BASE_MS
            .saturating_mul(1 << (e.failures - 1).min(20))
            .min(EVICTION_RETRY_MAX_MS);
        match self.retries.schedule(key.clone(), now + delay) {
            Ok(()) => e.retry_at = Some(now + delay),
            Err(full) => tracing::warn!(pod = %key, "taint eviction retry: {full}"),
        }
    }

    /// Upstream `processPodOnNode`: schedule, keep, or cancel the deletion of one pod given
    /// its node's NoExecute taints (non-empty) and its tolerations.
    pub fn process_pod_on_node(
        &mut self,
        cache: &Cache,
        pod: &Key,
        tolerations: &[Toleration],
        taints: &[Taint],
        now: Moment,
    ) {
        let Some(used) = matching_tolerations(taints, tolerations) else {
            self.cancel_with_event(cache, pod, now);
            self.add_work(cache, pod, now, now);
            return;
        };
        let TolerationTime::Span(min) = min_toleration_time(&used) else {
            self.cancel_with_event(cache, pod, now);
            return;
        };
        let trigger = now + min;
        let mut start = now;
        if let Some(existing) = self.work.get(pod).copied() {
            start = existing.created_at;
            if start + min < trigger {
                return;
            }
            self.cancel_with_event(cache, pod, now);
        }
        self.add_work(cache, pod, start, trigger);
    }

    /// Upstream `handleNodeUpdate`: remember the node's NoExecute taints and re-decide every
    /// pod on it.
    fn handle_node_update(&mut self, cache: &Cache, node: &str, now: Moment) {
        let Some(n) = cache.nodes.get(node) else {
            self.tainted_nodes.remove(node);
            return;
        };
        let taints = no_execute_taints(n);
        if taints.is_empty() {
            self.tainted_nodes.remove(node);
        } else {
            self.tainted_nodes.insert(node.to_string(), taints.clone());
        }
        let pods: Vec<(Key, Arc<Pod>)> = cache
            .pods_on_node(node)
            .map(|p| (Key::of(&p.metadata), p.clone()))
            .collect();
        for (key, pod) in pods {
            if taints.is_empty() {
                self.cancel_with_event(cache, &key, now);
            } else {
                self.process_pod_on_node(cache, &key, tolerations_of(&pod), &taints, now);
            }
        }
    }

    /// Upstream `handlePodUpdate`.
    fn handle_pod_update(&mut self, cache: &Cache, key: &Key, now: Moment) {
        let Some(pod) = cache.pods.get(key).cloned() else {
            self.cancel(key);
            return;
        };
        let node = node_of(&pod);
        if node.is_empty() {
            return;
        }
        let Some(taints) = self.tainted_nodes.get(node).cloned() else {
            return;
        };
        self.process_pod_on_node(cache, key, tolerations_of(&pod), &taints, now);
    }

    /// Upstream `cancelWorkWithEvent`: cancel, with "Cancelling deletion of Pod ns/name" if a
    /// deletion was scheduled.
    fn cancel_with_event(&mut self, cache: &Cache, pod: &Key, now: Moment) {
        if self.work.contains_key(pod) {
            self.record(cache, pod, format!("Cancelling deletion of Pod {pod}"), now);
        }
        self.cancel(pod);
    }

    /// Upstream `emitPodDeletionEvent` / `emitCancelPodDeletionEvent`: TaintManagerEviction
    /// about a pod still in the cache.
    fn record(&mut self, cache: &Cache, pod: &Key, message: String, now: Moment) {
        use crate::events::{self, EventRecord, EventType};
        let Some(p) = cache.pods.get(pod) else {
            return;
        };
        self.out.push_event(EventRecord::new(
            events::source::TAINT_EVICTION,
            events::pod_ref(p),
            EventType::Normal,
            "TaintManagerEviction",
            message,
            now,
        ));
    }
}

/// The pod with DisruptionTarget=True (upstream `UpdatePodCondition`); `None` if already so.
fn with_disruption_target(pod: &Pod, now: Moment) -> Option<Pod> {
    let wanted = PodCondition {
        type_: DISRUPTION_TARGET.into(),
        status: "True".into(),
        reason: Some(REASON_DELETION_BY_TAINT_MANAGER.into()),
        message: Some(MESSAGE_DELETION_BY_TAINT_MANAGER.into()),
        last_transition_time: Some(to_time(now)),
        ..PodCondition::default()
    };
    let mut new = pod.clone();
    let conditions = new
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == DISRUPTION_TARGET) {
        Some(c)
            if c.status == wanted.status
                && c.reason == wanted.reason
                && c.message == wanted.message =>
        {
            return None;
        }
        Some(c) => {
            let ltt = if c.status == wanted.status {
                c.last_transition_time.clone()
            } else {
                wanted.last_transition_time.clone()
            };
            *c = PodCondition {
                last_transition_time: ltt,
                ..wanted
            };
        }
        None => conditions.push(wanted),
    }
    Some(new)
}

impl Controller for TaintEvictionController {
    fn name(&self) -> &'static str {
        "taint-eviction-controller"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        let tainted: Vec<String> = cache
            .nodes
            .iter()
            .filter(|(_, n)| !no_execute_taints(n).is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for node in tainted {
            self.handle_node_update(cache, &node, now);
        }
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        match change {
            Change::Applied {
                new: Object::Node(n),
                old,
            } => {
                if let Some(Object::Node(o)) = old
                    && no_execute_taints(o) == no_execute_taints(n)
                {
                    return;
                }
                let name = n.metadata.name.clone().unwrap_or_default();
                self.handle_node_update(cache, &name, now);
            }
            Change::Deleted(Object::Node(n)) => {
                self.tainted_nodes
                    .remove(n.metadata.name.as_deref().unwrap_or(""));
            }
            Change::Applied {
                new: Object::Pod(p),
                old,
            } => {
                let key = Key::of(&p.metadata);
                if let Some(e) = self.evicting.get(&key)
                    && e.retry_at.is_none()
                {
                    // The condition came back (or the pod is going): next step.
                    let written = !e.deleting && with_disruption_target(p, now).is_none();
                    if written || p.metadata.deletion_timestamp.is_some() {
                        self.advance_eviction(cache, &key, now);
                    }
                }
                if let Some(Object::Pod(o)) = old
                    && tolerations_of(o) == tolerations_of(p)
                    && node_of(o) == node_of(p)
                {
                    return;
                }
                self.handle_pod_update(cache, &Key::of(&p.metadata), now);
            }
            Change::Deleted(Object::Pod(p)) => self.cancel(&Key::of(&p.metadata)),
            _ => {}
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        while let Some((_, key)) = self.retries.pop_due(now) {
            if let Some(e) = self.evicting.get_mut(&key) {
                e.retry_at = None;
            }
            self.advance_eviction(cache, &key, now);
        }
        while let Some((_, key)) = self.schedule.pop_due(now) {
            self.work.remove(&key);
            self.delete_pod(cache, &key, now);
        }
    }

    fn poll_timeout(&self) -> Option<Moment> {
        let timer = self.schedule.next_due();
        let retry = self.retries.next_due();
        timer.into_iter().chain(retry).min()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        let key = match action {
            Action::UpdateStatus(Object::Pod(p)) => Key::of(&p.metadata),
            Action::Delete {
                kind: Kind::Pod,
                key,
                ..
            } => key.clone(),
            _ => return,
        };
        if matches!(
            (action, error),
            (Action::Delete { .. }, WriteError::NotFound)
        ) {
            self.stop_evicting(&key);
            return;
        }
        tracing::warn!(pod = %key, ?error, "taint eviction write failed; retrying");
        self.eviction_write_failed(&key, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeApi, T0, object};
    use serde_json::json;

    fn node(taints: serde_json::Value) -> Object {
        object(json!({"kind": "Node", "metadata": {"name": "n"}, "spec": {"taints": taints}}))
    }

    fn key() -> Key {
        Key::new("default", "p")
    }

    /// A controller over a pod on a node with an untolerated NoExecute taint, evicting it.
    fn evicting() -> (TaintEvictionController, FakeApi) {
        let mut api = FakeApi::new();
        api.put(node(json!([{"key": "k", "effect": "NoExecute"}])), T0);
        api.put(
            object(
                json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n", "containers": []}}),
            ),
            T0,
        );
        let mut c = TaintEvictionController::new();
        c.handle_synced(&api.cache, T0);
        (c, api)
    }

    fn drain(c: &mut TaintEvictionController) -> Vec<Action> {
        let mut out = Vec::new();
        out.extend(std::iter::from_fn(|| c.poll_action()));
        out
    }

    #[test]
    fn the_condition_is_written_before_the_delete() {
        let (mut c, mut api) = evicting();
        let first = drain(&mut c);
        assert!(
            matches!(first.as_slice(), [Action::UpdateStatus(_)]),
            "{first:?}"
        );
        // Only once the condition is seen does the delete follow.
        for ch in api.execute(&first[0], T0).expect("status") {
            c.handle_change(&api.cache, &ch, T0);
        }
        let second = drain(&mut c);
        let uid = api
            .cache
            .pods
            .get(&key())
            .and_then(|p| p.metadata.uid.clone());
        assert!(
            matches!(second.as_slice(), [Action::Delete { uid: u, .. }] if *u == uid && u.is_some()),
            "{second:?}"
        );
        for ch in api.execute(&second[0], T0).expect("delete") {
            c.handle_change(&api.cache, &ch, T0);
        }
        assert_eq!(c.evicting(), 0);
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn failed_writes_are_retried_with_a_bounded_backoff_until_the_pod_goes() {
        let (mut c, mut api) = evicting();
        let status = drain(&mut c);
        for ch in api.execute(&status[0], T0).expect("status") {
            c.handle_change(&api.cache, &ch, T0);
        }
        let delete = drain(&mut c);
        // The delete fails (e.g. 409 "too many concurrent updates") again and again.
        let mut now = T0;
        let mut waits = Vec::new();
        for _ in 0..14 {
            c.handle_write_failed(&delete[0], &WriteError::Conflict, now);
            let at = c.poll_timeout().expect("a retry is scheduled");
            waits.push(at.saturating_since(now));
            now = at;
            c.handle_timeout(&api.cache, now);
            assert_eq!(drain(&mut c), delete, "the same delete, retried");
        }
        assert_eq!(&waits[..4], &[10, 20, 40, 80].map(Duration::from_millis));
        assert_eq!(*waits.last().expect("waits"), EVICTION_RETRY_MAX_MS);
        // It finally succeeds: the pod is marked for deletion and the eviction is done.
        for ch in api.execute(&delete[0], now).expect("delete") {
            c.handle_change(&api.cache, &ch, now);
        }
        assert_eq!(c.evicting(), 0);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn a_retry_stops_when_the_pod_is_no_longer_due() {
        let (mut c, mut api) = evicting();
        let status = drain(&mut c);
        c.handle_write_failed(&status[0], &WriteError::Conflict, T0);
        assert_eq!(c.poll_timeout(), Some(T0 + EVICTION_RETRY_BASE_MS));
        // The taint goes before the retry.
        let ch = api.put(node(json!([])), T0 + Duration::from_millis(5));
        c.handle_change(&api.cache, &ch, T0 + Duration::from_millis(5));
        assert_eq!(c.evicting(), 0);
        assert_eq!(c.poll_timeout(), None);
        c.handle_timeout(&api.cache, T0 + Duration::from_millis(100));
        assert!(drain(&mut c).is_empty());
    }
}
