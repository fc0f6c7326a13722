//! Incremental counts of placed pods per (namespace, label selector, node) for
//! `PodTopologySpread`, so a scheduling cycle does not re-scan every pod of the namespace, and
//! the same counts by node position and by topology domain, so a cycle does not re-add them
//! over every node either.
//!
//! Start at [`SpreadCounts`]: the scheduler calls [`SpreadCounts::set`] whenever a pod's
//! counted state may change (pod add/update/delete, assume, forget), and
//! [`SpreadCounts::prepare`] for the selectors of the pod about to be scheduled; the spread
//! plugin reads [`SpreadCounts::per_node`] and, when valid for the node table's generation,
//! [`SpreadCounts::indexed`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::cycle::is_terminal;
use super::nodes::NodeTable;
use super::selectors::Selector;
use crate::Key;

type Labels = BTreeMap<String, String>;

/// How a pod counts toward spread constraints: the node it occupies (bound, or assumed by
/// us) and its labels. Only non-terminating, non-terminal pods are placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub node: String,
    pub labels: Option<Labels>,
    /// True when the node comes from our assumption rather than `spec.nodeName`.
    pub assumed: bool,
}

impl Placed {
    /// The counted state of `pod` (upstream `countPodsMatchSelector` skips terminating pods;
    /// [`super::cycle::Snapshot::node_of`] gives the node). `assumed_node` is where we assumed
    /// it, if we did.
    pub fn of(pod: &Pod, assumed_node: Option<&str>) -> Option<Placed> {
        if pod.metadata.deletion_timestamp.is_some() || is_terminal(pod) {
            return None;
        }
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty());
        let (node, assumed) = match bound {
            Some(n) => (n, false),
            None => (assumed_node?, true),
        };
        Some(Placed {
            node: node.to_string(),
            labels: pod.metadata.labels.clone(),
            assumed,
        })
    }
}

/// Matching pods of one topology key's domains: per domain id of the node table's
/// [`super::nodes::TopologyIndex`], and on nodes lacking the label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSums {
    pub per_domain: Vec<i64>,
    pub missing: i64,
}

/// An entry's counts over the node table of one generation: per node position, and per
/// domain of each prepared topology key. Pods on nodes not in the table count in neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indexed {
    generation: u64,
    pub per_node: Vec<u32>,
    pub domains: BTreeMap<String, DomainSums>,
}

impl Indexed {
    fn build(per_node: &BTreeMap<String, u32>, nodes: &NodeTable) -> Indexed {
        let mut counts = vec![0u32; nodes.len()];
        for (name, &c) in per_node {
            if let Some(idx) = nodes.index_of(name) {
                counts[idx] += c;
            }
        }
        Indexed {
            generation: nodes.generation(),
            per_node: counts,
            domains: BTreeMap::new(),
        }
    }

    /// Add the sums for topology `key` (its index must be prepared in `nodes`).
    fn add_key(&mut self, key: &str, nodes: &NodeTable) {
        if self.domains.contains_key(key) {
            return;
        }
        let Some(topo) = nodes.topology(key) else {
            return;
        };
        let mut sums = DomainSums {
            per_domain: vec![0; topo.domains],
            missing: 0,
        };
        for (idx, &c) in self.per_node.iter().enumerate() {
            match topo.domain_of[idx] {
                Some(d) => sums.per_domain[d as usize] += i64::from(c),
                None => sums.missing += i64::from(c),
            }
        }
        self.domains.insert(key.to_string(), sums);
    }

    /// One matching pod more (`add`) or less on `node`.
    fn apply(&mut self, node: &str, add: bool, nodes: &NodeTable) {
        let Some(idx) = nodes.index_of(node) else {
            return;
        };
        let delta: i64 = if add { 1 } else { -1 };
        self.per_node[idx] = (i64::from(self.per_node[idx]) + delta).max(0) as u32;
        for (key, sums) in &mut self.domains {
            let slot = match nodes.topology(key).and_then(|t| t.domain_of[idx]) {
                Some(d) => &mut sums.per_domain[d as usize],
                None => &mut sums.missing,
            };
            *slot = (*slot + delta).max(0);
        }
    }
}

