//! Upstream node-lifecycle zone rules at scale (`pkg/controller/nodelifecycle`,
//! `ComputeZoneState`, `handleDisruption`, `setLimiterInZone`, `ReducedQPSFunc`), with the
//! upstream profile's flags: `--unhealthy-zone-threshold 0.55`, `--large-cluster-size-threshold
//! 50`, `--node-eviction-rate 0.1`, `--secondary-node-eviction-rate 0.01`.
//!
//! A zone is FullDisruption when none of its nodes is Ready, PartialDisruption when more than 2
//! and at least 0.55 of its nodes are not Ready, Normal otherwise. Normal and FullDisruption
//! zones taint at `--node-eviction-rate`; a PartialDisruption zone at
//! `--secondary-node-eviction-rate` if the ZONE has more than 50 nodes, else at 0; when every
//! zone is FullDisruption nothing is tainted and existing NoExecute taints are removed.
//!
//! Sizes are chosen for a debug build (each test simulates 60 to 180 nodes for 7 to 12
//! virtual minutes).

mod common;

use lab::EventKind;
use sim::Outcome;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable:NoExecute";

/// `nodes` nodes per zone in zones a, b, c, upstream profile, a zone-spread Deployment of one
/// pod per node, the given faults, `duration` long.
fn run(nodes: u32, faults: &str, duration: &str, seed: u64) -> Outcome {
    let replicas = nodes * 3;
    let text = format!(
        "name: scale-zones
topology: {{zones: [a, b, c], nodesPerZone: {nodes}}}
profile: upstream
workloads:
  - inline:
      - {{apiVersion: v1, kind: Service, metadata: {{name: web}}, spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}}}
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              topologySpreadConstraints:
              - {{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {{matchLabels: {{app: web}}}}}}
              containers: [{{name: echo, image: zonelab/echo, ports: [{{containerPort: 8080}}]}}]
faults:
{faults}
run: {{duration: {duration}}}
"
    );
    let (s, m) = common::load_text(&text);
    sim::run(&s, &m, seed).expect("simulated run")
}

/// `node-power-off` faults at 30 s for nodes 1..=n of zone a.
fn power_off_zone_a(n: u32) -> String {
    (1..=n)
        .map(|i| format!("  - {{at: 30s, type: node-power-off, target: a-{i}}}\n"))
        .collect()
}

/// First time (ms) each node got to `pick`, sorted by time.
fn first_times(out: &Outcome, pick: impl Fn(&EventKind) -> Option<&str>) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = out
        .events
        .iter()
        .filter_map(|e| pick(&e.kind).map(|n| (n.to_string(), e.at)))
        .collect();
    v.sort_by(|x, y| x.1.total_cmp(&y.1));
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|(n, _)| seen.insert(n.clone()));
    v
}

fn unknown_times(out: &Outcome) -> Vec<(String, f64)> {
    first_times(out, |k| match k {
        EventKind::NodeReady { node, ready } if ready == "Unknown" => Some(node),
        _ => None,
    })
}

fn taint_times(out: &Outcome) -> Vec<(String, f64)> {
    first_times(out, |k| match k {
        EventKind::NodeTaints { node, taints } if taints.iter().any(|t| t == UNREACHABLE) => {
            Some(node)
        }
        _ => None,
    })
}

/// Nodes whose pods were marked for deletion, with the first time.
fn evicted_nodes(out: &Outcome) -> Vec<(String, f64)> {
    first_times(out, |k| match k {
        EventKind::PodDeleting { node, pod } if pod.starts_with("default/web-") => Some(node),
        _ => None,
    })
}

fn fault_at(out: &Outcome) -> f64 {
    out.events
        .iter()
        .find_map(|e| matches!(e.kind, EventKind::Fault { .. }).then_some(e.at))
        .expect("a fault on the timeline")
}

/// When the zone's `k`-th node went Unknown: from then on it is PartialDisruption.
fn kth(times: &[(String, f64)], k: usize) -> f64 {
    times[k - 1].1
}

#[test]
fn a_small_zone_in_partial_disruption_stops_tainting() {
    // 40 nodes per zone (120 in all): zone a is at most --large-cluster-size-threshold 50, so
    // PartialDisruption gives it eviction rate 0. 30 of its 40 nodes lose power (0.75 >= 0.55).
    let out = run(40, &power_off_zone_a(30), "8m", 11);
    let unknown = unknown_times(&out);
    assert_eq!(unknown.len(), 30, "{unknown:?}");
    assert!(unknown.iter().all(|(n, _)| n.starts_with("a-")));
    // 0.55 x 40 = 22 not-ready nodes make the zone PartialDisruption (rate 0). A node is
    // queued for its NoExecute taint in the monitor pass after the one that marked it Unknown
    // (upstream's `processTaintBaseEviction` reads the condition observed before the update),
    // and that pass ends with `handleDisruption`: when the zone crosses 0.55 within one
    // `--node-monitor-period` (5 s) of its first detection, as the 30 simultaneous power-offs
    // do here, no node is ever tainted at the Normal rate.
    let partial = kth(&unknown, 22);
    assert!(
        partial - unknown[0].1 <= 5_500.0,
        "the detections spread over more than one monitor pass: {unknown:?}"
    );
    let tainted = taint_times(&out);
    eprintln!(
        "small zone: {} Unknown from {:.1} s, PartialDisruption at {:.1} s, tainted {tainted:?}",
        unknown.len(),
        (unknown[0].1 - fault_at(&out)) / 1e3,
        (partial - fault_at(&out)) / 1e3
    );
    assert_eq!(tainted, vec![], "no node tainted");
    // Nothing is evicted in the 5+ minutes that follow, however long the nodes stay dead.
    assert_eq!(evicted_nodes(&out), vec![], "no pod evicted");
    assert!(
        out.report.duration_s * 1e3 > partial - out.report.started_at_ms + 300_000.0,
        "the run lasts past the 300 s toleration"
    );
}

