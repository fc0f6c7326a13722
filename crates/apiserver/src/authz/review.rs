//! The review kinds, answered and never stored: `SelfSubjectAccessReview`,
//! `SelfSubjectRulesReview`, `SubjectAccessReview`, `LocalSubjectAccessReview`
//! (authorization.k8s.io/v1) and `SelfSubjectReview` (authentication.k8s.io/v1, `kubectl auth
//! whoami`).
//!
//! Start at [`access_review`]; the three access reviews share [`review_attributes`] (upstream's
//! validation and its error texts) and differ in whose attributes they ask about.

use api::resources::{ResourceInfo, by_kind};
use api::status::{Cause, StatusError};
use serde_json::{Value, json};

use super::{Attributes, Authorizer, Decision};
use crate::authn::UserInfo;

const AUTHORIZATION_V1: &str = "authorization.k8s.io/v1";
const AUTHENTICATION_V1: &str = "authentication.k8s.io/v1";

fn review_kind(api_version: &str, kind: &str) -> &'static ResourceInfo {
    by_kind(api_version, kind).expect("review kinds are served")
}

use super::rbac::{strings, text};

/// Which access review is asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Review<'a> {
    /// About the requester.
    SelfSubject,
    /// About `spec.user`/`spec.groups`, cluster-wide.
    Subject,
    /// About `spec.user`/`spec.groups` in one namespace (the URL's).
    Local { namespace: &'a str },
}

impl Review<'_> {
    fn kind(self) -> &'static str {
        match self {
            Review::SelfSubject => "SelfSubjectAccessReview",
            Review::Subject => "SubjectAccessReview",
            Review::Local { .. } => "LocalSubjectAccessReview",
        }
    }
}

