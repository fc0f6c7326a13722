//! The shared model's data-plane answers against the live plan and the rendered nftables
//! rules for the same inputs (NodePorts against the plan's external lookup): generated Services and slices (Cluster and Local policies,
//! ready / serving / terminating endpoints on several nodes, duplicate addresses across
//! slices), every node, every version kept.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::*;
use crate::fixtures::{service_json, slice};
use crate::model::Cidr;
use crate::nft::{NftConfig, NftRenderer};
use crate::node_proxy::{Candidates, ExternalCandidates, NodeInputs, NodeView};
use crate::plan::{ExternalVerdict, NoEndpoints, Plan, PlanConfig, Source, Verdict};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const SERVICES: u32 = 8;

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).expect("cidr")
}

/// The zone label of a generated node: node-c has none.
fn zone_of(node: &str) -> Option<String> {
    match node {
        "node-a" => Some("zone-a".into()),
        "node-b" => Some("zone-b".into()),
        _ => None,
    }
}

fn inputs(node: &str) -> NodeInputs {
    NodeInputs {
        node_name: node.to_string(),
        node_ip: None,
        zone: zone_of(node),
        service_cidrs: vec![cidr("172.30.0.0/16")],
    }
}

fn ports(i: u32) -> Vec<(&'static str, u16, &'static str)> {
    if i.is_multiple_of(3) {
        vec![("p80", 80, "TCP"), ("dns", 53, "UDP")]
    } else {
        vec![("p80", 80, "TCP")]
    }
}

/// A Service `ns1/svcI` at 172.30.0.(I+1): ClusterIP or NodePort, each traffic policy at
/// random.
fn gen_service(rng: &mut ChaCha8Rng, i: u32) -> Service {
    let ports: Vec<Value> = ports(i)
        .iter()
        .enumerate()
        .map(|(k, (n, p, proto))| {
            json!({"name": n, "port": p, "protocol": proto, "nodePort": 30000 + i * 4 + k as u32})
        })
        .collect();
    let node_port = rng.random_bool(0.3);
    let mut spec = json!({
        "type": if node_port { "NodePort" } else { "ClusterIP" },
        "clusterIP": format!("172.30.0.{}", i + 1),
        "ports": ports,
        "internalTrafficPolicy": if rng.random_bool(0.4) { "Local" } else { "Cluster" },
    });
    if node_port && let Some(o) = spec.as_object_mut() {
        let etp = if rng.random_bool(0.5) {
            "Local"
        } else {
            "Cluster"
        };
        o.insert("externalTrafficPolicy".into(), json!(etp));
    }
    if !node_port && let Some(ps) = spec["ports"].as_array_mut() {
        for p in ps {
            if let Some(o) = p.as_object_mut() {
                o.remove("nodePort");
            }
        }
    }
    service_json("ns1", &format!("svc{i}"), spec, json!({}))
}

/// An endpoint with random conditions on a random node (or none) and mostly one or two
/// zone hints (so some ports have hints on every ready endpoint, some not); addresses drawn
/// from a small pool so two slices sometimes hold the same one.
fn gen_endpoint(rng: &mut ChaCha8Rng, i: u32) -> Value {
    let ip = format!("10.1.{i}.{}", rng.random_range(1..8));
    let node = match rng.random_range(0..4) {
        3 => Value::Null,
        n => json!(NODES[n]),
    };
    let mut e = json!({"addresses": [ip], "nodeName": node,
        "conditions": {"ready": rng.random_bool(0.6), "serving": rng.random_bool(0.7),
                       "terminating": rng.random_bool(0.4)}});
    if node.is_null()
        && let Some(o) = e.as_object_mut()
    {
        o.remove("nodeName");
    }
    let zones = ["zone-a", "zone-b", "zone-c"];
    let hints: Vec<Value> = match rng.random_range(0..10) {
        0 => Vec::new(),
        1 => vec![json!({"name": zones[0]}), json!({"name": zones[2]})],
        n => vec![json!({"name": zones[n % 3]})],
    };
    if !hints.is_empty()
        && let Some(o) = e.as_object_mut()
    {
        o.insert("hints".into(), json!({"forZones": hints}));
    }
    e
}

