//! ConfigMaps, Secrets, ServiceAccounts and PodDisruptionBudgets through every kubectl the
//! machine has (1.27 … newest), `kubectl drain` against a budget that blocks then allows, and
//! their bad input answered with upstream's Status.

use crate::common;

use std::time::{Duration, Instant};

use common::{Kubectl, ServerProc, http};
use serde_json::json;

/// kubectl 1.32+ sends protobuf bodies for typed `create <kind>` subcommands; protobuf request
/// decoding is landing on another branch. Flip to `true` when it is merged, so those versions'
/// `create configmap|secret|serviceaccount` run too. (`apply` sends JSON in every version.)
const PROTOBUF_BODIES: bool = true;

/// The first kubectl minor whose typed `create` subcommands send protobuf.
const FIRST_PROTOBUF_MINOR: u32 = 32;

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  mode: fast
  level: debug
binaryData:
  blob: AAEC
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
type: Opaque
data:
  user: YWRtaW4=
stringData:
  password: s3cret
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app-sa
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: app-pdb
spec:
  minAvailable: 1
  selector:
    matchLabels:
      app: app
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 2
  selector:
    matchLabels:
      app: app
  template:
    metadata:
      labels:
        app: app
    spec:
      serviceAccountName: app-sa
      containers:
      - name: echo
        image: zonelab/echo
"#;

