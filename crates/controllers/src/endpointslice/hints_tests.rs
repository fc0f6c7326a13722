//! Hint allocation against upstream's expectations (`topologycache_test.go` `TestAddHints`,
//! `TestSetNodes`, `utils_test.go`; `trafficdist_test.go`), restated as data here.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use serde_json::{Value, json};

use super::super::reconcile::Plan;
use super::super::topology::{TopologyCache, msg, service_overloaded};
use super::*;

/// A node in `zone` with `cpu` allocatable, Ready or not, with extra labels.
fn node(zone: &str, cpu: &str, ready: bool, extra: Value) -> Node {
    let mut labels = json!({"topology.kubernetes.io/zone": zone});
    if let (Some(l), Some(x)) = (labels.as_object_mut(), extra.as_object()) {
        l.extend(x.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": "n", "labels": labels},
        "status": {"allocatable": {"cpu": cpu},
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .expect("node")
}

fn cache_with(nodes: &[Node]) -> TopologyCache {
    let mut c = TopologyCache::default();
    for (i, n) in nodes.iter().enumerate() {
        c.set_node(&format!("n{i}"), Some(n));
    }
    c
}

/// A cache whose zones have CPU in these proportions (in cores).
fn cache_ratios(zones: &[(&str, u32)]) -> TopologyCache {
    let nodes: Vec<Node> = zones
        .iter()
        .map(|(z, c)| node(z, &c.to_string(), true, json!({})))
        .collect();
    cache_with(&nodes)
}

fn ep(ip: &str, zone: &str, ready: Option<bool>) -> Value {
    let mut e = json!({"addresses": [ip], "zone": zone});
    if let Some(r) = ready {
        e["conditions"] = json!({"ready": r});
    }
    e
}

fn eps_slice(name: &str, eps: Vec<Value>) -> EndpointSlice {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "addressType": "IPv4", "endpoints": eps}),
    )
    .expect("slice")
}

fn hints_of(s: &EndpointSlice) -> Vec<Option<String>> {
    s.endpoints.iter().map(hint_of).collect()
}

fn hint_of(e: &Endpoint) -> Option<String> {
    let z = e.hints.as_ref()?.for_zones.as_ref()?;
    Some(
        z.iter()
            .map(|z| z.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn h(z: &str) -> Option<String> {
    Some(z.to_string())
}

fn auto_service(annotations: Value, spec: Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"namespace": "ns", "name": "svc", "annotations": annotations},
        "spec": spec}),
    )
    .expect("service")
}

fn key() -> Key {
    Key::new("ns", "svc")
}

fn auto() -> Service {
    auto_service(
        json!({"service.kubernetes.io/topology-mode": "Auto"}),
        json!({}),
    )
}

fn run(
    cache: &mut TopologyCache,
    svc: &Service,
    plan: &mut Plan,
    existing: &[EndpointSlice],
) -> Vec<HintEvent> {
    let arcs: Vec<Arc<EndpointSlice>> = existing.iter().cloned().map(Arc::new).collect();
    let refs: Vec<&Arc<EndpointSlice>> = arcs.iter().collect();
    reconcile_hints(cache, svc, &key(), plan, &refs, false)
}

fn reasons(events: &[HintEvent]) -> Vec<(&'static str, String)> {
    events
        .iter()
        .map(|e| (e.reason, e.message.clone()))
        .collect()
}

