//! Updates through the real handlers: when `metadata.generation` moves.

use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};

use crate::handlers::evict::server_tests::call;
use crate::server::{Config, Server};

const JSON: &str = "application/json";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "zonelab/echo"}]}}
        }
    })
}

fn generation(v: &Value) -> i64 {
    v["metadata"]["generation"].as_i64().expect("generation")
}

#[tokio::test]
async fn an_update_that_omits_only_defaults_keeps_the_generation_and_a_real_change_bumps_it() {
    let store: store::SharedStore = Arc::new(store::MemStore::new());
    let s = Server::new(store, Config::default()).await.expect("server");
    let (code, created) = call(&s, Method::POST, DEPLOYS, JSON, deployment(2)).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(generation(&created), 1);
    // The same spec as sent by a client that never saw the defaults (strategy,
    // revisionHistoryLimit, progressDeadlineSeconds, container defaults…).
    let url = format!("{DEPLOYS}/web");
    let (code, same) = call(&s, Method::PUT, &url, JSON, deployment(2)).await;
    assert_eq!(code, 200, "{same}");
    assert_eq!(generation(&same), 1, "only defaults differed: {same}");
    let (code, scaled) = call(&s, Method::PUT, &url, JSON, deployment(3)).await;
    assert_eq!(code, 200, "{scaled}");
    assert_eq!(generation(&scaled), 2);
}
