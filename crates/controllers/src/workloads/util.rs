//! Helpers shared by the Deployment and ReplicaSet controllers: label selectors, controller
//! references, pod activity/availability; and the delayed work queue with backoff (now in
//! `runtime::queue`, re-exported).
//!
//! Start at [`selector_matches`] and [`WorkQueue`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use crate::time::from_time;
use crate::{Key, Moment};
use runtime::labels::{label_selector_is_empty, label_selector_matches};
pub use runtime::queue::WorkQueue;

/// True if `labels` satisfy `sel`. An empty selector selects nothing here: upstream rejects
/// such ReplicaSets at validation and refuses to sync a Deployment that selects everything.
pub fn selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    !label_selector_is_empty(sel) && label_selector_matches(sel, labels)
}

/// The controller owner reference (`controller: true`) of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The key of the object of `kind` controlling `meta` (same namespace), if any.
pub fn controller_key(meta: &ObjectMeta, kind: &str) -> Option<(Key, String)> {
    let r = controller_of(meta).filter(|r| r.kind == kind)?;
    Some((
        Key::new(meta.namespace.as_deref().unwrap_or(""), &r.name),
        r.uid.clone(),
    ))
}

/// An owner reference making `meta`'s object the controller of a dependent.
pub fn owner_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod's phase (`""` if unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream `IsPodActive`: not Succeeded/Failed and not being deleted.
pub fn pod_is_active(pod: &Pod) -> bool {
    let p = phase(pod);
    p != "Succeeded" && p != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// The node the pod is bound to (`""` if unscheduled).
pub fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// When the pod's `Ready` condition last became `True`, if it is ready now (0 if unknown).
pub fn ready_since(pod: &Pod) -> Option<Moment> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        c.last_transition_time
            .as_ref()
            .map(from_time)
            .unwrap_or(Moment::EPOCH),
    )
}

/// When the pod becomes (or became) available: ready for more than `min_ready_seconds`
/// (upstream `IsPodAvailable`: `lastTransitionTime + minReadySeconds` strictly before now).
pub fn available_at(pod: &Pod, min_ready_seconds: i32) -> Option<Moment> {
    let since = ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return Some(Moment::MIN);
    }
    Some(since + secs(min_ready_seconds) + Duration::from_millis(1))
}

/// An API field's seconds as a span (negative: zero).
pub fn secs(s: i32) -> Duration {
    runtime::time::span_secs(i64::from(s))
}

/// Upstream `IsPodAvailable` at `now`.
pub fn pod_is_available(pod: &Pod, min_ready_seconds: i32, now: Moment) -> bool {
    available_at(pod, min_ready_seconds).is_some_and(|t| t <= now)
}

/// Creation time in ms (0 if unset).
pub fn created(meta: &ObjectMeta) -> Moment {
    meta.creation_timestamp
        .as_ref()
        .map(from_time)
        .unwrap_or(Moment::EPOCH)
}

/// Writes issued for one controller object and not yet observed (upstream
/// `UIDTrackingControllerExpectations`): pod creates still to see, pods whose delete is still
/// to see, and when they were set (they expire after the controller's timeout).
#[derive(Debug, Default)]
pub struct Expectations {
    pub creates: i64,
    pub deletes: std::collections::BTreeSet<Key>,
    pub set_at: Moment,
}

impl Expectations {
    /// Upstream `SatisfiedExpectations`: everything observed, or the expectations expired.
    pub fn satisfied(&self, now: Moment, timeout_ms: Duration) -> bool {
        (self.creates <= 0 && self.deletes.is_empty()) || now >= self.set_at + timeout_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(v: serde_json::Value) -> LabelSelector {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn selector_semantics() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "fe".to_string()),
        ]
        .into();
        assert!(selector_matches(
            &sel(json!({"matchLabels": {"app": "web"}})),
            Some(&labels)
        ));
        assert!(!selector_matches(
            &sel(json!({"matchLabels": {"app": "db"}})),
            Some(&labels)
        ));
        assert!(!selector_matches(&sel(json!({})), Some(&labels)));
        let e = json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                             {"key": "x", "operator": "DoesNotExist"}]});
        assert!(selector_matches(&sel(e), Some(&labels)));
        let e =
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]});
        assert!(!selector_matches(&sel(e), Some(&labels)));
    }
}
