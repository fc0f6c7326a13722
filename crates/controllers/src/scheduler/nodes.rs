//! The scheduler's node table: for every node, what scheduling needs from it (allocatable,
//! effective taints) and the resources its pods take, bound or assumed — upstream's scheduler
//! cache `NodeInfo`, kept incrementally from informer events.
//!
//! Start at [`NodeTable`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::{Node, Taint};

use super::resources::{PodUsage, Resources, node_allocatable};
use crate::node_ready_status;

/// Taints the node lifecycle controller puts on nodes whose Ready condition is False/Unknown.
pub use runtime::labels::{TAINT_NOT_READY, TAINT_UNREACHABLE};

/// What the scheduler knows about one node.
#[derive(Clone, Debug)]
pub struct NodeEntry {
    pub name: String,
    pub node: Arc<Node>,
    pub allocatable: Resources,
    /// Requests of the pods bound (or assumed) here.
    pub usage: PodUsage,
    /// `spec.taints`, plus the `NoSchedule` readiness taint the node lifecycle controller would
    /// add when Ready is not True and the node does not carry it yet.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
}

impl NodeEntry {
    fn new(node: Arc<Node>, usage: PodUsage) -> NodeEntry {
        let name = node.metadata.name.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let mut taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let implicit = match node_ready_status(&node) {
            Some("True") => None,
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            _ => Some(TAINT_NOT_READY),
        };
        if let Some(key) = implicit
            && !taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: key.to_string(),
                effect: "NoSchedule".into(),
                value: None,
                time_added: None,
            });
        }
        NodeEntry {
            name,
            allocatable: node_allocatable(&node),
            usage,
            taints,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            node,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.node
            .metadata
            .labels
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// True if `other` differs in anything a filter or score reads.
    fn differs_for_scheduling(&self, other: &NodeEntry) -> bool {
        self.allocatable != other.allocatable
            || self.taints != other.taints
            || self.unschedulable != other.unschedulable
            || self.node.metadata.labels != other.node.metadata.labels
    }
}

/// Nodes grouped by the value of one topology label: a domain id per node (indexed like the
/// node table; `None` when the node lacks the label), the number of domains, the id of each
/// label value, and how many nodes lack the label.
#[derive(Debug, Default)]
pub struct TopologyIndex {
    pub domain_of: Vec<Option<u32>>,
    pub domains: usize,
    pub ids: BTreeMap<String, u32>,
    pub missing: usize,
}

/// All nodes, sorted by name, with per-node usage. Usage of pods bound to nodes not (yet) in
/// the table is parked until the node appears.
#[derive(Debug, Default)]
pub struct NodeTable {
    entries: Vec<NodeEntry>,
    /// Name → position (lookups only; never iterated).
    index: HashMap<String, usize>,
    orphans: BTreeMap<String, PodUsage>,
    /// Topology indexes by label key, built on demand, dropped when labels or the node set change.
    topology: BTreeMap<String, TopologyIndex>,
    /// Bumped whenever node positions or labels change (when `topology` is dropped): state
    /// indexed by node position or domain id is valid for one generation.
    generation: u64,
    /// Positions in the order a scheduling cycle visits nodes (upstream's `nodeTree.list`),
    /// computed when first read after the node set or labels changed (registering 5,000
    /// nodes one by one would otherwise rebuild it 5,000 times).
    order: OnceLock<Vec<usize>>,
}

/// Upstream `nodeTree.list`: the first node of every zone, then the second of every zone, and
/// so on, zones in the order they first appear, nodes of a zone in table (name) order — the
/// order the informer's initial list adds them upstream. A sampled cycle
/// (`percentageOfNodesToScore`) thus sees every zone even when node names group by zone.
fn zone_round_robin(entries: &[NodeEntry]) -> Vec<usize> {
    let mut zones: Vec<Vec<usize>> = Vec::new();
    let mut zone_at: BTreeMap<String, usize> = BTreeMap::new();
    for (idx, e) in entries.iter().enumerate() {
        let at = *zone_at
            .entry(crate::nodelifecycle::zone_key(&e.node))
            .or_insert_with(|| {
                zones.push(Vec::new());
                zones.len() - 1
            });
        zones[at].push(idx);
    }
    let longest = zones.iter().map(Vec::len).max().unwrap_or(0);
    let mut order = Vec::with_capacity(entries.len());
    for i in 0..longest {
        order.extend(zones.iter().filter_map(|z| z.get(i)));
    }
    order
}

