//! Tests of [`ServiceAllocations`] over Service JSON: create, update, delete, rebuild.

use std::net::{IpAddr, Ipv4Addr};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::*;

fn allocs(cidr: &str) -> ServiceAllocations {
    ServiceAllocations::new(
        IpRange::parse(cidr).expect("cidr"),
        PortRange::parse(DEFAULT_NODE_PORT_RANGE).expect("ports"),
    )
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(1234)
}

fn svc(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn cluster_ip(v: &Value) -> &str {
    v["spec"]["clusterIP"].as_str().unwrap_or("")
}

#[test]
fn create_dynamic_sets_ip_fields_like_upstream() {
    let mut a = allocs("10.96.0.0/12");
    let mut s = svc(
        "web",
        json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
    );
    let taken = a.allocate_for_create(&mut s, &mut rng()).expect("create");
    let got: Ipv4Addr = cluster_ip(&s).parse().expect("ipv4");
    assert_eq!(taken.cluster_ips, vec![got]);
    assert_eq!(s["spec"]["clusterIPs"], json!([got.to_string()]));
    assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(s["spec"]["ipFamilyPolicy"], json!("SingleStack"));
    // Dynamic picks land in the upper band: past 10.96.1.0 (offset 256).
    assert!(
        u32::from(got) > u32::from(Ipv4Addr::new(10, 96, 1, 0)),
        "{got}"
    );
    assert!(s["spec"]["ports"][0].get("nodePort").is_none());
    assert!(a.ips().is_allocated(IpAddr::V4(got)));
}

#[test]
fn requested_ip_failures_are_422_with_upstream_text() {
    let mut a = allocs("10.96.0.0/12");
    let mut first = svc("a", json!({"clusterIP": "10.96.0.10"}));
    a.allocate_for_create(&mut first, &mut rng())
        .expect("static band request honoured");
    assert_eq!(cluster_ip(&first), "10.96.0.10");

    let mut dup = svc("b", json!({"clusterIP": "10.96.0.10"}));
    let before = dup.clone();
    let err = a.allocate_for_create(&mut dup, &mut rng()).unwrap_err();
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    let details = err.details.as_ref().expect("details");
    assert_eq!(details.causes[0].field, "spec.clusterIPs");
    assert_eq!(
        details.causes[0].message,
        "Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"
    );
    assert_eq!(
        err.message,
        "Service \"b\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"
    );
    assert_eq!(dup, before, "rejected request left untouched");

    let mut out = svc(
        "c",
        json!({"clusterIP": "10.1.0.5", "clusterIPs": ["10.1.0.5"]}),
    );
    let err = a.allocate_for_create(&mut out, &mut rng()).unwrap_err();
    assert!(err.message.ends_with(
        "failed to allocate IP 10.1.0.5: the provided IP (10.1.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    ), "{}", err.message);
    assert_eq!(a.ips().used_count(), 1);
}

#[test]
fn full_range_is_500_and_headless_and_external_name_take_nothing() {
    let mut a = allocs("10.96.0.0/29");
    let mut r = rng();
    for i in 0..6 {
        a.allocate_for_create(&mut svc(&format!("s{i}"), json!({})), &mut r)
            .expect("free");
    }
    let err = a
        .allocate_for_create(&mut svc("full", json!({})), &mut r)
        .unwrap_err();
    assert_eq!((err.code, err.reason), (500, "InternalError"));
    assert_eq!(
        err.message,
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    );

    let mut headless = svc("h", json!({"clusterIP": "None", "selector": {"app": "x"}}));
    assert!(
        a.allocate_for_create(&mut headless, &mut r)
            .expect("headless")
            .is_empty()
    );
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], json!("SingleStack"));
    let mut selectorless = svc("h2", json!({"clusterIP": "None"}));
    a.allocate_for_create(&mut selectorless, &mut r)
        .expect("headless");
    assert_eq!(
        selectorless["spec"]["ipFamilyPolicy"],
        json!("RequireDualStack")
    );
    assert_eq!(selectorless["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));

    let mut ext = svc(
        "e",
        json!({"type": "ExternalName", "externalName": "example.com"}),
    );
    let before = ext.clone();
    assert!(
        a.allocate_for_create(&mut ext, &mut r)
            .expect("ext")
            .is_empty()
    );
    assert_eq!(ext, before);
}

#[test]
fn dual_stack_and_ipv6_requests_are_rejected() {
    let mut a = allocs("10.96.0.0/24");
    let mut s = svc("d", json!({"ipFamilyPolicy": "RequireDualStack"}));
    let err = a.allocate_for_create(&mut s, &mut rng()).unwrap_err();
    assert!(err.message.contains(
        "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
    ), "{}", err.message);
    let mut s = svc("d6", json!({"ipFamilies": ["IPv6"]}));
    let err = a.allocate_for_create(&mut s, &mut rng()).unwrap_err();
    assert!(
        err.message.contains(
            "spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"
        )
    );
    assert_eq!(a.ips().used_count(), 0);
}

#[test]
fn kubernetes_service_gets_first_ip() {
    let mut a = allocs("10.96.0.0/12");
    assert_eq!(a.kubernetes_ip(), Ipv4Addr::new(10, 96, 0, 1));
    let mut k = svc(
        "kubernetes",
        json!({"ports": [{"name": "https", "port": 443}]}),
    );
    a.allocate_for_create(&mut k, &mut rng())
        .expect("kubernetes");
    assert_eq!(cluster_ip(&k), "10.96.0.1");
}

#[test]
fn node_ports_allocated_shared_and_requested() {
    let mut a = allocs("10.96.0.0/24");
    let mut s = svc(
        "np",
        json!({"type": "NodePort", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "web", "port": 80, "nodePort": 30080}]}),
    );
    let taken = a.allocate_for_create(&mut s, &mut rng()).expect("create");
    let p0 = s["spec"]["ports"][0]["nodePort"].as_i64().expect("np");
    assert_eq!(
        s["spec"]["ports"][1]["nodePort"].as_i64(),
        Some(p0),
        "same port shares a node port"
    );
    assert_eq!(s["spec"]["ports"][2]["nodePort"], json!(30080));
    // Dynamic node ports come from the upper band (offset 86).
    assert!((30086..=32767).contains(&p0), "{p0}");
    assert_eq!(taken.node_ports.len(), 2);
    assert_eq!(a.ports().used_count(), 2);

    let mut clash = svc(
        "clash",
        json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": 30080}]}),
    );
    let err = a.allocate_for_create(&mut clash, &mut rng()).unwrap_err();
    assert_eq!(
        err.message,
        "Service \"clash\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    let mut outside = svc(
        "o",
        json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": 80}]}),
    );
    let err = a.allocate_for_create(&mut outside, &mut rng()).unwrap_err();
    assert!(err.message.ends_with(
        "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
    ));
    // Both failures rolled back their ClusterIP too.
    assert_eq!((a.ips().used_count(), a.ports().used_count()), (1, 2));
}

#[test]
fn duplicate_node_port_within_one_service_errors_and_rolls_back() {
    let mut a = allocs("10.96.0.0/24");
    let before = a.clone();
    let mut s = svc(
        "dup",
        json!({"type": "NodePort", "ports": [
            {"port": 80, "nodePort": 30100}, {"port": 81, "nodePort": 30100}]}),
    );
    let err = a.allocate_for_create(&mut s, &mut rng()).unwrap_err();
    assert_eq!(
        err.details.expect("details").causes[0].field,
        "spec.ports[1].nodePort"
    );
    assert_eq!(a, before, "bitmaps unchanged after a failed create");
}

#[test]
fn load_balancer_local_gets_health_check_port_and_release_frees_all() {
    let mut a = allocs("10.96.0.0/24");
    let mut s = svc(
        "lb",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
    );
    let taken = a.allocate_for_create(&mut s, &mut rng()).expect("create");
    assert!(s["spec"]["healthCheckNodePort"].as_i64().is_some());
    assert_eq!(taken.node_ports.len(), 2);
    a.release_service(&s);
    assert_eq!((a.ips().used_count(), a.ports().used_count()), (0, 0));
}

#[test]
fn caller_rollback_after_failed_write() {
    let mut a = allocs("10.96.0.0/24");
    let before = a.clone();
    let mut s = svc("x", json!({"type": "NodePort", "ports": [{"port": 80}]}));
    let taken = a.allocate_for_create(&mut s, &mut rng()).expect("create");
    a.release(&taken);
    assert_eq!(a, before);
}

#[test]
fn update_carries_over_cluster_ip_and_node_ports() {
    let mut a = allocs("10.96.0.0/24");
    let mut r = rng();
    let mut old = svc(
        "u",
        json!({"type": "NodePort", "ports": [{"name": "web", "port": 80}]}),
    );
    a.allocate_for_create(&mut old, &mut r).expect("create");
    let mut new = svc(
        "u",
        json!({"type": "NodePort", "ports": [{"name": "web", "port": 8080}]}),
    );
    let u = a
        .allocate_for_update(&old, &mut new, &mut r)
        .expect("update");
    assert_eq!(cluster_ip(&new), cluster_ip(&old));
    assert_eq!(
        new["spec"]["ports"][0]["nodePort"],
        old["spec"]["ports"][0]["nodePort"]
    );
    assert_eq!(new["spec"]["ipFamilyPolicy"], json!("SingleStack"));
    assert_eq!(u, UpdateAllocation::default());

    let mut changed = svc("u", json!({"clusterIP": "10.96.0.99", "type": "NodePort"}));
    let err = a
        .allocate_for_update(&old, &mut changed, &mut r)
        .unwrap_err();
    assert_eq!(err.code, 422);
}

#[test]
fn update_type_changes_allocate_and_release_at_commit() {
    let mut a = allocs("10.96.0.0/24");
    let mut r = rng();
    let mut old = svc("t", json!({"ports": [{"port": 80}]}));
    a.allocate_for_create(&mut old, &mut r).expect("create");
    let ip_before = cluster_ip(&old).to_string();

    // ClusterIP -> NodePort: a node port is allocated.
    let mut np = old.clone();
    np["spec"]["type"] = json!("NodePort");
    let u = a
        .allocate_for_update(&old, &mut np, &mut r)
        .expect("to NodePort");
    assert_eq!(u.allocated.node_ports.len(), 1);
    assert!(u.release_on_commit.is_empty());
    a.commit_update(&u);

    // NodePort -> ClusterIP (full PUT of the old object): node port wiped and freed at commit.
    let mut back = np.clone();
    back["spec"]["type"] = json!("ClusterIP");
    let u = a
        .allocate_for_update(&np, &mut back, &mut r)
        .expect("to ClusterIP");
    assert!(back["spec"]["ports"][0].get("nodePort").is_none());
    assert_eq!(a.ports().used_count(), 1, "still held until commit");
    a.commit_update(&u);
    assert_eq!(a.ports().used_count(), 0);

    // ClusterIP -> ExternalName: IP fields wiped, IP freed at commit only.
    let mut ext = back.clone();
    ext["spec"]["type"] = json!("ExternalName");
    ext["spec"]["externalName"] = json!("example.com");
    let u = a
        .allocate_for_update(&back, &mut ext, &mut r)
        .expect("to ExternalName");
    assert!(ext["spec"].get("clusterIP").is_none());
    assert_eq!(
        u.release_on_commit.cluster_ips,
        vec![ip_before.parse::<Ipv4Addr>().expect("ip")]
    );
    a.abort_update(&u);
    assert!(
        a.ips().is_allocated(ip(&ip_before)),
        "a failed write frees nothing"
    );
    a.commit_update(&u);
    assert_eq!(a.ips().used_count(), 0);

    // ExternalName -> ClusterIP: a fresh IP.
    let mut again = ext.clone();
    again["spec"]["type"] = json!("ClusterIP");
    let u = a
        .allocate_for_update(&ext, &mut again, &mut r)
        .expect("to ClusterIP");
    assert_eq!(u.allocated.cluster_ips.len(), 1);
    assert_eq!(again["spec"]["ipFamilies"], json!(["IPv4"]));
    a.abort_update(&u);
    assert_eq!(a.ips().used_count(), 0);
}

#[test]
fn failed_update_leaves_allocators_unchanged() {
    let mut a = allocs("10.96.0.0/24");
    let mut r = rng();
    let mut other = svc(
        "o",
        json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 30500}]}),
    );
    a.allocate_for_create(&mut other, &mut r).expect("other");
    let mut old = svc("t", json!({"ports": [{"port": 80}, {"port": 81}]}));
    a.allocate_for_create(&mut old, &mut r).expect("create");
    let before = a.clone();
    let mut new = old.clone();
    new["spec"]["type"] = json!("NodePort");
    new["spec"]["ports"][1]["nodePort"] = json!(30500);
    let err = a.allocate_for_update(&old, &mut new, &mut r).unwrap_err();
    assert!(
        err.message.contains("spec.ports[1].nodePort"),
        "{}",
        err.message
    );
    assert_eq!(a, before);
}

