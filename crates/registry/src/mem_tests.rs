//! MemApi: each write's rules end to end, and rejected writes that change nothing.

use api::resources::{ResourceInfo, by_plural};
use serde_json::{Value, json};

use super::*;

fn res(group: &str, plural: &str) -> &'static ResourceInfo {
    by_plural(group, plural).unwrap()
}

fn api() -> MemApi<Value> {
    let mut api = MemApi::new(
        MemConfig {
            service_cluster_ip_range: "10.96.0.0/29".into(),
            service_node_port_range: (30000, 30001),
            ..MemConfig::default()
        },
        1,
    )
    .unwrap();
    for ns in ["default", "d"] {
        api.create(
            res("", "namespaces"),
            None,
            &json!({"metadata": {"name": ns}}),
            Moment::EPOCH,
        )
        .unwrap();
    }
    api
}

fn pod(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
}

fn svc(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}})
}

#[test]
fn create_fills_metadata_and_reports_the_change() {
    let mut api = api();
    let w = api
        .create(res("", "pods"), Some("d"), &json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}), Moment::from_millis(1_800_000_000_000))
        .unwrap();
    let p = &w.object;
    assert!(p["metadata"]["name"].as_str().unwrap().starts_with("web-"));
    assert_eq!(p["metadata"]["creationTimestamp"], "2027-01-15T08:00:00Z");
    assert_eq!(p["metadata"]["resourceVersion"], api.revision().to_string());
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 2);
    assert_eq!(w.changes.len(), 1);
    assert_eq!(w.changes[0].kind, ChangeType::Added);
    let name = p["metadata"]["name"].as_str().unwrap();
    assert_eq!(api.get(res("", "pods"), Some("d"), name), Some(p));
}

