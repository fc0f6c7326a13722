//! Root-only integration test: the full-sync text (upstream test services plus a 3-endpoint
//! and an affinity service) passes `nft --check -f -` and applies for real with `nft -f -`
//! inside a throwaway network namespace `zl-test-<pid>-<tag>`, which is always deleted; and a
//! later full sync keeps the table, so an affinity set's elements survive it.
//! Reported as ignored without root, `nft` or `ip` (see build.rs); under CI it fails instead.

use runtime::Moment;
use std::process::Command;

use proxy::apply::{NftApplier, RuleApplier};
use proxy::fixtures::{ep, service, service_json, service_with, slice};
use proxy::nft::{NftConfig, NftLayout, NftRenderer};
use proxy::{Cidr, Plan, PlanConfig, Tracker};

const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];

/// Deletes the namespace on drop (also when a test panics).
struct NetnsGuard(String);

impl NetnsGuard {
    /// `tag` keeps the tests of this binary (threads of one process) apart.
    fn create(tag: &str) -> Option<NetnsGuard> {
        let name = format!("zl-test-{}-{tag}", std::process::id());
        // Leftover of a crashed run with the same pid: remove first.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .ok()?
            .success();
        ok.then_some(NetnsGuard(name))
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn text() -> String {
    NftRenderer::new(cfg(NftLayout::Upstream)).render_full(&plan())
}

fn cfg(layout: NftLayout) -> NftConfig {
    NftConfig {
        cluster_cidr: Some(Cidr::parse("10.0.0.0/8").expect("cidr")),
        service_cidrs: vec![Cidr::parse("172.30.0.0/16").expect("cidr")],
        nodeport_ips: vec!["192.168.0.2".parse().expect("ip")],
        node_ip: Some("192.168.0.2".parse().expect("ip")),
        layout,
        ..NftConfig::default()
    }
}

fn plan() -> Plan {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_service(&service(
        "ns3",
        "svc3",
        "172.30.0.43",
        &[("dns", 53, "UDP"), ("", 443, "TCP")],
    ));
    let affinity = serde_json::json!({"sessionAffinity": "ClientIP"});
    t.apply_service(&service_with("ns5", "svc5", "172.30.0.45", P80, affinity));
    t.apply_service(&service("ns6", "svc6", "172.30.0.46", P80));
    // A LoadBalancer with Local policy (one local endpoint), source ranges and a NodePort,
    // and one without any local endpoint: external, firewall and local chains, NodePort maps.
    for (name, cip, np, node) in [
        ("svc7", "172.30.0.47", 30007, "test-node"),
        ("svc8", "172.30.0.48", 30008, "node2"),
    ] {
        t.apply_service(&service_json(
            "ns7",
            name,
            serde_json::json!({"type": "LoadBalancer", "clusterIP": cip, "externalTrafficPolicy": "Local",
                "healthCheckNodePort": np + 1000, "loadBalancerSourceRanges": ["203.0.113.0/25", "192.168.0.0/24"],
                "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": np}]}),
            serde_json::json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}),
        ));
        t.apply_slice(&slice(
            "ns7",
            name,
            "a",
            P80,
            vec![
                serde_json::json!({"addresses": ["10.180.0.7"], "nodeName": node}),
                ep("10.180.0.8"),
            ],
        ));
    }
    t.apply_slice(&slice(
        "ns1",
        "svc1",
        "a",
        P80,
        vec![ep("10.180.0.1"), ep("10.180.0.2"), ep("10.180.0.10")],
    ));
    t.apply_slice(&slice(
        "ns3",
        "svc3",
        "a",
        &[("dns", 53, "UDP"), ("", 8443, "TCP")],
        vec![ep("10.180.0.3")],
    ));
    t.apply_slice(&slice(
        "ns5",
        "svc5",
        "a",
        P80,
        vec![ep("10.180.0.5"), ep("10.180.0.6")],
    ));
    Plan::build(
        &t,
        &PlanConfig {
            node_name: Some("test-node".into()),
            zone: None,
        },
    )
}

