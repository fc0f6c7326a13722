//! Tests of the shared-map layout: its golden text for upstream's overall test Services,
//! partial syncs converging to a full sync (both layouts), and the two layouts resolving
//! every ClusterIP to the same endpoints with the same probabilities in the [`NftState`]
//! model.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::fixtures::{ep, ep_cond, service, service_json, service_with, slice};
use crate::model::Moment;
use crate::nft::NftRenderer;
use crate::nft::tests::{BASE_RULES_TEXT, overall_tracker, upstream_cfg};
use crate::nft_state::{NftState, sorted_lines};
use crate::plan::{Plan, PlanConfig};
use crate::tracker::Tracker;

const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];

fn shared_cfg() -> NftConfig {
    NftConfig {
        layout: NftLayout::SharedMap,
        ..upstream_cfg()
    }
}

/// What the shared-map layout adds to upstream's `baseRules`.
const SHARED_BASE: &str = r#"
add map ip kube-proxy endpoints-tcp { typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport ; comment "ClusterIP . port . endpoint index to endpoint" ; }
add map ip kube-proxy endpoints-udp { typeof ip daddr . udp dport . numgen random mod 1 : ip daddr . udp dport ; comment "ClusterIP . port . endpoint index to endpoint" ; }
add map ip kube-proxy endpoints-sctp { typeof ip daddr . sctp dport . numgen random mod 1 : ip daddr . sctp dport ; comment "ClusterIP . port . endpoint index to endpoint" ; }
add set ip kube-proxy hairpin { type ipv4_addr . ipv4_addr ; comment "endpoint . endpoint: a pod reaching itself through a Service" ; }
add rule ip kube-proxy nat-postrouting ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade
"#;

/// Upstream's overall test Services in the shared-map layout: svc1 (plain ClusterIP) goes
/// through the map; svc2-svc5 (NodePort, LoadBalancer, external IP, affinity) keep their
/// per-Service chains with `numgen random mod (N-k)` rules; svc6 has no endpoints.
const SHARED_OVERALL: &str = r#"
# svc1
add chain ip kube-proxy dispatch-tcp-1
add rule ip kube-proxy dispatch-tcp-1 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy dispatch-tcp-1 meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod 1 map @endpoints-tcp
add element ip kube-proxy endpoints-tcp { 172.30.0.41 . 80 . 0 : 10.180.0.1 . 80 }
add element ip kube-proxy hairpin { 10.180.0.1 . 10.180.0.1 }
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto dispatch-tcp-1 }
# svc2
add chain ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80
add rule ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80 ip daddr 172.30.0.42 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80 goto endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
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
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 goto endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80
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
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 == 0 goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
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
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
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

fn plan_of(t: &Tracker) -> Plan {
    Plan::build(
        t,
        &PlanConfig {
            node_name: Some("test-node".into()),
            zone: None,
        },
    )
}

#[test]
fn layout_flag_values() {
    assert_eq!(NftLayout::parse("upstream"), Ok(NftLayout::Upstream));
    assert_eq!(NftLayout::parse("shared-map"), Ok(NftLayout::SharedMap));
    assert_eq!(NftLayout::SharedMap.as_str(), "shared-map");
    let err = NftLayout::parse("shared").expect_err("unknown value");
    assert_eq!(
        err.to_string(),
        "invalid --nftables-layout \"shared\": must be \"upstream\" or \"shared-map\""
    );
}

#[test]
fn shared_map_full_sync_golden() {
    let plan = Plan::build(&overall_tracker(), &PlanConfig::default());
    let mut out = String::new();
    NftRenderer::new(shared_cfg()).render_full_body(&plan, &mut out);
    let want = format!("{BASE_RULES_TEXT}{SHARED_BASE}{SHARED_OVERALL}");
    // Elements are batched per command; the model dumps them one per line.
    let mut state = NftState::default();
    state.apply(&out).expect("applies");
    assert_eq!(state.dump(), sorted_lines(&want));
    assert!(!out.contains("vmap {"), "no anonymous vmap: {out}");
    // The hairpin check runs before the masquerade decision in nat-postrouting.
    let hairpin = out.find("@hairpin jump").expect("hairpin rule");
    let masq = out
        .find("nat-postrouting jump masquerading")
        .expect("masquerading jump");
    assert!(hairpin < masq);
}