/// Counts for one (namespace, selector).
#[derive(Debug)]
struct Entry {
    namespace: String,
    selector: Selector,
    per_node: BTreeMap<String, u32>,
    /// The same counts by position, for the node table generation it names (dropped when
    /// the table moves on, rebuilt by the next [`SpreadCounts::prepare`]).
    indexed: Option<Indexed>,
}

impl Entry {
    fn apply(&mut self, key: &Key, placed: &Placed, add: bool, nodes: &NodeTable) {
        if key.namespace != self.namespace || !self.selector.matches(placed.labels.as_ref()) {
            return;
        }
        if add {
            *self.per_node.entry(placed.node.clone()).or_insert(0) += 1;
        } else if let Some(c) = self.per_node.get_mut(&placed.node) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.per_node.remove(&placed.node);
            }
        }
        match &mut self.indexed {
            Some(ix) if ix.generation == nodes.generation() => ix.apply(&placed.node, add, nodes),
            _ => self.indexed = None,
        }
    }
}

/// Placed pods and, per prepared (namespace, selector), matching placed pods per node name.
#[derive(Debug, Default)]
pub struct SpreadCounts {
    placed: BTreeMap<Key, Placed>,
    /// Few distinct selectors in practice (one per workload using spreading); looked up by
    /// equality.
    entries: Vec<Entry>,
}

impl SpreadCounts {
    /// Record the counted state of the pod at `key` (`None`: it counts nowhere). `nodes` is
    /// the node table the indexed counts follow.
    pub fn set(&mut self, key: &Key, new: Option<Placed>, nodes: &NodeTable) {
        let old = match &new {
            Some(p) => self.placed.insert(key.clone(), p.clone()),
            None => self.placed.remove(key),
        };
        if old == new {
            return;
        }
        for e in &mut self.entries {
            if let Some(o) = &old {
                e.apply(key, o, false, nodes);
            }
            if let Some(n) = &new {
                e.apply(key, n, true, nodes);
            }
        }
    }

    /// Our assumption for `key` was dropped: it no longer counts unless it is bound.
    pub fn forget_assumed(&mut self, key: &Key, nodes: &NodeTable) {
        if self.placed.get(key).is_some_and(|p| p.assumed) {
            self.set(key, None, nodes);
        }
    }

    /// Start maintaining counts for `(namespace, selector)` (a scan of the namespace's placed
    /// pods the first time only), and make its indexed counts valid for `nodes` with sums for
    /// every topology key in `keys` (whose indexes `nodes` must have prepared).
    pub fn prepare(
        &mut self,
        namespace: &str,
        selector: &Selector,
        keys: &[String],
        nodes: &NodeTable,
    ) {
        let at = match self.position(namespace, selector) {
            Some(at) => at,
            None => {
                let mut entry = Entry {
                    namespace: namespace.to_string(),
                    selector: selector.clone(),
                    per_node: BTreeMap::new(),
                    indexed: None,
                };
                let start = Key::new(namespace, "");
                for (key, placed) in self
                    .placed
                    .range(start..)
                    .take_while(|(k, _)| k.namespace == namespace)
                {
                    entry.apply(key, placed, true, nodes);
                }
                self.entries.push(entry);
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[at];
        let ix = match &mut e.indexed {
            Some(ix) if ix.generation == nodes.generation() => ix,
            stale => stale.insert(Indexed::build(&e.per_node, nodes)),
        };
        for key in keys {
            ix.add_key(key, nodes);
        }
    }

    fn position(&self, namespace: &str, selector: &Selector) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.namespace == namespace && &e.selector == selector)
    }

    fn find(&self, namespace: &str, selector: &Selector) -> Option<&Entry> {
        self.position(namespace, selector).map(|i| &self.entries[i])
    }

