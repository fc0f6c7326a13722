//! One scheduling cycle for one pod, as upstream's `schedulePod`: run the filter plugins over
//! the nodes (stopping once enough feasible nodes are found), score the feasible ones, pick the
//! best, or explain the failure in upstream's `FitError` shape.
//!
//! Start at [`schedule_one`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Pod, Toleration};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::affinity::AntiAffinity;
use super::nodes::{NodeEntry, NodeTable};
use super::resources::{PodUsage, pod_requests};
use super::selectors::{RequiredNodeAffinity, Selector, first_untolerated, tolerates};
use super::spread::{SpreadFilter, SpreadScore};
use super::spread_counts::SpreadCounts;
use crate::{Cache, Key};

/// Upstream `nodeunschedulable.ErrReasonUnschedulable`.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// Upstream `nodeaffinity.ErrReasonPod`.
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// Upstream `ErrNoNodesAvailable`.
pub const NO_NODES: &str = "no nodes available to schedule pods";
/// Upstream `minFeasibleNodesToFind`.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// Default score-plugin weights (upstream `getDefaultPlugins`, pkg/scheduler/apis/config/v1).
const WEIGHT_TAINT_TOLERATION: i64 = 3;
const WEIGHT_SPREAD: i64 = 2;
const WEIGHT_FIT: i64 = 1;
const WEIGHT_BALANCED: i64 = 1;

/// What the plugins read: the informer cache plus the scheduler's own bookkeeping.
pub struct Snapshot<'a> {
    pub cache: &'a Cache,
    pub nodes: &'a NodeTable,
    /// Assumed pods by uid → node (bound by us, not yet observed).
    pub assumed_nodes: &'a HashMap<String, String>,
    pub anti_affinity_pods: &'a BTreeSet<Key>,
    /// Incremental matching-pod counts for the spread plugin.
    pub spread_counts: &'a SpreadCounts,
    /// The incoming pod's default spreading selector (upstream `helper.DefaultSelector`) if
    /// the caller has it at hand; `None`: computed from the cache's Services and ReplicaSets.
    pub default_selector: Option<&'a Selector>,
}

impl<'a> Snapshot<'a> {
    /// The node a pod occupies for scheduling: `spec.nodeName`, or where we assumed it.
    /// Terminal pods (Succeeded/Failed) occupy nothing.
    pub fn node_of(&self, pod: &'a Pod) -> Option<&'a str> {
        if is_terminal(pod) {
            return None;
        }
        match pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            Some(n) => Some(n),
            None if self.assumed_nodes.is_empty() => None,
            None => pod
                .metadata
                .uid
                .as_deref()
                .and_then(|u| self.assumed_nodes.get(u))
                .map(String::as_str),
        }
    }
}

pub use runtime::labels::pod_is_terminal as is_terminal;

/// The incoming pod, parsed once per cycle.
pub struct PodCtx<'a> {
    pub pod: &'a Pod,
    pub namespace: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub tolerations: &'a [Toleration],
    pub affinity: RequiredNodeAffinity,
    pub usage: PodUsage,
}

