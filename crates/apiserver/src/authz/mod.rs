//! Authorization decisions, and the access reviews that ask for them (`kubectl auth can-i`):
//! what a request may do, as the server's authorizers see it.
//!
//! Start at [`Authorizer`] and [`build`] (`--authorization-mode`: AlwaysAllow, the default,
//! AlwaysDeny, Node, RBAC, in order, behind upstream's `system:masters` shortcut); the request
//! path asks [`Chain::check`] with [`request::attributes`] and answers 403 with
//! [`forbidden`]'s text. [`rbac`] evaluates the RBAC objects from the watch-fed [`cache`],
//! [`node`] is the Node authorizer and [`bootstrap`] upstream's default policy.

pub mod bootstrap;
pub mod cache;
pub mod escalation;
mod filter;
pub mod node;
pub mod rbac;
pub mod request;
mod review;

use std::sync::Arc;

use api::status::{Details, StatusError};

use crate::authn::MASTERS_GROUP;

pub use filter::{admit_request, start};
pub use review::{
    access_review, local_subject_access_review, rules_review, self_subject_review,
    subject_access_review,
};

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

impl<T: Authorizer + ?Sized> Authorizer for Arc<T> {
    fn authorize(&self, a: &Attributes) -> (Decision, String) {
        (**self).authorize(a)
    }

    fn rules_for(&self, user: &str, groups: &[String], namespace: &str) -> Rules {
        (**self).rules_for(user, groups, namespace)
    }
}

/// Upstream's `AlwaysDeny` mode: no opinion on anything ("Everything is forbidden.").
pub struct AlwaysDeny;

impl Authorizer for AlwaysDeny {
    fn authorize(&self, _a: &Attributes) -> (Decision, String) {
        (Decision::NoOpinion, "Everything is forbidden.".to_string())
    }

    fn rules_for(&self, _user: &str, _groups: &[String], _namespace: &str) -> Rules {
        rbac::to_rules(&[])
    }
}

/// One `--authorization-mode` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Node,
    Rbac,
}

/// A bad `--authorization-mode`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    #[error(
        "authorization-mode {0:?} is not a valid mode (valid: AlwaysAllow, AlwaysDeny, Node, RBAC)"
    )]
    Unknown(String),
    #[error("authorization-mode {0:?} has mode specified more than once")]
    Repeated(String),
    #[error("at least one authorization-mode must be passed")]
    Empty,
}

/// Parse `--authorization-mode` (comma-separated, order kept).
pub fn parse_modes(s: &str) -> Result<Vec<Mode>, ModeError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let m = match part {
            "AlwaysAllow" => Mode::AlwaysAllow,
            "AlwaysDeny" => Mode::AlwaysDeny,
            "Node" => Mode::Node,
            "RBAC" => Mode::Rbac,
            other => return Err(ModeError::Unknown(other.to_string())),
        };
        if out.contains(&m) {
            return Err(ModeError::Repeated(part.to_string()));
        }
        out.push(m);
    }
    if out.is_empty() {
        return Err(ModeError::Empty);
    }
    Ok(out)
}

/// The configured authorizers in order, behind upstream's privileged-group authorizer
/// (`system:masters` may do everything), combined as upstream's union: the first decision
/// wins, no opinion from all of them is a refusal.
pub struct Chain {
    modes: Vec<Mode>,
    items: Vec<Box<dyn Authorizer>>,
    /// The RBAC authorizer when RBAC is on (escalation checks resolve rules with it).
    rbac: Option<Arc<rbac::Rbac>>,
    /// The RBAC and Pod caches the Node and RBAC modes read (started by the server).
    pub caches: Option<Arc<cache::Caches>>,
}

