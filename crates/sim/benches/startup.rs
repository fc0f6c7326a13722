//! Start-up of a simulated scenario, phase by phase: boot (nodes registered and Ready), the
//! workload manifests created, the workloads available, the load-start rule; with CPU time,
//! wall time, live heap bytes and RSS after each phase, then what each part of the world
//! holds (the heap freed as each is dropped, in order).
//!
//! `SIM_SCENARIO=path` (default `examples/sim-az-5000.yaml`), `SIM_SEED` (default 1):
//!
//! ```text
//! cargo bench -p sim --bench startup --profile dev [--config ...opt-level=3]
//! ```
//!
//! Start at `main`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::System;
use std::time::Instant;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes live now.
fn live() -> usize {
    let s = GLOBAL.stats();
    (s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated).max(0)
        as usize
}

/// User + system CPU seconds of this process (`/proc/self/stat`, clock ticks of 10 ms).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// `VmRSS` and `VmHWM` in MiB.
fn rss_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

struct Clock {
    wall: Instant,
    cpu: f64,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: cpu_s(),
        }
    }

    /// Print the phase's figures and restart.
    fn lap(&mut self, phase: &str, w: Option<&sim::World>) {
        let (rss, hwm) = rss_mib();
        let virt = w.map_or(String::new(), |w| {
            format!(
                " virtual {:.1} s, {} events, {} API writes",
                w.now.saturating_since(controllers::fake::T0).as_secs_f64(),
                w.stats.events,
                w.stats.api_writes
            )
        });
        println!(
            "{phase:<16} cpu {:7.2} s  wall {:7.2} s  heap {:7.0} MiB  rss {rss:6} MiB (hwm {hwm}){virt}",
            cpu_s() - self.cpu,
            self.wall.elapsed().as_secs_f64(),
            mib(live()),
        );
        *self = Clock::start();
    }
}

/// Events by kind and API writes by verb and kind over the start-up, in all and per pod.
fn print_counts(stats: &sim::Stats, pods: usize) {
    let per = |n: u64| n as f64 / pods as f64;
    println!(
        "events {} ({:.2} per pod), API writes {} ({:.2} per pod), over {pods} pods:",
        stats.events,
        per(stats.events),
        stats.api_writes,
        per(stats.api_writes)
    );
    for (kind, n) in stats.kinds_since(&sim::Stats::default()) {
        println!("  event {kind:<22} {n:>10} {:8.2} per pod", per(n));
    }
    for ((verb, kind), n) in &stats.writes_by_kind {
        let label = format!("{verb} {kind:?}");
        println!("  write {label:<22} {n:>10} {:8.2} per pod", per(*n));
    }
}

fn main() {
    let path = std::env::var("SIM_SCENARIO").unwrap_or_else(|_| {
        common::examples()
            .join("sim-az-5000.yaml")
            .display()
            .to_string()
    });
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let total = Clock::start();
    let mut c = Clock::start();
    let text = std::fs::read_to_string(&path).expect("scenario file");
    let (s, manifests) = common::load_text(&text);
    println!(
        "{path}: {} nodes, {} manifests, seed {seed}",
        s.topology.zones.len() as u32 * s.topology.nodes_per_zone,
        manifests.len()
    );
    c.lap("load scenario", None);
    let mut w = sim::boot(&s, seed).expect("boot");
    c.lap("nodes ready", Some(&w));
    sim::apply_workloads(&mut w, &manifests).expect("workloads");
    c.lap("available", Some(&w));
    sim::await_load_start(&mut w, &s).expect("load start");
    c.lap("load start", Some(&w));
    println!(
        "start-up total   cpu {:7.2} s  wall {:7.2} s",
        cpu_s() - total.cpu,
        total.wall.elapsed().as_secs_f64()
    );
    drop(manifests);
    let pods = w.api.fake.cache.pods.len().max(1);
    print_counts(&w.stats, pods);
    println!(
        "{pods} pods; heap freed as each part is dropped, in this order (shared objects count where the last holder goes):"
    );
    let mut before = live();
    let mut freed = |what: &str| {
        let now = live();
        let d = before.saturating_sub(now);
        println!(
            "  {what:<40} {:8.1} MiB  {:6.0} B/pod",
            mib(d),
            d as f64 / pods as f64
        );
        before = now;
    };
    drop(std::mem::take(&mut w.events));
    freed("timeline events");
    for (what, part) in w.take_records() {
        drop(part);
        freed(what);
    }
    w.cm = sim::adapter::Controllers::new(Vec::new());
    freed("controllers (their state and indexes)");
    w.cm_cache = controllers::Cache::new();
    freed("controller-manager informer cache");
    let mut nodes = std::mem::take(&mut w.nodes);
    for n in &mut nodes {
        n.kubelet = None;
    }
    freed("nodes: kubelets");
    for n in &mut nodes {
        n.proxy = None;
    }
    freed("nodes: kube-proxies");
    drop(nodes);
    freed("nodes: the rest (runtimes, inboxes)");
    w.proxy_model = sim::proxy::Endpoints::new();
    freed("shared proxy model");
    w.queue = Default::default();
    freed("event queue");
    w.api = sim::api::SimApi::new(300, 300, 1);
    freed("API store + its cache");
    drop(w);
    freed("the rest of the world");
}
