//! Tests of `Scenario::parse`: a full valid file, then one test per kind of error with the
//! exact line asserted.

use std::time::Duration;

use crate::*;

const FULL: &str = r#"name: zone-a-power-off
topology: {zones: [a, b, c], nodesPerZone: 2, nodeCapacity: {cpu: "4", memory: 8Gi, pods: 110}}
profile: fast
proxyMode: nftables
flags: {node-monitor-grace-period: 5s, v: 2}
workloads:
  - path: examples/web.yaml
  - inline: {apiVersion: v1, kind: Service, metadata: {name: web}}
clients:
  - name: clients
    zones: [a, b, c]
    target: web
    rate: 20
    timeout: 1s
    keepalive: false
    retries: 0
faults:
  - at: 30s
    type: zone-power-off
    target: a
  - at: 1m30s
    type: recover
    target: a
run: {duration: 120s}
slo: {availability: 99.0, maxErrorWindow: 10s}
"#;

fn err(text: &str) -> ScenarioError {
    match Scenario::parse(text, "s.yaml") {
        Ok(s) => panic!("expected an error, parsed {s:?}"),
        Err(e) => e,
    }
}

#[test]
fn full_example_parses() {
    let s = Scenario::parse(FULL, "s.yaml").unwrap();
    assert_eq!(s.name, "zone-a-power-off");
    assert_eq!(s.topology.zones, ["a", "b", "c"]);
    assert_eq!(s.topology.nodes_per_zone, 2);
    assert_eq!(s.topology.node_capacity.memory, "8Gi");
    assert_eq!(s.profile, Profile::Fast);
    assert_eq!(s.proxy_mode, ProxyMode::Nftables);
    assert_eq!(s.flags["node-monitor-grace-period"], "5s");
    assert_eq!(s.flags["v"], "2");
    assert_eq!(s.workloads[0].path.as_deref(), Some("examples/web.yaml"));
    assert_eq!(s.workloads[1].inline_objects()[0]["kind"], "Service");
    let c = &s.clients[0];
    assert_eq!(c.rate, 20.0);
    assert_eq!(c.timeout, Duration::from_secs(1));
    assert_eq!(
        c.service_ref(),
        Some(ServiceRef {
            namespace: "default".into(),
            name: "web".into()
        })
    );
    assert_eq!(s.faults[0].kind, FaultType::ZonePowerOff);
    assert_eq!(s.faults[1].at, Duration::from_secs(90));
    assert_eq!(
        s.fault_target(&s.faults[0]),
        Some(FaultTarget::Zone("a".into()))
    );
    assert_eq!(s.run.limit(), Duration::from_secs(120));
    assert_eq!(s.slo.max_error_window, Some(Duration::from_secs(10)));
}

#[test]
fn defaults_apply() {
    let s = Scenario::parse(
        "name: x\nclients: [{name: c, service: kube-system/dns}]\nfaults: [{at: 1s, type: node-power-off, target: c-2}]\nrun: {until: capacity-restored}\n",
        "s.yaml",
    )
    .unwrap();
    assert_eq!(s.topology, Topology::default());
    assert_eq!(s.slo.availability, 99.0);
    assert_eq!(s.run.limit(), DEFAULT_CAP);
    assert_eq!(s.client_zones(&s.clients[0]), ["a", "b", "c"]);
    assert_eq!(s.clients[0].service_ref().unwrap().namespace, "kube-system");
    assert_eq!(
        s.fault_target(&s.faults[0]),
        Some(FaultTarget::Node {
            zone: "c".into(),
            index: 2
        })
    );
}

