//! Integration test (root, network namespaces): `zonelab run` with a zonal shift on a healthy
//! lab — while zone a is shifted away from, no request is answered by a pod in zone a and
//! none fails; pods stay where they are; after the cancel, zone a's pods answer again.
//! Reported as ignored without root or the tools (see build.rs); under CI they fail instead.

use crate::common;

use common::scenario::{Run, run};

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn a_zonal_shift_moves_traffic_off_the_zone_without_evicting_and_cancel_brings_it_back() {
    let Run {
        report: r,
        requests,
        timeline,
        ..
    } = run(
        "zsh",
        16481,
        "name: zonal-shift-test
topology: {zones: [a, b, c], nodesPerZone: 1}
profile: fast
workloads: [{path: WEB_YAML}]
clients: [{name: web, target: web, zones: [b, c], rate: 20, timeout: 1s}]
zonalShifts:
  - {at: 5s, awayFrom: a, expiresIn: 1m}
  - {at: 20s, awayFrom: a, cancel: true}
run: {duration: 35s}
",
    );
    let t0 = r["started_at_ms"].as_f64().expect("started_at_ms");
    assert_eq!(
        r["requests"]["failed"].as_u64(),
        Some(0),
        "{}",
        r["requests"]
    );
    let zone_a = |from_s: f64, to_s: f64| {
        requests
            .iter()
            .filter(|q| {
                let t = (q["start"].as_f64().unwrap_or(0.0) - t0) / 1e3;
                (from_s..to_s).contains(&t)
            })
            .filter(|q| q["zone"] == "a")
            .count()
    };
    // Before the shift zone a's pods answer; from the shift plus one proxy sync (fast profile:
    // min-sync-period 0.1 s, and the watch) to the cancel, none does; after, again.
    assert!(
        zone_a(0.0, 5.0) > 0,
        "zone a answered nothing before the shift"
    );
    assert_eq!(zone_a(8.0, 20.0), 0, "zone a answered during the shift");
    assert!(
        zone_a(25.0, 35.0) > 0,
        "zone a answered nothing after the cancel"
    );
    // Neither evicted nor terminated: no workload pod deleted (the run deletes its client
    // pods at the end), no node down.
    let deleted = timeline
        .iter()
        .filter(|e| matches!(e["event"].as_str(), Some("pod-deleting" | "pod-deleted")))
        .filter(|e| !e["pod"].as_str().unwrap_or("").contains("client-"))
        .count();
    assert_eq!(deleted, 0, "a zonal shift must not delete pods");
    let not_ready = timeline
        .iter()
        .any(|e| e["event"] == "node-ready" && e["ready"] != "True");
    assert!(!not_ready, "a zonal shift must not take nodes down");
}
