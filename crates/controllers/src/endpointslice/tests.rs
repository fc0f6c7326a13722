//! Behaviour tests of the EndpointSlice controller through the fake API in virtual time.

use std::sync::Arc;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use serde_json::{Value, json};

use super::*;
use crate::fake::{Harness, T0, object};

const NS: &str = "default";

fn node(name: &str, zone: &str) -> Object {
    object(
        json!({"kind": "Node", "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}}),
    )
}

fn ts(ms: Moment) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms.as_millis())
        .expect("ts")
        .to_string()
}

/// A running pod on node `n<i % 3>` labelled `app=web`, Ready since T0.
fn pod_value(name: &str, ip: &str, ready: bool) -> Value {
    json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": ts(T0)}]
        }
    })
}

fn pod(name: &str, ip: &str) -> Object {
    object(pod_value(name, ip, true))
}

fn service_value(selector: Value, target: Value) -> Value {
    json!({
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NS, "labels": {"team": "a"}},
        "spec": {"clusterIP": "10.96.0.10", "selector": selector,
                 "ports": [{"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}]}
    })
}

fn service() -> Object {
    object(service_value(json!({"app": "web"}), json!(8080)))
}

fn harness(config: EndpointSliceConfig) -> Harness {
    let mut h = Harness::new(vec![Box::new(EndpointSliceController::new(config))]);
    for (n, z) in [("n1", "zone-a"), ("n2", "zone-b"), ("n3", "zone-c")] {
        h.put(node(n, z));
    }
    h
}

fn svc_key() -> Key {
    Key::new(NS, "web")
}

fn slices(h: &Harness) -> Vec<Arc<EndpointSlice>> {
    h.api.cache.slices_of(&svc_key()).cloned().collect()
}

fn endpoint(h: &Harness, pod: &str) -> Option<Endpoint> {
    slices(h)
        .iter()
        .flat_map(|s| s.endpoints.clone())
        .find(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some(pod))
}

fn conds(ep: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
    let c = ep.conditions.clone().unwrap_or_default();
    (c.ready, c.serving, c.terminating)
}

fn slice_writes(h: &Harness) -> usize {
    h.api
        .log
        .iter()
        .filter(|(_, a)| action_kind(a) == Some(Kind::EndpointSlice))
        .count()
}

fn action_kind(a: &Action) -> Option<Kind> {
    match a {
        Action::Create(o) | Action::Update(o) | Action::UpdateStatus(o) => Some(o.kind()),
        Action::Delete { kind, .. } => Some(*kind),
        Action::Bind { .. } => None,
    }
}

fn ip(i: usize) -> String {
    format!("10.0.{}.{}", i / 250, i % 250 + 1)
}

fn started_with_pods(n: usize, config: EndpointSliceConfig) -> Harness {
    let mut h = harness(config);
    h.put(service());
    for i in 0..n {
        h.api.put(pod(&format!("p{i:03}"), &ip(i)), h.now);
    }
    h.start();
    h
}

#[test]
fn two_hundred_fifty_pods_make_three_slices_with_upstream_metadata() {
    let h = started_with_pods(250, EndpointSliceConfig::default());
    let slices = slices(&h);
    assert_eq!(slices.len(), 3);
    let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![50, 100, 100]);
    let svc_uid = h.api.cache.services[&svc_key()].metadata.uid.clone();
    for s in &slices {
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(SERVICE_NAME_LABEL).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert!(!labels.contains_key(HEADLESS_LABEL));
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(s.address_type, "IPv4");
        let owner = &s.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Service", "web")
        );
        assert_eq!(Some(owner.uid.clone()), svc_uid);
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let port = &s.ports.clone().unwrap_or_default()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("http"), Some(8080), Some("TCP"))
        );
    }
    let total: usize = slices.iter().map(|s| s.endpoints.len()).sum();
    assert_eq!(total, 250);
    let ep = endpoint(&h, "p007").expect("p007");
    assert_eq!(ep.addresses, vec![ip(7)]);
    assert_eq!(conds(&ep), (Some(true), Some(true), Some(false)));
    assert_eq!(
        (ep.node_name.as_deref(), ep.zone.as_deref()),
        (Some("n1"), Some("zone-a"))
    );
    let target = ep.target_ref.clone().expect("targetRef");
    assert_eq!(
        (target.kind.as_deref(), target.namespace.as_deref()),
        (Some("Pod"), Some(NS))
    );
    assert!(target.uid.is_some());
}

