//! Virtual-time tests of a node lifecycle leader change: the controller-manager dies together
//! with a zone, a fresh controller takes over a lease duration + retry period later, as a
//! newly elected kube-controller-manager does. Start at [`takeover`].

use std::time::Duration;

use super::taints::{NO_EXECUTE, NO_SCHEDULE, TAINT_UNREACHABLE};
use super::tests::{Sim, node_name};
use super::{NodeLifecycleConfig, NodeLifecycleController, TaintEvictionController};
use crate::fake::T0;
use crate::{Controller, Moment, pod_is_ready};

/// Upstream `--leader-elect-lease-duration` + `--leader-elect-retry-period`.
const FAILOVER_MS: Duration = Duration::from_millis(15_000 + 2_000);
const GRACE_MS: Duration = Duration::from_millis(50_000);
const PERIOD_MS: Duration = Duration::from_millis(5_000);

/// The leader's controllers stop at `fail`; fresh ones start (informers synced) at
/// `fail + FAILOVER_MS`. Returns the takeover time.
fn takeover(s: &mut Sim, fail: Moment) -> Moment {
    s.run_until(fail);
    s.h.controllers.clear();
    let take = fail + FAILOVER_MS;
    s.run_until(take);
    let nlc = NodeLifecycleController::new(NodeLifecycleConfig::default()).expect("config");
    s.h.controllers = vec![
        Box::new(nlc) as Box<dyn Controller>,
        Box::new(TaintEvictionController::new()),
    ];
    s.h.start();
    take
}

#[test]
fn a_zone_lost_with_the_leader_is_detected_at_takeover_plus_grace_and_survivors_do_not_flap() {
    let mut s = Sim::new(&[("a", 3), ("b", 3), ("c", 3)], 1);
    // c-02 died long before: the old leader has marked and tainted it.
    s.run_until(T0 + Duration::from_millis(10_000));
    s.kill("c-02");
    s.run_until(T0 + Duration::from_millis(100_000));
    let c02_unknown = s.unknown_at("c-02").expect("old leader detected c-02");
    let c02_tainted = s.taint_added("c-02", TAINT_UNREACHABLE, NO_EXECUTE);
    assert_eq!(c02_tainted.len(), 1);

    // Zone a powers off with the leader in it.
    let fail = T0 + Duration::from_millis(120_000);
    s.run_until(fail - Duration::from_millis(1));
    let last_renew: Vec<Moment> = (0..3).map(|i| s.kill(&node_name("a", i))).collect();
    let take = takeover(&mut s, fail);
    s.run_until(take + Duration::from_millis(200_000));

    for (i, renew) in last_renew.iter().enumerate() {
        let n = node_name("a", i);
        let d = s.unknown_at(&n).expect("detected");
        // Not earlier than takeover + grace (the new leader first observes every node at
        // takeover), though the node was silent since `renew`.
        assert!(
            d >= take + GRACE_MS,
            "{n} detected at {} s after takeover",
            (d.as_millis() - take.as_millis()) / 1000
        );
        assert!(
            d <= take + GRACE_MS + PERIOD_MS,
            "{n}: {}",
            (d.as_millis() - take.as_millis()) / 1000
        );
        assert!(d > *renew + GRACE_MS + FAILOVER_MS - PERIOD_MS);
        assert_eq!(s.taint_added(&n, TAINT_UNREACHABLE, NO_SCHEDULE), vec![d]);
    }
    // The surviving zones' nodes never flap: no Unknown, no taint, pods stay Ready.
    for zone in ["b", "c"] {
        for i in 0..3 {
            let n = node_name(zone, i);
            if n == "c-02" {
                continue;
            }
            assert_eq!(s.unknown_at(&n), None, "{n} flapped");
            assert!(s.taint_added(&n, TAINT_UNREACHABLE, NO_SCHEDULE).is_empty());
            assert!(pod_is_ready(&s.pod(&format!("{n}-p0"))), "{n}-p0");
        }
    }
    // The node the old leader had marked stays Unknown (no second write), but, as upstream's
    // controller does for every node it sees first (`markNodeAsReachable` on "added"), its
    // NoExecute taint is removed at takeover and re-added at the next tainting tick: the
    // pods' toleration countdown restarts from the new taint.
    assert_eq!(s.unknown_at("c-02"), Some(c02_unknown));
    assert_eq!(
        s.taint_removed("c-02", TAINT_UNREACHABLE, NO_EXECUTE),
        Some(take)
    );
    let retainted = s.taint_added("c-02", TAINT_UNREACHABLE, NO_EXECUTE);
    assert_eq!(
        retainted,
        vec![c02_tainted[0], take + Duration::from_millis(100)]
    );
    s.run_until(take + Duration::from_millis(500_000));
    assert_eq!(
        s.deleted_at("c-02-p0"),
        Some(take + Duration::from_millis(100) + Duration::from_millis(300_000))
    );
}