#[test]
fn endpoints_are_indexed_in_upstream_sort_order() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns", "a", "172.30.1.1", &[("dns", 53, "UDP")]));
    let eps = vec![ep("10.0.0.10"), ep("10.0.0.9"), ep("10.0.0.2")];
    t.apply_slice(&slice("ns", "a", "a-1", &[("dns", 5353, "UDP")], eps));
    let text = NftRenderer::new(shared_cfg()).render_full(&plan_of(&t));
    let mut state = NftState::default();
    state.apply(&text).expect("applies");
    let dump = state.dump();
    // Sorted as strings, like upstream: 10.0.0.10 < 10.0.0.2 < 10.0.0.9.
    for line in [
        "add element ip kube-proxy endpoints-udp { 172.30.1.1 . 53 . 0 : 10.0.0.10 . 5353 }",
        "add element ip kube-proxy endpoints-udp { 172.30.1.1 . 53 . 1 : 10.0.0.2 . 5353 }",
        "add element ip kube-proxy endpoints-udp { 172.30.1.1 . 53 . 2 : 10.0.0.9 . 5353 }",
        "add element ip kube-proxy service-ips { 172.30.1.1 . udp . 53 : goto dispatch-udp-3 }",
        "add rule ip kube-proxy dispatch-udp-3 meta l4proto udp dnat ip to ip daddr . udp dport . numgen random mod 3 map @endpoints-udp",
    ] {
        assert!(dump.iter().any(|l| l == line), "missing {line}\n{text}");
    }
}

#[test]
fn elements_are_batched_per_command() {
    let mut t = Tracker::new();
    for i in 0..150u32 {
        let name = format!("s{i}");
        let ip = format!("172.30.{}.{}", i / 200, i % 200 + 1);
        t.apply_service(&service("ns", &name, &ip, P80));
        let eps = (0..10)
            .map(|k| ep(&format!("10.{}.{}.{}", i / 200, i % 200, k + 1)))
            .collect();
        t.apply_slice(&slice("ns", &name, &format!("{name}-1"), P80, eps));
    }
    let text = NftRenderer::new(shared_cfg()).render_full(&plan_of(&t));
    // 1,500 map elements: two commands (1,000 + 500).
    let adds: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("add element ip kube-proxy endpoints-tcp "))
        .collect();
    assert_eq!(adds.len(), 2);
    assert_eq!(adds[0].matches(" : ").count(), ELEMENT_BATCH);
    assert_eq!(adds[1].matches(" : ").count(), 500);
    // The upstream layout keeps one element per command, as upstream writes them.
    let upstream = NftRenderer::new(upstream_cfg()).render_full(&plan_of(&t));
    let service_ips = upstream
        .lines()
        .filter(|l| l.starts_with("add element ip kube-proxy service-ips "))
        .count();
    assert_eq!(service_ips, 150);
}

#[test]
fn masquerade_all_and_no_detector_in_dispatch_chains() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns", "a", "172.30.1.1", P80));
    t.apply_slice(&slice("ns", "a", "a-1", P80, vec![ep("10.0.0.1")]));
    let plan = plan_of(&t);
    let all = NftRenderer::new(NftConfig {
        masquerade_all: true,
        ..shared_cfg()
    })
    .render_full(&plan);
    assert!(all.contains("add rule ip kube-proxy dispatch-tcp-1 jump mark-for-masquerade\n"));
    let none = NftRenderer::new(NftConfig {
        cluster_cidr: None,
        ..shared_cfg()
    })
    .render_full(&plan);
    assert!(!none.contains("dispatch-tcp-1 ip saddr"), "{none}");
    assert!(!none.contains("dispatch-tcp-1 jump"), "{none}");
}

/// Renders partial syncs of a changing cluster into an [`NftState`] and checks after each
/// that it equals what a fresh full sync of the same plan produces.
struct Converge {
    tracker: Tracker,
    plan: Plan,
    renderer: NftRenderer,
    state: NftState,
    cfg: NftConfig,
    now: Moment,
}

impl Converge {
    fn new(cfg: NftConfig) -> Converge {
        let tracker = Tracker::new();
        let plan = plan_of(&tracker);
        let mut renderer = NftRenderer::new(cfg.clone());
        let mut state = NftState::default();
        state.apply(&renderer.render_full(&plan)).expect("full");
        Converge {
            tracker,
            plan,
            renderer,
            state,
            cfg,
            now: Moment::from_millis(1_000_000),
        }
    }

