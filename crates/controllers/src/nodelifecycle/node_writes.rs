//! Node writes of the node lifecycle controller, one in flight per node: pending status and
//! NoExecute taint operations, applied to the current cached node like upstream's
//! get-modify-retry patches, plus the NoSchedule taints derived from the node's conditions.
//!
//! Start at [`NodeWriter::flush`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;

use super::health::{condition, with_conditions_unknown};
use super::taints::{
    NO_EXECUTE, TAINT_NOT_READY, TAINT_UNREACHABLE, add_or_update_taint, has_taint,
    no_schedule_taints_for, reconcile_no_schedule, remove_taint, taint,
};
use crate::cache::{Cache, Object};
use crate::time::from_time;
use crate::{Action, Moment};
use runtime::Outbox;

/// How long a write may stay unacknowledged (no informer event, no failure) before the gate
/// reopens. Bounds a lost event; normal acknowledgements take milliseconds.
pub const IN_FLIGHT_TIMEOUT_MS: Duration = Duration::from_millis(30_000);

/// A pending change to the node's NoExecute controller taints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoExecuteOp {
    /// Put `key` on the node (stamped `at`) and take the opposite key off (upstream
    /// `SwapNodeControllerTaint`).
    Set { key: &'static str, at: Moment },
    /// Take both unreachable and not-ready NoExecute taints off (upstream `markNodeAsReachable`).
    Clear,
}

impl NoExecuteOp {
    fn opposite(key: &str) -> &'static str {
        if key == TAINT_UNREACHABLE {
            TAINT_NOT_READY
        } else {
            TAINT_UNREACHABLE
        }
    }

    /// Apply to a taint list; true if it changed.
    fn apply(&self, taints: &mut Vec<k8s_openapi::api::core::v1::Taint>) -> bool {
        match self {
            NoExecuteOp::Set { key, at } => {
                let added = add_or_update_taint(taints, taint(key, NO_EXECUTE, *at));
                let removed = remove_taint(taints, Self::opposite(key), NO_EXECUTE);
                added || removed
            }
            NoExecuteOp::Clear => {
                let a = remove_taint(taints, TAINT_UNREACHABLE, NO_EXECUTE);
                let b = remove_taint(taints, TAINT_NOT_READY, NO_EXECUTE);
                a || b
            }
        }
    }
}

/// A pending "conditions Unknown" status write: decided at `at` from a Ready condition with
/// this heartbeat. Dropped if the kubelet posted since (the heartbeat moved), as upstream's
/// retry after a conflict would re-read the node and find it fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusOp {
    pub at: Moment,
    pub heartbeat: Option<Moment>,
}

/// Pending node writes, at most one in flight per node.
#[derive(Clone, Debug, Default)]
pub struct NodeWriter {
    status: BTreeMap<String, StatusOp>,
    no_execute: BTreeMap<String, NoExecuteOp>,
    in_flight: BTreeMap<String, Moment>,
}

fn ready_heartbeat(node: &Node) -> Option<Moment> {
    condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(from_time)
}

impl NodeWriter {
    /// Ask for the node's conditions to be written Unknown.
    pub fn mark_unknown(&mut self, node: &str, op: StatusOp) {
        self.status.insert(node.to_string(), op);
    }

    /// Ask for a NoExecute taint change (replaces an earlier pending one).
    pub fn no_execute(&mut self, node: &str, op: NoExecuteOp) {
        self.no_execute.insert(node.to_string(), op);
    }

    /// True if the node has the NoExecute taint `key`, counting a pending operation as done
    /// (upstream reads taints from its lister, which its own patch updates within ms).
    pub fn effective_no_execute(&self, node: &Node, name: &str, key: &str) -> bool {
        match self.no_execute.get(name) {
            Some(NoExecuteOp::Set { key: k, .. }) => *k == key,
            Some(NoExecuteOp::Clear) => false,
            None => has_taint(node, key, NO_EXECUTE),
        }
    }

    /// An informer event for `node` arrived: the write in flight (if any) is acknowledged.
    pub fn acknowledge(&mut self, node: &str) {
        self.in_flight.remove(node);
    }

    /// A write for `node` failed; `gone` if the node no longer exists.
    pub fn failed(&mut self, node: &str, gone: bool) {
        self.in_flight.remove(node);
        if gone {
            self.forget(node);
        }
    }

    /// Drop everything pending for a deleted node.
    pub fn forget(&mut self, node: &str) {
        self.status.remove(node);
        self.no_execute.remove(node);
        self.in_flight.remove(node);
    }

    /// Reopen gates whose write was never acknowledged.
    pub fn expire(&mut self, now: Moment) {
        self.in_flight
            .retain(|_, sent| now < *sent + IN_FLIGHT_TIMEOUT_MS);
    }

    /// Nodes with pending operations, in name order.
    pub fn pending_nodes(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .status
            .keys()
            .chain(self.no_execute.keys())
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Emit the next write `node` needs, if none is in flight: first a pending status write,
    /// else one taint update carrying the pending NoExecute change and the NoSchedule taints
    /// its conditions call for (upstream `doNoScheduleTaintingPass`). Operations already in
    /// effect are dropped.
    pub fn flush(&mut self, cache: &Cache, node: &str, now: Moment, out: &mut Outbox) {
        if self.in_flight.contains_key(node) {
            return;
        }
        let Some(current) = cache.nodes.get(node) else {
            self.forget(node);
            return;
        };
        if let Some(op) = self.status.get(node).copied() {
            let fresh = ready_heartbeat(current) != op.heartbeat;
            match with_conditions_unknown(current, op.at).filter(|_| !fresh) {
                Some(new) if condition(&new, "Ready") != condition(current, "Ready") => {
                    self.in_flight.insert(node.to_string(), now);
                    out.push_action(Action::UpdateStatus(Object::Node(Arc::new(new))));
                    return;
                }
                _ => {
                    self.status.remove(node);
                }
            }
        }
        let mut taints = current
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let mut changed = false;
        if let Some(op) = self.no_execute.get(node) {
            let mut probe = taints.clone();
            if op.apply(&mut probe) {
                taints = probe;
                changed = true;
            } else {
                self.no_execute.remove(node);
            }
        }
        changed |= reconcile_no_schedule(&mut taints, &no_schedule_taints_for(current), now);
        if changed {
            let mut new = (**current).clone();
            new.spec.get_or_insert_with(Default::default).taints = Some(taints);
            self.in_flight.insert(node.to_string(), now);
            out.push_action(Action::Update(Object::Node(Arc::new(new))));
        }
    }
}
