//! `kubectl auth can-i` and `kubectl get --raw /metrics` against a real `zonelab server`, with
//! every kubectl 1.27+ the machine has (1.32+ send the reviews as protobuf); access reviews' bad input over raw HTTP.

use crate::common;

use common::{Kubectl, ServerProc, http, kubectl_versions};

/// The value of the sample line that starts with `prefix`, if any.
fn sample(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn auth_can_i_answers_yes_for_every_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    for (minor, bin) in kubectl_versions() {
        let k = Kubectl::with_binary(&server, &bin);
        let out = k.ok(&["auth", "can-i", "create", "pods"], None);
        assert_eq!(out.trim(), "yes", "kubectl 1.{minor}");
        let out = k.ok(
            &["auth", "can-i", "delete", "nodes", "--all-namespaces"],
            None,
        );
        assert_eq!(out.trim(), "yes", "kubectl 1.{minor}");
        let out = k.ok(&["auth", "can-i", "get", "/metrics"], None);
        assert_eq!(out.trim(), "yes", "kubectl 1.{minor}");
        let list = k.ok(&["auth", "can-i", "--list"], None);
        assert!(
            list.lines()
                .any(|l| l.starts_with("*.*") && l.contains("[*]")),
            "kubectl 1.{minor} --list:\n{list}"
        );
        assert!(list.contains("[*]"), "{list}");
    }
}

#[test]
fn metrics_count_requests_watch_events_and_stored_objects() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let k = Kubectl::new(&server);
    k.ok(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n"),
    );
    k.ok(&["get", "namespaces"], None);
    // A watch that sees at least one event: start it, then create an object.
    let mut watch = k
        .command()
        .args(["get", "namespaces", "--watch-only", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    k.ok(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n"),
    );
    let page = {
        let mut page = String::new();
        for _ in 0..50 {
            page = k.ok(&["get", "--raw", "/metrics"], None);
            if sample(
                &page,
                "apiserver_watch_events_total{group=\"\",resource=\"namespaces\"",
            )
            .is_some()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        page
    };
    let _ = watch.kill();
    let _ = watch.wait();
    let created = sample(
        &page,
        "apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"namespaces\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"}",
    );
    assert_eq!(created, Some(2.0), "two namespaces created:\n{page}");
    assert!(
        sample(
            &page,
            "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"namespaces\",scope=\"cluster\",subresource=\"\",verb=\"LIST\",version=\"v1\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            "apiserver_watch_events_total{group=\"\",resource=\"namespaces\",version=\"v1\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    // default, kube-system, kube-public, kube-node-lease, team-a, team-b.
    assert_eq!(
        sample(&page, "apiserver_storage_objects{resource=\"namespaces\"}"),
        Some(6.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            "etcd_requests_total{operation=\"create\",type=\"namespaces\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "{page}"
    );
    assert!(page.contains("# TYPE apiserver_request_duration_seconds histogram"));
}

#[test]
fn access_reviews_reject_bad_input_and_other_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, status) = http(
        &server.addr,
        "POST",
        path,
        "application/json",
        br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{}}"#,
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert!(
        status["message"].as_str().unwrap().contains(
            "exactly one of nonResourceAttributes or resourceAttributes must be specified"
        ),
        "{status}"
    );
    let (code, status) = http(&server.addr, "GET", path, "application/json", b"");
    assert_eq!(code, 405, "{status}");
    assert_eq!(status["reason"], "MethodNotAllowed");
    let (code, answer) = http(
        &server.addr,
        "POST",
        path,
        "application/json",
        br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"get","resource":"pods"}}}"#,
    );
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["status"]["allowed"], true);
    // Nothing was stored: the review is answered, not kept (no controllers write meanwhile).
    let (code, list) = http(&server.addr, "GET", "/api/v1/namespaces", "", b"");
    assert_eq!(code, 200);
    let rv_before = list["metadata"]["resourceVersion"].clone();
    http(
        &server.addr,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        "application/json",
        br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectRulesReview","spec":{"namespace":"default"}}"#,
    );
    let (_, list) = http(&server.addr, "GET", "/api/v1/namespaces", "", b"");
    assert_eq!(list["metadata"]["resourceVersion"], rv_before);
}