fn gen_slice(rng: &mut ChaCha8Rng, i: u32, name: &str) -> EndpointSlice {
    let n = rng.random_range(0..6);
    let eps = (0..n).map(|_| gen_endpoint(rng, i)).collect();
    slice("ns1", &format!("svc{i}"), name, &ports(i), eps)
}

fn nft_cfg() -> NftConfig {
    NftConfig {
        cluster_cidr: Some(cidr("10.0.0.0/8")),
        service_cidrs: vec![cidr("172.30.0.0/16")],
        nodeport_ips: vec!["192.168.0.2".parse().expect("ip")],
        ..NftConfig::default()
    }
}

/// What the rendered rules do with `dst . proto . port`: the `dnat to` targets its
/// `service-ips` element leads to through the chain's numgen vmap, or the
/// `no-endpoint-services` verdict.
fn rendered(text: &str, dst: Ipv4Addr, proto: Protocol, port: u16) -> Result<Targets, String> {
    let key = format!("{{ {dst} . {} . {port} ", proto.lower());
    let element = |map: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("add element ip kube-proxy {map} {key}")))
    };
    if let Some(line) = element("service-ips") {
        let chain = line
            .split(": goto ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .ok_or("service-ips element without goto")?;
        let vmap = text
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "add rule ip kube-proxy {chain} numgen random mod "
                ))
            })
            .ok_or_else(|| format!("{chain} has no numgen vmap"))?;
        let mut out = BTreeSet::new();
        for ep_chain in vmap.split("goto endpoint-").skip(1) {
            let ep_chain = ep_chain.split(' ').next().unwrap_or("");
            let prefix = format!("add rule ip kube-proxy endpoint-{ep_chain} meta l4proto ");
            let dnat = text
                .lines()
                .find(|l| l.starts_with(&prefix))
                .and_then(|l| l.split("dnat to ").nth(1))
                .ok_or_else(|| format!("endpoint-{ep_chain} has no dnat"))?;
            let (ip, port) = dnat.split_once(':').ok_or("dnat without port")?;
            out.insert((
                ip.parse::<Ipv4Addr>().map_err(|e| e.to_string())?,
                port.parse::<u16>().map_err(|e| e.to_string())?,
            ));
        }
        return Ok(Targets::Endpoints(out));
    }
    if let Some(line) = element("no-endpoint-services") {
        return Ok(Targets::NoEndpoints(if line.ends_with(": drop }") {
            NoEndpoints::Drop
        } else if line.ends_with(": goto reject-chain }") {
            NoEndpoints::Reject
        } else {
            return Err(format!("unknown verdict: {line}"));
        }));
    }
    Err(format!("no rule for {key}"))
}

#[derive(Debug, PartialEq, Eq)]
enum Targets {
    Endpoints(BTreeSet<(Ipv4Addr, u16)>),
    NoEndpoints(NoEndpoints),
}

fn from_view(c: Candidates<'_>) -> Targets {
    match c {
        Candidates::Endpoints(eps) => {
            assert!(!eps.is_empty(), "Endpoints is never empty");
            Targets::Endpoints(eps.iter().map(|e| (e.ip, e.port)).collect())
        }
        Candidates::NoEndpoints(v) => Targets::NoEndpoints(v),
        other => panic!("a service port answered {other:?}"),
    }
}

fn from_plan(v: Verdict<'_>) -> Targets {
    match v {
        Verdict::Dnat(sp) => Targets::Endpoints(
            sp.endpoints
                .iter()
                .map(|e| (e.endpoint.ip, e.endpoint.port))
                .collect(),
        ),
        Verdict::NoEndpoints(v) => Targets::NoEndpoints(v),
        other => panic!("a service port's plan answered {other:?}"),
    }
}

