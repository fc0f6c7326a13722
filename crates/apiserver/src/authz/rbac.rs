//! The RBAC authorizer: Roles, ClusterRoles and their bindings, evaluated as upstream's
//! `plugin/pkg/auth/authorizer/rbac` does. Start at [`Policy::build`] and [`Rbac`].
//!
//! [`Policy`] is an immutable snapshot built from the stored objects (aggregated ClusterRoles
//! resolved); [`Rbac`] rebuilds it only when the watch caches behind it changed, so a request
//! never reads the store. Pure apart from that snapshot swap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::cache::Caches;
use super::{Attributes, Authorizer, Decision, NonResourceRule, ResourceRule, Rules};

/// One policy rule (upstream `rbacv1.PolicyRule`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

pub(crate) fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Rule {
    /// A rule from its JSON form.
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// Upstream `RuleAllows`.
    pub fn allows(&self, a: &Attributes) -> bool {
        let has = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
        if !has(&self.verbs, &a.verb) {
            return false;
        }
        if let Some(path) = &a.path {
            return self.non_resource_urls.iter().any(|u| {
                u == path || u == "*" || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
            });
        }
        let combined = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let resource_ok = self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty()
                    && r.strip_prefix("*/") == Some(a.subresource.as_str()))
        });
        has(&self.api_groups, &a.api_group)
            && resource_ok
            && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }
}

/// `system:serviceaccount:NS:NAME`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// What every ServiceAccount's user name starts with.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// One binding: who gets which role, where.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Binding {
    /// Empty for a ClusterRoleBinding.
    namespace: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Value>,
}

impl Binding {
    fn from_json(v: &Value) -> Binding {
        let role = v.get("roleRef").cloned().unwrap_or(Value::Null);
        Binding {
            namespace: v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            role_kind: text(&role, "kind"),
            role_name: text(&role, "name"),
            subjects: v
                .get("subjects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Upstream `appliesToUser`.
    fn applies_to(&self, user: &str, groups: &[String]) -> bool {
        self.subjects
            .iter()
            .any(|s| match text(s, "kind").as_str() {
                "User" => text(s, "name") == user,
                "Group" => groups.contains(&text(s, "name")),
                "ServiceAccount" => {
                    let ns = match text(s, "namespace") {
                        n if n.is_empty() => self.namespace.clone(),
                        n => n,
                    };
                    service_account_user(&ns, &text(s, "name")) == user
                }
                _ => false,
            })
    }
}

/// A snapshot of every role and binding.
#[derive(Debug, Default)]
pub struct Policy {
    /// `(namespace, name)` → rules.
    roles: BTreeMap<(String, String), Vec<Rule>>,
    cluster_roles: BTreeMap<String, Vec<Rule>>,
    role_bindings: Vec<Binding>,
    cluster_role_bindings: Vec<Binding>,
}

fn name_of(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The `rules` of a Role or ClusterRole object.
pub(crate) fn rules_of(v: &Value) -> Vec<Rule> {
    v.get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Rule::from_json).collect())
        .unwrap_or_default()
}

/// The rules an aggregated ClusterRole gets: those of every other ClusterRole one of its
/// selectors matches (upstream's clusterrole-aggregation controller, computed here instead of
/// written back).
fn aggregated(role: &Value, all: &[Value]) -> Option<Vec<Rule>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")?
        .as_array()?;
    let parsed: Vec<api::selector::LabelSelector> = selectors
        .iter()
        .filter_map(|s| serde_json::from_value(s.clone()).ok())
        .filter_map(|s| api::selector::LabelSelector::from_label_selector(&s, "").ok())
        .collect();
    let me = name_of(role);
    let mut out = Vec::new();
    for other in all.iter().filter(|o| name_of(o) != me) {
        let labels = labels_of(other);
        if parsed.iter().any(|s| s.matches(&labels)) {
            for r in rules_of(other) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
    }
    Some(out)
}

impl Policy {
    /// Build from the stored Roles, ClusterRoles, RoleBindings and ClusterRoleBindings.
    pub fn build(
        roles: &[Value],
        cluster_roles: &[Value],
        role_bindings: &[Value],
        cluster_role_bindings: &[Value],
    ) -> Policy {
        let mut p = Policy::default();
        for r in roles {
            let ns = r
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            p.roles.insert((ns.to_string(), name_of(r)), rules_of(r));
        }
        for r in cluster_roles {
            let rules = aggregated(r, cluster_roles).unwrap_or_else(|| rules_of(r));
            p.cluster_roles.insert(name_of(r), rules);
        }
        p.role_bindings = role_bindings.iter().map(Binding::from_json).collect();
        p.cluster_role_bindings = cluster_role_bindings
            .iter()
            .map(Binding::from_json)
            .collect();
        p
    }

    fn role_rules(&self, b: &Binding) -> &[Rule] {
        let found = match b.role_kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&b.role_name),
            _ => self.roles.get(&(b.namespace.clone(), b.role_name.clone())),
        };
        found.map(Vec::as_slice).unwrap_or_default()
    }

