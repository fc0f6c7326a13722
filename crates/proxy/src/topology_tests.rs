//! Topology-aware endpoint choice against upstream's expectations (the cases of
//! `pkg/proxy/topology_test.go` `TestCategorizeEndpoints`, restated as data here), checked on
//! the live plan, the simulator's node view and the rendered rules of both nftables layouts
//! and iptables.

use runtime::Moment;
use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures::{service_json, slice};
use crate::iptables::{IptablesConfig, IptablesRenderer};
use crate::model::{Cidr, Protocol};
use crate::nft::{NftConfig, NftLayout, NftRenderer};
use crate::node_proxy::{Candidates, NodeInputs, NodeProxy, NodeView};
use crate::pacer::PacerConfig;
use crate::plan::{Plan, PlanConfig, Verdict};
use crate::shared_model::SharedModel;
use crate::syncer::Change;
use crate::tracker::Tracker;

const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];
const NODE: &str = "this-node";
const CIP: &str = "172.30.0.41";

/// An endpoint `ip` (port 80) with zone hints, readiness and whether it is on this node.
/// A not-ready endpoint is also not serving.
fn hinted(ip: &str, zones: &[&str], ready: bool, local: bool) -> Value {
    let mut e = json!({"addresses": [ip],
        "conditions": {"ready": ready, "serving": ready, "terminating": false},
        "nodeName": if local { NODE } else { "other-node" }});
    if !zones.is_empty() {
        let zones: Vec<Value> = zones.iter().map(|z| json!({"name": z})).collect();
        e["hints"] = json!({"forZones": zones});
    }
    e
}

/// Serving and terminating, hinted for `zone`.
fn terminating(ip: &str, zone: &str) -> Value {
    json!({"addresses": [ip], "nodeName": "other-node", "hints": {"forZones": [{"name": zone}]},
        "conditions": {"ready": false, "serving": true, "terminating": true}})
}

/// The Service: ClusterIP, or NodePort 30080 when either policy field is given.
fn svc(internal_local: bool, external_local: bool) -> k8s_openapi::api::core::v1::Service {
    let mut spec = json!({"type": "ClusterIP", "clusterIP": CIP,
        "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}],
        "internalTrafficPolicy": if internal_local { "Local" } else { "Cluster" }});
    if external_local {
        spec["type"] = json!("NodePort");
        spec["ports"][0]["nodePort"] = json!(30080);
        spec["externalTrafficPolicy"] = json!("Local");
    }
    service_json("ns", "svc", spec, json!({}))
}

fn tracker(svc: &k8s_openapi::api::core::v1::Service, eps: Vec<Value>) -> Tracker {
    let mut t = Tracker::new();
    t.apply_service(svc);
    t.apply_slice(&slice("ns", "svc", "svc-1", P80, eps));
    t
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| format!("{s}:80")).collect()
}

fn names<'a>(eps: impl Iterator<Item = &'a crate::plan::PlannedEndpoint>) -> BTreeSet<String> {
    eps.map(|e| e.endpoint.addr_string()).collect()
}

/// One case of upstream's table: which endpoints the Cluster chain, the Local chain and all
/// chains together use.
struct Case {
    name: &'static str,
    zone: Option<&'static str>,
    internal_local: bool,
    external_local: bool,
    endpoints: Vec<Value>,
    cluster: &'static [&'static str],
    local: &'static [&'static str],
    all: &'static [&'static str],
}

fn abca() -> Vec<Value> {
    vec![
        hinted("10.1.2.3", &["zone-a"], true, false),
        hinted("10.1.2.4", &["zone-b"], true, false),
        hinted("10.1.2.5", &["zone-c"], true, false),
        hinted("10.1.2.6", &["zone-a"], true, false),
    ]
}