impl<'a> PodCtx<'a> {
    pub fn new(pod: &'a Pod) -> PodCtx<'a> {
        PodCtx {
            pod,
            namespace: pod.metadata.namespace.as_deref().unwrap_or(""),
            labels: pod.metadata.labels.as_ref(),
            tolerations: pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or(&[]),
            affinity: RequiredNodeAffinity::of(pod),
            usage: pod_requests(pod),
        }
    }
}

/// Why one node was rejected: its reasons (up to three, from one plugin; most are fixed
/// texts, so rejecting thousands of nodes allocates nothing), and whether preemption could not
/// help (upstream `UnschedulableAndUnresolvable`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeFailure {
    reasons: [Option<Cow<'static, str>>; 3],
    unresolvable: bool,
}

impl NodeFailure {
    fn reasons(&self) -> impl Iterator<Item = &str> {
        self.reasons.iter().flatten().map(|r| &**r)
    }
}

fn fail(reason: impl Into<Cow<'static, str>>, unresolvable: bool) -> NodeFailure {
    NodeFailure {
        reasons: [Some(reason.into()), None, None],
        unresolvable,
    }
}

/// The rejected nodes of one cycle, tallied as upstream's `Diagnosis` is summarized: nodes
/// per reason (few distinct ones; the same fixed text is found by address first), and nodes
/// preemption could or could not help.
#[derive(Debug, Default)]
struct Failures {
    reasons: Vec<(Cow<'static, str>, usize)>,
    unresolvable: usize,
    resolvable: usize,
}

impl Failures {
    fn add(&mut self, f: NodeFailure) {
        for r in f.reasons.into_iter().flatten() {
            let same = |k: &Cow<'static, str>| std::ptr::eq(k.as_ref(), r.as_ref()) || *k == r;
            match self.reasons.iter_mut().find(|(k, _)| same(k)) {
                Some((_, n)) => *n += 1,
                None => self.reasons.push((r, 1)),
            }
        }
        if f.unresolvable {
            self.unresolvable += 1;
        } else {
            self.resolvable += 1;
        }
    }
}

/// Upstream `noderesources` Fit filter.
fn fit(pod: &PodCtx, node: &NodeEntry) -> Result<(), NodeFailure> {
    let mut reasons: [Option<Cow<'static, str>>; 3] = [None, None, None];
    let (alloc, used, req) = (
        &node.allocatable,
        &node.usage.requested,
        &pod.usage.requested,
    );
    if used.pods + 1 > alloc.pods {
        reasons[0] = Some("Too many pods".into());
    }
    if req.milli_cpu > 0 && req.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        reasons[1] = Some("Insufficient cpu".into());
    }
    if req.memory > 0 && req.memory > alloc.memory - used.memory {
        reasons[2] = Some("Insufficient memory".into());
    }
    if reasons.iter().all(Option::is_none) {
        Ok(())
    } else {
        Err(NodeFailure {
            reasons,
            unresolvable: false,
        })
    }
}

/// Run the filter plugins for `pod` on the one node at `idx` of the snapshot's table: the
/// what-if check the cluster autoscaler's simulation uses (upstream `CheckPredicates`, which
/// runs the scheduler framework's filters). `Err` holds the failing plugin's reasons.
pub fn check_node(snap: &Snapshot, pod: &Pod, idx: usize) -> Result<(), Vec<String>> {
    let ctx = PodCtx::new(pod);
    let spread = SpreadFilter::new(snap, &ctx);
    let anti = AntiAffinity::new(snap, &ctx);
    filter(
        &ctx,
        &snap.nodes.entries()[idx],
        idx,
        spread.as_ref(),
        anti.as_ref(),
    )
    .map_err(|f| f.reasons().map(str::to_string).collect())
}

/// The filter plugins in upstream's default order; the first failing plugin decides.
fn filter(
    pod: &PodCtx,
    node: &NodeEntry,
    idx: usize,
    spread: Option<&SpreadFilter>,
    anti: Option<&AntiAffinity>,
) -> Result<(), NodeFailure> {
    if node.unschedulable {
        let cordon = k8s_openapi::api::core::v1::Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !pod.tolerations.iter().any(|t| tolerates(t, &cordon)) {
            return Err(fail(REASON_UNSCHEDULABLE, true));
        }
    }
    if let Some(t) = first_untolerated(&node.taints, pod.tolerations) {
        let reason = format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        );
        return Err(fail(reason, true));
    }
    if !pod.affinity.matches(&node.node) {
        return Err(fail(REASON_NODE_AFFINITY, true));
    }
    fit(pod, node)?;
    if let Some(s) = spread {
        s.filter(idx)
            .map_err(|(reason, unresolvable)| fail(reason, unresolvable))?;
    }
    if let Some(a) = anti {
        a.filter(node).map_err(|reason| fail(reason, false))?;
    }
    Ok(())
}

/// Upstream `numFeasibleNodesToFind`.
fn num_feasible_to_find(percentage: u32, all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return all;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = (50usize.saturating_sub(all / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// `LeastAllocated` (cpu and memory, weight 1 each) on non-zero requests.
fn least_allocated(pod: &PodCtx, node: &NodeEntry) -> i64 {
    let one = |alloc: i64, req: i64| {
        if alloc == 0 || req > alloc {
            0
        } else {
            (alloc - req) * 100 / alloc
        }
    };
    let u = &node.usage.non_zero;
    let p = &pod.usage.non_zero;
    let cpu = one(node.allocatable.milli_cpu, u.milli_cpu + p.milli_cpu);
    let mem = one(node.allocatable.memory, u.memory + p.memory);
    (cpu + mem) / 2
}

/// `BalancedAllocation` on real requests: `(1 - std(cpuFraction, memFraction)) * 100`.
fn balanced(pod: &PodCtx, node: &NodeEntry) -> i64 {
    let frac = |alloc: i64, req: i64| {
        if alloc == 0 {
            1.0
        } else {
            (req as f64 / alloc as f64).min(1.0)
        }
    };
    let u = &node.usage.requested;
    let p = &pod.usage.requested;
    let cpu = frac(node.allocatable.milli_cpu, u.milli_cpu + p.milli_cpu);
    let mem = frac(node.allocatable.memory, u.memory + p.memory);
    ((1.0 - ((cpu - mem) / 2.0).abs()) * 100.0) as i64
}

/// `TaintToleration` score: fewer untolerated PreferNoSchedule taints is better.
fn taint_scores(pod: &PodCtx, entries: &[NodeEntry], feasible: &[usize]) -> Vec<i64> {
    let prefer: Vec<&Toleration> = pod
        .tolerations
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .collect();
    let raw: Vec<i64> = feasible
        .iter()
        .map(|&i| {
            entries[i]
                .taints
                .iter()
                .filter(|t| {
                    t.effect == "PreferNoSchedule" && !prefer.iter().any(|tol| tolerates(tol, t))
                })
                .count() as i64
        })
        .collect();
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&s| if max == 0 { 100 } else { 100 - 100 * s / max })
        .collect()
}

/// Scheduler-wide knobs a cycle reads and updates.
pub struct CycleParams<'r> {
    pub percentage_of_nodes_to_score: u32,
    pub next_start_node: &'r mut usize,
    pub rng: &'r mut ChaCha8Rng,
}

/// Find a node for `pod`, or the condition message explaining why none fits.
pub fn schedule_one(
    snap: &Snapshot,
    pod: &Pod,
    params: &mut CycleParams,
) -> Result<String, String> {
    let entries = snap.nodes.entries();
    let all = entries.len();
    if all == 0 {
        return Err(NO_NODES.to_string());
    }
    let ctx = PodCtx::new(pod);
    let spread = SpreadFilter::new(snap, &ctx);
    let anti = AntiAffinity::new(snap, &ctx);
    let want = num_feasible_to_find(params.percentage_of_nodes_to_score, all);
    let start = *params.next_start_node % all;
    let mut feasible = Vec::with_capacity(want.min(all));
    let mut processed = 0;
    let order = snap.nodes.order();
    for i in 0..all {
        let idx = order[(start + i) % all];
        processed = i + 1;
        // Feasibility is the conjunction of the filters, so the cheap spread check may reject
        // first; which plugin rejected a node only matters for the message, rebuilt below in
        // upstream's plugin order when no node fits.
        if spread.as_ref().is_some_and(|s| s.filter(idx).is_err()) {
            continue;
        }
        if filter(&ctx, &entries[idx], idx, spread.as_ref(), anti.as_ref()).is_ok() {
            feasible.push(idx);
            if feasible.len() >= want {
                break;
            }
        }
    }
    *params.next_start_node = (start + processed) % all;
    if feasible.is_empty() {
        // Every node was visited and rejected: tally each one's first failing plugin.
        let mut failures = Failures::default();
        for (idx, node) in entries.iter().enumerate() {
            if let Err(f) = filter(&ctx, node, idx, spread.as_ref(), anti.as_ref()) {
                failures.add(f);
            }
        }
        return Err(fit_error_message(all, &failures, pod));
    }
    if feasible.len() == 1 {
        return Ok(entries[feasible[0]].name.clone());
    }
    let totals = score(snap, &ctx, &feasible);
    Ok(entries[select(&feasible, &totals, params.rng)].name.clone())
}

fn score(snap: &Snapshot, ctx: &PodCtx, feasible: &[usize]) -> Vec<i64> {
    let entries = snap.nodes.entries();
    let taints = taint_scores(ctx, entries, feasible);
    let spread = SpreadScore::new(snap, ctx, feasible).map(|s| s.scores(feasible));
    let best_effort = ctx.usage.requested.milli_cpu == 0 && ctx.usage.requested.memory == 0;
    feasible
        .iter()
        .enumerate()
        .map(|(j, &idx)| {
            let node = &entries[idx];
            let mut total =
                WEIGHT_FIT * least_allocated(ctx, node) + WEIGHT_TAINT_TOLERATION * taints[j];
            if !best_effort {
                total += WEIGHT_BALANCED * balanced(ctx, node);
            }
            if let Some(s) = &spread {
                total += WEIGHT_SPREAD * s[j];
            }
            total
        })
        .collect()
}

/// Upstream `selectHost`: the highest total, ties broken uniformly at random (reservoir
/// sampling with the scheduler's seeded RNG).
fn select(feasible: &[usize], totals: &[i64], rng: &mut ChaCha8Rng) -> usize {
    let mut best = feasible[0];
    let mut best_score = totals[0];
    let mut ties = 1u32;
    for (j, &idx) in feasible.iter().enumerate().skip(1) {
        if totals[j] > best_score {
            best = idx;
            best_score = totals[j];
            ties = 1;
        } else if totals[j] == best_score {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = idx;
            }
        }
    }
    best
}

/// `"<count> <reason>"` strings, sorted as strings (upstream `sortReasonsHistogram`).
#[cfg(test)]
fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    counted_histogram(counts.into_iter())
}

