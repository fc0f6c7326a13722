//! Taint and toleration helpers shared by the node lifecycle and taint eviction controllers:
//! the upstream taint keys, the condition -> NoSchedule taint map, toleration matching.
//!
//! Start at [`no_schedule_taints_for`] (what `doNoScheduleTaintingPass` wants on a node) and
//! [`matching_tolerations`] (upstream `v1helper.GetMatchingTolerations`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};

use crate::Moment;
use crate::time::to_time;

/// `v1.TaintNodeNotReady` (Ready is False), `v1.TaintNodeUnreachable` (Ready is Unknown),
/// `v1.TaintNodeUnschedulable` (cordoned), and toleration matching, shared with the scheduler.
pub use runtime::labels::{TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE, tolerates};
/// `v1.TaintNodeMemoryPressure`.
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// `v1.TaintNodeDiskPressure`.
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
/// `v1.TaintNodeNetworkUnavailable`.
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// `v1.TaintNodePIDPressure`.
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";

/// `v1.TaintEffectNoExecute`.
pub const NO_EXECUTE: &str = "NoExecute";
/// `v1.TaintEffectNoSchedule`.
pub const NO_SCHEDULE: &str = "NoSchedule";

/// Upstream `nodeConditionToTaintKeyStatusMap`: (condition type, status) -> NoSchedule taint key.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    ("MemoryPressure", "True", TAINT_MEMORY_PRESSURE),
    ("DiskPressure", "True", TAINT_DISK_PRESSURE),
    ("NetworkUnavailable", "True", TAINT_NETWORK_UNAVAILABLE),
    ("PIDPressure", "True", TAINT_PID_PRESSURE),
];

/// True for the NoSchedule taint keys the controller owns (upstream `taintKeyToNodeConditionMap`
/// plus the unschedulable taint).
fn is_managed_no_schedule_key(key: &str) -> bool {
    key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key)
}

/// The node's taints (empty if none).
pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// True if the node carries a taint with this key and effect.
pub fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node_taints(node)
        .iter()
        .any(|t| t.key == key && t.effect == effect)
}

/// A controller taint with `timeAdded` = `now` (upstream `SwapNodeControllerTaint` stamps
/// every taint it adds).
pub fn taint(key: &str, effect: &str, now: Moment) -> Taint {
    Taint {
        key: key.to_string(),
        effect: effect.to_string(),
        time_added: Some(to_time(now)),
        value: None,
    }
}

/// The NoSchedule taint keys upstream `doNoScheduleTaintingPass` derives from the node's
/// conditions and `spec.unschedulable`, in condition order.
pub fn no_schedule_taints_for(node: &Node) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    for c in conditions {
        for (ty, status, key) in CONDITION_TAINTS {
            if c.type_ == ty && c.status == status && !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        keys.push(TAINT_UNSCHEDULABLE);
    }
    keys
}

/// Reconcile the managed NoSchedule taints of `taints` to `wanted` (upstream `TaintSetDiff`
/// then add/remove): missing ones are appended with `timeAdded` = `now`, unwanted managed ones
/// removed; other taints are kept in place. Returns true if anything changed.
pub fn reconcile_no_schedule(taints: &mut Vec<Taint>, wanted: &[&str], now: Moment) -> bool {
    let before = taints.len();
    taints.retain(|t| {
        !(t.effect == NO_SCHEDULE
            && is_managed_no_schedule_key(&t.key)
            && !wanted.contains(&t.key.as_str()))
    });
    let mut changed = taints.len() != before;
    for key in wanted {
        if !taints
            .iter()
            .any(|t| t.effect == NO_SCHEDULE && t.key == *key)
        {
            taints.push(taint(key, NO_SCHEDULE, now));
            changed = true;
        }
    }
    changed
}

/// Upstream `AddOrUpdateTaint`: replace the taint with the same key and effect (unless equal),
/// or append it. Returns true if anything changed.
pub fn add_or_update_taint(taints: &mut Vec<Taint>, new: Taint) -> bool {
    match taints
        .iter_mut()
        .find(|t| t.key == new.key && t.effect == new.effect)
    {
        Some(existing) if *existing == new => false,
        Some(existing) => {
            *existing = new;
            true
        }
        None => {
            taints.push(new);
            true
        }
    }
}

