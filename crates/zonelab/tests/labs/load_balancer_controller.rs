//! Integration test (root, one network namespace): `zonelab server --load-balancer-netns` runs
//! the load-balancer controller with real `zonelab balancer` children. A LoadBalancer Service
//! gets the finalizer, an address per zone with nodes in `status.loadBalancer.ingress`
//! (kubectl's EXTERNAL-IP), and a balancer holding those addresses and its nftables table in
//! the namespace; the balancer outlives a killed server and the restarted controller takes it
//! over; a node in a new zone adds an address (SIGHUP reload of that same process); a bad
//! annotation gets its Event live; deleting the Service removes the balancer before the Service
//! goes.
//! Reported as ignored without root (see build.rs); under CI it fails instead.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Kubectl, ServerProc, http};
use serde_json::{Value, json};

/// This test's own namespace (the prefix keeps it apart from every other test's).
const NS: &str = "zlbc-rt";
const WAIT: Duration = Duration::from_secs(30);

fn in_ns(argv: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", NS])
        .args(argv)
        .output()
        .expect("run ip netns exec");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `zonelab balancer` processes this test's server started (their command line names our
/// namespace), by pid.
fn our_balancers() -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(" balancer ") && cmd.contains(&format!("--netns {NS}")) {
            pids.push(pid);
        }
    }
    pids
}

/// Removes the namespace and any balancer left behind, also after a panic.
struct Guard;

impl Guard {
    fn clean() {
        for pid in our_balancers() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
        let _ = Command::new("ip").args(["netns", "del", NS]).output();
        let _ = std::fs::remove_dir_all(fleet_dir());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        Guard::clean();
    }
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn node(server: &ServerProc, name: &str, zone: &str, ip: &str) {
    let body = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}});
    let (code, created) = http(
        &server.addr,
        "POST",
        "/api/v1/nodes",
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{created}");
    let mut with_status = created;
    with_status["status"] = json!({"addresses": [{"type": "InternalIP", "address": ip}],
        "conditions": [{"type": "Ready", "status": "True"}]});
    let path = format!("/api/v1/nodes/{name}/status");
    let (code, body) = http(
        &server.addr,
        "PUT",
        &path,
        "application/json",
        with_status.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
}

fn service(server: &ServerProc) -> (u16, Value) {
    http(
        &server.addr,
        "GET",
        "/api/v1/namespaces/default/services/web",
        "application/json",
        b"",
    )
}

fn ingress(svc: &Value) -> Vec<String> {
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect()
}

/// `(reason, message)` of the Events about Service `name`, as the API lists them.
fn events(server: &ServerProc, name: &str) -> Vec<(String, String)> {
    let (_, list) = http(
        &server.addr,
        "GET",
        "/api/v1/namespaces/default/events",
        "application/json",
        b"",
    );
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["kind"] == "Service" && e["involvedObject"]["name"] == name)
        .filter(|e| e["source"]["component"] == "service")
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The balancers' files: one directory per lab router namespace.
fn fleet_dir() -> PathBuf {
    Path::new("/run/zonelab/balancers").join(NS)
}

fn balancer_name(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find_map(|f| f.strip_suffix(".json").map(str::to_string))
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn a_load_balancer_service_gets_a_real_balancer_and_loses_it_on_delete() {
    netlab::preflight::require_for_test(&[netlab::preflight::IP, netlab::preflight::NFT]);
    Guard::clean();
    let _guard = Guard;
    assert!(
        Command::new("ip")
            .args(["netns", "add", NS])
            .status()
            .expect("ip")
            .success()
    );
    in_ns(&["ip", "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = [
        "--controllers",
        "",
        "--load-balancer-netns",
        NS,
        "--profile",
        "fast",
    ];
    let mut server = ServerProc::start(dir.path(), &flags);
    node(&server, "a-1", "a", "172.20.0.11");
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}});
    let (code, created) = http(
        &server.addr,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{created}");

    until("the ingress address", || {
        ingress(&service(&server).1) == ["172.20.251.16"]
    });
    let svc = service(&server).1;
    assert_eq!(
        svc["metadata"]["finalizers"],
        json!(["service.k8s.aws/resources"])
    );
    assert_eq!(
        svc["status"]["loadBalancer"]["ingress"][0]["ipMode"],
        "Proxy"
    );
    let name = balancer_name(&fleet_dir()).expect("a balancer file");
    let table = format!("zonelab-lb-{name}");
    until("the balancer's table and address", || {
        in_ns(&["nft", "list", "tables"]).contains(&table)
            && in_ns(&["ip", "-4", "addr", "show", "dev", "lo"]).contains("172.20.251.16/32")
    });
    let out = Kubectl::new(&server).ok(&["get", "svc", "web"], None);
    assert!(out.contains("172.20.251.16"), "{out}");
    until("SuccessfullyReconciled", || {
        events(&server, "web").contains(&(
            "SuccessfullyReconciled".into(),
            "Successfully reconciled".into(),
        ))
    });

    // Bad input: an Event, no balancer, no address, no crash.
    let bad = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad",
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "pod"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 81}]}});
    let (code, created) = http(
        &server.addr,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        bad.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{created}");
    until("FailedBuildModel", || {
        events(&server, "bad").iter().any(|(r, m)| {
            r == "FailedBuildModel"
                && m.starts_with("Failed build model due to unsupported target type \"pod\"")
        })
    });
    let (_, bad) = http(
        &server.addr,
        "GET",
        "/api/v1/namespaces/default/services/bad",
        "application/json",
        b"",
    );
    assert!(ingress(&bad).is_empty(), "{bad}");
    let files = std::fs::read_dir(fleet_dir()).expect("dir").count();
    assert_eq!(files, 3, "one balancer's config, status and log only");

    // The server dies (SIGKILL); the balancer, like an NLB, keeps running, and the restarted
    // controller takes it over instead of starting a second one.
    let pids = our_balancers();
    assert_eq!(pids.len(), 1, "{pids:?}");
    server.kill();
    server = ServerProc::start(dir.path(), &flags);

    // A node in zone b: a second address, added by the running balancer on SIGHUP.
    node(&server, "b-1", "b", "172.20.1.11");
    until("the second address", || {
        ingress(&service(&server).1) == ["172.20.251.16", "172.20.251.17"]
            && in_ns(&["ip", "-4", "addr", "show", "dev", "lo"]).contains("172.20.251.17/32")
    });
    assert_eq!(our_balancers(), pids, "the same balancer process, reloaded");
    until("both nodes' targets in the table", || {
        let rules = in_ns(&["nft", "list", "table", "ip", &table]);
        rules.contains("172.20.1.11") && rules.contains("172.20.0.11")
    });

    let (code, _) = http(
        &server.addr,
        "DELETE",
        "/api/v1/namespaces/default/services/web",
        "application/json",
        b"",
    );
    assert_eq!(code, 200);
    until("the Service to go", || service(&server).0 == 404);
    // The finalizer went only after the balancer was torn down.
    assert!(!in_ns(&["nft", "list", "tables"]).contains(&table));
    assert!(!in_ns(&["ip", "-4", "addr", "show", "dev", "lo"]).contains("172.20.251.16"));
    assert!(our_balancers().is_empty(), "the balancer process is gone");
}
