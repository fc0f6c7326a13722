//! `PodTopologySpread`: hard constraints (`DoNotSchedule`) as a filter, soft ones
//! (`ScheduleAnyway`, or the system defaults) as a score, with `minDomains` and the node
//! inclusion policies (`nodeAffinityPolicy` Honor by default, `nodeTaintsPolicy` Ignore by
//! default — so tainted nodes still count as domains, kubernetes#116978).
//!
//! Start at [`SpreadFilter::new`] and [`SpreadScore::new`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::cycle::{PodCtx, Snapshot};
use super::nodes::{NodeEntry, TopologyIndex};
use super::selectors::{Selector, first_untolerated};
use super::spread_counts::Indexed;
use crate::{Cache, HOSTNAME_LABEL, ZONE_LABEL};

/// Filter reason (upstream `ErrReasonConstraintsNotMatch`).
pub const REASON_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
/// Filter reason for a node without the topology label (upstream `ErrReasonNodeLabelNotMatch`).
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// A parsed constraint (upstream `topologySpreadConstraint`).
#[derive(Clone, Debug)]
pub struct Constraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: Selector,
    pub min_domains: i64,
    pub honor_affinity: bool,
    pub honor_taints: bool,
}

impl Constraint {
    /// Whether `node` counts toward this constraint's domains for the incoming pod.
    fn includes(&self, pod: &PodCtx, node: &NodeEntry) -> bool {
        if self.honor_affinity && !pod.affinity.matches(&node.node) {
            return false;
        }
        !(self.honor_taints && first_untolerated(&node.taints, pod.tolerations).is_some())
    }

    /// True when [`Constraint::includes`] holds for every node: the pod's node affinity is
    /// ignored or matches everything, and taints are ignored (the defaults).
    fn includes_every_node(&self, pod: &PodCtx) -> bool {
        (!self.honor_affinity || pod.affinity.is_everything()) && !self.honor_taints
    }
}

/// The constraints' indexed counts (per node position and per domain), when the per-cycle
/// scan over every node can be skipped with the same result: every node is included for
/// every constraint, and either the constraints share one topology key or no node lacks any
/// of their keys (so no node is dropped for missing another constraint's key). `None` for an
/// empty selector (it counts nothing here, as in [`count_matching`]).
fn indexed_counts<'a>(
    snap: &Snapshot<'a>,
    pod: &PodCtx,
    constraints: &[Constraint],
) -> Option<Vec<Option<&'a Indexed>>> {
    if !constraints.iter().all(|c| c.includes_every_node(pod)) {
        return None;
    }
    let one_key = constraints
        .iter()
        .all(|c| c.topology_key == constraints[0].topology_key);
    let mut out = Vec::with_capacity(constraints.len());
    for c in constraints {
        let topo = snap.nodes.topology(&c.topology_key)?;
        if !one_key && topo.missing > 0 {
            return None;
        }
        if c.selector.is_empty() {
            out.push(None);
            continue;
        }
        let ix = snap
            .spread_counts
            .indexed(pod.namespace, &c.selector, snap.nodes)?;
        if !ix.domains.contains_key(&c.topology_key) {
            return None;
        }
        out.push(Some(ix));
    }
    Some(out)
}

/// The pod's constraints with `whenUnsatisfiable == action`, `matchLabelKeys` merged in.
fn explicit_constraints(pod: &Pod, action: &str) -> Vec<Constraint> {
    let spec_constraints = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref());
    let labels = pod.metadata.labels.as_ref();
    let mut out = Vec::new();
    for c in spec_constraints
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == action)
    {
        let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
        let keys: BTreeMap<String, String> = c
            .match_label_keys
            .iter()
            .flatten()
            .filter_map(|k| {
                labels
                    .and_then(|l| l.get(k))
                    .map(|v| (k.clone(), v.clone()))
            })
            .collect();
        if !keys.is_empty() {
            selector = Selector::from_set(&keys).and(selector);
        }
        out.push(Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        });
    }
    out
}

