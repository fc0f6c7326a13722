//! Server-side Table rendering (what `kubectl get` prints), following upstream's printers in
//! `pkg/printers/internalversion/printers.go`; sans-IO, with `now` passed in.
//!
//! Start at [`column_definitions`] and [`row_cells`]. Cells are generated as upstream's
//! server does (`Wide: true`): priority-1 columns are always filled; clients hide them.

mod apps;
mod config;
mod core;
mod daemonset;
pub(crate) mod format;
mod pod;
mod project;
pub(crate) mod raw;
#[cfg(test)]
mod tests;

use api::resources::ResourceInfo;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub use format::human_duration;

/// One `TableColumnDefinition`: name, type, priority (0 default, 1 wide-only), description.
struct Col(&'static str, &'static str, u8, &'static str);

const NAME_DOC: &str = "Name must be unique within a namespace.";
const AGE_DOC: &str = "Time since the object was created (metadata.creationTimestamp).";
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

fn name_col() -> Col {
    Col("Name", "string", 0, NAME_DOC)
}

fn age_col() -> Col {
    Col("Age", "string", 0, AGE_DOC)
}

fn columns_for(res: &ResourceInfo) -> Vec<Col> {
    if let Some(cols) = config::columns(res.kind) {
        return cols;
    }
    match (res.group, res.kind) {
        ("", "Service") => vec![
            name_col(),
            Col(
                "Type",
                "string",
                0,
                "How the Service is exposed (ClusterIP, NodePort, LoadBalancer, ExternalName).",
            ),
            Col("Cluster-IP", "string", 0, "The virtual IP of the Service."),
            Col(
                "External-IP",
                "string",
                0,
                "External IPs or load-balancer ingress of the Service.",
            ),
            Col("Port(s)", "string", 0, "The ports exposed by the Service."),
            age_col(),
            Col(
                "Selector",
                "string",
                1,
                "Route traffic to pods with labels matching this selector.",
            ),
        ],
        ("", "Pod") => pod::columns(),
        ("", "Node") => core::node_columns(),
        ("", "Namespace") => vec![
            name_col(),
            Col("Status", "string", 0, "The status of the namespace"),
            age_col(),
        ],
        ("", "Event") => core::event_columns(),
        ("apps", "Deployment") => apps::deployment_columns(),
        ("apps", "ReplicaSet") => apps::replica_set_columns(),
        ("apps", "StatefulSet") => apps::stateful_set_columns(),
        ("apps", "ControllerRevision") => apps::controller_revision_columns(),
        ("apps", "DaemonSet") => daemonset::columns(),
        ("discovery.k8s.io", "EndpointSlice") => vec![
            name_col(),
            Col(
                "AddressType",
                "string",
                0,
                "The type of address carried by this EndpointSlice.",
            ),
            Col(
                "Ports",
                "string",
                0,
                "The network ports exposed by each endpoint.",
            ),
            Col(
                "Endpoints",
                "string",
                0,
                "The addresses of the endpoints in this slice.",
            ),
            age_col(),
        ],
        ("coordination.k8s.io", "Lease") => vec![
            name_col(),
            Col(
                "Holder",
                "string",
                0,
                "The identity of the current holder of the lease.",
            ),
            age_col(),
        ],
        _ => vec![name_col(), Col("Created At", "date", 0, AGE_DOC)],
    }
}

/// The `columnDefinitions` of a Table of `res` objects.
pub fn column_definitions(res: &ResourceInfo) -> Value {
    let cols: Vec<Value> = columns_for(res)
        .into_iter()
        .map(|Col(name, ty, priority, description)| {
            let format = if matches!(name, "Name") { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect();
    Value::Array(cols)
}

/// The cells of one row for `obj`, aligned with [`column_definitions`].
pub fn row_cells(res: &ResourceInfo, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    if let Some(cells) = config::cells(res.kind, obj, now) {
        return cells;
    }
    match (res.group, res.kind) {
        ("", "Service") => core::service_cells(obj, now),
        ("", "Pod") => pod::cells(obj, now),
        ("", "Node") => core::node_cells(obj, now),
        ("", "Namespace") => vec![
            json!(format::s(obj, &["metadata", "name"])),
            json!(format::s(obj, &["status", "phase"])),
            json!(format::age(obj, now)),
        ],
        ("", "Event") => core::event_cells(obj, now),
        ("apps", "Deployment") => apps::deployment_cells(obj, now),
        ("apps", "ReplicaSet") => apps::replica_set_cells(obj, now),
        ("apps", "StatefulSet") => apps::stateful_set_cells(obj, now),
        ("apps", "ControllerRevision") => apps::controller_revision_cells(obj, now),
        ("apps", "DaemonSet") => daemonset::cells(obj, now),
        ("discovery.k8s.io", "EndpointSlice") => core::endpoint_slice_cells(obj, now),
        ("coordination.k8s.io", "Lease") => vec![
            json!(format::s(obj, &["metadata", "name"])),
            json!(format::s(obj, &["spec", "holderIdentity"])),
            json!(format::age(obj, now)),
        ],
        _ => default_cells(obj),
    }
}

/// Upstream's default table (`Name`, `Created At` as RFC 3339 UTC) for kinds without a printer.
fn default_cells(obj: &Value) -> Vec<Value> {
    let created = format::timestamp(format::s(obj, &["metadata", "creationTimestamp"]))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    vec![json!(format::s(obj, &["metadata", "name"])), json!(created)]
}
