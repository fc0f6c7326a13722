//! Integration test (root, network namespaces): `zonelab run` on scenario files, end to end —
//! each fault type must leave its signature in `report.json`. A zone power-off: timeouts,
//! detection within the configured timers, a failure share matching the dead zone's share of
//! endpoints, and no failures after the proxies converged (other than stale-conntrack hits,
//! which the report attributes); a partition: timeouts while the zone's processes keep
//! running, and its endpoints back after the heal; a graceful stop: next to no error window.
//! Reported as ignored without root or the tools (see build.rs); under CI they fail instead. Runs one lab at a time.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::scenario::{BIN, Run, phase, run};
use serde_json::Value;

/// Only timeouts among the failures: silent drops, never resets or refusals.
fn only_timeouts(r: &Value) {
    for (outcome, n) in r["requests"]["by_outcome"].as_object().expect("by_outcome") {
        assert!(
            outcome == "ok" || outcome == "timeout",
            "{n} requests ended {outcome}: {}",
            r["requests"]
        );
    }
    assert!(r["requests"]["by_outcome"]["timeout"].as_u64().unwrap_or(0) > 0);
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn zone_power_off_matches_the_timers_and_the_dead_share() {
    let Run { report: r, .. } = run(
        "zsp",
        16461,
        "name: zone-power-off-test
topology: {zones: [a, b, c], nodesPerZone: 1}
profile: fast
flags: {default-unreachable-toleration-seconds: 10, default-not-ready-toleration-seconds: 10}
workloads: [{path: WEB_YAML}]
clients: [{name: web, target: web, zones: [b, c], rate: 50, timeout: 1s}]
faults: [{at: 10s, type: zone-power-off, target: a}]
run: {until: capacity-restored, cap: 150s}
",
    );
    only_timeouts(&r);
    assert_eq!(r["ended_by"], "capacity-restored", "{r}");
    // Detection: the last lease renewal precedes the fault by up to one renew interval, and
    // the controller notices at its next monitor pass after the grace period.
    let t = &r["timers"];
    let grace = t["node_monitor_grace_period_s"].as_f64().unwrap();
    let renew = t["lease_renew_interval_s"].as_f64().unwrap();
    let monitor = t["node_monitor_period_s"].as_f64().unwrap();
    let detection = phase(&r, "nodes_not_ready_s") - phase(&r, "fault_s");
    assert!(
        detection >= grace - renew && detection <= grace + monitor,
        "detection {detection} s outside [{}, {}]",
        grace - renew,
        grace + monitor
    );
    // The phases come in order.
    let order = [
        "fault_s",
        "nodes_not_ready_s",
        "endpoints_removed_s",
        "proxies_converged_s",
        "pods_evicted_s",
        "replacements_ready_s",
        "capacity_restored_s",
    ];
    for w in order.windows(2) {
        assert!(
            phase(&r, w[0]) <= phase(&r, w[1]),
            "{} after {}",
            w[0],
            w[1]
        );
    }
    // Until the proxies converged, new connections failed about as often as an endpoint was
    // on the dead zone (50 requests/s per client: some 450 requests in the window, so the
    // binomial spread is about 2 points); afterwards only stale-conntrack hits may fail.
    let dead = r["dead_endpoint_share"].as_f64().unwrap();
    let share = r["window_failure_share"].as_f64().unwrap();
    assert!((dead - 1.0 / 3.0).abs() < 0.01, "dead share {dead}");
    assert!(
        (share - dead).abs() <= 0.10,
        "failure share {share} vs {dead}"
    );
    assert_eq!(
        r["failed_after_converged"], r["failed_after_converged_stale_conntrack"],
        "new connections failed after the proxies converged: {r}"
    );
    // The report lists the Kubernetes Events of the outage.
    let events = r["events"].as_array().expect("events");
    let has = |reason: &str, object_prefix: &str| {
        events.iter().any(|e| {
            e["reason"] == reason
                && e["object"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(object_prefix)
        })
    };
    assert!(has("NodeNotReady", "node/"), "{events:?}");
    assert!(has("TaintManagerEviction", "pod/web-"), "{events:?}");
    assert!(has("Scheduled", "pod/web-"), "{events:?}");
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn zone_partition_times_out_while_pods_run_and_heals() {
    let Run {
        report: r,
        requests,
        ..
    } = run(
        "zsq",
        16462,
        "name: zone-partition-test
topology: {zones: [a, b, c], nodesPerZone: 1}
profile: fast
workloads: [{path: WEB_YAML}]
clients: [{name: web, target: web, rate: 20, timeout: 1s}]
faults:
  - {at: 10s, type: zone-partition, target: a}
  - {at: 25s, type: recover, target: a}
run: {duration: 45s}
",
    );
    only_timeouts(&r);
    let t0 = r["started_at_ms"].as_f64().unwrap();
    let at = |q: &Value| (q["start"].as_f64().unwrap() - t0) / 1e3;
    // Zone a's client kept running through the partition and reached its own zone's pods.
    let inside_a: Vec<&Value> = requests
        .iter()
        .filter(|q| q["client_zone"] == "a" && (12.0..24.0).contains(&at(q)))
        .collect();
    assert!(inside_a.len() > 100, "zone a's client stopped");
    assert!(
        inside_a
            .iter()
            .any(|q| q["outcome"] == "ok" && q["zone"] == "a")
    );
    // Zone a's endpoints left, then came back after the heal, and answered again.
    let a = r["series"]["ready_endpoints"]["a"]
        .as_array()
        .expect("series");
    let count = |p: &Value| p[1].as_u64().unwrap();
    let time = |p: &Value| p[0].as_f64().unwrap();
    assert!(
        a.iter()
            .any(|p| time(p) > 10.0 && time(p) < 25.0 && count(p) == 0)
    );
    assert!(a.iter().any(|p| time(p) > 25.0 && count(p) == 2), "{a:?}");
    assert!(
        requests
            .iter()
            .any(|q| at(q) > 30.0 && q["client_zone"] != "a" && q["zone"] == "a"),
        "zone a's pods never answered the other zones again"
    );
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn graceful_stop_has_next_to_no_error_window_and_recovers() {
    let Run {
        report: r,
        timeline,
        ..
    } = run(
        "zsg",
        16463,
        "name: graceful-stop-test
topology: {zones: [a, b, c], nodesPerZone: 1}
profile: fast
workloads: [{path: WEB_YAML}]
clients: [{name: web, target: web, zones: [b, c], rate: 20, timeout: 1s}]
faults:
  - {at: 10s, type: graceful-stop, target: a}
  - {at: 20s, type: recover, target: a}
run: {duration: 30s}
",
    );
    assert!(r["phases"]["capacity_restored_s"].as_f64().is_some(), "{r}");
    // The stopped agent was started again by `recover`: its node reports Ready once more.
    let t0 = r["started_at_ms"].as_f64().unwrap();
    let ready_again = timeline.iter().any(|e| {
        e["event"] == "node-ready"
            && e["node"] == "zsg-a-1"
            && e["ready"] == "True"
            && (e["at"].as_f64().unwrap() - t0) / 1e3 > 20.0
    });
    assert!(ready_again, "zone a's node never came back after recover");
    // Endpoints leave before the pods die: nothing, or a few stray requests, fail. (One run in
    // about ten had 3 of 1,200 fail, 2 `error` and 1 `refused`, under a full parallel test
    // build; a real error window of dead endpoints costs hundreds at this rate.)
    assert!(
        r["requests"]["failed"].as_u64().unwrap() <= 5,
        "{}",
        r["requests"]
    );
    assert!(r["error_window_s"].as_f64().unwrap() <= 1.0, "{r}");
    assert!(phase(&r, "endpoints_removed_s") <= phase(&r, "fault_s") + 2.0);
}

#[test]
fn a_bad_scenario_fails_before_anything_is_built() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "name: bad\nfaults:\n  - {at: 10s, type: zone-power-off, target: z}\nrun: {duration: 30s}\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    let stderr = run_bad(&file, &out, &state);
    assert!(
        stderr.contains("bad.yaml:3:") && stderr.contains("faults[0].target"),
        "{stderr}"
    );
    assert!(!state.exists() && !out.exists(), "something was built");
    // An unknown flag override, too.
    std::fs::write(
        &file,
        "name: bad\nflags:\n  node-monitor-grace: 5s\nrun: {duration: 30s}\n",
    )
    .unwrap();
    let stderr = run_bad(&file, &out, &state);
    assert!(
        stderr.contains("bad.yaml:3:") && stderr.contains("flags.node-monitor-grace: unknown flag"),
        "{stderr}"
    );
    assert!(!state.exists() && !out.exists(), "something was built");
}

/// Runs a scenario that must be rejected; returns its stderr.
fn run_bad(file: &Path, out: &Path, state: &Path) -> String {
    let res = Command::new(BIN)
        .arg("run")
        .arg(file)
        .arg("--out")
        .arg(out)
        .args(["--prefix", "zsb", "--state-dir"])
        .arg(state)
        .output()
        .expect("zonelab run");
    assert!(!res.status.success());
    String::from_utf8_lossy(&res.stderr).into_owned()
}