/// Upstream `helper.DefaultSelector`: the labels of Services selecting the pod, ANDed with the
/// selectors of ReplicaSets selecting it. Empty when nothing selects the pod.
pub fn default_selector(
    cache: &Cache,
    ns: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Selector {
    let mut set = BTreeMap::new();
    let start = crate::Key::new(ns, "");
    for (_, svc) in cache
        .services
        .range(start.clone()..)
        .take_while(|(k, _)| k.namespace == ns)
    {
        if let Some(sel) = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|s| !s.is_empty())
            && Selector::from_set(sel).matches(labels)
        {
            set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let mut selector = Selector::from_set(&set);
    for (_, rs) in cache
        .replica_sets
        .range(start..)
        .take_while(|(k, _)| k.namespace == ns)
    {
        let sel = rs
            .spec
            .as_ref()
            .map(|s| Selector::from_label_selector(Some(&s.selector)));
        if let Some(sel) = sel.filter(|s| !s.is_empty() && s.matches(labels)) {
            selector = selector.and(sel);
        }
    }
    selector
}

/// Upstream's system default constraints (`systemDefaultConstraints` in
/// podtopologyspread/plugin.go): zone maxSkew 5 and hostname maxSkew 3, ScheduleAnyway.
fn system_default_constraints(snap: &Snapshot, pod: &PodCtx) -> Vec<Constraint> {
    let selector = match snap.default_selector {
        Some(s) => s.clone(),
        None => default_selector(snap.cache, pod.namespace, pod.labels),
    };
    if selector.is_empty() {
        return Vec::new();
    }
    [(ZONE_LABEL, 5), (HOSTNAME_LABEL, 3)]
        .into_iter()
        .map(|(key, skew)| Constraint {
            max_skew: skew,
            topology_key: key.to_string(),
            selector: selector.clone(),
            min_domains: 1,
            honor_affinity: true,
            honor_taints: false,
        })
        .collect()
}

/// Matching pods per node (indexed like the node table) and constraint: pods in the incoming
/// pod's namespace, bound or assumed, not terminating (upstream `countPodsMatchSelector`).
/// Reads the incremental [`super::spread_counts::SpreadCounts`]; a selector that was not
/// prepared falls back to a scan of the namespace.
fn count_matching(snap: &Snapshot, pod: &PodCtx, constraints: &[Constraint]) -> Vec<u32> {
    let n = constraints.len();
    let mut counts = vec![0u32; snap.nodes.len() * n];
    for (i, c) in constraints.iter().enumerate() {
        if c.selector.is_empty() {
            continue;
        }
        let Some(per_node) = snap.spread_counts.per_node(pod.namespace, &c.selector) else {
            scan_matching(snap, pod.namespace, &c.selector, |idx| {
                counts[idx * n + i] += 1
            });
            continue;
        };
        for (node, &count) in per_node {
            if let Some(idx) = snap.nodes.index_of(node) {
                counts[idx * n + i] += count;
            }
        }
    }
    counts
}

/// From-scratch count: calls `hit` with the node index of every placed pod in `namespace`
/// matching `selector`.
fn scan_matching(
    snap: &Snapshot,
    namespace: &str,
    selector: &Selector,
    mut hit: impl FnMut(usize),
) {
    for p in snap.cache.pods_in(namespace) {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(idx) = snap.node_of(p).and_then(|node| snap.nodes.index_of(node)) else {
            continue;
        };
        if selector.matches(p.metadata.labels.as_ref()) {
            hit(idx);
        }
    }
}

/// The non-empty selectors whose counts scheduling `pod` will read (explicit constraints of
/// both kinds, or the system defaults); the caller prepares them before the cycle.
/// `default` is the pod's [`default_selector`] if the caller has it.
pub fn count_selectors(cache: &Cache, pod: &Pod, default: Option<&Selector>) -> Vec<Selector> {
    let has_explicit = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty());
    let mut out: Vec<Selector> = if has_explicit {
        let mut all = explicit_constraints(pod, "DoNotSchedule");
        all.extend(explicit_constraints(pod, "ScheduleAnyway"));
        all.into_iter().map(|c| c.selector).collect()
    } else {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        vec![match default {
            Some(s) => s.clone(),
            None => default_selector(cache, ns, pod.metadata.labels.as_ref()),
        }]
    };
    out.retain(|s| !s.is_empty());
    out.dedup();
    out
}

/// The topology keys a pod's spread constraints (explicit or system default) may use; the
/// caller prepares their [`super::nodes::TopologyIndex`]es before the cycle.
pub fn topology_keys(pod: &Pod) -> Vec<String> {
    let mut keys = vec![ZONE_LABEL.to_string(), HOSTNAME_LABEL.to_string()];
    let constraints = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref());
    keys.extend(
        constraints
            .into_iter()
            .flatten()
            .map(|c| c.topology_key.clone()),
    );
    keys.sort();
    keys.dedup();
    keys
}

