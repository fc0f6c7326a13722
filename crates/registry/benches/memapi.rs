//! Bench of the hot writes through `MemApi` at simulator scale: 5,000 nodes renewing their
//! Lease and status updates of pods among 150,000, on the typed store (the fast paths) and on
//! the JSON store (the rules on `serde_json::Value`); and the 150,000 pod creates and bindings.
//!
//! Run: `cargo bench -p registry --bench memapi`. Prints median / p99 / max per write.

use runtime::Moment;
use std::hint::black_box;
use std::time::{Duration, Instant};

use registry::typed::Obj;
use registry::{MemApi, MemConfig, ResourceInfo, Stored, UpdateScope};
use serde_json::{Value, json};

const NODES: usize = 5_000;
const PODS: usize = 150_000;
const WRITES: usize = 20_000;
const T0: i64 = 1_800_000_000_000;

fn res(group: &str, plural: &str) -> &'static ResourceInfo {
    api::resources::by_plural(group, plural).expect("served")
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{label:<52} n={:<6} median {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        samples.len(),
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

fn lease(i: usize, renew_s: usize) -> Value {
    json!({"metadata": {"name": format!("node-{i:05}"), "namespace": "kube-node-lease"},
           "spec": {"holderIdentity": format!("node-{i:05}"), "leaseDurationSeconds": 40,
                    "renewTime": format!("2027-01-15T08:{:02}:{:02}.000000Z", renew_s / 60 % 60, renew_s % 60)}})
}

fn pod(i: usize) -> Value {
    json!({"metadata": {"name": format!("pod-{i:06}"), "namespace": "default",
                        "labels": {"app": format!("svc-{}", i % 10_000)}},
           "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                    "ports": [{"containerPort": 8080}]}]}})
}

fn config() -> MemConfig {
    MemConfig {
        check_namespaces: false,
        ..MemConfig::default()
    }
}

/// Create the Leases and pods (bound, one per node round robin) in `api`; reports the time per
/// pod create (admission and validation through JSON) and per binding.
fn populate<S: Stored>(
    label: &str,
    api: &mut MemApi<S>,
    wrap: impl Fn(&'static ResourceInfo, Value) -> S,
) {
    let leases = res("coordination.k8s.io", "leases");
    let pods = res("", "pods");
    for i in 0..NODES {
        api.create(
            leases,
            Some("kube-node-lease"),
            &wrap(leases, lease(i, 0)),
            Moment::from_millis(T0),
        )
        .expect("lease");
    }
    let mut creates = Vec::with_capacity(PODS);
    let mut binds = Vec::with_capacity(PODS);
    for i in 0..PODS {
        let p = wrap(pods, pod(i));
        let start = Instant::now();
        api.create(
            pods,
            Some("default"),
            black_box(&p),
            Moment::from_millis(T0),
        )
        .expect("pod");
        creates.push(start.elapsed());
        let (name, node) = (format!("pod-{i:06}"), format!("node-{:05}", i % NODES));
        let start = Instant::now();
        api.bind("default", &name, &node, Moment::from_millis(T0))
            .expect("bind");
        binds.push(start.elapsed());
    }
    report(&format!("{label}: pod create"), creates);
    report(&format!("{label}: pod binding"), binds);
}

/// Time `WRITES` Lease renewals and pod status updates on `api` (objects read back from it).
fn time_writes<S: Stored>(
    label: &str,
    api: &mut MemApi<S>,
    renew: impl Fn(&S, usize) -> S,
    running: impl Fn(&S, usize) -> S,
) {
    let leases = res("coordination.k8s.io", "leases");
    let pods = res("", "pods");
    let mut samples = Vec::with_capacity(WRITES);
    for w in 0..WRITES {
        let i = w % NODES;
        let cur = api
            .get(leases, Some("kube-node-lease"), &format!("node-{i:05}"))
            .expect("lease")
            .clone();
        let next = renew(&cur, 10 + w / NODES * 10);
        let start = Instant::now();
        let out = api.update(
            leases,
            Some("kube-node-lease"),
            black_box(next),
            UpdateScope::Main,
            Moment::from_millis(T0),
        );
        samples.push(start.elapsed());
        assert_eq!(out.expect("renewal").changes.len(), 1);
    }
    report(&format!("{label}: Lease renewal"), samples);
    let mut samples = Vec::with_capacity(WRITES);
    for w in 0..WRITES {
        let i = (w * 7) % PODS;
        let cur = api
            .get(pods, Some("default"), &format!("pod-{i:06}"))
            .expect("pod")
            .clone();
        let next = running(&cur, w);
        let start = Instant::now();
        let out = api.update_status(
            pods,
            Some("default"),
            black_box(next),
            Moment::from_millis(T0),
        );
        samples.push(start.elapsed());
        assert_eq!(out.expect("status").changes.len(), 1);
    }
    report(&format!("{label}: pod status update"), samples);
}

fn renew_json(cur: &Value, s: usize) -> Value {
    let mut v = cur.clone();
    v["spec"]["renewTime"] = json!(format!(
        "2027-01-15T{:02}:{:02}:{:02}.000000Z",
        8 + s / 3600,
        s / 60 % 60,
        s % 60
    ));
    v
}

fn running_json(cur: &Value, w: usize) -> Value {
    let mut v = cur.clone();
    v["status"]["phase"] = json!("Running");
    v["status"]["podIP"] = json!(format!(
        "10.{}.{}.{}",
        w / 65536 % 256,
        w / 256 % 256,
        w % 256
    ));
    v
}

fn main() {
    let leases = res("coordination.k8s.io", "leases");
    let pods = res("", "pods");

    let mut typed: MemApi<Obj> = MemApi::new(config(), 1).expect("config");
    populate("typed", &mut typed, |r, v| {
        Obj::from_value(r, v).expect("typed")
    });
    time_writes(
        "typed",
        &mut typed,
        |cur, s| Obj::from_value(leases, renew_json(&cur.to_value(), s)).expect("lease"),
        |cur, w| Obj::from_value(pods, running_json(&cur.to_value(), w)).expect("pod"),
    );

    let mut js: MemApi<Value> = MemApi::new(config(), 1).expect("config");
    populate("json", &mut js, |_, v| v);
    time_writes("json", &mut js, renew_json, running_json);
}
