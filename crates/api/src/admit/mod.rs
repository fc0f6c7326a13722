//! Admission of incoming objects: upstream defaulting (`SetDefaults_*`) and validation
//! (`Validate*`, `Validate*Update`) for every served kind, with upstream field paths and texts.
//!
//! Start at [`default`], [`validate_create`] and [`validate_update`]; the per-kind rules live in
//! [`service`], [`pod`] (+ [`container`]), [`apps`], [`statefulset`], [`config`], [`policy`] and
//! [`other`],
//! metadata rules in [`meta`]; [`convert`] is the decode step that runs before them.

pub mod apps;
pub mod base64go;
pub mod config;
pub mod container;
pub mod daemonset;
pub mod meta;
pub mod other;
pub mod pod;
pub mod policy;
pub mod rbac;
pub mod service;
pub mod statefulset;
mod util;

use serde_json::Value;

use crate::resources::ResourceInfo;
use crate::status::{Cause, StatusError};

/// The decode step of every write, before defaulting: upstream's JSON decoding and v1 →
/// internal conversion (base64 `[]byte` fields, Secret `stringData`). Errors are 400s.
pub fn convert(res: &ResourceInfo, obj: &mut Value) -> Result<(), StatusError> {
    config::convert(res, obj)
}

/// Applies upstream's defaults for `res` to `obj` in place. Objects that are not JSON objects
/// are left alone (validation reports them).
pub fn default(res: &ResourceInfo, obj: &mut Value) {
    match (res.group, res.kind) {
        ("", "Service") => service::default(obj),
        ("", "Pod") => pod::default_pod(obj),
        ("", "Namespace") => other::default_namespace(obj),
        ("", "Node") => other::default_node(obj),
        ("", "Secret") => config::default_secret(obj),
        ("apps", "Deployment") => apps::default_deployment(obj),
        ("apps", "ReplicaSet") => apps::default_replicaset(obj),
        ("apps", "StatefulSet") => statefulset::default_statefulset(obj),
        ("apps", "DaemonSet") => daemonset::default_daemonset(obj),
        ("discovery.k8s.io", "EndpointSlice") => other::default_endpointslice(obj),
        _ => {}
    }
}

/// The kind-specific rules shared by create and update.
fn validate_kind(res: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    match (res.group, res.kind) {
        ("", "Service") => service::validate(obj),
        ("", "Pod") => {
            let empty = Value::Object(Default::default());
            pod::validate_pod_spec(obj.get("spec").unwrap_or(&empty), "spec")
        }
        ("", "Namespace") => other::validate_namespace(obj),
        ("", "Node") => other::validate_node(obj),
        ("", "Event") => other::validate_event(obj),
        ("", "ConfigMap") => config::validate_configmap(obj),
        ("", "Secret") => config::validate_secret(obj),
        ("", "ServiceAccount") => config::validate_serviceaccount(obj),
        ("policy", "PodDisruptionBudget") => policy::validate_pdb(obj),
        ("apps", "Deployment") => apps::validate_deployment(obj),
        ("apps", "ReplicaSet") => apps::validate_replicaset(obj),
        ("apps", "StatefulSet") => statefulset::validate_statefulset(obj),
        ("apps", "ControllerRevision") => statefulset::validate_controller_revision(obj),
        ("apps", "DaemonSet") => daemonset::validate_daemonset(obj),
        ("discovery.k8s.io", "EndpointSlice") => other::validate_endpointslice(obj),
        ("coordination.k8s.io", "Lease") => other::validate_lease(obj),
        (rbac::GROUP, kind) => rbac::validate_rbac(kind, obj),
        _ => Vec::new(),
    }
}

/// Validates a new (already defaulted) object of `res`; empty when it is acceptable.
pub fn validate_create(res: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    let mut out = meta::validate_meta(res, obj);
    out.extend(validate_kind(res, obj));
    out
}

