//! Integration test (root, network namespaces): an ordinary Deployment with a real image name
//! (`nginx:1.25`, containerPort 80, an httpGet readiness probe) in a lab becomes Ready through
//! its own probe against the `zonelab/echo` stand-in and answers through its ClusterIP; the
//! kubelet records the `StandIn` Event and annotation; `kubectl logs` (stock kubectl 1.27 and
//! 1.33) shows the stand-in's access log, with `--tail`, `-f` (bounded), `--previous`, `-c`,
//! upstream's errors for a multi-container pod and for a pod on a powered-off node. Reported
//! as ignored without root (see build.rs); the lab is taken down by a guard, even on panic.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::lab::LabGuard;
use serde_json::Value;

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

const APP: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
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
      containers:
      - name: nginx
        image: nginx:1.25
        ports: [{containerPort: 80}]
        readinessProbe: {httpGet: {path: /index.html, port: 80}, periodSeconds: 1}
        livenessProbe: {exec: {command: [cat, /usr/share/nginx/html/index.html]}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: multi}
spec:
  containers:
  - {name: a, image: redis:7, ports: [{containerPort: 6379}]}
  - {name: b, image: busybox, command: [sh, -c, 'echo run-$(date +%s%N); sleep 1; exit 1']}
"#;

fn client_pod(node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: busybox, command: [sleep, \"600\"]}}]\n"
    )
}

/// The versioned kubectl binaries next to the `kubectl` dispatcher.
fn kubectl_binaries() -> Vec<String> {
    let o = Command::new("sh")
        .args(["-c", "dirname \"$(readlink -f \"$(command -v kubectl)\")\""])
        .output()
        .expect("sh");
    let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
    ["1.27", "1.33"]
        .iter()
        .map(|v| format!("{dir}/kubectl.{v}"))
        .filter(|p| std::path::Path::new(p).exists())
        .collect()
}

fn kubectl_with(g: &LabGuard, bin: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .env("KUBECONFIG", g.state.join(&g.prefix).join("kubeconfig"))
        .args(args)
        .output()
        .expect("kubectl")
}

