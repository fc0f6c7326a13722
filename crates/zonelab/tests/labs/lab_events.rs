//! Integration test (root, network namespaces): in a 2-zone x 2-node lab (fast profile), a
//! Deployment is scaled and a node powered off; the upstream Events of the controllers, the
//! scheduler and the kubelets are then found through the API with the right involvedObject:
//! ScalingReplicaSet, SuccessfulCreate, Scheduled, Pulled/Created/Started, NodeNotReady (node
//! and pods), TaintManagerEviction, and Killing on a scale-down. Reported as ignored without root (see build.rs), failing under CI;
//! the lab is taken down by a guard, even on panic.

use crate::common;

use std::time::{Duration, Instant};

use common::lab::LabGuard;
use serde_json::Value;

const PREFIX: &str = "zlev";
const API_PORT: u16 = 16473;

type Seen = (String, String, String, Value);

/// (kind/name, reason, message, the Event) of every Event in `default`.
fn events(g: &LabGuard) -> Vec<Seen> {
    g.json(&["get", "events", "-n", "default"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let obj = format!(
                "{}/{}",
                e["involvedObject"]["kind"].as_str().unwrap_or(""),
                e["involvedObject"]["name"].as_str().unwrap_or("")
            );
            let reason = e["reason"].as_str().unwrap_or("").to_string();
            let msg = e["message"].as_str().unwrap_or("").to_string();
            (obj, reason, msg, e)
        })
        .collect()
}

/// Wait (bounded) until `want` holds for the events.
fn wait_events(
    g: &LabGuard,
    what: &str,
    limit: Duration,
    want: impl Fn(&[Seen]) -> bool,
) -> Vec<Seen> {
    let start = Instant::now();
    loop {
        let evs = events(g);
        if want(&evs) {
            return evs;
        }
        if start.elapsed() > limit {
            let seen: Vec<_> = evs.iter().map(|(o, r, m, _)| (o, r, m)).collect();
            panic!("no {what} within {limit:?}; events: {seen:#?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: echo
        image: zonelab/echo
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
"#;

fn count(evs: &[(String, String, String, Value)], reason: &str) -> usize {
    evs.iter().filter(|(_, r, _, _)| r == reason).count()
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn scale_and_node_power_off_record_upstream_events() {
    netlab::preflight::require_for_test(&netlab::preflight::lab_test_tools());
    let state = tempfile::tempdir().expect("state dir");
    let g = LabGuard {
        prefix: PREFIX.to_string(),
        state: state.path().to_path_buf(),
    };
    let up = g.lab(&[
        "up",
        "--zones",
        "2",
        "--nodes-per-zone",
        "2",
        "--profile",
        "fast",
        "--api-port",
        &API_PORT.to_string(),
        "--wait",
        "90s",
    ]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    g.kubectl(&["apply", "-f", "-"], Some(APP));
    let evs = wait_events(&g, "pods started", Duration::from_secs(90), |e| {
        count(e, "Started") >= 2 && count(e, "Scheduled") >= 2
    });
    // Kubelet events name the container and come from the pod's node.
    let (obj, _, msg, started) = evs.iter().find(|(_, r, _, _)| r == "Started").unwrap();
    assert!(obj.starts_with("Pod/web-"), "{obj}");
    assert_eq!(msg, "Started container echo");
    assert_eq!(
        started["involvedObject"]["fieldPath"],
        "spec.containers{echo}"
    );
    assert_eq!(started["source"]["component"], "kubelet");
    let host = started["source"]["host"].as_str().unwrap_or("").to_string();
    let pod = obj.trim_start_matches("Pod/").to_string();
    let placed = g.json(&["get", "pod", &pod]);
    assert_eq!(placed["spec"]["nodeName"], host.as_str());
    assert_eq!(started["involvedObject"]["uid"], placed["metadata"]["uid"]);
    assert!(count(&evs, "Pulled") >= 2 && count(&evs, "Created") >= 2);
    assert!(count(&evs, "RegisteredNode") >= 4, "one per node");

    g.kubectl(&["scale", "deployment", "web", "--replicas", "4"], None);
    let evs = wait_events(&g, "the scale-up", Duration::from_secs(60), |e| {
        e.iter().any(|(o, r, m, _)| {
            o == "Deployment/web" && r == "ScalingReplicaSet" && m.ends_with(" from 2 to 4")
        }) && count(e, "SuccessfulCreate") >= 4
            && count(e, "Started") >= 4
    });
    let (obj, _, _, _) = evs
        .iter()
        .find(|(_, r, _, _)| r == "SuccessfulCreate")
        .unwrap();
    assert!(obj.starts_with("ReplicaSet/web-"), "{obj}");

    // Every pod Ready first: the node controller's "Node is not ready" goes (as upstream) only
    // to pods whose Ready condition it turns False.
    let start = Instant::now();
    loop {
        let pods = g.json(&["get", "pods", "-l", "app=web"]);
        let ready = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        if ready == 4 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{ready}/4 pods Ready"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Power off the node of one pod: the node controller reports it, the taint eviction
    // controller evicts its pods after the (fast) toleration, replacements start elsewhere.
    let fail = g.lab(&["fail", "node", &host, "--mode", "power"]);
    assert!(
        fail.status.success(),
        "fail: {}",
        String::from_utf8_lossy(&fail.stderr)
    );
    let node_obj = format!("Node/{host}");
    let pod_obj = format!("Pod/{pod}");
    let evs = wait_events(&g, "node failure events", Duration::from_secs(120), |e| {
        e.iter()
            .any(|(o, r, _, _)| o == &node_obj && r == "NodeNotReady")
            && e.iter().any(|(o, r, m, _)| {
                o == &pod_obj && r == "NodeNotReady" && m == "Node is not ready"
            })
            && e.iter()
                .any(|(o, r, _, _)| o == &pod_obj && r == "TaintManagerEviction")
    });
    let (_, _, msg, ev) = evs
        .iter()
        .find(|(o, r, _, _)| o == &pod_obj && r == "TaintManagerEviction")
        .unwrap();
    assert_eq!(msg, &format!("Marking for deletion Pod default/{pod}"));
    assert_eq!(ev["source"]["component"], "taint-eviction-controller");
    let (_, _, msg, ev) = evs
        .iter()
        .find(|(o, r, _, _)| o == &node_obj && r == "NodeNotReady")
        .unwrap();
    assert_eq!(msg, &format!("Node {host} status is now: NodeNotReady"));
    assert_eq!(ev["source"]["component"], "node-controller");

    // Scale down: the kubelets stop the surplus containers.
    g.kubectl(&["scale", "deployment", "web", "--replicas", "1"], None);
    let evs = wait_events(&g, "Killing on scale-down", Duration::from_secs(60), |e| {
        count(e, "Killing") >= 1 && count(e, "SuccessfulDelete") >= 1
    });
    let (_, _, msg, ev) = evs.iter().find(|(_, r, _, _)| r == "Killing").unwrap();
    assert_eq!(msg, "Stopping container echo");
    assert_eq!(ev["involvedObject"]["fieldPath"], "spec.containers{echo}");
}
