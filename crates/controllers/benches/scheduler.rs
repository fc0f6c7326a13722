//! Bench for the scheduler: throughput (pods/s) binding 5,000 pods on 1,000 / 2,000 / 5,000
//! nodes in 3 and 10 zones, without constraints and with a zone topology spread constraint
//! (maxSkew 1, `DoNotSchedule` or `ScheduleAnyway`), all pending at start or arriving one at a
//! time, in the virtual-time harness (the fake API's bind and the informer event for it are
//! included in the time). The harness's own share is measured apart: the same binds replayed
//! on a fresh fake API without the scheduler.
//!
//! Prints figures, each the best of `ZL_BENCH_REPEAT` runs (default 3: on a shared machine the
//! fastest run is the least disturbed one), in wall time and in the thread's CPU time (from
//! `/proc/thread-self/schedstat`: what the run costs when it has a core to itself); run with `cargo bench -p controllers --bench
//! scheduler`. Narrow it with `ZL_BENCH_NODES=5000`, `ZL_BENCH_ZONES=3`, `ZL_BENCH_PODS=20000`,
//! `ZL_BENCH_CASES=spread` (a comma-separated list of `none`, `spread`, `soft`, `svc`; the
//! default leaves out `svc`), `ZL_BENCH_SERVICES=10000`.

use std::collections::BTreeMap;
use std::time::Instant;

use controllers::fake::{FakeApi, Harness, T0, object};
use controllers::scheduler::{Scheduler, SchedulerConfig};
use controllers::{Action, Controller, Object};
use serde_json::{Value, json};

/// What the pods ask for.
#[derive(Clone, Copy, PartialEq)]
enum Case {
    /// No spread constraint (and no Service selecting them: no system default spreading).
    None,
    /// Zone spread, maxSkew 1, `DoNotSchedule`.
    Spread,
    /// Zone spread, maxSkew 1, `ScheduleAnyway`.
    Soft,
    /// No constraint, but a Service selects the pods among `ZL_BENCH_SERVICES` (default
    /// 1,000) Services in their namespace: upstream's system default spreading (zone maxSkew
    /// 5, hostname maxSkew 3, ScheduleAnyway).
    Service,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::None => "no constraints",
            Case::Spread => "zone spread DoNotSchedule",
            Case::Soft => "zone spread ScheduleAnyway",
            Case::Service => "system default spread",
        }
    }
}

struct Size {
    nodes: usize,
    zones: usize,
    pods: usize,
}

fn node(i: usize, zones: usize) -> Object {
    let name = format!("node-{i:05}");
    object(json!({
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "topology.kubernetes.io/zone": format!("zone-{}", i % zones),
            "kubernetes.io/hostname": name
        }},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
}

fn pod(i: usize, case: Case) -> Object {
    let mut v: Value = json!({
        "kind": "Pod",
        "metadata": {"name": format!("web-{i:06}"), "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    });
    let when = match case {
        Case::None | Case::Service => None,
        Case::Spread => Some("DoNotSchedule"),
        Case::Soft => Some("ScheduleAnyway"),
    };
    if let Some(when) = when {
        v["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}
        }]);
    }
    object(v)
}

/// Service `i` of the namespace; service 0 selects the bench's pods.
fn service(i: usize) -> Object {
    let app = if i == 0 {
        "web".to_string()
    } else {
        format!("other-{i}")
    };
    object(json!({
        "kind": "Service",
        "metadata": {"name": format!("svc-{i:05}"), "namespace": "default"},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80}]}
    }))
}

fn harness(size: &Size, case: Case) -> Harness {
    let sched: Box<dyn Controller> = Box::new(Scheduler::new(SchedulerConfig::default()));
    let mut h = Harness::new(vec![sched]);
    for i in 0..size.nodes {
        h.api.put(node(i, size.zones), T0);
    }
    if case == Case::Service {
        for i in 0..env_list("ZL_BENCH_SERVICES", &[1_000])[0] {
            h.api.put(service(i), T0);
        }
    }
    h
}

