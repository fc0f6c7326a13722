//! Printer for DaemonSet rows (upstream `printDaemonSet` and its column definitions).
//!
//! Start at [`columns`] and [`cells`].

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::format::{age, arr, container_cells, format_label_selector, format_labels, int, s};
use super::{CONTAINERS_DOC, Col, IMAGES_DOC};

/// Upstream `daemonSetColumnDefinitions` (descriptions from the apps/v1 field docs).
pub fn columns() -> Vec<Col> {
    vec![
        super::name_col(),
        Col(
            "Desired",
            "integer",
            0,
            "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
        ),
        Col(
            "Current",
            "integer",
            0,
            "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
        ),
        Col(
            "Ready",
            "integer",
            0,
            "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
        ),
        Col(
            "Up-to-date",
            "integer",
            0,
            "The total number of nodes that are running updated daemon pod",
        ),
        Col(
            "Available",
            "integer",
            0,
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
        ),
        Col(
            "Node Selector",
            "string",
            0,
            "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/",
        ),
        super::age_col(),
        Col("Containers", "string", 1, CONTAINERS_DOC),
        Col("Images", "string", 1, IMAGES_DOC),
        Col(
            "Selector",
            "string",
            1,
            "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
        ),
    ]
}

/// Upstream `printDaemonSet`.
pub fn cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(arr(obj, &["spec", "template", "spec", "containers"]));
    vec![
        json!(s(obj, &["metadata", "name"])),
        json!(int(obj, &["status", "desiredNumberScheduled"])),
        json!(int(obj, &["status", "currentNumberScheduled"])),
        json!(int(obj, &["status", "numberReady"])),
        json!(int(obj, &["status", "updatedNumberScheduled"])),
        json!(int(obj, &["status", "numberAvailable"])),
        json!(format_labels(
            obj["spec"]["template"]["spec"].get("nodeSelector")
        )),
        json!(age(obj, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(obj["spec"].get("selector"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_as_kubectl_prints_it() {
        let now = chrono::Utc::now();
        let created = (now - chrono::TimeDelta::seconds(90)).to_rfc3339();
        let ds = json!({"metadata": {"name": "kube-proxy", "creationTimestamp": created},
            "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                     "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                           "containers": [{"name": "kube-proxy", "image": "kube-proxy:v1.33"}]}}},
            "status": {"desiredNumberScheduled": 6, "currentNumberScheduled": 6, "numberReady": 5,
                       "updatedNumberScheduled": 6, "numberAvailable": 5}});
        let row = cells(&ds, now);
        assert_eq!(row.len(), columns().len());
        assert_eq!(
            row[..8].to_vec(),
            vec![
                json!("kube-proxy"),
                json!(6),
                json!(6),
                json!(5),
                json!(6),
                json!(5),
                json!("kubernetes.io/os=linux"),
                json!("90s")
            ]
        );
        assert_eq!(row[10], json!("k8s-app=kube-proxy"));
        let bare = json!({"metadata": {"name": "x"}, "spec": {"template": {"spec": {}}}});
        assert_eq!(cells(&bare, now)[6], json!("<none>"));
    }
}
