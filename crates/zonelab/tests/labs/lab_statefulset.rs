//! Integration test (root, network namespaces): a StatefulSet of 3 in a real lab starts in
//! order; powering off the node of `web-1` leaves `web-1` Terminating (evicted by the taint
//! eviction controller, never confirmed by its dead kubelet) and not replaced — the upstream
//! trap — until `kubectl delete pod web-1 --force --grace-period=0`, after which it is recreated
//! on a live node and becomes Ready. The headless Service gets no kube-proxy rules while a
//! ClusterIP Service over the same pods does. Ignored without root; the lab (prefix `zq<pid>`)
//! is taken down by a guard, even on panic.

use crate::common;

use std::time::{Duration, Instant};

use common::lab::LabGuard;
use serde_json::Value;

const APP: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web-cip
spec:
  selector:
    app: web
  ports:
  - port: 8080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 2
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                app: web
      containers:
      - name: echo
        image: zonelab/echo
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet:
            path: /healthz
            port: 8080
          periodSeconds: 1
"#;

/// Poll (bounded, 240 s) until `f` yields a value.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn pod(g: &LabGuard, name: &str) -> Option<Value> {
    let out = g.kubectl_run(&["get", "pod", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("pod json"))
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn created_at(p: &Value) -> String {
    p["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn statefulset_pod_on_a_dead_node_waits_for_force_delete() {
    netlab::preflight::require_for_test(&netlab::preflight::lab_test_tools());
    let state = tempfile::tempdir().expect("state dir");
    let g = LabGuard {
        prefix: format!("zq{}", std::process::id() % 1000),
        state: state.path().to_path_buf(),
    };
    let port = (21000 + std::process::id() % 1000).to_string();
    let up = g.lab(&[
        "up",
        "--zones",
        "2",
        "--nodes-per-zone",
        "2",
        "--api-port",
        &port,
        "--profile",
        "fast",
        "--wait",
        "90s",
    ]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    g.kubectl(&["apply", "-f", "-"], Some(APP));

    // Ordered start: all three Ready, each created after the previous one was Ready.
    let pods: Vec<Value> = wait_for("3 ready pods", || {
        let ps: Vec<Value> = ["web-0", "web-1", "web-2"]
            .iter()
            .filter_map(|n| pod(&g, n))
            .filter(ready)
            .collect();
        (ps.len() == 3).then_some(ps)
    });
    let ready_at = |p: &Value| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or("")
            .to_string()
    };
    for i in 1..3 {
        assert!(
            created_at(&pods[i]) >= ready_at(&pods[i - 1]),
            "web-{i} created {} before web-{} was Ready {}",
            created_at(&pods[i]),
            i - 1,
            ready_at(&pods[i - 1])
        );
    }
    let sts = g.json(&["get", "sts", "web"]);
    assert_eq!(sts["status"]["readyReplicas"], 3, "{}", sts["status"]);
    let node = pods[1]["spec"]["nodeName"].as_str().unwrap().to_string();

    // kube-proxy: rules for the ClusterIP Service, none for the headless one.
    let ruleset = wait_for("web-cip in kube-proxy's table", || {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &node,
                "nft",
                "list",
                "table",
                "ip",
                "kube-proxy",
            ])
            .output()
            .expect("ip netns exec nft");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("default/web-cip/tcp").then_some(text)
    });
    assert!(!ruleset.contains("default/web/tcp"), "{ruleset}");
    let uid = pods[1]["metadata"]["uid"].as_str().unwrap().to_string();

    // Power off web-1's node: eviction marks web-1 for deletion; nobody confirms it.
    let off = g.lab(&["fail", "node", &node, "--mode", "power"]);
    assert!(
        off.status.success(),
        "fail node: {}",
        String::from_utf8_lossy(&off.stderr)
    );
    let held = wait_for("web-1 Terminating", || {
        pod(&g, "web-1").filter(|p| p["metadata"]["deletionTimestamp"].is_string())
    });
    assert_eq!(held["metadata"]["uid"], uid.as_str());
    // It stays: ten more looks over 10+ s find the same object, still on the dead node, and
    // the StatefulSet one Ready pod short.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(1));
        let p = pod(&g, "web-1").expect("web-1 must not disappear by itself");
        assert_eq!(p["metadata"]["uid"], uid.as_str(), "web-1 was replaced");
        assert_eq!(p["spec"]["nodeName"], node.as_str());
    }
    let table = g.kubectl(&["get", "pod", "web-1"], None);
    assert!(table.contains("Terminating"), "{table}");
    let sts = g.json(&["get", "sts", "web"]);
    assert_eq!(sts["status"]["readyReplicas"], 2, "{}", sts["status"]);

    // Force delete: gone at once, recreated under the same name on a live node, Ready.
    let forced = g.kubectl_run(&["delete", "pod", "web-1", "--force", "--grace-period=0"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let again = wait_for("web-1 recreated and Ready", || {
        pod(&g, "web-1").filter(|p| p["metadata"]["uid"] != uid.as_str() && ready(p))
    });
    assert_ne!(again["spec"]["nodeName"], node.as_str());
    wait_for("readyReplicas 3", || {
        let s = g.json(&["get", "sts", "web"]);
        (s["status"]["readyReplicas"] == 3).then_some(())
    });
}
