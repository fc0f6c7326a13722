//! Tests of `percentageOfNodesToScore` sampling (upstream `numFeasibleNodesToFind` with the
//! rotating `nextStartNodeIndex`) and of topology spreading at scale with sampling on,
//! including that the indexed spread counts decide exactly as the scan over every node.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Scheduler, SchedulerConfig};
use crate::fake::{Harness, T0, object};
use crate::{Key, Object};

fn node(i: usize, zone: &str, prefer_no_schedule: bool) -> Object {
    let name = format!("node-{i:04}");
    let mut v = json!({
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "topology.kubernetes.io/zone": zone,
            "kubernetes.io/hostname": name
        }},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    if prefer_no_schedule {
        v["spec"]["taints"] =
            json!([{"key": "dedicated", "value": "x", "effect": "PreferNoSchedule"}]);
    }
    object(v)
}

fn pod_json(name: &str) -> Value {
    json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    })
}

fn spread(mut v: Value, when: &str) -> Value {
    v["spec"]["topologySpreadConstraints"] = json!([{
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": when,
        "labelSelector": {"matchLabels": {"app": "web"}}
    }]);
    v
}

fn harness(config: SchedulerConfig, nodes: impl Iterator<Item = Object>) -> Harness {
    let mut h = Harness::new(vec![Box::new(Scheduler::new(config))]);
    for n in nodes {
        h.api.put(n, T0);
    }
    h.start();
    h
}

fn bound_node(h: &Harness, name: &str) -> Option<String> {
    h.api
        .cache
        .pods
        .get(&Key::new("default", name))?
        .spec
        .as_ref()?
        .node_name
        .clone()
}

fn node_index(name: &str) -> usize {
    name.trim_start_matches("node-").parse().unwrap()
}

/// Bound pods per zone.
fn per_zone(h: &Harness) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for p in h.api.cache.pods.values() {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            *out.entry(h.api.cache.zone_of(n).unwrap().to_string())
                .or_default() += 1;
        }
    }
    out
}

/// 1,000 nodes, all feasible: upstream stops at 50 - 1000/125 = 42 % = 420 feasible nodes, and
/// the next cycle starts where this one stopped, so pod k lands in [420 k, 420 k + 420) mod 1000.
#[test]
fn default_percentage_scores_a_rotating_window_of_420_of_1000_nodes() {
    let mut h = harness(
        SchedulerConfig::default(),
        (0..1000).map(|i| node(i, ["a", "b", "c"][i % 3], false)),
    );
    let mut windows_hit = BTreeMap::new();
    for k in 0..12 {
        let name = format!("p{k}");
        h.put(object(pod_json(&name)));
        let idx = node_index(&bound_node(&h, &name).expect("bound"));
        let start = (420 * k) % 1000;
        let offset = (idx + 1000 - start) % 1000;
        assert!(
            offset < 420,
            "pod {k} on node {idx}, window starts at {start}"
        );
        *windows_hit.entry(offset / 140).or_insert(0) += 1;
    }
    // Ties are broken at random inside the window, not always at its start.
    assert!(windows_hit.len() > 1, "{windows_hit:?}");
}

/// Only the last node lacks an untolerated PreferNoSchedule taint (TaintToleration score 100
/// against 0, weight 3): with `percentageOfNodesToScore: 100` every node is scored and the pod
/// lands there; with the default 42 % of 1,000 nodes the first window (nodes 0–419) misses it.
#[test]
fn percentage_100_scores_every_node() {
    let nodes = || (0..1000).map(|i| node(i, ["a", "b", "c"][i % 3], i != 999));
    let all = SchedulerConfig {
        percentage_of_nodes_to_score: 100,
        ..SchedulerConfig::default()
    };
    let mut h = harness(all, nodes());
    h.put(object(pod_json("p")));
    assert_eq!(bound_node(&h, "p").as_deref(), Some("node-0999"));

    let mut h = harness(SchedulerConfig::default(), nodes());
    h.put(object(pod_json("p")));
    let idx = node_index(&bound_node(&h, "p").expect("bound"));
    assert!(
        idx < 420,
        "default sampling scored node {idx} outside the first window"
    );
}