fn cases() -> Vec<Case> {
    let all4: &[&str] = &["10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"];
    vec![
        Case {
            name: "every endpoint hinted, node in zone-a: the zone-a ones",
            zone: Some("zone-a"),
            internal_local: false,
            external_local: false,
            endpoints: abca(),
            cluster: &["10.1.2.3", "10.1.2.6"],
            local: &[],
            all: &["10.1.2.3", "10.1.2.6"],
        },
        Case {
            name: "node without a zone label: no filtering",
            zone: None,
            internal_local: false,
            external_local: false,
            endpoints: abca(),
            cluster: all4,
            local: &[],
            all: all4,
        },
        Case {
            name: "no endpoint hinted for the node's zone: no filtering",
            zone: Some("zone-d"),
            internal_local: false,
            external_local: false,
            endpoints: abca(),
            cluster: all4,
            local: &[],
            all: all4,
        },
        Case {
            name: "a not-ready endpoint hinted for the zone is left out",
            zone: Some("zone-a"),
            internal_local: false,
            external_local: false,
            endpoints: vec![
                hinted("10.1.2.3", &["zone-a"], true, false),
                hinted("10.1.2.4", &["zone-b"], true, false),
                hinted("10.1.2.5", &["zone-c"], true, false),
                hinted("10.1.2.6", &["zone-a"], false, false),
            ],
            cluster: &["10.1.2.3"],
            local: &[],
            all: &["10.1.2.3"],
        },
        Case {
            name: "only not-ready endpoints in the zone: every ready one",
            zone: Some("zone-a"),
            internal_local: false,
            external_local: false,
            endpoints: vec![
                hinted("10.1.2.3", &["zone-a"], false, false),
                hinted("10.1.2.4", &["zone-b"], true, false),
                hinted("10.1.2.5", &["zone-c"], true, false),
                hinted("10.1.2.6", &["zone-a"], false, false),
            ],
            cluster: &["10.1.2.4", "10.1.2.5"],
            local: &[],
            all: &["10.1.2.4", "10.1.2.5"],
        },
        Case {
            name: "one ready endpoint without hints: no filtering",
            zone: Some("zone-a"),
            internal_local: false,
            external_local: false,
            endpoints: vec![
                hinted("10.1.2.3", &["zone-a"], true, false),
                hinted("10.1.2.4", &["zone-b"], true, false),
                hinted("10.1.2.5", &[], true, false),
                hinted("10.1.2.6", &["zone-a"], true, false),
            ],
            cluster: all4,
            local: &[],
            all: all4,
        },
        Case {
            name: "a not-ready endpoint without hints does not stop filtering",
            zone: Some("zone-a"),
            internal_local: false,
            external_local: false,
            endpoints: vec![
                hinted("10.1.2.3", &["zone-a"], true, false),
                hinted("10.1.2.4", &["zone-b"], true, false),
                hinted("10.1.2.5", &[], false, false),
            ],
            cluster: &["10.1.2.3"],
            local: &[],
            all: &["10.1.2.3"],
        },
        Case {
            name: "several hints per endpoint: any endpoint hinted for the zone",
            zone: Some("zone-c"),
            internal_local: false,
            external_local: false,
            endpoints: vec![
                hinted("10.1.2.3", &["zone-a", "zone-b", "zone-c"], true, false),
                hinted("10.1.2.4", &["zone-b", "zone-c"], true, false),
                hinted("10.1.2.5", &["zone-b", "zone-d"], true, false),
                hinted("10.1.2.6", &["zone-c"], true, false),
            ],
            cluster: &["10.1.2.3", "10.1.2.4", "10.1.2.6"],
            local: &[],
            all: &["10.1.2.3", "10.1.2.4", "10.1.2.6"],
        },
        Case {
            name: "externalTrafficPolicy Local: the Local chain ignores topology",
            zone: Some("zone-a"),
            internal_local: false,
            external_local: true,
            endpoints: vec![
                hinted("10.1.2.3", &["zone-a"], true, true),
                hinted("10.1.2.4", &["zone-b"], true, true),
                hinted("10.1.2.5", &["zone-c"], true, false),
                hinted("10.1.2.6", &["zone-a"], true, false),
            ],
            cluster: &["10.1.2.3", "10.1.2.6"],
            local: &["10.1.2.3", "10.1.2.4"],
            all: &["10.1.2.3", "10.1.2.4", "10.1.2.6"],
        },
        Case {
            name: "internalTrafficPolicy Local with a NodePort: Cluster chain filtered, Local not",
            zone: Some("zone-a"),
            internal_local: true,
            external_local: false,
            endpoints: vec![
                hinted("10.1.2.3", &["zone-a"], true, true),
                hinted("10.1.2.4", &["zone-b"], true, true),
                hinted("10.1.2.5", &["zone-c"], true, false),
                hinted("10.1.2.6", &["zone-a"], true, false),
            ],
            cluster: &["10.1.2.3", "10.1.2.6"],
            local: &["10.1.2.3", "10.1.2.4"],
            all: &["10.1.2.3", "10.1.2.4", "10.1.2.6"],
        },
        Case {
            name: "no ready endpoints: serving-terminating ones, hints ignored",
            zone: Some("zone-a"),
            internal_local: false,
            external_local: false,
            endpoints: vec![
                terminating("10.1.2.3", "zone-a"),
                terminating("10.1.2.4", "zone-b"),
            ],
            cluster: &["10.1.2.3", "10.1.2.4"],
            local: &[],
            all: &["10.1.2.3", "10.1.2.4"],
        },
    ]
}

