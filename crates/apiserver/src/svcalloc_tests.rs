//! Two API servers over one store: ClusterIPs and NodePorts stay distinct across them, a
//! delete frees the value for the other server, and a rejected Service reserves nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use store::{ListOptions, SharedStore, Store};

use crate::handlers::{FieldValidation, WriteOptions, create_object, delete_now};
use crate::reservations::{IP_PREFIX, NODE_PORT_PREFIX};
use crate::server::{Config, Server};

/// 62 usable addresses (61 after the `kubernetes` Service), 61 node ports.
fn config() -> Config {
    Config {
        service_cluster_ip_range: "10.96.0.0/26".into(),
        service_node_port_range: (30000, 30060),
        ..Config::default()
    }
}

const OPTS: WriteOptions = WriteOptions {
    dry_run: false,
    field_validation: FieldValidation::Strict,
};

fn services() -> &'static api::resources::ResourceInfo {
    api::resources::by_plural("", "services").expect("services")
}

fn node_port_service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": "x"}}})
}

/// Create `names` on `server` from 4 concurrent tasks; returns (name, clusterIP, nodePort).
async fn create_many(server: &Arc<Server>, names: Vec<String>) -> Vec<(String, String, i64)> {
    let chunks: Vec<Vec<String>> = names
        .chunks(names.len().div_ceil(4))
        .map(<[_]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let server = Arc::clone(server);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for n in chunk {
                let w = create_object(
                    &server,
                    services(),
                    Some("default"),
                    node_port_service(&n),
                    OPTS,
                )
                .await
                .unwrap_or_else(|e| panic!("create {n}: {}", e.message));
                let spec = &w.object["spec"];
                out.push((
                    n,
                    spec["clusterIP"].as_str().unwrap_or("").to_string(),
                    spec["ports"][0]["nodePort"].as_i64().unwrap_or(0),
                ));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all
}

async fn reserved(store: &dyn Store, prefix: &str) -> BTreeSet<String> {
    let page = store
        .list(prefix, ListOptions::default())
        .await
        .expect("list");
    page.items
        .iter()
        .map(|kv| kv.key.strip_prefix(prefix).unwrap_or("").to_string())
        .collect()
}

/// The ClusterIPs and NodePorts of every stored Service (the `kubernetes` one included).
async fn held(store: &dyn Store) -> (BTreeSet<String>, BTreeSet<String>) {
    let page = store
        .list(
            &crate::objects::prefix(services(), None),
            ListOptions::default(),
        )
        .await
        .expect("list");
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for kv in &page.items {
        let svc: Value = serde_json::from_slice(&kv.value).expect("json");
        ips.insert(svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string());
        if let Some(p) = svc["spec"]["ports"][0]["nodePort"].as_i64() {
            ports.insert(p.to_string());
        }
    }
    (ips, ports)
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn assert_distinct(created: &[(String, String, i64)]) {
    let ips: BTreeSet<_> = created.iter().map(|c| c.1.clone()).collect();
    let ports: BTreeSet<_> = created.iter().map(|c| c.2).collect();
    assert_eq!(
        ips.len(),
        created.len(),
        "a ClusterIP was handed out twice: {created:?}"
    );
    assert_eq!(
        ports.len(),
        created.len(),
        "a NodePort was handed out twice: {created:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_store_never_share_a_cluster_ip_or_node_port() {
    let store: SharedStore = Arc::new(store::MemStore::new());
    let a = Server::new(Arc::clone(&store), config())
        .await
        .expect("server a");
    let b = Server::new(Arc::clone(&store), config())
        .await
        .expect("server b");

    // Both servers at once: 50 of the 61 free addresses and ports.
    let (ca, cb) = tokio::join!(
        create_many(&a, names("a", 25)),
        create_many(&b, names("b", 25))
    );
    let mut all = ca.clone();
    all.extend(cb.iter().cloned());
    assert_distinct(&all);
    let (ips, ports) = held(&*store).await;
    assert_eq!(
        reserved(&*store, IP_PREFIX).await,
        ips,
        "one IPAddress per ClusterIP"
    );
    assert_eq!(
        reserved(&*store, NODE_PORT_PREFIX).await,
        ports,
        "one key per NodePort"
    );

    // A's deletes free its values; B then fills both ranges, which needs every freed value.
    for (n, _, _) in &ca {
        delete_now(&a, services(), Some("default"), n)
            .await
            .expect("delete");
    }
    let refill = create_many(&b, names("c", 36)).await;
    let mut live = cb.clone();
    live.extend(refill.iter().cloned());
    assert_distinct(&live);
    let freed: BTreeSet<_> = ca.iter().map(|c| c.1.clone()).collect();
    let reused: BTreeSet<_> = refill.iter().map(|c| c.1.clone()).collect();
    assert_eq!(
        freed.difference(&reused).count(),
        0,
        "every IP server a freed was reused by b"
    );
    let (ips, ports) = held(&*store).await;
    assert_eq!(ips.len(), 62);
    assert_eq!(reserved(&*store, IP_PREFIX).await, ips);
    assert_eq!(reserved(&*store, NODE_PORT_PREFIX).await, ports);

    // Both ranges are full now: a further create fails and reserves nothing.
    let before = (
        reserved(&*store, IP_PREFIX).await,
        reserved(&*store, NODE_PORT_PREFIX).await,
    );
    let e = create_object(
        &a,
        services(),
        Some("default"),
        node_port_service("full"),
        OPTS,
    )
    .await
    .map(|_| ())
    .expect_err("full range");
    assert_eq!(e.code, 500, "{}", e.message);
    assert!(e.message.contains("range is full"), "{}", e.message);
    let after = (
        reserved(&*store, IP_PREFIX).await,
        reserved(&*store, NODE_PORT_PREFIX).await,
    );
    assert_eq!(before, after);
}

#[tokio::test]
async fn an_ip_held_through_another_server_is_refused_with_upstreams_error_and_nothing_reserved() {
    let store: SharedStore = Arc::new(store::MemStore::new());
    let a = Server::new(Arc::clone(&store), config())
        .await
        .expect("server a");
    let b = Server::new(Arc::clone(&store), config())
        .await
        .expect("server b");
    let w = create_object(
        &a,
        services(),
        Some("default"),
        node_port_service("one"),
        OPTS,
    )
    .await
    .expect("create");
    let ip = w.object["spec"]["clusterIP"]
        .as_str()
        .expect("ip")
        .to_string();
    let port = w.object["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("port");
    let before = (
        reserved(&*store, IP_PREFIX).await,
        reserved(&*store, NODE_PORT_PREFIX).await,
    );

    let mut same_ip = node_port_service("two");
    same_ip["spec"]["clusterIP"] = json!(ip);
    let e = create_object(&b, services(), Some("default"), same_ip, OPTS)
        .await
        .map(|_| ())
        .expect_err("taken IP");
    assert_eq!(e.code, 422, "{}", e.message);
    assert!(
        e.message.contains("provided IP is already allocated"),
        "{}",
        e.message
    );

    let mut same_port = node_port_service("three");
    same_port["spec"]["ports"][0]["nodePort"] = json!(port);
    let e = create_object(&b, services(), Some("default"), same_port, OPTS)
        .await
        .map(|_| ())
        .expect_err("taken port");
    assert_eq!(e.code, 422, "{}", e.message);
    assert!(
        e.message.contains("provided port is already allocated"),
        "{}",
        e.message
    );

    let after = (
        reserved(&*store, IP_PREFIX).await,
        reserved(&*store, NODE_PORT_PREFIX).await,
    );
    assert_eq!(before, after, "a rejected Service reserves nothing");
    assert!(
        store
            .get(&crate::objects::key(services(), Some("default"), "two"))
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn a_store_without_reservations_gets_them_at_start_up() {
    let store: SharedStore = Arc::new(store::MemStore::new());
    let a = Server::new(Arc::clone(&store), config())
        .await
        .expect("server a");
    create_object(
        &a,
        services(),
        Some("default"),
        node_port_service("old"),
        OPTS,
    )
    .await
    .expect("create");
    let (ips, ports) = held(&*store).await;
    // Data written before reservations existed: drop them, as an old data dir has none.
    for prefix in [IP_PREFIX, NODE_PORT_PREFIX] {
        for k in reserved(&*store, prefix).await {
            store
                .delete(&format!("{prefix}{k}"), None)
                .await
                .expect("delete");
        }
    }
    let b = Server::new(Arc::clone(&store), config())
        .await
        .expect("server b");
    assert_eq!(reserved(&*store, IP_PREFIX).await, ips);
    assert_eq!(reserved(&*store, NODE_PORT_PREFIX).await, ports);
    // And again: idempotent.
    drop(b);
    Server::new(Arc::clone(&store), config())
        .await
        .expect("server c");
    assert_eq!(reserved(&*store, IP_PREFIX).await, ips);
    // A delete releases the adopted reservations.
    delete_now(&a, services(), Some("default"), "old")
        .await
        .expect("delete");
    assert_eq!(reserved(&*store, NODE_PORT_PREFIX).await, BTreeSet::new());
    assert_eq!(
        reserved(&*store, IP_PREFIX).await.len(),
        1,
        "only kubernetes' IP stays"
    );
}

/// PUT `svc` through `server`: (code, body).
async fn put(server: &Arc<Server>, svc: &Value) -> (u16, Value) {
    let name = svc["metadata"]["name"].as_str().expect("name");
    let url = format!("/api/v1/namespaces/default/services/{name}");
    crate::handlers::evict::server_tests::call(
        server,
        http::Method::PUT,
        &url,
        "application/json",
        svc.clone(),
    )
    .await
}

#[tokio::test]
async fn updates_take_and_give_back_reservations_in_the_same_write() {
    let store: SharedStore = Arc::new(store::MemStore::new());
    let a = Server::new(Arc::clone(&store), config())
        .await
        .expect("server a");
    let b = Server::new(Arc::clone(&store), config())
        .await
        .expect("server b");
    let ips = || reserved(&*store, IP_PREFIX);
    let ports = || reserved(&*store, NODE_PORT_PREFIX);
    let other = create_object(
        &a,
        services(),
        Some("default"),
        node_port_service("other"),
        OPTS,
    )
    .await
    .expect("create");
    let other_port = other.object["spec"]["ports"][0]["nodePort"].clone();
    let mut svc = create_object(
        &a,
        services(),
        Some("default"),
        node_port_service("u"),
        OPTS,
    )
    .await
    .expect("create")
    .object;
    assert_eq!((ips().await.len(), ports().await.len()), (3, 2));

    // NodePort -> ClusterIP through server b: the node port's reservation goes.
    svc["spec"]["type"] = json!("ClusterIP");
    svc["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("externalTrafficPolicy");
    let (code, body) = put(&b, &svc).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!((ips().await.len(), ports().await.len()), (3, 1));

    // ClusterIP -> ExternalName: the IPAddress goes.
    let mut svc = body;
    svc["spec"] = json!({"type": "ExternalName", "externalName": "example.com"});
    let (code, body) = put(&b, &svc).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!((ips().await.len(), ports().await.len()), (2, 1));

    // Back to NodePort asking for the port `other` holds (through a, b never saw it): refused
    // with upstream's error, nothing reserved.
    let mut svc = body;
    svc["spec"] = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": other_port}],
                         "selector": {"app": "x"}});
    let (code, body) = put(&b, &svc).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("provided port is already allocated"),
        "{body}"
    );
    assert_eq!((ips().await.len(), ports().await.len()), (2, 1));

    // Without the taken port: a new IP and port, reserved with the update.
    svc["spec"]["ports"][0]
        .as_object_mut()
        .expect("port")
        .remove("nodePort");
    let (code, body) = put(&b, &svc).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!((ips().await.len(), ports().await.len()), (3, 2));
    let ip = body["spec"]["clusterIP"].as_str().expect("ip").to_string();
    assert!(ips().await.contains(&ip), "{body}");
}
