//! The typed fast paths against the JSON path: equal objects, and fallbacks where the JSON
//! path's validation could answer differently.

use api::resources::{ResourceInfo, by_plural};
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use rand::SeedableRng;
use serde_json::{Value, json};

use super::*;
use crate::admission::{self, Admission};
use crate::mem::{MemApi, MemConfig};
use crate::stored::Stored;
use crate::strategy::UpdateScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

fn pods() -> &'static ResourceInfo {
    by_plural("", "pods").unwrap()
}
fn nodes() -> &'static ResourceInfo {
    by_plural("", "nodes").unwrap()
}
fn leases() -> &'static ResourceInfo {
    by_plural("coordination.k8s.io", "leases").unwrap()
}

/// A stored object as the create rules leave it.
fn created(res: &ResourceInfo, ns: Option<&str>, mut v: Value) -> Value {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    admission::admit_create(
        res,
        ns,
        &mut v,
        &Admission::default(),
        Moment::from_millis(1_000),
        &mut rng,
    )
    .unwrap();
    v
}

/// The JSON path of an update.
fn json_path(res: &ResourceInfo, scope: UpdateScope, old: &Value, mut new: Value) -> Value {
    let ns = old["metadata"]["namespace"].as_str();
    let name = old["metadata"]["name"].as_str().unwrap();
    admission::decode_update(res, ns, name, &mut new).unwrap();
    admission::admit_update(res, name, &mut new, old, scope, 1).unwrap();
    admission::validate_update(res, name, &new, old).unwrap();
    new
}

/// JSON through the typed representation (what a typed store would hold).
fn canonical<T: Serialize + DeserializeOwned>(v: &Value) -> Value {
    serde_json::to_value(serde_json::from_value::<T>(v.clone()).unwrap()).unwrap()
}

