//! Scale-up, as upstream's orchestrator: take the pods the scheduler marked Unschedulable,
//! drop those that fit on existing nodes or on nodes already on their way, then for every node group simulate
//! the pods on copies of its template with the scheduler's own filters (binpacking, as
//! upstream's estimator), let the expander pick one option, and optionally balance it over
//! similar groups. A pod that fits no group's template triggers nothing and learns why.
//!
//! Start at [`plan`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use rand_chacha::ChaCha8Rng;

use super::balance::{Member, similar, split};
use super::cloud::NodeGroupView;
use super::clusterstate::ClusterState;
use super::config::AutoscalerConfig;
use super::expander::{Priorities, ScaleUpOption, choose};
use crate::scheduler::simulate::ClusterSnapshot;
use crate::scheduler::{Resources, node_allocatable, pod_requests};
use crate::{Cache, HOSTNAME_LABEL, Key, Moment};

/// Skip reason (upstream `MaxLimitReachedReason`).
pub const REASON_MAX_SIZE: &str = "max node group size reached";
/// Skip reason (upstream `BackoffReason`).
pub const REASON_BACKOFF: &str = "in backoff after failed scale-up";

/// One group's size change (upstream `ScaleUpInfo`, printed `{group 1->2 (max: 4)}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Increase {
    pub group: String,
    pub from: usize,
    pub to: usize,
    pub max: usize,
}

impl std::fmt::Display for Increase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{{} {}->{} (max: {})}}",
            self.group, self.from, self.to, self.max
        )
    }
}

/// What one scale-up pass decided.
#[derive(Clone, Debug, Default)]
pub struct ScaleUpPlan {
    /// Unschedulable pods seen.
    pub unschedulable: usize,
    /// Of those, pods that fit on existing or upcoming nodes (no scale-up for them).
    pub schedulable: usize,
    pub increases: Vec<Increase>,
    /// Pods the chosen scale-up is for.
    pub triggered: Vec<Key>,
    /// Pods no group can help, with upstream's aggregated reasons (only when nothing scaled).
    pub not_triggered: Vec<(Key, String)>,
}

/// The inputs of a pass.
pub struct ScaleUpInput<'a> {
    pub cache: &'a Cache,
    pub groups: &'a [NodeGroupView],
    pub state: &'a ClusterState,
    pub config: &'a AutoscalerConfig,
    pub priorities: Option<&'a Priorities>,
    pub now: Moment,
}

/// True if the scheduler has marked the pod `PodScheduled=False, reason Unschedulable` and it
/// is still pending (upstream's unschedulable pod lister).
pub fn is_unschedulable(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    if spec
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
        || pod.metadata.deletion_timestamp.is_some()
    {
        return false;
    }
    let status = pod.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

/// Pods with the same controller and spec schedule alike (upstream's pod equivalence groups).
struct EquivalenceGroup {
    pods: Vec<Arc<Pod>>,
}

fn equivalence_groups<'p>(pods: impl Iterator<Item = &'p Arc<Pod>>) -> Vec<EquivalenceGroup> {
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut out: Vec<EquivalenceGroup> = Vec::new();
    for pod in pods {
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        let key = match owner {
            Some(uid) => (
                uid,
                serde_json::to_string(&pod.spec).unwrap_or_default()
                    + &serde_json::to_string(&pod.metadata.labels).unwrap_or_default(),
            ),
            None => (format!("pod/{}", Key::of(&pod.metadata)), String::new()),
        };
        match index.get(&key) {
            Some(&i) => out[i].pods.push(pod.clone()),
            None => {
                index.insert(key, out.len());
                out.push(EquivalenceGroup {
                    pods: vec![pod.clone()],
                });
            }
        }
    }
    out
}

/// A copy of a group's template named `name`: its own hostname label, Ready.
pub fn template_node(template: &Node, name: &str) -> Node {
    let mut node = template.clone();
    node.metadata.name = Some(name.to_string());
    node.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(HOSTNAME_LABEL.to_string(), name.to_string());
    let status = node.status.get_or_insert_with(Default::default);
    status.conditions = Some(vec![NodeCondition {
        type_: "Ready".into(),
        status: "True".into(),
        ..Default::default()
    }]);
    node
}