#[test]
fn adding_pods_one_by_one_fills_slices_up_to_the_maximum() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(service());
    h.start();
    for i in 0..250 {
        h.put(pod(&format!("p{i:03}"), &ip(i)));
    }
    let mut sizes: Vec<usize> = slices(&h).iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![50, 100, 100]);
    assert!(h.failures.is_empty());
    for i in (0..250).step_by(3) {
        h.remove(Kind::Pod, &Key::new(NS, &format!("p{i:03}")));
    }
    let mut moved = pod_value("p001", &ip(1), true);
    moved["metadata"]["labels"] = json!({"app": "api"});
    h.put(object(moved));
    assert_full_resync_is_noop(&mut h);
}

#[test]
fn one_pod_turning_not_ready_rewrites_exactly_one_slice() {
    let mut h = started_with_pods(250, EndpointSliceConfig::default());
    let before = h.api.log.len();
    h.advance(Duration::from_millis(5_000));
    h.put(object(pod_value("p123", &ip(123), false)));
    let writes: Vec<&Action> = h.api.log[before..].iter().map(|(_, a)| a).collect();
    let slice_updates: Vec<_> = writes
        .iter()
        .filter(|a| action_kind(a) == Some(Kind::EndpointSlice))
        .collect();
    assert_eq!(slice_updates.len(), 1, "{writes:?}");
    assert!(matches!(slice_updates[0], Action::Update(_)));
    let ep = endpoint(&h, "p123").expect("p123");
    assert_eq!(conds(&ep), (Some(false), Some(false), Some(false)));
    // Unrelated pod updates write nothing.
    let before = h.api.log.len();
    let mut v = pod_value("p124", &ip(124), true);
    v["status"]["containerStatuses"] = json!([{"name": "c", "ready": true, "restartCount": 1, "image": "i", "imageID": "", "startedAt": null}]);
    h.put(object(v));
    assert_eq!(slice_writes_since(&h, before), 0);
    assert_full_resync_is_noop(&mut h);
}

/// A full resync (forced by a Service update) finds nothing to change: the partial syncs
/// after pod changes reached what a full reconcile would.
fn assert_full_resync_is_noop(h: &mut Harness) {
    let svc = h.api.cache.services[&svc_key()].clone();
    let before = h.api.log.len();
    h.put(Object::Service(svc));
    assert_eq!(
        slice_writes_since(h, before),
        0,
        "{:?}",
        &h.api.log[before..]
    );
}

fn slice_writes_since(h: &Harness, from: usize) -> usize {
    h.api.log[from..]
        .iter()
        .filter(|(_, a)| action_kind(a) == Some(Kind::EndpointSlice))
        .count()
}

#[test]
fn named_ports_resolve_per_pod_into_separate_slices() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(object(service_value(json!({"app": "web"}), json!("http"))));
    h.start();
    h.put(pod("a", "10.0.0.1"));
    let mut b = pod_value("b", "10.0.0.2", true);
    b["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(9090);
    h.put(object(b));
    // A pod without the named port gets a slice with no ports.
    let mut c = pod_value("c", "10.0.0.3", true);
    c["spec"]["containers"][0]["ports"] = json!([{"name": "other", "containerPort": 7070}]);
    h.put(object(c));
    let mut by_port: Vec<(Vec<i32>, Vec<String>)> = slices(&h)
        .iter()
        .map(|s| {
            let ports = s.ports.iter().flatten().filter_map(|p| p.port).collect();
            let pods = s
                .endpoints
                .iter()
                .filter_map(|e| e.target_ref.as_ref()?.name.clone())
                .collect();
            (ports, pods)
        })
        .collect();
    by_port.sort();
    assert_eq!(
        by_port,
        vec![
            (vec![], vec!["c".to_string()]),
            (vec![8080], vec!["a".to_string()]),
            (vec![9090], vec!["b".to_string()])
        ]
    );
}

