//! Deletion through the real API server, as upstream's generic registry
//! (`ShouldDeleteDuringUpdate`): an object held by finalizers goes when an update removes the
//! last one; a pod in graceful termination (deletionGracePeriodSeconds > 0) stays through its
//! kubelet's status writes.

use crate::common;

use common::{ServerProc, http};
use serde_json::{Value, json};

fn get(server: &ServerProc, path: &str) -> (u16, Value) {
    http(&server.addr, "GET", path, "application/json", b"")
}

fn put(server: &ServerProc, path: &str, body: &Value) -> (u16, Value) {
    http(
        &server.addr,
        "PUT",
        path,
        "application/json",
        body.to_string().as_bytes(),
    )
}

#[test]
fn a_terminating_pod_survives_status_writes_and_a_finalized_service_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProc::start(dir.path(), &["--in-memory", "--controllers", ""]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "c", "image": "zonelab/echo"}]}});
    let (code, body) = http(
        &server.addr,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        pod.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{body}");
    let path = "/api/v1/namespaces/default/pods/web";
    let (code, body) = http(&server.addr, "DELETE", path, "application/json", b"");
    assert_eq!(code, 200, "{body}");
    let (_, mut p) = get(&server, path);
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30, "{p}");
    // The kubelet reports the pod not ready while it stops it.
    p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]});
    let (code, body) = put(&server, &format!("{path}/status"), &p);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        get(&server, path).0,
        200,
        "still terminating after a status write"
    );

    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "lb", "finalizers": ["service.k8s.aws/resources"]},
        "spec": {"ports": [{"port": 80}]}});
    let (code, body) = http(
        &server.addr,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        svc.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{body}");
    let path = "/api/v1/namespaces/default/services/lb";
    let (code, _) = http(&server.addr, "DELETE", path, "application/json", b"");
    assert_eq!(code, 200);
    let (_, mut s) = get(&server, path);
    assert!(s["metadata"]["deletionTimestamp"].is_string(), "{s}");
    s["metadata"]["finalizers"] = json!([]);
    let (code, body) = put(&server, path, &s);
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(&server, path).0, 404, "gone with its last finalizer");
}