    /// Matching placed pods per node name, if `(namespace, selector)` was prepared.
    pub fn per_node(&self, namespace: &str, selector: &Selector) -> Option<&BTreeMap<String, u32>> {
        self.find(namespace, selector).map(|e| &e.per_node)
    }

    /// The counts by node position and domain, if prepared and valid for `nodes` now.
    pub fn indexed(
        &self,
        namespace: &str,
        selector: &Selector,
        nodes: &NodeTable,
    ) -> Option<&Indexed> {
        self.find(namespace, selector)?
            .indexed
            .as_ref()
            .filter(|ix| ix.generation == nodes.generation())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    use super::super::{Scheduler, SchedulerConfig};
    use super::Selector;
    use crate::fake::{T0, object};
    use crate::{Action, Cache, Change, Controller, Key, Object, WriteError};

    const NAMESPACES: [&str; 2] = ["a", "b"];

    fn node(i: usize) -> Object {
        zoned_node(i, i % 3)
    }

    fn zoned_node(i: usize, zone: usize) -> Object {
        object(json!({
            "kind": "Node",
            "metadata": {"name": format!("n{i}"), "labels": {
                "topology.kubernetes.io/zone": format!("z{zone}"),
                "kubernetes.io/hostname": format!("n{i}")
            }},
            "status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
    }

    fn random_pod(rng: &mut ChaCha8Rng, uid: usize, bound: Option<String>) -> Object {
        let mut labels = BTreeMap::new();
        labels.insert("app", ["web", "db", "cache"][rng.random_range(0..3)]);
        if rng.random_bool(0.5) {
            labels.insert("tier", "front");
        }
        let mut v = json!({
            "kind": "Pod",
            "metadata": {
                "name": format!("p{}", rng.random_range(0..25)),
                "namespace": NAMESPACES[rng.random_range(0..2)],
                "uid": format!("uid-{uid}"),
                "labels": labels
            },
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "10m"}}}]}
        });
        if rng.random_bool(0.7) {
            let app = ["web", "db"][rng.random_range(0..2)];
            let when = ["DoNotSchedule", "ScheduleAnyway"][rng.random_range(0..2)];
            v["spec"]["topologySpreadConstraints"] = json!([{
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": when,
                "labelSelector": {"matchLabels": {"app": app}}
            }]);
        }
        if let Some(n) = bound {
            v["spec"]["nodeName"] = json!(n);
        }
        if rng.random_bool(0.05) {
            v["status"] = json!({"phase": "Succeeded"});
        }
        object(v)
    }

    /// Upstream-style recount over the whole cache, as the scan did before counts were kept.
    fn recount(
        cache: &Cache,
        sched: &Scheduler,
        ns: &str,
        sel: &Selector,
    ) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for p in cache.pods_in(ns) {
            let assumed = p
                .metadata
                .uid
                .as_ref()
                .and_then(|u| sched.assumed_nodes.get(u));
            let Some(placed) = super::Placed::of(p, assumed.map(String::as_str)) else {
                continue;
            };
            if sel.matches(p.metadata.labels.as_ref()) {
                *out.entry(placed.node).or_insert(0) += 1;
            }
        }
        out
    }

    fn random_existing(rng: &mut ChaCha8Rng, cache: &Cache) -> Option<Key> {
        let keys: Vec<&Key> = cache.pods.keys().collect();
        (!keys.is_empty()).then(|| keys[rng.random_range(0..keys.len())].clone())
    }

    /// One random event: a pod put, deleted, made terminating or relabelled, or one of the
    /// scheduler's pending binds executed or failed. Returns the change to deliver, if any.
    fn step(
        rng: &mut ChaCha8Rng,
        cache: &mut Cache,
        sched: &mut Scheduler,
        binds: &mut Vec<(Key, String)>,
        uid: &mut usize,
        now: crate::Moment,
    ) -> Option<Change> {
        match rng.random_range(0..11) {
            // A node added (n6 holds pods bound before it existed) or moved to another zone.
            10 => Some(cache.apply(
                zoned_node(rng.random_range(0..7), rng.random_range(0..4)),
                false,
            )),
            0..=2 => {
                *uid += 1;
                let bound = rng
                    .random_bool(0.2)
                    .then(|| format!("n{}", rng.random_range(0..7)));
                Some(cache.apply(random_pod(rng, *uid, bound), false))
            }
            3 => {
                let key = random_existing(rng, cache)?;
                let pod = cache.pods.get(&key)?.clone();
                Some(cache.apply(Object::Pod(pod), true))
            }
            4 | 5 => {
                let key = random_existing(rng, cache)?;
                let mut pod = (**cache.pods.get(&key)?).clone();
                if rng.random_bool(0.5) {
                    pod.metadata.deletion_timestamp = Some(crate::time::to_time(now));
                } else {
                    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
                    labels.insert("app".into(), ["web", "db"][rng.random_range(0..2)].into());
                }
                Some(cache.apply(Object::Pod(std::sync::Arc::new(pod)), false))
            }
            _ => {
                if binds.is_empty() {
                    return None;
                }
                let (key, node) = binds.remove(rng.random_range(0..binds.len()));
                let current = cache
                    .pods
                    .get(&key)
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none());
                match current {
                    Some(p) if rng.random_bool(0.8) => {
                        let mut pod = (**p).clone();
                        pod.spec.get_or_insert_with(Default::default).node_name = Some(node);
                        Some(cache.apply(Object::Pod(std::sync::Arc::new(pod)), false))
                    }
                    _ => {
                        let action = Action::Bind { pod: key, node };
                        sched.handle_write_failed(&action, &WriteError::Conflict, now);
                        None
                    }
                }
            }
        }
    }

    #[test]
    fn incremental_counts_equal_a_recount_after_random_events() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut cache = Cache::new();
        for i in 0..6 {
            cache.apply(node(i), false);
        }
        let mut sched = Scheduler::new(SchedulerConfig::default());
        let mut now = T0;
        sched.handle_synced(&cache, now);
        // Prepared up front, before any pod exists; others get prepared by scheduling cycles.
        let tier = BTreeMap::from([("tier".to_string(), "front".to_string())]);
        sched
            .spread_counts
            .prepare("a", &Selector::from_set(&tier), &[], &sched.nodes);
        let (mut binds, mut uid, mut actions) = (Vec::new(), 0, Vec::new());
        let (mut checked, mut indexed_checked) = (0, 0);
        for _ in 0..2000 {
            now += Duration::from_millis(rng.random_range(0..400));
            if let Some(change) = step(&mut rng, &mut cache, &mut sched, &mut binds, &mut uid, now)
            {
                sched.handle_change(&cache, &change, now);
            }
            if sched.poll_timeout().is_some_and(|t| t <= now) {
                sched.handle_timeout(&cache, now);
            }
            actions.extend(std::iter::from_fn(|| sched.poll_action()));
            for a in actions.drain(..) {
                if let Action::Bind { pod, node } = a {
                    binds.push((pod, node));
                }
            }
            for e in &sched.spread_counts.entries {
                let expected = recount(&cache, &sched, &e.namespace, &e.selector);
                assert_eq!(e.per_node, expected, "{} {:?}", e.namespace, e.selector);
                checked += expected.values().sum::<u32>();
                let valid = e.indexed.as_ref();
                if let Some(ix) = valid.filter(|ix| ix.generation == sched.nodes.generation()) {
                    let mut fresh = super::Indexed::build(&expected, &sched.nodes);
                    for key in ix.domains.keys() {
                        fresh.add_key(key, &sched.nodes);
                    }
                    assert_eq!(*ix, fresh, "{} {:?}", e.namespace, e.selector);
                    indexed_checked += ix.per_node.iter().sum::<u32>();
                }
            }
        }
        assert!(sched.spread_counts.entries.len() >= 3);
        assert!(
            checked > 1000 && indexed_checked > 1000,
            "too few counted pods to test anything: {checked}, {indexed_checked} indexed"
        );
    }
}
