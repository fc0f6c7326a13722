//! The create and update rules every write goes through after decoding: identity checks,
//! server-owned metadata, admission defaults (incl. the default not-ready/unreachable pod
//! tolerations), validation, the `resourceVersion` precondition and the finalizer rule.
//!
//! Start at [`admit_create`] and [`admit_update`]. Pure: time and randomness are arguments.

use api::resources::ResourceInfo;
use api::status::{Cause, StatusError};
use rand::Rng;
use serde_json::Value;

use crate::meta::{self, Moment};
use crate::strategy::{self, UpdateScope};

/// The admission settings of an API server (kube-apiserver's DefaultTolerationSeconds plugin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// `--default-not-ready-toleration-seconds` (upstream default 300).
    pub default_not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds` (upstream default 300).
    pub default_unreachable_toleration_seconds: i64,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission {
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
        }
    }
}

/// The body's apiVersion/kind (if set) must be the resource's; its namespace the URL's.
pub fn check_identity(
    res: &ResourceInfo,
    obj: &Value,
    namespace: Option<&str>,
) -> Result<(), StatusError> {
    if !obj.is_object() {
        return Err(StatusError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): expected a JSON object",
            res.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && av != res.api_version()
    {
        return Err(StatusError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != res.kind
    {
        return Err(StatusError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): kind {kind:?} does not match",
            res.kind
        )));
    }
    if res.namespaced
        && let (Some(body_ns), Some(url_ns)) = (meta::meta_str(obj, "namespace"), namespace)
        && !body_ns.is_empty()
        && body_ns != url_ns
    {
        return Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// Upstream's NamespaceLifecycle admission for a create: new content may not enter a
/// namespace that is being deleted (`ns_obj` is the stored Namespace).
pub fn check_namespace_active(ns: &str, ns_obj: &Value) -> Result<(), StatusError> {
    if ns_obj["metadata"].get("deletionTimestamp").is_some() {
        return Err(StatusError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
            details: None,
        });
    }
    Ok(())
}

/// The Service resource (core group), whose writes allocate ClusterIPs and NodePorts.
pub fn is_service(res: &ResourceInfo) -> bool {
    res.group.is_empty() && res.kind == "Service"
}

/// The create rules after decoding: server-owned metadata (name from generateName, uid,
/// creationTimestamp, generation 1, initial status), defaults, default tolerations, validation.
pub fn admit_create(
    res: &ResourceInfo,
    namespace: Option<&str>,
    obj: &mut Value,
    adm: &Admission,
    now: Moment,
    rng: &mut impl Rng,
) -> Result<(), StatusError> {
    strategy::prepare_create(res, obj, namespace, now, rng);
    api::admit::default(res, obj);
    api::admit::daemonset::set_template_generation(res.kind, obj, None);
    if res.kind == "Pod" {
        api::admit::pod::default_tolerations(
            obj,
            adm.default_not_ready_toleration_seconds,
            adm.default_unreachable_toleration_seconds,
        );
    }
    let name = meta::name_of(obj);
    if name.is_empty() {
        return Err(StatusError::invalid(
            res,
            "",
            vec![Cause::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    let causes = api::admit::validate_create(res, obj);
    if !causes.is_empty() {
        return Err(StatusError::invalid(res, name, causes));
    }
    Ok(())
}

/// The decode checks of an update: identity, conversion, and the body's name against `name`.
pub fn decode_update(
    res: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    new: &mut Value,
) -> Result<(), StatusError> {
    check_identity(res, new, namespace)?;
    api::admit::convert(res, new)?;
    if meta::name_of(new) != name {
        return Err(StatusError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta::name_of(new)
        )));
    }
    Ok(())
}

/// The update rules before allocation and validation: the body's `resourceVersion` (if any) is
/// a precondition on `stored_revision` (409 when it differs); then defaults, the scope's
/// strategy and generation. Returns the precondition.
pub fn admit_update(
    res: &ResourceInfo,
    name: &str,
    new: &mut Value,
    old: &Value,
    scope: UpdateScope,
    stored_revision: u64,
) -> Result<Option<u64>, StatusError> {
    let precondition = meta::resource_version(new)?;
    if precondition.is_some_and(|rv| rv != stored_revision) {
        return Err(StatusError::conflict(res, name));
    }
    // Defaults first, so an update that differs from the stored spec only by omitted defaults
    // does not count as a spec change (upstream compares after defaulting).
    api::admit::default(res, new);
    strategy::prepare_update(res, new, old, scope);
    api::admit::daemonset::set_template_generation(res.kind, new, Some(old));
    Ok(precondition)
}

/// Validation of an update (after allocation, which carries over an omitted ClusterIP).
pub fn validate_update(
    res: &ResourceInfo,
    name: &str,
    new: &Value,
    old: &Value,
) -> Result<(), StatusError> {
    let causes = api::admit::validate_update(res, new, old);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid(res, name, causes))
    }
}

/// Upstream `ShouldDeleteDuringUpdate`: only an object whose delete waits for its finalizers
/// (grace 0 or none) goes with the last one; a pod in graceful termination stays through its
/// kubelet's status writes.
pub fn deletes_on_update(old: &Value, new: &Value) -> bool {
    let old_meta = &old["metadata"];
    old_meta.get("deletionTimestamp").is_some()
        && old_meta["deletionGracePeriodSeconds"]
            .as_i64()
            .is_none_or(|g| g == 0)
        && meta::finalizers(new).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;
    use rand::SeedableRng;
    use serde_json::json;

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(1)
    }

    #[test]
    fn pods_get_the_default_tolerations_and_pending_status() {
        let pods = by_plural("", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Running"}});
        let adm = Admission {
            default_not_ready_toleration_seconds: 40,
            default_unreachable_toleration_seconds: 50,
        };
        admit_create(pods, Some("d"), &mut pod, &adm, Moment::EPOCH, &mut rng()).unwrap();
        assert_eq!(pod["status"]["phase"], "Pending");
        let tols = pod["spec"]["tolerations"].as_array().unwrap();
        let secs: Vec<_> = tols
            .iter()
            .map(|t| t["tolerationSeconds"].clone())
            .collect();
        assert_eq!(secs, vec![json!(40), json!(50)]);
        assert_eq!(tols[0]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(tols[1]["key"], "node.kubernetes.io/unreachable");
    }

    #[test]
    fn a_nameless_or_invalid_object_is_rejected_with_upstream_text() {
        let svcs = by_plural("", "services").unwrap();
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        let e = admit_create(
            svcs,
            Some("d"),
            &mut svc,
            &Admission::default(),
            Moment::EPOCH,
            &mut rng(),
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert!(
            e.message.contains("name or generateName is required"),
            "{}",
            e.message
        );
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 0}]}});
        let e = admit_create(
            svcs,
            Some("d"),
            &mut svc,
            &Admission::default(),
            Moment::EPOCH,
            &mut rng(),
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("Service \"web\" is invalid: "),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_stale_resource_version_conflicts() {
        let leases = by_plural("coordination.k8s.io", "leases").unwrap();
        let old = json!({"metadata": {"name": "n1", "uid": "u"}, "spec": {}});
        let mut new = json!({"metadata": {"name": "n1", "resourceVersion": "4"}, "spec": {}});
        let e = admit_update(leases, "n1", &mut new, &old, UpdateScope::Main, 5).unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        let mut new = json!({"metadata": {"name": "n1", "resourceVersion": "5"}, "spec": {}});
        assert_eq!(
            admit_update(leases, "n1", &mut new, &old, UpdateScope::Main, 5).unwrap(),
            Some(5)
        );
        assert_eq!(new["metadata"]["uid"], "u");
    }

    #[test]
    fn the_last_finalizer_deletes_only_a_finalizer_held_object() {
        let held = json!({"metadata": {"deletionTimestamp": "t", "deletionGracePeriodSeconds": 0, "finalizers": ["f"]}});
        let done = json!({"metadata": {"finalizers": []}});
        assert!(deletes_on_update(&held, &done));
        let graceful =
            json!({"metadata": {"deletionTimestamp": "t", "deletionGracePeriodSeconds": 30}});
        assert!(!deletes_on_update(&graceful, &done));
        assert!(!deletes_on_update(&held, &held));
    }
}