/// Build the chain for `modes`.
pub fn build(modes: &[Mode]) -> Chain {
    let needs_cache = modes.iter().any(|m| matches!(m, Mode::Node | Mode::Rbac));
    let caches = needs_cache.then(|| Arc::new(cache::Caches::default()));
    let rbac = modes.contains(&Mode::Rbac).then(|| {
        Arc::new(rbac::Rbac::new(Arc::clone(
            caches.as_ref().expect("built above"),
        )))
    });
    let items = modes
        .iter()
        .map(|m| -> Box<dyn Authorizer> {
            let c = || Arc::clone(caches.as_ref().expect("built above"));
            match m {
                Mode::AlwaysAllow => Box::new(AlwaysAllow),
                Mode::AlwaysDeny => Box::new(AlwaysDeny),
                Mode::Node => Box::new(node::NodeAuthorizer::new(c())),
                Mode::Rbac => Box::new(Arc::clone(rbac.as_ref().expect("built above"))),
            }
        })
        .collect();
    Chain {
        modes: modes.to_vec(),
        items,
        rbac,
        caches,
    }
}

impl Chain {
    /// Whether `mode` is on.
    pub fn has(&self, mode: Mode) -> bool {
        self.modes.contains(&mode)
    }

    /// The RBAC rules `user` holds in `namespace` (cluster-wide ones included); none when RBAC
    /// is off (upstream's escalation checks resolve with RBAC's rule resolver only).
    pub fn rbac_rules(&self, user: &str, groups: &[String], namespace: &str) -> Vec<rbac::Rule> {
        self.rbac
            .as_ref()
            .map(|r| r.policy().rules_for(user, groups, namespace))
            .unwrap_or_default()
    }

    /// An aggregated ClusterRole's rules as RBAC computes them (`None` when RBAC is off or it
    /// does not know the role).
    pub fn cluster_role_rules(&self, name: &str) -> Option<Vec<rbac::Rule>> {
        self.rbac.as_ref()?.policy().cluster_role(name)
    }

    /// Authorize one request: `Ok` when allowed, else the 403 upstream answers.
    pub fn check(&self, a: &Attributes) -> Result<(), StatusError> {
        match self.authorize(a) {
            (Decision::Allow, _) => Ok(()),
            (_, reason) => Err(forbidden(a, &reason)),
        }
    }
}

impl Authorizer for Chain {
    fn authorize(&self, a: &Attributes) -> (Decision, String) {
        if a.groups.iter().any(|g| g == MASTERS_GROUP) {
            return (Decision::Allow, String::new());
        }
        let mut reasons = Vec::new();
        for item in &self.items {
            match item.authorize(a) {
                (Decision::NoOpinion, r) => reasons.extend((!r.is_empty()).then_some(r)),
                decided => return decided,
            }
        }
        (Decision::NoOpinion, reasons.join("\n"))
    }

    fn rules_for(&self, user: &str, groups: &[String], namespace: &str) -> Rules {
        if groups.iter().any(|g| g == MASTERS_GROUP) {
            return AlwaysAllow.rules_for(user, groups, namespace);
        }
        let mut out = rbac::to_rules(&[]);
        for item in &self.items {
            let r = item.rules_for(user, groups, namespace);
            out.resource.extend(r.resource);
            out.non_resource.extend(r.non_resource);
            out.incomplete |= r.incomplete;
        }
        out
    }
}

