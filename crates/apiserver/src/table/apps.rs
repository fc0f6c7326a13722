//! Printers for Deployment, ReplicaSet, StatefulSet and ControllerRevision rows.
//!
//! Start at [`deployment_cells`]; both mirror upstream `printDeployment` / `printReplicaSet`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::format::{age, arr, container_cells, format_label_selector, int, label_selector, s};
use super::{CONTAINERS_DOC, Col, IMAGES_DOC};

fn wide_cols() -> [Col; 3] {
    [
        Col("Containers", "string", 1, CONTAINERS_DOC),
        Col("Images", "string", 1, IMAGES_DOC),
        Col("Selector", "string", 1, "Label selector for pods."),
    ]
}

pub fn deployment_columns() -> Vec<Col> {
    let mut cols = vec![
        super::name_col(),
        Col("Ready", "string", 0, "Number of the pod with ready state"),
        Col(
            "Up-to-date",
            "string",
            0,
            "Total number of pods targeted by this deployment that have the desired template spec.",
        ),
        Col(
            "Available",
            "string",
            0,
            "Total number of available pods (ready for at least minReadySeconds).",
        ),
        super::age_col(),
    ];
    cols.extend(wide_cols());
    cols
}

pub fn replica_set_columns() -> Vec<Col> {
    let mut cols = vec![
        super::name_col(),
        Col("Desired", "integer", 0, "Number of desired pods."),
        Col(
            "Current",
            "integer",
            0,
            "The most recently observed number of replicas.",
        ),
        Col(
            "Ready",
            "integer",
            0,
            "The number of ready replicas for this replica set.",
        ),
        super::age_col(),
    ];
    cols.extend(wide_cols());
    cols
}

/// `spec.replicas`, which the API defaults to 1.
fn desired(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn containers(obj: &Value) -> (String, String) {
    container_cells(arr(obj, &["spec", "template", "spec", "containers"]))
}

/// Upstream `printDeployment`.
pub fn deployment_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = containers(obj);
    let selector =
        label_selector(obj["spec"].get("selector")).unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        json!(s(obj, &["metadata", "name"])),
        json!(format!(
            "{}/{}",
            int(obj, &["status", "readyReplicas"]),
            desired(obj)
        )),
        json!(int(obj, &["status", "updatedReplicas"])),
        json!(int(obj, &["status", "availableReplicas"])),
        json!(age(obj, now)),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

/// Upstream `printReplicaSet`.
pub fn replica_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = containers(obj);
    vec![
        json!(s(obj, &["metadata", "name"])),
        json!(desired(obj)),
        json!(int(obj, &["status", "replicas"])),
        json!(int(obj, &["status", "readyReplicas"])),
        json!(age(obj, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(obj["spec"].get("selector"))),
    ]
}

pub fn stateful_set_columns() -> Vec<Col> {
    vec![
        super::name_col(),
        Col("Ready", "string", 0, "Number of the pod with ready state"),
        super::age_col(),
        Col("Containers", "string", 1, CONTAINERS_DOC),
        Col("Images", "string", 1, IMAGES_DOC),
    ]
}

/// Upstream `printStatefulSet`.
pub fn stateful_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = containers(obj);
    vec![
        json!(s(obj, &["metadata", "name"])),
        json!(format!(
            "{}/{}",
            int(obj, &["status", "readyReplicas"]),
            desired(obj)
        )),
        json!(age(obj, now)),
        json!(names),
        json!(images),
    ]
}

pub fn controller_revision_columns() -> Vec<Col> {
    vec![
        super::name_col(),
        Col("Controller", "string", 0, "Controller of the object"),
        Col(
            "Revision",
            "string",
            0,
            "Revision indicates the revision of the state represented by Data.",
        ),
        super::age_col(),
    ]
}

/// Upstream `printControllerRevision`: the controller as `statefulset.apps/web`.
pub fn controller_revision_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let controller = arr(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
        .map(|r| {
            let group = r["apiVersion"]
                .as_str()
                .and_then(|av| av.split_once('/'))
                .map(|(g, _)| g)
                .unwrap_or("");
            let kind = r["kind"].as_str().unwrap_or("").to_lowercase();
            let gk = if group.is_empty() {
                kind
            } else {
                format!("{kind}.{group}")
            };
            format!("{gk}/{}", r["name"].as_str().unwrap_or(""))
        })
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        json!(s(obj, &["metadata", "name"])),
        json!(controller),
        json!(int(obj, &["revision"])),
        json!(age(obj, now)),
    ]
}
