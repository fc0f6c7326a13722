//! `--balance-similar-node-groups`: which node groups are alike (upstream
//! `processors/nodegroupset`: same allocatable within 5 %, same labels except the zone and
//! hostname ones), and how a scale-up is split among them so their sizes stay level (upstream
//! `BalanceScaleUpBetweenGroups`).
//!
//! Start at [`similar`] and [`split`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use crate::scheduler::node_allocatable;
use crate::{HOSTNAME_LABEL, ZONE_LABEL};

/// Upstream `MaxAllocatableDifferenceRatio`.
const MAX_ALLOCATABLE_DIFFERENCE_RATIO: f64 = 0.05;

/// Labels that may differ between similar groups (upstream `BasicIgnoredLabels`, the ones
/// this project's nodes carry).
const IGNORED_LABELS: &[&str] = &[
    HOSTNAME_LABEL,
    ZONE_LABEL,
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "eks.amazonaws.com/nodegroup",
    "alpha.eksctl.io/nodegroup-name",
];

fn close(a: i64, b: i64) -> bool {
    let (a, b) = (a as f64, b as f64);
    let larger = a.max(b);
    larger == 0.0 || (a - b).abs() / larger <= MAX_ALLOCATABLE_DIFFERENCE_RATIO
}

fn labels(node: &Node) -> BTreeMap<&str, &str> {
    node.metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !IGNORED_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// True if templates `a` and `b` describe interchangeable nodes.
pub fn similar(a: &Node, b: &Node) -> bool {
    let (ra, rb) = (node_allocatable(a), node_allocatable(b));
    close(ra.milli_cpu, rb.milli_cpu)
        && close(ra.memory, rb.memory)
        && ra.pods == rb.pods
        && labels(a) == labels(b)
        && a.spec.as_ref().and_then(|s| s.taints.as_ref())
            == b.spec.as_ref().and_then(|s| s.taints.as_ref())
}

/// A group taking part in a balanced scale-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub current: usize,
    pub max: usize,
}

/// Split `new_nodes` among `members`, always growing the smallest group (ties by name) that
/// is below its max. Returns `(group, delta)` for groups that grow, by name; nodes that fit
/// nowhere are dropped.
pub fn split(new_nodes: usize, members: &[Member]) -> Vec<(String, usize)> {
    let mut sizes: BTreeMap<&str, (usize, usize, usize)> = members
        .iter()
        .map(|m| (m.name.as_str(), (m.current, m.max, 0)))
        .collect();
    for _ in 0..new_nodes {
        let next = sizes
            .iter()
            .filter(|(_, (cur, max, add))| cur + add < *max)
            .min_by_key(|(name, (cur, _, add))| (cur + add, **name))
            .map(|(name, _)| *name);
        let Some(name) = next else { break };
        if let Some(entry) = sizes.get_mut(name) {
            entry.2 += 1;
        }
    }
    sizes
        .into_iter()
        .filter(|(_, (_, _, add))| *add > 0)
        .map(|(name, (_, _, add))| (name.to_string(), add))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, current: usize, max: usize) -> Member {
        Member {
            name: name.into(),
            current,
            max,
        }
    }

    #[test]
    fn split_levels_the_smallest_groups_first() {
        let got = split(5, &[m("a", 3, 10), m("b", 1, 10), m("c", 2, 10)]);
        // b 1→2, b 2→3 (tie with c, by name), c 2→3, a 3→4, b 3→4.
        assert_eq!(got, vec![("a".into(), 1), ("b".into(), 3), ("c".into(), 1)]);
    }

    #[test]
    fn split_respects_max_and_drops_the_rest() {
        let got = split(10, &[m("a", 1, 2), m("b", 4, 4)]);
        assert_eq!(got, vec![("a".into(), 1)]);
    }
}
