//! `externalTrafficPolicy: Local` and no-endpoint cases for NodePort and LoadBalancer
//! Services in both renderers: upstream's TestExternalTrafficPolicyLocal expected text
//! (iptables), the same inputs through the nftables renderer, and the verdicts without
//! endpoints (TestNoEndpointsReject). Start at [`local_tracker`].

use serde_json::json;

use crate::fixtures::{ep, service_json, slice};
use crate::iptables::{IptablesConfig, IptablesRenderer};
use crate::model::Cidr;
use crate::nft::NftRenderer;
use crate::nft::tests::upstream_cfg;
use crate::nft_state::sorted_lines;
use crate::plan::{NoEndpoints, Plan, PlanConfig};
use crate::tracker::Tracker;

const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];

fn on_test_node() -> PlanConfig {
    PlanConfig {
        node_name: Some("test-node".into()),
        zone: None,
    }
}

/// TestExternalTrafficPolicyLocal: a LoadBalancer (NodePort 3001, health check node port
/// 30000, external IP 192.168.99.11, LB IP 1.2.3.4) with Local policy, one endpoint elsewhere
/// (10.180.0.1) and one on this node (10.180.2.1) — or, with `local: false`, neither local.
fn local_tracker(local: bool) -> Tracker {
    let mut t = Tracker::new();
    t.apply_service(&service_json(
        "ns1",
        "svc1",
        json!({"type": "LoadBalancer", "clusterIP": "172.30.0.41", "externalTrafficPolicy": "Local",
               "healthCheckNodePort": 30000, "externalIPs": ["192.168.99.11"],
               "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}),
    ));
    let second = if local {
        json!({"addresses": ["10.180.2.1"], "nodeName": "test-node"})
    } else {
        json!({"addresses": ["10.180.2.1"], "nodeName": "node2"})
    };
    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "svc1-1",
        P80,
        vec![ep("10.180.0.1"), second],
    ));
    t
}

/// Upstream's expected text, with `--iptables-localhost-nodeports=false` (see
/// `iptables_tests::EXPECTED`): no KUBE-FIREWALL, `! -d 127.0.0.0/8` on the NodePorts jump.
const IPT_LOCAL_EXPECTED: &str = r#"
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-NODEPORTS -m comment --comment "ns1/svc1:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-ZX7GRIZKSNUQ3LAJ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SVL-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -s 10.180.2.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.2.1:80
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
COMMIT
"#;

fn ipt_cfg() -> IptablesConfig {
    IptablesConfig {
        cluster_cidr: Some(Cidr::parse("10.0.0.0/8").expect("cidr")),
        ..IptablesConfig::default()
    }
}

fn ipt(t: &Tracker) -> String {
    IptablesRenderer::new(ipt_cfg()).render_full(&Plan::build(t, &on_test_node()))
}

fn nft(t: &Tracker) -> String {
    let mut out = String::new();
    NftRenderer::new(upstream_cfg()).render_full_body(&Plan::build(t, &on_test_node()), &mut out);
    out
}

#[test]
fn iptables_local_policy_with_a_local_endpoint_matches_upstream() {
    let got = ipt(&local_tracker(true));
    assert_eq!(sorted_lines(&got), sorted_lines(IPT_LOCAL_EXPECTED));
}

#[test]
fn iptables_local_policy_without_a_local_endpoint_drops_external_traffic() {
    let got = ipt(&local_tracker(false));
    let drops: Vec<&str> = got
        .lines()
        .filter(|l| l.starts_with("-A KUBE-EXTERNAL-SERVICES"))
        .collect();
    assert_eq!(
        drops,
        [
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns1/svc1:p80 has no local endpoints\" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j DROP",
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns1/svc1:p80 has no local endpoints\" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP",
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns1/svc1:p80 has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP",
        ]
    );
    // The EXT chain keeps its short-circuits but has no way on to KUBE-SVL; there is no SVL.
    assert!(!got.contains("-j KUBE-SVL-XPGD46QRK7WJZT7O"));
    assert!(!got.contains(":KUBE-SVL-"));
    assert!(got.contains("-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment \"pod traffic for ns1/svc1:p80 external destinations\" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O\n"));
    // The health check node port is open either way.
    assert!(got.contains("--dport 30000 -j ACCEPT\n"));
}

