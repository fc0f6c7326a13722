//! The pod garbage collector's orphan part (upstream pkg/controller/podgc `gcOrphaned` and
//! `gcUnscheduledTerminating`): a pod bound to a Node object that has been gone for the
//! quarantine time is marked Failed (condition `DisruptionTarget`, reason `DeletionByPodGC`)
//! and force-deleted; a terminating pod that was never scheduled is force-deleted. This is what
//! frees a StatefulSet pod name when an operator deletes the Node of a dead machine.
//!
//! Start at [`PodGcController`]; `collect` is one pass (upstream `gc`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};

use crate::time::to_time;
use crate::workloads::util::{node_name, phase};
use crate::{Action, Cache, Change, Controller, Key, Kind, Moment, Object, WriteError};
use runtime::Outbox;

/// Tunables, named after upstream's constants (pkg/controller/podgc/gc_controller.go).
#[derive(Clone, Debug)]
pub struct PodGcConfig {
    /// Upstream `gcCheckPeriod = 20 * time.Second`.
    pub gc_check_period_ms: Duration,
    /// Upstream `quarantineTime = 40 * time.Second`: how long a node must stay missing before
    /// its pods count as orphaned.
    pub quarantine_ms: Duration,
}

impl Default for PodGcConfig {
    fn default() -> Self {
        PodGcConfig {
            gc_check_period_ms: Duration::from_millis(20_000),
            quarantine_ms: Duration::from_millis(40_000),
        }
    }
}

/// Upstream's condition on a pod PodGC deletes because its node is gone.
pub const REASON_DELETION_BY_POD_GC: &str = "DeletionByPodGC";
const MESSAGE_NODE_GONE: &str = "PodGC: node no longer exists";

/// The pod garbage collector (orphaned and unscheduled-terminating pods).
pub struct PodGcController {
    cfg: PodGcConfig,
    /// Node names pods are bound to that have no Node object, with when that was first seen.
    missing_since: BTreeMap<String, Moment>,
    /// Pods whose force delete is in flight.
    deleting: BTreeSet<Key>,
    next: Option<Moment>,
    /// Writes and Events for the driver to poll.
    out: Outbox,
}

impl PodGcController {
    pub fn new(cfg: PodGcConfig) -> PodGcController {
        PodGcController {
            cfg,
            missing_since: BTreeMap::new(),
            deleting: BTreeSet::new(),
            next: None,
            out: Outbox::new(),
        }
    }

    fn wake_at(&mut self, at: Moment) {
        self.next = Some(self.next.map_or(at, |n| n.min(at)));
    }

    /// Upstream `markFailedAndDeletePodWithCondition`: a status write (unless the pod already
    /// ended) and a delete with grace period 0.
    fn force_delete(&mut self, pod: &Pod, condition: Option<PodCondition>) {
        let key = Key::of(&pod.metadata);
        if !self.deleting.insert(key.clone()) {
            return;
        }
        if let Some(cond) = condition
            && !matches!(phase(pod), "Succeeded" | "Failed")
        {
            let mut failed = pod.clone();
            let status = failed.status.get_or_insert_with(Default::default);
            status.phase = Some("Failed".into());
            let conds = status.conditions.get_or_insert_with(Vec::new);
            conds.retain(|c| c.type_ != cond.type_);
            conds.push(cond);
            self.out
                .push_action(Action::UpdateStatus(Object::Pod(Arc::new(failed))));
        }
        self.out.push_action(Action::Delete {
            kind: Kind::Pod,
            key,
            uid: pod.metadata.uid.clone(),
            grace_period_seconds: Some(0),
        });
    }

    /// One pass (upstream `gc`, minus the terminated-pod threshold and out-of-service parts).
    fn collect(&mut self, cache: &Cache, now: Moment) {
        let mut missing_now: BTreeMap<String, Moment> = BTreeMap::new();
        let mut orphans: Vec<Arc<Pod>> = Vec::new();
        let mut unscheduled: Vec<Arc<Pod>> = Vec::new();
        for pod in cache.pods.values() {
            let node = node_name(pod);
            if node.is_empty() {
                if pod.metadata.deletion_timestamp.is_some() {
                    unscheduled.push(Arc::clone(pod));
                }
                continue;
            }
            if cache.nodes.contains_key(node) {
                continue;
            }
            let since = *self.missing_since.get(node).unwrap_or(&now);
            missing_now.insert(node.to_string(), since);
            if now >= since + self.cfg.quarantine_ms {
                orphans.push(Arc::clone(pod));
            }
        }
        self.missing_since = missing_now;
        for pod in orphans {
            tracing::info!(pod = %Key::of(&pod.metadata), node = node_name(&pod), "Found orphaned Pod assigned to the Node, deleting");
            let cond = PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some(REASON_DELETION_BY_POD_GC.into()),
                message: Some(MESSAGE_NODE_GONE.into()),
                last_transition_time: Some(to_time(now)),
                ..PodCondition::default()
            };
            self.force_delete(&pod, Some(cond));
        }
        for pod in unscheduled {
            self.force_delete(&pod, None);
        }
        self.next = None;
        if let Some(first) = self.missing_since.values().min() {
            let due = (*first + self.cfg.quarantine_ms).max(now + Duration::from_millis(1));
            self.wake_at(due.min(now + self.cfg.gc_check_period_ms));
        }
    }
}

