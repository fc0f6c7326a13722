//! `zonelab server --etcd-servers` against a real etcd started by the test: an etcd that is
//! killed gives API clients a 503 `Status`, a hung one a 504, `/readyz` reports `[-]etcd failed`
//! meanwhile, and the server recovers by itself when etcd returns (reads, writes, and the
//! controllers' watches). A wrong `--etcd-servers` fails startup with the URL in the message.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ServerProc, http};
use serde_json::{Value, json};
use store::testing::{EtcdCluster, free_ports};

fn require_etcd() {
    netlab::preflight::require_etcd_for_test();
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
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
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
    // A metrics scrape still answers (it skips the object counts while etcd does not).
    let (code, _) = get(addr, "/metrics");
    assert_eq!(code, 200, "/metrics while etcd hangs");
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
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
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

#[test]
#[cfg_attr(
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
)]
fn two_servers_on_one_etcd_share_state_revisions_and_watches() {
    require_etcd();
    let cluster = EtcdCluster::start(1).expect("etcd starts");
    let servers = cluster.servers_flag();
    let flags = ["--etcd-servers", servers.as_str(), "--controllers", ""];
    let (da, db) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = ServerProc::start(da.path(), &flags);
    let b = ServerProc::start(db.path(), &flags);
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, created) = post(&a.addr, cms, &config_map("shared"));
    assert_eq!(code, 201, "{created}");
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("resourceVersion");
    // B has not seen A's revision yet; a list not older than it still answers (no 504).
    let (code, list) = get(
        &b.addr,
        &format!("{cms}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan"),
    );
    assert_eq!(code, 200, "{list}");
    assert!(
        list["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|o| o["metadata"]["name"] == "shared")),
        "{list}"
    );
    let (code, got) = get(&b.addr, &format!("{cms}/shared"));
    assert_eq!(
        (code, &got["metadata"]["resourceVersion"]),
        (200, &json!(rv.to_string()))
    );
    // Compare-and-swap across servers: B updates at A's revision, A's stale update conflicts.
    let mut update = config_map("shared");
    update["metadata"]["resourceVersion"] = json!(rv.to_string());
    update["data"]["k"] = json!("from-b");
    let put = |addr: &str, body: &Value| {
        http(
            addr,
            "PUT",
            &format!("{cms}/shared"),
            "application/json",
            body.to_string().as_bytes(),
        )
    };
    let (code, body) = put(&b.addr, &update);
    assert_eq!(code, 200, "{body}");
    update["data"]["k"] = json!("from-a");
    let (code, body) = put(&a.addr, &update);
    assert_status(code, &body, 409, "Conflict");
    // A watch on A from before the first write sees both writes, the second made through B.
    let (code, events) = get(
        &a.addr,
        &format!("{cms}?watch=1&resourceVersion={}&timeoutSeconds=2", rv - 1),
    );
    assert_eq!(code, 200);
    let lines: Vec<Value> = events
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let seen: Vec<(String, String)> = lines
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["object"]["data"]["k"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ADDED".to_string(), "shared".to_string()),
            ("MODIFIED".to_string(), "from-b".to_string())
        ],
        "{events}"
    );
}

#[test]
#[cfg_attr(
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
)]
fn the_compaction_interval_compacts_and_old_revisions_get_410() {
    require_etcd();
    let cluster = EtcdCluster::start(1).expect("etcd starts");
    let dir = tempfile::tempdir().expect("dir");
    let servers = cluster.servers_flag();
    let server = ServerProc::start(
        dir.path(),
        &[
            "--etcd-servers",
            &servers,
            "--etcd-compaction-interval",
            "500ms",
            "--controllers",
            "",
        ],
    );
    let addr = server.addr.as_str();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, first) = post(addr, cms, &config_map("c0"));
    assert_eq!(code, 201, "{first}");
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string();
    // Writes go on; the compactor compacts to the revision it saw one interval earlier.
    let mut n = 1;
    let expired = wait_for(
        "a list at the first revision to expire",
        Duration::from_secs(30),
        || {
            let (code, body) = post(addr, cms, &config_map(&format!("c{n}")));
            assert_eq!(code, 201, "{body}");
            n += 1;
            let (code, body) = get(
                addr,
                &format!("{cms}?resourceVersion={rv}&resourceVersionMatch=Exact"),
            );
            (code == 410).then_some(body)
        },
    );
    assert_status(410, &expired, 410, "Expired");
    // A watch from it gets the ERROR event with 410 (clients relist).
    let (code, events) = get(
        addr,
        &format!("{cms}?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
    );
    assert_eq!(code, 200);
    // One event line is itself a JSON document (the helper parses it); several are text.
    let first_event = match &events {
        Value::String(text) => {
            serde_json::from_str(text.lines().next().unwrap_or("")).expect("event")
        }
        one => one.clone(),
    };
    assert_eq!(first_event["type"], "ERROR", "{events}");
    assert_eq!(first_event["object"]["code"], 410, "{events}");
}

#[test]
#[cfg_attr(
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
)]
fn sigkill_of_the_member_in_use_during_an_api_write_burst_loses_nothing() {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    require_etcd();
    let mut cluster = EtcdCluster::start(3).expect("etcd starts");
    let dir = tempfile::tempdir().expect("dir");
    let servers = cluster.servers_flag();
    let server = ServerProc::start(
        dir.path(),
        &["--etcd-servers", &servers, "--controllers", ""],
    );
    let addr = server.addr.clone();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let (acks, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let writers: Vec<_> = (0..16)
        .map(|t| {
            let (addr, acked, acks, stop) =
                (addr.clone(), acked.clone(), acks.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut failed = 0;
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("w{t:02}-{i:05}");
                    let (code, body) = post(
                        &addr,
                        "/api/v1/namespaces/default/configmaps",
                        &config_map(&name),
                    );
                    match code {
                        201 => {
                            acked.lock().unwrap().insert(name);
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        // The write may or may not have landed; the client got a Status.
                        500 | 503 | 504 => {
                            assert_eq!(body["kind"], "Status", "{body}");
                            failed += 1;
                        }
                        other => panic!("{name}: HTTP {other} (0 = no answer): {body}"),
                    }
                }
                failed
            })
        })
        .collect();
    wait_for("writes acknowledged", Duration::from_secs(60), || {
        (acks.load(Ordering::SeqCst) >= 100).then_some(())
    });
    // The server talks to the first member: kill it mid-burst.
    cluster.members[0].kill();
    let after_kill = acks.load(Ordering::SeqCst);
    wait_for(
        "writes acknowledged through the other members",
        Duration::from_secs(60),
        || (acks.load(Ordering::SeqCst) >= after_kill + 200).then_some(()),
    );
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let (code, list) = get(&addr, "/api/v1/namespaces/default/configmaps");
    assert_eq!(code, 200, "{list}");
    let stored: BTreeSet<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
        .collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // The killed member rejoins.
    cluster.members[0].spawn().expect("restart");
    cluster
        .wait_healthy(Duration::from_secs(30))
        .expect("member rejoins");
}
