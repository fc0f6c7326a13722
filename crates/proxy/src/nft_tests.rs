//! Golden tests against upstream's TestOverallNFTablesRules / TestSyncProxyRulesRepeated
//! (pkg/proxy/nftables/proxier_test.go @81810de6), compared order-insensitively per line:
//! ClusterIP, NodePort, LoadBalancer (Cluster and Local policy, source ranges, affinity) and
//! external-IP services, exactly upstream's inputs and expected text.

use super::*;
use crate::fixtures::{ep, service, service_json, slice};
use crate::nft_state::{NftState, sorted_lines};
use crate::plan::{Plan, PlanConfig};
use crate::tracker::Tracker;
use serde_json::json;

const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];

/// Upstream's `baseRules` (test conventions: pod CIDR 10.0.0.0/8, service CIDR 172.30.0.0/16).
pub(crate) const BASE_RULES_TEXT: &str = r#"
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }
add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }
add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
add chain ip kube-proxy cluster-ips-check
add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }
add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }
add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }
add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }
add chain ip kube-proxy firewall-check
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy nodeport-endpoints-check
add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
add chain ip kube-proxy services
add chain ip kube-proxy service-endpoints-check
add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"
add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check
add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip kube-proxy filter-input ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-output ct state new jump cluster-ips-check
add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
add rule ip kube-proxy reject-chain reject
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
"#;

/// The upstream test proxier's configuration.
pub(crate) fn upstream_cfg() -> NftConfig {
    NftConfig {
        cluster_cidr: Some(Cidr::parse("10.0.0.0/8").expect("cidr")),
        service_cidrs: vec![Cidr::parse("172.30.0.0/16").expect("cidr")],
        nodeport_ips: vec!["192.168.0.2".parse().expect("ip")],
        ..NftConfig::default()
    }
}

/// TestOverallNFTablesRules' Services and slices: svc1 ClusterIP; svc2 LoadBalancer with
/// `externalTrafficPolicy: Local`, an external IP and health check node port, whose only
/// endpoint is not on this node; svc3 NodePort; svc4 NodePort with an external IP and two
/// endpoints; svc5 LoadBalancer (Cluster policy) with `loadBalancerSourceRanges` (with
/// upstream's stray blank) and ClientIP affinity; svc6 ClusterIP without endpoints.
pub(crate) fn overall_tracker() -> Tracker {
    let mut t = Tracker::new();
    let p80 = |node_port: u16| json!([{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": node_port}]);
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_service(&service_json(
        "ns2",
        "svc2",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "clusterIP": "172.30.0.42",
               "ports": p80(3001), "externalIPs": ["192.168.99.22"], "healthCheckNodePort": 30000}),
        json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}),
    ));
    t.apply_service(&service_json(
        "ns3",
        "svc3",
        json!({"type": "NodePort", "clusterIP": "172.30.0.43", "ports": p80(3003)}),
        json!({}),
    ));
    t.apply_service(&service_json(
        "ns4",
        "svc4",
        json!({"type": "NodePort", "clusterIP": "172.30.0.44", "externalIPs": ["192.168.99.33"],
               "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "targetPort": 80}]}),
        json!({}),
    ));
    t.apply_service(&service_json(
        "ns5",
        "svc5",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "clusterIP": "172.30.0.45",
               "ports": p80(3002), "healthCheckNodePort": 30000,
               "loadBalancerSourceRanges": [" 203.0.113.0/25"],
               "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}),
        json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}}),
    ));
    t.apply_service(&service("ns6", "svc6", "172.30.0.46", P80));
    t.apply_slice(&slice("ns1", "svc1", "svc1-1", P80, vec![ep("10.180.0.1")]));
    t.apply_slice(&slice("ns2", "svc2", "svc2-1", P80, vec![ep("10.180.0.2")]));
    t.apply_slice(&slice("ns3", "svc3", "svc3-1", P80, vec![ep("10.180.0.3")]));
    let local = json!({"addresses": ["10.180.0.5"], "nodeName": "test-node"});
    t.apply_slice(&slice(
        "ns4",
        "svc4",
        "svc4-1",
        P80,
        vec![ep("10.180.0.4"), local],
    ));
    t.apply_slice(&slice("ns5", "svc5", "svc5-1", P80, vec![ep("10.180.0.3")]));
    t
}