#[test]
fn unknown_field_names_field_line_and_column() {
    let text = FULL.replace("    keepalive: false\n", "    keepAlive: false\n");
    let e = err(&text);
    assert_eq!(e.location(), Some((15, 5)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("s.yaml:15:5: clients[0]: unknown field `keepAlive`"),
        "{msg}"
    );
    assert!(msg.contains("expected one of"), "{msg}");
    assert!(!msg.contains(" at line "), "{msg}");
}

#[test]
fn wrong_type_is_located() {
    let text = FULL.replace("    rate: 20\n", "    rate: fast\n");
    let e = err(&text);
    assert_eq!(e.location(), Some((13, 11)), "{e}");
    assert!(
        e.to_string().contains("clients[0].rate: invalid type"),
        "{e}"
    );
}

#[test]
fn fault_on_missing_zone_is_located() {
    let text = FULL.replace(
        "    target: a\n  - at: 1m30s",
        "    target: d\n  - at: 1m30s",
    );
    let e = err(&text);
    assert_eq!(e.location(), Some((20, 13)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("s.yaml:20:13: faults[0].target: unknown target \"d\""),
        "{msg}"
    );
    assert!(msg.contains("a, b, c"), "{msg}");
}

#[test]
fn node_fault_needs_existing_node() {
    let text = FULL.replace(
        "type: zone-power-off\n    target: a",
        "type: node-power-off\n    target: a-3",
    );
    let e = err(&text);
    assert_eq!(e.location(), Some((20, 13)), "{e}");
    let text = FULL.replace(
        "type: zone-power-off\n    target: a",
        "type: node-power-off\n    target: a",
    );
    let e = err(&text);
    assert!(e.to_string().contains("node-power-off needs a node"), "{e}");
}

#[test]
fn fault_after_the_end_is_located() {
    let text = FULL.replace("at: 1m30s", "at: 2m");
    let e = err(&text);
    assert_eq!(e.location(), Some((21, 9)), "{e}");
    assert!(
        e.to_string()
            .contains("faults[1].at: fault at 2m is not within the run (ends at 2m)"),
        "{e}"
    );
}

#[test]
fn bad_duration_is_located() {
    let text = FULL.replace("timeout: 1s", "timeout: 1sec");
    let e = err(&text);
    assert_eq!(e.location(), Some((14, 14)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("clients[0].timeout: invalid duration \"1sec\""),
        "{msg}"
    );
    assert!(msg.contains("1m30s"), "{msg}");
}

#[test]
fn unknown_fault_type_lists_valid_ones() {
    let text = FULL.replace("type: recover", "type: reboot");
    let e = err(&text);
    assert_eq!(e.location().map(|l| l.0), Some(22), "{e}");
    let msg = e.to_string();
    for t in FaultType::ALL {
        assert!(msg.contains(t), "{msg}");
    }
}

#[test]
fn client_zone_must_exist() {
    let text = FULL.replace("zones: [a, b, c]\n", "zones: [a, x]\n");
    let e = err(&text);
    assert_eq!(e.location(), Some((11, 16)), "{e}");
}

#[test]
fn numeric_limits_are_checked() {
    let e = err(&FULL.replace("rate: 20", "rate: 0"));
    assert_eq!(e.location().map(|l| l.0), Some(13), "{e}");
    let e = err(&FULL.replace("nodesPerZone: 2", "nodesPerZone: 245"));
    assert_eq!(e.location().map(|l| l.0), Some(2), "{e}");
    let e = err(&FULL.replace("availability: 99.0", "availability: 0"));
    assert_eq!(e.location().map(|l| l.0), Some(25), "{e}");
    let zones: Vec<String> = (0..27).map(|i| format!("z{i}")).collect();
    let e = err(&FULL.replace(
        "zones: [a, b, c], ",
        &format!("zones: [{}], ", zones.join(", ")),
    ));
    assert!(e.to_string().contains("expected 1 to 26 zones"), "{e}");
}

#[test]
fn run_shape_is_checked() {
    let e = err(&FULL.replace(
        "run: {duration: 120s}",
        "run: {duration: 120s, until: capacity-restored}",
    ));
    assert_eq!(e.location(), Some((24, 6)), "{e}");
    let e = err(&FULL.replace("run: {duration: 120s}\n", ""));
    assert!(e.to_string().contains("missing field `run`"), "{e}");
}

#[test]
fn yaml_syntax_error_is_located() {
    let e = err("name: x\nrun: {duration: 1s\n");
    assert!(e.location().is_some_and(|(l, _)| l >= 2), "{e}");
    assert!(e.to_string().starts_with("s.yaml:"), "{e}");
}

#[test]
fn load_reports_missing_file() {
    let e = load("/nonexistent/zonelab-scenario.yaml").unwrap_err();
    assert!(matches!(e, ScenarioError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/zonelab-scenario.yaml: cannot read"),
        "{e}"
    );
}

const GROUPS: &str = r#"name: eks
topology: {zones: [a, b], nodesPerZone: 2}
profile: upstream
nodeGroups:
  - {name: ng-a, zone: a, min: 1, max: 4, desired: 2}
  - name: ng-b
    zone: b
    min: 1
    max: 4
    desired: 2
    bootDelay: 90s
run: {duration: 60s}
"#;

#[test]
fn node_groups_parse_with_profile_dependent_boot_delay() {
    let s = Scenario::parse(GROUPS, "s.yaml").unwrap();
    assert_eq!(s.node_groups.len(), 2);
    let a = &s.node_groups[0];
    assert_eq!((a.min, a.max, a.desired), (1, 4, 2));
    assert_eq!(a.boot_delay(Profile::Upstream), Duration::from_secs(60));
    assert_eq!(a.boot_delay(Profile::Fast), Duration::from_secs(6));
    assert_eq!(
        s.node_groups[1].boot_delay(Profile::Fast),
        Duration::from_secs(90)
    );
    assert!(
        Scenario::parse(FULL, "s.yaml")
            .unwrap()
            .node_groups
            .is_empty()
    );
}

#[test]
fn node_group_min_above_max_is_rejected_at_its_line_and_column() {
    let text = GROUPS.replace("    min: 1\n    max: 4", "    min: 5\n    max: 4");
    let e = err(&text);
    assert_eq!(e.location(), Some((8, 10)), "{e}");
    assert_eq!(
        e.to_string(),
        "s.yaml:8:10: nodeGroups[1].min: min 5 is greater than max 4"
    );
    let text = GROUPS.replace("min: 1, max: 4, desired: 2}", "min: 3, max: 2, desired: 2}");
    let e = err(&text);
    assert_eq!(e.location(), Some((5, 32)), "{e}");
}

#[test]
fn node_group_bad_zone_desired_and_duplicates_are_located() {
    let e = err(&GROUPS.replace("zone: a,", "zone: c,"));
    assert_eq!(e.location(), Some((5, 24)), "{e}");
    assert!(
        e.to_string()
            .contains("unknown zone \"c\": expected one of a, b"),
        "{e}"
    );

    let e = err(&GROUPS.replace("    desired: 2\n", "    desired: 7\n"));
    assert!(
        e.to_string()
            .ends_with("nodeGroups[1].desired: desired 7 is outside [min 1, max 4]"),
        "{e}"
    );

    let e = err(&GROUPS.replace("name: ng-b", "name: ng-a"));
    assert!(
        e.to_string()
            .contains("node group \"ng-a\" is listed twice"),
        "{e}"
    );

    let e = err(&GROUPS.replace("desired: 2}", "desired: 1}"));
    assert!(
        e.to_string()
            .contains("start with 1 nodes but topology.nodesPerZone is 2"),
        "{e}"
    );

    let e = err(&GROUPS.replace("bootDelay: 90s", "bootDelay: soon"));
    assert_eq!(e.location().map(|l| l.0), Some(11), "{e}");

    let e = err(&GROUPS.replace("    max: 4\n", "    max: 300\n"));
    assert!(e.to_string().contains("a zone holds at most 244"), "{e}");

    // Each zone fits, the lab does not: 200 + 100 pod CIDRs.
    let e = err(&GROUPS
        .replace("max: 4, desired", "max: 200, desired")
        .replace("    max: 4\n", "    max: 100\n"));
    assert_eq!(e.location().map(|l| l.0), Some(9), "{e}");
    assert!(
        e.to_string()
            .contains("may grow the lab to 300 nodes; a lab holds at most 256"),
        "{e}"
    );
}

#[test]
fn control_plane_defaults_to_one_embedded_server() {
    let s = Scenario::parse(FULL, "s.yaml").unwrap();
    assert_eq!(s.control_plane.replicas, 1);
    assert_eq!(s.control_plane.store, Store::Embedded);
    assert!(!s.control_plane.zonal());
}

#[test]
fn etcd_control_plane_in_every_zone_with_an_etcd_leader_fault() {
    let text = FULL
        .replace(
            "proxyMode: nftables\n",
            "proxyMode: nftables\ncontrolPlane: {replicas: 3, store: etcd}\n",
        )
        .replace(
            "    target: a\n  - at: 1m30s",
            "    target: etcd-leader\n  - at: 1m30s",
        )
        .replace(
            "type: recover\n    target: a",
            "type: recover\n    target: etcd-leader",
        );
    let s = Scenario::parse(&text, "s.yaml").unwrap();
    assert_eq!(s.control_plane.store, Store::Etcd);
    assert!(s.control_plane.zonal());
    assert_eq!(s.fault_target(&s.faults[0]), Some(FaultTarget::EtcdLeader));
}

#[test]
fn control_plane_replicas_and_store_are_checked_and_located() {
    let with = |cp: &str| {
        FULL.replace(
            "proxyMode: nftables\n",
            &format!("proxyMode: nftables\ncontrolPlane: {cp}\n"),
        )
    };
    let e = err(&with("{replicas: 2, store: etcd}"));
    let msg = e.to_string();
    assert!(
        msg.starts_with("s.yaml:5:")
            && msg.contains("controlPlane.replicas: store: etcd runs one etcd member"),
        "{msg}"
    );
    assert!(msg.contains("expected replicas: 3"), "{msg}");
    let msg = err(&with("{replicas: 3}")).to_string();
    assert!(
        msg.contains("controlPlane.replicas: the embedded store serves one API server"),
        "{msg}"
    );
    let msg = err(&with("{store: raft}")).to_string();
    assert!(
        msg.starts_with("s.yaml:5:") && msg.contains("unknown variant `raft`"),
        "{msg}"
    );
    // etcd-leader needs an etcd control plane.
    let text = FULL.replace(
        "    target: a\n  - at: 1m30s",
        "    target: etcd-leader\n  - at: 1m30s",
    );
    let e = err(&text);
    assert_eq!(e.location(), Some((20, 13)), "{e}");
    assert!(
        e.to_string()
            .contains("etcd-leader needs an etcd control plane"),
        "{e}"
    );
}

const EXTERNAL: &str = "name: x
clients:
  - name: in
    service: web
  - name: out
    from: external
    service: web
    rate: 20
run: {duration: 10s}
";

#[test]
fn external_clients_go_through_the_load_balancer() {
    let s = Scenario::parse(EXTERNAL, "s.yaml").expect("valid");
    let (inside, outside) = (&s.clients[0], &s.clients[1]);
    assert_eq!(
        (inside.kind(), inside.via()),
        ("clusterip", ClientVia::Clusterip)
    );
    assert_eq!(
        (outside.from, outside.kind(), outside.via()),
        (ClientFrom::External, "external", ClientVia::LoadBalancer)
    );
    // `service: NAME` is a Service of namespace default.
    assert_eq!(
        outside.service_ref(),
        Some(ServiceRef {
            namespace: "default".into(),
            name: "web".into()
        })
    );
    let explicit = EXTERNAL.replace("    rate: 20\n", "    via: load-balancer\n");
    assert_eq!(
        Scenario::parse(&explicit, "s.yaml").expect("valid").clients[1].via(),
        ClientVia::LoadBalancer
    );
}

#[test]
fn external_client_paths_that_cannot_work_are_rejected_with_their_position() {
    let e = err(&EXTERNAL.replace("    rate: 20\n", "    via: clusterip\n"));
    assert_eq!(e.location(), Some((8, 10)), "{e}");
    assert!(
        e.to_string()
            .contains("clients[1].via: an external client cannot reach a ClusterIP"),
        "{e}"
    );
    let e = err(&EXTERNAL.replace(
        "    service: web\n  - name: out",
        "    service: web\n    via: load-balancer\n  - name: out",
    ));
    assert_eq!(e.location(), Some((5, 10)), "{e}");
    assert!(e.to_string().contains("add `from: external`"), "{e}");
    let e = err(&EXTERNAL.replace("    rate: 20\n", "    zones: [a]\n"));
    assert_eq!(e.location(), Some((8, 12)), "{e}");
    assert!(
        e.to_string()
            .contains("clients[1].zones: an external client runs outside the zones"),
        "{e}"
    );
    let e = err(&EXTERNAL.replace("from: external", "from: internet"));
    assert!(e.to_string().contains("unknown variant `internet`"), "{e}");
}

fn sim_err(text: &str) -> ScenarioError {
    match Scenario::parse_for(text, "s.yaml", crate::sim::Mode::Sim) {
        Ok(s) => panic!("expected an error, parsed {s:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_simulator_takes_large_zones_the_live_lab_does_not() {
    let big = "name: x\ntopology: {zones: [a, b], nodesPerZone: 2500}\nrun: {duration: 10s}\n";
    let s = Scenario::parse_for(big, "s.yaml", crate::sim::Mode::Sim).expect("sim size");
    assert_eq!(s.topology.nodes_per_zone, 2500);
    assert!(
        err(big)
            .to_string()
            .contains("expected 1 to 244 nodes per zone"),
        "{}",
        err(big)
    );
    let huge = big.replace("2500", "9000");
    let e = sim_err(&huge);
    assert_eq!(e.location(), Some((2, 41)), "{e}");
    assert!(e.to_string().contains("at most 16384 nodes in all"), "{e}");
}

#[test]
fn live_only_features_are_refused_for_the_simulator_with_their_position() {
    let e = sim_err(EXTERNAL);
    assert_eq!(e.location(), Some((6, 11)), "{e}");
    assert!(
        e.to_string()
            .contains("clients[1].from: from: external (clients outside the cluster) is live-only"),
        "{e}"
    );
    let flags =
        "name: x\nflags: {node-monitor-period: 1s, audit-log-path: /tmp/a}\nrun: {duration: 10s}\n";
    let e = sim_err(flags);
    assert!(
        e.to_string()
            .contains("flags.audit-log-path: flag audit-log-path is not modelled by the simulator"),
        "{e}"
    );
    let etcd = "name: x\ncontrolPlane: {store: etcd, replicas: 3}\nrun: {duration: 10s}\n";
    assert!(
        sim_err(etcd).to_string().contains("controlPlane.store"),
        "{}",
        sim_err(etcd)
    );
    let ok = "name: x\nflags: {node-monitor-period: 1s}\nrun: {duration: 10s}\n";
    assert!(Scenario::parse_for(ok, "s.yaml", crate::sim::Mode::Sim).is_ok());
}

#[test]
fn the_live_lab_refuses_sim_only_sizes_with_a_pointer_to_the_simulator() {
    let big = "name: x\ntopology: {zones: [a, b, c], nodesPerZone: 1667}\nrun: {duration: 10s}\n";
    let e = err(big);
    assert_eq!(e.location(), Some((2, 44)), "{e}");
    assert!(
        e.to_string().ends_with(
            "found 1667; larger topologies run in the simulator only (`zonelab run --sim`)"
        ),
        "{e}"
    );
}

#[test]
fn count_stamps_inline_templates_and_is_checked_at_its_line() {
    let text = "name: x
workloads:
  - count: 3
    inline:
      - {apiVersion: v1, kind: Service, metadata: {name: 'web-{{.Index}}'}}
run: {duration: 10s}
";
    let s = Scenario::parse(text, "s.yaml").expect("stamped");
    let w = &s.workloads[0];
    let objects: Vec<serde_json::Value> = w.inline_objects().into_iter().cloned().collect();
    let names: Vec<String> = w
        .stamp(&objects)
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    let fixed = text.replace("'web-{{.Index}}'", "web");
    let e = err(&fixed);
    assert_eq!(e.location(), Some((3, 12)), "{e}");
    assert!(
        e.to_string()
            .contains("workloads[0].count: count: 3 stamps Service \"web\" 3 times: expected `{{.Index}}` in its metadata.name"),
        "{e}"
    );
    let zero = text.replace("count: 3", "count: 0");
    let e = err(&zero);
    assert_eq!(e.location(), Some((3, 12)), "{e}");
    assert!(
        e.to_string()
            .contains("expected a count from 1 to 1000000, found 0"),
        "{e}"
    );
    let negative = text.replace("count: 3", "count: -1");
    assert!(
        err(&negative).to_string().contains("s.yaml:3:"),
        "{}",
        err(&negative)
    );
}