#[test]
fn set_nodes_ratios_as_upstream() {
    type Case = (&'static str, Vec<Node>, Option<Vec<(&'static str, f64)>>);
    let cases: Vec<Case> = vec![
        ("no nodes", vec![], None),
        (
            "one node",
            vec![node("zone-a", "1000m", true, json!({}))],
            None,
        ),
        (
            "one zone",
            vec![
                node("zone-a", "1000m", true, json!({})),
                node("zone-a", "1000m", true, json!({})),
            ],
            None,
        ),
        (
            "two zones",
            vec![
                node("zone-a", "1000m", true, json!({})),
                node("zone-b", "1000m", true, json!({})),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "a not-ready node leaves one zone",
            vec![
                node("zone-a", "1000m", false, json!({})),
                node("zone-b", "1000m", true, json!({})),
            ],
            None,
        ),
        (
            "a control-plane node does not count",
            vec![
                node("zone-a", "1000m", true, json!({})),
                node(
                    "zone-b",
                    "1000m",
                    true,
                    json!({"node-role.kubernetes.io/control-plane": ""}),
                ),
            ],
            None,
        ),
        (
            "a not-ready node in a zone with a ready one",
            vec![
                node("zone-a", "1000m", true, json!({})),
                node("zone-b", "1000m", true, json!({})),
                node("zone-b", "1000m", false, json!({})),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "a ready node without CPU disables hints",
            vec![
                node("zone-a", "1000m", true, json!({})),
                node("zone-b", "1000m", true, json!({})),
                node("zone-b", "0", true, json!({})),
            ],
            None,
        ),
        (
            "three zones by CPU",
            vec![
                node("zone-a", "1000m", true, json!({})),
                node("zone-a", "1000m", true, json!({})),
                node("zone-a", "1000m", true, json!({})),
                node("zone-a", "2000m", true, json!({})),
                node("zone-b", "3000m", true, json!({})),
                node("zone-b", "1500m", true, json!({})),
                node("zone-c", "500m", true, json!({})),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.45), ("zone-c", 0.05)]),
        ),
    ];
    for (name, nodes, want) in cases {
        let got = cache_with(&nodes).cpu_ratios();
        let want: Option<BTreeMap<String, f64>> =
            want.map(|w| w.into_iter().map(|(z, r)| (z.to_string(), r)).collect());
        assert_eq!(got, want, "{name}");
    }
    // Deleting a node takes its CPU back out.
    let mut c = cache_with(&[
        node("zone-a", "1", true, json!({})),
        node("zone-b", "1", true, json!({})),
    ]);
    assert!(c.set_node("n1", None));
    assert_eq!(c.cpu_ratios(), None);
    assert!(!c.set_node("n1", None), "nothing changed");
}

#[test]
fn allocation_safeguards_as_upstream() {
    let mut c = TopologyCache::default();
    let e = c.allocations(3).expect_err("no nodes");
    assert_eq!(e.message, msg::INSUFFICIENT_NODE_INFO);
    c = cache_ratios(&[("zone-a", 30), ("zone-b", 40), ("zone-c", 30)]);
    let e = c.allocations(2).expect_err("fewer endpoints than zones");
    assert_eq!(
        e.message,
        "Insufficient number of endpoints (2 endpoints, 3 zones)"
    );
    assert_eq!(e.reason, "TopologyAwareHintsDisabled");
    // 3 endpoints over 5/5/90: zone-c's minimum ceil(2.7/1.2)=3 leaves none for the others.
    c = cache_ratios(&[("zone-a", 5), ("zone-b", 5), ("zone-c", 90)]);
    let e = c.allocations(3).expect_err("overload");
    assert_eq!(
        e.message,
        "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold (3 endpoints, 3 zones)"
    );
    // 10 endpoints over 35/35/30: minimum ceil(3.5/1.2)=3, ceil(3/1.2)=3; maximum = min + 1.
    c = cache_ratios(&[("zone-a", 35), ("zone-b", 35), ("zone-c", 30)]);
    let a = c.allocations(10).expect("allocates");
    assert_eq!((a["zone-a"].minimum, a["zone-a"].maximum), (3, 4));
    assert_eq!((a["zone-c"].minimum, a["zone-c"].maximum), (3, 4));
    assert!((a["zone-a"].desired - 3.5).abs() < 1e-9);
}

#[test]
fn overloaded_as_upstream() {
    let ratios: BTreeMap<String, f64> =
        [("zone-a".to_string(), 0.5), ("zone-b".to_string(), 0.5)].into();
    let counts = |v: &[(&str, usize)]| v.iter().map(|(z, n)| (z.to_string(), *n)).collect();
    assert!(!service_overloaded(&counts(&[]), &ratios), "no hints");
    assert!(
        service_overloaded(&counts(&[("zone-a", 2)]), &BTreeMap::new()),
        "no ratios"
    );
    assert!(
        service_overloaded(&counts(&[("zone-a", 2)]), &ratios),
        "a zone without any"
    );
    // 10 endpoints, 50 %: at least ceil(5/1.2)=5 each.
    assert!(!service_overloaded(
        &counts(&[("zone-a", 5), ("zone-b", 5)]),
        &ratios
    ));
    assert!(service_overloaded(
        &counts(&[("zone-a", 6), ("zone-b", 4)]),
        &ratios
    ));
}

