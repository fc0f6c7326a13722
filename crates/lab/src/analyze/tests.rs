//! The analysis on a synthetic zone outage whose answers are known by construction.

use std::collections::BTreeMap;

use super::*;
use crate::timeline::{ConnKind, Event, EventKind, Outcome, Request};

const T0: f64 = 1_000_000.0;
use crate::fixtures::NODES;

fn at(s: f64) -> f64 {
    T0 + s * 1e3
}

fn meta(end_s: f64) -> Meta {
    crate::fixtures::meta("outage", T0, end_s)
}

fn ip(node: &str) -> String {
    format!(
        "10.0.0.{}",
        NODES.iter().position(|(n, _)| *n == node).unwrap() + 1
    )
}

fn endpoints(nodes: &[&str], extra: &[(&str, &str)]) -> EventKind {
    let mut ready: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in nodes {
        ready.entry(n.to_string()).or_default().push(ip(n));
    }
    for (n, addr) in extra {
        ready
            .entry(n.to_string())
            .or_default()
            .push(addr.to_string());
    }
    EventKind::endpoints_full("default/web", ready)
}

fn sync(node: &str, ips: &[String]) -> EventKind {
    EventKind::ProxySync {
        node: node.into(),
        set: None,
        services: Some(BTreeMap::from([("default/web".to_string(), ips.to_vec())])),
    }
}

fn ev(s: f64, kind: EventKind) -> Event {
    Event { at: at(s), kind }
}

/// Zone a loses power at 10 s; detected at 15.5 s; slices updated at 15.6 s; proxies done by
/// 16.0 s; pods evicted at 45 s; two replacements ready at 50 s, in every proxy by 50.4 s.
fn outage() -> (Vec<Event>, Vec<Request>) {
    let all: Vec<&str> = NODES.iter().map(|(n, _)| *n).collect();
    let all_ips: Vec<String> = all.iter().map(|n| ip(n)).collect();
    let live = ["b-1", "b-2", "c-1", "c-2"];
    let live_ips: Vec<String> = live.iter().map(|n| ip(n)).collect();
    let mut e = vec![ev(0.5, endpoints(&all, &[]))];
    for (i, n) in all.iter().enumerate() {
        e.push(ev(
            0.1,
            EventKind::PodBound {
                pod: format!("web-{i}"),
                node: n.to_string(),
                daemon: false,
            },
        ));
        e.push(ev(0.6, sync(n, &all_ips)));
    }
    e.push(ev(
        10.0,
        EventKind::Fault {
            fault: "zone-power-off".into(),
            target: "a".into(),
            nodes: vec!["a-1".into(), "a-2".into()],
        },
    ));
    e.push(ev(
        15.2,
        EventKind::NodeReady {
            node: "a-1".into(),
            ready: "Unknown".into(),
        },
    ));
    e.push(ev(
        15.5,
        EventKind::NodeReady {
            node: "a-2".into(),
            ready: "Unknown".into(),
        },
    ));
    e.push(ev(15.6, endpoints(&live, &[])));
    for (i, n) in live.iter().enumerate() {
        e.push(ev(15.7 + 0.1 * i as f64, sync(n, &live_ips)));
    }
    e.push(ev(
        45.0,
        EventKind::PodDeleting {
            pod: "web-0".into(),
            node: "a-1".into(),
        },
    ));
    e.push(ev(
        44.0,
        EventKind::PodDeleting {
            pod: "web-1".into(),
            node: "a-2".into(),
        },
    ));
    let extra = [("b-1", "10.0.1.1"), ("c-1", "10.0.1.2")];
    e.push(ev(49.0, endpoints(&live, &extra[..1])));
    e.push(ev(50.0, endpoints(&live, &extra)));
    let mut full = live_ips.clone();
    full.extend(["10.0.1.1".to_string(), "10.0.1.2".to_string()]);
    for (i, n) in live.iter().enumerate() {
        e.push(ev(50.1 + 0.1 * i as f64, sync(n, &full)));
    }
    // Clients in b and c, 10/s each; during [10, 16) every third request fails (a's share).
    let mut reqs = Vec::new();
    for zone in ["b", "c"] {
        for i in 0..600 {
            let s = i as f64 * 0.1;
            let fails = (10.0..16.0).contains(&s) && i % 3 == 0;
            reqs.push(Request {
                client: "clients".into(),
                client_zone: zone.into(),
                client_node: format!("{zone}-1"),
                client_kind: "clusterip".into(),
                service: "default/web".into(),
                start: at(s),
                end: at(s + if fails { 1.0 } else { 0.002 }),
                outcome: if fails { Outcome::Timeout } else { Outcome::Ok },
                conn: ConnKind::New,
                conn_opened: at(s),
                local_port: 0,
                connected: !fails,
                pod: None,
                node: None,
                zone: (!fails).then(|| zone.to_string()),
            });
        }
    }
    (e, reqs)
}

