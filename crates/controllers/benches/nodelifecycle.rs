//! Bench of the node lifecycle controller: one monitor pass over 5,000 nodes (10 pods each)
//! with 100 nodes dead: the pass that detects them (status + pod writes), the pass after it
//! (queues them for tainting), and a pass with every node healthy.
//!
//! Run: `cargo bench -p controllers --bench nodelifecycle`. Prints median / p99 / max.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use controllers::fake::{FakeApi, T0, object};
use controllers::nodelifecycle::{NodeLifecycleConfig, NodeLifecycleController};
use controllers::{Action, Controller, Moment, Object};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

const NODES: usize = 5_000;
const DEAD: usize = 100;
const PODS_PER_NODE: usize = 10;
const ITERATIONS: usize = 60;

fn ts(ms: Moment) -> String {
    Timestamp::from_millisecond(ms.as_millis())
        .expect("ts")
        .to_string()
}

fn name(i: usize) -> String {
    format!("node-{i:05}")
}

fn lease(node: &str, renew: Moment) -> Object {
    Object::Lease(Arc::new(Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some("kube-node-lease".to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            renew_time: Some(MicroTime(
                Timestamp::from_millisecond(renew.as_millis()).expect("ts"),
            )),
            ..LeaseSpec::default()
        }),
    }))
}

/// Dead nodes are spread over the zones: every 50th node.
fn is_dead(i: usize) -> bool {
    i.is_multiple_of(NODES / DEAD)
}

fn renew_live(api: &mut FakeApi, c: &mut NodeLifecycleController, now: Moment) {
    for i in (0..NODES).filter(|i| !is_dead(*i)) {
        let change = api.put(lease(&name(i), now), now);
        c.handle_change(&api.cache, &change, now);
    }
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{label:<52} n={:<3} median {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        samples.len(),
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

/// Time `handle_timeout(now)` + `poll_action` on fresh clones of `base`; returns the writes of one.
fn time_pass(label: &str, base: &NodeLifecycleController, api: &FakeApi, now: Moment) -> usize {
    let mut samples = Vec::with_capacity(ITERATIONS);
    let mut writes = 0;
    for _ in 0..ITERATIONS {
        let mut c = base.clone();
        let mut out: Vec<Action> = Vec::new();
        let start = Instant::now();
        c.handle_timeout(&api.cache, black_box(now));
        out.extend(std::iter::from_fn(|| c.poll_action()));
        samples.push(start.elapsed());
        writes = out.len();
    }
    report(label, samples);
    writes
}

fn main() {
    let mut api = FakeApi::new();
    for i in 0..NODES {
        let zone = format!("zone-{}", (b'a' + (i % 3) as u8) as char);
        api.put(
            object(json!({"kind": "Node", "metadata": {"name": name(i), "labels": {"topology.kubernetes.io/zone": zone}},
                "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": ts(T0), "lastTransitionTime": ts(T0)}]}})),
            T0,
        );
        api.put(lease(&name(i), T0), T0);
        for p in 0..PODS_PER_NODE {
            api.put(
                object(json!({"kind": "Pod", "metadata": {"name": format!("{}-p{p}", name(i)), "namespace": "default"},
                    "spec": {"nodeName": name(i), "containers": []},
                    "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ts(T0)}]}})),
                T0,
            );
        }
    }
    let mut c = NodeLifecycleController::new(NodeLifecycleConfig::default()).expect("config");
    let start = Instant::now();
    c.handle_synced(&api.cache, T0);
    println!(
        "first pass (handle_synced) over {NODES} nodes: {:.3?}",
        start.elapsed()
    );
    api.drain(&mut c, T0);

    // Passes every 5 s; live kubelets renew every 10 s; the dead never renew after T0.
    let mut now = T0;
    while now < T0 + Duration::from_millis(40_000) {
        now += Duration::from_millis(5_000);
        if (now.as_millis() - T0.as_millis()) % 10_000 == 0 {
            renew_live(&mut api, &mut c, now);
        }
        c.handle_timeout(&api.cache, now);
        api.drain(&mut c, now);
    }
    now = T0 + Duration::from_millis(45_000);
    let healthy = time_pass("healthy pass (no renewals since last pass)", &c, &api, now);
    assert_eq!(healthy, 0);
    c.handle_timeout(&api.cache, now);
    api.drain(&mut c, now);

    now = T0 + Duration::from_millis(50_000);
    renew_live(&mut api, &mut c, now);
    let writes = time_pass(
        &format!("detection pass: {DEAD} dead, {} renewed", NODES - DEAD),
        &c,
        &api,
        now,
    );
    println!(
        "  writes: {writes} ({DEAD} node status + {} pod status)",
        DEAD * PODS_PER_NODE
    );
    c.handle_timeout(&api.cache, now);
    let applied = api.drain(&mut c, now);
    println!("  writes incl. NoSchedule taints after echoes: {applied}");

    now = T0 + Duration::from_millis(55_000);
    time_pass(
        &format!("next pass: queues {DEAD} nodes for NoExecute"),
        &c,
        &api,
        now,
    );
}