/// Poll `get` until `want` holds (at most 30 s).
fn wait_for(what: &str, mut get: impl FnMut() -> String, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = get();
        if want(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: last saw {got:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn exercise(k: &Kubectl, minor: u32) {
    let ns = format!("k1-{minor}");
    let n = ns.as_str();
    let creates = minor < FIRST_PROTOBUF_MINOR || PROTOBUF_BODIES;
    // 1.27 and 1.28 validate against `/openapi/v2` in protobuf, 1.29+ read the v3 documents.
    let ns_yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
    k.ok(&["apply", "-f", "-"], Some(&ns_yaml));
    if creates {
        let out = k.ok(
            &["create", "configmap", "cm1", "--from-literal=a=1", "-n", n],
            None,
        );
        assert!(out.contains("configmap/cm1 created"), "1.{minor}: {out}");
        let out = k.ok(
            &[
                "create",
                "secret",
                "generic",
                "s1",
                "--from-literal=pw=hunter2",
                "-n",
                n,
            ],
            None,
        );
        assert!(out.contains("secret/s1 created"), "1.{minor}: {out}");
        let out = k.ok(&["create", "serviceaccount", "sa1", "-n", n], None);
        assert!(
            out.contains("serviceaccount/sa1 created"),
            "1.{minor}: {out}"
        );
        let pw = k.ok(
            &["get", "secret", "s1", "-n", n, "-o", "jsonpath={.data.pw}"],
            None,
        );
        assert_eq!(pw, "aHVudGVyMg==", "1.{minor}");
        for (kind, name, want) in [
            ("configmap", "cm1", "a:\n----\n1"),
            ("secret", "s1", "pw:  7 bytes"),
            ("serviceaccount", "sa1", "Name:"),
        ] {
            let out = k.ok(&["describe", kind, name, "-n", n], None);
            assert!(
                out.contains(want),
                "1.{minor} describe {kind}: {want:?} missing in {out}"
            );
        }
    } else {
        eprintln!(
            "kubectl 1.{minor}: `create <kind>` sends protobuf; skipped until PROTOBUF_BODIES"
        );
    }
    apply_app(k, minor, n);
    let tables: [(&str, &[&str]); 3] = [
        ("configmaps", &["NAME", "DATA", "AGE"]),
        ("secrets", &["NAME", "TYPE", "DATA", "AGE"]),
        ("serviceaccounts", &["NAME", "SECRETS", "AGE"]),
    ];
    for (kind, cols) in tables {
        let out = k.ok(&["get", kind, "-n", n, "-o", "wide"], None);
        let h = header(&out);
        assert_eq!(&h[..cols.len()], cols, "1.{minor} {kind}: {out}");
    }
    // The serviceaccounts controller gives the namespace its `default` account.
    wait_for(
        "default ServiceAccount",
        || {
            String::from_utf8_lossy(
                &k.run(&["get", "sa", "default", "-n", n, "-o", "name"], None)
                    .stdout,
            )
            .to_string()
        },
        |s| s.trim() == "serviceaccount/default",
    );
}

/// `apply` of an application manifest with every new kind, then `get -o wide` and `describe`.
fn apply_app(k: &Kubectl, minor: u32, n: &str) {
    let out = k.ok(&["apply", "-n", n, "-f", "-"], Some(APP));
    for line in [
        "configmap/app-config created",
        "secret/app-secret created",
        "serviceaccount/app-sa created",
        "poddisruptionbudget.policy/app-pdb created",
        "deployment.apps/app created",
    ] {
        assert!(out.contains(line), "1.{minor}: {line:?} missing in {out}");
    }
    // stringData was folded into data and is not stored.
    let secret = k.ok(
        &["get", "secret", "app-secret", "-n", n, "-o", "json"],
        None,
    );
    let secret: serde_json::Value = serde_json::from_str(&secret).expect("secret json");
    assert_eq!(secret["data"]["password"], "czNjcmV0", "1.{minor}");
    assert_eq!(secret["data"]["user"], "YWRtaW4=", "1.{minor}");
    assert!(secret.get("stringData").is_none(), "1.{minor}: {secret}");
    // A second apply of a changed manifest patches (strategic merge with the schema's patch
    // keys); kubectl warns when it cannot build the patch from the OpenAPI schema.
    let changed = APP
        .replace("mode: fast", "mode: slow")
        .replace("replicas: 2", "replicas: 3")
        .replace(
            "image: zonelab/echo\n",
            "image: zonelab/echo\n        env:\n        - name: MODE\n          value: slow\n",
        );
    let out = k.run(&["apply", "-n", n, "-f", "-"], Some(&changed));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "1.{minor}: {stdout}\n{stderr}");
    for line in [
        "configmap/app-config configured",
        "deployment.apps/app configured",
        "secret/app-secret",
    ] {
        assert!(
            stdout.contains(line),
            "1.{minor}: {line:?} missing in {stdout}"
        );
    }
    assert!(!stderr.contains("openapi"), "1.{minor}: {stderr}");
    let dep = k.ok(&["get", "deploy", "app", "-n", n, "-o", "json"], None);
    let dep: serde_json::Value = serde_json::from_str(&dep).expect("deployment json");
    assert_eq!(dep["spec"]["replicas"], 3, "1.{minor}");
    let containers = &dep["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "MODE", "value": "slow"}]),
        "1.{minor}: {containers}"
    );
    assert_eq!(containers.as_array().map(Vec::len), Some(1), "1.{minor}");
    let mode = k.ok(
        &[
            "get",
            "cm",
            "app-config",
            "-n",
            n,
            "-o",
            "jsonpath={.data.mode}",
        ],
        None,
    );
    assert_eq!(mode, "slow", "1.{minor}");
    let tables: [(&str, &[&str]); 2] = [
        (
            "pdb",
            &[
                "NAME",
                "MIN AVAILABLE",
                "MAX UNAVAILABLE",
                "ALLOWED DISRUPTIONS",
                "AGE",
            ],
        ),
        ("deployments", &["NAME", "READY", "UP-TO-DATE", "AVAILABLE"]),
    ];
    for (kind, cols) in tables {
        let out = k.ok(&["get", kind, "-n", n, "-o", "wide"], None);
        let h = header(&out);
        assert_eq!(&h[..cols.len()], cols, "1.{minor} {kind}: {out}");
    }
    let cm = k.ok(&["get", "cm", "app-config", "-n", n], None);
    assert!(
        cm.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("3")),
        "1.{minor}: DATA counts data and binaryData: {cm}"
    );
    // The disruption controller has observed the budget.
    wait_for(
        "PDB status",
        || {
            k.ok(
                &[
                    "get",
                    "pdb",
                    "app-pdb",
                    "-n",
                    n,
                    "-o",
                    "jsonpath={.status.observedGeneration}/{.status.desiredHealthy}",
                ],
                None,
            )
        },
        |s| s == "1/1",
    );
    let describes: [(&str, &str, &[&str]); 5] = [
        ("configmap", "app-config", &["Name:", "mode", "BinaryData"]),
        (
            "secret",
            "app-secret",
            &["Type:  Opaque", "password:  6 bytes"],
        ),
        ("serviceaccount", "app-sa", &["Name:", "app-sa"]),
        (
            "pdb",
            "app-pdb",
            &["Min available:  1", "Selector:       app=app"],
        ),
        ("deployment", "app", &["Replicas:", "app-sa"]),
    ];
    for (kind, name, want) in describes {
        let out = k.ok(&["describe", kind, name, "-n", n], None);
        for w in want {
            assert!(
                out.contains(w),
                "1.{minor} describe {kind}: {w:?} missing in {out}"
            );
        }
    }
}

#[test]
fn every_kubectl_version_creates_applies_lists_and_describes_the_new_kinds() {
    let versions = common::kubectl_versions();
    if versions.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    for (minor, bin) in &versions {
        eprintln!("kubectl 1.{minor}: {}", bin.display());
        let k = Kubectl::with_binary(&server, bin);
        exercise(&k, *minor);
    }
}

const DRAIN_SETUP: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: n1
---
apiVersion: v1
kind: Node
metadata:
  name: n2
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 2
  selector:
    matchLabels:
      app: web
"#;

fn bound_pod(name: &str, node: &str) -> String {
    // Grace 0: with no kubelet in this test, a graceful delete would never finish.
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: web\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: zonelab/echo\n"
    )
}

