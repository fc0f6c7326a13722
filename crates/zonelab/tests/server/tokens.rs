//! Bearer tokens against a real `zonelab server`: ServiceAccount tokens from TokenRequest
//! (`kubectl create token`, every kubectl 1.27+) authenticate as the ServiceAccount until they
//! expire and stop when the ServiceAccount is deleted or recreated; a `--token-auth-file` token
//! authenticates its user; 1,000 malformed tokens each get 401 and the API keeps answering.
//! Who a request was is read from the audit log. Start at
//! `every_kubectl_creates_tokens_that_authenticate_as_the_service_account`.

use crate::common;

use std::io::{Read, Write};
use std::path::Path;

use apiserver::authn::jwt::{Claims, KubernetesClaims, Ref, SigningKey};
use common::{Kubectl, ServerProc};
use serde_json::{Value, json};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A server with a fresh signing key, a token file and an audit log.
struct Setup {
    dir: tempfile::TempDir,
    key: SigningKey,
    server: ServerProc,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (key, pem) = SigningKey::generate().unwrap();
    std::fs::write(dir.path().join("sa.key"), pem).unwrap();
    std::fs::write(
        dir.path().join("tokens.csv"),
        "s3cr3t-alice,alice,1001,\"dev,ops\"\n",
    )
    .unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let server = ServerProc::start(
        &dir.path().join("data"),
        &[
            "--controllers",
            "",
            "--service-account-signing-key-file",
            &p("sa.key"),
            "--token-auth-file",
            &p("tokens.csv"),
            "--audit-log-path",
            &p("audit.log"),
        ],
    );
    Setup { dir, key, server }
}

/// One request with `Authorization: Bearer token`; returns the code and the JSON body. A
/// create's object name is also sent as its `Audit-ID`, to find it in the audit log.
fn with_token(addr: &str, token: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let audit_id = body["metadata"]["name"]
        .as_str()
        .unwrap_or("none")
        .to_string();
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAudit-ID: {audit_id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, serde_json::from_str(rest).unwrap_or(Value::Null))
}

/// Create ConfigMap `name` in `default` with `token`; returns the code.
fn create_configmap(addr: &str, token: &str, name: &str) -> u16 {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    with_token(
        addr,
        token,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &cm,
    )
    .0
}

/// The audit log's user of the create of ConfigMap `name`.
fn audit_user(log: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["auditID"] == name && e["verb"] == "create")
        .unwrap_or_else(|| panic!("no audit event for {name}"))["user"]
        .clone()
}

fn claims_of(token: &str) -> Value {
    serde_json::to_value(apiserver::authn::jwt::peek_claims(token).unwrap()).unwrap()
}

fn uid_of(k: &Kubectl, args: &[&str]) -> String {
    let mut all = vec!["get", "-o", "jsonpath={.metadata.uid}"];
    all.extend_from_slice(args);
    k.ok(&all, None)
}

#[test]
fn every_kubectl_creates_tokens_that_authenticate_as_the_service_account() {
    let s = setup();
    let addr = s.server.addr.clone();
    let log = s.dir.path().join("audit.log");
    let k = Kubectl::new(&s.server);
    k.ok(&["create", "serviceaccount", "app"], None);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "nginx"}]}});
    k.ok(&["create", "-f", "-"], Some(&pod.to_string()));
    let sa_uid = uid_of(&k, &["serviceaccount", "app"]);
    let pod_uid = uid_of(&k, &["pod", "web"]);
    let versions = common::kubectl_versions();
    for (minor, bin) in &versions {
        let kv = Kubectl::with_binary(&s.server, bin);
        let token = kv.ok(&["create", "token", "app"], None).trim().to_string();
        let c = claims_of(&token);
        assert_eq!(c["iss"], ISSUER, "kubectl 1.{minor}");
        assert_eq!(c["sub"], "system:serviceaccount:default:app");
        assert_eq!(c["aud"], json!([ISSUER]));
        assert_eq!(
            c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
            3600
        );
        assert_eq!(c["kubernetes.io"]["serviceaccount"]["uid"], sa_uid.as_str());
        let name = format!("by-kubectl-{minor}");
        assert_eq!(
            create_configmap(&addr, &token, &name),
            201,
            "kubectl 1.{minor}"
        );
        let user = audit_user(&log, &name);
        assert_eq!(user["username"], "system:serviceaccount:default:app");
        assert_eq!(
            user["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ])
        );

        // --duration, --audience and a Pod binding.
        let bound = kv.ok(
            &[
                "create",
                "token",
                "app",
                "--duration",
                "20m",
                "--audience",
                "vault",
                "--bound-object-kind",
                "Pod",
                "--bound-object-name",
                "web",
            ],
            None,
        );
        let c = claims_of(bound.trim());
        assert_eq!(c["aud"], json!(["vault"]));
        assert_eq!(
            c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
            1200
        );
        assert_eq!(
            c["kubernetes.io"]["pod"],
            json!({"name": "web", "uid": pod_uid})
        );
        assert_eq!(c["kubernetes.io"]["node"]["name"], "node-a");
        // Not for this server's audience: refused.
        assert_eq!(create_configmap(&addr, bound.trim(), "never"), 401);
        let err = kv.fails(&["create", "token", "app", "--duration", "5m"], None);
        assert!(
            err.contains("may not specify a duration less than 10 minutes"),
            "kubectl 1.{minor}: {err}"
        );
    }
}

