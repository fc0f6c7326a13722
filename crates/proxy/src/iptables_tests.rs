//! Golden tests against upstream's TestOverallIPTablesRules (pkg/proxy/iptables/proxier_test.go):
//! ClusterIP, NodePort, LoadBalancer and external-IP services, compared order-insensitively
//! per line.

use super::*;
use crate::fixtures::{ep, service, slice};
use crate::nft::tests::overall_tracker;
use crate::nft_state::sorted_lines;
use crate::plan::PlanConfig;
use crate::tracker::Tracker;

const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];

fn cfg() -> IptablesConfig {
    IptablesConfig {
        cluster_cidr: Some(Cidr::parse("10.0.0.0/8").expect("cidr")),
        ..IptablesConfig::default()
    }
}

/// Upstream's expected text for TestOverallIPTablesRules (same inputs as
/// [`overall_tracker`]), for the configuration this proxy runs:
/// `--iptables-localhost-nodeports=false` (upstream's test has it on, which adds the
/// `KUBE-FIREWALL` chain, `-d 127.0.0.0/8` NodePort rules with `nfacct` counters; here the
/// NodePorts jump carries `! -d 127.0.0.0/8` instead) and no `nfacct` match on the INVALID
/// drop (upstream's text before the nfacct counters). Everything else is upstream's text.
const EXPECTED: &str = r#"
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
:KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
:KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
:KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
:KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS
-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
"#;

#[test]
fn full_restore_matches_upstream_overall_rules() {
    let plan = Plan::build(&overall_tracker(), &PlanConfig::default());
    let got = IptablesRenderer::new(cfg()).render_full(&plan);
    assert_eq!(sorted_lines(&got), sorted_lines(EXPECTED));
    // Table order and the NodePorts jump last in KUBE-SERVICES, as upstream requires.
    let nat = got.split("*nat\n").nth(1).expect("nat table");
    let services: Vec<&str> = nat
        .lines()
        .filter(|l| l.starts_with("-A KUBE-SERVICES"))
        .collect();
    assert!(
        services
            .last()
            .is_some_and(|l| l.ends_with("-j KUBE-NODEPORTS"))
    );
    assert!(got.starts_with("*filter\n") && got.ends_with("COMMIT\n"));
}

#[test]
fn three_endpoints_get_upstream_probabilities() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "a",
        P80,
        vec![ep("10.180.0.1"), ep("10.180.0.2"), ep("10.180.0.3")],
    ));
    let plan = Plan::build(&t, &PlanConfig::default());
    let got = IptablesRenderer::new(cfg()).render_full(&plan);
    let jumps: Vec<&str> = got
        .lines()
        .filter(|l| l.starts_with("-A KUBE-SVC") && l.contains("->"))
        .collect();
    assert_eq!(jumps.len(), 3);
    assert!(jumps[0].contains("\"ns1/svc1:p80 -> 10.180.0.1:80\" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-"));
    assert!(jumps[1].contains("\"ns1/svc1:p80 -> 10.180.0.2:80\" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-"));
    assert!(!jumps[2].contains("statistic"));
    // nat = 5 + S(2 + 3E) rules (number_generated_rules_test.go): 5 + 11 = 16.
    let nat = got.split("*nat\n").nth(1).expect("nat");
    assert_eq!(
        nat.lines().filter(|l| l.starts_with("-A ")).count(),
        5 + 2 + 3 * 3
    );
}

#[test]
fn partial_restore_rewrites_changed_chains_and_deletes_stale_ones() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_service(&service("ns2", "svc2", "172.30.0.42", P80));
    t.apply_slice(&slice("ns1", "svc1", "a", P80, vec![ep("10.0.1.1")]));
    t.apply_slice(&slice("ns2", "svc2", "a", P80, vec![ep("10.0.2.1")]));
    let cfg_plan = PlanConfig::default();
    let mut plan = Plan::build(&t, &cfg_plan);
    let mut r = IptablesRenderer::new(cfg());
    r.render_full(&plan);
    t.take_changes();

    t.delete_service(&service("ns2", "svc2", "172.30.0.42", P80));
    let changed = t.take_changes().services;
    let affected = plan.update(&t, &cfg_plan, &changed);
    let got = r.render_partial(&plan, &affected);
    let svc2 = ServicePortName::new("ns2", "svc2", "p80", crate::model::Protocol::Tcp);
    let svc_chain = crate::hash::ipt_service_chain(&svc2);
    assert!(got.contains(&format!(":{svc_chain} - [0:0]\n")));
    assert!(got.contains(&format!("-X {svc_chain}\n")));
    assert_eq!(
        got.lines()
            .filter(|l| l.starts_with("-X KUBE-SEP-"))
            .count(),
        1
    );
    // svc1's chains are untouched: not declared, no rules; its KUBE-SERVICES rule stays.
    assert!(!got.contains(":KUBE-SVC-XPGD46QRK7WJZT7O"));
    assert!(got.contains("-j KUBE-SVC-XPGD46QRK7WJZT7O\n"));
    assert!(!got.contains("-A KUBE-SVC-XPGD46QRK7WJZT7O"));
}

#[test]
fn large_cluster_mode_drops_endpoint_comments() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    let eps = (0..1001)
        .map(|i| ep(&format!("10.1.{}.{}", i / 250, i % 250 + 1)))
        .collect();
    t.apply_slice(&slice("ns1", "svc1", "a", P80, eps));
    let plan = Plan::build(&t, &PlanConfig::default());
    let got = IptablesRenderer::new(cfg()).render_full(&plan);
    assert!(
        !got.lines()
            .any(|l| l.starts_with("-A KUBE-SEP") && l.contains("--comment"))
    );
    assert!(!got.contains(" -> "));
}

#[test]
fn nodeports_jump_per_configured_address_without_localhost() {
    let plan = Plan::build(&overall_tracker(), &PlanConfig::default());
    let cfg = IptablesConfig {
        nodeport_ips: vec![
            "192.168.0.2".parse().expect("ip"),
            "127.0.0.1".parse().expect("ip"),
        ],
        ..cfg()
    };
    let got = IptablesRenderer::new(cfg).render_full(&plan);
    let jumps: Vec<&str> = got
        .lines()
        .filter(|l| l.ends_with("-j KUBE-NODEPORTS"))
        .collect();
    assert_eq!(
        jumps,
        [
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -d 192.168.0.2 -j KUBE-NODEPORTS"
        ]
    );
}