/// Zones grouped by node name (500 / 300 / 200 nodes), so a 42 % window mostly covers one
/// zone: `DoNotSchedule` with maxSkew 1 must still hold after every single bind, and for all
/// pods scheduled from one long queue.
#[test]
fn do_not_schedule_never_exceeds_max_skew_with_sampling() {
    let zone = |i: usize| match i {
        0..500 => "a",
        500..800 => "b",
        _ => "c",
    };
    let mut h = harness(
        SchedulerConfig::default(),
        (0..1000).map(|i| node(i, zone(i), false)),
    );
    for k in 0..300 {
        h.put(object(spread(pod_json(&format!("p{k}")), "DoNotSchedule")));
        let counts = per_zone(&h);
        let (min, max) = (counts.values().min(), counts.values().max());
        let skew = max.unwrap() - if counts.len() < 3 { 0 } else { *min.unwrap() };
        assert!(skew <= 1, "after pod {k}: {counts:?}");
    }
    assert_eq!(per_zone(&h).values().sum::<i64>(), 300);

    let mut h = Harness::new(vec![Box::new(Scheduler::new(SchedulerConfig::default()))]);
    for i in 0..1000 {
        h.api.put(node(i, zone(i), false), T0);
    }
    for k in 0..301 {
        let p = spread(pod_json(&format!("p{k}")), "DoNotSchedule");
        h.api.put(object(p), T0);
    }
    h.start();
    let mut counts: Vec<i64> = per_zone(&h).into_values().collect();
    counts.sort();
    assert_eq!(counts, vec![100, 100, 101]);
}

/// The same pods, once plain (the spread plugin reads the incrementally kept per-domain
/// counts) and once with a required node affinity every node satisfies (the plugin scans every
/// node, as before): every placement must be the same, through binds, deletions and a node
/// moving zone. Pods take `DoNotSchedule`, `ScheduleAnyway`, or no constraint (a Service
/// selects them: upstream's system default zone and hostname spreading).
#[test]
fn indexed_spread_counts_decide_as_the_full_scan() {
    let zone = |i: usize| ["a", "b", "c"][(i / 7) % 3];
    let run = |affinity: bool| {
        let service = object(json!({
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
        }));
        let nodes = (0..300).map(|i| node(i, zone(i), false));
        let mut h = harness(SchedulerConfig::default(), nodes.chain([service]));
        let mut placed = Vec::new();
        for k in 0..240 {
            let mut v = match k % 3 {
                0 => spread(pod_json(&format!("p{k}")), "DoNotSchedule"),
                1 => spread(pod_json(&format!("p{k}")), "ScheduleAnyway"),
                _ => pod_json(&format!("p{k}")),
            };
            if affinity {
                v["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "Exists"}
                    ]}]
                }}});
            }
            h.put(object(v));
            placed.push(bound_node(&h, &format!("p{k}")));
            if k % 5 == 4 {
                h.remove(
                    crate::Kind::Pod,
                    &Key::new("default", &format!("p{}", k - 3)),
                );
            }
            if k == 120 {
                h.put(node(1, "c", false));
            }
        }
        placed
    };
    let indexed = run(false);
    assert!(indexed.iter().all(Option::is_some));
    assert_eq!(indexed, run(true));
}

/// Upstream `nodeTree.list`: one node per zone in turn, zones in order of first appearance
/// (here: name order), uneven zones running out one after the other.
#[test]
fn nodes_are_visited_round_robin_over_zones() {
    let mut table = super::nodes::NodeTable::default();
    let zones = ["a", "a", "a", "b", "c", "c"];
    let nodes: Vec<_> = zones
        .iter()
        .enumerate()
        .map(|(i, z)| match node(i, z, false) {
            Object::Node(n) => n,
            _ => unreachable!(),
        })
        .collect();
    table.load(nodes.iter());
    assert_eq!(table.order(), &[0, 3, 4, 1, 5, 2]);
    // Moving node 1 to zone b: a = [0, 2], b = [1, 3], c = [4, 5].
    let mut moved = (*nodes[1]).clone();
    let labels = moved.metadata.labels.as_mut().unwrap();
    labels.insert("topology.kubernetes.io/zone".into(), "b".into());
    table.upsert(std::sync::Arc::new(moved));
    assert_eq!(table.order(), &[0, 1, 4, 2, 3, 5]);
}