#[test]
fn endpoint_conditions_follow_upstream() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(service());
    h.start();
    h.put(pod("ready", "10.0.0.1"));
    h.put(object(pod_value("notready", "10.0.0.2", false)));
    let mut term = pod_value("term", "10.0.0.3", true);
    term["metadata"]["deletionTimestamp"] = json!(ts(T0 + Duration::from_millis(30_000)));
    h.put(object(term));
    let mut term_nr = pod_value("term-nr", "10.0.0.4", false);
    term_nr["metadata"]["deletionTimestamp"] = json!(ts(T0 + Duration::from_millis(30_000)));
    h.put(object(term_nr));
    let mut no_ip = pod_value("noip", "", true);
    no_ip["status"] = json!({"phase": "Pending"});
    h.put(object(no_ip));
    let mut done = pod_value("done", "10.0.0.6", false);
    done["status"]["phase"] = json!("Succeeded");
    h.put(object(done));
    assert_eq!(
        conds(&endpoint(&h, "ready").expect("ready")),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(
        conds(&endpoint(&h, "notready").expect("nr")),
        (Some(false), Some(false), Some(false))
    );
    assert_eq!(
        conds(&endpoint(&h, "term").expect("term")),
        (Some(false), Some(true), Some(true))
    );
    assert_eq!(
        conds(&endpoint(&h, "term-nr").expect("term-nr")),
        (Some(false), Some(false), Some(true))
    );
    assert!(endpoint(&h, "noip").is_none());
    assert!(endpoint(&h, "done").is_none());
    assert_full_resync_is_noop(&mut h);
}

#[test]
fn publish_not_ready_addresses_marks_everything_ready() {
    let mut h = harness(EndpointSliceConfig::default());
    let mut svc = service_value(json!({"app": "web"}), json!(8080));
    svc["spec"]["publishNotReadyAddresses"] = json!(true);
    h.put(object(svc));
    h.start();
    h.put(object(pod_value("nr", "10.0.0.2", false)));
    let mut term = pod_value("term", "10.0.0.3", false);
    term["metadata"]["deletionTimestamp"] = json!(ts(T0 + Duration::from_millis(30_000)));
    h.put(object(term));
    assert_eq!(
        conds(&endpoint(&h, "nr").expect("nr")),
        (Some(true), Some(false), Some(false))
    );
    assert_eq!(
        conds(&endpoint(&h, "term").expect("term")),
        (Some(true), Some(false), Some(true))
    );
}

#[test]
fn label_change_moves_pod_out_and_selector_change_moves_pods_in() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(service());
    h.start();
    h.put(pod("a", "10.0.0.1"));
    h.put(pod("b", "10.0.0.2"));
    let mut other = pod_value("c", "10.0.0.3", true);
    other["metadata"]["labels"] = json!({"app": "api"});
    h.put(object(other.clone()));
    assert!(endpoint(&h, "c").is_none());
    let mut moved = pod_value("b", "10.0.0.2", true);
    moved["metadata"]["labels"] = json!({"app": "api"});
    h.put(object(moved));
    assert!(endpoint(&h, "b").is_none());
    assert!(endpoint(&h, "a").is_some());
    // The Service now selects app=api: a leaves, b and c come in, still one slice.
    h.put(object(service_value(json!({"app": "api"}), json!(8080))));
    assert!(endpoint(&h, "a").is_none());
    assert!(endpoint(&h, "b").is_some() && endpoint(&h, "c").is_some());
    assert_eq!(slices(&h).len(), 1);
}

#[test]
fn service_without_pods_has_exactly_one_empty_slice() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(service());
    h.start();
    let s = slices(&h);
    assert_eq!(s.len(), 1);
    assert!(s[0].endpoints.is_empty());
    assert!(s[0].ports.iter().flatten().next().is_none());
    // A resync writes nothing more.
    let before = h.api.log.len();
    h.put(service());
    assert_eq!(slice_writes_since(&h, before), 0);
    // Pods come and go: the placeholder is reused, then restored; never more than needed.
    h.put(pod("a", "10.0.0.1"));
    assert_eq!(slices(&h).len(), 1);
    assert_eq!(slices(&h)[0].endpoints.len(), 1);
    h.remove(Kind::Pod, &Key::new(NS, "a"));
    let s = slices(&h);
    assert_eq!(s.len(), 1);
    assert!(s[0].endpoints.is_empty());
    assert_eq!(h.write_counts().get("create EndpointSlice"), Some(&1));
}

