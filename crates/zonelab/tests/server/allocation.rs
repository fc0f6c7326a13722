//! ClusterIP allocation through the API under concurrency: distinct IPs in range, the whole
//! range reusable after deletes, and upstream's errors for taken, out-of-range and full.

use crate::common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::ServerProc;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

fn client(server: &ServerProc) -> kube::Client {
    kube::Client::try_from(kube::Config::new(server.url().parse().expect("url"))).expect("client")
}

fn service(name: &str, ip: Option<&str>) -> Service {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}},
    });
    if let Some(ip) = ip {
        v["spec"]["clusterIP"] = json!(ip);
    }
    serde_json::from_value(v).expect("service")
}

fn cluster_ip(s: &Service) -> Ipv4Addr {
    s.spec
        .as_ref()
        .and_then(|x| x.cluster_ip.as_deref())
        .unwrap_or("")
        .parse()
        .expect("ipv4 clusterIP")
}

/// Create `names` from `writers` concurrent tasks; returns the allocated IPs.
async fn create_all(api: &Api<Service>, names: Vec<String>, writers: usize) -> Vec<Ipv4Addr> {
    let names = Arc::new(std::sync::Mutex::new(names));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let api = api.clone();
        let names = Arc::clone(&names);
        tasks.push(tokio::spawn(async move {
            let mut ips = Vec::new();
            loop {
                let next = names.lock().unwrap().pop();
                let Some(name) = next else { break };
                let svc = api
                    .create(&PostParams::default(), &service(&name, None))
                    .await
                    .unwrap();
                ips.push(cluster_ip(&svc));
            }
            ips
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn delete_all(api: &Api<Service>, names: &[String]) {
    let chunks: Vec<Vec<String>> = names
        .chunks(names.len().div_ceil(16))
        .map(|c| c.to_vec())
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for n in chunk {
                api.delete(&n, &DeleteParams::default()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_creates_get_distinct_ips_and_range_is_reusable() {
    let dir = tempfile::tempdir().unwrap();
    // A /22 has 1022 usable addresses; the kubernetes Service holds 10.0.0.1.
    let server = ServerProc::start(dir.path(), &["--service-cluster-ip-range", "10.0.0.0/22"]);
    let api: Api<Service> = Api::namespaced(client(&server), "default");

    let names: Vec<String> = (0..1000).map(|i| format!("svc-{i}")).collect();
    let ips = create_all(&api, names.clone(), 16).await;
    assert_eq!(ips.len(), 1000);
    let distinct: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(distinct.len(), 1000, "an IP was given twice");
    for ip in &distinct {
        let o = ip.octets();
        assert!(o[0] == 10 && o[1] == 0 && o[2] < 4, "{ip} out of range");
        assert_ne!(*ip, Ipv4Addr::new(10, 0, 0, 0));
        assert_ne!(*ip, Ipv4Addr::new(10, 0, 3, 255));
        assert_ne!(
            *ip,
            Ipv4Addr::new(10, 0, 0, 1),
            "the kubernetes Service's IP was reused"
        );
    }

    delete_all(&api, &names).await;

    // Every usable address but the kubernetes Service's is free again.
    let again: Vec<String> = (0..1021).map(|i| format!("again-{i}")).collect();
    let ips = create_all(&api, again, 16).await;
    assert_eq!(ips.iter().collect::<BTreeSet<_>>().len(), 1021);
    let err = api
        .create(&PostParams::default(), &service("one-too-many", None))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 500);
            assert_eq!(
                e.message,
                "Internal error occurred: failed to allocate a serviceIP: range is full"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_ips_errors_and_immutability() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let api: Api<Service> = Api::namespaced(client(&server), "default");
    let pp = PostParams::default();

    let a = api
        .create(&pp, &service("a", Some("10.96.0.10")))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&a), Ipv4Addr::new(10, 96, 0, 10));

    let taken = api
        .create(&pp, &service("b", Some("10.96.0.10")))
        .await
        .unwrap_err();
    let kube::Error::Api(e) = taken else { panic!() };
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("failed to allocate IP 10.96.0.10: provided IP is already allocated"),
        "{}",
        e.message
    );

    let outside = api
        .create(&pp, &service("c", Some("10.1.0.5")))
        .await
        .unwrap_err();
    let kube::Error::Api(e) = outside else {
        panic!()
    };
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains(
            "failed to allocate IP 10.1.0.5: the provided IP (10.1.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        ),
        "{}",
        e.message
    );
    // Failed creates left nothing behind.
    assert!(api.get_opt("b").await.unwrap().is_none());
    assert!(api.get_opt("c").await.unwrap().is_none());

    // Headless.
    let h = api.create(&pp, &service("h", Some("None"))).await.unwrap();
    assert_eq!(h.spec.unwrap().cluster_ip.as_deref(), Some("None"));

    // clusterIP is immutable.
    let mut changed = api.get("a").await.unwrap();
    changed.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.11".into());
    changed.spec.as_mut().unwrap().cluster_ips = Some(vec!["10.96.0.11".into()]);
    let err = api.replace("a", &pp, &changed).await.unwrap_err();
    let kube::Error::Api(e) = err else { panic!() };
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("may not change once set") || e.message.contains("field is immutable"),
        "{}",
        e.message
    );

    // NodePort services get a port from the node-port range.
    let np: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
        "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": "x"}},
    }))
    .unwrap();
    let np = api.create(&pp, &np).await.unwrap();
    let port = np.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    assert!((30000..=32767).contains(&port), "{port}");

    // Deleting frees the IP for a new request.
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let again = api
        .create(&pp, &service("a2", Some("10.96.0.10")))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&again), Ipv4Addr::new(10, 96, 0, 10));
}
