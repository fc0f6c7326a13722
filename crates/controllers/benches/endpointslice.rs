//! Bench of the EndpointSlice controller: the cost of reacting to one pod change in a
//! 5,000-pod Service (handle_change + poll_action), plus the initial sync and a no-op resync.
//!
//! Run: `cargo bench -p controllers --bench endpointslice`. Prints median / p99 / max.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use controllers::endpointslice::{EndpointSliceConfig, EndpointSliceController};
use controllers::fake::{FakeApi, T0, object};
use controllers::{Action, Controller, Object};
use serde_json::json;

const PODS: usize = 5_000;
const NODES: usize = 100;
const ITERATIONS: usize = 400;

fn ts(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .expect("ts")
        .to_string()
}

fn pod(i: usize, ready: bool, at: i64) -> Object {
    object(json!({
        "kind": "Pod",
        "metadata": {"name": format!("web-{i:05}"), "namespace": "default", "labels": {"app": "web", "pod-template-hash": "abc"}},
        "spec": {"nodeName": format!("node-{:03}", i % NODES),
                 "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": format!("10.1.{}.{}", i / 250, i % 250 + 1),
                   "podIPs": [{"ip": format!("10.1.{}.{}", i / 250, i % 250 + 1)}],
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": ts(at)}]}
    }))
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{name:<44} n={:<4} median {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        samples.len(),
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    let mut api = FakeApi::new();
    for n in 0..NODES {
        let zone = ["zone-a", "zone-b", "zone-c"][n % 3];
        api.put(object(json!({"kind": "Node", "metadata": {"name": format!("node-{n:03}"), "labels": {"topology.kubernetes.io/zone": zone}}})), T0);
    }
    api.put(object(json!({"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})), T0);
    for i in 0..PODS {
        api.put(pod(i, true, T0.as_millis()), T0);
    }

    let mut c = EndpointSliceController::new(EndpointSliceConfig::default());
    let start = Instant::now();
    c.handle_synced(&api.cache, T0);
    let mut out: Vec<Action> = Vec::new();
    out.extend(std::iter::from_fn(|| c.poll_action()));
    let initial = start.elapsed();
    println!(
        "initial sync of {PODS} pods: {initial:.3?} ({} writes)",
        out.len()
    );
    for a in &out {
        let changes = api.execute(a, T0).expect("create");
        changes
            .iter()
            .for_each(|ch| c.handle_change(&api.cache, ch, T0));
    }
    api.drain(&mut c, T0);
    println!("slices: {}", api.cache.endpoint_slices.len());

    let mut flips = Vec::with_capacity(ITERATIONS);
    let mut writes = 0;
    for k in 0..ITERATIONS {
        let now = T0 + Duration::from_millis(1_000 * (k as u64 + 1));
        // Pod i turns not-ready, then (next iteration) ready again: every change is real.
        let i = ((k / 2) * 7919) % PODS;
        let ready = k % 2 == 1;
        let change = api.put(pod(i, ready, now.as_millis()), now);
        let start = Instant::now();
        c.handle_change(&api.cache, black_box(&change), now);
        let mut out = Vec::new();
        out.extend(std::iter::from_fn(|| c.poll_action()));
        flips.push(start.elapsed());
        writes += out.len();
        for a in &out {
            match api.execute(a, now) {
                Ok(changes) => changes
                    .iter()
                    .for_each(|ch| c.handle_change(&api.cache, ch, now)),
                Err(e) => c.handle_write_failed(a, &e, now),
            }
        }
        api.drain(&mut c, now);
    }
    report("one pod readiness change (handle_change+poll)", flips);
    println!(
        "  slice writes per change: {:.2}",
        writes as f64 / ITERATIONS as f64
    );

    // A Service update that changes nothing: full reconcile, no writes.
    let svc = api.cache.services.values().next().cloned().expect("svc");
    let mut noops = Vec::with_capacity(ITERATIONS);
    for k in 0..ITERATIONS {
        let now = T0 + Duration::from_millis(10_000_000 + k as u64);
        let change = api.put(Object::Service(Arc::clone(&svc)), now);
        let start = Instant::now();
        c.handle_change(&api.cache, &change, now);
        let mut out = Vec::new();
        out.extend(std::iter::from_fn(|| c.poll_action()));
        noops.push(start.elapsed());
        assert!(out.is_empty(), "no-op resync wrote {out:?}");
    }
    report("no-op resync (service update, 0 writes)", noops);
}
