//! The EndpointSlice controller writing zone hints end to end through the fake API: a
//! PreferClose Service, a `topology-mode: Auto` Service whose hints follow node readiness,
//! and the Events on the Service.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::super::{EndpointSliceConfig, EndpointSliceController};
use crate::Action;
use crate::cache::{Key, Object};
use crate::fake::{Harness, object};

const NS: &str = "default";

/// A Ready node in `zone` with 4 CPUs allocatable.
fn node(name: &str, zone: &str, ready: bool) -> Object {
    object(
        json!({"kind": "Node", "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
        "status": {"allocatable": {"cpu": "4"},
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}),
    )
}

fn pod(name: &str, ip: &str, node: &str) -> Object {
    object(json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
}

fn service(annotations: Value, spec: Value) -> Object {
    let mut s = json!({
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NS, "annotations": annotations},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    });
    if let (Some(o), Some(x)) = (s["spec"].as_object_mut(), spec.as_object()) {
        o.extend(x.clone());
    }
    object(s)
}

/// Three zones, a node each (the third Ready or not), and pods on the given nodes.
fn cluster_with(svc: Object, third_ready: bool, pods_on: &[&str]) -> Harness {
    let mut h = Harness::new(vec![Box::new(EndpointSliceController::new(
        EndpointSliceConfig::default(),
    ))]);
    for (n, z, ready) in [
        ("n1", "zone-a", true),
        ("n2", "zone-b", true),
        ("n3", "zone-c", third_ready),
    ] {
        h.put(node(n, z, ready));
    }
    h.put(svc);
    for (i, n) in pods_on.iter().enumerate() {
        h.api.put(
            pod(&format!("p{i}"), &format!("10.0.0.{}", i + 1), n),
            h.now,
        );
    }
    h.start();
    h
}

/// Three Ready zones and two pods per zone.
fn cluster(svc: Object) -> Harness {
    cluster_with(svc, true, &["n1", "n1", "n2", "n2", "n3", "n3"])
}

/// (address, zone, hinted zones) of every endpoint.
fn hints(h: &Harness) -> Vec<(String, String, String)> {
    let slices: Vec<Arc<EndpointSlice>> = h
        .api
        .cache
        .slices_of(&Key::new(NS, "web"))
        .cloned()
        .collect();
    let mut out: Vec<(String, String, String)> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let zones = e
                .hints
                .as_ref()
                .and_then(|h| h.for_zones.clone())
                .unwrap_or_default();
            let zones: Vec<String> = zones.into_iter().map(|z| z.name).collect();
            (
                e.addresses[0].clone(),
                e.zone.clone().unwrap_or_default(),
                zones.join(","),
            )
        })
        .collect();
    out.sort();
    out
}

fn events(h: &Harness) -> Vec<(&'static str, String)> {
    h.events
        .iter()
        .filter(|e| e.component == "endpoint-slice-controller")
        .map(|e| (e.reason, e.message.clone()))
        .collect()
}

fn writes(h: &Harness) -> usize {
    h.api
        .log
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::Create(Object::EndpointSlice(_)) | Action::Update(Object::EndpointSlice(_))
            )
        })
        .count()
}

#[test]
fn prefer_close_hints_each_endpoint_for_its_zone_and_stays_quiet() {
    let mut h = cluster(service(
        json!({}),
        json!({"trafficDistribution": "PreferClose"}),
    ));
    for (_, zone, hinted) in hints(&h) {
        assert_eq!(zone, hinted);
    }
    assert_eq!(hints(&h).len(), 6);
    assert!(events(&h).is_empty());
    // Re-syncing writes nothing: the hints are what the controller would write.
    let before = writes(&h);
    h.put(service(
        json!({}),
        json!({"trafficDistribution": "PreferClose"}),
    ));
    h.advance(Duration::from_millis(5_000));
    assert_eq!(writes(&h), before);
    // trafficDistribution removed: hints go.
    h.put(service(json!({}), json!({})));
    h.settle();
    assert!(
        hints(&h).iter().all(|(_, _, z)| z.is_empty()),
        "{:?}",
        hints(&h)
    );
}