impl NodeTable {
    pub fn entries(&self) -> &[NodeEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The current generation (see the field): positions and domain ids are stable within one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Node positions in the order a scheduling cycle visits them (see [`zone_round_robin`]).
    pub fn order(&self) -> &[usize] {
        self.order.get_or_init(|| zone_round_robin(&self.entries))
    }

    fn invalidate_topology(&mut self) {
        self.topology.clear();
        self.generation += 1;
        self.order = OnceLock::new();
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn get(&self, name: &str) -> Option<&NodeEntry> {
        self.index_of(name).map(|i| &self.entries[i])
    }

    fn reindex(&mut self) {
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        self.invalidate_topology();
    }

    /// Node `name` was inserted at position `at`: the positions after it move up by one (an
    /// order-independent update of every value, no rebuild of the name keys).
    fn shift_index(&mut self, at: usize, name: String) {
        for pos in self.index.values_mut() {
            if *pos >= at {
                *pos += 1;
            }
        }
        self.index.insert(name, at);
        self.invalidate_topology();
    }

    /// Build the topology index for `key` if it is not cached.
    pub fn prepare_topology(&mut self, key: &str) {
        if self.topology.contains_key(key) {
            return;
        }
        let mut ids: BTreeMap<String, u32> = BTreeMap::new();
        let mut domain_of = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            domain_of.push(e.label(key).map(|v| match ids.get(v) {
                Some(&id) => id,
                None => {
                    let id = ids.len() as u32;
                    ids.insert(v.to_string(), id);
                    id
                }
            }));
        }
        let missing = domain_of.iter().filter(|d| d.is_none()).count();
        let index = TopologyIndex {
            domain_of,
            domains: ids.len(),
            ids,
            missing,
        };
        self.topology.insert(key.to_string(), index);
    }

    /// The topology index for `key`, if prepared.
    pub fn topology(&self, key: &str) -> Option<&TopologyIndex> {
        self.topology.get(key)
    }

    /// Load many nodes at once (the informer's initial list), indexing once.
    pub fn load<'n>(&mut self, nodes: impl Iterator<Item = &'n Arc<Node>>) {
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            if self.index.contains_key(&name) {
                self.upsert(node.clone());
                continue;
            }
            let usage = self.orphans.remove(&name).unwrap_or_default();
            self.entries.push(NodeEntry::new(node.clone(), usage));
        }
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
        self.reindex();
    }

    /// Add or replace a node. Returns true if the node is new or changed in a way that could
    /// make an unschedulable pod schedulable (upstream's NodeAdd/NodeUpdate cluster events).
    pub fn upsert(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.index_of(&name) {
            Some(i) => {
                let usage = self.entries[i].usage;
                let entry = NodeEntry::new(node, usage);
                let changed = entry.differs_for_scheduling(&self.entries[i]);
                let relabelled = entry.node.metadata.labels != self.entries[i].node.metadata.labels;
                self.entries[i] = entry;
                if relabelled {
                    self.invalidate_topology();
                }
                changed
            }
            None => {
                let usage = self.orphans.remove(&name).unwrap_or_default();
                let entry = NodeEntry::new(node, usage);
                let at = self.entries.partition_point(|e| e.name < name);
                self.entries.insert(at, entry);
                self.shift_index(at, name);
                true
            }
        }
    }

    /// Forget a node; the usage of pods still bound to it is parked.
    pub fn remove(&mut self, name: &str) {
        if let Some(i) = self.index_of(name) {
            let entry = self.entries.remove(i);
            self.index.remove(&entry.name);
            for pos in self.index.values_mut() {
                if *pos > i {
                    *pos -= 1;
                }
            }
            self.invalidate_topology();
            if entry.usage != PodUsage::default() {
                self.orphans.insert(entry.name, entry.usage);
            }
        }
    }

    fn usage_mut(&mut self, node: &str) -> &mut PodUsage {
        match self.index.get(node) {
            Some(&i) => &mut self.entries[i].usage,
            None => self.orphans.entry(node.to_string()).or_default(),
        }
    }

    pub fn add_usage(&mut self, node: &str, u: &PodUsage) {
        self.usage_mut(node).add(u);
    }

    pub fn sub_usage(&mut self, node: &str, u: &PodUsage) {
        let usage = self.usage_mut(node);
        usage.sub(u);
        if !self.index.contains_key(node)
            && self
                .orphans
                .get(node)
                .is_some_and(|o| *o == PodUsage::default())
        {
            self.orphans.remove(node);
        }
    }
}
