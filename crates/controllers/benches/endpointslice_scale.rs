//! Bench of the EndpointSlice controller at the simulator's scale: 10,000 Services and 150,000
//! pods in one namespace (9,990 Services of 14 pods, 10 of 1,014), 5,001 nodes in 3 zones.
//! Prints the initial sync (every slice created), the cost of one pod readiness change in a
//! small and in a 1,014-endpoint Service (handle_change + poll_action, the echo of its write
//! not counted), and how that cost grows with pods per Service (one Service of 100 – 20,000
//! pods).
//!
//! Run: `cargo bench -p controllers --bench endpointslice_scale`. `ES_BENCH_SERVICES`,
//! `ES_BENCH_PODS` (pods per small Service) and `ES_BENCH_BIG` (number of big Services)
//! shrink the first part; `ES_BENCH_GROWTH=0` skips the second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use controllers::endpointslice::{EndpointSliceConfig, EndpointSliceController};
use controllers::fake::{FakeApi, T0, object};
use controllers::{Action, Controller, Moment, Object};
use rand::{Rng, SeedableRng};
use serde_json::json;

const NODES: usize = 5_001;
const BIG_PODS: usize = 1_014;
const CHANGES: usize = 400;

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn ts(ms: Moment) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms.as_millis())
        .expect("ts")
        .to_string()
}