/// One node's live plan and rendered rules for `tracker`, checked against `snap`'s view.
fn check_node(tracker: &Tracker, snap: &Snapshot, node: &str) -> usize {
    let cfg = PlanConfig {
        node_name: Some(node.to_string()),
        zone: zone_of(node),
    };
    let plan = Plan::build(tracker, &cfg);
    let text = NftRenderer::new(nft_cfg()).render_full(&plan);
    let node_inputs = inputs(node);
    let view = NodeView::new(snap, &node_inputs);
    assert_eq!(plan.len(), snap.len(), "same service ports");
    let mut checked = 0;
    for sp in plan.services() {
        let p = &sp.port;
        let (ip, proto, port) = (p.cluster_ip, p.name.protocol, p.port);
        let got = from_view(view.lookup(ip, proto, port));
        let cidrs = [cidr("172.30.0.0/16")];
        assert_eq!(
            got,
            from_plan(plan.lookup(ip, proto, port, &cidrs)),
            "{}",
            p.name
        );
        let want = rendered(&text, ip, proto, port).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(got, want, "{} on {node}", p.name);
        if let Some(np) = p.node_port {
            check_external(&plan, &view, proto, np);
        }
        checked += 1;
    }
    // NodePorts no Service holds (any more) are not served.
    for np in (0..SERVICES * 4).map(|k| 30_000 + k as u16) {
        if !plan.services().any(|sp| sp.port.node_port == Some(np)) {
            let src: Ipv4Addr = "10.1.0.9".parse().expect("ip");
            let got = view.lookup_external(None, Protocol::Tcp, np, src, Source::Outside);
            assert_eq!(got, ExternalCandidates::Pass, "NodePort {np}");
        }
    }
    checked
}

/// A NodePort from every kind of source: the view decides as the plan does.
fn check_external(plan: &Plan, view: &NodeView<'_>, proto: Protocol, node_port: u16) {
    let pod: Ipv4Addr = "10.1.0.9".parse().expect("ip");
    for src in [Source::Pod, Source::Node, Source::Outside] {
        let want = match plan.lookup_external(None, proto, node_port, pod, src) {
            ExternalVerdict::Dnat {
                endpoints,
                masquerade,
                ..
            } => format!(
                "{:?} {masquerade}",
                endpoints
                    .iter()
                    .map(|e| (e.endpoint.ip, e.endpoint.port))
                    .collect::<BTreeSet<_>>()
            ),
            other => format!("{other:?}"),
        };
        let got = match view.lookup_external(None, proto, node_port, pod, src) {
            ExternalCandidates::Endpoints {
                endpoints,
                masquerade,
            } => format!(
                "{:?} {masquerade}",
                endpoints
                    .iter()
                    .map(|e| (e.ip, e.port))
                    .collect::<BTreeSet<_>>()
            ),
            other => format!("{other:?}"),
        };
        assert_eq!(got, want, "NodePort {node_port} from {src:?}");
    }
}

fn seeded_model(seed: u64) -> (ChaCha8Rng, SharedModel) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = SharedModel::new();
    for i in 0..SERVICES {
        model.handle_service(Change::Applied(&gen_service(&mut rng, i)));
        for name in ["a", "b"] {
            if rng.random_bool(0.8) {
                model.handle_slice(Change::Applied(&gen_slice(&mut rng, i, name)));
            }
        }
    }
    (rng, model)
}

#[test]
fn candidates_equal_the_rendered_rules_for_generated_services() {
    let mut ports = 0;
    for seed in 0..40 {
        let (_, model) = seeded_model(seed);
        let snap = model.snapshot();
        for node in NODES {
            ports += check_node(model.tracker(), &snap, node);
        }
    }
    // Sanity: the generator produced ports (2 ports for every third Service).
    assert!(ports > 40 * 3 * SERVICES as usize);
}

/// A random change: a slice rewritten or deleted, or a Service re-typed or deleted.
fn random_change(rng: &mut ChaCha8Rng, model: &mut SharedModel) -> Option<ModelChange> {
    let i = rng.random_range(0..SERVICES);
    match rng.random_range(0..10) {
        0 => model.handle_service(Change::Deleted(&gen_service(rng, i))),
        1 => model.handle_service(Change::Applied(&gen_service(rng, i))),
        2 => {
            let s = slice("ns1", &format!("svc{i}"), "a", &ports(i), Vec::new());
            model.handle_slice(Change::Deleted(&s))
        }
        _ => {
            let name = if rng.random_bool(0.5) { "a" } else { "b" };
            model.handle_slice(Change::Applied(&gen_slice(rng, i, name)))
        }
    }
}