/// Validates an update of `old` to `obj` (already defaulted): everything [`validate_create`]
/// checks plus upstream's immutability rules.
pub fn validate_update(res: &ResourceInfo, obj: &Value, old: &Value) -> Vec<Cause> {
    let mut out = meta::validate_meta_update(res, obj, old);
    match (res.group, res.kind) {
        ("", "Service") => out.extend(service::validate_update(obj, old)),
        ("", "Pod") => out.extend(pod::validate_pod_update(obj, old)),
        ("apps", "Deployment" | "ReplicaSet") => {
            out.extend(apps::validate_selector_update(obj, old))
        }
        ("apps", "StatefulSet") => out.extend(statefulset::validate_statefulset_update(obj, old)),
        ("apps", "ControllerRevision") => {
            out.extend(statefulset::validate_controller_revision_update(obj, old))
        }
        ("apps", "DaemonSet") => out.extend(daemonset::validate_daemonset_update(obj, old)),
        ("", kind @ ("ConfigMap" | "Secret")) => {
            out.extend(config::validate_update(kind, obj, old))
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            out.extend(other::validate_endpointslice_update(obj, old))
        }
        (rbac::GROUP, "RoleBinding" | "ClusterRoleBinding") => {
            out.extend(rbac::validate_binding_update(obj, old))
        }
        _ => {}
    }
    out.extend(validate_kind(res, obj));
    out
}

/// Each cause as its one-line text, as upstream prints it (what the tests compare).
#[cfg(test)]
pub(crate) fn cause_lines(c: &[crate::status::Cause]) -> Vec<String> {
    c.iter().map(crate::status::Cause::to_line).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::{RESOURCES, by_kind};
    use crate::status::StatusError;

    fn res(api_version: &str, kind: &str) -> &'static ResourceInfo {
        by_kind(api_version, kind).expect("served kind")
    }

    #[test]
    fn service_end_to_end_message() {
        let r = res("v1", "Service");
        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "Web_1"},
                             "spec": {"ports": [{"port": 0}]}});
        default(r, &mut svc);
        let err = StatusError::invalid(r, "Web_1", validate_create(r, &svc));
        assert_eq!(
            err.message,
            "Service \"Web_1\" is invalid: [metadata.name: Invalid value: \"Web_1\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?'), spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive]"
        );
    }

    #[test]
    fn update_checks_immutability_and_metadata() {
        let r = res("v1", "Service");
        let mut old = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
                             "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
        default(r, &mut old);
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.99");
        new["metadata"]["uid"] = json!("u2");
        let lines: Vec<String> = validate_update(r, &new, &old)
            .iter()
            .map(Cause::to_line)
            .collect();
        assert_eq!(
            lines,
            vec![
                "metadata.uid: Invalid value: \"u2\": field is immutable",
                "spec.clusterIP: Invalid value: \"10.96.0.99\": field is immutable",
            ]
        );
    }

    #[test]
    fn cluster_scoped_names_and_namespace() {
        let r = res("v1", "Namespace");
        let mut ns = json!({"metadata": {"name": "a.b"}});
        default(r, &mut ns);
        let lines: Vec<String> = validate_create(r, &ns).iter().map(Cause::to_line).collect();
        assert_eq!(
            lines[0],
            "metadata.name: Invalid value: \"a.b\": must not contain dots"
        );
        let node = res("v1", "Node");
        let errs = validate_create(node, &json!({"metadata": {"name": "n1", "namespace": "x"}}));
        assert_eq!(
            errs[0].to_line(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
    }

    #[test]
    fn every_kind_accepts_a_minimal_object() {
        for r in RESOURCES {
            let mut obj = match r.kind {
                "Service" => json!({"spec": {"ports": [{"port": 80}]}}),
                "Pod" => json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
                "Deployment" | "ReplicaSet" | "DaemonSet" => {
                    json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
                }
                "StatefulSet" => {
                    json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
                }
                "ControllerRevision" => json!({"data": {}, "revision": 1}),
                "EndpointSlice" => json!({"addressType": "IPv4"}),
                "Event" => json!({"involvedObject": {"kind": "Pod", "name": "p"}}),
                "RoleBinding" | "ClusterRoleBinding" => {
                    json!({"roleRef": {"apiGroup": rbac::GROUP, "kind": "ClusterRole", "name": "view"}})
                }
                _ => json!({}),
            };
            obj["apiVersion"] = json!(r.api_version());
            obj["kind"] = json!(r.kind);
            obj["metadata"] = json!({"name": "x"});
            default(r, &mut obj);
            assert_eq!(validate_create(r, &obj), Vec::<Cause>::new(), "{}", r.kind);
            assert_eq!(
                validate_update(r, &obj, &obj),
                Vec::<Cause>::new(),
                "{}",
                r.kind
            );
        }
    }
}