/// PreFilter state for hard constraints, over domain ids of the prepared topology indexes.
pub struct SpreadFilter<'a> {
    constraints: Vec<Constraint>,
    domain_of: Vec<&'a [Option<u32>]>,
    /// Per constraint, per domain id: matching pods, `None` if no eligible node is in it.
    counts: Vec<Vec<Option<i64>>>,
    /// Per constraint: the global minimum used for the skew (0 below `minDomains`).
    min: Vec<i64>,
    self_match: Vec<bool>,
}

impl<'a> SpreadFilter<'a> {
    /// `None` when the pod has no hard constraints (or an index was not prepared).
    pub fn new(snap: &Snapshot<'a>, pod: &PodCtx) -> Option<SpreadFilter<'a>> {
        let constraints = explicit_constraints(pod.pod, "DoNotSchedule");
        if constraints.is_empty() {
            return None;
        }
        let topo: Vec<_> = constraints
            .iter()
            .map(|c| snap.nodes.topology(&c.topology_key))
            .collect::<Option<_>>()?;
        let counts = match indexed_counts(snap, pod, &constraints) {
            // Every domain of the index has a node, and every node is eligible.
            Some(ix) => constraints
                .iter()
                .zip(&topo)
                .zip(ix)
                .map(|((c, t), ix)| match ix {
                    Some(ix) => ix.domains[&c.topology_key]
                        .per_domain
                        .iter()
                        .map(|&s| Some(s))
                        .collect(),
                    None => vec![Some(0); t.domains],
                })
                .collect(),
            None => scan_domain_counts(snap, pod, &constraints, &topo),
        };
        let min = constraints
            .iter()
            .zip(&counts)
            .map(|(c, doms)| {
                let eligible = doms.iter().flatten();
                if (eligible.clone().count() as i64) < c.min_domains {
                    0
                } else {
                    eligible.copied().min().unwrap_or(i64::from(i32::MAX))
                }
            })
            .collect();
        let self_match = constraints
            .iter()
            .map(|c| c.selector.matches(pod.labels))
            .collect();
        let domain_of = topo.iter().map(|t| t.domain_of.as_slice()).collect();
        Some(SpreadFilter {
            constraints,
            domain_of,
            counts,
            min,
            self_match,
        })
    }

    /// The filter for node `idx`: `matching in its domain + self - global minimum <= maxSkew`.
    pub fn filter(&self, idx: usize) -> Result<(), (&'static str, bool)> {
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(d) = self.domain_of[i][idx] else {
                return Err((REASON_MISSING_LABEL, true));
            };
            let matched = self.counts[i][d as usize].unwrap_or(0);
            if matched + i64::from(self.self_match[i]) - self.min[i] > c.max_skew {
                return Err((REASON_NOT_MATCH, false));
            }
        }
        Ok(())
    }
}