/// Upstream `filterOutSchedulable`: pods that fit on an existing node (the scheduler has not
/// retried them yet) or on a node already on its way (a copy of its group's template, one per
/// upcoming node) are placed there, first fit from the last node used, and need no scale-up.
/// Once a pod of an equivalence group fits nowhere, the rest of its group is not tried.
/// Returns the pods left and how many were placed.
fn filter_out_schedulable(
    input: &ScaleUpInput,
    snap: &mut ClusterSnapshot,
    groups: Vec<EquivalenceGroup>,
) -> (Vec<EquivalenceGroup>, usize) {
    for g in input.groups {
        for i in 0..input.state.upcoming(g) {
            let name = format!("upcoming-{}-{i}", g.name);
            snap.add_node(template_node(&g.template, &name));
        }
    }
    let names: Vec<String> = snap.nodes().iter().map(|e| e.name.clone()).collect();
    let mut hint = 0;
    let mut fitted = 0;
    let mut left = Vec::new();
    for eg in groups {
        let mut rest = Vec::new();
        let mut exhausted = false;
        for pod in eg.pods {
            let spot = if exhausted {
                None
            } else {
                (0..names.len())
                    .map(|k| (hint + k) % names.len())
                    .find(|&n| snap.check(input.cache, &pod, &names[n]).is_ok())
            };
            match spot {
                Some(n) => {
                    snap.place(&pod, &names[n]);
                    hint = n;
                    fitted += 1;
                }
                None => {
                    exhausted = true;
                    rest.push(pod);
                }
            }
        }
        if !rest.is_empty() {
            left.push(EquivalenceGroup { pods: rest });
        }
    }
    (left, fitted)
}

/// What simulating one group gave: an option, or why each equivalence group was refused.
struct GroupResult {
    option: Option<ScaleUpOption>,
    /// Per equivalence group index: reasons it cannot use this group.
    rejected: BTreeMap<usize, Vec<String>>,
}

/// Upstream binpacking estimator on one group's template.
/// The snapshot is left as it was found: placements and template nodes are undone.
fn estimate(
    input: &ScaleUpInput,
    snap: &mut ClusterSnapshot,
    group: &NodeGroupView,
    groups: &[EquivalenceGroup],
) -> GroupResult {
    let mut rejected = BTreeMap::new();
    let probe = format!("template-{}-probe", group.name);
    snap.add_node(template_node(&group.template, &probe));
    let mut fitting = Vec::new();
    for (i, eg) in groups.iter().enumerate() {
        match snap.check(input.cache, &eg.pods[0], &probe) {
            Ok(()) => fitting.push(i),
            Err(reasons) => {
                rejected.insert(i, reasons);
            }
        }
    }
    snap.remove_node(&probe);
    let limit = group.max_size.saturating_sub(group.target_size);
    let mut bin = Bin {
        limit,
        nodes: 0,
        open: None,
        local_name: format!("template-{}-bin", group.name),
        added: Vec::new(),
    };
    let mut pods = Vec::new();
    let mut requests = Resources::default();
    for i in fitting {
        let local = snap.node_local(&groups[i].pods[0]);
        for pod in &groups[i].pods {
            let Some(node) = bin.fit(input.cache, snap, group, pod, local) else {
                if bin.nodes >= limit {
                    break;
                }
                continue;
            };
            snap.place(pod, &node);
            pods.push(Key::of(&pod.metadata));
            requests.add(&pod_requests(pod).requested);
        }
    }
    for key in &pods {
        snap.unplace(key);
    }
    for node in &bin.added {
        snap.remove_node(node);
    }
    let new_nodes = bin.nodes;
    let option = (new_nodes > 0).then(|| ScaleUpOption {
        group: group.name.clone(),
        node_count: new_nodes,
        pods,
        node_allocatable: node_allocatable(&group.template),
        pod_requests: requests,
    });
    GroupResult { option, rejected }
}

/// Upstream's binpacking estimator state for one group: pods go on the last new node while
/// they fit, else on a new copy of the template, up to the group's headroom. For pods whose
/// fit depends on the node alone, one simulated node stands for each new node in turn
/// (emptied when the next is opened), which keeps the snapshot's node set fixed.
struct Bin {
    limit: usize,
    nodes: usize,
    /// The node receiving pods now.
    open: Option<String>,
    local_name: String,
    /// Nodes added to the snapshot (removed when the estimate is done).
    added: Vec<String>,
}

