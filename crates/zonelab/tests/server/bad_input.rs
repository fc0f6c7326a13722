//! Bad input gets a clear Kubernetes Status, changes nothing, and the server keeps serving.

use crate::common;

use common::{ServerProc, http};
use serde_json::{Value, json};

const SVC: &str = "/api/v1/namespaces/default/services";

fn expect(
    addr: &str,
    (method, path): (&str, &str),
    ct: &str,
    body: &[u8],
    code: u16,
    reason: &str,
    text: &str,
) -> Value {
    let (got, status) = http(addr, method, path, ct, body);
    assert_eq!(got, code, "{method} {path}: {status}");
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], reason, "{status}");
    let msg = status["message"].as_str().unwrap_or("");
    assert!(msg.contains(text), "message {msg:?} lacks {text:?}");
    status
}

fn svc(name: &str, port: i64) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": port}]}}),
    )
    .unwrap()
}

#[test]
fn bad_requests_get_status_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // No controllers: the store revision must stay put unless a request writes.
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let a = server.addr.as_str();
    let (code, good) = http(a, "POST", SVC, "application/json", &svc("good", 80));
    assert_eq!(code, 201, "{good}");
    let rv = good["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let before = common::store_revision(a);

    let json = "application/json";
    expect(
        a,
        ("POST", SVC),
        json,
        b"{\"apiVersion\": \"v1\",",
        400,
        "BadRequest",
        "",
    );
    expect(
        a,
        ("POST", SVC),
        "application/yaml",
        b"kind: Service\n  bad: [indent",
        400,
        "BadRequest",
        "",
    );
    expect(
        a,
        ("POST", "/api/v1/namespaces/default/widgets"),
        json,
        &svc("w", 80),
        404,
        "NotFound",
        "",
    );
    expect(
        a,
        ("POST", SVC),
        json,
        br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"}}"#,
        400,
        "BadRequest",
        "",
    );
    expect(a, ("POST", &format!("{SVC}?fieldValidation=Strict")), json,
        br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"u"},"spec":{"ports":[{"port":80,"bogus":1}]}}"#,
        400, "BadRequest", "Service in version \"v1\" cannot be handled as a Service: strict decoding error: unknown field \"spec.ports[0].bogus\"");
    expect(
        a,
        ("POST", SVC),
        json,
        &svc("Bad_Name", 80),
        422,
        "Invalid",
        "metadata.name",
    );
    expect(
        a,
        ("POST", SVC),
        json,
        &svc("zero", 0),
        422,
        "Invalid",
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
    );
    expect(a, ("POST", SVC), json,
        br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"sel"},"spec":{"selector":{"bad key!":"x"},"ports":[{"port":80}]}}"#,
        422, "Invalid", "spec.selector");
    expect(a, ("POST", SVC), json,
        br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"taken"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}}"#,
        422, "Invalid", "failed to allocate IP 10.96.0.1: provided IP is already allocated");
    expect(a, ("POST", SVC), json,
        br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"far"},"spec":{"clusterIP":"192.168.1.1","ports":[{"port":80}]}}"#,
        422, "Invalid", "is not in the valid range. The range of valid IPs is 10.96.0.0/12");
    expect(
        a,
        ("POST", SVC),
        json,
        &svc("good", 81),
        409,
        "AlreadyExists",
        "services \"good\" already exists",
    );
    // A stale resourceVersion on update is a Conflict.
    let mut stale = good.clone();
    stale["metadata"]["resourceVersion"] = json!((rv.parse::<u64>().unwrap() - 1).to_string());
    stale["metadata"]["labels"] = json!({"a": "b"});
    expect(
        a,
        ("PUT", &format!("{SVC}/good")),
        json,
        &serde_json::to_vec(&stale).unwrap(),
        409,
        "Conflict",
        "the object has been modified; please apply your changes to the latest version and try again",
    );
    // A body over 3 MiB.
    let mut big =
        br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"big","annotations":{"a":""#
            .to_vec();
    big.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024 + 10));
    big.extend(br#""}},"spec":{"ports":[{"port":80}]}}"#);
    expect(
        a,
        ("POST", SVC),
        json,
        &big,
        413,
        "RequestEntityTooLarge",
        "",
    );
    // Bad selectors and paging tokens on reads.
    expect(
        a,
        ("GET", "/api/v1/services?labelSelector=a%20in%20("),
        json,
        b"",
        400,
        "BadRequest",
        "",
    );
    expect(
        a,
        ("GET", "/api/v1/services?continue=notatoken"),
        json,
        b"",
        400,
        "BadRequest",
        "continue",
    );
    expect(
        a,
        ("GET", "/api/v1/namespaces/nope/services/x"),
        json,
        b"",
        404,
        "NotFound",
        "services \"x\" not found",
    );
    expect(
        a,
        ("POST", "/api/v1/namespaces/nope/services"),
        json,
        &svc("x", 80),
        404,
        "NotFound",
        "namespaces \"nope\" not found",
    );

    assert_eq!(
        common::store_revision(a),
        before,
        "a rejected write changed the store"
    );
    let (code, still) = http(a, "GET", &format!("{SVC}/good"), json, b"");
    assert_eq!(code, 200);
    assert_eq!(still["metadata"]["resourceVersion"], rv.as_str());
    let (code, _) = http(a, "POST", SVC, json, &svc("after", 80));
    assert_eq!(code, 201, "the server stopped serving");
}

#[test]
fn an_update_that_changes_nothing_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let a = server.addr.as_str();
    let (code, created) = http(a, "POST", SVC, "application/json", &svc("same", 80));
    assert_eq!(code, 201);
    let before = common::store_revision(a);
    let (code, put) = http(
        a,
        "PUT",
        &format!("{SVC}/same"),
        "application/json",
        &serde_json::to_vec(&created).unwrap(),
    );
    assert_eq!(code, 200, "{put}");
    assert_eq!(
        put["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let (code, _) = http(
        a,
        "PATCH",
        &format!("{SVC}/same"),
        "application/merge-patch+json",
        br#"{"spec":{"ports":[{"port":80}]}}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(
        common::store_revision(a),
        before,
        "a no-op update wrote to the store"
    );
    let (code, changed) = http(
        a,
        "PATCH",
        &format!("{SVC}/same"),
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"x":"y"}}}"#,
    );
    assert_eq!(code, 200);
    assert_ne!(
        changed["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
}