#[test]
fn emptied_slices_are_deleted_when_others_remain() {
    let config = EndpointSliceConfig {
        max_endpoints_per_slice: 2,
        ..EndpointSliceConfig::default()
    };
    let mut h = started_with_pods(4, config);
    assert_eq!(slices(&h).len(), 2);
    h.remove(Kind::Pod, &Key::new(NS, "p000"));
    h.remove(Kind::Pod, &Key::new(NS, "p001"));
    let s = slices(&h);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].endpoints.len(), 2);
    assert_eq!(h.write_counts().get("delete EndpointSlice"), Some(&1));
}

#[test]
fn zone_comes_from_the_node_label_and_follows_it() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(service());
    h.start();
    let mut p = pod_value("a", "10.0.0.1", true);
    p["spec"]["nodeName"] = json!("n2");
    h.put(object(p));
    assert_eq!(
        endpoint(&h, "a").and_then(|e| e.zone),
        Some("zone-b".to_string())
    );
    h.put(node("n2", "zone-x"));
    assert_eq!(
        endpoint(&h, "a").and_then(|e| e.zone),
        Some("zone-x".to_string())
    );
}

#[test]
fn pod_on_unknown_node_is_skipped_until_the_node_appears() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(service());
    h.start();
    let mut p = pod_value("a", "10.0.0.1", true);
    p["spec"]["nodeName"] = json!("n9");
    h.put(object(p));
    assert!(endpoint(&h, "a").is_none());
    h.put(node("n9", "zone-z"));
    assert_eq!(
        endpoint(&h, "a").and_then(|e| e.zone),
        Some("zone-z".to_string())
    );
}

fn trigger(s: &EndpointSlice) -> Option<String> {
    s.metadata
        .annotations
        .as_ref()?
        .get(TRIGGER_TIME_ANNOTATION)
        .cloned()
}

#[test]
fn trigger_time_is_the_ready_transition_of_the_changed_pod() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(service());
    let created = h.api.cache.services[&svc_key()]
        .metadata
        .creation_timestamp
        .clone()
        .expect("ts");
    h.api.put(pod("a", "10.0.0.1"), h.now);
    h.advance(Duration::from_millis(60_000));
    h.start();
    // First sync of a Service: its creationTimestamp.
    assert_eq!(trigger(&slices(&h)[0]), Some(created.0.to_string()));
    h.advance(Duration::from_millis(7_000));
    let mut v = pod_value("a", "10.0.0.1", false);
    v["status"]["conditions"][0]["lastTransitionTime"] =
        json!(ts(h.now - Duration::from_millis(2_000)));
    h.put(object(v));
    assert_eq!(
        trigger(&slices(&h)[0]),
        Some(ts(h.now - Duration::from_millis(2_000)))
    );
    assert_eq!(
        ts(T0 + Duration::from_millis(65_000)),
        "2027-01-15T08:01:05Z"
    );
}

/// Makes the first `conflicts` slice updates stale, so the API rejects them.
struct Flaky {
    inner: EndpointSliceController,
    conflicts: usize,
}

impl Controller for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        self.inner.handle_synced(cache, now)
    }
    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        self.inner.handle_change(cache, change, now)
    }
    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        self.inner.handle_timeout(cache, now)
    }
    fn poll_timeout(&self) -> Option<Moment> {
        self.inner.poll_timeout()
    }
    fn outbox(&mut self) -> &mut runtime::Outbox {
        self.inner.outbox()
    }
    fn poll_action(&mut self) -> Option<Action> {
        let mut a = self.inner.poll_action()?;
        if let Action::Update(Object::EndpointSlice(s)) = &mut a
            && self.conflicts > 0
        {
            self.conflicts -= 1;
            // An older revision (the API answers a non-numeric one with 400, not 409).
            Arc::make_mut(s).metadata.resource_version = Some("1".to_string());
        }
        Some(a)
    }
    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        self.inner.handle_write_failed(action, error, now)
    }
}

