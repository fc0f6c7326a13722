//! Upstream's NodeRestriction admission plugin: a node's user may modify only its own Node
//! (without the labels upstream reserves), its own Lease, and the Pods bound to it (status,
//! eviction, mirror pods), with upstream's texts. Start at [`admit`]; the rules are the pure
//! [`check`].
//!
//! Runs before the write from the request (for a patch: the patch applied to the stored
//! object), where upstream runs it in the admission chain on the object being written.

use std::collections::BTreeMap;

use api::status::StatusError;
use http::Method;
use serde_json::Value;

use crate::authz::node::{NODE_LEASE_NAMESPACE, node_name};
use crate::handlers::Ctx;
use crate::path::ResourceTarget;
use crate::server::Server;

/// The annotation that marks a mirror pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Labels a kubelet may set in the reserved `kubernetes.io`/`k8s.io` namespaces (upstream's
/// `kubeletapis.IsKubeletLabel`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

fn in_domain(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.ends_with(&format!(".{domain}"))
}

/// Whether a node may not set label `key` (upstream `getForbiddenLabels`).
pub fn forbidden_label(key: &str) -> bool {
    let Some((namespace, _)) = key.split_once('/') else {
        return false;
    };
    if in_domain(namespace, "node-restriction.kubernetes.io") {
        return true;
    }
    let reserved = in_domain(namespace, "kubernetes.io") || in_domain(namespace, "k8s.io");
    let kubelet = KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_NAMESPACES
            .iter()
            .any(|d| in_domain(namespace, d));
    reserved && !kubelet
}

fn labels(obj: Option<&Value>) -> BTreeMap<String, String> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// What the node asked to do, with the objects involved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// One request as the plugin sees it.
pub struct Request<'a> {
    pub node: &'a str,
    pub op: Operation,
    pub t: &'a ResourceTarget,
    pub name: &'a str,
    /// The object as it would be written (create/update).
    pub new: Option<&'a Value>,
    /// The stored object (update/delete).
    pub old: Option<&'a Value>,
}

fn forbid(r: &Request<'_>, why: String) -> StatusError {
    StatusError::forbidden(r.t.res, r.name, &why)
}

