//! Read and write the allocation-related fields of a core/v1 Service held as JSON.
//!
//! Start at [`ServiceView::of`]; the mutators (`set_*`) work on the `spec` object.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use api::resources::ResourceInfo;
use api::status::{Cause, StatusError};
use serde_json::{Map, Value, json};

pub const TYPE_CLUSTER_IP: &str = "ClusterIP";
pub const TYPE_NODE_PORT: &str = "NodePort";
pub const TYPE_LOAD_BALANCER: &str = "LoadBalancer";
pub const TYPE_EXTERNAL_NAME: &str = "ExternalName";
/// `spec.clusterIP` of a headless Service.
pub const CLUSTER_IP_NONE: &str = "None";

/// The Service resource, for `Invalid` errors (`Service "x" is invalid: ...`).
pub const SERVICE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Service",
    plural: "services",
    singular: "service",
    namespaced: true,
    short_names: &["svc"],
    subresources: &["status"],
    categories: &["all"],
};

/// One entry of `spec.ports` as the allocators see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortView {
    pub name: String,
    pub port: i64,
    pub protocol: String,
    /// 0 when unset.
    pub node_port: i64,
}

/// A read-only view of the fields the allocators use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceView {
    pub namespace: String,
    pub name: String,
    pub svc_type: String,
    /// `spec.clusterIPs`, or `[spec.clusterIP]` when only that is set (v1 conversion).
    pub cluster_ips: Vec<String>,
    pub ip_families: Vec<String>,
    pub ip_family_policy: Option<String>,
    pub selector_empty: bool,
    pub ports: Vec<PortView>,
    pub health_check_node_port: i64,
    pub external_traffic_local: bool,
    /// `spec.allocateLoadBalancerNodePorts` (default true).
    pub allocate_lb_node_ports: bool,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

impl ServiceView {
    /// Reads a Service object; missing fields take their API defaults.
    pub fn of(svc: &Value) -> ServiceView {
        let spec = svc.get("spec").cloned().unwrap_or(Value::Null);
        let mut cluster_ips = strings(spec.get("clusterIPs"));
        let single = str_at(&spec, &["clusterIP"]);
        if cluster_ips.is_empty() && !single.is_empty() {
            cluster_ips.push(single.to_string());
        }
        let ports = spec
            .get("ports")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(port_view).collect())
            .unwrap_or_default();
        let svc_type = match str_at(&spec, &["type"]) {
            "" => TYPE_CLUSTER_IP.to_string(),
            t => t.to_string(),
        };
        ServiceView {
            namespace: str_at(svc, &["metadata", "namespace"]).to_string(),
            name: str_at(svc, &["metadata", "name"]).to_string(),
            svc_type,
            cluster_ips,
            ip_families: strings(spec.get("ipFamilies")),
            ip_family_policy: spec
                .get("ipFamilyPolicy")
                .and_then(Value::as_str)
                .map(String::from),
            selector_empty: spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty),
            ports,
            health_check_node_port: spec
                .get("healthCheckNodePort")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            external_traffic_local: str_at(&spec, &["externalTrafficPolicy"]) == "Local",
            allocate_lb_node_ports: spec
                .get("allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        }
    }

    /// Every type but ExternalName gets a ClusterIP (or is headless).
    pub fn needs_cluster_ip(&self) -> bool {
        self.svc_type != TYPE_EXTERNAL_NAME
    }

    /// NodePort and LoadBalancer Services get node ports.
    pub fn needs_node_ports(&self) -> bool {
        self.svc_type == TYPE_NODE_PORT || self.svc_type == TYPE_LOAD_BALANCER
    }

    /// Upstream `NeedsHealthCheck`: LoadBalancer with `externalTrafficPolicy: Local`.
    pub fn needs_health_check(&self) -> bool {
        self.svc_type == TYPE_LOAD_BALANCER && self.external_traffic_local
    }