    /// A ClusterRole's rules (aggregated ones computed), if it exists.
    pub fn cluster_role(&self, name: &str) -> Option<Vec<Rule>> {
        self.cluster_roles.get(name).cloned()
    }

    /// Every rule `user` holds in `namespace` (cluster-wide ones included), in binding order.
    pub fn rules_for(&self, user: &str, groups: &[String], namespace: &str) -> Vec<Rule> {
        let cluster = self.cluster_role_bindings.iter();
        let local = self
            .role_bindings
            .iter()
            .filter(|b| !namespace.is_empty() && b.namespace == namespace);
        cluster
            .chain(local)
            .filter(|b| b.applies_to(user, groups))
            .flat_map(|b| self.role_rules(b).iter().cloned())
            .collect()
    }

    /// Whether any rule `a`'s subject holds allows `a`.
    pub fn allows(&self, a: &Attributes) -> bool {
        let cluster = self
            .cluster_role_bindings
            .iter()
            .filter(|b| b.applies_to(&a.user, &a.groups));
        if cluster
            .flat_map(|b| self.role_rules(b))
            .any(|r| r.allows(a))
        {
            return true;
        }
        !a.namespace.is_empty()
            && self
                .role_bindings
                .iter()
                .filter(|b| b.namespace == a.namespace && b.applies_to(&a.user, &a.groups))
                .flat_map(|b| self.role_rules(b))
                .any(|r| r.allows(a))
    }
}

/// Rules as the rules review lists them.
pub fn to_rules(rules: &[Rule]) -> Rules {
    let mut out = Rules {
        resource: Vec::new(),
        non_resource: Vec::new(),
        incomplete: false,
    };
    for r in rules {
        if r.non_resource_urls.is_empty() {
            out.resource.push(ResourceRule {
                verbs: r.verbs.clone(),
                api_groups: r.api_groups.clone(),
                resources: r.resources.clone(),
                resource_names: r.resource_names.clone(),
            });
        } else {
            out.non_resource.push(NonResourceRule {
                verbs: r.verbs.clone(),
                urls: r.non_resource_urls.clone(),
            });
        }
    }
    out
}

/// The RBAC authorizer over the watch caches: allows what a bound rule allows, has no opinion
/// otherwise (upstream's RBAC never denies).
pub struct Rbac {
    caches: Arc<Caches>,
    snapshot: Mutex<(u64, Arc<Policy>)>,
}

impl Rbac {
    pub fn new(caches: Arc<Caches>) -> Rbac {
        Rbac {
            caches,
            snapshot: Mutex::new((u64::MAX, Arc::default())),
        }
    }

