//! `InterPodAffinity`, required anti-affinity only: the incoming pod's terms against pods
//! already placed, and placed pods' terms against the incoming pod (symmetry).
//!
//! Start at [`AntiAffinity::new`]. Required pod *affinity* and `namespaceSelector`s other than
//! the empty one (all namespaces) are not implemented.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use super::cycle::{PodCtx, Snapshot};
use super::nodes::NodeEntry;
use super::selectors::{Req, Selector};

/// Upstream `ErrReasonExistingAntiAffinityRulesNotMatch`.
pub const REASON_EXISTING: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
/// Upstream `ErrReasonAntiAffinityRulesNotMatch`.
pub const REASON_INCOMING: &str = "node(s) didn't match pod anti-affinity rules";

/// A parsed term; `namespaces: None` means every namespace.
struct Term {
    namespaces: Option<BTreeSet<String>>,
    selector: Selector,
    topology_key: String,
}

impl Term {
    fn matches(&self, pod: &Pod) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        self.namespaces.as_ref().is_none_or(|set| set.contains(ns))
            && self.selector.matches(pod.metadata.labels.as_ref())
    }
}

fn raw_terms(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

/// True if the pod has required anti-affinity terms (the scheduler tracks such placed pods).
pub fn has_required_anti_affinity(pod: &Pod) -> bool {
    !raw_terms(pod).is_empty()
}

fn terms_of(pod: &Pod) -> Vec<Term> {
    let own_ns = pod.metadata.namespace.clone().unwrap_or_default();
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &String| labels.and_then(|l| l.get(k)).cloned();
    raw_terms(pod)
        .iter()
        .map(|t| {
            let listed = t.namespaces.clone().unwrap_or_default();
            let namespaces = match &t.namespace_selector {
                None if listed.is_empty() => Some(BTreeSet::from([own_ns.clone()])),
                Some(sel)
                    if sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty) =>
                {
                    None
                }
                _ => Some(listed.into_iter().collect()),
            };
            let mut selector = Selector::from_label_selector(t.label_selector.as_ref());
            for k in t.match_label_keys.iter().flatten() {
                if let Some(v) = label(k) {
                    selector = selector.and(Selector::Reqs(vec![Req::In(k.clone(), vec![v])]));
                }
            }
            for k in t.mismatch_label_keys.iter().flatten() {
                if let Some(v) = label(k) {
                    selector = selector.and(Selector::Reqs(vec![Req::NotIn(k.clone(), vec![v])]));
                }
            }
            Term {
                namespaces,
                selector,
                topology_key: t.topology_key.clone(),
            }
        })
        .collect()
}

/// Pods in `ns`, borrowing only the cache (not `ns`).
fn pods_in<'a>(
    snap: &Snapshot<'a>,
    ns: &str,
) -> impl Iterator<Item = &'a std::sync::Arc<Pod>> + use<'a> {
    let ns = ns.to_string();
    let cache: &'a crate::Cache = snap.cache;
    cache
        .pods
        .range(crate::Key::new(&ns, "")..)
        .take_while(move |(k, _)| k.namespace == ns)
        .map(|(_, p)| p)
}

/// Forbidden topology pairs for the incoming pod.
pub struct AntiAffinity<'a> {
    existing: BTreeSet<(String, &'a str)>,
    incoming: BTreeSet<(String, &'a str)>,
}

impl<'a> AntiAffinity<'a> {
    /// `None` when neither side has anything to check.
    pub fn new(snap: &Snapshot<'a>, pod: &PodCtx) -> Option<AntiAffinity<'a>> {
        let mut existing = BTreeSet::new();
        for key in snap.anti_affinity_pods {
            let Some(p) = snap.cache.pods.get(key) else {
                continue;
            };
            let Some(node) = snap.node_of(p).and_then(|n| snap.nodes.get(n)) else {
                continue;
            };
            for term in terms_of(p) {
                if term.matches(pod.pod)
                    && let Some(v) = node.label(&term.topology_key)
                {
                    existing.insert((term.topology_key, v));
                }
            }
        }
        let mut incoming = BTreeSet::new();
        for term in terms_of(pod.pod) {
            let mut visit = |p: &'a Pod| {
                if let Some(node) = snap.node_of(p).and_then(|n| snap.nodes.get(n))
                    && term.matches(p)
                    && let Some(v) = node.label(&term.topology_key)
                {
                    incoming.insert((term.topology_key.clone(), v));
                }
            };
            match &term.namespaces {
                None => snap.cache.pods.values().for_each(|p| visit(p)),
                Some(nss) => nss
                    .iter()
                    .for_each(|ns| pods_in(snap, ns).for_each(|p| visit(p))),
            }
        }
        if existing.is_empty() && incoming.is_empty() {
            return None;
        }
        Some(AntiAffinity { existing, incoming })
    }

    pub fn filter(&self, node: &NodeEntry) -> Result<(), &'static str> {
        let hit =
            |set: &BTreeSet<(String, &str)>| set.iter().any(|(k, v)| node.label(k) == Some(*v));
        if hit(&self.incoming) {
            return Err(REASON_INCOMING);
        }
        if hit(&self.existing) {
            return Err(REASON_EXISTING);
        }
        Ok(())
    }
}