/// Upstream's `ValidateSubjectAccessReviewSpec` and the per-kind checks, as field causes.
fn validate(review: Review<'_>, spec: &Value) -> Vec<Cause> {
    let res = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let mut causes = Vec::new();
    match (res, non) {
        (Some(_), Some(n)) => causes.push(Cause::invalid(
            "spec.nonResourceAttributes",
            n,
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => causes.push(Cause::invalid(
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    if review != Review::SelfSubject
        && text(spec, "user").is_empty()
        && strings(spec, "groups").is_empty()
    {
        causes.push(Cause::invalid(
            "spec.user",
            &json!(""),
            "at least one of user or group must be specified",
        ));
    }
    // `local_subject_access_review` has already refused a metadata.namespace other than the
    // request's `namespace`.
    if let Review::Local { namespace } = review {
        if let Some(r) = res {
            let asked = text(r, "namespace");
            if asked != namespace {
                causes.push(Cause::invalid(
                    "spec.resourceAttributes.namespace",
                    &json!(asked),
                    "must match metadata.namespace",
                ));
            }
        }
        if let Some(n) = non {
            causes.push(Cause::invalid(
                "spec.nonResourceAttributes",
                n,
                "disallowed on this kind of request",
            ));
        }
    }
    causes
}

/// The attributes an access review asks about, for `subject`; 422 with upstream's causes for
/// a spec upstream refuses.
fn review_attributes(
    review: Review<'_>,
    subject: &UserInfo,
    spec: &Value,
) -> Result<Attributes, StatusError> {
    let causes = validate(review, spec);
    if !causes.is_empty() {
        let res = review_kind(AUTHORIZATION_V1, review.kind());
        return Err(StatusError::invalid(res, "", causes));
    }
    let who = Attributes {
        user: subject.name.clone(),
        groups: subject.groups.clone(),
        ..Attributes::default()
    };
    Ok(
        match spec.get("resourceAttributes").filter(|v| !v.is_null()) {
            Some(r) => Attributes {
                verb: text(r, "verb"),
                namespace: text(r, "namespace"),
                api_group: text(r, "group"),
                resource: text(r, "resource"),
                subresource: text(r, "subresource"),
                name: text(r, "name"),
                ..who
            },
            None => {
                let n = &spec["nonResourceAttributes"];
                Attributes {
                    verb: text(n, "verb"),
                    path: Some(text(n, "path")),
                    ..who
                }
            }
        },
    )
}

/// Decide `attrs` and answer the review with upstream's `status` (`allowed`, `denied` when an
/// authorizer said no, `reason`).
/// The answered review: `spec` echoed (the caller's copy of the body's), the decision in status.
fn decide(
    authz: &dyn Authorizer,
    review: Review<'_>,
    body: &Value,
    spec: Value,
    attrs: &Attributes,
) -> Value {
    let (decision, reason) = authz.authorize(attrs);
    let mut status = json!({"allowed": decision == Decision::Allow});
    if decision == Decision::Deny {
        status["denied"] = json!(true);
    }
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    answered(body, AUTHORIZATION_V1, review.kind(), Some(spec), status)
}

/// Answer a `SelfSubjectAccessReview` body: may `user` (the requester) do what the spec asks?
pub fn access_review(
    authz: &dyn Authorizer,
    user: &UserInfo,
    body: &Value,
) -> Result<Value, StatusError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let attrs = review_attributes(Review::SelfSubject, user, &spec)?;
    Ok(decide(authz, Review::SelfSubject, body, spec, &attrs))
}

/// The subject a `SubjectAccessReview` spec names.
fn spec_subject(spec: &Value) -> UserInfo {
    UserInfo {
        name: text(spec, "user"),
        uid: text(spec, "uid"),
        groups: strings(spec, "groups"),
        ..UserInfo::default()
    }
}

/// Answer a `SubjectAccessReview` body (the requester needs `create` on
/// `subjectaccessreviews`, checked before this as for any request): may `spec.user` in
/// `spec.groups` do what the spec asks?
pub fn subject_access_review(authz: &dyn Authorizer, body: &Value) -> Result<Value, StatusError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let attrs = review_attributes(Review::Subject, &spec_subject(&spec), &spec)?;
    Ok(decide(authz, Review::Subject, body, spec, &attrs))
}

/// Answer a `LocalSubjectAccessReview` posted to `namespace`: a `SubjectAccessReview` whose
/// resource attributes must name that namespace.
pub fn local_subject_access_review(
    authz: &dyn Authorizer,
    namespace: &str,
    body: &Value,
) -> Result<Value, StatusError> {
    if namespace.is_empty() {
        return Err(StatusError::bad_request(
            "namespace is required on this type: ",
        ));
    }
    let meta_ns = body
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(namespace);
    if meta_ns != namespace {
        // Upstream's EnsureObjectNamespaceMatchesRequestNamespace.
        return Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let review = Review::Local { namespace };
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let attrs = review_attributes(review, &spec_subject(&spec), &spec)?;
    let mut out = decide(authz, review, body, spec, &attrs);
    out["metadata"]["namespace"] = json!(namespace);
    Ok(out)
}

/// Answer a `SelfSubjectRulesReview` body: the rules `user` holds in `spec.namespace`.
pub fn rules_review(
    authz: &dyn Authorizer,
    user: &UserInfo,
    body: &Value,
) -> Result<Value, StatusError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let namespace = text(&spec, "namespace");
    let rules = authz.rules_for(&user.name, &user.groups, &namespace);
    let resource: Vec<Value> = rules
        .resource
        .iter()
        .map(|r| {
            let mut v =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            v
        })
        .collect();
    let non_resource: Vec<Value> = rules
        .non_resource
        .iter()
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.urls}))
        .collect();
    let status = json!({
        "resourceRules": resource,
        "nonResourceRules": non_resource,
        "incomplete": rules.incomplete,
    });
    Ok(answered(
        body,
        AUTHORIZATION_V1,
        "SelfSubjectRulesReview",
        Some(spec),
        status,
    ))
}

/// Answer a `SelfSubjectReview` (`kubectl auth whoami`): who the requester is, as
/// authentication (and impersonation) found them.
pub fn self_subject_review(user: &UserInfo, body: &Value) -> Value {
    let mut info = json!({"username": user.name});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    answered(
        body,
        AUTHENTICATION_V1,
        "SelfSubjectReview",
        None,
        json!({"userInfo": info}),
    )
}

/// The review as the server answers it: the request's metadata, spec and the computed status.
fn answered(
    body: &Value,
    api_version: &str,
    kind: &str,
    spec: Option<Value>,
    status: Value,
) -> Value {
    let mut metadata = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.insert("creationTimestamp".into(), Value::Null);
    }
    let mut out = json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": metadata,
    });
    if let Some(spec) = spec {
        out["spec"] = spec;
    }
    out["status"] = status;
    out
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