/// Upstream's expected text for [`overall_tracker`] (after `baseRules`).
pub(crate) const OVERALL_EXPECTED: &str = r#"
# svc1
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }
add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
# svc2
add chain ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80
add rule ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80 ip daddr 172.30.0.42 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 }
add chain ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 ip saddr 10.0.0.0/8 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"
add chain ip kube-proxy endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
add rule ip kube-proxy endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 ip saddr 10.180.0.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 meta l4proto tcp dnat to 10.180.0.2:80
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 80 : goto service-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-ips { 192.168.99.22 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-ips { 1.2.3.4 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy no-endpoint-nodeports { tcp . 3001 comment "ns2/svc2:p80" : drop }
add element ip kube-proxy no-endpoint-services { 1.2.3.4 . tcp . 80 comment "ns2/svc2:p80" : drop }
add element ip kube-proxy no-endpoint-services { 192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : drop }
# svc3
add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 }
add chain ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 goto service-4AT6LBPK-ns3/svc3/tcp/p80
add chain ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80
add rule ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80 }
# svc4
add chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 ip daddr 172.30.0.44 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , 1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }
add chain ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80 goto service-LAUZTJTB-ns4/svc4/tcp/p80
add chain ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 ip saddr 10.180.0.5 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 meta l4proto tcp dnat to 10.180.0.5:80
add chain ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 ip saddr 10.180.0.4 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 meta l4proto tcp dnat to 10.180.0.4:80
add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }
add element ip kube-proxy service-ips { 192.168.99.33 . tcp . 80 : goto external-LAUZTJTB-ns4/svc4/tcp/p80 }
# svc5
add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add chain ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip daddr 172.30.0.45 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 }
add chain ip kube-proxy external-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy external-HVFWP5L3-ns5/svc5/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-HVFWP5L3-ns5/svc5/tcp/p80 goto service-HVFWP5L3-ns5/svc5/tcp/p80
add chain ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 update @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { ip saddr }
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80
add chain ip kube-proxy firewall-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy firewall-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr != { 203.0.113.0/25 } drop
add element ip kube-proxy cluster-ips { 172.30.0.45 }
add element ip kube-proxy service-ips { 172.30.0.45 . tcp . 80 : goto service-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy service-ips { 5.6.7.8 . tcp . 80 : goto external-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3002 : goto external-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy firewall-ips { 5.6.7.8 . tcp . 80 : goto firewall-HVFWP5L3-ns5/svc5/tcp/p80 }
# svc6
add element ip kube-proxy cluster-ips { 172.30.0.46 }
add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }
"#;

fn full_body(t: &Tracker) -> String {
    let plan = Plan::build(t, &PlanConfig::default());
    let mut r = NftRenderer::new(upstream_cfg());
    let mut out = String::new();
    r.render_full_body(&plan, &mut out);
    out
}

#[test]
fn full_sync_matches_upstream_overall_rules() {
    let got = full_body(&overall_tracker());
    let want = format!("{BASE_RULES_TEXT}{OVERALL_EXPECTED}");
    assert_eq!(sorted_lines(&got), sorted_lines(&want));
}

#[test]
fn full_sync_applies_to_the_same_state_as_its_dump() {
    let plan = Plan::build(&overall_tracker(), &PlanConfig::default());
    let text = NftRenderer::new(upstream_cfg()).render_full(&plan);
    let mut state = NftState::default();
    state.apply(&text).expect("apply");
    let want = format!("{BASE_RULES_TEXT}{OVERALL_EXPECTED}");
    assert_eq!(state.dump(), sorted_lines(&want));
}

#[test]
fn three_endpoints_sorted_by_string_in_numgen_map() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "a",
        P80,
        vec![ep("10.180.0.2"), ep("10.180.0.10"), ep("10.180.0.1")],
    ));
    let got = full_body(&t);
    let vmap = got
        .lines()
        .find(|l| l.contains("numgen"))
        .expect("numgen rule");
    let order: Vec<&str> = vmap
        .split(" : goto endpoint-")
        .skip(1)
        .map(|s| s.split("__").nth(1).unwrap_or(""))
        .collect();
    assert!(vmap.contains("numgen random mod 3 vmap { 0 : goto endpoint-"));
    assert_eq!(
        order,
        ["10.180.0.10/80 , 1", "10.180.0.1/80 , 2", "10.180.0.2/80 }"]
    );
    assert_eq!(got.lines().filter(|l| l.contains("dnat to")).count(), 3);
}