#[test]
fn phases_of_a_zone_outage() {
    let (events, reqs) = outage();
    let r = analyze(&meta(60.0), &events, &reqs);
    let p = &r.phases;
    assert_eq!(p.fault_s, Some(10.0));
    assert_eq!(
        p.nodes_not_ready_s,
        Some(15.5),
        "the last failed node counts"
    );
    assert_eq!(p.endpoints_removed_s, Some(15.6));
    assert_eq!(p.proxies_converged_s, Some(16.0));
    assert_eq!(p.pods_evicted_s, Some(45.0));
    assert_eq!(
        p.replacements_ready_s,
        Some(50.0),
        "one replacement is not enough"
    );
    assert_eq!(p.capacity_restored_s, Some(50.4));
    assert!((r.dead_endpoint_share - 1.0 / 3.0).abs() < 1e-3);
}

/// The same outage with topology hints (`PreferClose`): each proxy programs only its own
/// zone's endpoints, before and after the fault.
fn outage_prefer_close() -> Vec<Event> {
    let (events, _) = outage();
    let zone_ips = |node: &str| -> Vec<String> {
        let zone = &node[..1];
        let mut ips: Vec<String> = NODES
            .iter()
            .filter(|(n, _)| n.starts_with(zone))
            .map(|(n, _)| ip(n))
            .collect();
        // The replacements: 10.0.1.1 on b-1, 10.0.1.2 on c-1 (see `outage`).
        ips.extend(
            [("b", "10.0.1.1"), ("c", "10.0.1.2")]
                .iter()
                .filter(|(z, _)| *z == zone)
                .map(|(_, a)| a.to_string()),
        );
        ips
    };
    events
        .into_iter()
        .map(|e| match &e.kind {
            EventKind::ProxySync { node, services, .. } => {
                let programmed = services.as_ref().unwrap()["default/web"].clone();
                let own: Vec<String> = zone_ips(node)
                    .into_iter()
                    .filter(|a| programmed.contains(a))
                    .collect();
                Event {
                    at: e.at,
                    kind: sync(node, &own),
                }
            }
            _ => e,
        })
        .collect()
}

#[test]
fn with_zone_hints_capacity_is_measured_against_each_proxys_own_endpoints() {
    let events = outage_prefer_close();
    let p = analyze(&meta(60.0), &events, &[]).phases;
    // No surviving proxy ever programmed a zone-a endpoint: converged as soon as the
    // slices dropped them; whole again when the API is, since each kept its own zone's.
    assert_eq!(p.proxies_converged_s, Some(15.6));
    assert_eq!(p.replacements_ready_s, Some(50.0));
    assert_eq!(p.capacity_restored_s, Some(50.0));
    // A zone-b proxy that lost one of its own endpoints is short until it has it back.
    let mut short = events.clone();
    short.push(ev(20.0, sync("b-2", &[ip("b-1")])));
    let p = analyze(&meta(60.0), &short, &[]).phases;
    assert_eq!(
        p.capacity_restored_s,
        Some(50.2),
        "b-2's sync at 50.2 s makes it whole"
    );
}

