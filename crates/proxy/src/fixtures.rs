//! Builders for Service and EndpointSlice objects in upstream's test shapes, for unit tests,
//! golden tests and benchmarks. Start at [`service`] and [`slice`].

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

/// A ClusterIP Service `ns/name` at `cluster_ip` with ports `(name, port, protocol)`.
pub fn service(ns: &str, name: &str, cluster_ip: &str, ports: &[(&str, u16, &str)]) -> Service {
    service_with(ns, name, cluster_ip, ports, json!({}))
}

/// Like [`service`], with extra `spec` fields merged in (e.g. `sessionAffinity`).
pub fn service_with(
    ns: &str,
    name: &str,
    cluster_ip: &str,
    ports: &[(&str, u16, &str)],
    extra_spec: Value,
) -> Service {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto}))
        .collect();
    let mut spec = json!({"type": "ClusterIP", "clusterIP": cluster_ip, "ports": ports});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    let value = json!({"metadata": {"namespace": ns, "name": name}, "spec": spec});
    serde_json::from_value(value).unwrap_or_default()
}

/// An endpoint with only an address (all conditions nil).
pub fn ep(ip: &str) -> Value {
    json!({"addresses": [ip]})
}

/// An endpoint with explicit conditions and node name.
pub fn ep_cond(
    ip: &str,
    ready: bool,
    serving: bool,
    terminating: bool,
    node: Option<&str>,
) -> Value {
    let mut v = json!({"addresses": [ip],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating}});
    if let (Some(node), Some(obj)) = (node, v.as_object_mut()) {
        obj.insert("nodeName".into(), json!(node));
    }
    v
}

/// An IPv4 EndpointSlice `name` of Service `ns/svc` with ports `(name, port, protocol)`.
pub fn slice(
    ns: &str,
    svc: &str,
    name: &str,
    ports: &[(&str, u16, &str)],
    endpoints: Vec<Value>,
) -> EndpointSlice {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto}))
        .collect();
    let value = json!({
        "metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": ports
    });
    serde_json::from_value(value).unwrap_or_else(|_| EndpointSlice {
        address_type: "IPv4".into(),
        ..Default::default()
    })
}

/// A Service `ns/name` from its whole `spec` and `status` (NodePort and LoadBalancer shapes).
pub fn service_json(ns: &str, name: &str, spec: Value, status: Value) -> Service {
    let value =
        json!({"metadata": {"namespace": ns, "name": name}, "spec": spec, "status": status});
    serde_json::from_value(value).unwrap_or_default()
}
