//! Tests of the tracker's parsing rules and the plan's endpoint choice.

use super::*;
use crate::fixtures::{ep, ep_cond, service, service_with, slice};
use crate::tracker::Tracker;
use serde_json::json;

const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];

fn name(ns: &str, svc: &str) -> ServicePortName {
    ServicePortName::new(ns, svc, "p80", Protocol::Tcp)
}

fn ips(plan: &Plan, n: &ServicePortName) -> Vec<String> {
    plan.get(n)
        .map(|p| {
            p.endpoints
                .iter()
                .map(|e| e.endpoint.addr_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn endpoints_sorted_by_ip_port_string() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "s1",
        P80,
        vec![ep("10.180.0.2"), ep("10.180.0.10"), ep("10.180.0.1")],
    ));
    let plan = Plan::build(&t, &PlanConfig::default());
    assert_eq!(
        ips(&plan, &name("ns1", "svc1")),
        ["10.180.0.10:80", "10.180.0.1:80", "10.180.0.2:80"]
    );
}

#[test]
fn terminating_fallback_and_reject() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    let eps = vec![
        ep_cond("10.0.0.1", false, true, true, None),
        ep_cond("10.0.0.2", false, false, true, None),
        ep_cond("10.0.0.3", false, false, false, None),
    ];
    t.apply_slice(&slice("ns1", "svc1", "s1", P80, eps));
    let plan = Plan::build(&t, &PlanConfig::default());
    assert_eq!(ips(&plan, &name("ns1", "svc1")), ["10.0.0.1:80"]);

    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "s1",
        P80,
        vec![ep_cond("10.0.0.3", false, false, false, None)],
    ));
    let plan = Plan::build(&t, &PlanConfig::default());
    let p = plan.get(&name("ns1", "svc1")).expect("plan");
    assert!(p.endpoints.is_empty());
    assert_eq!(p.no_endpoints, Some(NoEndpoints::Reject));
}

#[test]
fn ready_endpoints_win_over_terminating() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    let eps = vec![ep_cond("10.0.0.1", false, true, true, None), ep("10.0.0.2")];
    t.apply_slice(&slice("ns1", "svc1", "s1", P80, eps));
    assert_eq!(
        ips(
            &Plan::build(&t, &PlanConfig::default()),
            &name("ns1", "svc1")
        ),
        ["10.0.0.2:80"]
    );
}

#[test]
fn slices_merge_and_duplicates_prefer_non_terminating() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "a",
        P80,
        vec![ep_cond("10.0.0.1", false, true, true, None)],
    ));
    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "b",
        P80,
        vec![ep("10.0.0.1"), ep("10.0.0.9")],
    ));
    let eps = t.endpoints_of(&name("ns1", "svc1"));
    assert_eq!(eps.len(), 2);
    assert!(eps.iter().all(|e| !e.terminating));
}

#[test]
fn slice_without_service_label_is_ignored() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    let mut s = slice("ns1", "svc1", "a", P80, vec![ep("10.0.0.1")]);
    s.metadata.labels = None;
    t.take_changes();
    t.apply_slice(&s);
    assert!(!t.has_changes());
    assert!(t.endpoints_of(&name("ns1", "svc1")).is_empty());
}

#[test]
fn only_first_address_is_used() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "a",
        P80,
        vec![json!({"addresses": ["10.0.0.1", "10.0.0.2"]})],
    ));
    assert_eq!(
        ips(
            &Plan::build(&t, &PlanConfig::default()),
            &name("ns1", "svc1")
        ),
        ["10.0.0.1:80"]
    );
}