#[test]
fn rebuild_marks_everything_and_reports_problems() {
    let services = [
        svc(
            "a",
            json!({"clusterIP": "10.96.0.10", "type": "NodePort",
                        "ports": [{"port": 53, "protocol": "UDP", "nodePort": 30053},
                                  {"port": 53, "protocol": "TCP", "nodePort": 30053}]}),
        ),
        svc("b", json!({"clusterIP": "10.96.0.10"})),
        svc("c", json!({"clusterIP": "10.1.0.1"})),
        svc("d", json!({"clusterIP": "bogus"})),
        svc("e", json!({"clusterIP": "None"})),
        svc(
            "f",
            json!({"type": "NodePort", "clusterIP": "10.96.0.11",
                        "ports": [{"port": 80, "nodePort": 30053}, {"port": 81, "nodePort": 99}]}),
        ),
    ];
    let (a, issues) = ServiceAllocations::rebuild(
        IpRange::parse("10.96.0.0/24").expect("cidr"),
        PortRange::parse(DEFAULT_NODE_PORT_RANGE).expect("ports"),
        services.iter(),
    );
    let got: Vec<(&str, &str)> = issues.iter().map(|i| (i.name.as_str(), i.reason)).collect();
    assert_eq!(
        got,
        vec![
            ("b", "ClusterIPAlreadyAllocated"),
            ("c", "ClusterIPOutOfRange"),
            ("d", "ClusterIPNotValid"),
            ("f", "PortAlreadyAllocated"),
            ("f", "PortOutOfRange"),
        ]
    );
    assert_eq!(
        issues[0].message,
        "Cluster IP [IPv4]:10.96.0.10 was assigned to multiple services; please recreate service"
    );
    assert_eq!(
        issues[4].message,
        "Port 99 is not within the port range 30000-32767; please recreate service"
    );
    assert_eq!((a.ips().used_count(), a.ports().used_count()), (2, 1));
}

