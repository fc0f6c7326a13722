//! Zonal shift in the simulator: `examples/zone-power-off.yaml` under upstream timers, with
//! and without a shift away from the failed zone 10 s after the fault, and with autoshift.

mod common;

use sim::Outcome;

/// `zone-power-off.yaml` under upstream timers (detection alone takes 40 s or more), run for
/// 90 s, with `extra` appended.
fn run(extra: &str) -> Outcome {
    let text = std::fs::read_to_string(common::examples().join("zone-power-off.yaml"))
        .expect("scenario file")
        .replace("profile: fast", "profile: upstream")
        .replace(
            "run: {until: capacity-restored, cap: 4m}",
            "run: {duration: 90s}",
        );
    assert!(text.contains("profile: upstream") && text.contains("duration: 90s"));
    let (s, m) = common::load_text(&format!("{text}{extra}"));
    let (example, _) = common::load("zone-power-off.yaml");
    assert_eq!(
        (&s.workloads, &s.faults),
        (&example.workloads, &example.faults)
    );
    sim::run(&s, &m, 1).expect("simulated run")
}

/// Seconds from the fault to the end of the error window the endpoints decide: the report's
/// window without the stale-conntrack hits (a new connection that reuses the 5-tuple of an
/// earlier SYN to a dead endpoint still goes there, shift or not: docs/results.md).
fn window_end_after_fault(out: &Outcome) -> f64 {
    let r = &out.report;
    let fault = r.faults.first().expect("a fault").at_s;
    let start = r.error_window.as_ref().expect("requests failed").start_s;
    start + r.error_window_without_stale_conntrack_s - fault
}

#[test]
fn a_shift_ten_seconds_after_the_fault_ends_the_error_window_then() {
    let base = run("");
    let shifted = run("zonalShifts:\n  - {at: +10s, awayFrom: a, expiresIn: 30m}\n");
    let base_end = window_end_after_fault(&base);
    let end = window_end_after_fault(&shifted);
    eprintln!(
        "baseline: window ends {base_end:.3} s after the fault, {} failed ({} stale conntrack); shift at +10 s: {end:.3} s, {} failed ({} stale conntrack)",
        base.report.requests.failed,
        base.report.requests.stale_conntrack,
        shifted.report.requests.failed,
        shifted.report.requests.stale_conntrack
    );
    // Upstream: node-monitor-grace-period (40 s) before the endpoints go.
    assert!(
        base_end > 40.0,
        "baseline window ends {base_end} s after the fault"
    );
    // Shift at +10 s: endpoints out at once, then one kube-proxy sync (min-sync-period 1 s).
    assert!(
        (9.0..=12.5).contains(&end),
        "shifted window ends {end} s after the fault"
    );
    assert!(shifted.report.requests.failed * 3 < base.report.requests.failed);
    // No pod was deleted: the shift neither evicts nor terminates (pods stay bound).
    let deleted = shifted.events.iter().any(|e| {
        matches!(
            &e.kind,
            lab::EventKind::PodDeleting { .. } | lab::EventKind::PodDeleted { .. }
        )
    });
    assert!(!deleted, "a zonal shift must not delete pods");
}

#[test]
fn autoshift_fires_on_the_failed_zone_after_threshold_and_delay() {
    let base = run("");
    let auto = run("zonalAutoshift: {threshold: 10, period: 10s, delay: 5s, expiresIn: 30m}\n");
    let end = window_end_after_fault(&auto);
    eprintln!(
        "autoshift: window ends {end:.3} s after the fault, {} failed (baseline {})",
        auto.report.requests.failed, base.report.requests.failed
    );
    // The breach needs some seconds of failures in the 10 s window, then 5 s of delay.
    assert!(
        end > 5.0 && end < 20.0,
        "autoshift window ends {end} s after the fault"
    );
    assert!(auto.report.requests.failed * 2 < base.report.requests.failed);
}