#[test]
fn local_internal_policy_uses_local_endpoints_or_drops() {
    let mut t = Tracker::new();
    let local = json!({"internalTrafficPolicy": "Local"});
    t.apply_service(&service_with("ns1", "svc1", "172.30.0.41", P80, local));
    let eps = vec![
        ep_cond("10.0.0.1", true, true, false, Some("n1")),
        ep_cond("10.0.0.2", true, true, false, Some("n2")),
    ];
    t.apply_slice(&slice("ns1", "svc1", "a", P80, eps));
    let on_n1 = PlanConfig {
        node_name: Some("n1".into()),
        zone: None,
    };
    assert_eq!(
        ips(&Plan::build(&t, &on_n1), &name("ns1", "svc1")),
        ["10.0.0.1:80"]
    );
    let on_n3 = PlanConfig {
        node_name: Some("n3".into()),
        zone: None,
    };
    let plan = Plan::build(&t, &on_n3);
    assert_eq!(
        plan.get(&name("ns1", "svc1")).and_then(|p| p.no_endpoints),
        Some(NoEndpoints::Drop)
    );
    assert!(
        plan.get(&name("ns1", "svc1"))
            .is_some_and(|p| p.nft_chain().starts_with("local-"))
    );
}

#[test]
fn update_reports_only_changed_ports() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_service(&service("ns2", "svc2", "172.30.0.42", P80));
    t.apply_slice(&slice("ns1", "svc1", "a", P80, vec![ep("10.0.0.1")]));
    let cfg = PlanConfig::default();
    let mut plan = Plan::build(&t, &cfg);
    t.take_changes();
    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "a",
        P80,
        vec![ep("10.0.0.1"), ep("10.0.0.2")],
    ));
    let changes = t.take_changes();
    assert_eq!(changes.services.len(), 1);
    let affected = plan.update(&t, &cfg, &changes.services);
    assert_eq!(
        affected.into_iter().collect::<Vec<_>>(),
        [name("ns1", "svc1")]
    );
    assert_eq!(ips(&plan, &name("ns1", "svc1")).len(), 2);

    t.delete_service(&service("ns2", "svc2", "172.30.0.42", P80));
    let changes = t.take_changes();
    let affected = plan.update(&t, &cfg, &changes.services);
    assert_eq!(
        affected.into_iter().collect::<Vec<_>>(),
        [name("ns2", "svc2")]
    );
    assert!(plan.get(&name("ns2", "svc2")).is_none());
}

#[test]
fn identical_update_is_not_a_change() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_slice(&slice("ns1", "svc1", "a", P80, vec![ep("10.0.0.1")]));
    t.take_changes();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_slice(&slice("ns1", "svc1", "a", P80, vec![ep("10.0.0.1")]));
    assert!(!t.has_changes());
}

#[test]
fn lookup_models_the_data_plane() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_service(&service("ns6", "svc6", "172.30.0.46", P80));
    t.apply_slice(&slice("ns1", "svc1", "a", P80, vec![ep("10.180.0.1")]));
    let plan = Plan::build(&t, &PlanConfig::default());
    let cidrs = [Cidr::parse("172.30.0.0/16").expect("cidr")];
    let ip = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
    assert!(
        matches!(plan.lookup(ip("172.30.0.41"), Protocol::Tcp, 80, &cidrs), Verdict::Dnat(p) if p.endpoints.len() == 1)
    );
    assert_eq!(
        plan.lookup(ip("172.30.0.41"), Protocol::Tcp, 443, &cidrs),
        Verdict::RejectPort
    );
    assert_eq!(
        plan.lookup(ip("172.30.0.41"), Protocol::Udp, 80, &cidrs),
        Verdict::RejectPort
    );
    assert_eq!(
        plan.lookup(ip("172.30.0.46"), Protocol::Tcp, 80, &cidrs),
        Verdict::NoEndpoints(NoEndpoints::Reject)
    );
    assert_eq!(
        plan.lookup(ip("172.30.0.50"), Protocol::Tcp, 80, &cidrs),
        Verdict::DropUnallocated
    );
    assert_eq!(
        plan.lookup(ip("8.8.8.8"), Protocol::Tcp, 80, &cidrs),
        Verdict::Pass
    );
}