impl Bin {
    /// Where `pod` goes, opening a new node if needed; `None` if it fits no new node.
    fn fit(
        &mut self,
        cache: &Cache,
        snap: &mut ClusterSnapshot,
        group: &NodeGroupView,
        pod: &Pod,
        local: bool,
    ) -> Option<String> {
        if let Some(n) = &self.open
            && snap.check(cache, pod, n).is_ok()
        {
            return Some(n.clone());
        }
        if self.nodes >= self.limit {
            return None;
        }
        let name = if local {
            if snap.node(&self.local_name).is_none() {
                snap.add_node(template_node(&group.template, &self.local_name));
                self.added.push(self.local_name.clone());
            } else {
                snap.clear_placements_on(&self.local_name);
            }
            self.local_name.clone()
        } else {
            let name = format!("template-{}-{}", group.name, self.nodes);
            snap.add_node(template_node(&group.template, &name));
            self.added.push(name.clone());
            name
        };
        if snap.check(cache, pod, &name).is_err() {
            // A fresh node does not take it (e.g. spread skew): nothing opened.
            if !local {
                snap.remove_node(&name);
                self.added.pop();
            }
            return None;
        }
        self.nodes += 1;
        self.open = Some(name.clone());
        Some(name)
    }
}

/// Upstream's NotTriggerScaleUp text: `"<count> <reason>"` per reason over all groups, joined
/// with `, ` (sorted here; upstream iterates a Go map).
fn reasons_message(per_group: &[Vec<String>]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reasons in per_group {
        for r in reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    counts
        .iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Run one scale-up pass. See the module docs.
pub fn plan(input: &ScaleUpInput, rng: &mut ChaCha8Rng) -> ScaleUpPlan {
    let pending: Vec<&Arc<Pod>> = input
        .cache
        .pods
        .values()
        .filter(|p| is_unschedulable(p))
        .collect();
    let mut out = ScaleUpPlan {
        unschedulable: pending.len(),
        ..ScaleUpPlan::default()
    };
    if pending.is_empty() {
        return out;
    }
    let mut snap = ClusterSnapshot::new(input.cache);
    let (groups, fitted) =
        filter_out_schedulable(input, &mut snap, equivalence_groups(pending.into_iter()));
    out.schedulable = fitted;
    if groups.is_empty() {
        return out;
    }
    // Per equivalence group, per node group: why it cannot help.
    let mut refusals: Vec<Vec<Vec<String>>> = vec![Vec::new(); groups.len()];
    let mut options = Vec::new();
    for g in input.groups {
        let skip = if g.target_size >= g.max_size {
            Some(REASON_MAX_SIZE)
        } else if input.state.is_backed_off(&g.name, input.now) {
            Some(REASON_BACKOFF)
        } else {
            None
        };
        if let Some(reason) = skip {
            for r in &mut refusals {
                r.push(vec![reason.to_string()]);
            }
            continue;
        }
        let result = estimate(input, &mut snap, g, &groups);
        for (i, reasons) in result.rejected {
            refusals[i].push(reasons);
        }
        options.extend(result.option);
    }
    let best = choose(input.config.expander, &options, input.priorities, rng).cloned();
    let Some(best) = best else {
        for (eg, reasons) in groups.iter().zip(&refusals) {
            let message = reasons_message(reasons);
            for pod in &eg.pods {
                out.not_triggered
                    .push((Key::of(&pod.metadata), message.clone()));
            }
        }
        return out;
    };
    out.increases = increases(input, &best, &options);
    out.triggered = best.pods;
    out
}

/// The chosen option as size changes, balanced over similar groups when enabled.
fn increases(
    input: &ScaleUpInput,
    best: &ScaleUpOption,
    options: &[ScaleUpOption],
) -> Vec<Increase> {
    let view = |name: &str| input.groups.iter().find(|g| g.name == name);
    let Some(best_group) = view(&best.group) else {
        return Vec::new();
    };
    let mut members = vec![Member {
        name: best_group.name.clone(),
        current: best_group.target_size,
        max: best_group.max_size,
    }];
    if input.config.balance_similar_node_groups {
        for o in options.iter().filter(|o| o.group != best.group) {
            if let Some(g) = view(&o.group)
                && similar(&best_group.template, &g.template)
            {
                members.push(Member {
                    name: g.name.clone(),
                    current: g.target_size,
                    max: g.max_size,
                });
            }
        }
    }
    split(best.node_count, &members)
        .into_iter()
        .filter_map(|(name, delta)| {
            let g = view(&name)?;
            Some(Increase {
                group: name,
                from: g.target_size,
                to: g.target_size + delta,
                max: g.max_size,
            })
        })
        .collect()
}
