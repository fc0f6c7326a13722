//! Upstream's Node authorizer: a kubelet's user (`system:node:NAME` in `system:nodes`) gets the
//! `system:node` rules, its own Lease, and reads of the Secrets, ConfigMaps and
//! ServiceAccount tokens the Pods bound to it reference (the graph part, computed from the Pod
//! cache). Start at [`NodeAuthorizer`].

use std::sync::Arc;

use serde_json::Value;

use super::cache::Caches;
use super::rbac::Rule;
use super::{Attributes, Authorizer, Decision, Rules};

/// The group every node's user is in.
pub const NODES_GROUP: &str = "system:nodes";
/// The prefix of a node's user name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The namespace of the node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node a user is, if it is one (upstream's `NodeIdentifier`).
pub fn node_name<'a>(user: &'a str, groups: &[String]) -> Option<&'a str> {
    let name = user.strip_prefix(NODE_USER_PREFIX)?;
    (groups.iter().any(|g| g == NODES_GROUP) && !name.is_empty()).then_some(name)
}

/// The Node authorizer.
pub struct NodeAuthorizer {
    caches: Arc<Caches>,
    rules: Vec<Rule>,
}

/// Whether `pod` names a `kind` ("secret", "configmap", "serviceaccount") called `name`.
pub fn pod_references(pod: &Value, kind: &str, name: &str) -> bool {
    let empty = Value::Null;
    let spec = pod.get("spec").unwrap_or(&empty);
    if kind == "serviceaccount" {
        let sa = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default");
        return sa == name;
    }
    let mut found = false;
    walk(spec, &mut |key, v| {
        let named = || v.get("name").and_then(Value::as_str) == Some(name);
        found |= match (kind, key) {
            ("secret", "secretName") => v.as_str() == Some(name),
            ("secret", "secret" | "secretRef" | "secretKeyRef") => named(),
            ("configmap", "configMap" | "configMapRef" | "configMapKeyRef") => named(),
            _ => false,
        };
    });
    if kind == "secret" {
        let pulls = spec.get("imagePullSecrets").and_then(Value::as_array);
        found |= pulls
            .into_iter()
            .flatten()
            .any(|s| s.get("name").and_then(Value::as_str) == Some(name));
    }
    found
}

fn walk(v: &Value, f: &mut dyn FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                f(k, x);
                walk(x, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

impl NodeAuthorizer {
    pub fn new(caches: Arc<Caches>) -> NodeAuthorizer {
        let rules = super::bootstrap::node_rules()
            .iter()
            .map(Rule::from_json)
            .collect();
        NodeAuthorizer { caches, rules }
    }

    /// Whether a Pod bound to `node` in `namespace` references `kind`/`name`.
    fn related(&self, node: &str, namespace: &str, kind: &str, name: &str) -> bool {
        self.caches.pods.any(|p| {
            p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
                && p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
                && pod_references(p, kind, name)
        })
    }

    fn graph(&self, node: &str, a: &Attributes, kind: &str) -> (Decision, String) {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return no("can only read resources of this type");
        }
        if a.name.is_empty() {
            return no("No Object name found");
        }
        if self.related(node, &a.namespace, kind, &a.name) {
            return (Decision::Allow, String::new());
        }
        no(&format!(
            "no relationship found between node '{node}' and this object"
        ))
    }

    fn lease(&self, node: &str, a: &Attributes) -> (Decision, String) {
        if !matches!(
            a.verb.as_str(),
            "get" | "create" | "update" | "patch" | "delete"
        ) {
            return no("can only get, create, update, patch, or delete a node lease");
        }
        if a.namespace != NODE_LEASE_NAMESPACE {
            return no(&format!(
                "can only access leases in the \"{NODE_LEASE_NAMESPACE}\" namespace"
            ));
        }
        if a.verb != "create" && a.name != node {
            return no("can only access node lease with the same name as the requesting node");
        }
        (Decision::Allow, String::new())
    }
}

fn no(reason: &str) -> (Decision, String) {
    (Decision::NoOpinion, reason.to_string())
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, a: &Attributes) -> (Decision, String) {
        let Some(node) = node_name(&a.user, &a.groups) else {
            return (Decision::NoOpinion, String::new());
        };
        if a.path.is_none() {
            match (
                a.api_group.as_str(),
                a.resource.as_str(),
                a.subresource.as_str(),
            ) {
                ("", "secrets", "") => return self.graph(node, a, "secret"),
                ("", "configmaps", "") => return self.graph(node, a, "configmap"),
                ("", "serviceaccounts", "token") if a.verb == "create" => {
                    return match self.related_any_namespace(node, a) {
                        true => (Decision::Allow, String::new()),
                        false => no(&format!(
                            "no relationship found between node '{node}' and this object"
                        )),
                    };
                }
                ("coordination.k8s.io", "leases", "") => return self.lease(node, a),
                _ => {}
            }
        }
        match self.rules.iter().any(|r| r.allows(a)) {
            true => (Decision::Allow, String::new()),
            false => (Decision::NoOpinion, String::new()),
        }
    }

    fn rules_for(&self, user: &str, groups: &[String], _namespace: &str) -> Rules {
        match node_name(user, groups) {
            Some(_) => {
                let mut r = super::rbac::to_rules(&self.rules);
                // The graph-based reads are not expressible as rules.
                r.incomplete = true;
                r
            }
            None => super::rbac::to_rules(&[]),
        }
    }
}

impl NodeAuthorizer {
    fn related_any_namespace(&self, node: &str, a: &Attributes) -> bool {
        self.related(node, &a.namespace, "serviceaccount", &a.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_names_need_the_group() {
        let g = vec![NODES_GROUP.to_string()];
        assert_eq!(node_name("system:node:a", &g), Some("a"));
        assert_eq!(node_name("system:node:a", &[]), None);
        assert_eq!(node_name("alice", &g), None);
    }

    #[test]
    fn pod_references_find_volumes_env_and_pull_secrets() {
        let pod = json!({"spec": {
            "volumes": [{"name": "v", "secret": {"secretName": "s1"}}, {"name": "c", "configMap": {"name": "cm1"}}],
            "containers": [{"name": "x", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}],
                            "envFrom": [{"configMapRef": {"name": "cm2"}}]}],
            "imagePullSecrets": [{"name": "pull"}],
            "serviceAccountName": "bot"}});
        for s in ["s1", "s2", "pull"] {
            assert!(pod_references(&pod, "secret", s), "{s}");
        }
        assert!(!pod_references(&pod, "secret", "cm1"));
        assert!(pod_references(&pod, "configmap", "cm1"));
        assert!(pod_references(&pod, "configmap", "cm2"));
        assert!(!pod_references(&pod, "configmap", "s1"));
        assert!(pod_references(&pod, "serviceaccount", "bot"));
        assert!(pod_references(
            &json!({"spec": {}}),
            "serviceaccount",
            "default"
        ));
    }
}
