//! `spec.healthCheckNodePort` through the real API server: allocated from the NodePort range
//! for a LoadBalancer with `externalTrafficPolicy: Local`, rejected with upstream's texts
//! elsewhere or out of range, and a rejected write stores nothing.

use crate::common;

use common::{ServerProc, http};
use serde_json::{Value, json};

fn create(server: &ServerProc, name: &str, spec: Value) -> (u16, Value) {
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                      "spec": spec});
    http(
        &server.addr,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        body.to_string().as_bytes(),
    )
}

#[test]
fn health_check_node_port_is_allocated_and_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProc::start(dir.path(), &[]);
    let ports = json!([{"port": 80}]);

    let (code, svc) = create(
        &server,
        "lb-local",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": ports}),
    );
    assert_eq!(code, 201, "{svc}");
    let hc = svc["spec"]["healthCheckNodePort"]
        .as_i64()
        .expect("allocated");
    let np = svc["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("nodePort");
    assert!((30000..=32767).contains(&hc), "{svc}");
    assert_ne!(hc, np);

    let (code, status) = create(
        &server,
        "np-local",
        json!({"type": "NodePort", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31999,
               "ports": ports}),
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "Service \"np-local\" is invalid: spec.healthCheckNodePort: Invalid value: 31999: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"
    );

    let (code, status) = create(
        &server,
        "lb-bad",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 70000,
               "ports": ports}),
    );
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"].as_str().unwrap_or("").ends_with(
            "spec.healthCheckNodePort: Invalid value: 70000: must be between 1 and 65535, inclusive"
        ),
        "{status}"
    );
    for name in ["np-local", "lb-bad"] {
        let (code, _) = http(
            &server.addr,
            "GET",
            &format!("/api/v1/namespaces/default/services/{name}"),
            "application/json",
            b"",
        );
        assert_eq!(code, 404, "{name} was not stored");
    }
}
