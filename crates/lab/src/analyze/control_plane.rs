//! The control plane through a run, from the timeline: the etcd leader before and after the
//! first fault, the leader-election Lease failovers, and the API probe's longest gap and lost
//! writes. Start at [`compute`].

use std::collections::BTreeSet;

use super::{Meta, PrimaryFault, round3};
use crate::report::{
    API_UP_MAX_GAP_S, CONTROLLER_MANAGER_LEASE, ControlPlane, ControlPlaneSetup, SCHEDULER_LEASE,
    Window,
};
use crate::timeline::{Event, EventKind};

/// The zone an identity names: the zone itself (`--leader-elect-identity a`) or
/// `<zone>_<suffix>` (upstream's `hostname_uuid` shape with the zone as host name).
pub fn holder_zone<'a>(holder: &str, zones: &'a [String]) -> Option<&'a str> {
    zones
        .iter()
        .find(|z| {
            holder == z.as_str()
                || holder
                    .strip_prefix(z.as_str())
                    .is_some_and(|r| r.starts_with('_'))
        })
        .map(String::as_str)
}

/// The control-plane section; `events` sorted by time. `None` without a setup (reports of
/// runs before the control plane was recorded).
pub fn compute(
    meta: &Meta,
    setup: Option<&ControlPlaneSetup>,
    events: &[Event],
    fault: Option<&PrimaryFault>,
) -> Option<ControlPlane> {
    let setup = setup?;
    let rel = |ms: f64| round3((ms - meta.t0_ms) / 1e3);
    let failed_zones: BTreeSet<&str> = fault
        .map(|f| {
            f.nodes
                .iter()
                .filter_map(|n| meta.node_zones.get(n).map(String::as_str))
                .collect()
        })
        .unwrap_or_default();
    let zones = &setup.member_zones;
    let mut cp = ControlPlane {
        store: setup.store.clone(),
        members: setup.members,
        member_zones: zones.clone(),
        ..ControlPlane::default()
    };
    let leaders: Vec<(f64, Option<&str>)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::EtcdLeader { zone } => Some((e.at, zone.as_deref())),
            _ => None,
        })
        .collect();
    cp.etcd_leader = leaders
        .iter()
        .map(|(at, z)| (rel(*at), z.map(str::to_string)))
        .collect();
    let outside = |z: &str| !failed_zones.contains(z);
    if let Some(f) = fault {
        let before = leaders
            .iter()
            .rev()
            .find(|(at, z)| *at <= f.at_ms && z.is_some())
            .and_then(|(_, z)| *z);
        let next = leaders
            .iter()
            .find(|(at, z)| *at > f.at_ms && z.is_some_and(outside));
        cp.etcd_leader_zone_before = before.map(str::to_string);
        cp.etcd_leader_zone_after = match (before, next) {
            (_, Some((_, z))) => z.map(str::to_string),
            (Some(b), None) if outside(b) => Some(b.to_string()),
            _ => None,
        };
        if before.is_some_and(|b| !outside(b)) {
            cp.etcd_leader_elected_s = next.map(|(at, _)| round3((at - f.at_ms) / 1e3));
        }
    }
    let lease = |name: &str| -> Failover { failover(events, name, fault, zones, &outside) };
    let cm = lease(CONTROLLER_MANAGER_LEASE);
    let sch = lease(SCHEDULER_LEASE);
    cp.controller_manager = cm
        .series
        .iter()
        .map(|(at, h)| (rel(*at), h.clone()))
        .collect();
    cp.scheduler = sch
        .series
        .iter()
        .map(|(at, h)| (rel(*at), h.clone()))
        .collect();
    (
        cp.controller_manager_holder_before,
        cp.controller_manager_holder_after,
    ) = (cm.before, cm.after);
    (cp.scheduler_holder_before, cp.scheduler_holder_after) = (sch.before, sch.after);
    cp.controller_manager_failover_s = cm.took_s;
    cp.scheduler_failover_s = sch.took_s;
    probe(meta, events, &mut cp);
    Some(cp)
}