#[test]
fn conflicting_write_is_retried_with_backoff() {
    let inner = EndpointSliceController::new(EndpointSliceConfig::default());
    let mut h = Harness::new(vec![Box::new(Flaky {
        inner,
        conflicts: 2,
    })]);
    h.put(node("n1", "zone-a"));
    h.put(service());
    h.start();
    h.put(pod("a", "10.0.0.1"));
    assert_eq!(h.failures.len(), 1);
    assert_eq!(h.failures[0].2, WriteError::Conflict);
    assert!(endpoint(&h, "a").is_none());
    let t_fail = h.now;
    assert_eq!(
        h.poll_timeout(),
        Some(t_fail + Duration::from_millis(1_000))
    );
    h.advance(Duration::from_millis(1_000));
    assert_eq!(h.failures.len(), 2);
    assert_eq!(
        h.poll_timeout(),
        Some(t_fail + Duration::from_millis(3_000)),
        "second retry after 2 s"
    );
    h.advance(Duration::from_millis(2_000));
    assert_eq!(h.failures.len(), 2);
    assert!(endpoint(&h, "a").is_some());
    assert_eq!(h.poll_timeout(), None);
}

#[test]
fn foreign_edits_to_managed_slices_are_reverted_after_the_min_sync_delay() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(service());
    h.start();
    h.put(pod("a", "10.0.0.1"));
    let mut edited = (*slices(&h)[0]).clone();
    edited.endpoints.clear();
    h.put(Object::EndpointSlice(Arc::new(edited)));
    assert!(endpoint(&h, "a").is_none());
    h.advance(Duration::from_millis(1_000));
    assert!(endpoint(&h, "a").is_some());
    // Slices not managed by us are left alone.
    let mut mine = (*slices(&h)[0]).clone();
    mine.metadata.name = Some("manual".to_string());
    mine.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), "web".to_string())].into());
    let before = h.api.log.len();
    h.put(Object::EndpointSlice(Arc::new(mine)));
    h.advance(Duration::from_millis(5_000));
    assert_eq!(slice_writes_since(&h, before), 0);
    assert_eq!(slices(&h).len(), 2);
}

#[test]
fn a_managed_slice_relabelled_to_another_service_is_replaced_for_its_own() {
    let mut h = harness(EndpointSliceConfig::default());
    h.put(service());
    h.start();
    h.put(pod("a", "10.0.0.1"));
    h.advance(Duration::from_millis(1_000));
    let mut moved = (*slices(&h)[0]).clone();
    moved
        .metadata
        .labels
        .get_or_insert_default()
        .insert(SERVICE_NAME_LABEL.to_string(), "other".to_string());
    h.put(Object::EndpointSlice(Arc::new(moved)));
    assert!(endpoint(&h, "a").is_none());
    h.advance(Duration::from_millis(1_000));
    assert!(endpoint(&h, "a").is_some());
}

#[test]
fn batched_additions_follow_upstream_placement() {
    // Upstream docs: 10 new endpoints with 2 slices of 5 free each (max 10) → one new slice.
    let config = EndpointSliceConfig {
        max_endpoints_per_slice: 10,
        endpoint_updates_batch_period_ms: Duration::from_millis(500),
        ..EndpointSliceConfig::default()
    };
    let mut h = started_with_pods(20, config);
    assert_eq!(slices(&h).len(), 2);
    for i in [0, 2, 4, 6, 8, 10, 12, 14, 16, 18] {
        h.remove(Kind::Pod, &Key::new(NS, &format!("p{i:03}")));
    }
    h.advance(Duration::from_millis(1_000));
    let mut sizes: Vec<usize> = slices(&h).iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![5, 5]);
    let before = h.api.log.len();
    for i in 100..110 {
        h.put(pod(&format!("p{i:03}"), &ip(i)));
    }
    h.advance(Duration::from_millis(1_000));
    let writes: Vec<String> = h.api.log[before..]
        .iter()
        .map(|(_, a)| format!("{:?}", action_kind(a)))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(matches!(h.api.log[before].1, Action::Create(_)));
    let mut sizes: Vec<usize> = slices(&h).iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![5, 5, 10]);
    // 3 more go into the unchanged slice they fill best (5 + 3).
    let before = h.api.log.len();
    for i in 200..203 {
        h.put(pod(&format!("p{i:03}"), &ip(i)));
    }
    h.advance(Duration::from_millis(1_000));
    assert_eq!(slice_writes_since(&h, before), 1);
    let mut sizes: Vec<usize> = slices(&h).iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![5, 8, 10]);
}

