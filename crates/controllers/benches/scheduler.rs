//! Bench for the scheduler: throughput (pods/s) binding 5,000 pending pods on 5,000 nodes in
//! 10 zones, with and without a zone topology spread constraint, in the virtual-time harness
//! (the fake API's bind and the informer event for it are included in the time).
//! Prints figures; run with `cargo bench -p controllers --bench scheduler`.

use std::collections::BTreeMap;
use std::time::Instant;

use controllers::fake::{Harness, T0, object};
use controllers::scheduler::{Scheduler, SchedulerConfig};
use controllers::{Controller, Object};
use serde_json::{Value, json};

const NODES: usize = 5_000;
const ZONES: usize = 10;
const PODS: usize = 5_000;

fn node(i: usize) -> Object {
    let name = format!("node-{i:05}");
    object(json!({
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES),
            "kubernetes.io/hostname": name
        }},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
}

fn pod(i: usize, spread: bool) -> Object {
    let mut v: Value = json!({
        "kind": "Pod",
        "metadata": {"name": format!("web-{i:05}"), "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    });
    if spread {
        v["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}
        }]);
    }
    object(v)
}

fn harness() -> Harness {
    let sched: Box<dyn Controller> = Box::new(Scheduler::new(SchedulerConfig::default()));
    let mut h = Harness::new(vec![sched]);
    for i in 0..NODES {
        h.api.put(node(i), T0);
    }
    h
}

fn report(label: &str, h: &Harness, secs: f64) {
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    let mut bound = 0;
    for p in h.api.cache.pods.values() {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            bound += 1;
            *per_zone
                .entry(h.api.cache.zone_of(n).unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    let (min, max) = (
        per_zone.values().min().copied().unwrap_or(0),
        per_zone.values().max().copied().unwrap_or(0),
    );
    println!(
        "{label:<44} {bound:>5} bound in {secs:>7.3} s = {:>8.0} pods/s  (per-zone min {min}, max {max})",
        bound as f64 / secs
    );
}

/// All pods exist before the scheduler starts (one long queue, like scheduler_perf's
/// measured phase): time from start until every bind is executed and observed.
fn batch(spread: bool) {
    let mut h = harness();
    for i in 0..PODS {
        h.api.put(pod(i, spread), T0);
    }
    let t = Instant::now();
    h.start();
    report(
        &format!(
            "batch, {} ",
            if spread {
                "zone spread"
            } else {
                "no constraints"
            }
        ),
        &h,
        t.elapsed().as_secs_f64(),
    );
}

/// Pods arrive one at a time through the informer; each is scheduled, bound and observed
/// before the next arrives.
fn streaming(spread: bool) {
    let mut h = harness();
    h.start();
    let t = Instant::now();
    for i in 0..PODS {
        h.put(pod(i, spread));
    }
    report(
        &format!(
            "streaming, {}",
            if spread {
                "zone spread"
            } else {
                "no constraints"
            }
        ),
        &h,
        t.elapsed().as_secs_f64(),
    );
}

fn main() {
    println!("scheduler: {NODES} nodes in {ZONES} zones, {PODS} pending pods (100m / 128Mi each)");
    batch(false);
    batch(true);
    streaming(false);
    streaming(true);
}
