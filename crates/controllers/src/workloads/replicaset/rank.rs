//! Which pods a ReplicaSet deletes first when it has too many: upstream `ActivePodsWithRanks`
//! and `getPodsToDelete` (pkg/controller/controller_utils.go, replicaset/replica_set.go).
//!
//! Start at [`pods_to_delete`].

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::workloads::util::{created, node_name, phase, ready_since};
use crate::{Moment, pod_is_ready};

/// Annotation lowering (or raising) a pod's deletion priority.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Upstream's order: "less" is deleted first. `rank` is the number of related active pods on
/// the same node (doubled-up pods go first). Times compare exactly (upstream's default
/// LogarithmicScaleDown buckets them on a log2 scale); the last tie-break is the name.
fn compare(a: &Pod, ra: usize, b: &Pod, rb: usize) -> Ordering {
    let assigned = |p: &Pod| !node_name(p).is_empty();
    // Newer (later) first; zero (unknown) before anything.
    let after_or_zero = |x: Moment, y: Moment| match (x == Moment::EPOCH, y == Moment::EPOCH) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => y.cmp(&x),
    };
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_ordinal(a).cmp(&phase_ordinal(b)))
        .then(pod_is_ready(a).cmp(&pod_is_ready(b)))
        .then(deletion_cost(a).cmp(&deletion_cost(b)))
        .then(rb.cmp(&ra))
        .then_with(|| match (pod_is_ready(a), pod_is_ready(b)) {
            (true, true) => after_or_zero(
                ready_since(a).unwrap_or(Moment::EPOCH),
                ready_since(b).unwrap_or(Moment::EPOCH),
            ),
            _ => Ordering::Equal,
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then_with(|| after_or_zero(created(&a.metadata), created(&b.metadata)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The `n` pods of `pods` to delete first; `related` are the active pods of this ReplicaSet
/// and its siblings (same owner), used to prefer pods doubled up on a node.
pub fn pods_to_delete<'a>(
    pods: &[&'a Arc<Pod>],
    related: &[&Arc<Pod>],
    n: usize,
) -> Vec<&'a Arc<Pod>> {
    let mut on_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in related {
        let node = node_name(p);
        if !node.is_empty() {
            *on_node.entry(node).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&Arc<Pod>, usize)> = pods
        .iter()
        .map(|p| {
            let node = node_name(p);
            let rank = if node.is_empty() {
                0
            } else {
                on_node.get(node).copied().unwrap_or(0)
            };
            (*p, rank)
        })
        .collect();
    ranked.sort_by(|(a, ra), (b, rb)| compare(a, *ra, b, *rb));
    ranked.into_iter().take(n).map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Arc<Pod> {
        let conds = if ready {
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": created}])
        } else {
            json!([])
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d", "creationTimestamp": created},
                "spec": {"containers": [], "nodeName": node},
                "status": {"phase": phase, "conditions": conds}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn order_follows_upstream() {
        let a = pod(
            "a-running-ready-old",
            "n1",
            "Running",
            true,
            "2027-01-01T00:00:00Z",
        );
        let b = pod(
            "b-running-ready-new",
            "n2",
            "Running",
            true,
            "2027-01-02T00:00:00Z",
        );
        let c = pod(
            "c-unscheduled",
            "",
            "Pending",
            false,
            "2027-01-01T00:00:00Z",
        );
        let d = pod("d-pending", "n4", "Pending", false, "2027-01-01T00:00:00Z");
        let e = pod(
            "e-running-notready",
            "n3",
            "Running",
            false,
            "2027-01-01T00:00:00Z",
        );
        let all = [&a, &b, &c, &d, &e];
        let got: Vec<_> = pods_to_delete(&all, &all, 5)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "c-unscheduled",
                "d-pending",
                "e-running-notready",
                "b-running-ready-new",
                "a-running-ready-old"
            ]
        );
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let a = pod("a", "n1", "Running", true, "2027-01-01T00:00:00Z");
        let b = pod("b", "n2", "Running", true, "2027-01-01T00:00:00Z");
        let c = pod("c", "n2", "Running", true, "2027-01-01T00:00:00Z");
        let all = [&a, &b, &c];
        let got: Vec<_> = pods_to_delete(&all, &all, 1)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(got, ["b"]);
    }
}