#[test]
fn nftables_local_policy_with_a_local_endpoint() {
    let got = nft(&local_tracker(true));
    let base = "ULMVA6XW-ns1/svc1/tcp/p80";
    let local_ep = got
        .lines()
        .filter_map(|l| l.strip_prefix("add chain ip kube-proxy "))
        .find(|c| c.starts_with("endpoint-") && c.ends_with("__10.180.2.1/80"))
        .expect("the local endpoint's chain")
        .to_string();
    for line in [
        format!(
            "add rule ip kube-proxy external-{base} ip saddr 10.0.0.0/8 goto service-{base} comment \"short-circuit pod traffic\""
        ),
        format!(
            "add rule ip kube-proxy external-{base} fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\""
        ),
        format!(
            "add rule ip kube-proxy external-{base} fib saddr type local goto service-{base} comment \"short-circuit local traffic\""
        ),
        format!("add rule ip kube-proxy external-{base} goto local-{base}"),
        format!(
            "add rule ip kube-proxy local-{base} numgen random mod 1 vmap {{ 0 : goto {local_ep} }}"
        ),
        format!(
            "add element ip kube-proxy service-nodeports {{ tcp . 3001 : goto external-{base} }}"
        ),
        format!(
            "add element ip kube-proxy service-ips {{ 1.2.3.4 . tcp . 80 : goto external-{base} }}"
        ),
        format!(
            "add element ip kube-proxy service-ips {{ 192.168.99.11 . tcp . 80 : goto external-{base} }}"
        ),
    ] {
        assert!(got.lines().any(|l| l == line), "missing {line}\n{got}");
    }
    // ClusterIP traffic still uses both endpoints; no drop verdicts with a local endpoint.
    assert!(got.contains(&format!("service-{base} numgen random mod 2 vmap")));
    assert!(!got.contains("add element ip kube-proxy no-endpoint-"));
    // The masquerade-for-off-cluster rule sits in the internal (Cluster) chain only.
    assert_eq!(
        got.matches("ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8")
            .count(),
        1
    );
}

#[test]
fn nftables_local_policy_without_a_local_endpoint_drops_external_traffic() {
    let got = nft(&local_tracker(false));
    let base = "ULMVA6XW-ns1/svc1/tcp/p80";
    for line in [
        "add element ip kube-proxy no-endpoint-nodeports { tcp . 3001 comment \"ns1/svc1:p80\" : drop }",
        "add element ip kube-proxy no-endpoint-services { 1.2.3.4 . tcp . 80 comment \"ns1/svc1:p80\" : drop }",
        "add element ip kube-proxy no-endpoint-services { 192.168.99.11 . tcp . 80 comment \"ns1/svc1:p80\" : drop }",
    ] {
        assert!(got.lines().any(|l| l == line), "missing {line}\n{got}");
    }
    assert!(!got.contains(&format!("goto local-{base}")));
    assert!(!got.contains(&format!("add chain ip kube-proxy local-{base}")));
    // Counted in kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="external"}.
    let plan = Plan::build(&local_tracker(false), &on_test_node());
    assert_eq!(plan.no_local_endpoints(), (0, 1));
    let plan = Plan::build(&local_tracker(true), &on_test_node());
    assert_eq!(plan.no_local_endpoints(), (0, 0));
}

#[test]
fn no_endpoints_anywhere_rejects_every_destination() {
    let mut t = local_tracker(false);
    t.delete_slice(&slice("ns1", "svc1", "svc1-1", P80, vec![]));
    let plan = Plan::build(&t, &on_test_node());
    let sp = plan.services().next().expect("one port");
    assert_eq!(sp.no_endpoints, Some(NoEndpoints::Reject));
    assert_eq!(sp.external_no_endpoints, Some(NoEndpoints::Reject));
    let got = nft(&t);
    assert!(got.contains(
        "no-endpoint-nodeports { tcp . 3001 comment \"ns1/svc1:p80\" : goto reject-chain }"
    ));
    assert!(got.contains(
        "no-endpoint-services { 1.2.3.4 . tcp . 80 comment \"ns1/svc1:p80\" : goto reject-chain }"
    ));
    assert!(!got.contains("add chain ip kube-proxy external-"));
    assert!(!got.contains("add element ip kube-proxy service-nodeports"));
    let got = ipt(&t);
    assert!(got.contains("-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns1/svc1:p80 has no endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j REJECT\n"));
    assert!(!got.contains(":KUBE-EXT-"));
}