#[test]
fn custom_masquerade_bit_and_masquerade_all() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_slice(&slice("ns1", "svc1", "a", P80, vec![ep("10.180.0.1")]));
    let plan = Plan::build(&t, &PlanConfig::default());
    let cfg = NftConfig {
        masquerade_bit: 5,
        masquerade_all: true,
        ..upstream_cfg()
    };
    let text = NftRenderer::new(cfg).render_full(&plan);
    assert!(text.contains("mark set mark or 0x20\n"));
    assert!(text.contains("service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 jump mark-for-masquerade\n"));
}

#[path = "nft_partial_tests.rs"]
mod partial;

const AFFINITY_SET: &str = "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80";

#[test]
fn a_later_full_sync_keeps_the_table_and_the_affinity_sets() {
    let plan = Plan::build(&overall_tracker(), &PlanConfig::default());
    let mut r = NftRenderer::new(upstream_cfg());
    let mut st = NftState::default();
    let first = r.render_full_at(&plan, Moment::EPOCH);
    // The first full sync of a process clears leftovers of an earlier one.
    assert!(first.contains("delete table ip kube-proxy\n"));
    st.apply(&first).expect("first full sync");
    // A client got affinity to the endpoint (the kernel adds this element).
    let element = format!("add element ip kube-proxy {AFFINITY_SET} {{ 10.0.0.7 }}");
    st.apply(&element).expect("element");
    let second = r.render_full_at(&plan, Moment::from_millis(30_000));
    assert!(!second.contains("delete table"), "{second}");
    assert!(!second.contains("destroy table"), "{second}");
    assert!(second.contains("flush chain ip kube-proxy services\n"));
    assert!(second.contains("flush map ip kube-proxy service-ips\n"));
    assert!(!second.contains(&format!("flush set ip kube-proxy {AFFINITY_SET}")));
    st.apply(&second).expect("second full sync");
    let mut want = sorted_lines(&format!("{BASE_RULES_TEXT}{OVERALL_EXPECTED}"));
    want.push(element);
    want.sort();
    assert_eq!(st.dump(), want);
}

#[test]
fn a_kept_table_full_sync_flushes_and_later_deletes_what_is_gone() {
    let mut t = overall_tracker();
    let mut r = NftRenderer::new(upstream_cfg());
    let mut st = NftState::default();
    st.apply(&r.render_full_at(&Plan::build(&t, &PlanConfig::default()), Moment::EPOCH))
        .expect("first");
    t.delete_service(&service("ns5", "svc5", "172.30.0.45", P80));
    let plan = Plan::build(&t, &PlanConfig::default());
    let text = r.render_full_at(&plan, Moment::from_millis(10_000));
    assert!(text.contains(&format!("delete set ip kube-proxy {AFFINITY_SET}\n")));
    st.apply(&text).expect("second");
    let stale: Vec<(String, Moment)> = r.stale_chains().map(|(c, t)| (c.to_string(), t)).collect();
    // service-, endpoint-, external- and firewall- chains of svc5.
    assert_eq!(stale.len(), 4, "{stale:?}");
    assert!(
        stale
            .iter()
            .all(|(_, t)| *t == Moment::from_millis(10_000) + STALE_CHAIN_DELETE_DELAY_MS)
    );
    assert!(
        r.render_stale_deletes(Moment::from_millis(10_500))
            .is_none()
    );
    st.apply(
        &r.render_stale_deletes(Moment::from_millis(11_000))
            .expect("due"),
    )
    .expect("stale deletes");
    let mut fresh = NftState::default();
    fresh
        .apply(&NftRenderer::new(upstream_cfg()).render_full(&plan))
        .expect("fresh");
    assert_eq!(st.dump(), fresh.dump());
}