    /// Upstream `shouldAllocateNodePorts`: LoadBalancer may opt out of new node ports.
    pub fn should_allocate_node_ports(&self) -> bool {
        self.svc_type == TYPE_NODE_PORT
            || (self.svc_type == TYPE_LOAD_BALANCER && self.allocate_lb_node_ports)
    }

    /// Headless: `clusterIPs[0] == "None"`.
    pub fn is_headless(&self) -> bool {
        self.cluster_ips
            .first()
            .is_some_and(|ip| ip == CLUSTER_IP_NONE)
    }

    /// The distinct non-zero `spec.ports[*].nodePort` values (health check port excluded).
    pub fn node_ports(&self) -> BTreeSet<i64> {
        self.ports
            .iter()
            .map(|p| p.node_port)
            .filter(|&p| p != 0)
            .collect()
    }

    /// The primary ClusterIP when it is an IPv4 address.
    pub fn primary_ipv4(&self) -> Option<Ipv4Addr> {
        match self.cluster_ips.first()?.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }
    }
}

fn port_view(p: &Value) -> PortView {
    PortView {
        name: str_at(p, &["name"]).to_string(),
        port: p.get("port").and_then(Value::as_i64).unwrap_or(0),
        protocol: match str_at(p, &["protocol"]) {
            "" => "TCP".to_string(),
            s => s.to_string(),
        },
        node_port: p.get("nodePort").and_then(Value::as_i64).unwrap_or(0),
    }
}

/// `svc.spec` as a mutable object (created when missing).
pub fn spec_mut(svc: &mut Value) -> Result<&mut Map<String, Value>, StatusError> {
    let obj = svc
        .as_object_mut()
        .ok_or_else(|| StatusError::bad_request("the Service must be a JSON object"))?;
    obj.entry("spec")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| StatusError::bad_request("spec of the Service must be a JSON object"))
}

/// Sets `spec.clusterIP` to the first entry and `spec.clusterIPs` to all of them.
pub fn set_cluster_ips(spec: &mut Map<String, Value>, ips: &[String]) {
    let first = ips.first().cloned().unwrap_or_default();
    spec.insert("clusterIP".into(), Value::String(first));
    spec.insert("clusterIPs".into(), json!(ips));
}

/// Removes every IP-family field (used when a Service becomes ExternalName).
pub fn clear_cluster_ip_fields(spec: &mut Map<String, Value>) {
    for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        spec.remove(key);
    }
}

/// Sets (or with 0, removes) `spec.ports[i].nodePort`.
pub fn set_node_port(spec: &mut Map<String, Value>, i: usize, node_port: i64) {
    if let Some(p) = spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .and_then(|a| a.get_mut(i))
        .and_then(Value::as_object_mut)
    {
        if node_port == 0 {
            p.remove("nodePort");
        } else {
            p.insert("nodePort".into(), json!(node_port));
        }
    }
}

/// Sets (or with 0, removes) `spec.healthCheckNodePort`.
pub fn set_health_check_node_port(spec: &mut Map<String, Value>, port: i64) {
    if port == 0 {
        spec.remove("healthCheckNodePort");
    } else {
        spec.insert("healthCheckNodePort".into(), json!(port));
    }
}

/// Go's `%#v` of a `[]string`, as upstream renders `spec.clusterIPs` in field errors:
/// `[]string{"10.96.0.10"}`.
pub fn go_string_slice(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// `Invalid value: []string{...}: detail` on `field`, as upstream reports clusterIPs errors.
pub fn cluster_ips_cause(field: &str, ips: &[String], detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.to_string(),
        message: format!("Invalid value: {}: {detail}", go_string_slice(ips)),
    }
}

/// 422 `Service "name" is invalid: <causes>`.
pub fn invalid(name: &str, causes: Vec<Cause>) -> StatusError {
    StatusError::invalid(&SERVICE, name, causes)
}