/// Upstream's `forbiddenMessage` wrapped in `NewForbidden`: `pods is forbidden: User "alice"
/// cannot list resource "pods" in API group "" in the namespace "default"`, or for a path
/// `forbidden: User "alice" cannot get path "/metrics"`; `: REASON` appended when there is one.
pub fn forbidden(a: &Attributes, reason: &str) -> StatusError {
    let user = &a.user;
    let verb = &a.verb;
    let what = match &a.path {
        Some(path) => format!("User {user:?} cannot {verb} path {path:?}"),
        None => {
            let mut resource = a.resource.clone();
            if !a.subresource.is_empty() {
                resource = format!("{resource}/{}", a.subresource);
            }
            let group = &a.api_group;
            let scope = match a.namespace.as_str() {
                "" => "at the cluster scope".to_string(),
                ns => format!("in the namespace {ns:?}"),
            };
            format!(
                "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} {scope}"
            )
        }
    };
    let why = match reason {
        "" => what,
        r => format!("{what}: {r}"),
    };
    let qualified = match (a.path.is_some(), a.api_group.as_str()) {
        (true, _) => String::new(),
        (false, "") => a.resource.clone(),
        (false, g) => format!("{}.{g}", a.resource),
    };
    let message = match (qualified.as_str(), a.name.as_str()) {
        ("", _) => format!("forbidden: {why}"),
        (q, "") => format!("{q} is forbidden: {why}"),
        (q, name) => format!("{q} {name:?} is forbidden: {why}"),
    };
    StatusError {
        code: 403,
        reason: "Forbidden",
        message,
        details: Some(Box::new(Details {
            name: a.name.clone(),
            group: a.api_group.clone(),
            kind: a.resource.clone(),
            ..Details::default()
        })),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::authn::UserInfo;

    fn admin() -> UserInfo {
        UserInfo {
            name: "admin".into(),
            ..UserInfo::default()
        }
    }

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
        let out = access_review(&AlwaysAllow, &admin(), &body).unwrap();
        assert_eq!(out["status"], json!({"allowed": true}));
        assert_eq!(out["spec"], body["spec"]);
        let out = access_review(&DenyAll, &admin(), &body).unwrap();
        assert_eq!(
            out["status"],
            json!({"allowed": false, "denied": true, "reason": "admin may not create"})
        );
        let non = json!({"spec": {"nonResourceAttributes": {"verb": "get", "path": "/metrics"}}});
        assert_eq!(
            access_review(&AlwaysAllow, &admin(), &non).unwrap()["status"]["allowed"],
            true
        );
    }

    #[test]
    fn access_review_needs_exactly_one_kind_of_attributes() {
        let e = access_review(&AlwaysAllow, &admin(), &json!({"spec": {}})).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );
        let both = json!({"spec": {"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"verb": "get", "path": "/"}}});
        let e = access_review(&AlwaysAllow, &admin(), &both).unwrap_err();
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
            &admin(),
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
            &admin(),
            &json!({"spec": {"namespace": "default"}}),
        )
        .unwrap();
        assert_eq!(out["status"]["resourceRules"], json!([]));
        assert_eq!(out["status"]["incomplete"], true);
    }

    #[test]
    fn forbidden_texts_are_upstreams() {
        let a = Attributes {
            user: "alice".into(),
            verb: "list".into(),
            namespace: "default".into(),
            resource: "pods".into(),
            ..Attributes::default()
        };
        let e = forbidden(&a, "");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let named = Attributes {
            verb: "get".into(),
            namespace: String::new(),
            api_group: "apps".into(),
            resource: "deployments".into(),
            subresource: "scale".into(),
            name: "web".into(),
            ..a.clone()
        };
        assert_eq!(
            forbidden(&named, "no").message,
            "deployments.apps \"web\" is forbidden: User \"alice\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope: no"
        );
        let path = Attributes {
            user: "alice".into(),
            verb: "get".into(),
            path: Some("/metrics".into()),
            ..Attributes::default()
        };
        assert_eq!(
            forbidden(&path, "").message,
            "forbidden: User \"alice\" cannot get path \"/metrics\""
        );
    }

    #[test]
    fn modes_parse_and_chain_in_order_behind_masters() {
        assert_eq!(
            parse_modes("Node,RBAC").unwrap(),
            vec![Mode::Node, Mode::Rbac]
        );
        assert!(matches!(parse_modes("ABAC"), Err(ModeError::Unknown(_))));
        assert!(matches!(
            parse_modes("RBAC,RBAC"),
            Err(ModeError::Repeated(_))
        ));
        assert_eq!(parse_modes(""), Err(ModeError::Empty));
        let deny = build(&[Mode::AlwaysDeny]);
        let mut a = Attributes {
            user: "bob".into(),
            verb: "get".into(),
            path: Some("/healthz".into()),
            ..Attributes::default()
        };
        let e = deny.check(&a).unwrap_err();
        assert!(
            e.message.ends_with(": Everything is forbidden."),
            "{}",
            e.message
        );
        a.groups = vec![MASTERS_GROUP.into()];
        assert!(deny.check(&a).is_ok());
        // AlwaysDeny has no opinion (as upstream): a later mode still decides.
        let later = build(&[Mode::AlwaysDeny, Mode::AlwaysAllow]);
        assert!(later.check(&Attributes::default()).is_ok());
    }
}