#[test]
fn add_hints_as_upstream() {
    // No node information: Warning, no hints, nothing cached.
    let mut c = TopologyCache::default();
    let mut plan = Plan {
        creates: vec![eps_slice("", vec![ep("10.1.2.3", "zone-a", Some(true))])],
        ..Plan::default()
    };
    let ev = run(&mut c, &auto(), &mut plan, &[]);
    assert_eq!(
        reasons(&ev),
        [(
            "TopologyAwareHintsDisabled",
            format!("{}, addressType: IPv4", msg::INSUFFICIENT_NODE_INFO)
        )]
    );
    assert_eq!(hints_of(&plan.creates[0]), [None]);
    assert!(!c.has_populated_hints(&key()));

    // Two endpoints for three zones.
    let mut c = cache_ratios(&[("zone-a", 30), ("zone-b", 40), ("zone-c", 30)]);
    let mut plan = Plan {
        creates: vec![eps_slice(
            "",
            vec![
                ep("10.1.2.3", "zone-a", Some(true)),
                ep("10.1.2.4", "zone-b", Some(true)),
            ],
        )],
        ..Plan::default()
    };
    let ev = run(&mut c, &auto(), &mut plan, &[]);
    assert_eq!(
        reasons(&ev),
        [(
            "TopologyAwareHintsDisabled",
            "Insufficient number of endpoints (2 endpoints, 3 zones), addressType: IPv4"
                .to_string()
        )]
    );
    assert_eq!(hints_of(&plan.creates[0]), [None, None]);

    // Two endpoints for two zones; not-ready and unknown-readiness endpoints get none.
    let mut c = cache_ratios(&[("zone-a", 45), ("zone-b", 55)]);
    let mut plan = Plan {
        creates: vec![eps_slice(
            "",
            vec![
                ep("10.1.2.3", "zone-a", Some(true)),
                ep("10.1.2.4", "zone-b", Some(true)),
                ep("10.1.2.5", "zone-b", Some(false)),
                ep("10.1.2.6", "zone-b", None),
            ],
        )],
        ..Plan::default()
    };
    let ev = run(&mut c, &auto(), &mut plan, &[]);
    assert_eq!(
        reasons(&ev),
        [(
            "TopologyAwareHintsEnabled",
            "Topology Aware Hints has been enabled, addressType: IPv4".to_string()
        )]
    );
    assert!(ev[0].normal);
    assert_eq!(
        hints_of(&plan.creates[0]),
        [h("zone-a"), h("zone-b"), None, None]
    );
    assert!(c.has_populated_hints(&key()));
    // Enabled already: no second Event.
    let ev = run(&mut c, &auto(), &mut plan, &[]);
    assert!(ev.is_empty());
}

#[test]
fn add_hints_redistributes_within_the_threshold() {
    // Upstream's "slices to create and update within 3 zone threshold": zone-a has 5 of 10
    // endpoints for a 35 % share, zone-b 2: one zone-a endpoint is hinted for zone-b.
    let mut c = cache_ratios(&[("zone-a", 35), ("zone-b", 35), ("zone-c", 30)]);
    let mut plan = Plan {
        creates: vec![
            eps_slice(
                "",
                vec![
                    ep("10.1.2.3", "zone-a", Some(true)),
                    ep("10.1.2.4", "zone-b", Some(true)),
                ],
            ),
            eps_slice(
                "",
                vec![
                    ep("10.1.3.3", "zone-c", Some(true)),
                    ep("10.1.3.4", "zone-c", Some(true)),
                    ep("10.1.3.5", "zone-a", Some(true)),
                ],
            ),
        ],
        updates: vec![
            eps_slice(
                "u1",
                vec![
                    ep("10.2.2.3", "zone-a", Some(true)),
                    ep("10.2.2.4", "zone-a", Some(true)),
                ],
            ),
            eps_slice(
                "u2",
                vec![
                    ep("10.2.3.3", "zone-b", Some(true)),
                    ep("10.2.3.4", "zone-c", Some(true)),
                    ep("10.2.3.5", "zone-a", Some(true)),
                ],
            ),
        ],
        deletes: Vec::new(),
    };
    let existing = plan.updates.clone();
    let ev = run(&mut c, &auto(), &mut plan, &existing);
    assert_eq!(ev.len(), 1);
    assert_eq!(hints_of(&plan.creates[0]), [h("zone-b"), h("zone-b")]);
    assert_eq!(
        hints_of(&plan.creates[1]),
        [h("zone-c"), h("zone-c"), h("zone-a")]
    );
    assert_eq!(hints_of(&plan.updates[0]), [h("zone-a"), h("zone-a")]);
    assert_eq!(
        hints_of(&plan.updates[1]),
        [h("zone-b"), h("zone-c"), h("zone-a")]
    );
    assert_eq!(plan.updates.len(), 2, "no unchanged slice to rewrite");
}