fn service_for(case: &Case) -> k8s_openapi::api::core::v1::Service {
    let mut svc = svc(case.internal_local, case.external_local);
    if case.internal_local
        && !case.external_local
        && let Some(spec) = svc.spec.as_mut()
    {
        // Reachable from outside so the Cluster chain is used (upstream's case has a
        // NodePort with a Cluster external policy).
        spec.type_ = Some("NodePort".into());
        if let Some(p) = spec.ports.as_mut().and_then(|p| p.first_mut()) {
            p.node_port = Some(30080);
        }
    }
    svc
}

fn plan_for(case: &Case) -> Plan {
    let t = tracker(&service_for(case), case.endpoints.clone());
    let cfg = PlanConfig {
        node_name: Some(NODE.into()),
        zone: case.zone.map(str::to_string),
    };
    Plan::build(&t, &cfg)
}

#[test]
fn categorize_endpoints_as_upstream() {
    for case in cases() {
        let plan = plan_for(&case);
        let sp = plan.services().next().expect("one service port");
        assert_eq!(
            names(sp.cluster_endpoints.iter()),
            set(case.cluster),
            "cluster: {}",
            case.name
        );
        assert_eq!(
            names(sp.local_endpoints.iter()),
            set(case.local),
            "local: {}",
            case.name
        );
        assert_eq!(
            names(sp.reachable_endpoints().into_iter()),
            set(case.all),
            "all reachable: {}",
            case.name
        );
    }
}

#[test]
fn the_node_view_answers_as_the_plan() {
    for case in cases() {
        let plan = plan_for(&case);
        let mut model = SharedModel::new();
        model.handle_service(Change::Applied(&service_for(&case)));
        model.handle_slice(Change::Applied(&slice(
            "ns",
            "svc",
            "svc-1",
            P80,
            case.endpoints.clone(),
        )));
        let inputs = NodeInputs {
            node_name: NODE.into(),
            node_ip: None,
            zone: case.zone.map(str::to_string),
            service_cidrs: Vec::new(),
        };
        let snap = model.snapshot();
        let view = NodeView::new(&snap, &inputs);
        let ip = CIP.parse().expect("ip");
        let want = match plan.lookup(ip, Protocol::Tcp, 80, &[]) {
            Verdict::Dnat(sp) => names(sp.endpoints.iter()),
            _ => BTreeSet::new(),
        };
        let got: BTreeSet<String> = match view.lookup(ip, Protocol::Tcp, 80) {
            Candidates::Endpoints(eps) => eps.iter().map(|e| e.addr_string()).collect(),
            _ => BTreeSet::new(),
        };
        assert_eq!(got, want, "{}", case.name);
        let internal = if case.internal_local {
            case.local
        } else {
            case.cluster
        };
        assert_eq!(got, set(internal), "{}", case.name);
    }
}