fn node_of(pod: Option<&Value>) -> &str {
    pod.and_then(|p| p.pointer("/spec/nodeName"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The plugin's decision on one request by a node's user.
pub fn check(r: &Request<'_>) -> Result<(), StatusError> {
    let node = r.node;
    let sub = r.t.subresource.as_deref().unwrap_or_default();
    match (r.t.res.group, r.t.res.plural) {
        ("", "nodes") => check_node(r),
        ("coordination.k8s.io", "leases") => {
            if r.t.namespace.as_deref() != Some(NODE_LEASE_NAMESPACE) {
                return Err(forbid(
                    r,
                    format!("can only access leases in the {NODE_LEASE_NAMESPACE:?} namespace"),
                ));
            }
            if r.name != node {
                return Err(forbid(
                    r,
                    "can only access node lease with the same name as the requesting node".into(),
                ));
            }
            Ok(())
        }
        ("", "pods") => match (sub, r.op) {
            ("", Operation::Create) => {
                let mirror = r
                    .new
                    .and_then(|p| p.pointer("/metadata/annotations"))
                    .and_then(|a| a.get(MIRROR_ANNOTATION))
                    .is_some();
                if !mirror {
                    return Err(forbid(
                        r,
                        format!(
                            "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
                        ),
                    ));
                }
                if node_of(r.new) != node {
                    return Err(forbid(
                        r,
                        format!(
                            "node {node:?} can only create pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                Ok(())
            }
            ("", Operation::Delete) if node_of(r.old) != node => Err(forbid(
                r,
                format!("node {node:?} can only delete pods with spec.nodeName set to itself"),
            )),
            ("", Operation::Delete) => Ok(()),
            ("", op) => Err(forbid(
                r,
                format!(
                    "unexpected operation {op:?}, node {node:?} can only create and delete mirror pods"
                ),
            )),
            ("status", _) if node_of(r.old) != node => Err(forbid(
                r,
                format!(
                    "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                ),
            )),
            ("eviction", _) if node_of(r.old) != node => Err(forbid(
                r,
                format!("node {node:?} can only evict pods with spec.nodeName set to itself"),
            )),
            ("status" | "eviction", _) => Ok(()),
            (other, _) => Err(forbid(
                r,
                format!(
                    "unexpected subresource {other:?}, only 'status' and 'eviction' are allowed"
                ),
            )),
        },
        _ => Ok(()),
    }
}

fn check_node(r: &Request<'_>) -> Result<(), StatusError> {
    let node = r.node;
    if r.name != node {
        return Err(forbid(
            r,
            format!("node {node:?} is not allowed to modify node {:?}", r.name),
        ));
    }
    match r.op {
        Operation::Create => {
            let bad: Vec<String> = labels(r.new)
                .into_keys()
                .filter(|k| forbidden_label(k))
                .collect();
            if !bad.is_empty() {
                return Err(forbid(
                    r,
                    format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
        }
        // A status write (or a patch whose result is unknown yet) cannot change labels or taints
        // here: the main resource's rules do not apply.
        Operation::Update if r.new.is_none() || r.t.subresource.is_some() => {}
        Operation::Update => {
            let (new, old) = (labels(r.new), labels(r.old));
            let mut keys: Vec<&String> = new.keys().chain(old.keys()).collect();
            keys.sort();
            keys.dedup();
            let bad: Vec<&str> = keys
                .into_iter()
                .filter(|k| forbidden_label(k) && new.get(*k) != old.get(*k))
                .map(String::as_str)
                .collect();
            if !bad.is_empty() {
                return Err(forbid(
                    r,
                    format!(
                        "node {node:?} is not allowed to modify labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
            let taints = |o: Option<&Value>| o.and_then(|o| o.pointer("/spec/taints")).cloned();
            if taints(r.new) != taints(r.old) {
                return Err(forbid(
                    r,
                    format!("node {node:?} is not allowed to modify taints"),
                ));
            }
        }
        Operation::Delete => {}
    }
    Ok(())
}

/// Run the plugin for a request (nodes' users only; others pass untouched).
pub async fn admit(server: &Server, t: &ResourceTarget, ctx: &Ctx) -> Result<(), StatusError> {
    let Some(node) = node_name(&ctx.user.name, &ctx.user.groups) else {
        return Ok(());
    };
    if (t.res.group, t.res.plural, t.subresource.as_deref())
        == ("", "serviceaccounts", Some("token"))
    {
        return match ctx.method {
            Method::POST => admit_token(server, t, ctx, node).await,
            _ => Ok(()),
        };
    }
    let op = match ctx.method {
        Method::POST if t.subresource.as_deref() == Some("eviction") => Operation::Create,
        Method::POST if t.name.is_none() => Operation::Create,
        Method::PUT | Method::PATCH => Operation::Update,
        Method::DELETE => Operation::Delete,
        _ => return Ok(()),
    };
    let watched = matches!(
        (t.res.group, t.res.plural),
        ("", "nodes" | "pods") | ("coordination.k8s.io", "leases")
    );
    if !watched {
        return Ok(());
    }
    let new_body = match (op, &ctx.method) {
        (Operation::Create, _) | (_, &Method::PUT) => ctx.body_json().ok(),
        _ => None,
    };
    let name = t
        .name
        .clone()
        .or_else(|| {
            new_body
                .as_ref()
                .map(|b| crate::objects::name_of(b).to_string())
        })
        .unwrap_or_default();
    let old = match t.name.as_deref() {
        Some(n) => match crate::handlers::current(server, t, n).await {
            Ok((_, obj)) => Some(obj),
            Err(e) if e.code == 404 => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let new = match (&ctx.method, &old) {
        (&Method::PATCH, Some(old)) if t.subresource.is_none() => {
            let patch = crate::negotiate::decode_body(&ctx.body, ctx.body_type()?)?;
            Some(crate::handlers::apply_patch(
                t.res,
                old,
                &patch,
                ctx.body_type()?,
            )?)
        }
        _ => new_body,
    };
    check(&Request {
        node,
        op,
        t,
        name: &name,
        new: new.as_ref(),
        old: old.as_ref(),
    })
}

/// A node's TokenRequest must be bound to a pod scheduled on that node (upstream's
/// `admitServiceAccount`): a kubelet mints tokens only for its own pods.
async fn admit_token(
    server: &Server,
    t: &ResourceTarget,
    ctx: &Ctx,
    node: &str,
) -> Result<(), StatusError> {
    let body = ctx.body_json()?;
    let name = t.name.as_deref().unwrap_or_default();
    let r = Request {
        node,
        op: Operation::Create,
        t,
        name,
        new: Some(&body),
        old: None,
    };
    let bound = body.pointer("/spec/boundObjectRef");
    let field = |k: &str| {
        bound
            .and_then(|b| b.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if field("apiVersion") != "v1" || field("kind") != "Pod" || field("name").is_empty() {
        return Err(forbid(&r, "node requested token not bound to a pod".into()));
    }
    let uid = field("uid");
    if uid.is_empty() {
        return Err(forbid(
            &r,
            "node requested token with a pod binding without a uid".into(),
        ));
    }
    let pods = ResourceTarget {
        res: api::resources::by_plural("", "pods").expect("pods are served"),
        namespace: t.namespace.clone(),
        name: Some(field("name").to_string()),
        subresource: None,
        watch_path: false,
    };
    let (_, pod) = crate::handlers::current(server, &pods, field("name")).await?;
    if pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
        return Err(forbid(
            &r,
            format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    if node_of(Some(&pod)) != node {
        return Err(forbid(
            &r,
            "node requested token bound to a pod scheduled on a different node".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reserved_labels() {
        assert!(forbidden_label("node-restriction.kubernetes.io/x"));
        assert!(forbidden_label("foo.node-restriction.kubernetes.io/x"));
        assert!(forbidden_label("node-role.kubernetes.io/master"));
        assert!(forbidden_label("example.k8s.io/a"));
        assert!(!forbidden_label("kubernetes.io/hostname"));
        assert!(!forbidden_label("topology.kubernetes.io/zone"));
        assert!(!forbidden_label(
            "node.kubernetes.io/exclude-from-external-load-balancers"
        ));
        assert!(!forbidden_label("kubelet.kubernetes.io/x"));
        assert!(!forbidden_label("example.com/a"));
        assert!(!forbidden_label("plain"));
    }

    fn target(path: &str) -> ResourceTarget {
        match crate::path::parse(path).unwrap() {
            crate::path::Target::Resource(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_node_modifies_only_itself_without_reserved_labels() {
        let t = target("/api/v1/nodes/n2");
        let req = |name, new, old| Request {
            node: "n1",
            op: Operation::Update,
            t: &t,
            name,
            new,
            old,
        };
        let e = check(&req("n2", None, None)).unwrap_err();
        assert_eq!(
            e.message,
            "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
        );
        let old = json!({"metadata": {"labels": {"node-role.kubernetes.io/x": "a"}}});
        let new = json!({"metadata": {"labels": {"node-role.kubernetes.io/x": "b", "team": "x"}}});
        let e = check(&req("n1", Some(&new), Some(&old))).unwrap_err();
        assert_eq!(
            e.message,
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify labels: node-role.kubernetes.io/x"
        );
        let same = json!({"metadata": {"labels": {"node-role.kubernetes.io/x": "a", "team": "y"}}});
        assert!(check(&req("n1", Some(&same), Some(&old))).is_ok());
    }

    #[test]
    fn pods_leases_by_binding_and_name() {
        let status = target("/api/v1/namespaces/d/pods/p/status");
        let theirs = json!({"spec": {"nodeName": "n2"}});
        let r = Request {
            node: "n1",
            op: Operation::Update,
            t: &status,
            name: "p",
            new: None,
            old: Some(&theirs),
        };
        assert_eq!(
            check(&r).unwrap_err().message,
            "pods \"p\" is forbidden: node \"n1\" can only update pod status for pods with spec.nodeName set to itself"
        );
        let lease = target("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2");
        let r = Request {
            node: "n1",
            op: Operation::Update,
            t: &lease,
            name: "n2",
            new: None,
            old: None,
        };
        assert_eq!(
            check(&r).unwrap_err().message,
            "leases.coordination.k8s.io \"n2\" is forbidden: can only access node lease with the same name as the requesting node"
        );
    }
}
