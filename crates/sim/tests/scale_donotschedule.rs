//! The `DoNotSchedule` Pending trap at scale (docs/results.md, "DoNotSchedule spread and a dead
//! zone", measured live with 6 nodes): with a hard zone spread (`maxSkew: 1`,
//! `whenUnsatisfiable: DoNotSchedule`), the replacements of a dead zone's evicted pods stay
//! Pending, because the dead zone's nodes still form a topology domain with 0 matching pods
//! (`nodeTaintsPolicy` Ignore by default) and any live zone would then exceed the skew. The same
//! cluster with `ScheduleAnyway` places them in the live zones.
//!
//! Size for a debug build: 3 zones x 50 nodes, 300 replicas, `fast` profile (grace 5 s,
//! tolerations 30 s, --node-eviction-rate 1/s: zone a's 50 nodes are tainted in about 50 s).

mod common;

use lab::EventKind;
use sim::Outcome;

fn run(when: &str, seed: u64) -> Outcome {
    let text = format!(
        "name: scale-donotschedule
topology: {{zones: [a, b, c], nodesPerZone: 50}}
profile: fast
workloads:
  - inline:
      - {{apiVersion: v1, kind: Service, metadata: {{name: web}}, spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}}}
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          replicas: 300
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              topologySpreadConstraints:
              - {{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: {when}, labelSelector: {{matchLabels: {{app: web}}}}}}
              containers: [{{name: echo, image: zonelab/echo, ports: [{{containerPort: 8080}}]}}]
clients:
  - {{name: web, target: web, zones: [b, c], rate: 20, timeout: 1s}}
faults:
  - {{at: 20s, type: zone-power-off, target: a}}
run: {{duration: 3m}}
"
    );
    let (s, m) = common::load_text(&text);
    sim::run(&s, &m, seed).expect("simulated run")
}

fn fault_at(out: &Outcome) -> f64 {
    out.events
        .iter()
        .find_map(|e| matches!(e.kind, EventKind::Fault { .. }).then_some(e.at))
        .expect("a fault on the timeline")
}

/// Web pods bound to a node after `t` (ms), and web pods of zone a marked for deletion.
fn bound_after_and_evicted(out: &Outcome, t: f64) -> (usize, usize) {
    let bound = out
        .events
        .iter()
        .filter(|e| e.at > t)
        .filter(|e| matches!(&e.kind, EventKind::PodBound { pod, .. } if pod.starts_with("default/web-")))
        .count();
    let evicted = out
        .events
        .iter()
        .filter(|e| e.at > t)
        .filter(|e| {
            matches!(&e.kind, EventKind::PodDeleting { pod, node }
                if pod.starts_with("default/web-") && node.starts_with("a-"))
        })
        .count();
    (bound, evicted)
}

#[test]
fn donotschedule_leaves_a_dead_zones_replacements_pending_at_scale() {
    let out = run("DoNotSchedule", 21);
    let fault = fault_at(&out);
    let (bound, evicted) = bound_after_and_evicted(&out, fault);
    // Zone a held a third of the 300 (maxSkew 1 over three zones): all 100 evicted ...
    assert_eq!(evicted, 100, "zone a's pods evicted");
    // ... and none of their replacements placed: b and c hold 100 each, zone a 0.
    assert_eq!(bound, 0, "a replacement was placed");
    let p = &out.report.phases;
    assert!(p.pods_evicted_s.is_some(), "{p:?}");
    assert_eq!(p.replacements_ready_s, None, "{p:?}");
    // The clients in b and c are served by the 200 left once the proxies dropped zone a.
    assert!(out.report.requests.ok > 0);
}

#[test]
fn schedule_anyway_places_them_in_the_live_zones() {
    let out = run("ScheduleAnyway", 21);
    let fault = fault_at(&out);
    let (bound, evicted) = bound_after_and_evicted(&out, fault);
    assert_eq!(evicted, 100);
    assert_eq!(bound, 100, "every replacement placed");
    assert!(out.report.phases.replacements_ready_s.is_some());
}
