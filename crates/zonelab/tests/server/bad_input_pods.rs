//! Bad pod input at the API, with upstream's texts, changing nothing: probe handlers (none,
//! more than one, an unknown one under strict field validation), container ports outside
//! 1–65535 (in a Pod and in a Deployment's template), and bad `pods/log` requests.

use crate::common;

use common::{ServerProc, http};
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const JSON: &str = "application/json";

fn container(extra: Value) -> Value {
    let mut c = json!({"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        c[k] = v;
    }
    c
}

fn pod(name: &str, extra: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [container(extra)]}}),
    )
    .expect("json")
}

fn deployment(name: &str, extra: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [container(extra)]}}}}))
    .expect("json")
}

fn refused(addr: &str, path: &str, body: &[u8], code: u16, reason: &str, text: &str) {
    let (got, status) = http(addr, "POST", path, JSON, body);
    assert_eq!(got, code, "{status}");
    assert_eq!(status["reason"], reason, "{status}");
    let msg = status["message"].as_str().unwrap_or("");
    assert!(msg.contains(text), "message {msg:?} lacks {text:?}");
}

#[test]
fn bad_probes_and_ports_are_refused_with_upstream_texts() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let a = server.addr.as_str();
    let before = common::store_revision(a);
    let two = json!({"readinessProbe": {"httpGet": {"port": 80}, "exec": {"command": ["true"]}}});
    refused(
        a,
        PODS,
        &pod("two", two.clone()),
        422,
        "Invalid",
        "spec.containers[0].readinessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
    );
    refused(
        a,
        DEPLOYS,
        &deployment("two", two),
        422,
        "Invalid",
        "spec.template.spec.containers[0].readinessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
    );
    refused(
        a,
        PODS,
        &pod("none", json!({"livenessProbe": {"periodSeconds": 5}})),
        422,
        "Invalid",
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
    );
    refused(
        a,
        &format!("{PODS}?fieldValidation=Strict"),
        &pod(
            "unknown",
            json!({"readinessProbe": {"magic": {"port": 80}}}),
        ),
        400,
        "BadRequest",
        "unknown field \"spec.containers[0].readinessProbe.magic\"",
    );
    for port in [0, 65536, 70000] {
        let ports = json!({"ports": [{"containerPort": port}]});
        let text = if port == 0 {
            "spec.containers[0].ports[0].containerPort: Required value".to_string()
        } else {
            format!(
                "spec.containers[0].ports[0].containerPort: Invalid value: {port}: must be between 1 and 65535, inclusive"
            )
        };
        refused(a, PODS, &pod("port", ports.clone()), 422, "Invalid", &text);
        refused(
            a,
            DEPLOYS,
            &deployment("port", ports),
            422,
            "Invalid",
            &format!("spec.template.{text}"),
        );
    }
    assert_eq!(common::store_revision(a), before, "nothing was written");
}

#[test]
fn bad_log_requests_get_upstream_status() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let a = server.addr.as_str();
    let two: Value = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"},
        "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
    let (code, body) = http(
        a,
        "POST",
        PODS,
        JSON,
        &serde_json::to_vec(&two).expect("json"),
    );
    assert_eq!(code, 201, "{body}");
    let get = |path: &str| http(a, "GET", &format!("{PODS}/{path}"), JSON, b"");
    let (code, s) = get("two/log");
    assert_eq!(
        (code, s["reason"].as_str()),
        (400, Some("BadRequest")),
        "{s}"
    );
    assert_eq!(
        s["message"],
        "a container name must be specified for pod two, choose one of: [a b]"
    );
    let (code, s) = get("two/log?container=c");
    assert_eq!(code, 400, "{s}");
    assert_eq!(s["message"], "container c is not valid for pod two");
    let (code, s) = get("two/log?container=a&tailLines=-1");
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")), "{s}");
    assert_eq!(
        s["message"],
        "PodLogOptions \"two\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
    );
    let (code, s) = get("two/log?container=a&sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z");
    assert_eq!(code, 422, "{s}");
    let (code, s) = get("nope/log");
    assert_eq!((code, s["reason"].as_str()), (404, Some("NotFound")), "{s}");
    // Not scheduled yet: no node to ask, an empty log (as upstream).
    let (code, _) = get("two/log?container=a");
    assert_eq!(code, 200);
}