#[test]
fn auto_mode_allocates_by_cpu_and_follows_node_readiness() {
    let auto = json!({"service.kubernetes.io/topology-mode": "Auto"});
    let mut h = cluster_with(
        service(auto, json!({})),
        false,
        &["n1", "n1", "n1", "n2", "n2", "n2"],
    );
    // Zones a and b share the CPU: each endpoint hinted for its own zone.
    for (_, zone, hinted) in hints(&h) {
        assert_eq!(zone, hinted);
    }
    assert_eq!(
        events(&h),
        [(
            "TopologyAwareHintsEnabled",
            "Topology Aware Hints has been enabled, addressType: IPv4".into()
        )]
    );
    // Zone-c's node becomes Ready: with a third of the CPU and none of the endpoints, zone-c
    // would be overloaded, so the Service is re-synced without any pod change and one
    // endpoint of zone a and one of zone b are hinted for zone c.
    h.put(node("n3", "zone-c", true));
    h.settle();
    let now = hints(&h);
    let per = |z: &str| now.iter().filter(|(_, _, h)| h == z).count();
    assert_eq!(
        (per("zone-a"), per("zone-b"), per("zone-c")),
        (2, 2, 2),
        "{now:?}"
    );
    assert_eq!(events(&h).len(), 1, "still enabled: no new Event");
    // Only zone a left Ready: hints off, with upstream's Warning.
    h.put(node("n2", "zone-b", false));
    h.put(node("n3", "zone-c", false));
    h.settle();
    assert!(
        hints(&h).iter().all(|(_, _, z)| z.is_empty()),
        "{:?}",
        hints(&h)
    );
    assert_eq!(
        events(&h).last(),
        Some(&(
            "TopologyAwareHintsDisabled",
            "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes, addressType: IPv4".to_string()
        ))
    );
    // The annotation removed while hints are off: no further Event.
    let n = events(&h).len();
    h.put(service(json!({}), json!({})));
    h.settle();
    assert_eq!(events(&h).len(), n);
}

#[test]
fn auto_annotation_removed_warns_and_clears() {
    let mut h = cluster(service(
        json!({"service.kubernetes.io/topology-aware-hints": "auto"}),
        json!({}),
    ));
    assert!(hints(&h).iter().all(|(_, zone, z)| zone == z));
    h.put(service(json!({}), json!({})));
    h.settle();
    assert!(hints(&h).iter().all(|(_, _, z)| z.is_empty()));
    assert_eq!(
        events(&h).last(),
        Some(&(
            "TopologyAwareHintsDisabled",
            "Topology Aware Hints has been disabled, addressType: IPv4".to_string()
        ))
    );
}

/// A node's zone changes under a hinted Service: its pods on the node and the new zone CPU
/// shares (which overload the Service's hints) both point at the Service, which is synced
/// once (upstream queues it once), not a second time against its own writes still in flight
/// (a stale-cache failure and a backoff retry).
#[test]
fn node_zone_change_syncs_a_hinted_service_once() {
    let auto = json!({"service.kubernetes.io/topology-mode": "Auto"});
    let mut h = cluster(service(auto, json!({})));
    assert_eq!(h.poll_timeout(), None);
    let before = writes(&h);
    // Zone c's node moves to zone a: zone a now has two thirds of the CPU.
    h.put(node("n3", "zone-a", true));
    assert_eq!(h.poll_timeout(), None, "a retry with backoff was queued");
    assert!(h.failures.is_empty());
    assert_eq!(writes(&h), before + 1);
    let now = hints(&h);
    let per = |z: &str| now.iter().filter(|(_, _, h)| h == z).count();
    assert_eq!((per("zone-a"), per("zone-b")), (4, 2), "{now:?}");
}