/// Matching pods per constraint and domain id, `None` for a domain without an eligible node:
/// the scan over every node (upstream's PreFilter).
fn scan_domain_counts(
    snap: &Snapshot,
    pod: &PodCtx,
    constraints: &[Constraint],
    topo: &[&TopologyIndex],
) -> Vec<Vec<Option<i64>>> {
    let matching = count_matching(snap, pod, constraints);
    let n = constraints.len();
    let mut counts: Vec<Vec<Option<i64>>> = topo.iter().map(|t| vec![None; t.domains]).collect();
    for (idx, node) in snap.nodes.entries().iter().enumerate() {
        if topo.iter().any(|t| t.domain_of[idx].is_none()) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if let Some(d) = topo[i].domain_of[idx]
                && c.includes(pod, node)
            {
                let slot = &mut counts[i][d as usize];
                *slot = Some(slot.unwrap_or(0) + i64::from(matching[idx * n + i]));
            }
        }
    }
    counts
}

/// One constraint's domains as dense slots: the topology index's domain ids, plus (without
/// `require_all`) the slot of nodes lacking the label, shared with nodes labelled "" (upstream
/// keys both by the empty value). Plugins read these instead of node labels, so a cycle's
/// per-node work stays on dense vectors.
struct Slots<'a> {
    domain_of: &'a [Option<u32>],
    empty: Option<usize>,
    len: usize,
}

impl<'a> Slots<'a> {
    fn new(topo: &'a TopologyIndex, require_all: bool) -> Slots<'a> {
        let empty = (!require_all).then(|| topo.ids.get("").map_or(topo.domains, |&d| d as usize));
        Slots {
            domain_of: &topo.domain_of,
            empty,
            len: topo.domains + usize::from(!require_all),
        }
    }

    fn of(&self, idx: usize) -> Option<usize> {
        self.domain_of[idx].map(|d| d as usize).or(self.empty)
    }
}

/// True if node `idx` has every constraint's topology label.
fn has_all_slots(slots: &[Slots], idx: usize) -> bool {
    slots.iter().all(|s| s.domain_of[idx].is_some())
}

/// Add to each non-hostname constraint's domains (those of the feasible nodes) the matching
/// pods of every eligible node in them, by scanning every node.
fn scan_score_domains(
    pod: &PodCtx,
    entries: &[NodeEntry],
    constraints: &[Constraint],
    slots: &[Slots],
    require_all: bool,
    per_node: &[u32],
    domain_counts: &mut [Vec<Option<i64>>],
) {
    let n = constraints.len();
    for (idx, node) in entries.iter().enumerate() {
        if require_all && !has_all_slots(slots, idx) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if !c.includes(pod, node) || c.topology_key == HOSTNAME_LABEL {
                continue;
            }
            if let Some(Some(count)) = slots[i].of(idx).map(|s| &mut domain_counts[i][s]) {
                *count += i64::from(per_node[idx * n + i]);
            }
        }
    }
}

/// [`scan_score_domains`] from the indexed per-domain sums (the missing-label sum goes to the
/// shared "" slot).
fn fill_from_index(
    constraints: &[Constraint],
    indexed: &[Option<&Indexed>],
    slots: &[Slots],
    domain_counts: &mut [Vec<Option<i64>>],
) {
    for (i, c) in constraints.iter().enumerate() {
        let Some(ix) = indexed[i] else {
            continue;
        };
        if c.topology_key == HOSTNAME_LABEL {
            continue;
        }
        let sums = &ix.domains[&c.topology_key];
        for (slot, count) in domain_counts[i].iter_mut().enumerate() {
            let Some(count) = count else {
                continue;
            };
            *count += sums.per_domain.get(slot).copied().unwrap_or(0);
            if slots[i].empty == Some(slot) {
                *count += sums.missing;
            }
        }
    }
}

/// Matching pods per node position and constraint: from the indexed counts, or counted for
/// this cycle (`counts[idx * n + i]`).
enum NodeCounts<'a> {
    Indexed(Vec<Option<&'a Indexed>>),
    Flat { counts: Vec<u32>, n: usize },
}

impl NodeCounts<'_> {
    fn get(&self, idx: usize, i: usize) -> u32 {
        match self {
            NodeCounts::Indexed(ix) => ix[i].map_or(0, |ix| ix.per_node[idx]),
            NodeCounts::Flat { counts, n } => counts[idx * n + i],
        }
    }
}

