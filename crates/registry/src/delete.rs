//! The delete rules: `DeleteOptions`, preconditions, and whether a delete removes an object or
//! only marks it (graceful pod deletion, finalizers, namespaces waiting for their content).
//!
//! Start at [`plan_delete`]. Pure: time is an argument.

use std::time::Duration;

use api::resources::{self, ResourceInfo};
use api::status::{Cause, StatusError};
use serde_json::{Value, json};

use crate::meta::{self, Moment};

/// `DeleteOptions` as a delete or an eviction carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub grace_seconds: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// The options a JSON `DeleteOptions` object carries (a DELETE body, an eviction's
    /// `deleteOptions`).
    pub fn from_json(body: &Value) -> DeleteOptions {
        let mut o = DeleteOptions {
            grace_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation: body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            ..DeleteOptions::default()
        };
        if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            o.propagation = Some("Orphan".into());
        }
        let pre = &body["preconditions"];
        o.uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
        o.resource_version = pre
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        o
    }

    /// `propagationPolicy` must be one upstream knows (422 otherwise).
    pub fn validate(&self) -> Result<(), StatusError> {
        if let Some(p) = &self.propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(StatusError::invalid(
                resources::by_plural("", "namespaces").ok_or_else(StatusError::path_not_found)?,
                "",
                vec![Cause::not_supported(
                    "propagationPolicy",
                    &json!(p),
                    &["Foreground", "Background", "Orphan"],
                )],
            ));
        }
        Ok(())
    }

    /// Dependents are released, not deleted.
    pub fn orphans(&self) -> bool {
        self.propagation.as_deref() == Some("Orphan")
    }
}

/// Namespaces the API server refuses to delete.
pub const UNDELETABLE_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// 403 for a namespace that may not be deleted.
pub fn check_deletable(res: &ResourceInfo, name: &str) -> Result<(), StatusError> {
    if res.kind == "Namespace" && UNDELETABLE_NAMESPACES.contains(&name) {
        return Err(StatusError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ),
            details: None,
        });
    }
    Ok(())
}

/// The uid and resourceVersion preconditions of `o` against the stored `obj`.
pub fn check_preconditions(
    res: &ResourceInfo,
    name: &str,
    obj: &Value,
    o: &DeleteOptions,
) -> Result<(), StatusError> {
    let uid = meta::meta_str(obj, "uid").unwrap_or("");
    if let Some(want) = &o.uid
        && want != uid
    {
        return Err(StatusError::conflict_with(
            res,
            name,
            &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
        ));
    }
    let rv = meta::meta_str(obj, "resourceVersion").unwrap_or("");
    if let Some(want) = &o.resource_version
        && want != rv
    {
        return Err(StatusError::conflict_with(
            res,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
            ),
        ));
    }
    Ok(())
}

