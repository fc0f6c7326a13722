//! Integration test (root, network namespaces): NodePort traffic from outside the nodes
//! through the real agents' kube-proxy rules, in both proxy modes. A 2-zone x 1-node lab, one
//! echo pod pinned to the first node, a NodePort Service (`externalTrafficPolicy: Cluster`)
//! and a LoadBalancer Service (`Local`); the client is the lab's router namespace, which is
//! outside every node and the pod network:
//!
//! - Cluster policy: either node's NodePort reaches the backend; through the node without it
//!   the backend sees that node's address (masqueraded);
//! - Local policy: the node with the pod answers and the backend sees the client's own
//!   address; the other node drops the connection (the client times out);
//! - the health check node port answers 200 with `localEndpoints: 1` on the first node and
//!   503 with `localEndpoints: 0` on the other, with upstream's headers;
//! - a load-balancer IP written into the Service's status and routed (in the router) to the
//!   node with the endpoint is served with the client's address kept; routed to the other
//!   node it is dropped.
//!
//! Prefixes `np<pid>` / `nq<pid>`. Reported as ignored without root or the tools (see
//! build.rs); under CI it fails instead. Every lab is taken down by a guard, even on panic.

use crate::common;

use std::process::Command;
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

/// The load-balancer address written into `status.loadBalancer.ingress` (TEST-NET-1).
const LB_IP: &str = "192.0.2.10";

fn app(node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web-cluster}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-local}}
spec:
  type: LoadBalancer
  # Not the lab's load-balancer controller's class: this test plays the external LB itself.
  loadBalancerClass: example.com/test
  externalTrafficPolicy: Local
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeName: {node}
      containers:
      - name: echo
        image: zonelab/echo
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1}}
"#
    )
}