    /// The current policy, rebuilt when a cached role or binding changed since the last one.
    pub fn policy(&self) -> Arc<Policy> {
        let generation = self.caches.rbac_generation();
        let mut snap = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        if snap.0 != generation {
            let [r, cr, rb, crb] = self.caches.rbac_objects();
            *snap = (generation, Arc::new(Policy::build(&r, &cr, &rb, &crb)));
        }
        Arc::clone(&snap.1)
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, a: &Attributes) -> (Decision, String) {
        match self.policy().allows(a) {
            true => (Decision::Allow, String::new()),
            false => (Decision::NoOpinion, String::new()),
        }
    }

    fn rules_for(&self, user: &str, groups: &[String], namespace: &str) -> Rules {
        to_rules(&self.policy().rules_for(user, groups, namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(user: &str, verb: &str, ns: &str, group: &str, res: &str, sub: &str) -> Attributes {
        Attributes {
            user: user.into(),
            verb: verb.into(),
            namespace: ns.into(),
            api_group: group.into(),
            resource: res.into(),
            subresource: sub.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_names() {
        let r = Rule::from_json(
            &json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "*/status"], "resourceNames": []}),
        );
        assert!(r.allows(&attrs("a", "get", "d", "", "pods", "")));
        assert!(!r.allows(&attrs("a", "delete", "d", "", "pods", "")));
        assert!(!r.allows(&attrs("a", "get", "d", "apps", "pods", "")));
        assert!(!r.allows(&attrs("a", "get", "d", "", "pods", "log")));
        assert!(r.allows(&attrs("a", "get", "d", "", "services", "status")));
        let named = Rule::from_json(
            &json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "resourceNames": ["x"]}),
        );
        let mut a = attrs("a", "get", "d", "apps", "deployments", "scale");
        assert!(!named.allows(&a));
        a.name = "x".into();
        assert!(named.allows(&a));
        let urls =
            Rule::from_json(&json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/api/*"]}));
        let non = |p: &str| Attributes {
            verb: "get".into(),
            path: Some(p.into()),
            ..Attributes::default()
        };
        assert!(urls.allows(&non("/healthz")));
        assert!(urls.allows(&non("/api/v1")));
        assert!(!urls.allows(&non("/metrics")));
        assert!(!urls.allows(&attrs("a", "get", "", "", "healthz", "")));
    }

    #[test]
    fn bindings_grant_in_their_namespace_or_cluster_wide() {
        let role = json!({"metadata": {"name": "reader", "namespace": "team"}, "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]});
        let rb = json!({"metadata": {"name": "b", "namespace": "team"}, "roleRef": {"kind": "Role", "name": "reader"}, "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"}]});
        let cr = json!({"metadata": {"name": "nodes-reader", "labels": {"agg": "yes"}}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]}]});
        let agg = json!({"metadata": {"name": "aggregate"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]}});
        let crb = json!({"metadata": {"name": "c"}, "roleRef": {"kind": "ClusterRole", "name": "aggregate"}, "subjects": [{"kind": "Group", "name": "readers"}]});
        let p = Policy::build(&[role], &[cr, agg], &[rb], &[crb]);
        assert!(p.allows(&attrs("alice", "list", "team", "", "pods", "")));
        assert!(!p.allows(&attrs("alice", "list", "other", "", "pods", "")));
        assert!(!p.allows(&attrs("bob", "list", "team", "", "pods", "")));
        assert!(p.allows(&attrs(
            "system:serviceaccount:team:bot",
            "list",
            "team",
            "",
            "pods",
            ""
        )));
        let mut a = attrs("carol", "get", "", "", "nodes", "");
        assert!(!p.allows(&a));
        a.groups = vec!["readers".into()];
        assert!(p.allows(&a), "aggregated ClusterRole rules apply");
        assert_eq!(p.rules_for("alice", &[], "team").len(), 1);
        assert!(p.rules_for("alice", &[], "other").is_empty());
    }
}