/// The DNAT targets in rendered text: `dnat to IP:PORT` (nftables upstream layout),
/// `: IP . PORT }` map elements (shared-map), `--to-destination IP:PORT` (iptables).
fn dnat_targets(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(t) = line.split("dnat to ").nth(1) {
            out.insert(t.trim().to_string());
        }
        if let Some(body) = line.strip_prefix("add element ip kube-proxy endpoints-tcp { ") {
            // Batched: `key : value, key : value }`.
            for element in body.trim_end_matches(" }").split(", ") {
                if let Some(t) = element.split(" : ").nth(1) {
                    out.insert(t.replace(" . ", ":"));
                }
            }
        }
        if let Some(t) = line.split("--to-destination ").nth(1) {
            out.insert(t.split_whitespace().next().unwrap_or("").to_string());
        }
    }
    out
}

fn nft(layout: NftLayout) -> NftConfig {
    NftConfig {
        layout,
        cluster_cidr: Cidr::parse("10.0.0.0/8").ok(),
        ..NftConfig::default()
    }
}

/// A PreferClose Service's rules on nodes in zone-a, zone-b and without a zone, in every
/// renderer: each programs only its zone's endpoints (all of them without a zone).
#[test]
fn rendered_rules_keep_the_nodes_zone_in_every_layout() {
    let eps = vec![
        hinted("10.1.2.3", &["zone-a"], true, false),
        hinted("10.1.2.4", &["zone-b"], true, false),
        hinted("10.1.2.5", &["zone-b"], true, false),
    ];
    let t = tracker(&svc(false, false), eps);
    let want = [
        (Some("zone-a"), set(&["10.1.2.3"])),
        (Some("zone-b"), set(&["10.1.2.4", "10.1.2.5"])),
        (None, set(&["10.1.2.3", "10.1.2.4", "10.1.2.5"])),
    ];
    for (zone, want) in want {
        let cfg = PlanConfig {
            node_name: Some(NODE.into()),
            zone: zone.map(str::to_string),
        };
        let plan = Plan::build(&t, &cfg);
        for layout in [NftLayout::Upstream, NftLayout::SharedMap] {
            let text = NftRenderer::new(nft(layout)).render_full(&plan);
            assert_eq!(dnat_targets(&text), want, "{layout:?} in {zone:?}\n{text}");
        }
        let text = IptablesRenderer::new(IptablesConfig::default()).render_full(&plan);
        assert_eq!(dnat_targets(&text), want, "iptables in {zone:?}\n{text}");
    }
}