/// PreScore state for soft constraints. The callers prepare the topology indexes of every
/// key the pod's constraints use ([`topology_keys`]); without them the plugin does not score.
pub struct SpreadScore<'a> {
    constraints: Vec<Constraint>,
    require_all: bool,
    slots: Vec<Slots<'a>>,
    /// Per constraint and slot: matching pods, `None` for a domain no feasible node is in
    /// (empty for hostname constraints, which read `per_node`).
    domain_counts: Vec<Vec<Option<i64>>>,
    per_node: NodeCounts<'a>,
    weights: Vec<f64>,
}

impl<'a> SpreadScore<'a> {
    /// `None` when the pod has no soft constraints (the plugin skips scoring).
    pub fn new(snap: &Snapshot<'a>, pod: &PodCtx, feasible: &[usize]) -> Option<SpreadScore<'a>> {
        let has_explicit = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let constraints = if has_explicit {
            explicit_constraints(pod.pod, "ScheduleAnyway")
        } else {
            system_default_constraints(snap, pod)
        };
        if constraints.is_empty() {
            return None;
        }
        let require_all = has_explicit;
        let slots: Vec<Slots<'a>> = constraints
            .iter()
            .map(|c| {
                Some(Slots::new(
                    snap.nodes.topology(&c.topology_key)?,
                    require_all,
                ))
            })
            .collect::<Option<_>>()?;
        let n = constraints.len();
        let mut domain_counts: Vec<Vec<Option<i64>>> = constraints
            .iter()
            .zip(&slots)
            .map(|(c, s)| match c.topology_key == HOSTNAME_LABEL {
                true => Vec::new(),
                false => vec![None; s.len],
            })
            .collect();
        let mut ignored = 0usize;
        for &idx in feasible {
            if require_all && !has_all_slots(&slots, idx) {
                ignored += 1;
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key != HOSTNAME_LABEL
                    && let Some(slot) = slots[i].of(idx)
                {
                    domain_counts[i][slot].get_or_insert(0);
                }
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == HOSTNAME_LABEL {
                    feasible.len() - ignored
                } else {
                    domain_counts[i].iter().flatten().count()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let per_node = match indexed_counts(snap, pod, &constraints) {
            Some(ix) => {
                fill_from_index(&constraints, &ix, &slots, &mut domain_counts);
                NodeCounts::Indexed(ix)
            }
            None => {
                let counts = count_matching(snap, pod, &constraints);
                let entries = snap.nodes.entries();
                scan_score_domains(
                    pod,
                    entries,
                    &constraints,
                    &slots,
                    require_all,
                    &counts,
                    &mut domain_counts,
                );
                NodeCounts::Flat { counts, n }
            }
        };
        Some(SpreadScore {
            constraints,
            require_all,
            slots,
            domain_counts,
            per_node,
            weights,
        })
    }

    /// Raw score of node `idx` (lower is better before normalizing); `None` if ignored.
    fn raw(&self, idx: usize) -> Option<i64> {
        if self.require_all && !has_all_slots(&self.slots, idx) {
            return None;
        }
        let mut score = 0.0;
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(d) = self.slots[i].domain_of[idx] else {
                continue;
            };
            let cnt = if c.topology_key == HOSTNAME_LABEL {
                i64::from(self.per_node.get(idx, i))
            } else {
                self.domain_counts[i][d as usize].unwrap_or(0)
            };
            score += cnt as f64 * self.weights[i] + (c.max_skew - 1) as f64;
        }
        Some(score.round() as i64)
    }

    /// Normalized scores (0..=100, fewer matching pods is better) for `feasible` nodes.
    pub fn scores(&self, feasible: &[usize]) -> Vec<i64> {
        let raw: Vec<Option<i64>> = feasible.iter().map(|&idx| self.raw(idx)).collect();
        let max = raw.iter().flatten().copied().max().unwrap_or(0);
        let min = raw.iter().flatten().copied().min().unwrap_or(0);
        raw.iter()
            .map(|s| match s {
                None => 0,
                Some(_) if max == 0 => 100,
                Some(s) => 100 * (max + min - s) / max,
            })
            .collect()
    }
}
