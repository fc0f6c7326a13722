//! RBAC escalation prevention and the review kinds against a real `zonelab server
//! --authorization-mode=Node,RBAC`, driven by stock kubectl: a user who may write Roles and
//! RoleBindings cannot grant or bind more than they hold until given `escalate`/`bind`;
//! `kubectl auth whoami` (SelfSubjectReview), SubjectAccessReview and LocalSubjectAccessReview
//! through `kubectl create -f`; impersonated user extras need their own grant.

use crate::common;

use common::{Kubectl, ServerProc, kubectl_versions};

const MODES: &[&str] = &["--authorization-mode=Node,RBAC"];

/// Retry `f` until it returns `Some` (the authorizer's cache follows a watch); bounded.
fn until<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..100 {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// `args` as `eve` in namespace `esc`.
fn as_eve<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&["--as", "eve", "-n", "esc"][..], args].concat()
}

fn can_i(k: &Kubectl, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    k.run(&full, None).status.success()
}

const EVE_RBAC: &str = "apiVersion: v1
kind: Namespace
metadata: {name: esc}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rbac-writer, namespace: esc}
rules:
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles, rolebindings], verbs: [create, get, list, update, patch]}
- {apiGroups: [\"\"], resources: [pods], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: eve-writes-rbac, namespace: esc}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rbac-writer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: eve}]
";

const EVE_MAY_BIND_AND_ESCALATE: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: binder, namespace: esc}
rules:
- {apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind], resourceNames: [edit]}
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: eve-binds, namespace: esc}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: binder}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: eve}]
";

#[test]
fn roles_and_bindings_cannot_grant_more_than_their_writer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), MODES);
    // The newest kubectl (1.32+ sends these typed creates as protobuf).
    let bin = kubectl_versions()
        .pop()
        .map(|(_, b)| b)
        .unwrap_or_else(|| "kubectl".into());
    let admin = Kubectl::with_binary(&server, &bin);
    admin.ok(&["apply", "-f", "-"], Some(EVE_RBAC));
    assert!(
        until(|| can_i(&admin, &as_eve(&["create", "roles"])).then_some(())).is_some(),
        "eve's role never reached the authorizer"
    );

    // A Role granting what eve holds: allowed; one granting more: refused, upstream's text.
    admin.ok(
        &as_eve(&["create", "role", "reader", "--verb=get", "--resource=pods"]),
        None,
    );
    // Patch and replace are checked on the object they store: within eve's rules allowed,
    // beyond them refused.
    admin.ok(
        &as_eve(&[
            "patch",
            "role",
            "reader",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/0/verbs/-","value":"list"}]"#,
        ]),
        None,
    );
    let err = admin.fails(
        &as_eve(&[
            "patch",
            "role",
            "reader",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/0/verbs/-","value":"delete"}]"#,
        ]),
        None,
    );
    assert!(
        err.contains("roles.rbac.authorization.k8s.io \"reader\" is forbidden: user \"eve\"")
            && err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    let stored = admin.ok(&["get", "role", "reader", "-n", "esc", "-o", "json"], None);
    let role: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let mut replaced = role.clone();
    replaced["rules"][0]["verbs"] = serde_json::json!(["get", "list", "delete"]);
    let err = admin.fails(
        &as_eve(&["replace", "-f", "-"]),
        Some(&replaced.to_string()),
    );
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    let after = admin.ok(&["get", "role", "reader", "-n", "esc", "-o", "json"], None);
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(
        after["rules"][0]["verbs"],
        serde_json::json!(["get", "list"]),
        "the refused writes changed nothing"
    );
    let err = admin.fails(
        &as_eve(&[
            "create",
            "role",
            "deleter",
            "--verb=get,delete",
            "--resource=pods",
        ]),
        None,
    );
    assert!(
        err.contains(
            "roles.rbac.authorization.k8s.io \"deleter\" is forbidden: user \"eve\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        ),
        "{err}"
    );
    // Binding a role whose rules eve holds: allowed; binding `edit`: refused.
    admin.ok(
        &as_eve(&[
            "create",
            "rolebinding",
            "r",
            "--role=reader",
            "--user=mallory",
        ]),
        None,
    );
    let err = admin.fails(
        &as_eve(&[
            "create",
            "rolebinding",
            "e",
            "--clusterrole=edit",
            "--user=mallory",
        ]),
        None,
    );
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"e\" is forbidden: user \"eve\"")
            && err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    // A binding to a role that does not exist cannot be checked: refused.
    let err = admin.fails(
        &as_eve(&[
            "create",
            "rolebinding",
            "m",
            "--role=missing",
            "--user=mallory",
        ]),
        None,
    );
    assert!(
        err.contains("is forbidden: roles.rbac.authorization.k8s.io \"missing\" not found"),
        "{err}"
    );
    admin.fails(&["get", "rolebinding", "e", "-n", "esc"], None);

    // With `bind` on clusterrole/edit and `escalate` on roles, both go through.
    admin.ok(&["apply", "-f", "-"], Some(EVE_MAY_BIND_AND_ESCALATE));
    let bound = until(|| {
        let out = admin.run(
            &as_eve(&[
                "create",
                "rolebinding",
                "e",
                "--clusterrole=edit",
                "--user=mallory",
            ]),
            None,
        );
        out.status.success().then_some(())
    });
    assert!(bound.is_some(), "bind never took effect");
    admin.ok(
        &as_eve(&[
            "create",
            "role",
            "deleter",
            "--verb=get,delete",
            "--resource=pods",
        ]),
        None,
    );
    // The cluster admin (system:masters) is never checked.
    admin.ok(
        &[
            "create",
            "clusterrolebinding",
            "anything",
            "--clusterrole=cluster-admin",
            "--user=mallory",
        ],
        None,
    );
}