/// One Lease's story around the fault.
#[derive(Debug, Default)]
struct Failover {
    series: Vec<(f64, String)>,
    before: Option<String>,
    after: Option<String>,
    took_s: Option<f64>,
}

fn failover(
    events: &[Event],
    lease: &str,
    fault: Option<&PrimaryFault>,
    zones: &[String],
    outside: &dyn Fn(&str) -> bool,
) -> Failover {
    // (observed, observed, holder): a takeover counts from when the runner first saw it. The
    // Lease's acquireTime is stamped by the candidate before its write commits, so while etcd
    // has no leader it can precede the takeover by seconds.
    let changes: Vec<(f64, f64, &str)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LeaseHolder {
                lease: l, holder, ..
            } if l == lease && !holder.is_empty() => Some((e.at, e.at, holder.as_str())),
            _ => None,
        })
        .collect();
    let mut out = Failover {
        series: changes
            .iter()
            .map(|(_, acq, h)| (*acq, h.to_string()))
            .collect(),
        ..Failover::default()
    };
    let Some(f) = fault else {
        return out;
    };
    let zone_ok = |h: &str| holder_zone(h, zones).is_none_or(outside);
    let before = changes
        .iter()
        .rev()
        .find(|(_, acq, _)| *acq <= f.at_ms)
        .map(|(_, _, h)| *h);
    // The first new holder outside the failed zones: a takeover from a dead zone, or a holder
    // that lost its Lease anyway (a renew deadline shorter than etcd's election).
    let next = changes
        .iter()
        .find(|(_, acq, h)| *acq > f.at_ms && zone_ok(h) && Some(*h) != before);
    out.before = before.map(str::to_string);
    out.after = match (before, next) {
        (_, Some((_, _, h))) => Some(h.to_string()),
        (Some(b), None) if zone_ok(b) => Some(b.to_string()),
        _ => None,
    };
    out.took_s = next.map(|(_, acq, _)| round3((acq - f.at_ms) / 1e3));
    out
}

