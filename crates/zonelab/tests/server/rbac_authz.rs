//! RBAC, the Node authorizer and NodeRestriction against a real `zonelab server
//! --authorization-mode=Node,RBAC`, driven by stock kubectl (every 1.27+ the machine has)
//! impersonating users and nodes (`--as`, `--as-group`; the unauthenticated test client is the
//! `system:masters` admin, which may impersonate).

use crate::common;

use common::{Kubectl, ServerProc, kubectl_versions};

const MODES: &[&str] = &["--authorization-mode=Node,RBAC"];

/// Ask `kubectl auth can-i` (exit 0 "yes", exit 1 "no").
fn can_i(k: &Kubectl, args: &[&str]) -> String {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    let out = k.run(&full, None);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll `can_i` until it answers `want` (the authorizer's cache follows a watch); bounded.
fn until_can_i(k: &Kubectl, args: &[&str], want: &str) -> String {
    let mut got = String::new();
    for _ in 0..100 {
        got = can_i(k, args);
        if got == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    got
}

#[test]
fn roles_and_bindings_grant_and_revoke_with_every_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), MODES);
    for (minor, bin) in kubectl_versions() {
        let admin = Kubectl::with_binary(&server, &bin);
        let user = format!("alice-{minor}");
        let (role, crole) = (
            format!("pod-reader-{minor}"),
            format!("node-reader-{minor}"),
        );
        // kubectl 1.32+ sends these typed `create` bodies as protobuf.
        admin.ok(
            &[
                "create",
                "role",
                &role,
                "--verb=get,list,watch",
                "--resource=pods",
                "-n",
                "default",
            ],
            None,
        );
        admin.ok(
            &[
                "create",
                "rolebinding",
                &role,
                "--role",
                &role,
                "--user",
                &user,
                "-n",
                "default",
            ],
            None,
        );
        admin.ok(
            &[
                "create",
                "clusterrole",
                &crole,
                "--verb=get,list",
                "--resource=nodes",
            ],
            None,
        );
        admin.ok(
            &[
                "create",
                "clusterrolebinding",
                &crole,
                "--clusterrole",
                &crole,
                "--group",
                "readers",
            ],
            None,
        );
        let alice = ["--as", user.as_str()];
        fn with<'a>(head: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
            [head, extra].concat()
        }
        let ask = |extra: &[&'static str]| with(&alice, extra);
        assert_eq!(
            until_can_i(&admin, &ask(&["list", "pods", "-n", "default"]), "yes"),
            "yes",
            "kubectl 1.{minor}"
        );
        assert_eq!(
            can_i(&admin, &ask(&["list", "pods", "-n", "kube-system"])),
            "no"
        );
        assert_eq!(
            can_i(&admin, &ask(&["delete", "pods", "-n", "default"])),
            "no"
        );
        assert_eq!(can_i(&admin, &ask(&["list", "nodes"])), "no");
        assert_eq!(
            can_i(&admin, &ask(&["--as-group", "readers", "list", "nodes"])),
            "yes",
            "kubectl 1.{minor}"
        );
        admin.ok(&ask(&["get", "pods", "-n", "default"]), None);
        let err = admin.fails(&ask(&["get", "pods", "-n", "kube-system"]), None);
        assert!(
            err.contains(&format!(
                "pods is forbidden: User \"{user}\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
            )),
            "kubectl 1.{minor}: {err}"
        );
        let list = admin.ok(&ask(&["auth", "can-i", "--list", "-n", "default"]), None);
        assert!(
            list.lines()
                .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
            "kubectl 1.{minor}:\n{list}"
        );
        // Revoked: the binding's deletion reaches the authorizer through its watch.
        admin.ok(&["delete", "rolebinding", &role, "-n", "default"], None);
        assert_eq!(
            until_can_i(&admin, &ask(&["list", "pods", "-n", "default"]), "no"),
            "no",
            "kubectl 1.{minor}"
        );
        admin.fails(&ask(&["get", "pods", "-n", "default"]), None);
    }
}

const NODES: &str = "apiVersion: v1
kind: Node
metadata:
  name: rb-n1
---
apiVersion: v1
kind: Node
metadata:
  name: rb-n2
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: rb-n1
  namespace: kube-node-lease
spec:
  holderIdentity: rb-n1
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: rb-n2
  namespace: kube-node-lease
spec:
  holderIdentity: rb-n2
";