/// Upstream `RemoveTaintOffNode` for one key/effect. Returns true if anything changed.
pub fn remove_taint(taints: &mut Vec<Taint>, key: &str, effect: &str) -> bool {
    let before = taints.len();
    taints.retain(|t| !(t.key == key && t.effect == effect));
    taints.len() != before
}

/// The node's NoExecute taints, in order (upstream `getNoExecuteTaints`).
pub fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node_taints(node)
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .cloned()
        .collect()
}

/// Upstream `GetMatchingTolerations`: `None` if some taint is not tolerated, else the first
/// toleration that tolerates each taint, in taint order.
pub fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> Option<Vec<&'a Toleration>> {
    let mut used = Vec::with_capacity(taints.len());
    for t in taints {
        used.push(tolerations.iter().find(|tol| tolerates(tol, t))?);
    }
    Some(used)
}

/// How long the used tolerations allow a pod to stay (upstream `getMinTolerationTime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TolerationTime {
    /// No toleration bounds it: never evicted.
    Forever,
    /// Evict this many milliseconds after the taint was seen (0: at once).
    Span(Duration),
}

/// Upstream `getMinTolerationTime`: the smallest `tolerationSeconds` (a value <= 0 means now;
/// no tolerations at all also means now); no `tolerationSeconds` anywhere means forever.
pub fn min_toleration_time(used: &[&Toleration]) -> TolerationTime {
    if used.is_empty() {
        return TolerationTime::Span(Duration::ZERO);
    }
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return TolerationTime::Span(Duration::ZERO);
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    match min {
        Some(s) => TolerationTime::Span(Duration::from_secs(s.unsigned_abs())),
        None => TolerationTime::Forever,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).expect("toleration")
    }

    fn nt(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: NO_EXECUTE.into(),
            time_added: None,
            value: None,
        }
    }

    #[test]
    fn min_toleration_time_rules() {
        let a = tol(json!({"operator": "Exists", "tolerationSeconds": 300}));
        let b = tol(json!({"operator": "Exists", "tolerationSeconds": 60}));
        let forever = tol(json!({"operator": "Exists"}));
        let zero = tol(json!({"operator": "Exists", "tolerationSeconds": 0}));
        assert_eq!(
            min_toleration_time(&[&a, &b]),
            TolerationTime::Span(Duration::from_millis(60_000))
        );
        assert_eq!(
            min_toleration_time(&[&a, &forever]),
            TolerationTime::Span(Duration::from_millis(300_000))
        );
        assert_eq!(min_toleration_time(&[&forever]), TolerationTime::Forever);
        assert_eq!(
            min_toleration_time(&[&zero, &a]),
            TolerationTime::Span(Duration::ZERO)
        );
        assert_eq!(
            min_toleration_time(&[]),
            TolerationTime::Span(Duration::ZERO)
        );
        let taints = [nt(TAINT_UNREACHABLE), nt("x")];
        assert!(matching_tolerations(&taints, std::slice::from_ref(&a)).is_some());
        let only = tol(json!({"key": TAINT_UNREACHABLE, "operator": "Exists"}));
        assert!(matching_tolerations(&taints, std::slice::from_ref(&only)).is_none());
    }

    #[test]
    fn no_schedule_reconcile_keeps_foreign_taints() {
        let mut taints = vec![
            Taint {
                key: "team".into(),
                effect: NO_SCHEDULE.into(),
                time_added: None,
                value: Some("a".into()),
            },
            Taint {
                key: TAINT_NOT_READY.into(),
                effect: NO_SCHEDULE.into(),
                time_added: None,
                value: None,
            },
        ];
        assert!(reconcile_no_schedule(
            &mut taints,
            &[TAINT_UNREACHABLE],
            Moment::from_millis(1_000)
        ));
        let keys: Vec<_> = taints.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["team", TAINT_UNREACHABLE]);
        assert!(!reconcile_no_schedule(
            &mut taints,
            &[TAINT_UNREACHABLE],
            Moment::from_millis(2_000)
        ));
    }
}
