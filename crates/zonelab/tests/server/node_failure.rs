//! Black-box, through stock kubectl: a node whose Lease stops being renewed turns
//! `Ready=Unknown`, its pods turn not Ready, and their endpoints turn `ready=false` — in that
//! order and at the configured timers (`--node-monitor-grace-period 4s --node-monitor-period 1s`).

use crate::common;

use std::time::{Duration, Instant};

use common::{Kubectl, ServerProc};
use serde_json::Value;

const GRACE_S: i64 = 4;
const PERIOD_S: i64 = 1;

fn now_rfc3339_micro() -> String {
    // kubectl and the API carry MicroTime for lease renewals.
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn parse_secs(ts: &str) -> f64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", ts, "+%s.%N"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

fn json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&all, None)).expect("kubectl json")
}

/// Poll (bounded) until `f` returns Some.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

#[test]
fn silent_node_goes_unknown_then_pods_then_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(
        dir.path(),
        &[
            "--node-monitor-grace-period",
            "4s",
            "--node-monitor-period",
            "1s",
        ],
    );
    let k = Kubectl::new(&server);
    let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","labels":{"topology.kubernetes.io/zone":"a","kubernetes.io/hostname":"n1"}},
      "status":{"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},
      "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}]}}"#;
    k.ok(&["create", "-f", "-"], Some(node));
    let lease = format!(
        r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{{"name":"n1","namespace":"kube-node-lease"}},
        "spec":{{"holderIdentity":"n1","leaseDurationSeconds":40,"renewTime":"{}"}}}}"#,
        now_rfc3339_micro()
    );
    k.ok(&["create", "-f", "-"], Some(&lease));
    let app = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: echo, image: zonelab/echo, ports: [{containerPort: 8080}]}]
"#;
    k.ok(&["apply", "-f", "-"], Some(app));

    // The scheduler binds both pods to n1; we play kubelet and report them Running and Ready.
    let pods: Vec<String> = wait_for("2 bound pods", Duration::from_secs(30), || {
        let list = json(&k, &["get", "pods", "-l", "app=web"]);
        let items = list["items"].as_array()?;
        let bound: Vec<String> = items
            .iter()
            .filter(|p| p["spec"]["nodeName"] == "n1")
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        (bound.len() == 2).then_some(bound)
    });
    for (i, pod) in pods.iter().enumerate() {
        let status = format!(
            r#"{{"status":{{"phase":"Running","podIP":"10.244.1.{}","podIPs":[{{"ip":"10.244.1.{}"}}],"conditions":[{{"type":"Ready","status":"True"}},{{"type":"ContainersReady","status":"True"}}]}}}}"#,
            i + 10,
            i + 10
        );
        k.ok(
            &[
                "patch",
                "pod",
                pod,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ],
            None,
        );
    }
    wait_for("2 ready endpoints", Duration::from_secs(30), || {
        let slices = json(
            &k,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
            ],
        );
        let ready = slices["items"]
            .as_array()?
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count();
        (ready == 2).then_some(())
    });

    // Renew by hand three times, then stop.
    let mut last_renew = String::new();
    for _ in 0..3 {
        last_renew = now_rfc3339_micro();
        let patch = format!(r#"{{"spec":{{"renewTime":"{last_renew}"}}}}"#);
        k.ok(
            &[
                "patch",
                "lease",
                "n1",
                "-n",
                "kube-node-lease",
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let stopped = parse_secs(&last_renew);

    let node_unknown = wait_for("node Ready=Unknown", Duration::from_secs(30), || {
        let n = json(&k, &["get", "node", "n1"]);
        let c = condition(&n, "Ready")?;
        (c["status"] == "Unknown")
            .then(|| parse_secs(c["lastTransitionTime"].as_str().unwrap_or("")))
    });
    let detection = node_unknown - stopped;
    assert!(
        detection >= (GRACE_S - 1) as f64 && detection <= (GRACE_S + PERIOD_S + 2) as f64,
        "node went Unknown {detection:.1}s after the last renewal (grace {GRACE_S}s, period {PERIOD_S}s)"
    );

    let pods_not_ready = wait_for("pods not Ready", Duration::from_secs(30), || {
        let list = json(&k, &["get", "pods", "-l", "app=web"]);
        let times: Vec<f64> = list["items"]
            .as_array()?
            .iter()
            .filter_map(|p| {
                let c = condition(p, "Ready")?;
                (c["status"] == "False")
                    .then(|| parse_secs(c["lastTransitionTime"].as_str().unwrap_or("")))
            })
            .collect();
        (times.len() == 2).then(|| times.into_iter().fold(0.0, f64::max))
    });
    assert!(
        pods_not_ready >= node_unknown - 1.0,
        "pods went not-ready before the node went Unknown"
    );
    assert!(
        pods_not_ready - node_unknown <= 2.0,
        "pods were not marked in the same pass"
    );

    wait_for("endpoints ready=false", Duration::from_secs(30), || {
        let slices = json(
            &k,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
            ],
        );
        let eps: Vec<Value> = slices["items"]
            .as_array()?
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .collect();
        (eps.len() == 2 && eps.iter().all(|e| e["conditions"]["ready"] == false)).then_some(())
    });
    // The taint follows, so no new pod lands there.
    let n = json(&k, &["get", "node", "n1"]);
    let taints: Vec<&str> = n["spec"]["taints"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x["key"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        taints.contains(&"node.kubernetes.io/unreachable"),
        "{taints:?}"
    );
}
