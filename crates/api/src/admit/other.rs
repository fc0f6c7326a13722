//! Defaulting and validation of the smaller kinds: Namespace, Node, EndpointSlice, Lease and
//! Event (upstream core/v1 and discovery/v1 defaults, `ValidateNamespace`, `ValidateNode`,
//! `ValidateEndpointSlice`, `ValidateLease`, `ValidateEventCreate`).
//!
//! Start at the `default_*` and `validate_*` function for the kind.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::util::{
    arr, child, each_obj_mut, ensure_obj, enum_field, idx, immutable, int, invalid_each, s,
    set_if_absent, set_if_zero, too_many,
};
use crate::names;
use crate::status::Cause;

/// Upstream `MaxEndpoints` per EndpointSlice (discovery validation).
pub const ENDPOINTSLICE_MAX_ENDPOINTS: usize = 1000;
/// Upstream `MaxPorts` per EndpointSlice.
pub const ENDPOINTSLICE_MAX_PORTS: usize = 100;
/// Upstream `MaxAddresses` per endpoint.
pub const ENDPOINT_MAX_ADDRESSES: usize = 100;
/// The label every namespace carries with its own name (upstream `SetDefaults_Namespace`).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Upstream `SetDefaults_Namespace` + `SetDefaults_NamespaceStatus` + the namespace strategy's
/// `spec.finalizers: [kubernetes]`.
pub fn default_namespace(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let name = o
        .get("metadata")
        .map(|m| s(m, "name").to_string())
        .unwrap_or_default();
    if !name.is_empty()
        && let Some(labels) = ensure_obj(o, "metadata").and_then(|m| ensure_obj(m, "labels"))
    {
        labels.insert(NAMESPACE_NAME_LABEL.into(), json!(name));
    }
    if let Some(spec) = ensure_obj(o, "spec") {
        let has_kubernetes = spec
            .get("finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == "kubernetes"));
        if !has_kubernetes {
            let mut list = spec
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            list.push(json!("kubernetes"));
            spec.insert("finalizers".into(), Value::Array(list));
        }
    }
    if let Some(status) = ensure_obj(o, "status") {
        set_if_zero(status, "phase", json!("Active"));
    }
}

/// Upstream `ValidateNamespace` (spec part): finalizers are qualified or standard names.
pub fn validate_namespace(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    for (i, f) in arr(spec, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        let p = idx("spec.finalizers", i);
        let errs = names::qualified_name_errs(f);
        if !errs.is_empty() {
            out.extend(invalid_each(&p, &json!(f), errs));
        } else if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
            out.push(Cause::invalid(
                p,
                &json!(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    let phase = obj.get("status").map(|st| s(st, "phase")).unwrap_or("");
    if !phase.is_empty() && !["Active", "Terminating"].contains(&phase) {
        out.push(Cause::not_supported(
            "status.phase",
            &json!(phase),
            &["Active", "Terminating"],
        ));
    }
    out
}

/// Upstream `SetDefaults_NodeStatus`: allocatable defaults to capacity.
pub fn default_node(obj: &mut Value) {
    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(cap) = status.get("capacity").cloned() {
        set_if_absent(status, "allocatable", cap);
    }
}

/// Upstream `ValidateNode` (the parts zonelab serves): podCIDRs and taints.
pub fn validate_node(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let cidrs = arr(spec, "podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        let c = c.as_str().unwrap_or("");
        if !is_cidr(c) {
            out.push(Cause::invalid(
                idx("spec.podCIDRs", i),
                &json!(c),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    if cidrs.len() > 2 {
        out.push(Cause::invalid(
            "spec.podCIDRs",
            &json!(cidrs),
            "may specify no more than one CIDR for each IP family",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let p = idx("spec.taints", i);
        let key = s(t, "key");
        if key.is_empty() {
            out.push(Cause::required(child(&p, "key"), ""));
        } else {
            out.extend(invalid_each(
                &child(&p, "key"),
                &json!(key),
                names::qualified_name_errs(key),
            ));
        }
        let value = s(t, "value");
        out.extend(invalid_each(
            &child(&p, "value"),
            &json!(value),
            names::label_value_errs(value),
        ));
        enum_field(t, "effect", &p, TAINT_EFFECTS, true, &mut out);
        if !seen.insert((key, s(t, "effect"))) {
            out.push(Cause::duplicate(p, &json!(t)));
        }
    }
    out
}

fn is_cidr(c: &str) -> bool {
    let Some((ip, bits)) = c.split_once('/') else {
        return false;
    };
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    bits.parse::<u8>().is_ok_and(|b| b <= max)
}

/// Upstream discovery/v1 `SetDefaults_EndpointPort`: name `""`, protocol TCP.
pub fn default_endpointslice(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    for port in each_obj_mut(o, "ports") {
        set_if_absent(port, "name", json!(""));
        set_if_absent(port, "protocol", json!("TCP"));
    }
}

/// Upstream `ValidateEndpointSlice` (create rules).
pub fn validate_endpointslice(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    enum_field(obj, "addressType", "", ADDRESS_TYPES, true, &mut out);
    let address_type = s(obj, "addressType");
    let endpoints = arr(obj, "endpoints");
    if endpoints.len() > ENDPOINTSLICE_MAX_ENDPOINTS {
        out.push(too_many(
            "endpoints",
            endpoints.len(),
            ENDPOINTSLICE_MAX_ENDPOINTS,
        ));
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let p = idx("endpoints", i);
        let addrs = arr(ep, "addresses");
        let ap = child(&p, "addresses");
        if addrs.is_empty() {
            out.push(Cause::required(
                ap.clone(),
                "must contain at least 1 address",
            ));
        } else if addrs.len() > ENDPOINT_MAX_ADDRESSES {
            out.push(too_many(ap.clone(), addrs.len(), ENDPOINT_MAX_ADDRESSES));
        }
        for (j, a) in addrs.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            out.extend(address_errs(address_type, a, &idx(&ap, j)));
        }
        for (key, errs) in [
            (
                "nodeName",
                names::dns1123_subdomain_errs as fn(&str) -> Vec<String>,
            ),
            ("hostname", names::dns1123_label_errs),
        ] {
            if let Some(v) = ep.get(key).and_then(Value::as_str) {
                out.extend(invalid_each(&child(&p, key), &json!(v), errs(v)));
            }
        }
    }
    validate_endpoint_ports(obj, &mut out);
    out
}

fn address_errs(address_type: &str, a: &str, path: &str) -> Vec<Cause> {
    let parsed = a.parse::<std::net::IpAddr>();
    match address_type {
        "IPv4" | "IPv6" => {
            let errs = names::ip_errs(a);
            if !errs.is_empty() {
                return invalid_each(path, &json!(a), errs);
            }
            let want_v4 = address_type == "IPv4";
            if parsed.is_ok_and(|ip| ip.is_ipv4() != want_v4) {
                let msg = if want_v4 {
                    "must be an IPv4 address"
                } else {
                    "must be an IPv6 address"
                };
                return vec![Cause::invalid(path, &json!(a), msg)];
            }
            Vec::new()
        }
        "FQDN" => invalid_each(
            path,
            &json!(a),
            names::dns1123_subdomain_errs(a.trim_end_matches('.')),
        ),
        _ => Vec::new(),
    }
}

fn validate_endpoint_ports(obj: &Value, out: &mut Vec<Cause>) {
    let ports = arr(obj, "ports");
    if ports.len() > ENDPOINTSLICE_MAX_PORTS {
        out.push(too_many("ports", ports.len(), ENDPOINTSLICE_MAX_PORTS));
    }
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = idx("ports", i);
        let name = s(p, "name");
        if !name.is_empty() {
            out.extend(invalid_each(
                &child(&pp, "name"),
                &json!(name),
                names::dns1123_label_errs(name),
            ));
        }
        if !seen.insert(name) {
            out.push(Cause::duplicate(child(&pp, "name"), &json!(name)));
        }
        enum_field(p, "protocol", &pp, PROTOCOLS, true, out);
        if let Some(port) = int(p, "port") {
            out.extend(invalid_each(
                &child(&pp, "port"),
                &json!(port),
                names::port_num_errs(port),
            ));
        }
        if let Some(ap) = p.get("appProtocol").and_then(Value::as_str) {
            out.extend(invalid_each(
                &child(&pp, "appProtocol"),
                &json!(ap),
                names::qualified_name_errs(ap),
            ));
        }
    }
}

/// Upstream `ValidateEndpointSliceUpdate`: `addressType` is immutable.
pub fn validate_endpointslice_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    immutable(new, old, "addressType", "", &mut out);
    out
}

/// Upstream `ValidateLeaseSpec`.
pub fn validate_lease(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    if let Some(d) = int(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        out.push(Cause::invalid(
            "spec.leaseDurationSeconds",
            &json!(d),
            "must be greater than 0",
        ));
    }
    if let Some(t) = int(spec, "leaseTransitions").filter(|t| *t < 0) {
        out.push(Cause::invalid(
            "spec.leaseTransitions",
            &json!(t),
            "must be greater than or equal to 0",
        ));
    }
    out
}

/// Upstream legacy (core/v1) `ValidateEventCreate`: an involved object whose namespace matches.
pub fn validate_event(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let involved = obj
        .get("involvedObject")
        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()));
    let Some(inv) = involved else {
        out.push(Cause::required("involvedObject", ""));
        return out;
    };
    let ns = obj.get("metadata").map(|m| s(m, "namespace")).unwrap_or("");
    let ins = s(inv, "namespace");
    if !ins.is_empty() && !ns.is_empty() && ins != ns {
        out.push(Cause::invalid(
            "involvedObject.namespace",
            &json!(ins),
            "does not match event.namespace",
        ));
    }
    // A "new-style" Event (eventTime set) must say who reported what, as upstream's
    // legacyValidateEvent demands of core/v1 creates too.
    if obj.get("eventTime").is_some_and(|t| !t.is_null()) {
        if ins.is_empty() && !["default", "kube-system"].contains(&ns) {
            out.push(Cause::invalid(
                "involvedObject.namespace",
                &json!(ins),
                "does not match event.namespace",
            ));
        }
        for field in [
            "reportingComponent",
            "reportingInstance",
            "action",
            "reason",
        ] {
            if s(obj, field).is_empty() {
                out.push(Cause::required(field, ""));
            }
        }
    }
    let ty = s(obj, "type");
    if !ty.is_empty() && !["Normal", "Warning"].contains(&ty) {
        out.push(Cause::not_supported(
            "type",
            &json!(ty),
            &["Normal", "Warning"],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_style_core_events_name_their_reporter() {
        let ev = json!({"metadata": {"name": "e", "namespace": "team"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "team"},
            "eventTime": "2026-12-05T00:00:00.000000Z", "reason": "Started"});
        assert_eq!(
            lines(&validate_event(&ev)),
            vec![
                "reportingComponent: Required value",
                "reportingInstance: Required value",
                "action: Required value"
            ]
        );
        let mut full = ev.clone();
        full["reportingComponent"] = json!("kubelet");
        full["reportingInstance"] = json!("node-1");
        full["action"] = json!("Start");
        assert!(validate_event(&full).is_empty());
        // Legacy events (no eventTime) need none of it.
        let mut legacy = ev;
        legacy.as_object_mut().unwrap().remove("eventTime");
        assert!(validate_event(&legacy).is_empty());
    }

    use crate::admit::cause_lines as lines;

    #[test]
    fn namespace_defaults_and_rules() {
        let mut ns = json!({"metadata": {"name": "team-a"}});
        default_namespace(&mut ns);
        assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert!(validate_namespace(&ns).is_empty());
        let bad = json!({"spec": {"finalizers": ["custom"]}});
        assert_eq!(
            lines(&validate_namespace(&bad)),
            vec![
                "spec.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"
            ]
        );
    }

    #[test]
    fn node_defaults_and_rules() {
        let mut node = json!({"status": {"capacity": {"cpu": "4", "pods": "110"}}});
        default_node(&mut node);
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "4", "pods": "110"})
        );
        let bad = json!({"spec": {"podCIDRs": ["10.0.0.0/33"], "taints": [{"key": "k", "effect": "Sometimes"}]}});
        assert_eq!(
            lines(&validate_node(&bad)),
            vec![
                "spec.podCIDRs[0]: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoExecute\", \"NoSchedule\", \"PreferNoSchedule\"",
            ]
        );
    }

    #[test]
    fn endpointslice_defaults_and_rules() {
        let mut eps = json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]});
        default_endpointslice(&mut eps);
        assert_eq!(
            eps["ports"],
            json!([{"name": "", "port": 80, "protocol": "TCP"}])
        );
        assert!(validate_endpointslice(&eps).is_empty());
        let bad = json!({"addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}, {"addresses": []}],
                         "ports": [{"port": 0, "protocol": "TCP"}]});
        assert_eq!(
            lines(&validate_endpointslice(&bad)),
            vec![
                "endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be an IPv4 address",
                "endpoints[1].addresses: Required value: must contain at least 1 address",
                "ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ]
        );
        let many: Vec<Value> = (0..1001)
            .map(|_| json!({"addresses": ["10.0.0.1"]}))
            .collect();
        let big = json!({"addressType": "IPv4", "endpoints": many});
        assert_eq!(
            lines(&validate_endpointslice(&big)),
            vec!["endpoints: Too many: 1001: must have at most 1000 items"]
        );
        assert_eq!(
            lines(&validate_endpointslice(&json!({"addressType": "IP"}))),
            vec![
                "addressType: Unsupported value: \"IP\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
            ]
        );
        assert_eq!(
            lines(&validate_endpointslice_update(
                &json!({"addressType": "IPv6"}),
                &json!({"addressType": "IPv4"})
            )),
            vec!["addressType: Invalid value: \"IPv6\": field is immutable"]
        );
    }

    #[test]
    fn lease_and_event_rules() {
        let lease = json!({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        assert_eq!(
            lines(&validate_lease(&lease)),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
        assert_eq!(
            lines(&validate_event(&json!({}))),
            vec!["involvedObject: Required value"]
        );
        let ev = json!({"metadata": {"namespace": "a"}, "involvedObject": {"kind": "Pod", "namespace": "b"}});
        assert_eq!(
            lines(&validate_event(&ev)),
            vec!["involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"]
        );
    }
}