#[test]
fn iptables_partial_restore_adds_and_removes_the_external_chain() {
    let mut t = local_tracker(true);
    let cfg = on_test_node();
    let mut plan = Plan::build(&t, &cfg);
    let mut r = IptablesRenderer::new(ipt_cfg());
    r.render_full(&plan);
    t.take_changes();
    // Back to a ClusterIP Service: KUBE-EXT and KUBE-SVL go, KUBE-NODEPORTS is empty.
    t.apply_service(&crate::fixtures::service("ns1", "svc1", "172.30.0.41", P80));
    let changed = t.take_changes().services;
    let affected = plan.update(&t, &cfg, &changed);
    let got = r.render_partial(&plan, &affected);
    assert!(got.contains("-X KUBE-EXT-XPGD46QRK7WJZT7O\n"));
    assert!(got.contains("-X KUBE-SVL-XPGD46QRK7WJZT7O\n"));
    assert!(!got.contains("-A KUBE-NODEPORTS"));
    assert!(got.contains(":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n"));
}

/// The modelled data plane agrees with the rules above and with upstream's packet-flow
/// tests (TestExternalTrafficPolicyLocal, TestLoadBalancer, TestNoEndpointsReject).
#[test]
fn modelled_external_lookups() {
    use crate::model::Protocol::Tcp;
    use crate::plan::{ExternalVerdict, Source};
    let outside: std::net::Ipv4Addr = "203.0.113.2".parse().expect("ip");
    let ips = |v: ExternalVerdict<'_>| match v {
        ExternalVerdict::Dnat {
            endpoints,
            masquerade,
            ..
        } => {
            let ips: Vec<String> = endpoints
                .iter()
                .map(|e| e.endpoint.ip.to_string())
                .collect();
            (ips.join(","), masquerade)
        }
        other => (format!("{other:?}"), false),
    };
    let lb: Option<std::net::Ipv4Addr> = Some("1.2.3.4".parse().expect("ip"));
    let plan = Plan::build(&local_tracker(true), &on_test_node());
    for dst in [None, lb] {
        let port = if dst.is_none() { 3001 } else { 80 };
        let v = |src| plan.lookup_external(dst, Tcp, port, outside, src);
        assert_eq!(ips(v(Source::Outside)), ("10.180.2.1".into(), false));
        assert_eq!(ips(v(Source::Pod)), ("10.180.0.1,10.180.2.1".into(), false));
        assert_eq!(ips(v(Source::Node)), ("10.180.0.1,10.180.2.1".into(), true));
    }
    assert_eq!(
        plan.lookup_external(None, Tcp, 3999, outside, Source::Outside),
        ExternalVerdict::Pass
    );
    let plan = Plan::build(&local_tracker(false), &on_test_node());
    assert_eq!(
        plan.lookup_external(None, Tcp, 3001, outside, Source::Outside),
        ExternalVerdict::NoEndpoints(NoEndpoints::Drop)
    );
    assert_eq!(
        ips(plan.lookup_external(None, Tcp, 3001, outside, Source::Pod)).0,
        "10.180.0.1,10.180.2.1"
    );
    // svc5 of the overall test: LB 5.6.7.8 with source range 203.0.113.0/25, NodePort 3002.
    let plan = Plan::build(&crate::nft::tests::overall_tracker(), &on_test_node());
    let blocked: std::net::Ipv4Addr = "203.0.113.130".parse().expect("ip");
    let lb5 = Some("5.6.7.8".parse().expect("ip"));
    assert_eq!(
        ips(plan.lookup_external(lb5, Tcp, 80, outside, Source::Outside)),
        ("10.180.0.3".into(), true)
    );
    assert_eq!(
        plan.lookup_external(lb5, Tcp, 80, blocked, Source::Outside),
        ExternalVerdict::Firewall
    );
    // NodePorts bypass loadBalancerSourceRanges, as upstream.
    assert_eq!(
        ips(plan.lookup_external(None, Tcp, 3002, blocked, Source::Outside)),
        ("10.180.0.3".into(), true)
    );
    // No endpoints at all: reject.
    let mut t = local_tracker(true);
    t.delete_slice(&slice("ns1", "svc1", "svc1-1", P80, vec![]));
    let plan = Plan::build(&t, &on_test_node());
    assert_eq!(
        plan.lookup_external(lb, Tcp, 80, outside, Source::Outside),
        ExternalVerdict::NoEndpoints(NoEndpoints::Reject)
    );
}
