//! Model changes fan out to every node's kube-proxy without the event queue holding
//! nodes x changes: each node's deliveries wait in its own inbox, only the head is queued,
//! and every node still ends at the newest model version.

use sim::World;
use std::time::Duration;

#[test]
fn a_burst_of_services_queues_one_delivery_per_node_and_reaches_every_proxy() {
    let text = "name: inbox\ntopology: {zones: [a, b, c], nodesPerZone: 20}\nprofile: upstream\nrun: {duration: 1m}\n";
    let s = scenario::Scenario::parse_for(text, "inbox.yaml", scenario::sim::Mode::Sim)
        .expect("scenario");
    let mut w = World::new(&s, 1).expect("world");
    w.start_control_plane();
    for zone in ["a", "b", "c"] {
        for i in 1..=20 {
            let at = w.now;
            w.add_node(sim::node_name(zone, i), zone, at);
        }
    }
    let booted = w.now + Duration::from_millis(1_000);
    w.run_until(booted);
    assert!(
        w.nodes.iter().all(|n| n.proxy.is_some()),
        "every agent runs"
    );
    let services = 200;
    let now = w.now;
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "inbox"}});
    for change in w.api.create_manifest(&ns, now).expect("a valid Namespace") {
        w.broadcast(change);
    }
    let before = w.queue.len();
    for i in 0..services {
        let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("s{i}"), "namespace": "inbox"},
            "spec": {"selector": {"app": format!("s{i}")},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
        for change in w.api.create_manifest(&svc, now).expect("a valid Service") {
            w.broadcast(change);
        }
    }
    let queued = w.queue.len() - before;
    // Per Service: the controller-manager's deliveries (no timeline watch for Services);
    // per node: one head of its proxy inbox, not one event per Service (that was 12,000).
    assert!(
        queued <= 3 * services + w.nodes.len(),
        "{queued} events queued for {services} Services x {} nodes",
        w.nodes.len()
    );
    let newest = w.proxy_model.version();
    let settled = w.now + Duration::from_millis(5_000);
    w.run_until(settled);
    for n in &w.nodes {
        let p = n.proxy.as_ref().expect("the agent still runs");
        assert_eq!(p.delivered(), newest, "node {}", n.name);
    }
}