#[test]
fn requests_window_and_slo() {
    let (events, reqs) = outage();
    let r = analyze(&meta(60.0), &events, &reqs);
    assert_eq!(r.requests.total, 1200);
    assert_eq!(r.requests.failed, 40);
    assert_eq!(r.requests.by_outcome[&Outcome::Timeout], 40);
    assert_eq!(r.requests.new_connections.failed, 40);
    let w = r.error_window.expect("a window");
    assert_eq!((w.start_s, w.end_s), (10.2, 15.9));
    assert_eq!(r.error_window_s, 5.7);
    assert_eq!(r.error_window_without_stale_conntrack_s, 5.7);
    assert!((r.window_failure_share - 1.0 / 3.0).abs() < 0.03);
    assert_eq!(r.failed_after_converged, 0);
    assert!(r.availability > 96.0 && r.availability < 97.0);
    assert!(!r.slo.met && !r.slo.availability_met && r.slo.error_window_met);
    assert_eq!(r.per_zone["b"].failed, 20);
    assert_eq!(r.series.requests["b"].len(), 60);
    assert_eq!(r.series.requests["b"][12].failed, 4.0);
    let a = &r.series.ready_endpoints["a"];
    assert_eq!(a.as_slice(), &[(0.5, 2), (15.6, 0)]);
    assert_eq!(r.series.ready_endpoints["b"].last(), Some(&(49.0, 3)));
}

#[test]
fn a_proxy_that_keeps_a_dead_endpoint_delays_convergence() {
    let (mut events, reqs) = outage();
    // c-2's sync at 16.0 still programs a dead endpoint; it catches up at 18 s.
    let stale: Vec<String> = ["b-1", "b-2", "c-1", "c-2", "a-1"]
        .iter()
        .map(|n| ip(n))
        .collect();
    let fixed: Vec<String> = ["b-1", "b-2", "c-1", "c-2"].iter().map(|n| ip(n)).collect();
    events.retain(|e| !(e.at == at(16.0) && matches!(e.kind, EventKind::ProxySync { .. })));
    events.push(ev(16.0, sync("c-2", &stale)));
    events.push(ev(18.0, sync("c-2", &fixed)));
    let r = analyze(&meta(60.0), &events, &reqs);
    assert_eq!(r.phases.proxies_converged_s, Some(18.0));
}

#[test]
fn a_node_that_joins_after_the_fault_does_not_hold_back_convergence() {
    let (mut events, reqs) = outage();
    let before = analyze(&meta(60.0), &events, &reqs).phases;
    // A node group's new instance in zone b first syncs at 40 s (with the live endpoints).
    let fixed: Vec<String> = ["b-1", "b-2", "c-1", "c-2"].iter().map(|n| ip(n)).collect();
    events.push(ev(40.0, sync("b-3", &fixed)));
    let after = analyze(&meta(60.0), &events, &reqs).phases;
    assert_eq!(after.proxies_converged_s, before.proxies_converged_s);
    assert_eq!(after.proxies_converged_s, Some(16.0));
}

#[test]
fn a_node_the_autoscaler_added_does_not_hold_back_convergence() {
    let (mut events, reqs) = outage();
    let fixed: Vec<String> = ["b-1", "b-2", "c-1", "c-2"].iter().map(|n| ip(n)).collect();
    // b-3 boots at 30 s and its proxy first syncs then: it was never a proxy with the dead
    // endpoints, so the proxies converged at 16 s as before.
    events.push(ev(
        24.0,
        EventKind::CloudInstance {
            group: "ng-b".into(),
            node: "b-3".into(),
            zone: "b".into(),
            state: "launched".into(),
        },
    ));
    events.push(ev(30.0, sync("b-3", &fixed)));
    let r = analyze(&meta(60.0), &events, &reqs);
    assert_eq!(r.phases.proxies_converged_s, Some(16.0));
    let a = r.autoscaler.expect("node groups section");
    assert!(a.nodes_added.is_empty(), "launched, not running yet");
}

#[test]
fn no_fault_means_no_phases_and_full_availability() {
    let r = analyze(&meta(5.0), &[], &[]);
    assert_eq!(r.phases, crate::report::Phases::default());
    assert_eq!(r.availability, 100.0);
    assert!(r.error_window.is_none() && r.slo.met);
}

