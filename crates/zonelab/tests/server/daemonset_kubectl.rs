//! DaemonSets through stock kubectl (1.27 and 1.33, when present) against a real `zonelab
//! server` with its controllers: `create`/`get ds`/`describe`/`rollout status`, the Table
//! columns, the API's defaults and template generation, a pod per registered node, and an
//! invalid DaemonSet refused with upstream's text and nothing stored.
//!
//! Start at `kubectl_get_describe_and_rollout_status`.

use crate::common;

use std::time::{Duration, Instant};

use common::{Kubectl, ServerProc};
use serde_json::Value;

const DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers: [{name: agent, image: "fluent/fluentd:v1.16"}]
"#;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {kubernetes.io/os: linux, kubernetes.io/hostname: n1}
"#;

fn json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = vec!["get", "-o", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&k.ok(&all, None)).expect("kubectl get -o json")
}

/// Poll `f` (bounded) until it returns `Some`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn check_one(k: &Kubectl, minor: u32) {
    k.ok(&["create", "-f", "-"], Some(DS));
    let ds = json(k, &["ds", "agent"]);
    assert_eq!(
        ds["spec"]["updateStrategy"],
        serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        "1.{minor}"
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "1"
    );
    // No node yet: nothing desired, so the rollout is complete once the controller has seen it.
    let out = k.ok(&["rollout", "status", "ds/agent", "--timeout=60s"], None);
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "1.{minor}: {out}"
    );
    let table = k.ok(&["get", "ds"], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ],
        "1.{minor}"
    );
    k.ok(&["create", "-f", "-"], Some(NODE));
    let row = eventually("DESIRED 1 CURRENT 1", || {
        let t = k.ok(&["get", "daemonsets", "agent", "--no-headers"], None);
        let cells: Vec<String> = t.split_whitespace().map(str::to_string).collect();
        (cells[1] == "1" && cells[2] == "1").then_some(cells)
    });
    assert_eq!(row[6], "kubernetes.io/os=linux");
    let pods = json(k, &["pods", "-l", "app=agent"]);
    let pod = &pods["items"][0];
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"][0]["values"][0],
        "n1"
    );
    assert_eq!(pod["metadata"]["labels"]["pod-template-generation"], "1");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    let described = eventually("SuccessfulCreate in describe", || {
        let d = k.ok(&["describe", "ds", "agent"], None);
        d.contains("SuccessfulCreate").then_some(d)
    });
    assert!(
        described.contains("Desired Number of Nodes Scheduled: 1"),
        "1.{minor}: {described}"
    );
    assert!(described.contains("Created pod: agent-"), "{described}");
    // A template change bumps the template generation and the generation.
    k.ok(
        &["set", "image", "ds/agent", "agent=fluent/fluentd:v1.17"],
        None,
    );
    let ds = json(k, &["ds", "agent"]);
    assert_eq!(ds["metadata"]["generation"], 2);
    assert_eq!(
        ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "2"
    );
}

#[test]
fn kubectl_get_describe_and_rollout_status() {
    let versions: Vec<_> = common::kubectl_versions()
        .into_iter()
        .filter(|(m, _)| *m == 27 || *m == 33)
        .collect();
    assert!(
        !versions.is_empty() || std::env::var("CI").is_err(),
        "kubectl 1.27/1.33 missing"
    );
    for (minor, bin) in versions {
        let data = tempfile::tempdir().unwrap();
        let server = ServerProc::start(data.path(), &[]);
        let k = Kubectl::with_binary(&server, &bin);
        check_one(&k, minor);
    }
}

#[test]
fn invalid_daemonset_is_refused_with_upstream_text() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProc::start(data.path(), &["--controllers", ""]);
    let k = Kubectl::new(&server);
    let bad = DS.replace("{labels: {app: agent}}", "{labels: {app: other}}");
    let err = k.fails(&["create", "-f", "-"], Some(&bad));
    assert!(
        err.contains("The DaemonSet \"agent\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"),
        "{err}"
    );
    let surge = DS.replace(
        "  selector:",
        "  updateStrategy: {rollingUpdate: {maxUnavailable: 1, maxSurge: 1}}\n  selector:",
    );
    let err = k.fails(&["create", "-f", "-"], Some(&surge));
    assert!(
        err.contains("spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero"),
        "{err}"
    );
    let none = k.ok(&["get", "ds", "-o", "name"], None);
    assert!(none.trim().is_empty(), "nothing stored: {none}");
}
