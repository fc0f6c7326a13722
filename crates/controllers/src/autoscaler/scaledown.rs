//! Scale-down, as upstream's planner: a node of a group is unneeded when it is underused
//! (the larger of its CPU and memory requests over allocatable is below
//! `--scale-down-utilization-threshold`; unready nodes skip this test) and every pod that
//! must move fits elsewhere under the scheduler's filters; a node unneeded for
//! `--scale-down-unneeded-time` (unready: `--scale-down-unready-time`) is removed, never
//! taking a group below its min size, and not within the cool-downs after a scale-up or a
//! failed removal.
//!
//! Start at [`ScaleDown::plan`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::cloud::NodeGroupView;
use super::clusterstate::{ClusterState, being_deleted};
use super::config::AutoscalerConfig;
use crate::scheduler::simulate::ClusterSnapshot;
use crate::{Cache, Moment, node_ready_status};

/// Upstream annotation that lets (`"true"`) or forbids (`"false"`) evicting a pod.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// Annotation the kubelet puts on mirror pods of static pods.
const MIRROR: &str = "kubernetes.io/config.mirror";

/// Why a node cannot be removed (upstream `simulator.UnremovableReason`, a subset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unremovable {
    NotUnderutilized,
    /// A pod blocks it (upstream `BlockedByPod`): not replicated, kube-system, or
    /// safe-to-evict=false.
    BlockedByPod(String),
    /// Some pod fits on no other node (upstream `NoPlaceToMovePods`).
    NoPlaceToMovePods,
}

/// The pods of a node that would have to move (DaemonSet, mirror and finished pods stay),
/// or the pod that blocks the move.
fn pods_to_move(
    cache: &Cache,
    node: &str,
    config: &AutoscalerConfig,
) -> Result<Vec<Arc<Pod>>, String> {
    let mut out = Vec::new();
    for pod in cache.pods_on_node(node) {
        let ann = pod.metadata.annotations.as_ref();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if owner.is_some_and(|o| o.kind == "DaemonSet")
            || ann.is_some_and(|a| a.contains_key(MIRROR))
            || matches!(phase, Some("Succeeded" | "Failed"))
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        let safe = ann.and_then(|a| a.get(SAFE_TO_EVICT)).map(String::as_str);
        match safe {
            Some("false") => return Err(name),
            Some("true") => {}
            _ => {
                let system = pod.metadata.namespace.as_deref() == Some("kube-system");
                if owner.is_none() || (system && config.skip_nodes_with_system_pods) {
                    return Err(name);
                }
            }
        }
        out.push(pod.clone());
    }
    Ok(out)
}

/// Upstream utilization: the larger of the CPU and memory fractions requested.
fn utilization(snap: &ClusterSnapshot, node: &str) -> f64 {
    let Some(e) = snap.node(node) else {
        return 0.0;
    };
    let frac = |req: i64, alloc: i64| {
        if alloc <= 0 {
            0.0
        } else {
            req as f64 / alloc as f64
        }
    };
    let r = &e.usage.requested;
    frac(r.milli_cpu, e.allocatable.milli_cpu).max(frac(r.memory, e.allocatable.memory))
}

/// One node to remove.
#[derive(Clone, Debug, PartialEq)]
pub struct Removal {
    pub group: String,
    pub node: String,
    /// Pods to evict first (empty for an empty node).
    pub evict: Vec<Arc<Pod>>,
}

/// What a scale-down pass found and decided.
#[derive(Clone, Debug, Default)]
pub struct ScaleDownPlan {
    /// Unneeded nodes (upstream's scale-down candidates).
    pub unneeded: Vec<String>,
    pub unremovable: BTreeMap<String, Unremovable>,
    pub removals: Vec<Removal>,
}

/// Where drained pods may go: every node, tried round-robin from the last one that took a pod
/// (upstream's predicate checker scans from its last index the same way).
struct Destinations {
    names: Vec<String>,
    hint: usize,
}

/// Unneeded-node tracking across scans.
#[derive(Debug, Default)]
pub struct ScaleDown {
    pub unneeded_since: BTreeMap<String, Moment>,
}

/// Inputs of a pass.
pub struct ScaleDownInput<'a> {
    pub cache: &'a Cache,
    pub groups: &'a [NodeGroupView],
    pub state: &'a ClusterState,
    pub config: &'a AutoscalerConfig,
    /// True inside the cool-downs: track unneeded nodes, remove none.
    pub cooldown: bool,
    pub now: Moment,
}