#[test]
fn a_large_zone_in_partial_disruption_taints_at_the_secondary_rate() {
    // 60 nodes per zone (> 50): PartialDisruption uses --secondary-node-eviction-rate 0.01,
    // one node per 100 s. 45 of zone a's 60 nodes lose power (0.75 >= 0.55).
    let out = run(60, &power_off_zone_a(45), "12m", 12);
    let unknown = unknown_times(&out);
    assert_eq!(unknown.len(), 45, "{unknown:?}");
    // 0.55 x 60 = 33 not-ready nodes: PartialDisruption from then on.
    let partial = kth(&unknown, 33);
    let tainted = taint_times(&out);
    let rel: Vec<f64> = tainted
        .iter()
        .map(|t| (t.1 - fault_at(&out)) / 1e3)
        .collect();
    eprintln!(
        "large zone: PartialDisruption at {:.1} s, taints at {rel:?} s after the fault",
        (partial - fault_at(&out)) / 1e3
    );
    // The first taint comes in the pass that swapped the zone's limiter to 0.01/s (a fresh
    // bucket of one token: upstream `SwapLimiter` drains it only when the old one was empty),
    // then one node per 100 s; 0.1/s would have tainted all 45 in about 7 minutes.
    let times: Vec<f64> = tainted.iter().map(|t| t.1).collect();
    assert!(
        times
            .first()
            .is_some_and(|t| (*t - partial).abs() <= 5_500.0),
        "first taint {tainted:?}, PartialDisruption at {partial}"
    );
    // About 10 minutes at 0.01/s after the first: 6 or 7 nodes in all.
    assert!(
        (6..=8).contains(&times.len()),
        "{} tainted: {tainted:?}",
        times.len()
    );
    for w in times.windows(2) {
        let gap = (w[1] - w[0]) / 1e3;
        assert!((99.0..=106.0).contains(&gap), "taints {gap} s apart");
    }
    // Their pods go 300 s after each taint, as for any tainted node.
    let evicted = evicted_nodes(&out);
    for (node, at) in &evicted {
        let (_, t) = tainted
            .iter()
            .find(|(n, _)| n == node)
            .expect("only tainted nodes are evicted");
        let s = (at - t) / 1e3;
        assert!((299.0..=301.0).contains(&s), "{node} evicted {s} s after");
    }
    assert!(evicted.len() >= 2, "{evicted:?}");
}

#[test]
fn every_zone_down_stops_tainting_and_evicts_nothing() {
    // 20 nodes per zone (60 in all, more than 50): all three zones lose power. Each becomes
    // FullDisruption; once all are, the controller stops tainting and removes the NoExecute
    // taints it set while some zone still looked Normal, so no pod is evicted.
    let faults = "  - {at: 30s, type: zone-power-off, target: a}
  - {at: 30s, type: zone-power-off, target: b}
  - {at: 30s, type: zone-power-off, target: c}
";
    let out = run(20, faults, "7m", 13);
    let unknown = unknown_times(&out);
    assert_eq!(unknown.len(), 60, "every node detected");
    let all_down = kth(&unknown, 60);
    eprintln!(
        "all zones: last Unknown {:.1} s after the fault, taints set {:?}",
        (all_down - fault_at(&out)) / 1e3,
        taint_times(&out)
    );
    // Each node's last taint change: none keeps the unreachable NoExecute taint.
    let mut last: std::collections::BTreeMap<&str, &Vec<String>> = Default::default();
    for e in &out.events {
        if let EventKind::NodeTaints { node, taints } = &e.kind {
            last.insert(node, taints);
        }
    }
    for (node, taints) in &last {
        assert!(
            !taints.iter().any(|t| t == UNREACHABLE),
            "{node} still tainted: {taints:?}"
        );
    }
    let late = taint_times(&out)
        .into_iter()
        .filter(|(_, at)| *at > all_down + 5_000.0)
        .count();
    assert_eq!(late, 0, "no taint once every zone is FullDisruption");
    assert_eq!(evicted_nodes(&out), vec![], "no pod evicted");
}
