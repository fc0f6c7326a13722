//! Behaviour tests of zonal shift: the controller with the EndpointSlice controller (and the
//! controllers that could evict or delete) through the fake API in virtual time; the autoshift
//! rule on synthetic outcomes.

use std::sync::Arc;

use serde_json::json;

use super::autoshift::{Autoshift, AutoshiftConfig};
use super::*;
use crate::Kind;
use crate::cache::Key;
use crate::endpointslice::{EndpointSliceConfig, EndpointSliceController};
use crate::fake::{Harness, T0, object};

const NS: &str = "default";
const NODES: [(&str, &str); 4] = [("a-1", "a"), ("a-2", "a"), ("b-1", "b"), ("c-1", "c")];

fn node(name: &str, zone: &str) -> Object {
    object(
        json!({"kind": "Node", "metadata": {"name": name, "uid": format!("uid-{name}"),
        "labels": {"topology.kubernetes.io/zone": zone}}}),
    )
}

fn pod(name: &str, node: &str, ip: &str) -> Object {
    object(json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
}

fn harness() -> Harness {
    let mut h = Harness::new(vec![
        Box::new(EndpointSliceController::new(EndpointSliceConfig::default())),
        Box::new(ZonalShiftController::new()),
        Box::new(crate::nodelifecycle::TaintEvictionController::new()),
        Box::new(crate::podgc::PodGcController::new(Default::default())),
    ]);
    for (n, z) in NODES {
        h.put(node(n, z));
    }
    for (i, (n, _)) in NODES.iter().enumerate() {
        h.put(pod(&format!("web-{n}"), n, &format!("10.0.{i}.2")));
    }
    h.put(object(
        json!({"kind": "Service", "metadata": {"name": "web", "namespace": NS},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    ));
    h.start();
    h
}

/// The pods with an endpoint in the Service's slices, sorted.
fn endpoint_pods(h: &Harness) -> Vec<String> {
    let mut out: Vec<String> = h
        .api
        .cache
        .slices_of(&Key::new(NS, "web"))
        .flat_map(|s| s.endpoints.clone())
        .filter_map(|e| e.target_ref.and_then(|t| t.name))
        .collect();
    out.sort();
    out
}

fn node_of(h: &Harness, name: &str) -> Arc<Node> {
    h.api.cache.nodes.get(name).cloned().expect("node")
}

fn unschedulable(h: &Harness, name: &str) -> bool {
    node_of(h, name)
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

/// What a starter (scenario runner, simulator, CLI) writes: the annotation on every node of
/// the zone.
fn start(h: &mut Harness, zone: &str, expires_at: Moment) {
    let nodes: Vec<Node> = zone_nodes(&h.api.cache, zone)
        .filter_map(|n| start_node(n, expires_at, h.now))
        .collect();
    for n in nodes {
        h.put(Object::Node(Arc::new(n)));
    }
}

fn cancel(h: &mut Harness, zone: &str) {
    let nodes: Vec<Node> = zone_nodes(&h.api.cache, zone)
        .filter_map(|n| cancel_node(n))
        .collect();
    for n in nodes {
        h.put(Object::Node(Arc::new(n)));
    }
}

#[test]
fn shift_cordons_and_removes_endpoints_without_evicting_or_deleting() {
    let mut h = harness();
    assert_eq!(
        endpoint_pods(&h),
        ["web-a-1", "web-a-2", "web-b-1", "web-c-1"]
    );
    h.api.log.clear();
    start(&mut h, "a", T0 + Duration::from_millis(1_800_000));
    assert_eq!(endpoint_pods(&h), ["web-b-1", "web-c-1"]);
    assert!(unschedulable(&h, "a-1") && unschedulable(&h, "a-2"));
    assert!(!unschedulable(&h, "b-1") && !unschedulable(&h, "c-1"));
    h.advance(Duration::from_millis(600_000));
    // Pods and nodes stay: the only writes are node updates and the slice update.
    assert_eq!(h.api.cache.pods.len(), 4);
    assert_eq!(h.api.cache.nodes.len(), 4);
    let pods_deleted = h
        .api
        .cache
        .pods
        .values()
        .any(|p| p.metadata.deletion_timestamp.is_some());
    assert!(!pods_deleted, "a zonal shift must not evict pods");
    let counts = h.write_counts();
    let kinds: Vec<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["update EndpointSlice", "update Node"], "{counts:?}");
    let started: Vec<&str> = h
        .events
        .iter()
        .filter(|e| e.reason == REASON_STARTED)
        .filter_map(|e| e.involved.name.as_deref())
        .collect();
    assert_eq!(started, ["a-1", "a-2"]);
}

#[test]
fn expiry_restores_endpoints_and_uncordons_only_what_the_shift_cordoned() {
    let mut h = harness();
    // a-2 was cordoned by someone else before the shift: it stays cordoned after it.
    let mut a2 = (*node_of(&h, "a-2")).clone();
    a2.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
    h.put(Object::Node(Arc::new(a2)));
    start(&mut h, "a", T0 + Duration::from_millis(60_000));
    assert!(shift_of(&node_of(&h, "a-1")).cordoned_by_shift);
    assert!(!shift_of(&node_of(&h, "a-2")).cordoned_by_shift);
    h.advance(Duration::from_millis(59_000));
    assert_eq!(endpoint_pods(&h), ["web-b-1", "web-c-1"]);
    // At the expiry every endpoint of the zone comes back at once (the zone is shifted until
    // its last node drops the shift).
    h.advance(Duration::from_millis(1_000));
    assert_eq!(
        endpoint_pods(&h),
        ["web-a-1", "web-a-2", "web-b-1", "web-c-1"]
    );
    assert!(!unschedulable(&h, "a-1"), "the shift's cordon is lifted");
    assert!(unschedulable(&h, "a-2"), "someone else's cordon stays");
    assert_eq!(shift_of(&node_of(&h, "a-1")), NodeShift::default());
    let ended = h.events.iter().filter(|e| e.reason == REASON_ENDED).count();
    assert_eq!(ended, 2);
}

#[test]
fn cancel_and_extend() {
    let mut h = harness();
    start(&mut h, "a", T0 + Duration::from_millis(60_000));
    // Extended (UpdateZonalShift): still shifted past the first expiry.
    start(&mut h, "a", T0 + Duration::from_millis(120_000));
    h.advance(Duration::from_millis(90_000));
    assert_eq!(endpoint_pods(&h), ["web-b-1", "web-c-1"]);
    assert!(unschedulable(&h, "a-1"));
    cancel(&mut h, "a");
    assert_eq!(
        endpoint_pods(&h),
        ["web-a-1", "web-a-2", "web-b-1", "web-c-1"]
    );
    assert!(!unschedulable(&h, "a-1") && !unschedulable(&h, "a-2"));
    assert!(h.poll_timeout().is_none_or(|t| t > h.now));
}

#[test]
fn a_restarted_controller_finishes_what_a_shift_started() {
    let mut h = harness();
    start(&mut h, "a", T0 + Duration::from_millis(60_000));
    // A new controller (restart) learns the shift from the nodes alone.
    let mut h2 = Harness::new(vec![
        Box::new(EndpointSliceController::new(EndpointSliceConfig::default())),
        Box::new(ZonalShiftController::new()),
    ]);
    h2.api = std::mem::take(&mut h.api);
    h2.now = h.now;
    h2.start();
    assert_eq!(endpoint_pods(&h2), ["web-b-1", "web-c-1"]);
    h2.advance(Duration::from_millis(62_000));
    assert!(!unschedulable(&h2, "a-1"));
    assert_eq!(endpoint_pods(&h2).len(), 4);
}

#[test]
fn node_deleted_during_a_shift_is_forgotten() {
    let mut h = harness();
    start(&mut h, "a", T0 + Duration::from_millis(60_000));
    h.remove(Kind::Node, &Key::new("", "a-1"));
    h.advance(Duration::from_millis(60_000));
    assert!(!unschedulable(&h, "a-2"));
}

#[test]
fn merge_patch_starts_and_cancels() {
    let p = merge_patch(Some(T0 + Duration::from_millis(60_000)), Some(T0));
    let ann = &p["metadata"]["annotations"];
    assert_eq!(
        parse_time(ann[EXPIRES_AT_ANNOTATION].as_str().unwrap()),
        Some(Moment::from_millis(
            (T0 + Duration::from_millis(60_000)).as_millis() / 1000 * 1000
        ))
    );
    let c = merge_patch(None, None);
    assert!(c["metadata"]["annotations"][EXPIRES_AT_ANNOTATION].is_null());
}

fn rule() -> AutoshiftConfig {
    AutoshiftConfig {
        threshold_percent: 10.0,
        period_ms: Duration::from_millis(10_000),
        delay_ms: Duration::from_millis(5_000),
        expires_in_ms: Duration::from_millis(1_800_000),
    }
}

/// Ten requests a second from clients in a, b and c, from `from` to `to`; `fails(zone, t)`
/// says which fail; a zone in `silent` sends nothing.
fn feed(
    a: &mut Autoshift,
    from: i64,
    to: i64,
    silent: &[&str],
    fails: impl Fn(&str, i64) -> bool,
) -> Option<(i64, autoshift::AutoshiftDecision)> {
    let mut t = Moment::from_millis(from);
    while t < Moment::from_millis(to) {
        for (i, z) in ["a", "b", "c"].iter().enumerate() {
            if !silent.contains(z) {
                a.handle_outcome(t, z, !fails(z, t.as_millis() + i as i64));
            }
        }
        t += Duration::from_millis(100);
        if let Some(d) = a.handle_timeout(t) {
            return Some((t.as_millis(), d));
        }
    }
    None
}

#[test]
fn autoshift_fires_after_threshold_and_delay_on_the_silent_zone() {
    let mut a = Autoshift::new(rule());
    assert!(feed(&mut a, 0, 20_000, &[], |_, _| false).is_none());
    // Zone a powers off at 20 s: its clients go silent, a third of b's and c's requests fail.
    let (at, d) = feed(&mut a, 20_000, 60_000, &["a"], |_, t| t % 3 == 0).expect("fires");
    assert_eq!(d.zone, "a");
    assert_eq!(
        d.expires_at,
        Moment::from_millis(at) + Duration::from_millis(1_800_000)
    );
    // The breach needs the failures to make 10 % of the sliding 10 s window (b's and c's third
    // against the window's older successes: about 4 s here), then `delay` (5 s) more.
    assert!((29_000..=29_200).contains(&at), "fired at {at}");
}

#[test]
fn autoshift_ignores_a_brief_blip() {
    // A 2 s window: zone b failing for 2 s breaches for about 4 s, less than the 5 s delay.
    let mut a = Autoshift::new(AutoshiftConfig {
        period_ms: Duration::from_millis(2_000),
        ..rule()
    });
    let blip = |z: &str, t: i64| z == "b" && (20_000..22_000).contains(&t);
    assert!(feed(&mut a, 0, 60_000, &[], blip).is_none());
    // The same failures lasting 8 s do fire, on zone b.
    let mut a = Autoshift::new(AutoshiftConfig {
        period_ms: Duration::from_millis(2_000),
        ..rule()
    });
    let long = |z: &str, t: i64| z == "b" && (20_000..28_000).contains(&t);
    let (_, d) = feed(&mut a, 0, 60_000, &[], long).expect("fires");
    assert_eq!(d.zone, "b");
}

#[test]
fn autoshift_does_not_shift_when_no_zone_stands_out() {
    let mut a = Autoshift::new(rule());
    assert!(feed(&mut a, 0, 60_000, &[], |_, t| t % 2 == 0).is_none());
}

#[test]
fn the_zone_is_shifted_while_any_of_its_nodes_carries_the_shift() {
    let mut h = harness();
    start(&mut h, "a", T0 + Duration::from_millis(600_000));
    // A cancel half done (one node written): the zone's endpoints all stay out.
    let a1 = cancel_node(&node_of(&h, "a-1")).expect("shifted");
    h.put(Object::Node(Arc::new(a1)));
    assert_eq!(endpoint_pods(&h), ["web-b-1", "web-c-1"]);
    assert!(!unschedulable(&h, "a-1"), "a-1's own shift is over");
    cancel(&mut h, "a");
    assert_eq!(
        endpoint_pods(&h),
        ["web-a-1", "web-a-2", "web-b-1", "web-c-1"]
    );
    let mut z = ShiftedZones::default();
    let n = |name: &str, shifted: bool| {
        let Object::Node(n) = node(name, "a") else {
            unreachable!()
        };
        if shifted {
            start_node(&n, T0 + Duration::from_millis(60_000), T0).expect("start")
        } else {
            (*n).clone()
        }
    };
    assert!(z.update(&n("a-1", true)), "zone a enters");
    assert!(!z.update(&n("a-2", true)));
    assert!(!z.update(&n("a-1", false)));
    assert!(z.contains("a"));
    assert!(z.remove("a-2"), "zone a leaves with its last shifted node");
    assert!(!z.contains("a"));
}

#[test]
fn autoshift_needs_a_whole_period_of_data() {
    // Everything in zone b fails in the first 2 s of the run (start-up), then nothing does:
    // with less than a period seen the alarm cannot breach, so no shift.
    let mut a = Autoshift::new(AutoshiftConfig {
        period_ms: Duration::from_millis(3_000),
        delay_ms: Duration::from_millis(1_000),
        threshold_percent: 5.0,
        ..rule()
    });
    let start_up = |z: &str, t: i64| z == "b" && t < 2_000;
    assert!(feed(&mut a, 0, 60_000, &[], start_up).is_none());
}

#[test]
fn autoshift_applies_finished_outcomes_once_their_end_is_reached() {
    let mut a = Autoshift::new(rule());
    // Handed over early (a record read before its end): nothing is applied before its end.
    a.handle_finished(Moment::from_millis(5_000), "b".into(), false);
    a.handle_finished(Moment::from_millis(4_000), "a".into(), true);
    assert!(a.handle_timeout(Moment::from_millis(3_000)).is_none());
    assert_eq!(a.poll_timeout(), None, "no outcome applied yet");
    // At 4 s the one that ended then is applied (and first evaluated); the other still waits.
    assert!(a.handle_timeout(Moment::from_millis(4_000)).is_none());
    assert_eq!(a.poll_timeout(), Some(Moment::from_millis(5_000)));
}