/// One GET from the router namespace: `{"code", "headers", "body"}` (header names lower-cased)
/// or `{"error"}`.
fn get_from_router(router: &str, url: &str) -> Value {
    let py = format!(
        r#"
import json, urllib.request, urllib.error, socket
try:
    r = urllib.request.urlopen('{url}', timeout=2)
    print(json.dumps({{"code": r.status, "headers": {{k.lower(): v for k, v in r.headers.items()}}, "body": r.read().decode()}}))
except urllib.error.HTTPError as e:
    print(json.dumps({{"code": e.code, "headers": {{k.lower(): v for k, v in e.headers.items()}}, "body": e.read().decode()}}))
except Exception as e:
    print(json.dumps({{"error": type(e).__name__ + ": " + str(e)}}))
"#
    );
    let o = Command::new("ip")
        .args(["netns", "exec", router, "python3", "-c", &py])
        .output()
        .expect("python3");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "GET {url} from {router}: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// The node's kube-proxy rules as the kernel lists them.
fn rules_on(node: &str, mode: &str) -> String {
    let cmd: &[&str] = if mode == "nftables" {
        &["nft", "list", "table", "ip", "kube-proxy"]
    } else {
        &["iptables-save", "-t", "filter"]
    };
    let o = Command::new("ip")
        .args(["netns", "exec", node])
        .args(cmd)
        .output()
        .expect("list rules");
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn body_json(r: &Value) -> Value {
    serde_json::from_str(r["body"].as_str().unwrap_or("")).unwrap_or(Value::Null)
}

fn run_mode(mode: &str, prefix: &str, api_port: u16) {
    run_mode_layout(mode, "upstream", prefix, api_port);
}

/// `layout`: `--nftables-layout` (nftables mode only).
fn run_mode_layout(mode: &str, layout: &str, prefix: &str, api_port: u16) {
    let state = tempfile::tempdir().expect("state dir");
    let g = LabGuard {
        prefix: prefix.to_string(),
        state: state.path().to_path_buf(),
    };
    let up = g.lab(&[
        "up",
        "--zones",
        "2",
        "--nodes-per-zone",
        "1",
        "--proxy-mode",
        mode,
        "--nftables-layout",
        layout,
        "--api-port",
        &api_port.to_string(),
        "--wait",
        "60s",
    ]);
    assert!(
        up.status.success(),
        "lab up ({mode}): {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let nodes = g.json(&["get", "nodes"]);
    let mut nodes: Vec<(String, String)> = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let name = n["metadata"]["name"].as_str()?.to_string();
            let ip = n["status"]["addresses"]
                .as_array()?
                .iter()
                .find(|a| a["type"] == "InternalIP")?["address"]
                .as_str()?
                .to_string();
            Some((name, ip))
        })
        .collect();
    nodes.sort();
    assert_eq!(nodes.len(), 2, "{mode}: {nodes:?}");
    let ((with_pod, ip_with), (without_pod, ip_without)) = (nodes[0].clone(), nodes[1].clone());
    g.kubectl(&["apply", "-f", "-"], Some(&app(&with_pod)));
    wait_for("the echo pod to be ready", Duration::from_secs(60), || {
        let pods = g.json(&["get", "pods", "-l", "app=web"]);
        let ready = pods["items"].as_array()?.iter().any(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        ready.then_some(())
    });
    let svc = |name: &str, path: &str| {
        g.kubectl(
            &["get", "svc", name, "-o", &format!("jsonpath={{{path}}}")],
            None,
        )
    };
    let cluster_np = svc("web-cluster", ".spec.ports[0].nodePort");
    let local_np = svc("web-local", ".spec.ports[0].nodePort");
    let hc = svc("web-local", ".spec.healthCheckNodePort");
    assert!(!hc.is_empty(), "{mode}: healthCheckNodePort allocated");
    let router = format!("{prefix}-rt");
    let url = |ip: &str, port: &str| format!("http://{ip}:{port}/");

    // Cluster policy: both nodes forward; via the other node the source is masqueraded.
    let r = wait_for("the NodePort to answer", Duration::from_secs(20), || {
        let r = get_from_router(&router, &url(&ip_without, &cluster_np));
        (r["code"] == 200).then_some(r)
    });
    let b = body_json(&r);
    assert_eq!(b["node"], with_pod.as_str(), "{mode}: {r}");
    assert_eq!(
        b["client"],
        ip_without.as_str(),
        "{mode}: masqueraded to the forwarding node: {r}"
    );
    let r = get_from_router(&router, &url(&ip_with, &cluster_np));
    assert_eq!(r["code"], 200, "{mode}: {r}");

    // Local policy: the node with the endpoint keeps the client's address...
    let r = wait_for(
        "the Local NodePort to answer",
        Duration::from_secs(20),
        || {
            let r = get_from_router(&router, &url(&ip_with, &local_np));
            (r["code"] == 200).then_some(r)
        },
    );
    let b = body_json(&r);
    assert_eq!(b["node"], with_pod.as_str(), "{mode}: {r}");
    let client = b["client"].as_str().unwrap_or("").to_string();
    assert!(
        client != ip_with && client != ip_without && !client.starts_with("10.244."),
        "{mode}: the client's own address reaches the pod: {r}"
    );
    // ...and the node without one drops (no answer, no reset).
    let r = get_from_router(&router, &url(&ip_without, &local_np));
    let err = r["error"].as_str().unwrap_or("");
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{mode}: dropped, not answered or refused: {r}"
    );

    // The health check node port: 200 where the endpoint is, 503 elsewhere.
    let ok = wait_for("health check 200", Duration::from_secs(20), || {
        let r = get_from_router(&router, &url(&ip_with, &hc));
        (r["code"] == 200).then_some(r)
    });
    let body = body_json(&ok);
    assert_eq!(body["localEndpoints"], 1, "{mode}: {ok}");
    assert_eq!(body["serviceProxyHealthy"], true, "{mode}: {ok}");
    assert_eq!(body["service"]["name"], "web-local", "{mode}: {ok}");
    assert_eq!(body["service"]["namespace"], "default", "{mode}: {ok}");
    assert_eq!(ok["headers"]["content-type"], "application/json", "{ok}");
    assert_eq!(ok["headers"]["x-content-type-options"], "nosniff", "{ok}");
    assert_eq!(
        ok["headers"]["x-load-balancing-endpoint-weight"], "1",
        "{ok}"
    );
    let bad = get_from_router(&router, &url(&ip_without, &hc));
    assert_eq!(bad["code"], 503, "{mode}: {bad}");
    assert_eq!(body_json(&bad)["localEndpoints"], 0, "{mode}: {bad}");

    // A load-balancer IP (as a load-balancer controller would write it), routed by the router
    // to one node at a time, the way an NLB forwards to an instance target: the node with the
    // endpoint serves it with the client's address kept, the other drops it.
    g.kubectl(
        &[
            "patch",
            "svc",
            "web-local",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{LB_IP}"}}]}}}}}}"#),
        ],
        None,
    );
    let route = |via: &str| {
        let o = Command::new("ip")
            .args(["netns", "exec", &router, "ip", "route", "replace"])
            .args([&format!("{LB_IP}/32"), "via", via])
            .output()
            .expect("ip route");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    route(&ip_with);
    let r = wait_for("the LB IP to answer", Duration::from_secs(20), || {
        let r = get_from_router(&router, &url(LB_IP, "80"));
        (r["code"] == 200).then_some(r)
    });
    assert_eq!(body_json(&r)["client"], client.as_str(), "{mode}: {r}");
    // The node without an endpoint programs the drop (not some routing accident).
    let drop_rule = if mode == "nftables" {
        format!("{LB_IP} . tcp . 80 comment \"default/web-local:http\" : drop")
    } else {
        format!(
            "-A KUBE-EXTERNAL-SERVICES -d {LB_IP}/32 -p tcp -m comment --comment \"default/web-local:http has no local endpoints\" -m tcp --dport 80 -j DROP"
        )
    };
    if layout == "shared-map" {
        // The agents run the layout asked for (its endpoint maps exist on every node).
        assert!(
            rules_on(&without_pod, mode).contains("map endpoints-tcp"),
            "shared-map layout not active"
        );
    }
    wait_for("the LB IP drop rule", Duration::from_secs(20), || {
        rules_on(&without_pod, mode)
            .contains(&drop_rule)
            .then_some(())
    });
    route(&ip_without);
    let r = get_from_router(&router, &url(LB_IP, "80"));
    let err = r["error"].as_str().unwrap_or("");
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{mode}: LB IP via the node without an endpoint is dropped: {r}"
    );

    // Scaled to 0: the health check turns 503 on the first node too.
    g.kubectl(&["scale", "deploy", "web", "--replicas=0"], None);
    wait_for("health check 503", Duration::from_secs(60), || {
        let r = get_from_router(&router, &url(&ip_with, &hc));
        (r["code"] == 503).then_some(())
    });
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn nodeport_and_local_policy_from_outside_the_nodes_in_both_proxy_modes() {
    netlab::preflight::require_for_test(&netlab::preflight::lab_test_tools());
    let id = std::process::id() % 1000;
    let base = 19000 + id as u16;
    run_mode("nftables", &format!("np{id}"), base);
    run_mode("iptables", &format!("nq{id}"), base + 1);
    run_mode_layout("nftables", "shared-map", &format!("nr{id}"), base + 2);
}