    fn sync_and_check(&mut self, step: &str) {
        let changes = self.tracker.take_changes();
        let pc = PlanConfig {
            node_name: Some("test-node".into()),
            zone: None,
        };
        let affected = self.plan.update(&self.tracker, &pc, &changes.services);
        let text = self
            .renderer
            .render_partial(&self.plan, &affected, self.now);
        assert!(!text.contains("delete table"), "{step}: {text}");
        self.state
            .apply(&text)
            .unwrap_or_else(|e| panic!("{step}: {e}\n{text}"));
        // Stale chains are deleted >= 1 s later, in their own transaction.
        self.now += Duration::from_millis(2_000);
        if let Some(del) = self.renderer.render_stale_deletes(self.now) {
            self.state.apply(&del).expect("stale deletes");
        }
        let mut fresh = NftState::default();
        let full = NftRenderer::new(self.cfg.clone()).render_full(&self.plan);
        fresh.apply(&full).expect("fresh full");
        assert_eq!(self.state.dump(), fresh.dump(), "after {step}");
        // A later full sync over the kept table converges to the same state too.
        let mut kept = self.state.clone();
        let mut again = NftRenderer::new(self.cfg.clone());
        let mut scratch = NftState::default();
        scratch
            .apply(&again.render_full_at(&self.plan, Moment::EPOCH))
            .expect("first");
        let resync = again.render_full_at(&self.plan, self.now);
        assert!(!resync.contains("delete table"), "{step}: {resync}");
        kept.apply(&resync).expect("kept-table full sync");
        if let Some(del) = again.render_stale_deletes(self.now + Duration::from_millis(2_000)) {
            kept.apply(&del).expect("stale deletes");
        }
        assert_eq!(kept.dump(), fresh.dump(), "kept-table resync after {step}");
    }
}