fn typed<T: DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn pod_status_typed_equals_json() {
    let old = created(
        pods(),
        Some("d"),
        json!({"metadata": {"name": "p", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs1"}]},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}),
    );
    let mut new = old.clone();
    new["status"] = json!({"phase": "Running", "podIP": "10.0.0.5", "conditions": [{"type": "Ready", "status": "True"}]});
    new["spec"]["nodeName"] = json!("elsewhere");
    new["metadata"]["ownerReferences"] = json!([]);
    new["metadata"].as_object_mut().unwrap().remove("uid");
    new["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("creationTimestamp");
    let want = canonical::<Pod>(&json_path(pods(), UpdateScope::Status, &old, new.clone()));
    let mut fast: Pod = typed(&new);
    assert_eq!(pod_status(&mut fast, &typed(&old)), FastPath::Applied);
    assert_eq!(serde_json::to_value(&fast).unwrap(), want);
    assert_eq!(fast.spec.unwrap().node_name.as_deref(), Some("n1"));
}

#[test]
fn node_status_typed_equals_json() {
    let old = created(
        nodes(),
        None,
        json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}, "spec": {"podCIDRs": ["10.1.0.0/24"]}}),
    );
    let mut new = old.clone();
    new["status"] =
        json!({"capacity": {"pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]});
    new["spec"]["unschedulable"] = json!(true);
    let want = canonical::<Node>(&json_path(nodes(), UpdateScope::Status, &old, new.clone()));
    let mut fast: Node = typed(&new);
    assert_eq!(node_status(&mut fast, &typed(&old)), FastPath::Applied);
    assert_eq!(serde_json::to_value(&fast).unwrap(), want);
    assert_eq!(want["status"]["allocatable"]["pods"], "110");
}

fn replicasets() -> &'static ResourceInfo {
    by_plural("apps", "replicasets").unwrap()
}
fn deployments() -> &'static ResourceInfo {
    by_plural("apps", "deployments").unwrap()
}

/// A stored ReplicaSet or Deployment (`spec` gets the kind's extra fields).
fn stored_apps(res: &ResourceInfo, extra: Value) -> Value {
    let mut spec = json!({"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "c", "image": "i"}]}}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    created(
        res,
        Some("d"),
        json!({"metadata": {"name": "web", "labels": {"app": "web"},
                            "annotations": {"deployment.kubernetes.io/revision": "1"}},
               "spec": spec}),
    )
}

/// A status write as a controller sends it, plus a stale spec, other labels, no uid or
/// creationTimestamp and another generation: the JSON path takes those from the stored object.
fn status_write(old: &Value) -> Value {
    let mut new = old.clone();
    new["status"] = json!({"replicas": 3, "readyReplicas": 2, "availableReplicas": 1,
                           "observedGeneration": 1,
                           "conditions": [{"type": "Available", "status": "False"}]});
    new["spec"]["replicas"] = json!(7);
    new["metadata"]["labels"] = json!({"app": "other"});
    new["metadata"]["generation"] = json!(5);
    let m = new["metadata"].as_object_mut().unwrap();
    m.remove("uid");
    m.remove("creationTimestamp");
    new
}

#[test]
fn replicaset_status_typed_equals_json() {
    let old = stored_apps(replicasets(), json!({}));
    let new = status_write(&old);
    let want = canonical::<ReplicaSet>(&json_path(
        replicasets(),
        UpdateScope::Status,
        &old,
        new.clone(),
    ));
    let mut fast: ReplicaSet = typed(&new);
    assert_eq!(
        replicaset_status(&mut fast, &typed(&old)),
        FastPath::Applied
    );
    assert_eq!(serde_json::to_value(&fast).unwrap(), want);
    assert_eq!(want["spec"]["replicas"], 3);
    assert_eq!(want["metadata"]["labels"]["app"], "web");
    assert_eq!(want["metadata"]["generation"], 1);
    assert_eq!(want["status"]["readyReplicas"], 2);
}

#[test]
fn deployment_status_typed_equals_json() {
    let old = stored_apps(deployments(), json!({"minReadySeconds": 2}));
    let new = status_write(&old);
    let want = canonical::<Deployment>(&json_path(
        deployments(),
        UpdateScope::Status,
        &old,
        new.clone(),
    ));
    let mut fast: Deployment = typed(&new);
    assert_eq!(
        deployment_status(&mut fast, &typed(&old)),
        FastPath::Applied
    );
    assert_eq!(serde_json::to_value(&fast).unwrap(), want);
    assert_eq!(want["spec"]["strategy"]["type"], "RollingUpdate");
}

#[test]
fn apps_status_writes_validation_would_see_fall_back() {
    let old = stored_apps(replicasets(), json!({}));
    let stored: ReplicaSet = typed(&old);
    let mut annotated: ReplicaSet = typed(&status_write(&old));
    annotated
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("Bad Key".into(), "x".into());
    let before = annotated.clone();
    assert_eq!(
        replicaset_status(&mut annotated, &stored),
        FastPath::Fallback
    );
    assert_eq!(annotated, before, "a fallback leaves the object alone");
    let mut renamed: ReplicaSet = typed(&status_write(&old));
    renamed.metadata.namespace = Some("elsewhere".into());
    assert_eq!(replicaset_status(&mut renamed, &stored), FastPath::Fallback);
    let mut deleting = stored.clone();
    deleting.metadata.deletion_timestamp = stored.metadata.creation_timestamp.clone();
    let mut write: ReplicaSet = typed(&status_write(&old));
    assert_eq!(replicaset_status(&mut write, &deleting), FastPath::Fallback);
}

#[test]
fn lease_renewal_typed_equals_json() {
    let old = created(
        leases(),
        Some("kube-node-lease"),
        json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2027-01-15T08:00:00.000000Z"}}),
    );
    let mut new = old.clone();
    new["spec"]["renewTime"] = json!("2027-01-15T08:00:10.000000Z");
    let want = canonical::<Lease>(&json_path(leases(), UpdateScope::Main, &old, new.clone()));
    let mut fast: Lease = typed(&new);
    assert_eq!(lease(&mut fast, &typed(&old)), FastPath::Applied);
    assert_eq!(serde_json::to_value(&fast).unwrap(), want);
}

#[test]
fn changes_validation_would_see_fall_back() {
    let old = created(
        leases(),
        Some("l"),
        json!({"metadata": {"name": "n1"}, "spec": {"leaseDurationSeconds": 40}}),
    );
    let mut bad: Lease = typed(&old);
    bad.spec.as_mut().unwrap().lease_duration_seconds = Some(0);
    let before = bad.clone();
    assert_eq!(lease(&mut bad, &typed(&old)), FastPath::Fallback);
    assert_eq!(bad, before, "a fallback leaves the object alone");
    let mut relabeled: Lease = typed(&old);
    relabeled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    assert_eq!(lease(&mut relabeled, &typed(&old)), FastPath::Fallback);
    let mut other_uid: Lease = typed(&old);
    other_uid.metadata.uid = Some("someone-else".into());
    assert_eq!(lease(&mut other_uid, &typed(&old)), FastPath::Fallback);
}

#[test]
fn typed_binding_equals_json() {
    let old = created(
        pods(),
        Some("d"),
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    );
    let mut v = old.clone();
    crate::bind::bind(pods(), "p", &mut v, "n7", Moment::from_millis(42_500)).unwrap();
    let mut fast: Pod = typed(&old);
    bind_pod(pods(), &mut fast, "n7", Moment::from_millis(42_500)).unwrap();
    assert_eq!(serde_json::to_value(&fast).unwrap(), canonical::<Pod>(&v));
    let e = bind_pod(pods(), &mut fast, "n8", Moment::EPOCH).unwrap_err();
    let mut v2 = v.clone();
    let e2 = crate::bind::bind(pods(), "p", &mut v2, "n8", Moment::EPOCH).unwrap_err();
    assert_eq!(e.message, e2.message);
}

fn unlimited() -> MemConfig {
    MemConfig {
        check_namespaces: false,
        ..MemConfig::default()
    }
}

/// The same writes through a JSON store and a typed store give the same objects and changes.
#[test]
fn a_typed_mem_api_agrees_with_the_json_one() {
    let mut js: MemApi<Value> = MemApi::new(unlimited(), 5).unwrap();
    let mut ty: MemApi<Obj> = MemApi::new(unlimited(), 5).unwrap();
    let pod =
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let lease_v = json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}});
    let a = js
        .create(pods(), Some("d"), &pod, Moment::from_millis(1_000))
        .unwrap();
    let b = ty
        .create(
            pods(),
            Some("d"),
            &Obj::from_value(pods(), pod).unwrap(),
            Moment::from_millis(1_000),
        )
        .unwrap();
    assert_eq!(canonical::<Pod>(&a.object), b.object.to_value());
    js.create(leases(), Some("l"), &lease_v, Moment::from_millis(1_000))
        .unwrap();
    ty.create(
        leases(),
        Some("l"),
        &Obj::from_value(leases(), lease_v).unwrap(),
        Moment::from_millis(1_000),
    )
    .unwrap();
    let a = js.bind("d", "p", "n1", Moment::from_millis(2_000)).unwrap();
    let b = ty.bind("d", "p", "n1", Moment::from_millis(2_000)).unwrap();
    assert_eq!(canonical::<Pod>(&a.object), b.object.to_value());
    for i in 0..3 {
        let mut lv = js.get(leases(), Some("l"), "n1").unwrap().clone();
        lv["spec"]["renewTime"] = json!(format!("2027-01-15T08:00:0{i}.000000Z"));
        let a = js
            .update(
                leases(),
                Some("l"),
                lv.clone(),
                UpdateScope::Main,
                Moment::from_millis(3_000),
            )
            .unwrap();
        let b = ty
            .update(
                leases(),
                Some("l"),
                Obj::from_value(leases(), lv).unwrap(),
                UpdateScope::Main,
                Moment::from_millis(3_000),
            )
            .unwrap();
        assert_eq!(canonical::<Lease>(&a.object), b.object.to_value());
        assert_eq!(a.changes.len(), b.changes.len());
    }
    let mut pv = js.get(pods(), Some("d"), "p").unwrap().clone();
    pv["status"]["phase"] = json!("Running");
    let a = js
        .update_status(pods(), Some("d"), pv.clone(), Moment::from_millis(4_000))
        .unwrap();
    let b = ty
        .update_status(
            pods(),
            Some("d"),
            Obj::from_value(pods(), pv).unwrap(),
            Moment::from_millis(4_000),
        )
        .unwrap();
    assert_eq!(canonical::<Pod>(&a.object), b.object.to_value());
    assert_eq!(js.revision(), ty.revision());
}
