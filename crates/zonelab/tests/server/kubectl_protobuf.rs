//! Protobuf request bodies: every kubectl 1.27 … 1.33 on the machine creates a namespace, a
//! deployment and a ClusterIP service (1.32+ send them as protobuf); a protobuf body is stored
//! exactly as the same object sent as JSON; bad protobuf gets upstream's Status and changes
//! nothing.
//!
//! Start at `every_kubectl_creates_namespace_deployment_and_service`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Kubectl, ServerProc, http};
use serde_json::Value;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../api/tests/fixtures/protobuf")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run one kubectl binary against the server; returns (success, stdout, stderr).
fn run(k: &Kubectl, bin: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin)
        .env("KUBECONFIG", k.home.path().join("config"))
        .env("HOME", k.home.path())
        .arg("--server")
        .arg(&k.server)
        .arg("--cache-dir")
        .arg(k.home.path().join("cache"))
        .arg("--request-timeout=20s")
        .args(args)
        .output()
        .expect("spawn kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Create with `-v=8` (which logs request headers); returns the body's Content-Type.
fn create(k: &Kubectl, bin: &Path, args: &[&str]) -> String {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    all.push("-v=8");
    let (ok, stdout, stderr) = run(k, bin, &all);
    assert!(ok, "{} {all:?} failed:\n{stdout}\n{stderr}", bin.display());
    stderr
        .lines()
        .filter_map(|l| l.split_once("Content-Type: ").map(|(_, v)| v.trim()))
        .find(|v| v.starts_with("application/"))
        .unwrap_or("")
        .to_string()
}

fn get_json(k: &Kubectl, bin: &Path, args: &[&str]) -> Value {
    let mut all = vec!["get", "-o", "json"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = run(k, bin, &all);
    assert!(ok, "get {args:?}: {stderr}");
    serde_json::from_str(&stdout).expect("kubectl get -o json")
}

#[test]
fn every_kubectl_creates_namespace_deployment_and_service() {
    for (minor, bin) in common::kubectl_versions() {
        let data = tempfile::tempdir().unwrap();
        let server = ServerProc::start(data.path(), &["--controllers", ""]);
        let k = Kubectl::new(&server);
        let sent = [
            create(&k, &bin, &["namespace", "team-a"]),
            create(&k, &bin, &["deployment", "web", "--image=nginx"]),
            create(&k, &bin, &["service", "clusterip", "s", "--tcp=80:80"]),
        ];
        eprintln!("kubectl 1.{minor} sent {sent:?}");
        if minor >= 32 {
            assert!(
                sent.iter().all(|ct| ct.starts_with(PROTOBUF)),
                "kubectl 1.{minor} is expected to send protobuf: {sent:?}"
            );
        }
        let ns = get_json(&k, &bin, &["namespace", "team-a"]);
        assert_eq!(ns["status"]["phase"], "Active");
        let d = get_json(&k, &bin, &["deployment", "web"]);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx"
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
        let s = get_json(&k, &bin, &["service", "s"]);
        assert_eq!(s["spec"]["ports"][0]["port"], 80);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        let ip = s["spec"]["clusterIP"].as_str().unwrap_or("");
        assert!(ip.starts_with("10."), "allocated clusterIP: {s}");
        more_kinds(&k, &bin);
    }
}

/// ConfigMap, Secret and ServiceAccount: created by this kubectl (protobuf from 1.32) and
/// stored with the data it sent.
fn more_kinds(k: &Kubectl, bin: &Path) {
    create(k, bin, &["configmap", "cm", "--from-literal=a=b"]);
    assert_eq!(get_json(k, bin, &["configmap", "cm"])["data"]["a"], "b");
    create(k, bin, &["secret", "generic", "sec", "--from-literal=a=b"]);
    assert_eq!(get_json(k, bin, &["secret", "sec"])["data"]["a"], "Yg==");
    create(k, bin, &["serviceaccount", "sa"]);
    assert_eq!(
        get_json(k, bin, &["serviceaccount", "sa"])["metadata"]["name"],
        "sa"
    );
}

/// Drop what the server assigns (uid, times, resourceVersion, allocated IPs) and `null`s (Go
/// reads `"x": null` and an absent `x` alike; kubectl 1.30 wrote `creationTimestamp: null`).
fn comparable(mut v: Value) -> Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in ["uid", "creationTimestamp", "resourceVersion"] {
            m.remove(k);
        }
    }
    if let Some(spec) = v["spec"].as_object_mut() {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    strip_nulls(v)
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

const CREATES: [(&str, &str, &str); 3] = [
    (
        "namespace",
        "/api/v1/namespaces",
        "/api/v1/namespaces/team-a",
    ),
    (
        "deployment",
        "/apis/apps/v1/namespaces/default/deployments",
        "/apis/apps/v1/namespaces/default/deployments/web",
    ),
    (
        "service",
        "/api/v1/namespaces/default/services",
        "/api/v1/namespaces/default/services/s",
    ),
];

#[test]
fn protobuf_creates_store_what_json_creates() {
    let (pd, jd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pb = ServerProc::start(pd.path(), &["--controllers", ""]);
    let js = ServerProc::start(jd.path(), &["--controllers", ""]);
    for (name, post, get) in CREATES {
        let body = fixture(&format!("{name}.kubectl-1.33.pb"));
        let (code, created) = http(&pb.addr, "POST", post, PROTOBUF, &body);
        assert_eq!(code, 201, "{name}: {created}");
        let body = fixture(&format!("{name}.kubectl-1.30.json"));
        let (code, created) = http(&js.addr, "POST", post, "application/json", &body);
        assert_eq!(code, 201, "{name}: {created}");
        let (_, from_pb) = http(&pb.addr, "GET", get, "application/json", b"");
        let (_, from_json) = http(&js.addr, "GET", get, "application/json", b"");
        assert_eq!(comparable(from_pb), comparable(from_json), "{name}");
    }
}

#[test]
fn bad_protobuf_gets_upstream_status_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let a = server.addr.as_str();
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let namespaces = "/api/v1/namespaces";
    let good = fixture("deployment.kubectl-1.33.pb");
    let before = common::store_revision(a);
    let cases: Vec<(&str, &str, Vec<u8>, String)> = vec![
        (
            "truncated",
            deployments,
            good[..good.len() / 2].to_vec(),
            format!(
                "the object provided is unrecognized (must be of type Deployment): unexpected EOF ({} ...)",
                good[..30].iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        ),
        (
            "no magic",
            namespaces,
            b"\x0a\x0f\x0a\x02v1".to_vec(),
            "the object provided is unrecognized (must be of type Namespace): provided data does not appear to be a protobuf message, expected prefix [107 56 115 0] (0a0f0a027631)".into(),
        ),
        (
            "unknown kind",
            namespaces,
            api::proto::wrap("v1", "Widget", b""),
            "Widget in version \"v1\" cannot be handled as a Namespace: no kind \"Widget\" is registered for version \"v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"".into(),
        ),
        (
            "garbage object",
            namespaces,
            api::proto::wrap("v1", "Namespace", b"\x0a\x05\x0a\x03\xff\xfe\xfd"),
            "Namespace in version \"v1\" cannot be handled as a Namespace: proto: invalid UTF-8 in string field name".into(),
        ),
        (
            "another kind",
            namespaces,
            api::proto::wrap("v1", "Service", b""),
            "the object provided is unrecognized (must be of type Namespace): kind \"Service\" does not match".into(),
        ),
    ];
    for (what, path, body, message) in cases {
        let (code, status) = http(a, "POST", path, PROTOBUF, &body);
        assert_eq!(code, 400, "{what}: {status}");
        assert_eq!(status["kind"], "Status", "{what}");
        assert_eq!(status["reason"], "BadRequest", "{what}");
        assert_eq!(status["message"], message.as_str(), "{what}");
        assert_eq!(
            common::store_revision(a),
            before,
            "{what} changed the store"
        );
    }
    // A client that accepts only protobuf: 406 before anything is written.
    let (code, status) = accept_only_protobuf(a, namespaces, &fixture("namespace.kubectl-1.33.pb"));
    assert_eq!(code, 406, "{status}");
    assert_eq!(status["reason"], "NotAcceptable");
    assert_eq!(common::store_revision(a), before, "a 406 wrote");
    // Protobuf is not a patch type.
    let (code, status) = http(a, "PATCH", "/api/v1/namespaces/default", PROTOBUF, &good);
    assert_eq!(
        (code, status["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    assert_eq!(common::store_revision(a), before);
}

/// POST with `Accept: application/vnd.kubernetes.protobuf` only.
fn accept_only_protobuf(addr: &str, path: &str, body: &[u8]) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {PROTOBUF}\r\nAccept: {PROTOBUF}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = raw
        .find('{')
        .and_then(|i| serde_json::from_str(raw[i..].trim_end_matches(|c| c != '}')).ok())
        .unwrap_or(Value::Null);
    (code, json)
}

#[test]
fn protobuf_update_and_delete_options() {
    use api::proto::wire;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let a = server.addr.as_str();
    // PUT of the namespace kubectl 1.33 created, as protobuf.
    let ns = fixture("namespace.kubectl-1.33.pb");
    let (code, created) = http(a, "POST", "/api/v1/namespaces", PROTOBUF, &ns);
    assert_eq!(code, 201, "{created}");
    let (code, updated) = http(a, "PUT", "/api/v1/namespaces/team-a", PROTOBUF, &ns);
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    // A bound pod deleted with protobuf DeleteOptions{gracePeriodSeconds: 7}.
    let pod = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q"},
        "spec":{"nodeName":"n1","containers":[{"name":"c","image":"x"}]}}"#;
    let pods = "/api/v1/namespaces/default/pods";
    let (code, created) = http(a, "POST", pods, "application/json", pod);
    assert_eq!(code, 201, "{created}");
    let mut options = Vec::new();
    wire::put_varint_field(&mut options, 1, 7);
    let body = api::proto::wrap("v1", "DeleteOptions", &options);
    let (code, deleted) = http(a, "DELETE", &format!("{pods}/q"), PROTOBUF, &body);
    assert_eq!(code, 200, "{deleted}");
    assert_eq!(deleted["metadata"]["deletionGracePeriodSeconds"], 7);
}
