use super::*;
use std::cell::Cell;

use serde_json::json;

fn pair(node: &str, svc: &str) -> (String, String) {
    (node.to_string(), svc.to_string())
}

fn seen(programmed: usize, known: usize) -> ProxySeen {
    ProxySeen {
        programmed,
        known_ready: Some(known),
    }
}

#[test]
fn the_gate_opens_only_when_every_client_node_programmed_an_endpoint_of_its_service() {
    let gate = LoadGate::new([
        pair("b-2", "default/web"),
        pair("a-2", "default/web"),
        pair("a-2", "default/web"),
        pair("a-2", "shop/cart"),
    ]);
    let mut programmed: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let view = |p: &BTreeMap<(&str, &str), usize>, n: &str, s: &str| {
        let c = p
            .iter()
            .find(|((pn, ps), _)| *pn == n && *ps == s)
            .map_or(0, |(_, c)| *c);
        seen(c, 3)
    };
    let pending = |p: &BTreeMap<(&str, &str), usize>| {
        gate.pending(|_| 3, |n, s| view(p, n, s))
            .map(|w| (w.node.to_string(), w.service.to_string(), w.why))
    };
    assert_eq!(
        pending(&programmed),
        Some(("a-2".into(), "default/web".into(), Why::NoEndpoint))
    );
    programmed.insert(("a-2", "default/web"), 3);
    programmed.insert(("b-2", "default/web"), 0);
    programmed.insert(("a-2", "shop/cart"), 1);
    assert_eq!(
        pending(&programmed),
        Some(("b-2".into(), "default/web".into(), Why::NoEndpoint)),
        "a node whose rules list the Service without endpoints still waits"
    );
    programmed.insert(("b-2", "default/web"), 1);
    assert_eq!(pending(&programmed), None);
    assert!(!gate.is_empty());
    assert_eq!(
        gate.services().into_iter().collect::<Vec<_>>(),
        ["default/web", "shop/cart"]
    );
    assert!(
        LoadGate::new([])
            .pending(|_| 0, |_, _| seen(0, 0))
            .is_none()
    );
}

/// The ordering that let zone-b requests leave the zone: zone b's pod is Ready in the API, but
/// the proxy's EndpointSlices list only zones a and c, so zone b has no hinted endpoint and
/// the node programs a and c (the old rule, "some endpoint programmed", opened here).
#[test]
fn prefer_close_a_zone_proxy_that_programmed_the_other_zones_waits_until_it_knows_every_ready_endpoint()
 {
    let gate = LoadGate::new([pair("b-2", "default/web")]);
    let ready = |svc: &str| if svc == "default/web" { 3 } else { 0 };
    let w = gate
        .pending(ready, |_, _| seen(2, 2))
        .expect("a proxy that knows 2 of 3 ready endpoints holds the load back");
    assert_eq!(
        w,
        Pending {
            node: "b-2",
            service: "default/web",
            why: Why::Partial { known: 2, ready: 3 }
        }
    );
    assert_eq!(
        w.to_string(),
        "the proxy of b-2 knew 2 of the 3 ready endpoints of default/web"
    );
    // The next sync: the slice update with zone b's endpoint arrived, the set narrowed to it.
    assert_eq!(gate.pending(ready, |_, _| seen(1, 3)), None);
}

#[test]
fn an_older_agents_line_without_the_ready_count_passes_on_a_programmed_endpoint() {
    let gate = LoadGate::new([pair("b-2", "default/web")]);
    let old = |programmed| ProxySeen {
        programmed,
        known_ready: None,
    };
    assert_eq!(
        gate.pending(|_| 3, |_, _| old(0)).map(|w| w.why),
        Some(Why::NoEndpoint)
    );
    assert_eq!(gate.pending(|_| 3, |_, _| old(2)), None);
}

#[test]
fn the_ready_pods_are_counted_once_per_service_and_only_for_programmed_pairs() {
    let gate = LoadGate::new([
        pair("a-2", "default/web"),
        pair("b-2", "default/web"),
        pair("c-2", "shop/cart"),
    ]);
    let asked = Cell::new(0);
    let ready = |_: &str| {
        asked.set(asked.get() + 1);
        1
    };
    let w = gate.pending(ready, |n, _| seen(usize::from(n != "c-2"), 1));
    assert_eq!(w.map(|w| w.node), Some("c-2"));
    assert_eq!(asked.get(), 1, "web once for both of its nodes, cart never");
}

fn service(selector: serde_json::Value, extra: serde_json::Value) -> Service {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": selector, "ports": [{"port": 80}]},
    });
    for (k, x) in extra.as_object().into_iter().flatten() {
        v["spec"][k] = x.clone();
    }
    serde_json::from_value(v).expect("a Service")
}

fn pod(name: &str, ns: &str, app: &str, ip: Option<&str>, ready: bool) -> Pod {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    });
    if let Some(ip) = ip {
        v["status"]["podIP"] = ip.into();
        v["status"]["podIPs"] = json!([{"ip": ip}]);
    }
    serde_json::from_value(v).expect("a Pod")
}

#[test]
fn ready_pods_counts_what_the_endpoint_controller_will_list_ready() {
    let mut terminating = pod("t", "default", "web", Some("10.244.0.5"), true);
    terminating.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
    );
    let mut done = pod("d", "default", "web", Some("10.244.0.6"), true);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let pods = [
        pod("a", "default", "web", Some("10.244.0.1"), true),
        pod("b", "default", "web", Some("10.244.1.1"), true),
        // Host network: the same address as `b`, one endpoint address.
        pod("h", "default", "web", Some("10.244.1.1"), true),
        pod("n", "default", "web", Some("10.244.2.1"), false),
        pod("x", "default", "web", None, true),
        pod("o", "shop", "web", Some("10.244.0.2"), true),
        pod("l", "default", "cart", Some("10.244.0.3"), true),
        terminating,
        done,
    ];
    let web = service(json!({"app": "web"}), json!({}));
    assert_eq!(ready_pods(&web, &pods), 2);
    let publish = service(
        json!({"app": "web"}),
        json!({"publishNotReadyAddresses": true}),
    );
    assert_eq!(ready_pods(&publish, &pods), 3, "the unready pod counts too");
    assert_eq!(ready_pods(&service(json!({}), json!({})), &pods), 0);
    let external = service(json!({"app": "web"}), json!({"type": "ExternalName"}));
    assert_eq!(ready_pods(&external, &pods), 0);
}