#[test]
fn unchanged_slices_are_rewritten_only_when_their_hints_are_wrong() {
    let mut c = cache_ratios(&[("zone-a", 50), ("zone-b", 50)]);
    let good = |name: &str| {
        let mut s = eps_slice(
            name,
            vec![
                ep("10.0.0.1", "zone-a", Some(true)),
                ep("10.0.0.2", "zone-b", Some(true)),
            ],
        );
        s.endpoints[0].hints = hint("zone-a");
        s.endpoints[1].hints = hint("zone-b");
        s
    };
    let mut plan = Plan::default();
    run(&mut c, &auto(), &mut plan, &[good("s1")]);
    assert!(plan.updates.is_empty(), "valid hints stay");
    // An unchanged slice without hints becomes an update with them.
    let mut bare = good("s2");
    bare.endpoints[1].hints = None;
    let mut plan = Plan::default();
    run(&mut c, &auto(), &mut plan, &[bare]);
    assert_eq!(plan.updates.len(), 1);
    assert_eq!(hints_of(&plan.updates[0]), [h("zone-a"), h("zone-b")]);
    assert_eq!(plan.updates[0].metadata.name.as_deref(), Some("s2"));
}

#[test]
fn annotation_removed_drops_hints_with_a_warning() {
    let mut c = cache_ratios(&[("zone-a", 50), ("zone-b", 50)]);
    let slice = |hinted: bool| {
        let mut s = eps_slice(
            "s1",
            vec![
                ep("10.0.0.1", "zone-a", Some(true)),
                ep("10.0.0.2", "zone-b", Some(true)),
            ],
        );
        if hinted {
            s.endpoints[0].hints = hint("zone-a");
            s.endpoints[1].hints = hint("zone-b");
        }
        s
    };
    let mut plan = Plan::default();
    run(&mut c, &auto(), &mut plan, &[slice(false)]);
    assert!(c.has_populated_hints(&key()));
    let plain = auto_service(json!({}), json!({}));
    let mut plan = Plan::default();
    let ev = run(&mut c, &plain, &mut plan, &[slice(true)]);
    assert_eq!(
        reasons(&ev),
        [(
            "TopologyAwareHintsDisabled",
            "Topology Aware Hints has been disabled, addressType: IPv4".to_string()
        )]
    );
    assert_eq!(hints_of(&plan.updates[0]), [None, None]);
    assert!(!c.has_populated_hints(&key()));
    // Next time: nothing to say, nothing to write.
    let mut plan = Plan::default();
    assert!(run(&mut c, &plain, &mut plan, &[slice(false)]).is_empty());
    assert!(plan.updates.is_empty());
}

#[test]
fn an_endpoint_without_zone_disables_hints() {
    let mut c = cache_ratios(&[("zone-a", 50), ("zone-b", 50)]);
    let mut s = eps_slice(
        "",
        vec![
            ep("10.0.0.1", "zone-a", Some(true)),
            ep("10.0.0.2", "zone-b", Some(true)),
        ],
    );
    s.endpoints[1].zone = None;
    let mut plan = Plan {
        creates: vec![s],
        ..Plan::default()
    };
    let ev = run(&mut c, &auto(), &mut plan, &[]);
    assert_eq!(
        reasons(&ev),
        [(
            "TopologyAwareHintsDisabled",
            format!("{}, addressType: IPv4", msg::NO_ZONE_SPECIFIED)
        )]
    );
    assert_eq!(hints_of(&plan.creates[0]), [None, None]);
}