#[test]
fn failures_after_convergence_are_counted_for_surviving_clients_only() {
    let (events, mut reqs) = outage();
    let late = |node: &str, zone: &str| Request {
        client: "clients".into(),
        client_zone: zone.into(),
        client_node: node.into(),
        client_kind: "clusterip".into(),
        service: "default/web".into(),
        start: at(30.0),
        end: at(31.0),
        outcome: Outcome::Timeout,
        conn: ConnKind::New,
        conn_opened: at(30.0),
        local_port: 0,
        connected: false,
        pod: None,
        node: None,
        zone: None,
    };
    reqs.push(late("b-2", "b"));
    reqs.push(late("a-1", "a"));
    let r = analyze(&meta(60.0), &events, &reqs);
    assert_eq!(r.failed_after_converged, 1);
    assert_eq!(r.per_zone["a"].failed, 1);
}

#[test]
fn recover_ends_the_primary_fault() {
    let mk = |s: f64, fault: &str| {
        ev(
            s,
            EventKind::Fault {
                fault: fault.into(),
                target: "a".into(),
                nodes: vec!["a-1".into()],
            },
        )
    };
    let p = primary_fault(&[mk(1.0, "zone-partition"), mk(5.0, "recover")]).unwrap();
    assert_eq!(p.kind, "zone-partition");
    assert_eq!(p.next_fault_ms, Some(at(5.0)));
    assert!(primary_fault(&[mk(1.0, "recover")]).is_none());
}

#[test]
fn a_failure_on_the_port_of_an_earlier_failure_is_stale_conntrack() {
    let (events, mut reqs) = outage();
    let mk = |s: f64, port: u16, ok: bool| Request {
        client: "clients".into(),
        client_zone: "b".into(),
        client_node: "b-1".into(),
        client_kind: "clusterip".into(),
        service: "default/web".into(),
        start: at(s),
        end: at(s + 1.0),
        outcome: if ok { Outcome::Ok } else { Outcome::Timeout },
        conn: ConnKind::New,
        conn_opened: at(s),
        local_port: port,
        connected: ok,
        pod: None,
        node: None,
        zone: None,
    };
    // Port 40000 failed in the window and again at 40 s: stale. Port 40002 failed, then
    // succeeded (no stale entry left), then failed at 41 s: not stale. Port 40004 failed at 12 s
    // and again 130 s later: the entry had expired.
    reqs.extend([
        mk(12.0, 40000, false),
        mk(40.0, 40000, false),
        mk(12.5, 40002, false),
        mk(20.0, 40002, true),
        mk(41.0, 40002, false),
        mk(12.7, 40004, false),
        mk(142.8, 40004, false),
    ]);
    let r = analyze(&meta(150.0), &events, &reqs);
    assert_eq!(r.requests.stale_conntrack, 1);
    // The window runs to the last failure (142.8 s); without the stale hit at 40 s it still
    // does, since 40004's second failure came after its entry expired.
    assert_eq!(r.error_window.map(|w| w.end_s), Some(142.8));
    assert_eq!(r.error_window_without_stale_conntrack_s, r.error_window_s);
    assert_eq!(r.failed_after_converged, 3);
    assert_eq!(r.failed_after_converged_stale_conntrack, 1);
    // A refused connection leaves no entry: the next timeout on its port is not stale.
    let mut refused = mk(50.0, 40006, false);
    refused.outcome = Outcome::Refused;
    reqs.extend([refused, mk(51.0, 40006, false)]);
    let r = analyze(&meta(150.0), &events, &reqs);
    assert_eq!(r.requests.stale_conntrack, 1);
    // Once the dead pod's address is gone, the stale entry yields "no route to host" (error).
    let mut unreachable = mk(60.0, 40000, false);
    unreachable.outcome = Outcome::Error;
    reqs.push(unreachable);
    let r = analyze(&meta(150.0), &events, &reqs);
    assert_eq!(r.requests.stale_conntrack, 2);
}