fn in_netns(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn a_second_full_sync_keeps_affinity_set_elements() {
    use netlab::preflight::{IP, NFT, require_for_test};
    require_for_test(&[IP, NFT]);
    let ns = NetnsGuard::create("affinity").expect("creating a network namespace");
    let plan = plan();
    let mut r = NftRenderer::new(NftConfig {
        cluster_cidr: Some(Cidr::parse("10.0.0.0/8").expect("cidr")),
        ..NftConfig::default()
    });
    let mut nft = NftApplier::new(Some(ns.0.clone()));
    let first = r.render_full_at(&plan, Moment::EPOCH);
    nft.apply(&first).expect("first full sync");
    let set = first
        .lines()
        .find_map(|l| l.strip_prefix("add set ip kube-proxy affinity-"))
        .and_then(|rest| rest.split(' ').next())
        .map(|name| format!("affinity-{name}"))
        .expect("an affinity set");
    // A client with affinity (what the kernel's `update @set` adds for a real connection).
    let added = in_netns(
        &ns.0,
        &[
            "nft",
            "add",
            "element",
            "ip",
            "kube-proxy",
            &set,
            "{ 10.0.0.7 }",
        ],
    );
    assert!(added.status.success(), "{added:?}");
    let second = r.render_full_at(&plan, Moment::from_millis(30_000));
    assert!(!second.contains("delete table"));
    nft.apply(&second).expect("second full sync");
    let listed = in_netns(&ns.0, &["nft", "list", "set", "ip", "kube-proxy", &set]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("10.0.0.7"), "{listed}");
    // The rules are still all there after the kept-table sync.
    let table = in_netns(&ns.0, &["nft", "list", "table", "ip", "kube-proxy"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("numgen random mod 3"), "{table}");
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn full_sync_text_passes_nft_check_and_applies_in_a_netns() {
    use netlab::preflight::{IP, NFT, require_for_test};
    require_for_test(&[IP, NFT]);
    let ns = NetnsGuard::create("check").expect("creating a network namespace");
    let text = text();
    let mut check = NftApplier {
        netns: Some(ns.0.clone()),
        check_only: true,
    };
    check
        .apply(&text)
        .expect("nft --check accepts the full sync");
    let mut real = NftApplier::new(Some(ns.0.clone()));
    real.apply(&text).expect("nft -f applies the full sync");
    // A second full sync (table reset) applies on top of the first.
    real.apply(&text).expect("second full sync applies");
    let listed = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "nft",
            "list",
            "table",
            "ip",
            "kube-proxy",
        ])
        .output()
        .expect("list");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("numgen random mod 3"), "{listed}");
    assert!(listed.contains("172.30.0.46 . tcp . 80"), "{listed}");
    assert!(listed.contains("chain external-"), "{listed}");
    assert!(listed.contains("chain local-"), "{listed}");
    assert!(listed.contains("chain firewall-"), "{listed}");
    assert!(listed.contains("tcp . 30008"), "{listed}");
    // Broken text is rejected and changes nothing.
    assert!(
        real.apply("add rule ip kube-proxy no-such-chain accept\n")
            .is_err()
    );
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn shared_map_full_resync_and_partial_sync_apply_in_a_netns() {
    use netlab::preflight::{IP, NFT, require_for_test};
    require_for_test(&[IP, NFT]);
    let ns = NetnsGuard::create("shared").expect("creating a network namespace");
    let plan = plan();
    let mut r = NftRenderer::new(cfg(NftLayout::SharedMap));
    let mut check = NftApplier {
        netns: Some(ns.0.clone()),
        check_only: true,
    };
    let first = r.render_full_at(&plan, Moment::EPOCH);
    check
        .apply(&first)
        .expect("nft --check accepts the shared-map full sync");
    let mut nft = NftApplier::new(Some(ns.0.clone()));
    nft.apply(&first).expect("shared-map full sync applies");
    let again = r.render_full_at(&plan, Moment::from_millis(30_000));
    assert!(!again.contains("delete table"));
    nft.apply(&again).expect("kept-table full sync applies");
    // Every Service removed in one partial sync: elements deleted, chains flushed, then the
    // stale chains (per-Service and dispatch) deleted in their own transaction.
    let names: std::collections::BTreeSet<_> =
        plan.services().map(|sp| sp.port.name.clone()).collect();
    let partial = r.render_partial(&Plan::default(), &names, Moment::from_millis(40_000));
    nft.apply(&partial).expect("partial sync applies");
    let deletes = r
        .render_stale_deletes(Moment::from_millis(41_000))
        .expect("stale chains");
    assert!(
        deletes.contains("delete chain ip kube-proxy dispatch-tcp-3"),
        "{deletes}"
    );
    nft.apply(&deletes).expect("stale deletes apply");
    let listed = in_netns(&ns.0, &["nft", "list", "table", "ip", "kube-proxy"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(!listed.contains("chain dispatch-"), "{listed}");
    assert!(!listed.contains("chain endpoint-"), "{listed}");
    assert!(!listed.contains("10.180.0.1 . 80"), "{listed}");
    // Back again: the full plan as one partial sync.
    let back = r.render_partial(&plan, &names, Moment::from_millis(50_000));
    nft.apply(&back)
        .expect("partial sync re-adding everything applies");
    let listed = in_netns(&ns.0, &["nft", "list", "table", "ip", "kube-proxy"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("chain dispatch-tcp-3"), "{listed}");
    assert!(listed.contains("chain external-"), "{listed}");
    assert!(
        listed.contains("numgen random mod 2 == 0 goto endpoint-")
            || listed.contains("numgen random mod 2 0 goto endpoint-"),
        "{listed}"
    );
}
