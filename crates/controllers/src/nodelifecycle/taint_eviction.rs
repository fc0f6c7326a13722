//! The taint eviction controller (upstream `pkg/controller/tainteviction/taint_eviction.go`):
//! deletes pods from nodes with NoExecute taints they do not tolerate, at once, or after the
//! smallest `tolerationSeconds` of the tolerations used; cancels when the taints go.
//!
//! Start at [`TaintEvictionController::process_pod_on_node`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodCondition, Taint, Toleration};

use super::taints::{TolerationTime, matching_tolerations, min_toleration_time, no_execute_taints};
use crate::cache::{Cache, Change, Key, Object};
use crate::time::to_time;
use crate::{Action, Controller, Kind, Millis};

/// Condition upstream adds before deleting (`v1.DisruptionTarget`).
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
/// Its reason.
pub const REASON_DELETION_BY_TAINT_MANAGER: &str = "DeletionByTaintManager";
/// Its message.
pub const MESSAGE_DELETION_BY_TAINT_MANAGER: &str =
    "Taint manager: deleting due to NoExecute taint";

/// A scheduled deletion (upstream `TimedWorker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Work {
    created_at: Millis,
    fire_at: Millis,
}

/// Pods scheduled for deletion because of NoExecute taints. Keeps the NoExecute taints of
/// tainted nodes and the timers; reads pods and nodes from the shared cache.
#[derive(Clone, Debug, Default)]
pub struct TaintEvictionController {
    /// Events recorded since the last drain.
    events: Vec<crate::events::EventRecord>,
    tainted_nodes: BTreeMap<String, Vec<Taint>>,
    work: BTreeMap<Key, Work>,
    schedule: BTreeSet<(Millis, Key)>,
    actions: Vec<Action>,
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
    pub fn scheduled_deletion(&self, pod: &Key) -> Option<Millis> {
        self.work.get(pod).map(|w| w.fire_at)
    }

    /// Number of scheduled deletions.
    pub fn scheduled(&self) -> usize {
        self.work.len()
    }

    fn cancel(&mut self, pod: &Key) {
        if let Some(w) = self.work.remove(pod) {
            self.schedule.remove(&(w.fire_at, pod.clone()));
            tracing::debug!(%pod, "cancelling pod deletion");
        }
    }

    /// Upstream `AddWork`: a delay <= 0 runs at once; otherwise a timer.
    fn add_work(&mut self, cache: &Cache, pod: &Key, created_at: Millis, fire_at: Millis) {
        if self.work.contains_key(pod) {
            return;
        }
        if fire_at <= created_at {
            self.delete_pod(cache, pod, created_at);
            return;
        }
        self.work.insert(
            pod.clone(),
            Work {
                created_at,
                fire_at,
            },
        );
        self.schedule.insert((fire_at, pod.clone()));
    }

    /// Upstream `addConditionAndDeletePod`: DisruptionTarget=True on the pod, then delete it
    /// (uid precondition: the pod read now, not a later one of the same name).
    fn delete_pod(&mut self, cache: &Cache, key: &Key, now: Millis) {
        self.record(cache, key, format!("Marking for deletion Pod {key}"), now);
        let Some(pod) = cache.pods.get(key) else {
            return;
        };
        tracing::info!(pod = %key, "deleting pod for a NoExecute taint");
        if let Some(new) = with_disruption_target(pod, now) {
            self.actions
                .push(Action::UpdateStatus(Object::Pod(Arc::new(new))));
        }
        self.actions.push(Action::Delete {
            kind: Kind::Pod,
            key: key.clone(),
            uid: pod.metadata.uid.clone(),
            grace_period_seconds: None,
        });
    }

    /// Upstream `processPodOnNode`: schedule, keep, or cancel the deletion of one pod given
    /// its node's NoExecute taints (non-empty) and its tolerations.
    pub fn process_pod_on_node(
        &mut self,
        cache: &Cache,
        pod: &Key,
        tolerations: &[Toleration],
        taints: &[Taint],
        now: Millis,
    ) {
        let Some(used) = matching_tolerations(taints, tolerations) else {
            self.cancel_with_event(cache, pod, now);
            self.add_work(cache, pod, now, now);
            return;
        };
        let TolerationTime::Millis(min) = min_toleration_time(&used) else {
            self.cancel_with_event(cache, pod, now);
            return;
        };
        let trigger = now.saturating_add(min);
        let mut start = now;
        if let Some(existing) = self.work.get(pod).copied() {
            start = existing.created_at;
            if start.saturating_add(min) < trigger {
                return;
            }
            self.cancel_with_event(cache, pod, now);
        }
        self.add_work(cache, pod, start, trigger);
    }

    /// Upstream `handleNodeUpdate`: remember the node's NoExecute taints and re-decide every
    /// pod on it.
    fn handle_node_update(&mut self, cache: &Cache, node: &str, now: Millis) {
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
    fn handle_pod_update(&mut self, cache: &Cache, key: &Key, now: Millis) {
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
    fn cancel_with_event(&mut self, cache: &Cache, pod: &Key, now: Millis) {
        if self.work.contains_key(pod) {
            self.record(cache, pod, format!("Cancelling deletion of Pod {pod}"), now);
        }
        self.cancel(pod);
    }

    /// Upstream `emitPodDeletionEvent` / `emitCancelPodDeletionEvent`: TaintManagerEviction
    /// about a pod still in the cache.
    fn record(&mut self, cache: &Cache, pod: &Key, message: String, now: Millis) {
        use crate::events::{self, EventRecord, EventType};
        let Some(p) = cache.pods.get(pod) else {
            return;
        };
        self.events.push(EventRecord::new(
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
fn with_disruption_target(pod: &Pod, now: Millis) -> Option<Pod> {
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

    fn drain_events(&mut self, out: &mut Vec<crate::events::EventRecord>) {
        out.append(&mut self.events);
    }

    fn on_synced(&mut self, cache: &Cache, now: Millis) {
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

    fn on_change(&mut self, cache: &Cache, change: &Change, now: Millis) {
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

    fn on_tick(&mut self, cache: &Cache, now: Millis) {
        while let Some((at, key)) = self.schedule.first().cloned() {
            if at > now {
                break;
            }
            self.schedule.remove(&(at, key.clone()));
            self.work.remove(&key);
            self.delete_pod(cache, &key, now);
        }
    }

    fn next_wakeup(&self) -> Option<Millis> {
        self.schedule.first().map(|(at, _)| *at)
    }

    fn drain_actions(&mut self, out: &mut Vec<Action>) {
        out.append(&mut self.actions);
    }
}