/// `Some(grace)`: mark the object deleted (and keep it) instead of removing it. Bound pods wait
/// for their kubelet; objects with finalizers wait for their finalizers; namespaces for their
/// content. An unscheduled or finished pod, or grace 0, goes at once.
pub fn deletion_mark(res: &ResourceInfo, obj: &Value, o: &DeleteOptions) -> Option<i64> {
    if res.kind == "Namespace" {
        return obj["metadata"]
            .get("deletionTimestamp")
            .is_none()
            .then_some(0);
    }
    if !meta::finalizers(obj).is_empty() {
        return Some(o.grace_seconds.unwrap_or(0));
    }
    if res.kind == "Pod" {
        let bound = obj["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let default = obj["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        let current = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
        let grace = o.grace_seconds.unwrap_or(current.unwrap_or(default)).max(0);
        let finished = matches!(
            obj["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if bound && grace > 0 && !finished {
            return Some(grace.min(current.unwrap_or(grace)));
        }
    }
    None
}

/// Set `deletionTimestamp` (now + grace) and `deletionGracePeriodSeconds` on `obj` (kept when
/// already set, unless grace is 0); a namespace turns `Terminating`.
pub fn mark_deleted(res: &ResourceInfo, obj: &mut Value, grace: i64, now: Moment) {
    if let Some(meta) = meta::metadata_mut(obj)
        && (!meta.contains_key("deletionTimestamp") || grace == 0)
    {
        let span = Duration::from_secs(grace.unsigned_abs());
        let at = if grace >= 0 { now + span } else { now - span };
        meta.insert("deletionTimestamp".into(), json!(meta::timestamp(at)));
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    }
    if res.kind == "Namespace" {
        obj["status"]["phase"] = json!("Terminating");
    }
}

/// What a delete does to the stored object.
#[derive(Clone, Debug, PartialEq)]
pub enum DeletePlan {
    /// Keep it, updated to this (marked for deletion).
    Mark(Value),
    /// Remove it from the store.
    Remove,
}

/// The delete rules for the stored `obj`: preconditions, then mark or remove.
pub fn plan_delete(
    res: &ResourceInfo,
    name: &str,
    obj: &Value,
    o: &DeleteOptions,
    now: Moment,
) -> Result<DeletePlan, StatusError> {
    check_preconditions(res, name, obj, o)?;
    Ok(match deletion_mark(res, obj, o) {
        Some(grace) => {
            let mut marked = obj.clone();
            mark_deleted(res, &mut marked, grace, now);
            DeletePlan::Mark(marked)
        }
        None => DeletePlan::Remove,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;

    fn pods() -> &'static ResourceInfo {
        by_plural("", "pods").unwrap()
    }

    #[test]
    fn a_bound_pod_is_marked_with_its_grace_period() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}});
        let plan = plan_delete(
            pods(),
            "p",
            &pod,
            &DeleteOptions::default(),
            Moment::from_millis(1_000),
        )
        .unwrap();
        let DeletePlan::Mark(m) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(m["metadata"]["deletionTimestamp"], "1970-01-01T00:00:11Z");
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 10);
    }

    #[test]
    fn unscheduled_finished_or_grace_zero_pods_go_at_once() {
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(
            plan_delete(
                pods(),
                "p",
                &unbound,
                &DeleteOptions::default(),
                Moment::EPOCH
            )
            .unwrap(),
            DeletePlan::Remove
        );
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n"}});
        let now = DeleteOptions {
            grace_seconds: Some(0),
            ..DeleteOptions::default()
        };
        assert_eq!(
            plan_delete(pods(), "p", &bound, &now, Moment::EPOCH).unwrap(),
            DeletePlan::Remove
        );
        let done = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(
            plan_delete(pods(), "p", &done, &DeleteOptions::default(), Moment::EPOCH).unwrap(),
            DeletePlan::Remove
        );
    }

    #[test]
    fn a_second_delete_shortens_but_never_lengthens_the_grace() {
        let pod = json!({"metadata": {"name": "p", "deletionTimestamp": "x", "deletionGracePeriodSeconds": 5}, "spec": {"nodeName": "n"}});
        let longer = DeleteOptions {
            grace_seconds: Some(60),
            ..DeleteOptions::default()
        };
        assert_eq!(deletion_mark(pods(), &pod, &longer), Some(5));
    }

    #[test]
    fn finalizers_hold_and_preconditions_conflict() {
        let cm = by_plural("", "configmaps").unwrap();
        let obj = json!({"metadata": {"name": "c", "uid": "u1", "resourceVersion": "3", "finalizers": ["x"]}});
        let DeletePlan::Mark(m) =
            plan_delete(cm, "c", &obj, &DeleteOptions::default(), Moment::EPOCH).unwrap()
        else {
            panic!()
        };
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 0);
        let wrong = DeleteOptions {
            uid: Some("u2".into()),
            ..DeleteOptions::default()
        };
        let e = plan_delete(cm, "c", &obj, &wrong, Moment::EPOCH).unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on configmaps \"c\": Precondition failed: UID in precondition: u2, UID in object meta: u1"
        );
    }

    #[test]
    fn system_namespaces_and_unknown_propagation_are_refused() {
        let ns = by_plural("", "namespaces").unwrap();
        assert_eq!(check_deletable(ns, "default").unwrap_err().code, 403);
        assert!(check_deletable(ns, "team-a").is_ok());
        let bad = DeleteOptions {
            propagation: Some("Sideways".into()),
            ..DeleteOptions::default()
        };
        assert_eq!(bad.validate().unwrap_err().code, 422);
    }
}