#[test]
fn random_create_delete_keeps_counts_consistent() {
    let mut a = allocs("10.96.0.0/27");
    let mut r = StdRng::seed_from_u64(99);
    let mut live: Vec<Value> = Vec::new();
    for step in 0..2_000 {
        if r.random_bool(0.55) {
            let spec = if r.random_bool(0.5) {
                json!({"type": "NodePort", "ports": [{"port": 80}]})
            } else {
                json!({})
            };
            let mut s = svc(&format!("s{step}"), spec);
            match a.allocate_for_create(&mut s, &mut r) {
                Ok(_) => live.push(s),
                Err(e) => assert_eq!((e.code, live.len()), (500, 30), "step {step}"),
            }
        } else if !live.is_empty() {
            let i = r.random_range(0..live.len());
            a.release_service(&live.swap_remove(i));
        }
        let node_ports = live
            .iter()
            .filter(|s| s["spec"]["type"] == "NodePort")
            .count();
        assert_eq!(a.ips().used_count() as usize, live.len(), "step {step}");
        assert_eq!(a.ports().used_count() as usize, node_ports, "step {step}");
    }
}

#[test]
fn health_check_port_follows_traffic_policy_changes() {
    let mut a = allocs("10.96.0.0/24");
    let mut r = rng();
    let mut old = svc(
        "lb",
        json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
    );
    a.allocate_for_create(&mut old, &mut r).expect("create");
    assert_eq!(a.ports().used_count(), 1);

    let mut local = old.clone();
    local["spec"]["externalTrafficPolicy"] = json!("Local");
    let u = a
        .allocate_for_update(&old, &mut local, &mut r)
        .expect("to Local");
    let hc = local["spec"]["healthCheckNodePort"]
        .as_i64()
        .expect("health check port");
    assert_eq!(
        u.allocated.node_ports,
        vec![u16::try_from(hc).expect("port")]
    );
    a.commit_update(&u);

    let mut cluster = local.clone();
    cluster["spec"]["externalTrafficPolicy"] = json!("Cluster");
    let u = a
        .allocate_for_update(&local, &mut cluster, &mut r)
        .expect("to Cluster");
    assert!(cluster["spec"].get("healthCheckNodePort").is_none());
    assert_eq!(
        u.release_on_commit.node_ports,
        vec![u16::try_from(hc).expect("port")]
    );
    a.commit_update(&u);
    assert_eq!(a.ports().used_count(), 1);
}