#[test]
fn requests_on_connections_opened_before_the_fault_are_counted_apart() {
    let (events, mut reqs) = outage();
    for (i, r) in reqs.iter_mut().enumerate().filter(|(i, _)| i % 10 == 1) {
        r.conn = ConnKind::Reused;
        r.conn_opened = at(5.0);
        if (10.0..12.0).contains(&((r.start - T0) / 1e3)) {
            r.outcome = if i % 20 == 1 {
                Outcome::Timeout
            } else {
                Outcome::Ok
            };
        }
    }
    let r = analyze(&meta(60.0), &events, &reqs);
    let pre = &r.requests.pre_fault_connections;
    // Every tenth request from 10 s on, in two zones: 50 per zone; timeouts among them only
    // where the test set them.
    assert_eq!(pre.total, 100);
    assert!(pre.failed > 0 && pre.failed < 10, "{pre:?}");
    assert_eq!(r.requests.reused_connections.total, 120);
}

#[test]
fn a_report_carries_what_it_takes_to_analyse_it_again() {
    let (events, reqs) = outage();
    let m = meta(60.0);
    let r = analyze(&m, &events, &reqs);
    assert_eq!(Meta::of(&r), m);
    assert_eq!(analyze(&Meta::of(&r), &events, &reqs), r);
}

#[test]
fn the_summary_ends_with_the_answer_in_plain_words() {
    let (events, reqs) = outage();
    let text = crate::summary::render(&analyze(&meta(60.0), &events, &reqs));
    let last = text.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "In short: zone-power-off of a at t=10.0s cost 40 of 1200 requests (3.33%), all timeouts, \
         over an error window of 5.7 s; the nodes were marked not ready after 5.5 s, every proxy \
         dropped their endpoints after 6.0 s, capacity was back after 40.4 s. The SLO was not met."
    );
}

#[test]
fn stale_hits_stretch_the_window_and_are_reported_apart() {
    let (events, mut reqs) = outage();
    let mk = |s: f64| Request {
        client: "clients".into(),
        client_zone: "b".into(),
        client_node: "b-1".into(),
        client_kind: "clusterip".into(),
        service: "default/web".into(),
        start: at(s),
        end: at(s + 1.0),
        outcome: Outcome::Timeout,
        conn: ConnKind::New,
        conn_opened: at(s),
        local_port: 45000,
        connected: false,
        pod: None,
        node: None,
        zone: None,
    };
    reqs.extend([mk(12.05), mk(30.0)]);
    let r = analyze(&meta(60.0), &events, &reqs);
    assert_eq!(r.requests.stale_conntrack, 1);
    assert_eq!(r.error_window.map(|w| w.end_s), Some(30.0));
    assert_eq!(r.error_window_without_stale_conntrack_s, 5.7);
    let text = crate::summary::render(&r);
    assert!(
        text.contains("(5.7 s without the 1 stale-conntrack hits"),
        "{text}"
    );
}

#[test]
fn failures_while_the_node_has_no_endpoint_are_no_endpoints_not_dead_pods() {
    let (mut events, mut reqs) = outage();
    // The zone outage's failures hit dead endpoints: none is "no endpoints".
    assert_eq!(
        analyze(&meta(60.0), &events, &reqs).requests.no_endpoints,
        0
    );
    // b-1's proxy programs no endpoint from 55 s (the Service was scaled to 0) to 57 s; its
    // client's requests then fail: refused for the first ones, timeouts past the ICMP limit.
    events.push(ev(55.0, sync("b-1", &[])));
    events.push(ev(57.0, sync("b-1", &[ip("b-1")])));
    for r in reqs.iter_mut().filter(|r| r.client_node == "b-1") {
        if (at(55.0)..at(57.0)).contains(&r.start) {
            let refused = r.start < at(55.6);
            r.outcome = if refused {
                Outcome::Refused
            } else {
                Outcome::Timeout
            };
            r.connected = false;
            r.zone = None;
        }
    }
    // A failure of c-1 at the same time (its proxy has endpoints) is not counted.
    let c = reqs
        .iter_mut()
        .find(|r| r.client_node == "c-1" && r.start >= at(55.0))
        .unwrap();
    c.outcome = Outcome::Timeout;
    let report = analyze(&meta(60.0), &events, &reqs);
    assert_eq!(report.requests.no_endpoints, 20, "{:?}", report.requests);
    assert!(
        crate::summary::render(&report)
            .contains("20 failed request(s) were sent while the client's node had no endpoint")
    );
}