/// A sequence of changes that moves a service port between dispatch chains, out of and
/// back into the shared map, to zero endpoints and away.
fn run_convergence(cfg: NftConfig) {
    let mut c = Converge::new(cfg);
    let eps =
        |n: u8| -> Vec<serde_json::Value> { (1..=n).map(|i| ep(&format!("10.1.0.{i}"))).collect() };
    c.tracker
        .apply_service(&service("ns", "a", "172.30.1.1", P80));
    c.tracker.apply_slice(&slice("ns", "a", "a-1", P80, eps(3)));
    c.tracker
        .apply_service(&service("ns", "b", "172.30.1.2", P80));
    c.tracker.apply_slice(&slice("ns", "b", "b-1", P80, eps(3)));
    c.sync_and_check("two services with 3 endpoints");
    c.tracker.apply_slice(&slice("ns", "a", "a-1", P80, eps(4)));
    c.sync_and_check("a grows to 4 (dispatch-tcp-3 still used by b)");
    c.tracker.apply_slice(&slice("ns", "b", "b-1", P80, eps(2)));
    c.sync_and_check("b shrinks to 2 (dispatch-tcp-3 unused)");
    let terminating = vec![
        ep_cond("10.1.0.7", false, true, true, None),
        ep_cond("10.1.0.8", false, false, true, None),
    ];
    c.tracker
        .apply_slice(&slice("ns", "b", "b-1", P80, terminating));
    c.sync_and_check("b falls back to its serving terminating endpoint");
    let affinity = json!({"sessionAffinity": "ClientIP"});
    c.tracker
        .apply_service(&service_with("ns", "a", "172.30.1.1", P80, affinity));
    c.sync_and_check("a gets session affinity (per-Service chains)");
    c.tracker
        .apply_service(&service("ns", "a", "172.30.1.1", P80));
    c.sync_and_check("a loses session affinity (back to the map)");
    c.tracker.apply_service(&service_json(
        "ns",
        "b",
        json!({"type": "NodePort", "clusterIP": "172.30.1.2",
               "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 30080}]}),
        json!({}),
    ));
    c.sync_and_check("b becomes a NodePort");
    c.tracker
        .apply_slice(&slice("ns", "a", "a-1", P80, Vec::new()));
    c.sync_and_check("a has no endpoints");
    c.tracker
        .delete_service(&service("ns", "b", "172.30.1.2", P80));
    c.tracker.apply_slice(&slice("ns", "a", "a-1", P80, eps(1)));
    c.sync_and_check("b deleted, a back with one endpoint");
    let udp: &[(&str, u16, &str)] = &[("p80", 80, "UDP")];
    c.tracker
        .apply_service(&service("ns", "a", "172.30.1.1", udp));
    c.tracker.apply_slice(&slice("ns", "a", "a-1", udp, eps(2)));
    c.sync_and_check("a's port becomes UDP (endpoints-tcp to endpoints-udp)");
}

#[test]
fn shared_map_partial_syncs_converge_to_a_full_sync() {
    run_convergence(shared_cfg());
}

#[test]
fn upstream_partial_syncs_converge_to_a_full_sync() {
    run_convergence(upstream_cfg());
}

#[test]
fn one_endpoint_change_is_element_updates_only() {
    let mut c = Converge::new(shared_cfg());
    let eps: Vec<_> = (1..=10).map(|i| ep(&format!("10.1.0.{i}"))).collect();
    c.tracker
        .apply_service(&service("ns", "a", "172.30.1.1", P80));
    c.tracker
        .apply_slice(&slice("ns", "a", "a-1", P80, eps.clone()));
    c.sync_and_check("10 endpoints");
    let mut changed = eps;
    changed[8] = ep("10.1.0.99");
    c.tracker
        .apply_slice(&slice("ns", "a", "a-1", P80, changed));
    let changes = c.tracker.take_changes();
    let affected = c
        .plan
        .update(&c.tracker, &PlanConfig::default(), &changes.services);
    let text = c.renderer.render_partial(&c.plan, &affected, c.now);
    // 10.1.0.9 (index 9) becomes 10.1.0.99 (still index 9): one map element and one hairpin
    // element replaced; no chain or rule is touched.
    assert_eq!(
        sorted_lines(&text),
        sorted_lines(
            "delete element ip kube-proxy endpoints-tcp { 172.30.1.1 . 80 . 9 }
add element ip kube-proxy endpoints-tcp { 172.30.1.1 . 80 . 9 : 10.1.0.99 . 80 }
delete element ip kube-proxy hairpin { 10.1.0.9 . 10.1.0.9 }
add element ip kube-proxy hairpin { 10.1.0.99 . 10.1.0.99 }"
        )
    );
}

/// What the rules in `state` do with a new connection to `dest` (`ip . proto . port`):
/// each endpoint `ip:port` with the probability of picking it, whether traffic from outside
/// `cidr` is masqueraded, and which endpoints are masqueraded when they reach themselves.
#[derive(Debug, PartialEq)]
struct Resolved {
    endpoints: BTreeMap<String, f64>,
    masquerades_off_cluster: bool,
    hairpin: BTreeSet<String>,
}

fn element_value<'a>(dump: &'a [String], set: &str, key: &str) -> Option<&'a str> {
    let prefix = format!("add element ip kube-proxy {set} {{ {key} : ");
    dump.iter()
        .find_map(|l| l.strip_prefix(prefix.as_str())?.strip_suffix(" }"))
}