#[test]
fn same_seed_same_uids_and_names() {
    let run = || {
        let mut a = api();
        let w = a
            .create(res("", "pods"), Some("d"), &json!({"metadata": {"generateName": "x-"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}), Moment::EPOCH)
            .unwrap();
        (
            w.object["metadata"]["name"].clone(),
            w.object["metadata"]["uid"].clone(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn rejected_creates_change_nothing() {
    let mut api = api();
    let rev = api.revision();
    // Missing namespace, invalid object, duplicate: each refused, nothing stored.
    let e = api
        .create(res("", "pods"), Some("nope"), &pod("p"), Moment::EPOCH)
        .unwrap_err();
    assert_eq!((e.code, e.reason), (404, "NotFound"));
    let e = api
        .create(
            res("", "services"),
            Some("d"),
            &json!({"metadata": {"name": "bad"}, "spec": {"ports": [{"port": 0}]}}),
            Moment::EPOCH,
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(api.revision(), rev);
    assert_eq!(
        api.allocations().ips().used_count(),
        0,
        "no ClusterIP leaked"
    );
    api.create(res("", "services"), Some("d"), &svc("a"), Moment::EPOCH)
        .unwrap();
    let e = api
        .create(res("", "services"), Some("d"), &svc("a"), Moment::EPOCH)
        .unwrap_err();
    assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
    assert_eq!(
        api.allocations().ips().used_count(),
        1,
        "the duplicate took no ClusterIP"
    );
}

#[test]
fn service_ips_are_allocated_released_and_exhausted() {
    let mut api = api();
    let mut ips = Vec::new();
    // /29: 6 usable addresses.
    for i in 0..6 {
        let w = api
            .create(
                res("", "services"),
                Some("d"),
                &svc(&format!("s{i}")),
                Moment::EPOCH,
            )
            .unwrap();
        ips.push(w.object["spec"]["clusterIP"].as_str().unwrap().to_string());
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 6);
    let rev = api.revision();
    let e = api
        .create(res("", "services"), Some("d"), &svc("full"), Moment::EPOCH)
        .unwrap_err();
    assert_eq!(e.code, 500, "{e:?}");
    assert!(e.message.contains("range is full"), "{}", e.message);
    assert_eq!(api.revision(), rev);
    api.delete(
        res("", "services"),
        Some("d"),
        "s0",
        &DeleteOptions::default(),
        Moment::EPOCH,
    )
    .unwrap();
    assert_eq!(api.allocations().ips().used_count(), 5);
    api.create(res("", "services"), Some("d"), &svc("again"), Moment::EPOCH)
        .unwrap();
}

#[test]
fn update_bumps_generation_on_spec_change_only() {
    let mut api = api();
    let deps = res("apps", "deployments");
    let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let w = api.create(deps, Some("d"), &d, Moment::EPOCH).unwrap();
    assert_eq!(w.object["metadata"]["generation"], 1);
    let mut s = w.object.clone();
    s["status"] = json!({"replicas": 1});
    let w = api
        .update_status(deps, Some("d"), s.clone(), Moment::EPOCH)
        .unwrap();
    assert_eq!(w.object["metadata"]["generation"], 1);
    let mut m = w.object.clone();
    m["spec"]["replicas"] = json!(3);
    let w = api
        .update(deps, Some("d"), m.clone(), UpdateScope::Main, Moment::EPOCH)
        .unwrap();
    assert_eq!(w.object["metadata"]["generation"], 2);
    assert_eq!(
        w.object["status"]["replicas"], 1,
        "a main update keeps status"
    );
    // The same object again: no write, no change, same resourceVersion.
    let rev = api.revision();
    let mut same = w.object.clone();
    same["metadata"]["resourceVersion"] = json!(rev.to_string());
    let w2 = api
        .update(
            deps,
            Some("d"),
            same.clone(),
            UpdateScope::Main,
            Moment::EPOCH,
        )
        .unwrap();
    assert!(w2.changes.is_empty());
    assert_eq!(api.revision(), rev);
}

#[test]
fn a_stale_resource_version_conflicts_and_changes_nothing() {
    let mut api = api();
    let leases = res("coordination.k8s.io", "leases");
    let w = api
        .create(
            leases,
            Some("d"),
            &json!({"metadata": {"name": "n1"}, "spec": {}}),
            Moment::EPOCH,
        )
        .unwrap();
    let mut l = w.object.clone();
    l["spec"]["holderIdentity"] = json!("a");
    api.update(
        leases,
        Some("d"),
        l.clone(),
        UpdateScope::Main,
        Moment::EPOCH,
    )
    .unwrap();
    let rev = api.revision();
    l["spec"]["holderIdentity"] = json!("b");
    let e = api
        .update(
            leases,
            Some("d"),
            l.clone(),
            UpdateScope::Main,
            Moment::EPOCH,
        )
        .unwrap_err();
    assert_eq!((e.code, e.reason), (409, "Conflict"));
    assert_eq!(api.revision(), rev);
    assert_eq!(
        api.get(leases, Some("d"), "n1").unwrap()["spec"]["holderIdentity"],
        "a"
    );
}

#[test]
fn an_invalid_service_update_gives_its_new_node_port_back() {
    let mut api = api();
    let svcs = res("", "services");
    let w = api
        .create(svcs, Some("d"), &svc("a"), Moment::EPOCH)
        .unwrap();
    let mut np = w.object.clone();
    np["spec"]["type"] = json!("NodePort");
    np["spec"]["ports"][0]["port"] = json!(0);
    let e = api
        .update(
            svcs,
            Some("d"),
            np.clone(),
            UpdateScope::Main,
            Moment::EPOCH,
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        api.allocations().ports().used_count(),
        0,
        "no node port leaked"
    );
}

#[test]
fn graceful_pod_deletion_then_final_delete() {
    let mut api = api();
    let pods = res("", "pods");
    api.create(pods, Some("d"), &pod("p"), Moment::EPOCH)
        .unwrap();
    api.bind("d", "p", "n1", Moment::from_millis(1_000))
        .unwrap();
    let w = api
        .delete(
            pods,
            Some("d"),
            "p",
            &DeleteOptions::default(),
            Moment::from_millis(10_000),
        )
        .unwrap();
    assert_eq!(
        w.object["metadata"]["deletionTimestamp"],
        "1970-01-01T00:00:40Z"
    );
    assert_eq!(w.changes[0].kind, ChangeType::Modified);
    // The kubelet's status writes keep it; its grace-0 delete removes it.
    let mut s = w.object.clone();
    s["status"]["phase"] = json!("Running");
    api.update_status(pods, Some("d"), s.clone(), Moment::from_millis(11_000))
        .unwrap();
    assert!(api.get(pods, Some("d"), "p").is_some());
    let now = DeleteOptions {
        grace_seconds: Some(0),
        ..DeleteOptions::default()
    };
    let w = api
        .delete(pods, Some("d"), "p", &now, Moment::from_millis(12_000))
        .unwrap();
    assert_eq!(w.changes[0].kind, ChangeType::Deleted);
    assert!(api.get(pods, Some("d"), "p").is_none());
}

#[test]
fn finalizers_hold_until_removed() {
    let mut api = api();
    let cms = res("", "configmaps");
    api.create(
        cms,
        Some("d"),
        &json!({"metadata": {"name": "c", "finalizers": ["x/y"]}}),
        Moment::EPOCH,
    )
    .unwrap();
    let w = api
        .delete(
            cms,
            Some("d"),
            "c",
            &DeleteOptions::default(),
            Moment::EPOCH,
        )
        .unwrap();
    let mut c = w.object.clone();
    c["metadata"]["finalizers"] = json!([]);
    let w = api
        .update(cms, Some("d"), c.clone(), UpdateScope::Main, Moment::EPOCH)
        .unwrap();
    assert_eq!(w.changes[0].kind, ChangeType::Deleted);
    assert!(api.get(cms, Some("d"), "c").is_none());
}

#[test]
fn binding_refusals() {
    let mut api = api();
    api.create(res("", "pods"), Some("d"), &pod("p"), Moment::EPOCH)
        .unwrap();
    api.bind("d", "p", "n1", Moment::EPOCH).unwrap();
    let rev = api.revision();
    let e = api.bind("d", "p", "n2", Moment::EPOCH).unwrap_err();
    assert_eq!(e.code, 409);
    let e = api.bind("d", "missing", "n2", Moment::EPOCH).unwrap_err();
    assert_eq!(e.code, 404);
    assert_eq!(api.revision(), rev);
}

#[test]
fn deleting_an_owner_cascades_or_orphans() {
    let mut api = api();
    let rss = res("apps", "replicasets");
    let pods = res("", "pods");
    let rs = json!({"metadata": {"name": "rs"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let uid = api
        .create(rss, Some("d"), &rs, Moment::EPOCH)
        .unwrap()
        .object["metadata"]["uid"]
        .clone();
    for name in ["p1", "p2"] {
        let mut p = pod(name);
        p["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid}]);
        api.create(pods, Some("d"), &p, Moment::EPOCH).unwrap();
    }
    api.create(pods, Some("d"), &pod("other"), Moment::EPOCH)
        .unwrap();
    let w = api
        .delete(
            rss,
            Some("d"),
            "rs",
            &DeleteOptions::default(),
            Moment::EPOCH,
        )
        .unwrap();
    let deleted: Vec<_> = w
        .changes
        .iter()
        .map(|c| {
            (
                c.kind,
                c.object["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        deleted,
        vec![
            (ChangeType::Deleted, "rs".into()),
            (ChangeType::Deleted, "p1".into()),
            (ChangeType::Deleted, "p2".into())
        ]
    );
    assert!(api.get(pods, Some("d"), "other").is_some());

    let uid = api
        .create(rss, Some("d"), &rs, Moment::EPOCH)
        .unwrap()
        .object["metadata"]["uid"]
        .clone();
    let mut p = pod("kept");
    p["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid}]);
    api.create(pods, Some("d"), &p, Moment::EPOCH).unwrap();
    let orphan = DeleteOptions {
        propagation: Some("Orphan".into()),
        ..DeleteOptions::default()
    };
    api.delete(rss, Some("d"), "rs", &orphan, Moment::EPOCH)
        .unwrap();
    assert_eq!(
        api.get(pods, Some("d"), "kept").unwrap()["metadata"]["ownerReferences"],
        json!([])
    );
}

#[test]
fn deleting_a_namespace_empties_it_and_frees_its_service_ips() {
    let mut api = api();
    api.create(res("", "services"), Some("d"), &svc("a"), Moment::EPOCH)
        .unwrap();
    api.create(res("", "pods"), Some("d"), &pod("p"), Moment::EPOCH)
        .unwrap();
    let e = api
        .delete(
            res("", "namespaces"),
            None,
            "default",
            &DeleteOptions::default(),
            Moment::EPOCH,
        )
        .unwrap_err();
    assert_eq!(e.code, 403);
    api.delete(
        res("", "namespaces"),
        None,
        "d",
        &DeleteOptions::default(),
        Moment::EPOCH,
    )
    .unwrap();
    assert_eq!(api.list(res("", "pods"), None).count(), 0);
    assert!(api.get(res("", "namespaces"), None, "d").is_none());
    assert_eq!(api.allocations().ips().used_count(), 0);
}

#[test]
fn put_raw_stores_as_given_and_keeps_the_uid() {
    let mut api: MemApi<Value> = MemApi::new(MemConfig::default(), 2).unwrap();
    let pods = res("", "pods");
    let w = api
        .put_raw(
            pods,
            Some("d"),
            json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}}),
            Moment::from_millis(5_000),
        )
        .unwrap();
    assert_eq!(w.object["status"]["phase"], "Running");
    let uid = w.object["metadata"]["uid"].clone();
    let w = api
        .put_raw(
            pods,
            Some("d"),
            json!({"metadata": {"name": "p", "uid": "other"}}),
            Moment::from_millis(6_000),
        )
        .unwrap();
    assert_eq!(w.object["metadata"]["uid"], uid);
    assert_eq!(w.changes[0].kind, ChangeType::Modified);
    assert!(
        MemApi::<Value>::new(
            MemConfig {
                service_cluster_ip_range: "bogus".into(),
                ..MemConfig::default()
            },
            0
        )
        .is_err()
    );
}
