//! Upstream's bootstrap RBAC policy (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`): the
//! default ClusterRoles and ClusterRoleBindings, as data, created at start when missing.
//!
//! Start at [`cluster_roles`] and [`cluster_role_bindings`]; [`ensure`] writes them.

use serde_json::{Value, json};

use crate::handlers::{FieldValidation, WriteOptions, create_object};
use crate::server::Server;

const R: &[&str] = &["get", "list", "watch"];
const W: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const RW: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "delete",
    "deletecollection",
    "patch",
    "update",
];

/// A resource rule.
fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources, "resourceNames": names})
}

fn urls(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

/// Upstream's `eventsRule()`.
fn events() -> Value {
    rule(
        &["create", "update", "patch"],
        &["", "events.k8s.io"],
        &["events"],
    )
}

const AGG: &str = "rbac.authorization.k8s.io/aggregate-to-";

/// The rules of upstream's `system:node` ClusterRole (the Node authorizer's static part).
pub fn node_rules() -> Vec<Value> {
    vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(R, &[""], &["services"]),
        rule(&["create", "get", "list", "watch"], &[""], &["nodes"]),
        rule(&["update", "patch"], &[""], &["nodes/status"]),
        rule(&["update", "patch"], &[""], &["nodes"]),
        rule(&["create", "update", "patch"], &[""], &["events"]),
        rule(R, &[""], &["pods"]),
        rule(&["create", "delete"], &[""], &["pods"]),
        rule(&["update", "patch"], &[""], &["pods/status"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(R, &[""], &["secrets", "configmaps"]),
        rule(
            &["get"],
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["get"], &[""], &["endpoints"]),
        rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        rule(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
    ]
}

/// `system:kube-controller-manager`: upstream's rules, plus the writes of every controller
/// zonelab runs. Upstream gives those to one ServiceAccount per controller
/// (`--use-service-account-credentials`); zonelab's controllers run as one process with one
/// user, so its role holds their union.
fn controller_manager_rules() -> Vec<Value> {
    vec![
        events(),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-controller-manager"],
        ),
        rule(&["create"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["delete"], &[""], &["secrets"]),
        rule(
            &["get"],
            &[""],
            &["configmaps", "namespaces", "secrets", "serviceaccounts"],
        ),
        rule(&["update"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        rule(&["list", "watch"], &["*"], &["*"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        // The per-controller roles' writes, for the single controller user.
        rule(
            RW,
            &[""],
            &[
                "pods",
                "pods/status",
                "pods/binding",
                "pods/eviction",
                "nodes",
                "nodes/status",
                "services",
                "services/status",
                "endpoints",
                "namespaces",
                "namespaces/status",
                "namespaces/finalize",
                "serviceaccounts",
                "configmaps",
            ],
        ),
        rule(RW, &["discovery.k8s.io"], &["endpointslices"]),
        rule(RW, &["coordination.k8s.io"], &["leases"]),
        rule(
            RW,
            &["apps"],
            &[
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/status",
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
            ],
        ),
        rule(
            RW,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
    ]
}

fn scheduler_rules() -> Vec<Value> {
    vec![
        events(),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-scheduler"],
        ),
        rule(R, &[""], &["nodes"]),
        rule(&["get", "list", "watch", "delete"], &[""], &["pods"]),
        rule(&["create"], &[""], &["pods/binding", "bindings"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(R, &[""], &["replicationcontrollers", "services"]),
        rule(R, &["apps", "extensions"], &["replicasets"]),
        rule(R, &["apps"], &["statefulsets"]),
        rule(R, &["policy"], &["poddisruptionbudgets"]),
        rule(R, &[""], &["persistentvolumeclaims", "persistentvolumes"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        rule(
            R,
            &["storage.k8s.io"],
            &["csinodes", "csidrivers", "csistoragecapacities"],
        ),
        rule(R, &[""], &["namespaces"]),
    ]
}

fn view_rules() -> Vec<Value> {
    vec![
        rule(
            R,
            &[""],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        rule(
            R,
            &[""],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        rule(R, &[""], &["namespaces"]),
        rule(R, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            R,
            &["apps"],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
            ],
        ),
        rule(
            R,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            R,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        rule(
            R,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            R,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
    ]
}

fn edit_rules() -> Vec<Value> {
    vec![
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            W,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
            ],
        ),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            W,
            &[""],
            &[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            W,
            &["apps"],
            &[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        rule(W, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(W, &["batch"], &["jobs", "cronjobs"]),
        rule(W, &["policy"], &["poddisruptionbudgets"]),
        rule(W, &["networking.k8s.io"], &["networkpolicies", "ingresses"]),
        rule(W, &["coordination.k8s.io"], &["leases"]),
        rule(
            R,
            &[""],
            &[
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
                "secrets",
                "services/proxy",
            ],
        ),
    ]
}

fn admin_rules() -> Vec<Value> {
    vec![
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
        rule(
            RW,
            &["rbac.authorization.k8s.io"],
            &["roles", "rolebindings"],
        ),
    ]
}

fn meta(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta(name, labels),
        "rules": rules,
    })
}

fn aggregate(name: &str, to: &[&str], labels: &[(&str, &str)]) -> Value {
    let selectors: Vec<Value> = to
        .iter()
        .map(|t| json!({"matchLabels": {format!("{AGG}{t}"): "true"}}))
        .collect();
    let mut role = cluster_role(name, labels, Vec::new());
    role["aggregationRule"] = json!({"clusterRoleSelectors": selectors});
    role
}

/// Upstream's default ClusterRoles (the ones zonelab's components and users need).
pub fn cluster_roles() -> Vec<Value> {
    let all = &["*"];
    let health = &["/livez", "/readyz", "/healthz", "/version", "/version/"];
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![rule(all, all, all), urls(all, all)],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![urls(
                &["get"],
                &[
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/version",
                    "/version/",
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/openapi",
                    "/openapi/*",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![urls(&["get"], health)],
        ),
        cluster_role(
            "system:monitoring",
            &[],
            vec![urls(
                &["get"],
                &[
                    "/metrics",
                    "/metrics/slis",
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/livez/*",
                    "/readyz/*",
                    "/healthz/*",
                ],
            )],
        ),
        aggregate("admin", &["admin"], &[]),
        aggregate("edit", &["edit"], &[(&format!("{AGG}admin"), "true")]),
        aggregate(
            "view",
            &["view"],
            &[
                (&format!("{AGG}admin"), "true"),
                (&format!("{AGG}edit"), "true"),
            ],
        ),
        cluster_role(
            "system:aggregate-to-admin",
            &[(&format!("{AGG}admin"), "true")],
            admin_rules(),
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[
                (&format!("{AGG}admin"), "true"),
                (&format!("{AGG}edit"), "true"),
            ],
            edit_rules(),
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[
                (&format!("{AGG}admin"), "true"),
                (&format!("{AGG}edit"), "true"),
                (&format!("{AGG}view"), "true"),
            ],
            view_rules(),
        ),
        cluster_role("system:node", &[], node_rules()),
        cluster_role(
            "system:node-proxier",
            &[],
            vec![
                rule(R, &[""], &["services", "endpoints"]),
                rule(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
                events(),
                rule(&["list", "watch", "get"], &[""], &["nodes"]),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            &[],
            controller_manager_rules(),
        ),
        cluster_role("system:kube-scheduler", &[], scheduler_rules()),
    ]
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": meta(name, &[]),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

/// Upstream's default ClusterRoleBindings. `system:node` is bound to nobody, as upstream:
/// the Node authorizer grants nodes their rules.
pub fn cluster_role_bindings() -> Vec<Value> {
    use crate::authn::{AUTHENTICATED_GROUP, MASTERS_GROUP, UNAUTHENTICATED_GROUP};
    vec![
        binding(
            "cluster-admin",
            "cluster-admin",
            json!([group(MASTERS_GROUP)]),
        ),
        binding(
            "system:discovery",
            "system:discovery",
            json!([group(AUTHENTICATED_GROUP)]),
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            json!([group(AUTHENTICATED_GROUP)]),
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([group(AUTHENTICATED_GROUP), group(UNAUTHENTICATED_GROUP)]),
        ),
        binding(
            "system:monitoring",
            "system:monitoring",
            json!([group("system:monitoring")]),
        ),
        binding("system:node", "system:node", json!([])),
        binding(
            "system:node-proxier",
            "system:node-proxier",
            json!([user("system:kube-proxy")]),
        ),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            json!([user("system:kube-controller-manager")]),
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            json!([user("system:kube-scheduler")]),
        ),
    ]
}

/// Create every bootstrap ClusterRole and ClusterRoleBinding that is missing (an existing one,
/// changed by the user or not, is left alone; a restart duplicates nothing).
pub async fn ensure(server: &Server) -> Result<(), api::status::StatusError> {
    let opts = WriteOptions {
        dry_run: false,
        field_validation: FieldValidation::Ignore,
    };
    let group = api::admit::rbac::GROUP;
    let kinds = [
        ("clusterroles", cluster_roles()),
        ("clusterrolebindings", cluster_role_bindings()),
    ];
    for (plural, objects) in kinds {
        let res = api::resources::by_plural(group, plural)
            .ok_or_else(api::status::StatusError::path_not_found)?;
        for obj in objects {
            let name = crate::objects::name_of(&obj).to_string();
            let key = crate::objects::key(res, None, &name);
            let exists = server
                .store
                .get(&key)
                .await
                .map_err(crate::handlers::store_failure)?;
            if exists.is_some() {
                continue;
            }
            match create_object(server, res, None, obj, opts).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_objects_are_valid_and_labelled() {
        let cr = api::resources::by_plural(api::admit::rbac::GROUP, "clusterroles").unwrap();
        for r in cluster_roles() {
            assert!(api::admit::validate_create(cr, &r).is_empty(), "{r}");
            assert_eq!(
                r["metadata"]["labels"]["kubernetes.io/bootstrapping"],
                "rbac-defaults"
            );
        }
        let crb =
            api::resources::by_plural(api::admit::rbac::GROUP, "clusterrolebindings").unwrap();
        for b in cluster_role_bindings() {
            assert!(api::admit::validate_create(crb, &b).is_empty(), "{b}");
        }
    }

    #[test]
    fn view_edit_admin_aggregate() {
        let p = super::super::rbac::Policy::build(&[], &cluster_roles(), &[], &[]);
        let n = |role: &str| {
            let b = json!({"metadata": {"name": "b", "namespace": "ns"}, "roleRef": {"kind": "ClusterRole", "name": role}, "subjects": [{"kind": "User", "name": "u"}]});
            super::super::rbac::Policy::build(&[], &cluster_roles(), &[b], &[]).rules_for(
                "u",
                &[],
                "ns",
            )
        };
        drop(p);
        let (view, edit, admin) = (n("view").len(), n("edit").len(), n("admin").len());
        assert!(
            view > 0 && edit > view && admin > edit,
            "{view} {edit} {admin}"
        );
    }
}
