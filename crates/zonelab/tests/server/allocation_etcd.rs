//! Two `zonelab server` processes on one real etcd (the HA control plane): 2 × 50 concurrent
//! NodePort Service creates, half through each server, over ranges small enough that two
//! per-process bitmaps would collide; every ClusterIP and NodePort is distinct, each one is
//! reserved in etcd (an IPAddress object per ClusterIP), and deletes through one server free
//! values that the other then hands out.

use crate::common;

use std::collections::BTreeSet;

use common::ServerProc;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use store::testing::EtcdCluster;

/// 126 usable addresses (125 after `kubernetes`) and 120 ports for 100 Services.
const IP_RANGE: &str = "10.96.0.0/25";
const PORT_RANGE: &str = "30000-30119";

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": "x"}},
    }))
    .expect("service")
}

/// Creates `prefix-0..n` through `api` from 10 concurrent tasks: (name, clusterIP, nodePort).
async fn create_many(api: &Api<Service>, prefix: &str, n: usize) -> Vec<(String, String, i32)> {
    let mut tasks = Vec::new();
    for w in 0..10 {
        let api = api.clone();
        let names: Vec<String> = (w..n)
            .step_by(10)
            .map(|i| format!("{prefix}-{i}"))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for name in names {
                let svc = api
                    .create(&PostParams::default(), &service(&name))
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
                let spec = svc.spec.expect("spec");
                let port = spec
                    .ports
                    .as_ref()
                    .and_then(|p| p[0].node_port)
                    .unwrap_or(0);
                out.push((name, spec.cluster_ip.unwrap_or_default(), port));
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

fn assert_distinct(created: &[(String, String, i32)]) {
    let ips: BTreeSet<_> = created.iter().map(|c| c.1.clone()).collect();
    let ports: BTreeSet<_> = created.iter().map(|c| c.2).collect();
    assert_eq!(ips.len(), created.len(), "a ClusterIP handed out twice");
    assert_eq!(ports.len(), created.len(), "a NodePort handed out twice");
}

#[test]
#[cfg_attr(
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
)]
fn two_servers_on_one_etcd_hand_out_distinct_cluster_ips_and_node_ports() {
    netlab::preflight::require_etcd_for_test();
    let etcd = EtcdCluster::start(1).expect("etcd starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let urls = etcd.servers_flag();
    let flags = [
        "--etcd-servers",
        &urls,
        "--profile",
        "fast",
        "--service-cluster-ip-range",
        IP_RANGE,
        "--service-node-port-range",
        PORT_RANGE,
    ];
    let servers = [
        ServerProc::start(&dir.path().join("a"), &flags),
        ServerProc::start(&dir.path().join("b"), &flags),
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let apis: Vec<Api<Service>> = servers
            .iter()
            .map(|s| {
                let cfg = kube::Config::new(s.url().parse().expect("url"));
                Api::namespaced(kube::Client::try_from(cfg).expect("client"), "default")
            })
            .collect();
        let (a, b) = tokio::join!(
            create_many(&apis[0], "alloc-a", 50),
            create_many(&apis[1], "alloc-b", 50)
        );
        let mut all = a.clone();
        all.extend(b.iter().cloned());
        assert_distinct(&all);

        // Each ClusterIP is an IPAddress in etcd naming its Service.
        let store = store::EtcdStore::connect(store::EtcdOptions::new(etcd.client_urls()))
            .await
            .expect("etcd client");
        for (name, ip, port) in &all {
            let kv = store::Store::get(
                &store,
                &format!("/registry/networking.k8s.io/ipaddresses/{ip}"),
            )
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("no IPAddress for {name}'s {ip}"));
            let addr: serde_json::Value = serde_json::from_slice(&kv.value).expect("json");
            assert_eq!(addr["kind"], "IPAddress");
            assert_eq!(addr["spec"]["parentRef"]["name"], name.as_str());
            let reserved =
                store::Store::get(&store, &format!("/registry/core/servicenodeports/{port}"))
                    .await
                    .expect("get");
            assert!(
                reserved.is_some(),
                "no reservation for {name}'s node port {port}"
            );
        }

        // Free server a's values, then fill both ranges through server b: that needs them.
        for (name, _, _) in &a {
            apis[0]
                .delete(name, &DeleteParams::default())
                .await
                .expect("delete");
        }
        let refill = create_many(&apis[1], "alloc-c", 70).await;
        let mut live = b.clone();
        live.extend(refill.iter().cloned());
        assert_distinct(&live);
        let ports: BTreeSet<i32> = live.iter().map(|c| c.2).collect();
        assert_eq!(ports.len(), 120, "every node port of the range is in use");
    });
}
