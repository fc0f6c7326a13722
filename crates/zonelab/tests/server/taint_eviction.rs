//! NoExecute eviction through the real API server (a `zonelab server` with its durable store,
//! running only the taint eviction controller): every pod on a node with a NoExecute taint it
//! does not tolerate gets `DisruptionTarget=True` and then a `deletionTimestamp`, even though
//! the controller's writes race each other in the live loop (issue 14: a pod could keep its
//! condition and never be deleted).

use crate::common;

use std::time::{Duration, Instant};

use common::ServerProc;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const PODS: usize = 60;

fn client(server: &ServerProc) -> kube::Client {
    let cfg = kube::Config::new(server.url().parse().expect("url"));
    kube::Client::try_from(cfg).expect("client")
}

fn disruption_target(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pod_on_a_noexecute_node_gets_its_condition_then_its_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProc::start(dir.path(), &["--controllers", "taint-eviction-controller"]);
    let client = client(&server);
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "spec": {"taints": [{"key": "example.com/evict", "effect": "NoExecute"}]},
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("node");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..PODS {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{i}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "zonelab/echo"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod");
    }
    // Bounded wait (not a timing assertion): eviction is immediate, retries back off.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (deleting, with_condition) = loop {
        let list = pods.list(&ListParams::default()).await.expect("list");
        let deleting: Vec<&Pod> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .collect();
        let with_condition = deleting.iter().filter(|p| disruption_target(p)).count();
        if deleting.len() == PODS || Instant::now() > deadline {
            break (deleting.len(), with_condition);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(deleting, PODS, "pods marked for deletion");
    // Upstream order: the condition is written first, then the pod is deleted.
    assert_eq!(
        with_condition, PODS,
        "deleted pods carrying DisruptionTarget=True"
    );
}

/// The cause, at the API: a delete racing a status write of the same pod (the old eviction's
/// two concurrent writes) must not be refused. With the durable store, a compare-and-swap
/// sees a write that is applied but not yet durable while reads return the last durable
/// revision, so a retry loop that re-reads at once loses every time until the fsync lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_status_write_is_not_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let client = client(&server);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut refused = Vec::new();
    for i in 0..PODS {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("race-{i}")},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "zonelab/echo"}]},
        }))
        .expect("pod");
        let created = pods
            .create(&PostParams::default(), &pod)
            .await
            .expect("pod");
        let mut with_condition = created.clone();
        with_condition
            .status
            .get_or_insert_with(Default::default)
            .conditions = Some(vec![
            serde_json::from_value(json!({"type": "DisruptionTarget", "status": "True"}))
                .expect("condition"),
        ]);
        let name = format!("race-{i}");
        let (pp, dp) = (PostParams::default(), kube::api::DeleteParams::default());
        let status = pods.replace_status(&name, &pp, &with_condition);
        let delete = pods.delete(&name, &dp);
        let (_, deleted) = tokio::join!(status, delete);
        if let Err(e) = deleted {
            refused.push(format!("{name}: {e}"));
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {PODS} deletes refused, first: {:?}",
        refused.len(),
        refused.first()
    );
}
