//! Printers for Deployment and ReplicaSet rows.
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
