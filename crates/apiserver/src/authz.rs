//! Authorization decisions, and the self-access reviews that ask for them
//! (`kubectl auth can-i`): what a request may do, as the server's authorizer sees it.
//!
//! Start at [`Authorizer`]. Today the server runs [`AlwaysAllow`] (upstream's
//! `--authorization-mode=AlwaysAllow`); the reviews answer through the same trait, so they
//! stay truthful when a stricter authorizer replaces it. Pure: no I/O.

use api::resources::{ResourceInfo, by_kind};
use api::status::{Cause, StatusError};
use serde_json::{Value, json};

/// What a request wants to do (upstream's `authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    /// Resource requests: namespace, API group, resource, subresource and object name.
    pub namespace: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// Non-resource requests (`/healthz`, `/metrics`): the path.
    pub path: Option<String>,
}

/// An authorizer's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

/// One resource rule a subject holds (`SelfSubjectRulesReview`'s `resourceRules`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// One non-resource rule (`nonResourceRules`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonResourceRule {
    pub verbs: Vec<String>,
    pub urls: Vec<String>,
}

/// What a subject may do in a namespace, and whether the list is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub resource: Vec<ResourceRule>,
    pub non_resource: Vec<NonResourceRule>,
    pub incomplete: bool,
}

/// Decides requests and lists the rules behind the decisions.
pub trait Authorizer: Send + Sync {
    /// The decision and its reason (empty when there is none to give).
    fn authorize(&self, a: &Attributes) -> (Decision, String);
    /// The rules `user` holds in `namespace`.
    fn rules_for(&self, user: &str, groups: &[String], namespace: &str) -> Rules;
}

/// Allows everything (upstream's `AlwaysAllow` mode, with no authentication in front).
pub struct AlwaysAllow;

fn all() -> Vec<String> {
    vec!["*".to_string()]
}

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _a: &Attributes) -> (Decision, String) {
        (Decision::Allow, String::new())
    }

    fn rules_for(&self, _user: &str, _groups: &[String], _namespace: &str) -> Rules {
        Rules {
            resource: vec![ResourceRule {
                verbs: all(),
                api_groups: all(),
                resources: all(),
                resource_names: Vec::new(),
            }],
            non_resource: vec![NonResourceRule {
                verbs: all(),
                urls: all(),
            }],
            incomplete: false,
        }
    }
}

fn review_kind(kind: &str) -> &'static ResourceInfo {
    by_kind("authorization.k8s.io/v1", kind).expect("review kinds are served")
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Answer a `SelfSubjectAccessReview` body: validate its spec as upstream does (exactly one of
/// `resourceAttributes` and `nonResourceAttributes`) and fill `status` from `authz`.
pub fn access_review(
    authz: &dyn Authorizer,
    user: &str,
    body: &Value,
) -> Result<Value, StatusError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let res = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let cause = match (res, non) {
        (Some(_), Some(n)) => Some(Cause::invalid(
            "spec.nonResourceAttributes",
            n,
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => Some(Cause::invalid(
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => None,
    };
    if let Some(c) = cause {
        return Err(StatusError::invalid(
            review_kind("SelfSubjectAccessReview"),
            "",
            vec![c],
        ));
    }
    let attrs = match (res, non) {
        (Some(r), _) => Attributes {
            user: user.to_string(),
            verb: text(r, "verb"),
            namespace: text(r, "namespace"),
            api_group: text(r, "group"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            name: text(r, "name"),
            ..Attributes::default()
        },
        (None, Some(n)) => Attributes {
            user: user.to_string(),
            verb: text(n, "verb"),
            path: Some(text(n, "path")),
            ..Attributes::default()
        },
        (None, None) => unreachable!("rejected above"),
    };
    let (decision, reason) = authz.authorize(&attrs);
    let mut status = json!({"allowed": decision == Decision::Allow});
    if decision == Decision::Deny {
        status["denied"] = json!(true);
    }
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    Ok(answered(body, "SelfSubjectAccessReview", spec, status))
}

/// Answer a `SelfSubjectRulesReview` body: the rules `user` holds in `spec.namespace`.
pub fn rules_review(
    authz: &dyn Authorizer,
    user: &str,
    body: &Value,
) -> Result<Value, StatusError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let namespace = text(&spec, "namespace");
    let rules = authz.rules_for(user, &[], &namespace);
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
    Ok(answered(body, "SelfSubjectRulesReview", spec, status))
}

/// The review as the server answers it: the request's metadata, spec and the computed status.
fn answered(body: &Value, kind: &str, spec: Value, status: Value) -> Value {
    let mut metadata = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.insert("creationTimestamp".into(), Value::Null);
    }
    json!({
        "kind": kind,
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct DenyAll;
    impl Authorizer for DenyAll {
        fn authorize(&self, a: &Attributes) -> (Decision, String) {
            (Decision::Deny, format!("{} may not {}", a.user, a.verb))
        }
        fn rules_for(&self, _: &str, _: &[String], _: &str) -> Rules {
            Rules {
                resource: Vec::new(),
                non_resource: Vec::new(),
                incomplete: true,
            }
        }
    }

    #[test]
    fn access_review_answers_from_the_authorizer() {
        let body = json!({"spec": {"resourceAttributes": {"verb": "create", "resource": "pods", "namespace": "default"}}});
        let out = access_review(&AlwaysAllow, "admin", &body).unwrap();
        assert_eq!(out["status"], json!({"allowed": true}));
        assert_eq!(out["spec"], body["spec"]);
        let out = access_review(&DenyAll, "admin", &body).unwrap();
        assert_eq!(
            out["status"],
            json!({"allowed": false, "denied": true, "reason": "admin may not create"})
        );
        let non = json!({"spec": {"nonResourceAttributes": {"verb": "get", "path": "/metrics"}}});
        assert_eq!(
            access_review(&AlwaysAllow, "admin", &non).unwrap()["status"]["allowed"],
            true
        );
    }

    #[test]
    fn access_review_needs_exactly_one_kind_of_attributes() {
        let e = access_review(&AlwaysAllow, "admin", &json!({"spec": {}})).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );
        let both = json!({"spec": {"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"verb": "get", "path": "/"}}});
        let e = access_review(&AlwaysAllow, "admin", &both).unwrap_err();
        assert!(
            e.message
                .contains("spec.nonResourceAttributes: Invalid value"),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("cannot be specified in combination with resourceAttributes")
        );
    }

    #[test]
    fn rules_review_lists_the_rules() {
        let out = rules_review(
            &AlwaysAllow,
            "admin",
            &json!({"spec": {"namespace": "default"}}),
        )
        .unwrap();
        assert_eq!(out["status"]["resourceRules"][0]["verbs"], json!(["*"]));
        assert_eq!(
            out["status"]["nonResourceRules"][0]["nonResourceURLs"],
            json!(["*"])
        );
        assert_eq!(out["status"]["incomplete"], false);
        let out = rules_review(
            &DenyAll,
            "admin",
            &json!({"spec": {"namespace": "default"}}),
        )
        .unwrap();
        assert_eq!(out["status"]["resourceRules"], json!([]));
        assert_eq!(out["status"]["incomplete"], true);
    }
}