#[test]
fn old_snapshots_answer_as_programmed_at_their_version() {
    for seed in 100..110 {
        let (mut rng, mut model) = seeded_model(seed);
        // (snapshot, the tracker as it was) at every 5th version.
        let mut kept: Vec<(Arc<Snapshot>, Tracker)> = Vec::new();
        let mut last_version = model.version();
        for step in 0..60 {
            if let Some(change) = random_change(&mut rng, &mut model) {
                assert_eq!(change.version, last_version + 1, "one version per change");
                assert!(!change.services.is_empty());
                last_version = change.version;
            }
            if step % 5 == 0 {
                kept.push((model.snapshot(), model.tracker().clone()));
            }
        }
        for (snap, tracker) in &kept {
            for node in NODES {
                check_node(tracker, snap, node);
            }
        }
    }
}

#[test]
fn non_service_destinations() {
    let (_, model) = seeded_model(7);
    let snap = model.snapshot();
    let node = inputs("node-a");
    let view = NodeView::new(&snap, &node);
    let cip: Ipv4Addr = "172.30.0.1".parse().expect("ip");
    assert_eq!(view.lookup(cip, Protocol::Tcp, 81), Candidates::RejectPort);
    let unallocated: Ipv4Addr = "172.30.9.9".parse().expect("ip");
    assert_eq!(
        view.lookup(unallocated, Protocol::Tcp, 80),
        Candidates::DropUnallocated
    );
    let outside: Ipv4Addr = "192.0.2.1".parse().expect("ip");
    assert_eq!(view.lookup(outside, Protocol::Tcp, 80), Candidates::Pass);
}

#[test]
fn unchanged_events_keep_the_version_and_the_snapshot() {
    let (mut rng, mut model) = seeded_model(3);
    let s = gen_slice(&mut rng, 1, "a");
    model.handle_slice(Change::Applied(&s));
    let before = model.snapshot();
    assert_eq!(model.handle_slice(Change::Applied(&s)), None);
    assert!(Arc::ptr_eq(&before, &model.snapshot()));
    // A deleted Service's ports leave the model and its ClusterIP stops being one.
    let svc = gen_service(&mut rng, 1);
    let change = model
        .handle_service(Change::Deleted(&svc))
        .expect("a known Service's delete changes the model");
    assert_eq!(change.version, before.version() + 1);
    let after = model.snapshot();
    let cip: Ipv4Addr = "172.30.0.2".parse().expect("ip");
    assert!(before.is_cluster_ip(cip));
    assert!(!after.is_cluster_ip(cip));
    assert_eq!(after.len() + 1, before.len());
}

#[test]
fn changed_since_lists_the_services_until_the_log_runs_out() {
    let mut model = SharedModel::with_log_capacity(3);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for i in 0..3 {
        model.handle_service(Change::Applied(&gen_service(&mut rng, i)));
    }
    let names = |since: Version, model: &SharedModel| {
        model
            .changed_since(since)
            .map(|it| it.map(|k| k.name.clone()).collect::<Vec<_>>())
    };
    assert_eq!(
        names(0, &model),
        Some(vec!["svc0".into(), "svc1".into(), "svc2".into()])
    );
    assert_eq!(names(2, &model), Some(vec!["svc2".into()]));
    assert_eq!(names(3, &model), Some(vec![]));
    // A fourth change pushes version 1 out: since 0 is no longer known, since 1 still is.
    model.handle_service(Change::Applied(&gen_service(&mut rng, 3)));
    assert_eq!(names(0, &model), None);
    let after_1 = Some(vec!["svc1".into(), "svc2".into(), "svc3".into()]);
    assert_eq!(names(1, &model), after_1);
}
