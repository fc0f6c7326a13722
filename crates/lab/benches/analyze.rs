//! Analysis benchmarks: a synthetic zone outage (3 zones x 2 nodes, 6 endpoints, zone a dead
//! from t = 60 s) with N requests over 10 minutes, analysed, rendered to JSON and HTML; and the
//! run loop's once-a-second check (timeline only). Prints wall time per step and the peak RSS.
//! Run: `cargo bench -p lab --bench analyze`.

use std::collections::BTreeMap;
use std::time::Instant;

use lab::{ConnKind, Event, EventKind, Meta, Outcome, Request};

const T0: f64 = 1_800_000_000_000.0;
use lab::fixtures::NODES;

fn meta(end_s: f64) -> Meta {
    let mut m = lab::fixtures::meta("bench", T0, end_s);
    m.ended_by = "duration".into();
    m
}

fn at(s: f64) -> f64 {
    T0 + s * 1e3
}

fn endpoints(nodes: &[&str]) -> EventKind {
    let ready: BTreeMap<String, Vec<String>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), vec![format!("10.0.0.{i}")]))
        .collect();
    EventKind::endpoints_full("default/web", ready)
}

/// Timeline: endpoints, a fault, detection, removal, and every proxy syncing every 3 s.
fn timeline(end_s: f64) -> Vec<Event> {
    let all: Vec<&str> = NODES.iter().map(|(n, _)| *n).collect();
    let live = &all[2..];
    let mut e = vec![
        Event {
            at: at(0.5),
            kind: endpoints(&all),
        },
        Event {
            at: at(60.0),
            kind: EventKind::Fault {
                fault: "zone-power-off".into(),
                target: "a".into(),
                nodes: vec!["a-1".into(), "a-2".into()],
            },
        },
        Event {
            at: at(65.0),
            kind: endpoints(live),
        },
    ];
    let mut t = 1.0;
    // As the runs record them: each distinct programmed set listed once.
    let mut sets = lab::observe::ProxySyncObserver::default();
    while t < end_s {
        for (n, _) in NODES {
            let ips: Vec<String> = if t < 65.2 { 0..6 } else { 2..6 }
                .map(|i| format!("10.0.0.{i}"))
                .collect();
            let programmed = BTreeMap::from([("default/web".to_string(), ips)]);
            e.push(Event {
                at: at(t),
                kind: sets.synced(n, programmed).1,
            });
        }
        t += 3.0;
    }
    e
}

fn requests(n: usize, end_s: f64) -> Vec<Request> {
    (0..n)
        .map(|i| {
            let s = end_s * i as f64 / n as f64;
            let fails = (60.0..65.2).contains(&s) && i % 3 == 0;
            Request {
                client: "web".into(),
                client_zone: ["b", "c"][i % 2].into(),
                client_node: ["b-2", "c-2"][i % 2].into(),
                client_kind: "clusterip".into(),
                service: "default/web".into(),
                start: at(s),
                end: at(s + 0.002),
                outcome: if fails { Outcome::Timeout } else { Outcome::Ok },
                conn: ConnKind::New,
                conn_opened: at(s),
                local_port: (32768 + i % 28000) as u16,
                connected: !fails,
                pod: None,
                node: None,
                zone: Some("b".into()),
            }
        })
        .collect()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let end_s = 600.0;
    let m = meta(end_s);
    let events = timeline(end_s);
    let t = Instant::now();
    let rounds = 100;
    for _ in 0..rounds {
        std::hint::black_box(lab::analyze(&m, &events, &[]));
    }
    println!(
        "live check, {} events, no requests: {:.2} ms",
        events.len(),
        t.elapsed().as_secs_f64() * 1e3 / rounds as f64
    );
    for n in [60_000usize, 600_000] {
        let reqs = requests(n, end_s);
        let t = Instant::now();
        let r = lab::analyze(&m, &events, &reqs);
        let analyse = t.elapsed();
        let t = Instant::now();
        let json = serde_json::to_vec_pretty(&r).expect("json");
        let to_json = t.elapsed();
        let t = Instant::now();
        let html = lab::html::render(&r);
        let to_html = t.elapsed();
        println!(
            "{n} requests ({} rps for {end_s} s): analyse {:.0} ms, report.json {:.1} ms ({} KiB), report.html {:.1} ms ({} KiB)",
            n as f64 / end_s,
            analyse.as_secs_f64() * 1e3,
            to_json.as_secs_f64() * 1e3,
            json.len() / 1024,
            to_html.as_secs_f64() * 1e3,
            html.len() / 1024
        );
    }
    println!("peak RSS: {} MiB", peak_rss_kib() / 1024);
}
