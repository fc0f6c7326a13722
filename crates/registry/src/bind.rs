//! The `pods/binding` rules: a pod is assigned to a node once, never while being deleted, and
//! gets its `PodScheduled` condition.
//!
//! Start at [`bind`]. Pure: time is an argument.

use api::resources::ResourceInfo;
use api::status::{Cause, StatusError};
use serde_json::{Value, json};

use crate::meta::{self, Moment};

/// The node a `Binding` body targets; 422 when it names none.
pub fn binding_target(res: &ResourceInfo, name: &str, body: &Value) -> Result<String, StatusError> {
    let node = body["target"]["name"].as_str().unwrap_or("");
    if node.is_empty() {
        return Err(StatusError::invalid(
            res,
            name,
            vec![Cause::required("target.name", "")],
        ));
    }
    Ok(node.to_string())
}

/// Assign the stored `pod` to `node`: 409 when it is being deleted or already assigned.
pub fn bind(
    res: &ResourceInfo,
    name: &str,
    pod: &mut Value,
    node: &str,
    now: Moment,
) -> Result<(), StatusError> {
    if pod["metadata"].get("deletionTimestamp").is_some() {
        return Err(StatusError::conflict_with(
            res,
            name,
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(StatusError::conflict_with(
            res,
            name,
            &format!("pod {name} is already assigned to node \"{current}\""),
        ));
    }
    pod["spec"]["nodeName"] = json!(node);
    set_condition(pod, "PodScheduled", "True", "", now);
    Ok(())
}

/// Set (or replace) a condition in `status.conditions`, keeping the transition time when the
/// status does not change.
pub fn set_condition(obj: &mut Value, kind: &str, status: &str, reason: &str, now: Moment) {
    let ts = meta::timestamp(now);
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let Some(list) = obj["status"]["conditions"].as_array_mut() else {
        return;
    };
    let mut cond =
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": ts});
    if !reason.is_empty() {
        cond["reason"] = json!(reason);
    }
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(c) if c["status"] == status => {}
        Some(c) => *c = cond,
        None => list.push(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;

    #[test]
    fn binds_once_with_the_scheduled_condition() {
        let pods = by_plural("", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {}});
        bind(pods, "p", &mut pod, "n1", Moment::from_millis(5_000)).unwrap();
        assert_eq!(pod["spec"]["nodeName"], "n1");
        let c = &pod["status"]["conditions"][0];
        assert_eq!(
            (c["type"].as_str(), c["status"].as_str()),
            (Some("PodScheduled"), Some("True"))
        );
        assert_eq!(c["lastTransitionTime"], "1970-01-01T00:00:05Z");
        let before = pod.clone();
        let e = bind(pods, "p", &mut pod, "n2", Moment::EPOCH).unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on pods \"p\": pod p is already assigned to node \"n1\""
        );
        assert_eq!(pod, before, "a refused binding changes nothing");
    }

    #[test]
    fn a_deleted_pod_or_an_empty_target_is_refused() {
        let pods = by_plural("", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p", "deletionTimestamp": "t"}, "spec": {}});
        let e = bind(pods, "p", &mut pod, "n1", Moment::EPOCH).unwrap_err();
        assert!(
            e.message
                .ends_with("pod is being deleted, cannot be assigned to a host")
        );
        let e = binding_target(pods, "p", &json!({"target": {}})).unwrap_err();
        assert_eq!(e.code, 422);
    }
}