fn pod(app: &str, i: usize, ip: usize, ready: bool, at: Moment) -> Object {
    let addr = format!("10.{}.{}.{}", 64 + ip / 65_536, (ip / 256) % 256, ip % 256);
    object(json!({
        "kind": "Pod",
        "metadata": {"name": format!("{app}-{i:05}"), "namespace": "default", "labels": {"app": app}},
        "spec": {"nodeName": format!("node-{:04}", ip % NODES),
                 "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": addr, "podIPs": [{"ip": addr}],
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": ts(at)}]}
    }))
}

fn service(app: &str) -> Object {
    object(
        json!({"kind": "Service", "metadata": {"name": app, "namespace": "default"},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{name:<52} n={:<4} median {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        samples.len(),
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

/// The API, the apps (name, pod count) and the first free pod IP index.
struct World {
    api: FakeApi,
    apps: Vec<(String, usize)>,
}

fn world(apps: Vec<(String, usize)>) -> World {
    let mut api = FakeApi::new();
    for n in 0..NODES {
        let zone = ["zone-a", "zone-b", "zone-c"][n % 3];
        api.put(object(json!({"kind": "Node", "metadata": {"name": format!("node-{n:04}"), "labels": {"topology.kubernetes.io/zone": zone}}})), T0);
    }
    let mut ip = 0;
    for (app, pods) in &apps {
        api.put(service(app), T0);
        for i in 0..*pods {
            api.put(pod(app, i, ip, true, T0), T0);
            ip += 1;
        }
    }
    World { api, apps }
}

/// Execute writes and hand their echoes back until none is left.
fn settle(api: &mut FakeApi, c: &mut EndpointSliceController, out: Vec<Action>, now: Moment) {
    for a in &out {
        match api.execute(a, now) {
            Ok(changes) => changes
                .iter()
                .for_each(|ch| c.handle_change(&api.cache, ch, now)),
            Err(e) => c.handle_write_failed(a, &e, now),
        }
    }
    api.drain(c, now);
}

/// Median-and-p99 of `CHANGES` readiness flips of pods of `app` (pods `0..pods`).
fn flips(
    w: &mut World,
    c: &mut EndpointSliceController,
    app: &str,
    first_ip: usize,
    pods: usize,
    t: &mut Moment,
) -> (Vec<Duration>, usize) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut samples = Vec::with_capacity(CHANGES);
    let mut writes = 0;
    for _ in 0..CHANGES {
        *t += Duration::from_millis(1_000);
        let i = rng.random_range(0..pods);
        let change = w.api.put(pod(app, i, first_ip + i, false, *t), *t);
        let start = Instant::now();
        c.handle_change(&w.api.cache, black_box(&change), *t);
        let out: Vec<Action> = std::iter::from_fn(|| c.poll_action()).collect();
        samples.push(start.elapsed());
        writes += out.len();
        settle(&mut w.api, c, out, *t);
        // Put it back (not timed), so every timed change is real.
        let back = w.api.put(pod(app, i, first_ip + i, true, *t), *t);
        c.handle_change(&w.api.cache, &back, *t);
        let out: Vec<Action> = std::iter::from_fn(|| c.poll_action()).collect();
        settle(&mut w.api, c, out, *t);
    }
    (samples, writes)
}

fn scale() {
    let services = env_number("ES_BENCH_SERVICES").unwrap_or(10_000);
    let small = env_number("ES_BENCH_PODS").unwrap_or(14);
    let big = env_number("ES_BENCH_BIG").unwrap_or(10).min(services);
    let apps: Vec<(String, usize)> = (0..services)
        .map(|s| {
            let pods = if s < big { BIG_PODS } else { small };
            (format!("app-{s:05}"), pods)
        })
        .collect();
    let pods: usize = apps.iter().map(|a| a.1).sum();
    let start = Instant::now();
    let mut w = world(apps);
    println!(
        "{services} Services, {pods} pods, {NODES} nodes (one namespace): built in {:.1?}",
        start.elapsed()
    );
    let mut c = EndpointSliceController::new(EndpointSliceConfig::default());
    let start = Instant::now();
    c.handle_synced(&w.api.cache, T0);
    let out: Vec<Action> = std::iter::from_fn(|| c.poll_action()).collect();
    println!(
        "initial sync: {:.3?} ({} writes, {} syncs)",
        start.elapsed(),
        out.len(),
        c.syncs
    );
    let start = Instant::now();
    settle(&mut w.api, &mut c, out, T0);
    println!(
        "  writes executed and echoes handled: {:.3?} ({} slices)",
        start.elapsed(),
        w.api.cache.endpoint_slices.len()
    );
    let mut t = T0;
    let big_app = w.apps[0].0.clone();
    let (samples, writes) = flips(&mut w, &mut c, &big_app, 0, BIG_PODS, &mut t);
    report(
        &format!("pod readiness change, {BIG_PODS}-endpoint Service"),
        samples,
    );
    println!(
        "  slice writes per change: {:.2}",
        writes as f64 / CHANGES as f64
    );
    let last = w.apps.len() - 1;
    let (small_app, small_pods) = w.apps[last].clone();
    let first_ip = pods - small_pods;
    let (samples, _) = flips(&mut w, &mut c, &small_app, first_ip, small_pods, &mut t);
    report(
        &format!("pod readiness change, {small_pods}-endpoint Service"),
        samples,
    );
    let start = Instant::now();
    for _ in 0..10_000 {
        black_box(c.poll_timeout());
    }
    println!("poll_timeout: {:.3?} per call", start.elapsed() / 10_000);
    println!("syncs {} (partial {})", c.syncs, c.partial_syncs);
}

fn growth() {
    for pods in [100, 1_000, 5_000, 20_000] {
        let mut w = world(vec![("web".to_string(), pods)]);
        let mut c = EndpointSliceController::new(EndpointSliceConfig::default());
        let start = Instant::now();
        c.handle_synced(&w.api.cache, T0);
        let out: Vec<Action> = std::iter::from_fn(|| c.poll_action()).collect();
        let initial = start.elapsed();
        settle(&mut w.api, &mut c, out, T0);
        let mut t = T0;
        let (samples, _) = flips(&mut w, &mut c, "web", 0, pods, &mut t);
        println!("one Service of {pods} pods: initial sync {initial:.3?}");
        report("  pod readiness change", samples);
    }
}

fn main() {
    scale();
    if env_number("ES_BENCH_GROWTH") != Some(0) {
        growth();
    }
}
