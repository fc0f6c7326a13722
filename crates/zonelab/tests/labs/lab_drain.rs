//! Integration test (root, network namespaces): `kubectl drain` of a real lab node, whose
//! kubelet stops the evicted pods, against a PodDisruptionBudget that first allows, then
//! blocks (429 while the replacement is Pending), then allows again once the replacement runs.
//! Skips (with a message) without root or without `ip`/`nft`/`kubectl`. The lab is taken down
//! by a guard, even on panic.

use crate::common;

use std::time::{Duration, Instant};

use common::lab::LabGuard;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 2
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
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
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  selector:
    matchLabels:
      app: web
"#;

fn wait_for(g: &LabGuard, what: &str, args: &[&str], want: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = g.kubectl_run(args);
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last saw {got:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn drain(g: &LabGuard, node: &str, timeout: &str) -> (bool, String) {
    let t = format!("--timeout={timeout}");
    let out = g.kubectl_run(&[
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        &t,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn drain_of_a_lab_node_honours_the_disruption_budget() {
    netlab::preflight::require_for_test(&netlab::preflight::lab_test_tools());
    let state = tempfile::tempdir().expect("state dir");
    let g = LabGuard {
        prefix: format!("zd{}", std::process::id() % 1000),
        state: state.path().to_path_buf(),
    };
    let port = (18000 + std::process::id() % 1000).to_string();
    let up = g.lab(&[
        "up",
        "--zones",
        "1",
        "--nodes-per-zone",
        "2",
        "--api-port",
        &port,
        "--profile",
        "fast",
        "--wait",
        "60s",
    ]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let (n1, n2) = (format!("{}-a-1", g.prefix), format!("{}-a-2", g.prefix));
    g.kubectl(&["apply", "-f", "-"], Some(APP));
    let allowed = [
        "get",
        "pdb",
        "web",
        "-o",
        "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}",
    ];
    wait_for(&g, "both pods ready", &allowed, "2/1");
    let on = |node: &str| {
        let sel = format!("spec.nodeName={node}");
        let out = g.kubectl(
            &["get", "pods", "--field-selector", &sel, "-o", "name"],
            None,
        );
        out.lines().count()
    };
    assert_eq!((on(&n1), on(&n2)), (1, 1), "one pod per node (spread)");

    // One disruption allowed: the first node drains; its kubelet stops the pod.
    let (ok, text) = drain(&g, &n1, "60s");
    assert!(ok, "drain {n1}: {text}");
    assert!(text.contains(&format!("node/{n1} drained")), "{text}");
    assert_eq!(on(&n1), 0);
    // The replacement cannot go anywhere (spread, n1 cordoned): nothing more may go.
    wait_for(&g, "budget exhausted", &allowed, "1/0");
    let (ok, text) = drain(&g, &n2, "8s");
    assert!(!ok, "drain {n2} finished against the budget: {text}");
    assert!(
        text.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{text}"
    );
    assert_eq!(on(&n2), 1, "the budget kept the pod");
    // Uncordon: the replacement runs on n1, the budget allows again, n2 drains.
    g.kubectl(&["uncordon", &n1], None);
    wait_for(&g, "replacement ready", &allowed, "2/1");
    let (ok, text) = drain(&g, &n2, "60s");
    assert!(ok, "drain {n2}: {text}");
    assert_eq!(on(&n2), 0);
}
