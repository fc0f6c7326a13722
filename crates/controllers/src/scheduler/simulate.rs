//! A what-if copy of the scheduler's view of the cluster, for the cluster autoscaler: add
//! hypothetical nodes (a node group's template), place pods on them, remove nodes, and ask
//! whether a pod passes the scheduler's own filter plugins on a given node — upstream's
//! `ClusterSnapshot` plus `SchedulerBasedPredicateChecker`, over this scheduler's plugins (one
//! copy of the filters: [`super::cycle::check_node`]).
//!
//! Start at [`ClusterSnapshot::new`]. Simulated placements are assumed pods keyed by pod uid,
//! exactly as the scheduler assumes pods it has bound but not yet seen bound.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::affinity::has_required_anti_affinity;
use super::cycle::{Snapshot, check_node, is_terminal};
use super::nodes::{NodeEntry, NodeTable};
use super::resources::{PodUsage, pod_requests};
use super::spread::{count_selectors, topology_keys};
use super::spread_counts::{Placed, SpreadCounts};
use crate::{Cache, Key};

/// The cluster as the scheduler sees it, plus simulated nodes and placements.
#[derive(Debug, Default)]
pub struct ClusterSnapshot {
    nodes: NodeTable,
    /// Simulated placements: pod uid → node (never iterated).
    assumed_nodes: HashMap<String, String>,
    anti_affinity_pods: BTreeSet<Key>,
    spread_counts: SpreadCounts,
    /// Simulated placements by pod key: node, usage and uid (to undo them).
    placed: BTreeMap<Key, (String, PodUsage, Option<String>)>,
}

impl ClusterSnapshot {
    /// The cluster in `cache`: every node, and every bound non-terminal pod's usage.
    pub fn new(cache: &Cache) -> ClusterSnapshot {
        let mut snap = ClusterSnapshot::default();
        snap.nodes.load(cache.nodes.values());
        for (key, pod) in &cache.pods {
            let bound = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty());
            if let Some(node) = bound.filter(|_| !is_terminal(pod)) {
                snap.nodes.add_usage(node, &pod_requests(pod));
                if has_required_anti_affinity(pod) {
                    snap.anti_affinity_pods.insert(key.clone());
                }
            }
            snap.spread_counts
                .set(key, Placed::of(pod, None), &snap.nodes);
        }
        snap
    }

    /// The node entries (sorted by name): allocatable, effective taints, usage.
    pub fn nodes(&self) -> &[NodeEntry] {
        self.nodes.entries()
    }

    /// One node's entry.
    pub fn node(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.get(name)
    }

    /// Add (or replace) a node, e.g. a copy of a node group's template.
    pub fn add_node(&mut self, node: Node) {
        self.nodes.upsert(Arc::new(node));
    }

    /// Drop a node from the table (its pods' usage is parked by the table).
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Whether `pod` passes every filter plugin on `node` now. `Err` holds the reasons of the
    /// failing plugin (upstream's texts, e.g. `Insufficient cpu`).
    pub fn check(&mut self, cache: &Cache, pod: &Pod, node: &str) -> Result<(), Vec<String>> {
        let Some(idx) = self.nodes.index_of(node) else {
            return Err(vec![format!("node {node} not in the snapshot")]);
        };
        self.prepare(cache, pod);
        let snap = Snapshot {
            cache,
            nodes: &self.nodes,
            assumed_nodes: &self.assumed_nodes,
            anti_affinity_pods: &self.anti_affinity_pods,
            spread_counts: &self.spread_counts,
            default_selector: None,
        };
        check_node(&snap, pod, idx)
    }

    /// Build the per-pod indexes the spread plugin reads.
    fn prepare(&mut self, cache: &Cache, pod: &Pod) {
        let keys = topology_keys(pod);
        for k in &keys {
            self.nodes.prepare_topology(k);
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        for selector in count_selectors(cache, pod, None) {
            self.spread_counts
                .prepare(ns, &selector, &keys, &self.nodes);
        }
    }

    /// Record `pod` as running on `node` (its requests count there; it counts for spreading
    /// and anti-affinity). A pod already placed is moved.
    pub fn place(&mut self, pod: &Pod, node: &str) {
        let key = Key::of(&pod.metadata);
        self.unplace(&key);
        let usage = pod_requests(pod);
        self.nodes.add_usage(node, &usage);
        if let Some(uid) = &pod.metadata.uid {
            self.assumed_nodes.insert(uid.clone(), node.to_string());
        }
        if has_required_anti_affinity(pod) {
            self.anti_affinity_pods.insert(key.clone());
        }
        self.spread_counts
            .set(&key, Placed::of(pod, Some(node)), &self.nodes);
        self.placed
            .insert(key, (node.to_string(), usage, pod.metadata.uid.clone()));
    }

    /// Undo a placement made with [`ClusterSnapshot::place`].
    pub fn unplace(&mut self, key: &Key) {
        if let Some((node, usage, uid)) = self.placed.remove(key) {
            self.nodes.sub_usage(&node, &usage);
            self.spread_counts.set(key, None, &self.nodes);
            self.anti_affinity_pods.remove(key);
            if let Some(uid) = uid {
                self.assumed_nodes.remove(&uid);
            }
        }
    }

    /// True when whether `pod` fits a node depends on that node alone: the pod has no hard
    /// spread constraint and no required anti-affinity, and no placed pod has anti-affinity.
    /// Then one simulated node can stand for a series of identical fresh nodes
    /// ([`ClusterSnapshot::clear_placements_on`]).
    pub fn node_local(&self, pod: &Pod) -> bool {
        let hard_spread = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.when_unsatisfiable == "DoNotSchedule"));
        self.anti_affinity_pods.is_empty() && !hard_spread && !has_required_anti_affinity(pod)
    }

    /// Undo every simulated placement on `node` (it is empty again, as a fresh copy).
    pub fn clear_placements_on(&mut self, node: &str) {
        let keys: Vec<Key> = self
            .placed
            .iter()
            .filter(|(_, (n, _, _))| n == node)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.unplace(&k);
        }
    }

    /// Undo a simulated move of a bound pod: it counts on its own node again.
    pub fn reset(&mut self, pod: &Pod) {
        let key = Key::of(&pod.metadata);
        self.unplace(&key);
        self.spread_counts
            .set(&key, Placed::of(pod, None), &self.nodes);
    }

    /// Take a bound pod off its node (the simulation of draining it).
    pub fn evict(&mut self, pod: &Pod) {
        let key = Key::of(&pod.metadata);
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if let Some(node) = bound.filter(|n| !n.is_empty()) {
            self.nodes.sub_usage(&node, &pod_requests(pod));
        }
        self.anti_affinity_pods.remove(&key);
        self.spread_counts.set(&key, None, &self.nodes);
    }
}
