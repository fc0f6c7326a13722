//! Evictions through the real handlers over an in-memory store: which pods go without taking
//! a disruption, and what a taken one leaves in the budget.

use std::sync::Arc;

use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::handlers::{Ctx, handle};
use crate::path::{self, Target};
use crate::server::{Config, Server};

async fn server() -> Arc<Server> {
    let store: store::SharedStore = Arc::new(store::MemStore::new());
    Server::new(store, Config::default()).await.expect("server")
}

pub(crate) async fn call(
    server: &Arc<Server>,
    method: Method,
    url: &str,
    ct: &str,
    body: Value,
) -> (u16, Value) {
    let (p, q) = url.split_once('?').unwrap_or((url, ""));
    let Ok(Target::Resource(t)) = path::parse(p) else {
        panic!("not a resource path: {p}");
    };
    let ctx = Ctx {
        method,
        query: path::parse_query(Some(q)),
        accept: None,
        content_type: Some(ct.to_string()),
        body: if body.is_null() {
            bytes::Bytes::new()
        } else {
            bytes::Bytes::from(body.to_string())
        },
        user: crate::authn::UserInfo::admin(),
    };
    match handle(server, t, ctx).await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }
        Err(e) => (e.code, e.to_status()),
    }
}

const JSON: &str = "application/json";
const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

/// A bound pod with the given phase and readiness.
async fn pod(s: &Arc<Server>, name: &str, phase: &str, ready: bool) {
    let p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "zonelab/echo"}]}});
    assert_eq!(call(s, Method::POST, PODS, JSON, p).await.0, 201);
    let status = json!({"status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    let url = format!("{PODS}/{name}/status");
    let (code, body) = call(
        s,
        Method::PATCH,
        &url,
        "application/merge-patch+json",
        status,
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

/// A budget with `spec` and the status the disruption controller would have written.
async fn budget(s: &Arc<Server>, spec: Value, status: Value) {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    let b = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"}, "spec": spec});
    assert_eq!(call(s, Method::POST, PDBS, JSON, b).await.0, 201);
    let mut status = status;
    status["observedGeneration"] = json!(1);
    let url = format!("{PDBS}/web/status");
    let (code, body) = call(
        s,
        Method::PATCH,
        &url,
        "application/merge-patch+json",
        json!({"status": status}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

async fn evict(s: &Arc<Server>, name: &str, query: &str) -> (u16, Value) {
    let e = json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": name}});
    call(
        s,
        Method::POST,
        &format!("{PODS}/{name}/eviction{query}"),
        JSON,
        e,
    )
    .await
}

async fn exists(s: &Arc<Server>, name: &str) -> bool {
    call(s, Method::GET, &format!("{PODS}/{name}"), JSON, Value::Null)
        .await
        .0
        == 200
}

async fn pdb_status(s: &Arc<Server>) -> Value {
    call(s, Method::GET, &format!("{PDBS}/web"), JSON, Value::Null)
        .await
        .1["status"]
        .clone()
}

#[tokio::test]
async fn a_ready_pod_takes_a_disruption_and_is_recorded() {
    let s = server().await;
    pod(&s, "a", "Running", true).await;
    budget(
        &s,
        json!({"minAvailable": 1}),
        json!({"currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2, "disruptionsAllowed": 1}),
    )
    .await;
    let (code, body) = evict(&s, "a", "?dryRun=All").await;
    assert_eq!(code, 201, "{body}");
    assert!(exists(&s, "a").await, "a dry run deletes nothing");
    assert_eq!(pdb_status(&s).await["disruptionsAllowed"], 1);
    let (code, body) = evict(&s, "a", "").await;
    assert_eq!((code, &body["status"]), (201, &json!("Success")), "{body}");
    assert!(!exists(&s, "a").await);
    let st = pdb_status(&s).await;
    assert_eq!(st["disruptionsAllowed"], 0);
    assert!(st["disruptedPods"]["a"].is_string(), "{st}");
    assert_eq!(st["conditions"][0]["reason"], "InsufficientPods");
}

#[tokio::test]
async fn unready_pending_and_budgetless_pods_go_without_taking_a_disruption() {
    let s = server().await;
    budget(
        &s,
        json!({"minAvailable": 2}),
        json!({"currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 3, "disruptionsAllowed": 0}),
    )
    .await;
    // Ready: refused.
    pod(&s, "ready", "Running", true).await;
    let (code, body) = evict(&s, "ready", "").await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "The disruption budget web needs 2 healthy pods and has 2 currently"
    );
    assert!(exists(&s, "ready").await);
    // Unready while the budget is met: deleted, the budget untouched.
    pod(&s, "unready", "Running", false).await;
    assert_eq!(evict(&s, "unready", "").await.0, 201);
    assert!(!exists(&s, "unready").await);
    // Pending: deleted outright.
    pod(&s, "pending", "Pending", false).await;
    assert_eq!(evict(&s, "pending", "").await.0, 201);
    assert!(!exists(&s, "pending").await);
    assert_eq!(pdb_status(&s).await["disruptionsAllowed"], 0);
    assert!(pdb_status(&s).await.get("disruptedPods").is_none());
    // A pod no budget selects.
    let other = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lone"},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "zonelab/echo"}]}});
    assert_eq!(call(&s, Method::POST, PODS, JSON, other).await.0, 201);
    assert_eq!(evict(&s, "lone", "").await.0, 201);
    assert!(!exists(&s, "lone").await);
    assert_eq!(evict(&s, "lone", "").await.0, 404);
}

#[tokio::test]
async fn always_allow_evicts_unready_pods_of_an_unmet_budget() {
    let s = server().await;
    budget(
        &s,
        json!({"minAvailable": 2, "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
        json!({"currentHealthy": 1, "desiredHealthy": 2, "expectedPods": 2, "disruptionsAllowed": 0}),
    )
    .await;
    pod(&s, "sick", "Running", false).await;
    assert_eq!(evict(&s, "sick", "").await.0, 201);
    assert!(!exists(&s, "sick").await);
}