/// Wall and CPU seconds the fake API alone takes for the binds `h` executed: the same pods and binds
/// replayed on a fresh API, no scheduler.
fn harness_share(size: &Size, case: Case, h: &Harness) -> (f64, f64) {
    let mut api = FakeApi::new();
    for i in 0..size.nodes {
        api.put(node(i, size.zones), T0);
    }
    for i in 0..size.pods {
        api.put(pod(i, case), T0);
    }
    let binds: Vec<&Action> = h
        .api
        .log
        .iter()
        .map(|(_, a)| a)
        .filter(|a| matches!(a, Action::Bind { .. }))
        .collect();
    timed(|| {
        for a in binds {
            api.execute(a, T0).expect("replayed bind");
        }
    })
}

/// Seconds this thread has run on a CPU (first field of `/proc/thread-self/schedstat`, ns).
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

/// Wall and CPU seconds of `f`.
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (t, cpu) = (Instant::now(), cpu_secs());
    f();
    (t.elapsed().as_secs_f64(), cpu_secs() - cpu)
}

/// Run `once` `repeat` times; report the fastest run (wall), and the least CPU time.
fn best_of(
    repeat: usize,
    label: &str,
    size: &Size,
    case: Case,
    once: impl Fn() -> (Harness, (f64, f64)),
) {
    let runs: Vec<(Harness, (f64, f64))> = (0..repeat.max(1)).map(|_| once()).collect();
    let cpu = runs.iter().map(|r| r.1.1).fold(f64::INFINITY, f64::min);
    let (h, (secs, _)) = runs
        .into_iter()
        .min_by(|a, b| a.1.0.total_cmp(&b.1.0))
        .expect("one run");
    report(label, size, case, &h, secs, cpu);
}

fn report(label: &str, size: &Size, case: Case, h: &Harness, secs: f64, cpu: f64) {
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
    let (api, api_cpu) = harness_share(size, case, h);
    println!(
        "{:>5} nodes {:>2} zones  {label:<10} {:<27} {bound:>6} bound in {secs:>6.3} s = {:>6.0} pods/s \
         (CPU {cpu:>5.3} s = {:>6.0} pods/s); fake API {:>4.1}% of CPU, scheduler alone {:>6.0} \
         pods/s CPU  (per-zone min {min}, max {max}); wall without the fake API {:>6.0} pods/s",
        size.nodes,
        size.zones,
        case.name(),
        bound as f64 / secs,
        bound as f64 / cpu,
        100.0 * api_cpu / cpu,
        bound as f64 / (cpu - api_cpu).max(1e-9),
        bound as f64 / (secs - api).max(1e-9),
    );
}

/// All pods exist before the scheduler starts (one long queue, like scheduler_perf's
/// measured phase): time from start until every bind is executed and observed.
fn batch(size: &Size, case: Case) -> (Harness, (f64, f64)) {
    let mut h = harness(size, case);
    for i in 0..size.pods {
        h.api.put(pod(i, case), T0);
    }
    let t = timed(|| h.start());
    (h, t)
}

/// Pods arrive one at a time through the informer; each is scheduled, bound and observed
/// before the next arrives.
fn streaming(size: &Size, case: Case) -> (Harness, (f64, f64)) {
    let mut h = harness(size, case);
    h.start();
    let t = timed(|| {
        for i in 0..size.pods {
            h.put(pod(i, case));
        }
    });
    (h, t)
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().parse().expect("a number"))
            .collect(),
        Err(_) => default.to_vec(),
    }
}

fn main() {
    let pods = env_list("ZL_BENCH_PODS", &[5_000])[0];
    let repeat = env_list("ZL_BENCH_REPEAT", &[3])[0];
    let cases: Vec<Case> = std::env::var("ZL_BENCH_CASES")
        .unwrap_or_else(|_| "none,spread,soft".into())
        .split(',')
        .map(|c| match c.trim() {
            "none" => Case::None,
            "spread" => Case::Spread,
            "soft" => Case::Soft,
            "svc" => Case::Service,
            other => panic!("unknown case {other}: none, spread, soft or svc"),
        })
        .collect();
    println!(
        "scheduler: {pods} pods (100m / 128Mi each); default percentageOfNodesToScore; best of {repeat}"
    );
    for nodes in env_list("ZL_BENCH_NODES", &[1_000, 2_000, 5_000]) {
        for zones in env_list("ZL_BENCH_ZONES", &[3, 10]) {
            let size = Size { nodes, zones, pods };
            for &case in &cases {
                best_of(repeat, "batch", &size, case, || batch(&size, case));
                best_of(repeat, "streaming", &size, case, || streaming(&size, case));
            }
        }
    }
}