impl ScaleDown {
    /// Forget every unneeded node (upstream `CleanUpUnneededNodes`, when autoscaling halts).
    pub fn clear(&mut self) {
        self.unneeded_since.clear();
    }

    /// Update the unneeded nodes and pick removals. See the module docs.
    pub fn plan(&mut self, input: &ScaleDownInput) -> ScaleDownPlan {
        let mut out = ScaleDownPlan::default();
        let mut snap = ClusterSnapshot::new(input.cache);
        let mut moves: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        let mut gone: BTreeSet<String> = BTreeSet::new();
        let mut dest = Destinations {
            names: snap.nodes().iter().map(|e| e.name.clone()).collect(),
            hint: 0,
        };
        for (name, node) in &input.cache.nodes {
            if !input.state.group_of.contains_key(name) || being_deleted(node) {
                continue;
            }
            match self.removable(input, &mut snap, node, &gone, &mut dest) {
                Ok(pods) => {
                    gone.insert(name.clone());
                    moves.insert(name.clone(), pods);
                }
                Err(why) => {
                    out.unremovable.insert(name.clone(), why);
                }
            }
        }
        self.unneeded_since.retain(|n, _| gone.contains(n));
        for n in &gone {
            self.unneeded_since.entry(n.clone()).or_insert(input.now);
        }
        out.unneeded = gone.into_iter().collect();
        if !input.cooldown {
            out.removals = self.removals(input, moves);
        }
        out
    }

    /// Whether `node` can go: underused (or unready) and all its pods fit elsewhere. On
    /// success the moved pods stay placed in `snap`, so later candidates do not count on the
    /// same room.
    fn removable(
        &self,
        input: &ScaleDownInput,
        snap: &mut ClusterSnapshot,
        node: &Node,
        gone: &BTreeSet<String>,
        dest: &mut Destinations,
    ) -> Result<Vec<Arc<Pod>>, Unremovable> {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let ready = node_ready_status(node) == Some("True");
        if ready && utilization(snap, name) >= input.config.scale_down_utilization_threshold {
            return Err(Unremovable::NotUnderutilized);
        }
        let pods =
            pods_to_move(input.cache, name, input.config).map_err(Unremovable::BlockedByPod)?;
        let mut moved: Vec<&Arc<Pod>> = Vec::new();
        for pod in &pods {
            let n = dest.names.len();
            let to = (0..n).map(|k| (dest.hint + k) % n).find(|&i| {
                let d = &dest.names[i];
                d != name && !gone.contains(d) && snap.check(input.cache, pod, d).is_ok()
            });
            match to {
                Some(i) => {
                    snap.place(pod, &dest.names[i]);
                    dest.hint = i;
                    moved.push(pod);
                }
                None => {
                    for p in moved {
                        snap.reset(p);
                    }
                    return Err(Unremovable::NoPlaceToMovePods);
                }
            }
        }
        Ok(pods)
    }

    /// Nodes unneeded long enough, within group min sizes: every such empty node (up to
    /// `--max-empty-bulk-delete`) and at most one non-empty node per pass.
    fn removals(
        &self,
        input: &ScaleDownInput,
        mut moves: BTreeMap<String, Vec<Arc<Pod>>>,
    ) -> Vec<Removal> {
        let mut sizes: BTreeMap<&str, (usize, usize)> = input
            .groups
            .iter()
            .map(|g| (g.name.as_str(), (g.target_size, g.min_size)))
            .collect();
        let mut out: Vec<Removal> = Vec::new();
        let (mut empty, mut drained) = (0, 0);
        for (name, since) in &self.unneeded_since {
            let Some(node) = input.cache.nodes.get(name) else {
                continue;
            };
            let ready = node_ready_status(node) == Some("True");
            let wait = if ready {
                input.config.scale_down_unneeded_time
            } else {
                input.config.scale_down_unready_time
            };
            if input.now.saturating_since(*since) < wait {
                continue;
            }
            let Some(group) = input.state.group_of.get(name) else {
                continue;
            };
            let Some((size, min)) = sizes.get_mut(group.as_str()) else {
                continue;
            };
            if *size <= *min {
                continue;
            }
            let evict = moves.remove(name).unwrap_or_default();
            if evict.is_empty() {
                if empty >= input.config.max_empty_bulk_delete {
                    continue;
                }
                empty += 1;
            } else {
                if drained >= 1 {
                    continue;
                }
                drained += 1;
            }
            *size -= 1;
            out.push(Removal {
                group: group.clone(),
                node: name.clone(),
                evict,
            });
        }
        out
    }
}