/// The probe's longest gap between acknowledged writes within the run (its start and end
/// count as edges) and the acknowledged writes missing from the read-back.
fn probe(meta: &Meta, events: &[Event], cp: &mut ControlPlane) {
    let writes: Vec<(f64, u64, bool)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ProbeWrite { seq, ok, .. } => Some((e.at, *seq, *ok)),
            _ => None,
        })
        .collect();
    if writes.is_empty() {
        return;
    }
    cp.writes_attempted = writes.len() as u64;
    let acked: BTreeSet<u64> = writes.iter().filter(|w| w.2).map(|w| w.1).collect();
    cp.writes_acknowledged = acked.len() as u64;
    let found = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::ProbeReadBack { found } => Some(found.iter().copied().collect::<BTreeSet<_>>()),
        _ => None,
    });
    cp.writes_lost = found.map(|f| acked.difference(&f).count() as u64);
    let mut acks: Vec<f64> = writes
        .iter()
        .filter(|w| w.2 && w.0 >= meta.t0_ms && w.0 <= meta.end_ms)
        .map(|w| w.0)
        .collect();
    acks.sort_by(f64::total_cmp);
    let mut prev = meta.t0_ms;
    let mut longest = (0.0, meta.t0_ms, meta.t0_ms);
    for at in acks.into_iter().chain(std::iter::once(meta.end_ms)) {
        if at - prev > longest.0 {
            longest = (at - prev, prev, at);
        }
        prev = at;
    }
    let gap_s = round3(longest.0 / 1e3);
    cp.api_unavailable_s = Some(gap_s);
    cp.api_unavailable = Some(Window {
        start_s: round3((longest.1 - meta.t0_ms) / 1e3),
        end_s: round3((longest.2 - meta.t0_ms) / 1e3),
    });
    cp.api_stayed_up = Some(gap_s <= API_UP_MAX_GAP_S);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::primary_fault;

    const T0: f64 = 2_000_000.0;

    fn at(s: f64) -> f64 {
        T0 + s * 1e3
    }

    fn ev(s: f64, kind: EventKind) -> Event {
        Event { at: at(s), kind }
    }

    fn setup() -> ControlPlaneSetup {
        ControlPlaneSetup {
            store: "etcd".into(),
            members: 3,
            member_zones: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    fn leader(s: f64, z: Option<&str>) -> Event {
        ev(
            s,
            EventKind::EtcdLeader {
                zone: z.map(str::to_string),
            },
        )
    }

    fn holder(s: f64, lease: &str, h: &str, acquired_s: f64) -> Event {
        ev(
            s,
            EventKind::LeaseHolder {
                lease: lease.into(),
                holder: h.into(),
                acquired_ms: Some(at(acquired_s)),
            },
        )
    }

    fn write(s: f64, seq: u64, ok: bool) -> Event {
        ev(
            s,
            EventKind::ProbeWrite {
                seq,
                sent_ms: at(s) - 5.0,
                ok,
            },
        )
    }

    /// Zone a (etcd leader, both Lease holders) loses power at 10 s; etcd elects c at 11.2 s;
    /// the controller-manager moves to b (acquireTime 11.5 s, seen 12 s), the scheduler to c
    /// (seen 12.5 s); the probe writes every 0.1 s except from 10.0 to 12.5 s; one
    /// acknowledged write (seq 3) is missing from the read-back.
    fn outage() -> Vec<Event> {
        let mut ev_ = vec![
            leader(1.0, Some("a")),
            leader(10.6, None),
            leader(11.2, Some("c")),
            holder(1.5, CONTROLLER_MANAGER_LEASE, "a", 1.4),
            holder(1.6, SCHEDULER_LEASE, "a_1234", 1.45),
            holder(12.0, CONTROLLER_MANAGER_LEASE, "b", 11.5),
            holder(12.5, SCHEDULER_LEASE, "c_99", 12.25),
            ev(
                10.0,
                EventKind::Fault {
                    fault: "zone-power-off".into(),
                    target: "etcd-leader".into(),
                    nodes: vec!["a-1".into(), "a-2".into()],
                },
            ),
        ];
        let mut seq = 0;
        for i in 0..200 {
            let t = f64::from(i) * 0.1;
            if t > 10.0 && t < 12.5 {
                ev_.push(write(t, seq, false));
            } else {
                ev_.push(write(t, seq, true));
            }
            seq += 1;
        }
        let found: Vec<u64> = (0..seq).filter(|s| *s != 3).collect();
        ev_.push(ev(21.0, EventKind::ProbeReadBack { found }));
        ev_.sort_by(|a, b| a.at.total_cmp(&b.at));
        ev_
    }

    fn run(events: &[Event]) -> ControlPlane {
        let meta = crate::fixtures::meta("ha", T0, 20.0);
        let fault = primary_fault(events);
        compute(&meta, Some(&setup()), events, fault.as_ref()).expect("a setup gives a section")
    }

    #[test]
    fn leader_zone_election_and_failovers_of_an_outage() {
        let cp = run(&outage());
        assert_eq!(cp.store, "etcd");
        assert_eq!(cp.etcd_leader_zone_before.as_deref(), Some("a"));
        assert_eq!(cp.etcd_leader_zone_after.as_deref(), Some("c"));
        assert_eq!(cp.etcd_leader_elected_s, Some(1.2));
        assert_eq!(cp.controller_manager_holder_before.as_deref(), Some("a"));
        assert_eq!(cp.controller_manager_holder_after.as_deref(), Some("b"));
        // Seen at 12.0 s (its acquireTime, 11.5 s, was stamped before the write committed).
        assert_eq!(cp.controller_manager_failover_s, Some(2.0));
        assert_eq!(cp.scheduler_holder_after.as_deref(), Some("c_99"));
        assert_eq!(cp.scheduler_failover_s, Some(2.5));
        assert_eq!(cp.etcd_leader.len(), 3);
        assert_eq!(cp.controller_manager[1], (12.0, "b".to_string()));
    }

    #[test]
    fn probe_gap_and_lost_writes_of_an_outage() {
        let cp = run(&outage());
        // Acknowledged at 10.0 and next at 12.5: 2.5 s.
        assert_eq!(cp.api_unavailable_s, Some(2.5));
        let w = cp.api_unavailable.expect("window");
        assert_eq!((w.start_s, w.end_s), (10.0, 12.5));
        assert_eq!(cp.api_stayed_up, Some(false));
        assert_eq!(cp.writes_attempted, 200);
        assert_eq!(cp.writes_acknowledged, 200 - 24);
        assert_eq!(cp.writes_lost, Some(1));
        let words = crate::summary::api_sentence(&cp);
        assert!(words.contains("unavailable for 2.5 s"), "{words}");
        assert!(
            words.contains("from t=10.0s to t=12.5s") && words.contains("1 LOST"),
            "{words}"
        );
    }

    #[test]
    fn a_leader_outside_the_failed_zone_does_not_move() {
        let mut events: Vec<Event> = outage()
            .into_iter()
            .filter(|e| {
                !matches!(
                    e.kind,
                    EventKind::EtcdLeader { .. } | EventKind::LeaseHolder { .. }
                )
            })
            .collect();
        events.push(leader(1.0, Some("b")));
        events.push(holder(1.0, SCHEDULER_LEASE, "c", 0.9));
        events.sort_by(|a, b| a.at.total_cmp(&b.at));
        let cp = run(&events);
        assert_eq!(cp.etcd_leader_zone_before.as_deref(), Some("b"));
        assert_eq!(cp.etcd_leader_zone_after.as_deref(), Some("b"));
        assert_eq!(cp.etcd_leader_elected_s, None);
        assert_eq!(cp.scheduler_holder_after.as_deref(), Some("c"));
        assert_eq!(cp.scheduler_failover_s, None);
        assert_eq!(cp.controller_manager_holder_before, None);
    }

    #[test]
    fn a_holder_outside_the_failed_zone_that_loses_its_lease_anyway_is_a_failover() {
        let mut events = outage();
        events.retain(|e| !matches!(e.kind, EventKind::LeaseHolder { .. }));
        events.push(holder(1.0, CONTROLLER_MANAGER_LEASE, "b", 0.9));
        // b missed its renew deadline while etcd elected a new leader; c took over.
        events.push(holder(13.5, CONTROLLER_MANAGER_LEASE, "c", 13.0));
        events.sort_by(|a, b| a.at.total_cmp(&b.at));
        let cp = run(&events);
        assert_eq!(cp.controller_manager_holder_before.as_deref(), Some("b"));
        assert_eq!(cp.controller_manager_holder_after.as_deref(), Some("c"));
        assert_eq!(cp.controller_manager_failover_s, Some(3.5));
    }

    #[test]
    fn a_steady_probe_stays_up_and_without_read_back_loses_nothing_known() {
        let events: Vec<Event> = (0..200)
            .map(|i| write(f64::from(i) * 0.1, i as u64, true))
            .collect();
        let cp = run(&events);
        assert_eq!(cp.api_stayed_up, Some(true));
        // The last write at 19.9 s, the run ends at 20 s: the longest gap is 0.1 s.
        assert_eq!(cp.api_unavailable_s, Some(0.1));
        assert_eq!(cp.writes_lost, None);
        assert_eq!(cp.etcd_leader_zone_before, None);
        assert!(crate::summary::api_sentence(&cp).starts_with("The API stayed up"));
    }

    #[test]
    fn a_probe_that_stops_counts_until_the_end() {
        let events: Vec<Event> = (0..50)
            .map(|i| write(f64::from(i) * 0.1, i as u64, true))
            .collect();
        let cp = run(&events);
        assert_eq!(cp.api_unavailable_s, Some(15.1));
        assert_eq!(cp.api_unavailable.map(|w| w.end_s), Some(20.0));
    }

    #[test]
    fn without_setup_there_is_no_section_and_identities_map_to_zones() {
        let meta = crate::fixtures::meta("ha", T0, 20.0);
        assert!(compute(&meta, None, &outage(), None).is_none());
        let zones = setup().member_zones;
        assert_eq!(holder_zone("b", &zones), Some("b"));
        assert_eq!(holder_zone("b_0f3a", &zones), Some("b"));
        assert_eq!(holder_zone("bb", &zones), None);
        assert_eq!(holder_zone("host-1", &zones), None);
    }
}