#[test]
fn hints_annotation_values_as_upstream() {
    let enabled =
        |a: Value| hints_enabled(auto_service(a, json!({})).metadata.annotations.as_ref());
    assert!(enabled(
        json!({"service.kubernetes.io/topology-mode": "Auto"})
    ));
    assert!(enabled(
        json!({"service.kubernetes.io/topology-mode": "auto"})
    ));
    assert!(!enabled(
        json!({"service.kubernetes.io/topology-mode": "aUto"})
    ));
    assert!(enabled(
        json!({"service.kubernetes.io/topology-aware-hints": "auto"})
    ));
    // The deprecated annotation wins when both are set.
    assert!(!enabled(
        json!({"service.kubernetes.io/topology-aware-hints": "disabled",
        "service.kubernetes.io/topology-mode": "Auto"})
    ));
    assert!(!enabled(json!({})));
}

#[test]
fn prefer_close_hints_each_ready_endpoint_for_its_zone() {
    let mut c = TopologyCache::default();
    let svc = auto_service(json!({}), json!({"trafficDistribution": "PreferClose"}));
    let no_zone = json!({"addresses": ["10.0.0.3"], "conditions": {"ready": true}});
    let mut plan = Plan {
        creates: vec![eps_slice(
            "",
            vec![
                ep("10.0.0.1", "zone-a", Some(true)),
                ep("10.0.0.2", "zone-b", Some(false)),
                no_zone,
            ],
        )],
        ..Plan::default()
    };
    // An unchanged slice with a wrong hint becomes an update; a right one stays.
    let mut wrong = eps_slice("s1", vec![ep("10.0.1.1", "zone-a", Some(true))]);
    wrong.endpoints[0].hints = hint("zone-b");
    let mut right = eps_slice("s2", vec![ep("10.0.2.1", "zone-c", Some(true))]);
    right.endpoints[0].hints = hint("zone-c");
    let ev = run(&mut c, &svc, &mut plan, &[wrong, right]);
    assert!(ev.is_empty(), "PreferClose records no Events");
    assert_eq!(hints_of(&plan.creates[0]), [h("zone-a"), None, None]);
    assert_eq!(plan.updates.len(), 1);
    assert_eq!(plan.updates[0].metadata.name.as_deref(), Some("s1"));
    assert_eq!(hints_of(&plan.updates[0]), [h("zone-a")]);
    // Even with one endpoint and one zone: no safeguards, unlike Auto.
    let mut plan = Plan {
        creates: vec![eps_slice("", vec![ep("10.0.0.1", "zone-a", Some(true))])],
        ..Plan::default()
    };
    run(&mut c, &svc, &mut plan, &[]);
    assert_eq!(hints_of(&plan.creates[0]), [h("zone-a")]);
    // The annotation wins over trafficDistribution.
    let both = auto_service(
        json!({"service.kubernetes.io/topology-mode": "Auto"}),
        json!({"trafficDistribution": "PreferClose"}),
    );
    let mut plan = Plan {
        creates: vec![eps_slice("", vec![ep("10.0.0.1", "zone-a", Some(true))])],
        ..Plan::default()
    };
    let ev = run(&mut c, &both, &mut plan, &[]);
    assert_eq!(
        ev[0].message,
        format!("{}, addressType: IPv4", msg::INSUFFICIENT_NODE_INFO)
    );
    assert_eq!(hints_of(&plan.creates[0]), [None]);
}

#[test]
fn without_either_hints_are_removed_from_unchanged_slices() {
    let mut c = TopologyCache::default();
    let mut s = eps_slice("s1", vec![ep("10.0.1.1", "zone-a", Some(true))]);
    s.endpoints[0].hints = hint("zone-a");
    let mut plan = Plan::default();
    let ev = run(&mut c, &auto_service(json!({}), json!({})), &mut plan, &[s]);
    assert!(ev.is_empty(), "the cache never had hints for it");
    assert_eq!(hints_of(&plan.updates[0]), [None]);
}