fn resolve(state: &NftState, dest: &str) -> Resolved {
    let dump = state.dump();
    let target = element_value(&dump, "service-ips", dest)
        .and_then(|v| v.strip_prefix("goto "))
        .unwrap_or_else(|| panic!("no service-ips element for {dest}"));
    let mut r = Resolved {
        endpoints: BTreeMap::new(),
        masquerades_off_cluster: false,
        hairpin: BTreeSet::new(),
    };
    let rules = state.rules(target);
    r.masquerades_off_cluster = rules
        .iter()
        .any(|l| l.contains("ip saddr != 10.0.0.0/8 jump mark-for-masquerade"));
    let mut picks: Vec<(String, f64)> = Vec::new();
    if let Some(n) = target
        .rsplit('-')
        .next()
        .filter(|_| target.starts_with("dispatch-"))
    {
        let n: usize = n.parse().expect("count");
        let proto = target.split('-').nth(1).expect("proto");
        let (ip, port) = {
            let mut w = dest.split(" . ");
            (w.next().expect("ip"), w.nth(1).expect("port"))
        };
        assert!(
            rules
                .iter()
                .any(|l| l.ends_with(&format!("numgen random mod {n} map @endpoints-{proto}")))
        );
        for k in 0..n {
            let v = element_value(
                &dump,
                &format!("endpoints-{proto}"),
                &format!("{ip} . {port} . {k}"),
            )
            .unwrap_or_else(|| panic!("{dest}: no endpoint {k}"));
            picks.push((v.replace(" . ", ":"), 1.0 / n as f64));
        }
        let hairpins = dump
            .iter()
            .filter_map(|l| l.strip_prefix("add element ip kube-proxy hairpin { "))
            .filter_map(|l| l.split(" . ").next())
            .collect::<BTreeSet<_>>();
        for (e, _) in &picks {
            let ip = e.split(':').next().unwrap_or_default();
            if hairpins.contains(ip) {
                r.hairpin.insert(e.clone());
            }
        }
    } else {
        // Upstream's vmap or the shared-map layout's cascade of `mod (N-k)` rules.
        let mut remaining = 1.0;
        for l in &rules {
            if let Some(vmap) = l.split(" vmap { ").nth(1) {
                let entries: Vec<&str> = vmap.trim_end_matches(" }").split(" , ").collect();
                for e in &entries {
                    let chain = e.split("goto ").nth(1).expect("goto").trim();
                    picks.push((chain.to_string(), remaining / entries.len() as f64));
                }
                remaining = 0.0;
            } else if let Some(rest) = l.strip_prefix("numgen random mod ") {
                let (m, chain) = rest.split_once(" == 0 goto ").expect("mod rule");
                let p = remaining / m.parse::<f64>().expect("modulus");
                picks.push((chain.to_string(), p));
                remaining -= p;
            } else if let Some(chain) = l.strip_prefix("goto ") {
                picks.push((chain.to_string(), remaining));
                remaining = 0.0;
            }
        }
        for (chain, _) in picks.iter_mut() {
            let ep_rules = state.rules(chain);
            let dnat = ep_rules
                .iter()
                .find_map(|l| l.split(" dnat to ").nth(1))
                .expect("dnat")
                .to_string();
            let ip = dnat.split(':').next().unwrap_or_default();
            if ep_rules.contains(&format!("ip saddr {ip} jump mark-for-masquerade").as_str()) {
                r.hairpin.insert(dnat.clone());
            }
            *chain = dnat;
        }
    }
    for (e, p) in picks {
        *r.endpoints.entry(e).or_default() += p;
    }
    r
}

#[test]
fn both_layouts_resolve_every_cluster_ip_alike() {
    let mut t = overall_tracker();
    t.apply_service(&service(
        "ns7",
        "svc7",
        "172.30.0.47",
        &[("", 53, "UDP"), ("h", 80, "TCP")],
    ));
    let eps: Vec<_> = (1..=7).map(|i| ep(&format!("10.180.7.{i}"))).collect();
    t.apply_slice(&slice(
        "ns7",
        "svc7",
        "svc7-1",
        &[("", 5353, "UDP"), ("h", 8080, "TCP")],
        eps,
    ));
    let affinity = json!({"sessionAffinity": "ClientIP"});
    t.apply_service(&service_with("ns8", "svc8", "172.30.0.48", P80, affinity));
    let eps: Vec<_> = (1..=5).map(|i| ep(&format!("10.180.8.{i}"))).collect();
    t.apply_slice(&slice("ns8", "svc8", "svc8-1", P80, eps));
    let plan = plan_of(&t);
    let mut states = Vec::new();
    for cfg in [upstream_cfg(), shared_cfg()] {
        let mut s = NftState::default();
        s.apply(&NftRenderer::new(cfg).render_full(&plan))
            .expect("apply");
        states.push(s);
    }
    let mut checked = 0;
    for sp in plan.services().filter(|sp| sp.no_endpoints.is_none()) {
        let dest = format!(
            "{} . {} . {}",
            sp.port.cluster_ip,
            sp.port.name.protocol.lower(),
            sp.port.port
        );
        let up = resolve(&states[0], &dest);
        let shared = resolve(&states[1], &dest);
        assert_eq!(up.endpoints.len(), sp.endpoints.len(), "{dest}");
        for (e, p) in &up.endpoints {
            let q = shared.endpoints.get(e).copied().unwrap_or(-1.0);
            assert!((p - q).abs() < 1e-9, "{dest} {e}: {p} vs {q}");
            assert!(
                (p - 1.0 / sp.endpoints.len() as f64).abs() < 1e-9,
                "{dest} uniform"
            );
        }
        assert_eq!(up.endpoints.len(), shared.endpoints.len(), "{dest}");
        assert!(
            up.masquerades_off_cluster && shared.masquerades_off_cluster,
            "{dest}"
        );
        assert_eq!(up.hairpin, shared.hairpin, "{dest}");
        assert_eq!(up.hairpin.len(), sp.endpoints.len(), "{dest}");
        checked += 1;
    }
    assert_eq!(checked, 8);
}