/// Node names grouped by zone (a: 0–499, b: 500–799, c: 800–999): a 42 % window still holds
/// nodes of every zone, so `ScheduleAnyway` pods spread from the first pods on, as upstream's
/// zone-interleaved node list does (in name order the first window would be zone a only).
#[test]
fn sampled_window_covers_every_zone_when_names_group_by_zone() {
    let zone = |i: usize| match i {
        0..500 => "a",
        500..800 => "b",
        _ => "c",
    };
    let mut h = harness(
        SchedulerConfig::default(),
        (0..1000).map(|i| node(i, zone(i), false)),
    );
    for k in 0..6 {
        h.put(object(spread(pod_json(&format!("p{k}")), "ScheduleAnyway")));
    }
    let counts: Vec<i64> = per_zone(&h).into_values().collect();
    assert_eq!(counts, vec![2, 2, 2]);
}

/// The scheduler keeps each pod label set's default spreading selector until a Service or
/// ReplicaSet changes: a Service created later selects the pods from then on.
#[test]
fn default_selector_follows_service_changes() {
    use crate::{Cache, Controller};
    let mut cache = Cache::new();
    let mut sched = Scheduler::new(SchedulerConfig::default());
    sched.handle_synced(&cache, T0);
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod_json("p")).unwrap();
    assert_eq!(
        sched.default_selector(&cache, &pod),
        Some(super::Selector::Reqs(vec![]))
    );
    let service = object(json!({
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}}
    }));
    let change = cache.apply(service.clone(), false);
    sched.handle_change(&cache, &change, T0);
    let selected = sched.default_selector(&cache, &pod).unwrap();
    assert!(!selected.is_empty() && selected.matches(pod.metadata.labels.as_ref()));
    let change = cache.apply(service, true);
    sched.handle_change(&cache, &change, T0);
    assert!(sched.default_selector(&cache, &pod).unwrap().is_empty());
}

/// Nodes registering one at a time, in any order, and leaving again, give the table a bulk
/// load of the same nodes gives: positions by name, lookups and the zone round-robin.
#[test]
fn nodes_added_one_by_one_index_as_a_bulk_load() {
    let zones = ["a", "b", "c", "a", "b", "c", "a"];
    let nodes: Vec<_> = zones
        .iter()
        .enumerate()
        .map(|(i, z)| match node(i, z, false) {
            Object::Node(n) => n,
            _ => unreachable!(),
        })
        .collect();
    let mut one_by_one = super::nodes::NodeTable::default();
    for i in [4, 0, 6, 2, 5, 1, 3] {
        one_by_one.upsert(nodes[i].clone());
    }
    let mut bulk = super::nodes::NodeTable::default();
    bulk.load(nodes.iter());
    let names = |t: &super::nodes::NodeTable| -> Vec<String> {
        t.entries().iter().map(|e| e.name.clone()).collect()
    };
    assert_eq!(names(&one_by_one), names(&bulk));
    assert_eq!(one_by_one.order(), bulk.order());
    for (i, e) in bulk.entries().iter().enumerate() {
        assert_eq!(one_by_one.index_of(&e.name), Some(i), "{}", e.name);
    }
    let gone = bulk.entries()[2].name.clone();
    one_by_one.remove(&gone);
    assert_eq!(one_by_one.index_of(&gone), None);
    for (i, e) in one_by_one.entries().iter().enumerate() {
        assert_eq!(one_by_one.index_of(&e.name), Some(i), "{}", e.name);
    }
    assert_eq!(one_by_one.order().len(), 6);
}
