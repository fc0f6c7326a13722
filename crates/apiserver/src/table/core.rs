//! Printers for Service, Node, Event and EndpointSlice rows.
//!
//! Start at [`service_cells`]; each `*_cells` mirrors the upstream `print<Kind>` function.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Col;
use super::format::{NONE, age, arr, format_labels, int, list_with_more, or_none, s, since};

/// Upstream `printService`. A new field read here goes into `project::SERVICE` too.
pub fn service_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let svc_type = match s(spec, &["type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = arr(spec, &["clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .map_or_else(|| NONE.to_string(), String::from);
    let ports: Vec<String> = arr(spec, &["ports"])
        .iter()
        .map(|p| {
            let proto = match s(p, &["protocol"]) {
                "" => "TCP",
                x => x,
            };
            match int(p, &["nodePort"]) {
                0 => format!("{}/{proto}", int(p, &["port"])),
                np => format!("{}:{np}/{proto}", int(p, &["port"])),
            }
        })
        .collect();
    vec![
        json!(s(obj, &["metadata", "name"])),
        json!(svc_type),
        json!(cluster_ip),
        json!(external_ip(obj, svc_type)),
        json!(or_none(&ports.join(","))),
        json!(age(obj, now)),
        json!(format_labels(spec.get("selector"))),
    ]
}

/// Upstream `getServiceExternalIP` (wide: load-balancer addresses are not truncated).
fn external_ip(obj: &Value, svc_type: &str) -> String {
    let external: Vec<&str> = arr(obj, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match svc_type {
        "ClusterIP" | "NodePort" => or_none(&external.join(",")),
        "LoadBalancer" => {
            let lb: BTreeSet<&str> = arr(obj, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|i| match s(i, &["ip"]) {
                    "" => s(i, &["hostname"]),
                    ip => ip,
                })
                .filter(|a| !a.is_empty())
                .collect();
            let mut all: Vec<&str> = lb.into_iter().collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(obj, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

pub fn node_columns() -> Vec<Col> {
    vec![
        super::name_col(),
        Col("Status", "string", 0, "The status of the node"),
        Col("Roles", "string", 0, "The roles of the node"),
        super::age_col(),
        Col(
            "Version",
            "string",
            0,
            "Kubelet Version reported by the node.",
        ),
        Col(
            "Internal-IP",
            "string",
            1,
            "List of addresses reachable to the node.",
        ),
        Col(
            "External-IP",
            "string",
            1,
            "List of addresses reachable to the node.",
        ),
        Col(
            "OS-Image",
            "string",
            1,
            "OS Image reported by the node from /etc/os-release.",
        ),
        Col(
            "Kernel-Version",
            "string",
            1,
            "Kernel Version reported by the node from 'uname -r'.",
        ),
        Col(
            "Container-Runtime",
            "string",
            1,
            "ContainerRuntime Version reported by the node.",
        ),
    ]
}

/// Upstream `printNode`.
pub fn node_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let conditions = arr(obj, &["status", "conditions"]);
    let mut status: Vec<String> = conditions
        .iter()
        .rev()
        .find(|c| s(c, &["type"]) == "Ready")
        .map(|c| {
            if s(c, &["status"]) == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .map_or_else(|| vec!["Unknown".to_string()], |x| vec![x.to_string()]);
    if obj["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let info = &obj["status"]["nodeInfo"];
    let unknown = |k: &str| match s(info, &[k]) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        json!(s(obj, &["metadata", "name"])),
        json!(status.join(",")),
        json!(or_none(&node_roles(obj).join(","))),
        json!(age(obj, now)),
        json!(s(info, &["kubeletVersion"])),
        json!(node_address(obj, "InternalIP")),
        json!(node_address(obj, "ExternalIP")),
        json!(unknown("osImage")),
        json!(unknown("kernelVersion")),
        json!(unknown("containerRuntimeVersion")),
    ]
}

/// Upstream `findNodeRoles`: `node-role.kubernetes.io/<role>` keys and `kubernetes.io/role`
/// values, sorted and deduplicated.
fn node_roles(obj: &Value) -> Vec<String> {
    let mut roles = BTreeSet::new();
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
                roles.insert(v.as_str().unwrap_or("").to_string());
            }
        }
    }
    roles.into_iter().collect()
}

fn node_address(obj: &Value, kind: &str) -> String {
    arr(obj, &["status", "addresses"])
        .iter()
        .find(|a| s(a, &["type"]) == kind)
        .map_or_else(|| NONE.to_string(), |a| s(a, &["address"]).to_string())
}

pub fn event_columns() -> Vec<Col> {
    vec![
        Col(
            "Last Seen",
            "string",
            0,
            "The time at which the most recent occurrence of this event was recorded.",
        ),
        Col("Type", "string", 0, "Type of this event (Normal, Warning)."),
        Col(
            "Reason",
            "string",
            0,
            "A short, machine understandable string for the event.",
        ),
        Col(
            "Object",
            "string",
            0,
            "The object that this event is about.",
        ),
        Col(
            "Subobject",
            "string",
            1,
            "The field of the object the event is about, if any.",
        ),
        Col("Source", "string", 1, "The component reporting this event."),
        Col(
            "Message",
            "string",
            0,
            "A human-readable description of the status of this operation.",
        ),
        Col(
            "First Seen",
            "string",
            1,
            "The time at which the event was first recorded.",
        ),
        Col(
            "Count",
            "string",
            1,
            "The number of times this event has occurred.",
        ),
        Col("Name", "string", 1, super::NAME_DOC),
    ]
}

/// Upstream `printEvent` (wide form).
pub fn event_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first = match s(obj, &["firstTimestamp"]) {
        "" => since(s(obj, &["eventTime"]), now),
        t => since(t, now),
    };
    let mut last = match s(obj, &["lastTimestamp"]) {
        "" => first.clone(),
        t => since(t, now),
    };
    let mut count = int(obj, &["count"]);
    if let Some(series) = obj.get("series").filter(|v| v.is_object()) {
        last = since(s(series, &["lastObservedTime"]), now);
        count = int(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(obj, &["involvedObject", "kind"]).to_lowercase();
    let target = match s(obj, &["involvedObject", "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_non_empty(
        s(obj, &["source", "component"]),
        s(obj, &["reportingComponent"]),
    );
    let instance = first_non_empty(s(obj, &["source", "host"]), s(obj, &["reportingInstance"]));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(obj, &["type"])),
        json!(s(obj, &["reason"])),
        json!(target),
        json!(s(obj, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(s(obj, &["message"]).trim()),
        json!(first),
        json!(count),
        json!(s(obj, &["metadata", "name"])),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// Upstream `printEndpointSlice`: at most three ports and addresses, then `+ N more...`.
pub fn endpoint_slice_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = arr(obj, &["ports"])
        .iter()
        .map(|p| {
            match (
                p.get("port").and_then(Value::as_i64),
                p.get("name").and_then(Value::as_str),
            ) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            }
        })
        .collect();
    let addresses: Vec<String> = arr(obj, &["endpoints"])
        .iter()
        .flat_map(|e| {
            arr(e, &["addresses"])
                .iter()
                .map(|a| a.as_str().unwrap_or("").to_string())
        })
        .collect();
    vec![
        json!(s(obj, &["metadata", "name"])),
        json!(s(obj, &["addressType"])),
        json!(list_with_more(&ports, 3)),
        json!(list_with_more(&addresses, 3)),
        json!(age(obj, now)),
    ]
}
