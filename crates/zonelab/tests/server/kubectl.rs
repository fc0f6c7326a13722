//! Stock kubectl (v1.32) against a real `zonelab server`, as a user would drive it.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{Kubectl, ServerProc};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: echo
        image: zonelab/echo
        ports:
        - containerPort: 8080
          name: http
"#;

fn in_service_range(ip: &str) -> bool {
    let ip: Ipv4Addr = ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let o = ip.octets();
    o[0] == 10 && (96..112).contains(&o[1])
}

#[test]
fn kubectl_apply_get_watch_patch_scale_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let k = Kubectl::new(&server);

    let out = k.ok(&["apply", "-f", "-"], Some(MANIFEST));
    assert!(out.contains("service/web created"), "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");

    // The ClusterIP was allocated in range and kubectl's table shows it.
    let ip = k.ok(
        &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"],
        None,
    );
    assert!(
        in_service_range(&ip),
        "clusterIP {ip:?} not in 10.96.0.0/12"
    );
    let wide = k.ok(&["get", "svc", "-o", "wide"], None);
    let header = wide.lines().next().unwrap_or("");
    for col in [
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
        "SELECTOR",
    ] {
        assert!(header.contains(col), "missing {col} in {header:?}");
    }
    let row = wide
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{wide}"));
    assert!(
        row.contains(&ip) && row.contains("80/TCP") && row.contains("app=web"),
        "{row}"
    );
    let kubernetes = wide
        .lines()
        .find(|l| l.starts_with("kubernetes "))
        .unwrap_or_else(|| panic!("{wide}"));
    assert!(kubernetes.contains("10.96.0.1 "), "{kubernetes}");

    let yaml = k.ok(&["get", "deploy", "web", "-o", "yaml"], None);
    assert!(yaml.contains("replicas: 3"), "{yaml}");
    assert!(
        yaml.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{yaml}"
    );

    // A watch sees a change made while it runs.
    let mut watch = k
        .command()
        .args(["get", "svc", "web", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("initial watch line");
    assert!(first.contains("EVENT") || first.contains("web"), "{first}");
    let out = k.ok(
        &[
            "patch",
            "svc",
            "web",
            "-p",
            r#"{"metadata":{"labels":{"tier":"front"}}}"#,
        ],
        None,
    );
    assert!(out.contains("service/web patched"), "{out}");
    let mut saw_modified = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if line.contains("MODIFIED") && line.contains("web") {
            saw_modified = true;
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(saw_modified, "kubectl get -w did not show the patch");
    let labels = k.ok(
        &[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.metadata.labels.tier}",
        ],
        None,
    );
    assert_eq!(labels, "front");

    // JSON patch and merge patch types too.
    k.ok(
        &[
            "patch",
            "svc",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/annotations","value":{"a":"b"}}]"#,
        ],
        None,
    );
    k.ok(
        &[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReadySeconds":2}}"#,
        ],
        None,
    );
    assert_eq!(
        k.ok(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.minReadySeconds}"
            ],
            None
        ),
        "2"
    );

    let out = k.ok(&["scale", "deploy", "web", "--replicas=5"], None);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    assert_eq!(
        k.ok(
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
            None
        ),
        "5"
    );

    // Re-apply with a change: a three-way merge that keeps the clusterIP.
    let changed = MANIFEST
        .replace("replicas: 3", "replicas: 2")
        .replace("targetPort: 8080", "targetPort: http");
    let out = k.ok(&["apply", "-f", "-"], Some(&changed));
    assert!(out.contains("service/web configured"), "{out}");
    assert_eq!(
        k.ok(
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
            None
        ),
        "2"
    );
    assert_eq!(
        k.ok(
            &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"],
            None
        ),
        ip
    );
    assert_eq!(
        k.ok(
            &[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.spec.ports[0].targetPort}"
            ],
            None
        ),
        "http"
    );

    // create of an existing object fails with upstream's text and changes nothing.
    let err = k.fails(&["create", "-f", "-"], Some(MANIFEST));
    assert!(err.contains("services \"web\" already exists"), "{err}");

    let out = k.ok(&["delete", "-f", "-"], Some(MANIFEST));
    assert!(out.contains("service \"web\" deleted"), "{out}");
    let err = k.fails(&["get", "svc", "web"], None);
    assert!(
        err.contains("Error from server (NotFound): services \"web\" not found"),
        "{err}"
    );
}

#[test]
fn kubectl_create_get_nodes_pods_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let k = Kubectl::new(&server);
    let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","labels":{"topology.kubernetes.io/zone":"a"}},
      "status":{"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":null,"lastTransitionTime":null}]}}"#;
    let out = k.ok(&["create", "-f", "-"], Some(node));
    assert!(out.contains("node/n1 created"), "{out}");
    let nodes = k.ok(&["get", "nodes", "-L", "topology.kubernetes.io/zone"], None);
    assert!(
        nodes.lines().next().unwrap_or("").contains("STATUS"),
        "{nodes}"
    );
    assert!(nodes.contains("n1") && nodes.contains("Ready"), "{nodes}");

    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: zonelab/echo\n";
    k.ok(&["create", "-f", "-"], Some(pod));
    let pods = k.ok(&["get", "pods"], None);
    assert!(pods.contains("p ") && pods.contains("Pending"), "{pods}");
    // The default tolerations were added by admission.
    let tol = k.ok(
        &[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.spec.tolerations[*].key}",
        ],
        None,
    );
    assert!(
        tol.contains("node.kubernetes.io/not-ready")
            && tol.contains("node.kubernetes.io/unreachable"),
        "{tol}"
    );

    // Strict field validation is done by the server when kubectl asks for it.
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  portz: []\n  ports:\n  - port: 80\n";
    let err = k.fails(&["create", "-f", "-"], Some(bad));
    assert!(err.contains("unknown field \"spec.portz\""), "{err}");
    let err = k.fails(&["get", "svc", "bad"], None);
    assert!(err.contains("NotFound"), "{err}");

    let explain = k.ok(&["explain", "service.spec.clusterIP"], None);
    assert!(explain.contains("clusterIP"), "{explain}");
}