/// A token signed with the server's key, expiring at `exp` (Unix seconds).
fn token_expiring(key: &SigningKey, sa_uid: &str, exp: i64) -> String {
    key.sign(&Claims {
        iss: ISSUER.into(),
        sub: "system:serviceaccount:default:app".into(),
        aud: vec![ISSUER.into()],
        exp: Some(exp),
        iat: Some(exp - 3600),
        nbf: Some(exp - 3600),
        jti: "test".into(),
        kubernetes: Some(KubernetesClaims {
            namespace: "default".into(),
            serviceaccount: Ref {
                name: "app".into(),
                uid: sa_uid.into(),
            },
            pod: None,
            node: None,
        }),
    })
    .unwrap()
}

#[test]
fn tokens_stop_at_expiry_and_with_their_service_account() {
    let s = setup();
    let addr = s.server.addr.clone();
    let k = Kubectl::new(&s.server);
    k.ok(&["create", "serviceaccount", "app"], None);
    let sa_uid = uid_of(&k, &["serviceaccount", "app"]);
    let now = chrono::Utc::now().timestamp();
    // Expiry is checked against the server's clock, with upstream's one minute of leeway.
    let live = token_expiring(&s.key, &sa_uid, now + 3600);
    let expired = token_expiring(&s.key, &sa_uid, now - 120);
    assert_eq!(create_configmap(&addr, &live, "live"), 201);
    let (code, status) = with_token(&addr, &expired, "GET", "/api/v1/namespaces", &Value::Null);
    assert_eq!(code, 401);
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["message"], "Unauthorized");

    // A token from TokenRequest works until its ServiceAccount is deleted …
    let token = k.ok(&["create", "token", "app"], None).trim().to_string();
    assert_eq!(create_configmap(&addr, &token, "before-delete"), 201);
    k.ok(&["delete", "serviceaccount", "app"], None);
    assert_eq!(create_configmap(&addr, &token, "after-delete"), 401);
    // … and stays refused when one of the same name is created again (another uid).
    k.ok(&["create", "serviceaccount", "app"], None);
    assert_eq!(create_configmap(&addr, &token, "after-recreate"), 401);
    assert_eq!(create_configmap(&addr, &live, "live-after-recreate"), 401);
}

#[test]
fn a_static_token_authenticates_its_user_and_bad_tokens_get_401() {
    let s = setup();
    let addr = s.server.addr.clone();
    let log = s.dir.path().join("audit.log");
    assert_eq!(create_configmap(&addr, "s3cr3t-alice", "by-alice"), 201);
    let user = audit_user(&log, "by-alice");
    assert_eq!(user["username"], "alice");
    assert_eq!(
        user["groups"],
        json!(["dev", "ops", "system:authenticated"])
    );

    // 1,000 malformed tokens, each 401 with upstream's Status.
    let (other, _) = SigningKey::generate().unwrap();
    let foreign_key = token_expiring(&other, "x", chrono::Utc::now().timestamp() + 3600);
    let mut tampered = token_expiring(&s.key, "x", chrono::Utc::now().timestamp() + 3600);
    tampered.insert(tampered.find('.').unwrap() + 3, 'A');
    let kinds = [
        "s3cr3t-alic".to_string(),
        "not-a-jwt".to_string(),
        "a.b.c".to_string(),
        "!!!.@@@.###".to_string(),
        "eyJhbGciOiJub25lIn0.e30.".to_string(),
        foreign_key,
        tampered,
        "x".repeat(4000),
    ];
    for i in 0..1000 {
        let token = &kinds[i % kinds.len()];
        let (code, status) = with_token(&addr, token, "GET", "/api/v1/namespaces", &Value::Null);
        assert_eq!(code, 401, "token kind {}", i % kinds.len());
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Unauthorized");
    }
    // The API keeps answering.
    let (code, list) = common::http(&addr, "GET", "/api/v1/namespaces", "", b"");
    assert_eq!(code, 200);
    assert!(list["items"].as_array().is_some_and(|i| !i.is_empty()));
    assert_eq!(
        create_configmap(&addr, "s3cr3t-alice", "after-the-storm"),
        201
    );
}

#[test]
fn a_bad_token_file_stops_start_up_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.csv");
    std::fs::write(&file, "ok,alice,1\nshort,row\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zonelab"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--token-auth-file")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("token file '{}', line 2", file.display()))
            && err.contains("at least 3 columns"),
        "{err}"
    );
}
