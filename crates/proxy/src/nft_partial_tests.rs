//! Partial-sync golden test following upstream's TestSyncProxyRulesRepeated: the table state
//! after each transaction and the number of operations per transaction.

use super::*;

struct Harness {
    tracker: Tracker,
    plan: Plan,
    renderer: NftRenderer,
    state: NftState,
    now: Moment,
}

impl Harness {
    fn new(tracker: Tracker) -> Harness {
        let plan = Plan::build(&tracker, &PlanConfig::default());
        let mut renderer = NftRenderer::new(upstream_cfg());
        let mut state = NftState::default();
        state
            .apply(&renderer.render_full(&plan))
            .expect("full sync applies");
        let mut h = Harness {
            tracker,
            plan,
            renderer,
            state,
            now: Moment::from_millis(1_000_000),
        };
        h.tracker.take_changes();
        h
    }

    /// Runs one partial sync (after any due stale-chain deletion); returns its operation count.
    fn sync(&mut self) -> usize {
        if let Some(text) = self.renderer.render_stale_deletes(self.now) {
            self.state.apply(&text).expect("stale deletes apply");
        }
        let changes = self.tracker.take_changes();
        let affected = self
            .plan
            .update(&self.tracker, &PlanConfig::default(), &changes.services);
        let text = self
            .renderer
            .render_partial(&self.plan, &affected, self.now);
        self.state.apply(&text).expect("partial sync applies");
        text.lines().count()
    }

    fn assert_state(&self, expected_services: &str) {
        assert_eq!(
            self.state.dump(),
            sorted_lines(&format!("{BASE_RULES_TEXT}{expected_services}"))
        );
    }
}

const SVC1: &str = r#"
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 }
add chain ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 ip saddr 10.0.1.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80 meta l4proto tcp dnat to 10.0.1.1:80
"#;

const SVC2: &str = r#"
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 8080 : goto service-MHHHYRWA-ns2/svc2/tcp/p8080 }
add chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 ip daddr 172.30.0.42 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080 numgen random mod 1 vmap { 0 : goto endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 }
add chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 ip saddr 10.0.2.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080 meta l4proto tcp dnat to 10.0.2.1:8080
"#;

const SVC2_FLUSHED: &str = r#"
add chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080
add chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080
"#;

const SVC3_HEAD: &str = r#"
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80 }
add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
"#;

const SVC3_EP1: &str = r#"
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 }
add chain ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80
add rule ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 ip saddr 10.0.3.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80 meta l4proto tcp dnat to 10.0.3.1:80
"#;

const SVC3_EP2: &str = r#"
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 }
add chain ip kube-proxy endpoint-2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80
add chain ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80
add rule ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 ip saddr 10.0.3.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80 meta l4proto tcp dnat to 10.0.3.2:80
"#;

const SVC4_NO_EP: &str = r#"
add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy no-endpoint-services { 172.30.0.44 . tcp . 80 comment "ns4/svc4:p80" : goto reject-chain }
"#;

const SVC4: &str = r#"
add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }
add chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 ip daddr 172.30.0.44 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80 }
add chain ip kube-proxy endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80
add rule ip kube-proxy endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80 ip saddr 10.0.4.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80 meta l4proto tcp dnat to 10.0.4.1:80
"#;

#[test]
fn repeated_partial_syncs_match_upstream() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_service(&service(
        "ns2",
        "svc2",
        "172.30.0.42",
        &[("p8080", 8080, "TCP")],
    ));
    t.apply_slice(&slice("ns1", "svc1", "svc1-1", P80, vec![ep("10.0.1.1")]));
    t.apply_slice(&slice(
        "ns2",
        "svc2",
        "svc2-1",
        &[("p8080", 8080, "TCP")],
        vec![ep("10.0.2.1")],
    ));
    let mut h = Harness::new(t);
    h.assert_state(&format!("{SVC1}{SVC2}"));

    // Add a service and its endpoints: 2 elements + add/flush 2 chains + 4 rules.
    h.tracker
        .apply_service(&service("ns3", "svc3", "172.30.0.43", P80));
    h.tracker
        .apply_slice(&slice("ns3", "svc3", "svc3-1", P80, vec![ep("10.0.3.1")]));
    assert_eq!(h.sync(), 10);
    h.assert_state(&format!("{SVC1}{SVC2}{SVC3_HEAD}{SVC3_EP1}"));

    // Delete a service: its chains are flushed, not yet deleted (2 element deletes + 2 flushes).
    h.tracker.delete_service(&service(
        "ns2",
        "svc2",
        "172.30.0.42",
        &[("p8080", 8080, "TCP")],
    ));
    assert_eq!(h.sync(), 4);
    h.assert_state(&format!("{SVC1}{SVC2_FLUSHED}{SVC3_HEAD}{SVC3_EP1}"));
    assert_eq!(
        h.renderer.next_stale_due(),
        Some(h.now + STALE_CHAIN_DELETE_DELAY_MS)
    );

    // Not yet due: nothing deleted. After the delay, a separate transaction deletes them.
    h.now += Duration::from_millis(500);
    assert_eq!(h.renderer.render_stale_deletes(h.now), None);
    h.now += Duration::from_millis(1_500);
    assert_eq!(h.sync(), 0);
    h.assert_state(&format!("{SVC1}{SVC3_HEAD}{SVC3_EP1}"));
    assert_eq!(h.renderer.next_stale_due(), None);

    // A service without endpoints: cluster-ips + no-endpoint-services.
    h.tracker
        .apply_service(&service("ns4", "svc4", "172.30.0.44", P80));
    assert_eq!(h.sync(), 2);
    h.assert_state(&format!("{SVC1}{SVC3_HEAD}{SVC3_EP1}{SVC4_NO_EP}"));

    // Its endpoints arrive: service-ips add, no-endpoint-services delete, 2 chains, 4 rules.
    h.tracker
        .apply_slice(&slice("ns4", "svc4", "svc4-1", P80, vec![ep("10.0.4.1")]));
    assert_eq!(h.sync(), 10);
    h.assert_state(&format!("{SVC1}{SVC3_HEAD}{SVC3_EP1}{SVC4}"));

    // An endpoint changes: 2 chains rewritten (8 ops) + the old endpoint chain flushed.
    h.tracker
        .apply_slice(&slice("ns3", "svc3", "svc3-1", P80, vec![ep("10.0.3.2")]));
    assert_eq!(h.sync(), 9);
    h.assert_state(&format!("{SVC1}{SVC3_HEAD}{SVC3_EP2}{SVC4}"));

    // Nothing changed: an empty transaction.
    assert_eq!(h.sync(), 0);
}