impl Controller for PodGcController {
    fn name(&self) -> &'static str {
        "pod-garbage-collector"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        self.collect(cache, now);
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        match change {
            Change::Deleted(Object::Pod(p)) => {
                self.deleting.remove(&Key::of(&p.metadata));
            }
            Change::Deleted(Object::Node(_)) => self.wake_at(now),
            Change::Applied {
                new: Object::Pod(p),
                ..
            } => {
                let node = node_name(p);
                let orphan = !node.is_empty() && !cache.nodes.contains_key(node);
                let unscheduled = node.is_empty() && p.metadata.deletion_timestamp.is_some();
                if orphan || unscheduled {
                    self.wake_at(now + self.cfg.gc_check_period_ms);
                }
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        self.collect(cache, now);
    }

    fn poll_timeout(&self) -> Option<Moment> {
        self.next
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        if let Action::Delete { key, .. } = action {
            self.deleting.remove(key);
            if *error != WriteError::NotFound {
                self.wake_at(now + self.cfg.gc_check_period_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Harness, object};
    use serde_json::json;

    fn node(name: &str) -> Object {
        object(json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": name}}))
    }

    fn bound_pod(name: &str, node: &str) -> Object {
        object(json!({"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running"}}))
    }

    #[test]
    fn pods_of_a_deleted_node_are_failed_and_force_deleted_after_quarantine() {
        let mut h = Harness::new(vec![Box::new(PodGcController::new(PodGcConfig::default()))]);
        h.put(node("n1"));
        h.put(node("n2"));
        h.start();
        h.put(bound_pod("a", "n1"));
        h.put(bound_pod("b", "n2"));
        // A terminating pod on n1 its dead kubelet never confirms.
        h.api
            .execute(
                &Action::Delete {
                    kind: Kind::Pod,
                    key: Key::new("default", "a"),
                    uid: None,
                    grace_period_seconds: None,
                },
                h.now,
            )
            .unwrap();
        assert!(
            h.api.cache.pods[&Key::new("default", "a")]
                .metadata
                .deletion_timestamp
                .is_some()
        );
        h.remove(Kind::Node, &Key::new("", "n1"));
        h.advance(Duration::from_millis(39_000));
        assert!(
            h.api.cache.pods.contains_key(&Key::new("default", "a")),
            "quarantine"
        );
        h.advance(Duration::from_millis(2_000));
        assert!(!h.api.cache.pods.contains_key(&Key::new("default", "a")));
        assert!(h.api.cache.pods.contains_key(&Key::new("default", "b")));
        let status_writes: Vec<_> = h
            .api
            .log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::UpdateStatus(Object::Pod(p)) => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(status_writes.len(), 1);
        let st = status_writes[0].status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        let c = &st.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.reason.as_deref(), c.message.as_deref()),
            (
                "DisruptionTarget",
                Some("DeletionByPodGC"),
                Some("PodGC: node no longer exists")
            )
        );
        assert!(h.api.log.iter().any(|(_, a)| matches!(a,
            Action::Delete { grace_period_seconds: Some(0), key, .. } if key.name == "a")));
        assert_eq!(h.poll_timeout(), None, "nothing left to watch");
    }

    #[test]
    fn a_node_that_comes_back_within_quarantine_keeps_its_pods() {
        let mut h = Harness::new(vec![Box::new(PodGcController::new(PodGcConfig::default()))]);
        h.put(node("n1"));
        h.start();
        h.put(bound_pod("a", "n1"));
        h.remove(Kind::Node, &Key::new("", "n1"));
        h.advance(Duration::from_millis(20_000));
        h.put(node("n1"));
        h.advance(Duration::from_millis(60_000));
        assert!(h.api.cache.pods.contains_key(&Key::new("default", "a")));
    }
}
