use super::*;
use crate::authz::{AlwaysAllow, Rules};

/// Allows `bob` (or group `ops`) to list pods in `team-a` only.
struct BobInTeamA;

impl Authorizer for BobInTeamA {
    fn authorize(&self, a: &Attributes) -> (Decision, String) {
        let who = a.user == "bob" || a.groups.iter().any(|g| g == "ops");
        match who && a.verb == "list" && a.resource == "pods" && a.namespace == "team-a" {
            true => (Decision::Allow, String::new()),
            false => (Decision::NoOpinion, String::new()),
        }
    }

    fn rules_for(&self, _: &str, _: &[String], _: &str) -> Rules {
        crate::authz::rbac::to_rules(&[])
    }
}

fn pods(ns: &str) -> Value {
    json!({"verb": "list", "resource": "pods", "namespace": ns})
}

#[test]
fn subject_access_review_asks_about_the_spec_subject() {
    let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "bob", "resourceAttributes": pods("team-a")}});
    let out = subject_access_review(&BobInTeamA, &body).unwrap();
    assert_eq!(out["kind"], "SubjectAccessReview");
    assert_eq!(out["status"], json!({"allowed": true}));
    let body = json!({"spec": {"user": "carol", "resourceAttributes": pods("team-a")}});
    assert_eq!(
        subject_access_review(&BobInTeamA, &body).unwrap()["status"]["allowed"],
        false
    );
    let body =
        json!({"spec": {"user": "carol", "groups": ["ops"], "resourceAttributes": pods("team-a")}});
    assert_eq!(
        subject_access_review(&BobInTeamA, &body).unwrap()["status"]["allowed"],
        true
    );
    // Nobody named: upstream's "at least one of user or group".
    let e = subject_access_review(
        &AlwaysAllow,
        &json!({"spec": {"resourceAttributes": pods("x")}}),
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified"
    );
}

#[test]
fn local_subject_access_review_stays_in_its_namespace() {
    let body = json!({"metadata": {"namespace": "team-a"},
        "spec": {"user": "bob", "resourceAttributes": pods("team-a")}});
    let out = local_subject_access_review(&BobInTeamA, "team-a", &body).unwrap();
    assert_eq!(out["kind"], "LocalSubjectAccessReview");
    assert_eq!(out["metadata"]["namespace"], "team-a");
    assert_eq!(out["status"]["allowed"], true);
    // The namespace comes from the URL when the body has none.
    let bare = json!({"spec": {"user": "bob", "resourceAttributes": pods("team-a")}});
    assert_eq!(
        local_subject_access_review(&BobInTeamA, "team-a", &bare).unwrap()["status"]["allowed"],
        true
    );
    let other = json!({"spec": {"user": "bob", "resourceAttributes": pods("team-b")}});
    let e = local_subject_access_review(&BobInTeamA, "team-a", &other).unwrap_err();
    assert_eq!(
        e.message,
        "LocalSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes.namespace: Invalid value: \"team-b\": must match metadata.namespace"
    );
    let e = local_subject_access_review(&BobInTeamA, "team-b", &body).unwrap_err();
    assert_eq!(e.code, 400);
    let non =
        json!({"spec": {"user": "bob", "nonResourceAttributes": {"verb": "get", "path": "/"}}});
    let e = local_subject_access_review(&AlwaysAllow, "team-a", &non).unwrap_err();
    assert!(
        e.message.contains("disallowed on this kind of request"),
        "{}",
        e.message
    );
}

#[test]
fn self_subject_review_returns_the_requester() {
    let user = UserInfo {
        name: "system:node:n1".into(),
        groups: vec!["system:nodes".into(), "system:authenticated".into()],
        ..UserInfo::default()
    };
    let out = self_subject_review(
        &user,
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    );
    assert_eq!(
        out,
        json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": null},
               "status": {"userInfo": {"username": "system:node:n1",
                                       "groups": ["system:nodes", "system:authenticated"]}}})
    );
}