#[test]
fn drain_waits_for_the_disruption_budget_then_empties_the_node() {
    let Some((minor, bin)) = common::kubectl_versions().pop() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // No node lifecycle: these nodes have no kubelet, and its taints would only add noise.
    let server = ServerProc::start(
        dir.path(),
        &[
            "--controllers",
            "*,-nodelifecycle,-taint-eviction-controller,-scheduler",
        ],
    );
    let k = Kubectl::with_binary(&server, &bin);
    k.ok(&["apply", "-f", "-"], Some(DRAIN_SETUP));
    for (pod, node) in [("w1", "n1"), ("w2", "n1"), ("w3", "n2")] {
        k.ok(&["apply", "-f", "-"], Some(&bound_pod(pod, node)));
        // What a kubelet reports: running and ready.
        k.ok(
            &[
                "patch",
                "pod",
                pod,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
            ],
            None,
        );
    }
    let pdb_status = || {
        k.ok(
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.observedGeneration}/{.status.currentHealthy}/{.status.disruptionsAllowed}",
            ],
            None,
        )
    };
    // 3 healthy, 2 required: one disruption allowed, so draining n1's two pods must stop at one.
    wait_for("PDB status", pdb_status, |s| s == "1/3/1");
    let blocked = k.run(
        &[
            "drain",
            "n1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            "--timeout=12s",
        ],
        None,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&blocked.stdout),
        String::from_utf8_lossy(&blocked.stderr)
    );
    assert!(
        !blocked.status.success(),
        "1.{minor}: drain finished: {text}"
    );
    assert!(
        text.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "1.{minor}: {text}"
    );
    let unschedulable = k.ok(
        &["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"],
        None,
    );
    assert_eq!(unschedulable, "true", "drain cordons first");
    let left = k.ok(
        &[
            "get",
            "pods",
            "--field-selector",
            "spec.nodeName=n1",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(left.lines().count(), 1, "one pod evicted, one kept: {left}");
    // Relax the budget: the controller recomputes and the drain goes through.
    k.ok(
        &[
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":0}}"#,
        ],
        None,
    );
    wait_for("relaxed PDB", pdb_status, |s| s == "2/2/2");
    let out = k.ok(
        &[
            "drain",
            "n1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            "--timeout=60s",
        ],
        None,
    );
    assert!(out.contains("node/n1 drained"), "1.{minor}: {out}");
    let left = k.ok(
        &[
            "get",
            "pods",
            "--field-selector",
            "spec.nodeName=n1",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(left.trim(), "", "n1 is empty");
    let all = k.ok(&["get", "pods", "-o", "name"], None);
    assert_eq!(all.trim(), "pod/w3", "the other node's pod stays");
    let out = k.ok(&["uncordon", "n1"], None);
    assert!(out.contains("node/n1 uncordoned"), "{out}");
    let out = k.ok(&["cordon", "n1"], None);
    assert!(out.contains("node/n1 cordoned"), "{out}");
}

#[test]
fn bad_secrets_budgets_and_evictions_get_upstreams_status() {
    let dir = tempfile::tempdir().unwrap();
    // No controllers: the store revision must stay put unless a request writes.
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let a = server.addr.as_str();
    let json_ct = "application/json";
    let before = common::store_revision(a);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"},
        "data": {"token": "not base64!"}});
    let (code, status) = http(
        a,
        "POST",
        "/api/v1/namespaces/default/secrets",
        json_ct,
        secret.to_string().as_bytes(),
    );
    assert_eq!(code, 400, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "BadRequest");
    assert_eq!(
        status["message"],
        "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3"
    );
    assert_eq!(
        common::store_revision(a),
        before,
        "a rejected Secret changes nothing"
    );
    let (code, _) = http(
        a,
        "GET",
        "/api/v1/namespaces/default/secrets/bad",
        json_ct,
        b"",
    );
    assert_eq!(code, 404);

    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "both"},
        "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
    let (code, status) = http(
        a,
        "POST",
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        json_ct,
        pdb.to_string().as_bytes(),
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "PodDisruptionBudget.policy \"both\" is invalid: spec: Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)(0xc000000000), Selector:(*v1.LabelSelector)(0xc000000000), MaxUnavailable:(*intstr.IntOrString)(0xc000000000), UnhealthyPodEvictionPolicy:(*policy.UnhealthyPodEvictionPolicyType)(nil)}: minAvailable and maxUnavailable cannot be both set"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "spec");
    assert_eq!(
        common::store_revision(a),
        before,
        "a rejected budget changes nothing"
    );

    // A running pod matched by two budgets: upstream's 500, and the pod stays.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "zonelab/echo"}]}});
    let (code, _) = http(
        a,
        "POST",
        "/api/v1/namespaces/default/pods",
        json_ct,
        pod.to_string().as_bytes(),
    );
    assert_eq!(code, 201);
    let running = json!({"status": {"phase": "Running"}});
    let (code, _) = http(
        a,
        "PATCH",
        "/api/v1/namespaces/default/pods/p/status",
        "application/merge-patch+json",
        running.to_string().as_bytes(),
    );
    assert_eq!(code, 200);
    for name in ["one", "two"] {
        let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
        let (code, _) = http(
            a,
            "POST",
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
            json_ct,
            pdb.to_string().as_bytes(),
        );
        assert_eq!(code, 201);
    }
    let before = common::store_revision(a);
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}});
    let (code, status) = http(
        a,
        "POST",
        "/api/v1/namespaces/default/pods/p/eviction",
        json_ct,
        eviction.to_string().as_bytes(),
    );
    assert_eq!(code, 500, "{status}");
    assert_eq!(
        status["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    // A name that is not the URL's.
    let other = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "q"}});
    let (code, status) = http(
        a,
        "POST",
        "/api/v1/namespaces/default/pods/p/eviction",
        json_ct,
        other.to_string().as_bytes(),
    );
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        "name in URL does not match name in Eviction object"
    );
    assert_eq!(
        common::store_revision(a),
        before,
        "refused evictions change nothing"
    );
    let (code, _) = http(a, "GET", "/api/v1/namespaces/default/pods/p", json_ct, b"");
    assert_eq!(code, 200, "the pod stays");
}
