//! Requests without credentials over real HTTP, with the insecure superuser off and RBAC on:
//! with `--anonymous-auth` they act as `system:anonymous` in `system:unauthenticated` (read back
//! from the audit log; RBAC forbids them), without it, or with `AlwaysAllow` (upstream turns
//! anonymous off then), they get 401 and upstream's Status; a bad bearer token is 401 either
//! way. Start at `no_credentials_is_anonymous_when_allowed`.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(
    anonymous_auth: bool,
    mode: apiserver::authz::Mode,
    audit: &std::path::Path,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tokens = audit.with_file_name("tokens.csv");
    std::fs::write(&tokens, "t0k3n,bob,1\n").unwrap();
    let cfg = apiserver::Config {
        advertise_address: addr,
        token_auth_file: Some(tokens),
        audit_log_path: Some(audit.to_path_buf()),
        anonymous_auth,
        insecure_superuser: false,
        authorization_modes: vec![mode],
        ..apiserver::Config::default()
    };
    let store: store::SharedStore = Arc::new(store::MemStore::default());
    let server = apiserver::Server::new(store, cfg).await.unwrap();
    tokio::spawn(server.serve(listener));
    addr.to_string()
}

async fn request(addr: &str, bearer: Option<&str>, name: &str) -> (u16, Value) {
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}).to_string();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, serde_json::from_str(rest).unwrap_or(Value::Null))
}

#[tokio::test]
async fn no_credentials_is_anonymous_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let addr = start(true, apiserver::authz::Mode::Rbac, &audit).await;
    assert_eq!(request(&addr, None, "anon").await.0, 403);
    // A token the token authenticators refuse is never anonymous (upstream's FailOnError).
    let (code, status) = request(&addr, Some("no-such-token"), "bad").await;
    assert_eq!(code, 401);
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(request(&addr, Some("t0k3n"), "bob").await.0, 403);
    let text = std::fs::read_to_string(&audit).unwrap();
    let event: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["responseStatus"]["code"] == 403)
        .unwrap();
    let users: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(|e| e["user"]["username"].clone())
        .collect();
    assert_eq!(users, vec![json!("system:anonymous"), json!("bob")]);
    assert_eq!(
        event["user"],
        json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]})
    );
}

#[tokio::test]
async fn no_credentials_is_401_without_anonymous_auth_or_with_always_allow() {
    for (anonymous, mode) in [
        (false, apiserver::authz::Mode::Rbac),
        (true, apiserver::authz::Mode::AlwaysAllow),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let addr = start(anonymous, mode, &dir.path().join("audit.log")).await;
        let (code, status) = request(&addr, None, "anon").await;
        assert_eq!(code, 401, "anonymous {anonymous}, {mode:?}");
        assert_eq!(
            status,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        );
    }
}