/// The zone label arriving (or changing) re-plans in a full sync; a hint change in another
/// zone is a partial sync that changes nothing on this node's rules.
#[test]
fn a_zone_change_resyncs_fully_and_other_zones_changes_are_empty() {
    use crate::syncer::{SyncKind, Syncer, SyncerConfig};
    let mut s = Syncer::new(SyncerConfig::default());
    let service = svc(false, false);
    let eps = |b: &str| {
        vec![
            hinted("10.1.2.3", &["zone-a"], true, false),
            hinted(b, &["zone-b"], true, false),
        ]
    };
    s.handle_service(Change::Applied(&service));
    s.handle_slice(Change::Applied(&slice(
        "ns",
        "svc",
        "svc-1",
        P80,
        eps("10.1.2.4"),
    )));
    s.handle_initial_sync_done(Moment::EPOCH);
    let first = s.poll_transaction(Moment::EPOCH).expect("first sync");
    assert_eq!(first.kind, SyncKind::Full);
    s.handle_applied(Ok(()), Moment::from_millis(1));
    assert_eq!(dnat_targets(&first.text), set(&["10.1.2.3", "10.1.2.4"]));
    assert!(s.handle_node_zone(Some("zone-a")));
    let t = s.poll_timeout().expect("a sync is due");
    let second = s.poll_transaction(t).expect("a zone change syncs");
    assert_eq!(second.kind, SyncKind::Full);
    assert_eq!(dnat_targets(&second.text), set(&["10.1.2.3"]));
    s.handle_applied(Ok(()), t + Duration::from_millis(1));
    // The same zone again: nothing to do but delete the chain of zone-b's endpoint.
    assert!(!s.handle_node_zone(Some("zone-a")));
    let later = t + Duration::from_millis(5_000);
    while let Some(txn) = s.poll_transaction(later) {
        assert_eq!(txn.kind, SyncKind::StaleDelete);
        s.handle_applied(Ok(()), later);
    }
    // Zone-b's endpoint moves: zone-a's rules stay as they are.
    s.handle_slice(Change::Applied(&slice(
        "ns",
        "svc",
        "svc-1",
        P80,
        eps("10.1.2.9"),
    )));
    let at = s.poll_timeout().expect("a change is due");
    assert!(
        s.poll_transaction(at).is_none(),
        "nothing to apply in zone-a"
    );
}

/// The simulator's node proxies: a change to zone-b's endpoints needs no sync on a zone-a
/// node, while a zone-b node programs it.
#[test]
fn simulated_nodes_skip_changes_to_other_zones() {
    let node = |name: &str, zone: &str| {
        NodeProxy::new(
            NodeInputs {
                node_name: name.into(),
                node_ip: None,
                zone: Some(zone.into()),
                service_cidrs: Vec::new(),
            },
            PacerConfig::default(),
        )
    };
    let (mut a, mut b) = (node("n-a", "zone-a"), node("n-b", "zone-b"));
    let mut model = SharedModel::new();
    let eps = |bip: &str| {
        vec![
            hinted("10.1.2.3", &["zone-a"], true, false),
            hinted(bip, &["zone-b"], true, false),
        ]
    };
    let changes = [
        model.handle_service(Change::Applied(&svc(false, false))),
        model.handle_slice(Change::Applied(&slice(
            "ns",
            "svc",
            "svc-1",
            P80,
            eps("10.1.2.4"),
        ))),
    ];
    let mut t = Moment::EPOCH;
    for n in [&mut a, &mut b] {
        for c in changes.iter().flatten() {
            n.handle_change(c);
        }
        n.handle_initial_sync_done(Moment::EPOCH);
        t = n.poll_timeout().expect("due");
        assert!(n.poll_transaction(t, &model).is_some());
        n.handle_applied(Ok(()), t + Duration::from_millis(1));
    }
    let change = model
        .handle_slice(Change::Applied(&slice(
            "ns",
            "svc",
            "svc-1",
            P80,
            eps("10.1.2.9"),
        )))
        .expect("a change");
    a.handle_change(&change);
    b.handle_change(&change);
    let later = t + Duration::from_millis(10_000);
    assert!(
        a.poll_transaction(later, &model).is_none(),
        "zone-a: nothing to apply"
    );
    assert!(
        b.poll_transaction(later, &model).is_some(),
        "zone-b programs it"
    );
    let cip = CIP.parse().expect("ip");
    let view = a.view().expect("programmed");
    let Candidates::Endpoints(eps) = view.lookup(cip, Protocol::Tcp, 80) else {
        panic!("zone-a has an endpoint");
    };
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].addr_string(), "10.1.2.3:80");
    assert_eq!(a.programmed_version(), Some(model.version()));
}