/// [`histogram`] of reasons already counted (zero counts left out).
fn counted_histogram<'a>(counts: impl Iterator<Item = (&'a str, usize)>) -> String {
    let mut lines: Vec<String> = counts
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    lines.sort();
    lines.join(", ")
}

/// The `PodScheduled=False` message: filter reasons, then the preemption plugin's verdict
/// (this scheduler does not preempt, so a node is either "not helpful" — its failure was
/// unresolvable — or has no victims).
fn fit_error_message(all: usize, failures: &Failures, pod: &Pod) -> String {
    let filters = counted_histogram(failures.reasons.iter().map(|(r, n)| (&**r, *n)));
    let never = pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never");
    let preemption = if never {
        "preemption: not eligible due to preemptionPolicy=Never.".to_string()
    } else {
        let verdicts = counted_histogram(
            [
                (
                    "Preemption is not helpful for scheduling",
                    failures.unresolvable,
                ),
                (
                    "No preemption victims found for incoming pod",
                    failures.resolvable,
                ),
            ]
            .into_iter(),
        );
        format!("preemption: 0/{all} nodes are available: {verdicts}.")
    };
    format!("0/{all} nodes are available: {filters}. {preemption}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasible_nodes_to_find_matches_upstream() {
        assert_eq!(num_feasible_to_find(0, 6), 6);
        assert_eq!(num_feasible_to_find(0, 5000), 500);
        assert_eq!(num_feasible_to_find(0, 1000), 420);
        assert_eq!(num_feasible_to_find(0, 6000), 300);
        assert_eq!(num_feasible_to_find(50, 1000), 500);
        assert_eq!(num_feasible_to_find(100, 5000), 5000);
        // Below 100 nodes every node; the adaptive share never finds fewer than 100 nodes nor
        // goes below 5 %.
        assert_eq!(num_feasible_to_find(0, 99), 99);
        assert_eq!(num_feasible_to_find(0, 100), 100);
        assert_eq!(num_feasible_to_find(0, 150), 100);
        assert_eq!(num_feasible_to_find(1, 2000), 100);
        assert_eq!(num_feasible_to_find(0, 2000), 680);
        assert_eq!(num_feasible_to_find(0, 10_000), 500);
        assert_eq!(num_feasible_to_find(0, 100_000), 5000);
        assert_eq!(num_feasible_to_find(10, 5000), 500);
    }

    #[test]
    fn histogram_sorts_as_strings() {
        let h = histogram(
            ["b", "a", "b", "c"]
                .into_iter()
                .chain(std::iter::repeat_n("z", 10)),
        );
        assert_eq!(h, "1 a, 1 c, 10 z, 2 b");
    }
}