#[test]
fn services_without_selector_or_external_name_are_left_alone() {
    let mut h = harness(EndpointSliceConfig::default());
    let mut v = service_value(json!({}), json!(8080));
    v["spec"].as_object_mut().expect("spec").remove("selector");
    h.put(object(v));
    let mut ext = service_value(json!({"app": "web"}), json!(8080));
    ext["metadata"]["name"] = json!("ext");
    ext["spec"]["type"] = json!("ExternalName");
    h.put(object(ext));
    h.put(pod("a", "10.0.0.1"));
    h.start();
    assert_eq!(slice_writes(&h), 0);
}

#[test]
fn a_sync_before_our_write_is_seen_retries_with_backoff_not_on_the_echo() {
    let mut c = EndpointSliceController::new(EndpointSliceConfig::default());
    let mut api = crate::fake::FakeApi::new();
    api.put(node("n1", "zone-a"), T0);
    api.put(service(), T0);
    c.handle_synced(&api.cache, T0);
    let mut first = Vec::new();
    first.extend(std::iter::from_fn(|| c.poll_action()));
    assert_eq!(first.len(), 1, "the placeholder slice");
    // A pod arrives while our write is not back: the informer cache is stale for this
    // Service (upstream StaleInformerCache), so the sync is retried after 1 s.
    let change = api.put(pod("a", "10.0.0.1"), T0 + Duration::from_millis(10));
    c.handle_change(&api.cache, &change, T0 + Duration::from_millis(10));
    let mut out = Vec::new();
    out.extend(std::iter::from_fn(|| c.poll_action()));
    assert!(out.is_empty());
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_millis(1_010)));
    // A second stale attempt doubles the backoff (but keeps the earlier retry).
    let change = api.put(pod("b", "10.0.0.2"), T0 + Duration::from_millis(20));
    c.handle_change(&api.cache, &change, T0 + Duration::from_millis(20));
    out.extend(std::iter::from_fn(|| c.poll_action()));
    assert!(out.is_empty());
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_millis(1_010)));
    // Our write comes back: no sync the instant it does.
    for change in api
        .execute(&first[0], T0 + Duration::from_millis(30))
        .expect("create")
    {
        c.handle_change(&api.cache, &change, T0 + Duration::from_millis(30));
    }
    out.extend(std::iter::from_fn(|| c.poll_action()));
    assert!(out.is_empty(), "synced on the echo: {out:?}");
    // The rate-limited retry syncs both pods.
    c.handle_timeout(&api.cache, T0 + Duration::from_millis(1_010));
    out.extend(std::iter::from_fn(|| c.poll_action()));
    assert_eq!(out.len(), 1);
    let Action::Update(Object::EndpointSlice(s)) = &out[0] else {
        panic!("expected a slice update, got {out:?}");
    };
    assert_eq!(s.endpoints.len(), 2);
    // That sync succeeded, so the count starts over (upstream's Forget): the next stale
    // attempt waits 1 s again, not 4 s.
    let change = api.put(pod("c", "10.0.0.3"), T0 + Duration::from_millis(1_020));
    c.handle_change(&api.cache, &change, T0 + Duration::from_millis(1_020));
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_millis(2_020)));
}

/// A headless Service (`clusterIP: None`) of a StatefulSet still gets its EndpointSlices, with
/// upstream's headless label and each pod's hostname (its `subdomain` names the Service).
#[test]
fn headless_service_gets_slices_with_hostnames() {
    let mut h = harness(EndpointSliceConfig::default());
    let mut svc = service_value(json!({"app": "web"}), json!(8080));
    svc["spec"]["clusterIP"] = json!("None");
    h.put(object(svc));
    let mut p = pod_value("web-0", "10.0.0.7", true);
    p["spec"]["hostname"] = json!("web-0");
    p["spec"]["subdomain"] = json!("web");
    h.api.put(object(p), h.now);
    h.start();
    let slices = slices(&h);
    assert_eq!(slices.len(), 1);
    let labels = slices[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(HEADLESS_LABEL).map(String::as_str), Some(""));
    let ep = endpoint(&h, "web-0").expect("endpoint");
    assert_eq!(ep.hostname.as_deref(), Some("web-0"));
    assert_eq!(ep.addresses, vec!["10.0.0.7".to_string()]);
}
