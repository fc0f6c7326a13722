//! `zonelab server --etcd-servers` against a real etcd started by the test: an etcd that is
//! killed gives API clients a 503 `Status`, a hung one a 504, `/readyz` reports `[-]etcd failed`
//! meanwhile, and the server recovers by itself when etcd returns (reads, writes, and the
//! controllers' watches). A wrong `--etcd-servers` fails startup with the URL in the message.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ServerProc, http};
use serde_json::{Value, json};
use store::testing::{EtcdCluster, free_ports};

fn require_etcd() {
    netlab::preflight::require_for_test(&[netlab::preflight::ETCD, netlab::preflight::KILL]);
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    http(addr, "GET", path, "application/json", b"")
}

fn post(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    http(
        addr,
        "POST",
        path,
        "application/json",
        body.to_string().as_bytes(),
    )
}

fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}})
}

/// Polls `f` until it returns `Some` (a hang guard, not a timing assertion).
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

fn assert_status(code: u16, body: &Value, want_code: u16, reason: &str) {
    assert_eq!(code, want_code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "starts a real etcd (Debian etcd-server): runs as root or with CI=true"
)]
fn etcd_loss_gives_503_or_504_and_the_server_recovers() {
    require_etcd();
    let mut cluster = EtcdCluster::start(1).expect("etcd starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProc::start(
        dir.path(),
        &[
            "--etcd-servers",
            &cluster.servers_flag(),
            "--profile",
            "fast",
        ],
    );
    let addr = server.addr.as_str();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, body) = post(addr, cms, &config_map("before"));
    assert_eq!(code, 201, "{body}");
    assert_eq!(get(addr, "/readyz"), (200, Value::String("ok".into())));

    // Hung etcd (SIGSTOP): requests time out with a 504 instead of hanging.
    let pid = cluster.members[0].pid().expect("etcd runs");
    signal(pid, "-STOP");
    let (code, body) = get(addr, &format!("{cms}/before"));
    assert_status(code, &body, 504, "Timeout");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Timeout: ")),
        "{body}"
    );
    signal(pid, "-CONT");

    // Dead etcd (SIGKILL): 503 for reads, writes and lists; not ready.
    cluster.members[0].kill();
    let (code, body) = get(addr, &format!("{cms}/before"));
    assert_status(code, &body, 503, "ServiceUnavailable");
    let (code, body) = post(addr, cms, &config_map("during"));
    assert_status(code, &body, 503, "ServiceUnavailable");
    let (code, body) = get(addr, cms);
    assert_status(code, &body, 503, "ServiceUnavailable");
    for probe in ["/readyz", "/livez", "/healthz"] {
        let (code, body) = get(addr, probe);
        assert_eq!(code, 500, "{probe}: {body}");
        let text = body.as_str().unwrap_or_default();
        assert!(
            text.contains("[-]etcd failed: reason withheld"),
            "{probe}: {text}"
        );
    }
    let (_, text) = get(addr, "/readyz?verbose");
    assert!(
        text.as_str()
            .is_some_and(|t| t.ends_with("readyz check failed\n")),
        "{text}"
    );

    // etcd returns on the same data: the server recovers without a restart.
    cluster.members[0].spawn().expect("restart etcd");
    cluster
        .wait_healthy(Duration::from_secs(30))
        .expect("etcd healthy again");
    let cm = wait_for(
        "the ConfigMap readable again",
        Duration::from_secs(30),
        || {
            let (code, body) = get(addr, &format!("{cms}/before"));
            (code == 200).then_some(body)
        },
    );
    assert_eq!(cm["data"]["k"], "before");
    let (code, _) = get(addr, &format!("{cms}/during"));
    assert_eq!(
        code, 404,
        "the write refused during the outage never landed"
    );
    assert_eq!(get(addr, "/readyz"), (200, Value::String("ok".into())));
    // The controllers' watches resumed: a Service created now gets its EndpointSlice.
    let svc = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "after"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "after"}},
    });
    let (code, body) = post(addr, "/api/v1/namespaces/default/services", &svc);
    assert_eq!(code, 201, "{body}");
    let slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dafter";
    wait_for(
        "the EndpointSlice of a Service created after the outage",
        Duration::from_secs(60),
        || {
            let (code, body) = get(addr, slices);
            (code == 200 && body["items"].as_array().is_some_and(|i| !i.is_empty())).then_some(())
        },
    );
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "starts a real etcd (Debian etcd-server): runs as root or with CI=true"
)]
fn a_wrong_etcd_url_fails_startup_naming_it() {
    require_etcd();
    let port = free_ports(1).expect("port")[0];
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_zonelab"))
        .args(["server", "--listen", "127.0.0.1:0", "--etcd-servers", &url])
        .arg("--data-dir")
        .arg(dir.path())
        .env("ZONELAB_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("zonelab server neither served nor failed against {url}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "etcd at --etcd-servers {url} did not answer within 20s"
        )),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "it never served"
    );

    // A malformed URL fails at once.
    let out = Command::new(env!("CARGO_BIN_EXE_zonelab"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--etcd-servers",
            "127.0.0.1:2379",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must start with http://"), "{stderr}");
}