/// POST a SelfSubjectReview as the token user `imp` impersonating `alice` with the user
/// extra `team=blue` (the headers kubectl sends for `as-user-extra`; kubectl itself sends no
/// bearer token over plain http). Returns the status code and the body.
fn whoami_as_alice_with_extra(addr: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let body = br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /apis/authentication.k8s.io/v1/selfsubjectreviews HTTP/1.1\r\nHost: {addr}\r\nAuthorization: bearer imp-token\r\nImpersonate-User: alice\r\nImpersonate-Extra-Team: blue\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = raw
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or_default();
    (code, json)
}

const IMPERSONATE_ALICE: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-alice}
rules:
- {apiGroups: [\"\"], resources: [users], verbs: [impersonate], resourceNames: [alice]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: impersonate-alice}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-alice}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: imp}]
";

const IMPERSONATE_TEAM: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-team}
rules:
- {apiGroups: [authentication.k8s.io], resources: [userextras/team], verbs: [impersonate], resourceNames: [blue]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: impersonate-team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-team}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: imp}]
";

/// Impersonated user extras need `impersonate` on `userextras/<key>` by value, and reach
/// `SelfSubjectReview`.
#[test]
fn impersonated_user_extras_need_their_own_grant() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "imp-token,imp,42\n").unwrap();
    let flag = format!("--token-auth-file={}", tokens.display());
    let data = dir.path().join("data");
    let server = ServerProc::start(&data, &[MODES[0], &flag]);
    let admin = Kubectl::new(&server);
    admin.ok(&["apply", "-f", "-"], Some(IMPERSONATE_ALICE));
    // `imp` may impersonate alice but not the extra: 403 naming userextras/team.
    let (_, refused) = until(|| {
        let (code, v) = whoami_as_alice_with_extra(&server.addr);
        (code == 403 && v["message"].as_str()?.contains("userextras")).then_some((code, v))
    })
    .expect("impersonating alice never allowed");
    assert_eq!(
        refused["message"],
        "userextras.authentication.k8s.io \"blue\" is forbidden: User \"imp\" cannot impersonate resource \"userextras/team\" in API group \"authentication.k8s.io\" at the cluster scope",
        "{refused}"
    );
    admin.ok(&["apply", "-f", "-"], Some(IMPERSONATE_TEAM));
    let (_, v) = until(|| Some(whoami_as_alice_with_extra(&server.addr)).filter(|r| r.0 == 201))
        .expect("impersonating the extra never allowed");
    assert_eq!(v["status"]["userInfo"]["username"], "alice", "{v}");
    assert_eq!(
        v["status"]["userInfo"]["extra"],
        serde_json::json!({"team": ["blue"]}),
        "{v}"
    );
}

#[test]
fn whoami_and_subject_access_reviews_with_stock_kubectl() {
    // `--validate=false`: kubectl's field-validation probe finds no PATCH for a review kind,
    // then lists CustomResourceDefinitions, which zonelab does not serve (404 → error).
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), MODES);
    for (minor, bin) in kubectl_versions() {
        let admin = Kubectl::with_binary(&server, &bin);
        // `auth whoami` is SelfSubjectReview authentication.k8s.io/v1 from kubectl 1.28 on.
        if minor >= 28 {
            let out = admin.ok(
                &[
                    "--as",
                    "bob",
                    "--as-group",
                    "devs",
                    "auth",
                    "whoami",
                    "-o",
                    "json",
                ],
                None,
            );
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["kind"], "SelfSubjectReview", "kubectl 1.{minor}: {v}");
            assert_eq!(v["status"]["userInfo"]["username"], "bob");
            assert_eq!(
                v["status"]["userInfo"]["groups"],
                serde_json::json!(["devs", "system:authenticated"])
            );
        }
        let sar = "apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: system:kube-proxy
  resourceAttributes: {verb: list, resource: endpointslices, group: discovery.k8s.io}
";
        let out = admin.ok(
            &["create", "--validate=false", "-f", "-", "-o", "json"],
            Some(sar),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"]["allowed"], true, "kubectl 1.{minor}: {v}");
        let denied = sar.replace("verb: list", "verb: delete");
        let out = admin.ok(
            &["create", "--validate=false", "-f", "-", "-o", "json"],
            Some(&denied),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"]["allowed"], false, "kubectl 1.{minor}: {v}");
        // Nobody named: upstream's validation error.
        let err = admin.fails(
            &["create", "--validate=false", "-f", "-"],
            Some(&sar.replace("  user: system:kube-proxy\n", "")),
        );
        assert!(
            err.contains(
                "spec.user: Invalid value: \"\": at least one of user or group must be specified"
            ),
            "kubectl 1.{minor}: {err}"
        );
        // LocalSubjectAccessReview: the namespace is the URL's.
        let lsar = "apiVersion: authorization.k8s.io/v1
kind: LocalSubjectAccessReview
metadata: {namespace: kube-system}
spec:
  user: system:kube-scheduler
  resourceAttributes: {verb: update, resource: leases, group: coordination.k8s.io, namespace: kube-system, name: kube-scheduler}
";
        let out = admin.ok(
            &["create", "--validate=false", "-f", "-", "-o", "json"],
            Some(lsar),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"]["allowed"], true, "kubectl 1.{minor}: {v}");
        // A SubjectAccessReview needs `create subjectaccessreviews`, which bob lacks.
        let err = admin.fails(
            &["--as", "bob", "create", "--validate=false", "-f", "-"],
            Some(sar),
        );
        assert!(
            err.contains("subjectaccessreviews.authorization.k8s.io is forbidden: User \"bob\" cannot create resource \"subjectaccessreviews\""),
            "kubectl 1.{minor}: {err}"
        );
    }
}