#[test]
fn a_node_writes_its_own_node_and_lease_only() {
    let dir = tempfile::tempdir().unwrap();
    // A signing key, so TokenRequests are served and reach NodeRestriction.
    let (_, pem) = apiserver::authn::jwt::SigningKey::generate().unwrap();
    let key = dir.path().join("sa.key");
    std::fs::write(&key, pem).unwrap();
    let key_flag = format!("--service-account-signing-key-file={}", key.display());
    let server = ServerProc::start(&dir.path().join("data"), &[MODES[0], &key_flag]);
    let admin = Kubectl::new(&server);
    admin.ok(&["apply", "-f", "-"], Some(NODES));
    let node = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--as", "system:node:rb-n1", "--as-group", "system:nodes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run_ok = |args: &[&str]| {
        let a = node(args);
        admin.ok(&a.iter().map(String::as_str).collect::<Vec<_>>(), None)
    };
    let run_fail = |args: &[&str]| {
        let a = node(args);
        admin.fails(&a.iter().map(String::as_str).collect::<Vec<_>>(), None)
    };
    run_ok(&["label", "node", "rb-n1", "team=a"]);
    run_ok(&[
        "annotate",
        "lease",
        "rb-n1",
        "-n",
        "kube-node-lease",
        "seen=yes",
    ]);
    let err = run_fail(&["label", "node", "rb-n2", "team=a"]);
    assert!(
        err.contains(
            "nodes \"rb-n2\" is forbidden: node \"rb-n1\" is not allowed to modify node \"rb-n2\""
        ),
        "{err}"
    );
    let err = run_fail(&[
        "annotate",
        "lease",
        "rb-n2",
        "-n",
        "kube-node-lease",
        "seen=yes",
    ]);
    assert!(
        err.contains("leases.coordination.k8s.io \"rb-n2\" is forbidden")
            && err.contains("can only access node lease with the same name as the requesting node"),
        "{err}"
    );
    let err = run_fail(&[
        "label",
        "node",
        "rb-n1",
        "node-role.kubernetes.io/control-plane=",
    ]);
    assert!(
        err.contains(
            "node \"rb-n1\" is not allowed to modify labels: node-role.kubernetes.io/control-plane"
        ),
        "{err}"
    );
    run_ok(&["label", "node", "rb-n1", "topology.kubernetes.io/zone=az-a"]);
    // Not a node's business: the Node authorizer has no rule for it, RBAC binds it nothing.
    let err = run_fail(&["get", "deployments", "-n", "default"]);
    assert!(
        err.contains("deployments.apps is forbidden: User \"system:node:rb-n1\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"default\""),
        "{err}"
    );
    // Tokens: only for a pod scheduled on the node itself (NodeRestriction). A pod on each
    // node runs as `default`, so the Node authorizer lets rb-n1 ask at all.
    admin.ok(&["apply", "-f", "-"], Some(TOKEN_PODS));
    let err = run_fail(&["create", "token", "default"]);
    assert!(
        err.contains(
            "serviceaccounts \"default\" is forbidden: node requested token not bound to a pod"
        ),
        "{err}"
    );
    let uid = admin.ok(
        &["get", "pod", "rb-theirs", "-o", "jsonpath={.metadata.uid}"],
        None,
    );
    let bound = |pod: &str, uid: &str| {
        let a = node(&[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            pod,
            "--bound-object-uid",
            uid,
        ]);
        admin.fails(&a.iter().map(String::as_str).collect::<Vec<_>>(), None)
    };
    let err = bound("rb-theirs", uid.trim());
    assert!(
        err.contains("node requested token bound to a pod scheduled on a different node"),
        "{err}"
    );
    let err = bound("rb-theirs", "stale-uid");
    assert!(
        err.contains(
            "the UID in the bound object reference (stale-uid) does not match the UID in record"
        ),
        "{err}"
    );
    // The admin's view: n1 labelled, n2 untouched.
    let labels = admin.ok(
        &["get", "node", "rb-n2", "-o", "jsonpath={.metadata.labels}"],
        None,
    );
    assert!(!labels.contains("team"), "{labels}");
}

#[test]
fn bootstrap_policy_exists_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let names = |server: &ServerProc| {
        let k = Kubectl::new(server);
        let roles = k.ok(&["get", "clusterroles", "-o", "name"], None);
        let rv = k.ok(
            &[
                "get",
                "clusterrole",
                "cluster-admin",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
            None,
        );
        let bindings = k.ok(&["get", "clusterrolebindings", "-o", "name"], None);
        (roles, bindings, rv)
    };
    let mut first = ServerProc::start(dir.path(), MODES);
    let (roles, bindings, rv) = names(&first);
    for want in [
        "clusterrole.rbac.authorization.k8s.io/cluster-admin",
        "clusterrole.rbac.authorization.k8s.io/system:node",
        "clusterrole.rbac.authorization.k8s.io/system:node-proxier",
        "clusterrole.rbac.authorization.k8s.io/system:kube-controller-manager",
        "clusterrole.rbac.authorization.k8s.io/system:kube-scheduler",
        "clusterrole.rbac.authorization.k8s.io/view",
    ] {
        assert!(roles.lines().any(|l| l == want), "{want} missing:\n{roles}");
    }
    assert!(bindings.contains("clusterrolebinding.rbac.authorization.k8s.io/system:node-proxier"));
    let k = Kubectl::new(&first);
    let labels = k.ok(
        &[
            "get",
            "clusterrole",
            "view",
            "-o",
            "jsonpath={.metadata.labels}",
        ],
        None,
    );
    assert!(labels.contains("rbac-defaults"), "{labels}");
    // kube-proxy's user may watch EndpointSlices and not write Services.
    let proxy = ["--as", "system:kube-proxy"];
    assert_eq!(
        can_i(
            &k,
            &[&proxy[..], &["watch", "endpointslices.discovery.k8s.io"]].concat()
        ),
        "yes"
    );
    assert_eq!(
        can_i(&k, &[&proxy[..], &["create", "services"]].concat()),
        "no"
    );
    first.kill();
    let second = ServerProc::start(dir.path(), MODES);
    let (roles2, bindings2, rv2) = names(&second);
    assert_eq!(roles, roles2);
    assert_eq!(bindings, bindings2);
    assert_eq!(rv, rv2, "cluster-admin was not rewritten");
}

/// One pod on each node, both running as the `default` ServiceAccount.
const TOKEN_PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: rb-mine, namespace: default}
spec:
  nodeName: rb-n1
  serviceAccountName: default
  containers: [{name: c, image: zonelab/echo}]
---
apiVersion: v1
kind: Pod
metadata: {name: rb-theirs, namespace: default}
spec:
  nodeName: rb-n2
  serviceAccountName: default
  containers: [{name: c, image: zonelab/echo}]
"#;
