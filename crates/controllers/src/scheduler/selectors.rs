//! Matching rules the scheduler plugins share: label selectors, required node affinity
//! (`nodeSelector` + `nodeSelectorTerms`), and taint tolerations.
//!
//! Start at [`Selector::from_label_selector`], [`RequiredNodeAffinity`] and [`tolerates`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

type Labels = BTreeMap<String, String>;

/// One parsed requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Req {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector, with upstream's nil/empty distinction: a nil selector matches
/// nothing, an empty one matches everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Nothing,
    Reqs(Vec<Req>),
}

impl Selector {
    /// Parse a `metav1.LabelSelector` (`None` → matches nothing). An invalid operator makes the
    /// selector match nothing (upstream rejects it with an error).
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else {
            return Selector::Nothing;
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Req::In(k.clone(), vec![v.clone()]));
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            reqs.push(match e.operator.as_str() {
                "In" => Req::In(e.key.clone(), values),
                "NotIn" => Req::NotIn(e.key.clone(), values),
                "Exists" => Req::Exists(e.key.clone()),
                "DoesNotExist" => Req::DoesNotExist(e.key.clone()),
                _ => return Selector::Nothing,
            });
        }
        Selector::Reqs(reqs)
    }

    /// A selector from a plain label set (every pair must match).
    pub fn from_set(set: &Labels) -> Selector {
        Selector::Reqs(
            set.iter()
                .map(|(k, v)| Req::In(k.clone(), vec![v.clone()]))
                .collect(),
        )
    }

    /// Add another selector's requirements (logical AND).
    pub fn and(self, other: Selector) -> Selector {
        match (self, other) {
            (Selector::Reqs(mut a), Selector::Reqs(b)) => {
                a.extend(b);
                Selector::Reqs(a)
            }
            _ => Selector::Nothing,
        }
    }

    /// True for a selector with no requirements (upstream `Selector.Empty()`).
    pub fn is_empty(&self) -> bool {
        matches!(self, Selector::Reqs(r) if r.is_empty())
    }

    pub fn matches(&self, labels: Option<&Labels>) -> bool {
        let Selector::Reqs(reqs) = self else {
            return false;
        };
        reqs.iter().all(|r| {
            let get = |k: &str| labels.and_then(|l| l.get(k));
            match r {
                Req::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
                Req::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(v)),
                Req::Exists(k) => get(k).is_some(),
                Req::DoesNotExist(k) => get(k).is_none(),
            }
        })
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let as_int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| as_int(v)),
                values.first().and_then(|b| as_int(b)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.clone().unwrap_or_default();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key))))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
}

/// A pod's hard node constraints: `spec.nodeSelector` AND any of the required
/// `nodeAffinity` terms (upstream `nodeaffinity.GetRequiredNodeAffinity`).
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    node_selector: Option<Labels>,
    terms: Option<Vec<NodeSelectorTerm>>,
}

impl RequiredNodeAffinity {
    pub fn of(pod: &Pod) -> RequiredNodeAffinity {
        let Some(spec) = pod.spec.as_ref() else {
            return RequiredNodeAffinity::default();
        };
        let terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|ns| ns.node_selector_terms.clone());
        RequiredNodeAffinity {
            node_selector: spec.node_selector.clone().filter(|s| !s.is_empty()),
            terms,
        }
    }

    pub fn matches(&self, node: &Node) -> bool {
        if let Some(sel) = &self.node_selector {
            let labels = node.metadata.labels.as_ref();
            if !sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            {
                return false;
            }
        }
        match &self.terms {
            Some(terms) => terms.iter().any(|t| term_matches(t, node)),
            None => true,
        }
    }
}

/// Upstream `Toleration.ToleratesTaint` (one copy, in `runtime`).
pub use runtime::labels::tolerates;

/// The first `NoSchedule`/`NoExecute` taint no toleration tolerates (upstream
/// `FindMatchingUntoleratedTaint` with `DoNotScheduleTaintsFilterFunc`).
pub fn first_untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_follow_nil_and_empty_semantics() {
        assert!(!Selector::from_label_selector(None).matches(Some(&labels(&[]))));
        let all = Selector::from_label_selector(Some(&LabelSelector::default()));
        assert!(all.is_empty() && all.matches(None));
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
        }))
        .unwrap();
        let s = Selector::from_label_selector(Some(&sel));
        assert!(s.matches(Some(&labels(&[("app", "web")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web"), ("tier", "db")]))));
        assert!(!s.matches(Some(&labels(&[("app", "api")]))));
    }

    #[test]
    fn node_affinity_terms_are_ored_and_selector_anded() {
        let node: Node = serde_json::from_value(
            json!({"metadata": {"name": "n1", "labels": {"zone": "a", "gen": "5"}}}),
        )
        .unwrap();
        let pod = |spec: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
        };
        let req = |terms: serde_json::Value| json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
        let p = pod(req(json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}
        ])));
        assert!(RequiredNodeAffinity::of(&p).matches(&node));
        let p = pod(req(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}]),
        ));
        assert!(!RequiredNodeAffinity::of(&p).matches(&node));
        let p = pod(json!({"containers": [], "nodeSelector": {"zone": "b"}}));
        assert!(!RequiredNodeAffinity::of(&p).matches(&node));
    }
}