fn ok_stdout(bin: &str, args: &[&str], o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kubectl logs -f`: the lines it prints until `want` shows up (bounded), then it is killed.
fn follow_until(g: &LabGuard, bin: &str, pod: &str, want: &str, poke: &dyn Fn()) -> Vec<String> {
    let mut child = Command::new(bin)
        .env("KUBECONFIG", g.state.join(&g.prefix).join("kubeconfig"))
        .args(["logs", "-f", "--tail=1", pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !lines.iter().any(|l: &String| l.contains(want)) {
        poke();
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn a_real_image_runs_as_a_stand_in_with_logs() {
    netlab::preflight::require_for_test(&netlab::preflight::lab_test_tools());
    let prefix = format!("zw{}", std::process::id() % 1000);
    let api_port = 20000 + (std::process::id() % 1000) as u16;
    let state = tempfile::tempdir().expect("state dir");
    let g = LabGuard {
        prefix: prefix.clone(),
        state: state.path().to_path_buf(),
    };
    let up = g.lab(&[
        "up",
        "--zones",
        "1",
        "--nodes-per-zone",
        "2",
        "--api-port",
        &api_port.to_string(),
        "--wait",
        "60s",
    ]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let nodes: Vec<String> = g.json(&["get", "nodes"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    g.kubectl(&["apply", "-f", "-"], Some(APP));
    g.kubectl(&["apply", "-f", "-"], Some(&client_pod(&nodes[0])));

    // Ready through its own readiness probe, against the stand-in.
    let web_pods = wait_for("2 ready nginx pods", Duration::from_secs(60), || {
        let pods = g.json(&["get", "pods", "-l", "app=web"]);
        let ready: Vec<String> = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        (ready.len() == 2).then_some(ready)
    });
    wait_for("a running client", Duration::from_secs(60), || {
        let p = g.json(&["get", "pod", "client"]);
        (p["status"]["phase"] == "Running").then_some(())
    });
    let pod: Value = g.json(&["get", "pod", &web_pods[0]]);
    assert_eq!(
        pod["metadata"]["annotations"]["zonelab.io/stand-in"], "nginx=nginx:1.25",
        "{pod}"
    );
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    let events = g.kubectl(
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={},reason=StandIn", web_pods[0]),
            "-o",
            "jsonpath={.items[*].message}",
        ],
        None,
    );
    assert_eq!(
        events.trim(),
        "image nginx:1.25 runs as the zonelab/echo stand-in on ports 80"
    );
    let describe = g.kubectl(&["describe", "pod", &web_pods[0]], None);
    for reason in ["StandIn", "Pulled", "Created", "Started"] {
        assert!(
            describe.contains(reason),
            "describe lacks {reason}: {describe}"
        );
    }

    // It answers through its ClusterIP, as the pod that served it.
    let cip = g.kubectl(
        &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"],
        None,
    );
    std::thread::sleep(Duration::from_secs(1)); // every proxy has synced (min sync 100 ms)
    let recs = g.load(
        "client",
        &format!("http://{cip}/"),
        20,
        "1s",
        &state.path().join("web.jsonl"),
    );
    assert!(!recs.is_empty());
    for r in &recs {
        assert_eq!(r["outcome"], "ok", "{r}");
        assert!(web_pods.iter().any(|p| r["pod"] == p.as_str()), "{r}");
    }

    let bins = kubectl_binaries();
    assert_eq!(
        bins.len(),
        2,
        "kubectl.1.27 and kubectl.1.33 next to kubectl"
    );
    let poke = || {
        g.load(
            "client",
            &format!("http://{cip}/after"),
            10,
            "300ms",
            &state.path().join("poke.jsonl"),
        );
    };
    for bin in &bins {
        let args = ["logs", web_pods[0].as_str()];
        let all = ok_stdout(bin, &args, &kubectl_with(&g, bin, &args));
        assert!(
            all.lines()
                .next()
                .is_some_and(|l| l.contains("standing in for nginx:1.25 on ports [80]")),
            "{bin}: {all}"
        );
        assert!(
            all.contains("\"GET /index.html HTTP/1.1\" 200") && all.contains("kube-probe/"),
            "{bin}: the probes' requests are logged: {all}"
        );
        let args = ["logs", "--since=1h", web_pods[0].as_str()];
        let since = ok_stdout(bin, &args, &kubectl_with(&g, bin, &args));
        assert!(
            since.starts_with(&all),
            "{bin}: --since=1h keeps every line: {since}"
        );
        let args = ["logs", "--tail=1", "--timestamps", web_pods[0].as_str()];
        let tail = ok_stdout(bin, &args, &kubectl_with(&g, bin, &args));
        assert_eq!(tail.lines().count(), 1, "{bin}: {tail}");
        assert!(tail.starts_with("20"), "{bin}: a timestamp first: {tail}");
        // -f shows requests made after it started; then it is stopped.
        let followed = follow_until(&g, bin, &web_pods[0], "GET /after", &poke);
        let followed2 = if followed.iter().any(|l| l.contains("GET /after")) {
            followed
        } else {
            follow_until(&g, bin, &web_pods[1], "GET /after", &poke)
        };
        assert!(
            followed2.iter().any(|l| l.contains("GET /after")),
            "{bin}: -f: {followed2:?}"
        );
    }

    // The redis:7 stand-in of the two-container pod serves its own port.
    let multi_ip = g.kubectl(
        &["get", "pod", "multi", "-o", "jsonpath={.status.podIP}"],
        None,
    );
    let recs = g.load(
        "client",
        &format!("http://{multi_ip}:6379/"),
        5,
        "200ms",
        &state.path().join("redis.jsonl"),
    );
    assert!(
        !recs.is_empty()
            && recs
                .iter()
                .all(|r| r["outcome"] == "ok" && r["pod"] == "multi"),
        "{recs:?}"
    );

    // --previous of a restarting container, -c, and upstream's errors.
    wait_for("a restarted container b", Duration::from_secs(60), || {
        let p = g.json(&["get", "pod", "multi"]);
        let n = p["status"]["containerStatuses"][1]["restartCount"].as_i64()?;
        (n >= 1).then_some(())
    });
    for bin in &bins {
        let args = ["logs", "multi", "-c", "b", "--previous"];
        let prev = ok_stdout(bin, &args, &kubectl_with(&g, bin, &args));
        assert!(prev.starts_with("run-"), "{bin}: {prev}");
        let args = ["logs", "multi", "-c", "nope"];
        let o = kubectl_with(&g, bin, &args);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("container nope is not valid for pod multi"),
            "{bin}: {err}"
        );
    }
    let raw = g.kubectl_run(&["get", "--raw", "/api/v1/namespaces/default/pods/multi/log"]);
    let err = String::from_utf8_lossy(&raw.stderr);
    assert!(
        err.contains("a container name must be specified for pod multi, choose one of: [a b]"),
        "{err}"
    );

    // A pod on a powered-off node: upstream's dial error (after its 30 s dial timeout),
    // through the node's address.
    let victim = &web_pods[0];
    let node = g.kubectl(
        &["get", "pod", victim, "-o", "jsonpath={.spec.nodeName}"],
        None,
    );
    let ip = g.kubectl(
        &[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
        ],
        None,
    );
    let fail = g.lab(&["fail", "node", &node, "--mode", "power"]);
    assert!(
        fail.status.success(),
        "{}",
        String::from_utf8_lossy(&fail.stderr)
    );
    let o = g.kubectl_run(&["logs", victim]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("kubectl logs of a pod on the powered-off node: {err}");
    assert!(
        err.contains(&format!(
            "Error from server: Get \"http://{ip}:10250/containerLogs/default/{victim}/nginx\": dial tcp {ip}:10250: i/o timeout"
        )),
        "{err}"
    );
}