#[test]
fn stale_chain_revived_before_deletion_is_kept() {
    let mut t = Tracker::new();
    t.apply_service(&service("ns1", "svc1", "172.30.0.41", P80));
    t.apply_slice(&slice("ns1", "svc1", "a", P80, vec![ep("10.0.1.1")]));
    let mut h = Harness::new(t);
    h.tracker
        .apply_slice(&slice("ns1", "svc1", "a", P80, vec![]));
    h.sync();
    assert!(h.renderer.next_stale_due().is_some());
    h.tracker
        .apply_slice(&slice("ns1", "svc1", "a", P80, vec![ep("10.0.1.1")]));
    h.sync();
    assert_eq!(h.renderer.next_stale_due(), None);
    h.now += Duration::from_millis(5_000);
    h.sync();
    h.assert_state(SVC1);
}

#[test]
fn affinity_sets_are_deleted_with_their_endpoint() {
    let mut h = Harness::new(overall_tracker());
    h.tracker
        .apply_slice(&slice("ns5", "svc5", "svc5-1", P80, vec![ep("10.180.0.7")]));
    h.sync();
    let dump = h.state.dump().join("\n");
    assert!(!dump.contains("add set ip kube-proxy affinity-GTK6MW7G"));
    assert!(
        dump.contains(
            "__10.180.0.7/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }"
        )
    );
    // After the stale delay the state equals a fresh full sync of the same plan.
    h.now += Duration::from_millis(2_000);
    h.sync();
    let mut fresh = NftState::default();
    fresh
        .apply(&NftRenderer::new(upstream_cfg()).render_full(&h.plan))
        .expect("apply");
    assert_eq!(h.state.dump(), fresh.dump());
}

/// svc3 turned into a NodePort Service (upstream's svc3 of TestOverallNFTablesRules, NodePort
/// 3003): the external chain and the `service-nodeports` element upstream writes for it.
const SVC3_NODEPORT: &str = r#"
add chain ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 goto service-4AT6LBPK-ns3/svc3/tcp/p80
add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80 }
"#;

#[test]
fn partial_syncs_add_and_remove_a_node_port() {
    let node_port = |np: Option<u16>| {
        let mut port = serde_json::json!({"name": "p80", "port": 80, "protocol": "TCP"});
        let ty = match np {
            Some(np) => {
                port["nodePort"] = serde_json::json!(np);
                "NodePort"
            }
            None => "ClusterIP",
        };
        crate::fixtures::service_json(
            "ns3",
            "svc3",
            serde_json::json!({"type": ty, "clusterIP": "172.30.0.43", "ports": [port]}),
            serde_json::json!({}),
        )
    };
    let mut t = Tracker::new();
    t.apply_service(&node_port(None));
    t.apply_slice(&slice("ns3", "svc3", "a", P80, vec![ep("10.0.3.1")]));
    let mut h = Harness::new(t);
    h.assert_state(&format!("{SVC3_HEAD}{SVC3_EP1}"));

    h.tracker.apply_service(&node_port(Some(3003)));
    let ops = h.sync();
    h.assert_state(&format!("{SVC3_HEAD}{SVC3_EP1}{SVC3_NODEPORT}"));
    // Only svc3's chains are rewritten: 3 chains (add + flush each), 2 rules each, 1 element.
    assert_eq!(ops, 3 * 2 + 3 * 2 + 1);

    h.tracker.apply_service(&node_port(None));
    h.sync();
    // The external chain is flushed at once and deleted after the stale delay.
    assert!(h.state.has_chain("external-4AT6LBPK-ns3/svc3/tcp/p80"));
    let dump = h.state.dump().join("\n");
    assert!(
        !dump.contains("add element ip kube-proxy service-nodeports"),
        "{dump}"
    );
    h.now += Duration::from_millis(2_000);
    h.sync();
    h.assert_state(&format!("{SVC3_HEAD}{SVC3_EP1}"));
}
