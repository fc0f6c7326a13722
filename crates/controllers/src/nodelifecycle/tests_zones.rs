//! Zone disruption rules end to end: which dead nodes get the NoExecute taint, and how far
//! apart, for each zone state (upstream `handleDisruption` / `setLimiterInZone`).

use std::time::Duration;

use super::taints::{NO_EXECUTE, TAINT_UNREACHABLE};
use super::tests::{Sim, node_name};
use crate::Moment;
use crate::fake::T0;

struct Case {
    name: &'static str,
    zones: &'static [(&'static str, usize)],
    /// How many nodes of zone "a" die (at the same instant).
    kill: usize,
    /// NoExecute taint times, relative to detection, of the dead nodes (sorted).
    taints: &'static [i64],
}

const CASES: &[Case] = &[
    Case {
        name: "one node down",
        zones: &[("a", 3), ("b", 3), ("c", 3)],
        kill: 1,
        taints: &[5_100],
    },
    Case {
        name: "one zone fully down, others healthy: 0.1/s",
        zones: &[("a", 4), ("b", 4), ("c", 4)],
        kill: 4,
        taints: &[5_100, 15_100, 25_100, 35_100],
    },
    Case {
        name: "partial disruption, small cluster: stop",
        zones: &[("a", 5), ("b", 5), ("c", 5)],
        kill: 3,
        taints: &[],
    },
    Case {
        name: "partial disruption of a zone <= 50 in a cluster > 50: stop (zone size counts)",
        zones: &[("a", 20), ("b", 20), ("c", 20)],
        kill: 12,
        taints: &[],
    },
    Case {
        name: "partial disruption of a zone > 50: 0.01/s",
        zones: &[("a", 60), ("b", 10)],
        kill: 40,
        taints: &[5_100, 105_100, 205_100],
    },
];

/// Kill at T0 + 30 s, detection at T0 + 75 s; watch until detection + 265 s.
fn run(case: &Case) -> (Sim, Moment, Vec<i64>) {
    let mut s = Sim::new(case.zones, 1);
    s.run_until(T0 + Duration::from_millis(30_000));
    let dead: Vec<String> = (0..case.kill).map(|i| node_name("a", i)).collect();
    for n in &dead {
        s.kill(n);
    }
    s.run_until(T0 + Duration::from_millis(340_000));
    let detected = dead
        .iter()
        .filter_map(|n| s.unknown_at(n))
        .min()
        .expect("detected");
    let mut taints: Vec<i64> = dead
        .iter()
        .flat_map(|n| s.taint_added(n, TAINT_UNREACHABLE, NO_EXECUTE))
        .map(|t| t.as_millis() - detected.as_millis())
        .collect();
    taints.sort();
    (s, detected, taints)
}

#[test]
fn zone_rule_table() {
    for case in CASES {
        let (s, detected, taints) = run(case);
        assert_eq!(
            detected,
            T0 + Duration::from_millis(75_000),
            "{}",
            case.name
        );
        assert_eq!(taints, case.taints, "{}", case.name);
        // Every dead node is detected and its pods marked not ready in the same pass.
        for i in 0..case.kill {
            let n = node_name("a", i);
            assert_eq!(s.unknown_at(&n), Some(detected), "{}: {n}", case.name);
            assert_eq!(
                s.not_ready_at(&format!("{n}-p0")),
                Some(detected),
                "{}: {n}",
                case.name
            );
        }
    }
}

#[test]
fn all_zones_down_stops_evictions_and_removes_taints_until_one_recovers() {
    let mut s = Sim::new(&[("a", 3), ("b", 3)], 1);
    s.run_until(T0 + Duration::from_millis(30_000));
    for i in 0..3 {
        s.kill(&node_name("a", i));
    }
    s.run_until(T0 + Duration::from_millis(150_000));
    // Zone a is fully down while b is healthy: tainted at the normal rate.
    let first: Vec<Moment> = (0..3)
        .flat_map(|i| s.taint_added(&node_name("a", i), TAINT_UNREACHABLE, NO_EXECUTE))
        .collect();
    assert_eq!(
        first,
        [
            T0 + Duration::from_millis(80_100),
            T0 + Duration::from_millis(90_100),
            T0 + Duration::from_millis(100_100)
        ]
    );
    for i in 0..3 {
        s.kill(&node_name("b", i));
    }
    s.run_until(T0 + Duration::from_millis(900_000));
    let all_down = s.unknown_at(&node_name("b", 0)).expect("b detected");
    for i in 0..3 {
        let a = node_name("a", i);
        assert_eq!(
            s.taint_removed(&a, TAINT_UNREACHABLE, NO_EXECUTE),
            Some(all_down),
            "{a}"
        );
        assert!(
            s.taint_added(&node_name("b", i), TAINT_UNREACHABLE, NO_EXECUTE)
                .is_empty()
        );
    }
    assert_eq!(s.deletions(), 0, "no evictions in master disruption mode");

    // Zone b comes back: the pass at T0 + 905 s leaves master disruption; zone a's limiter
    // restarts empty, so its first taint comes one token (10 s) later.
    for i in 0..3 {
        s.revive(&node_name("b", i), "True");
    }
    s.run_until(T0 + Duration::from_millis(1_000_000));
    let again: Vec<Moment> = (0..3)
        .filter_map(|i| {
            s.taint_added(&node_name("a", i), TAINT_UNREACHABLE, NO_EXECUTE)
                .get(1)
                .copied()
        })
        .collect();
    assert_eq!(
        again,
        [
            T0 + Duration::from_millis(915_000),
            T0 + Duration::from_millis(925_000),
            T0 + Duration::from_millis(935_000)
        ]
    );
    assert!(
        s.taint_added(&node_name("b", 0), TAINT_UNREACHABLE, NO_EXECUTE)
            .is_empty()
    );
}
