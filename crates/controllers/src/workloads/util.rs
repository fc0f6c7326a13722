//! Helpers shared by the Deployment and ReplicaSet controllers: label selectors, controller
//! references, pod activity/availability, and a small delayed work queue with backoff.
//!
//! Start at [`selector_matches`] and [`WorkQueue`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use crate::time::from_time;
use crate::{Key, Millis};

/// True if `labels` satisfy `sel`. An empty selector selects nothing here: upstream rejects
/// such ReplicaSets at validation and refuses to sync a Deployment that selects everything.
pub fn selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let ml = sel.match_labels.as_ref();
    let me = sel.match_expressions.as_ref();
    if ml.is_none_or(|m| m.is_empty()) && me.is_none_or(|e| e.is_empty()) {
        return false;
    }
    if let Some(ml) = ml
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    me.into_iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or(&[]);
        let have = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    })
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
pub fn ready_since(pod: &Pod) -> Option<Millis> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(c.last_transition_time.as_ref().map(from_time).unwrap_or(0))
}

/// When the pod becomes (or became) available: ready for more than `min_ready_seconds`
/// (upstream `IsPodAvailable`: `lastTransitionTime + minReadySeconds` strictly before now).
pub fn available_at(pod: &Pod, min_ready_seconds: i32) -> Option<Millis> {
    let since = ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return Some(Millis::MIN);
    }
    Some(since + i64::from(min_ready_seconds) * 1000 + 1)
}

/// Upstream `IsPodAvailable` at `now`.
pub fn pod_is_available(pod: &Pod, min_ready_seconds: i32, now: Millis) -> bool {
    available_at(pod, min_ready_seconds).is_some_and(|t| t <= now)
}

/// Creation time in ms (0 if unset).
pub fn created(meta: &ObjectMeta) -> Millis {
    meta.creation_timestamp.as_ref().map(from_time).unwrap_or(0)
}

/// Writes issued for one controller object and not yet observed (upstream
/// `UIDTrackingControllerExpectations`): pod creates still to see, pods whose delete is still
/// to see, and when they were set (they expire after the controller's timeout).
#[derive(Debug, Default)]
pub struct Expectations {
    pub creates: i64,
    pub deletes: std::collections::BTreeSet<Key>,
    pub set_at: Millis,
}

impl Expectations {
    /// Upstream `SatisfiedExpectations`: everything observed, or the expectations expired.
    pub fn satisfied(&self, now: Millis, timeout_ms: Millis) -> bool {
        (self.creates <= 0 && self.deletes.is_empty()) || now >= self.set_at + timeout_ms
    }
}

/// Keys due at a time, with per-key exponential backoff for retries (upstream's default
/// controller rate limiter: 5ms doubling to 1000s). Bounded by the number of objects.
#[derive(Debug, Default)]
pub struct WorkQueue {
    due: BTreeMap<Key, Millis>,
    failures: BTreeMap<Key, u32>,
    base_ms: Millis,
    max_ms: Millis,
}

impl WorkQueue {
    pub fn new(base_ms: Millis, max_ms: Millis) -> WorkQueue {
        WorkQueue {
            due: BTreeMap::new(),
            failures: BTreeMap::new(),
            base_ms,
            max_ms,
        }
    }

    /// Run `key` at `at` (the earlier time wins if already queued).
    pub fn add_at(&mut self, key: Key, at: Millis) {
        let e = self.due.entry(key).or_insert(at);
        *e = (*e).min(at);
    }

    /// Requeue `key` after a failure, with exponential backoff.
    pub fn retry(&mut self, key: Key, now: Millis) {
        let n = self.failures.entry(key.clone()).or_insert(0);
        let delay = self
            .base_ms
            .saturating_mul(1i64 << (*n).min(40))
            .min(self.max_ms);
        *n = n.saturating_add(1);
        self.add_at(key, now + delay);
    }

    /// Reset the backoff of `key` (a sync made no writes: it is in its desired state).
    pub fn forget(&mut self, key: &Key) {
        self.failures.remove(key);
    }

    /// Drop everything about `key` (the object is gone).
    pub fn remove(&mut self, key: &Key) {
        self.failures.remove(key);
        self.due.remove(key);
    }

    /// Remove and return the keys due at or before `now`, in key order.
    pub fn pop_due(&mut self, now: Millis) -> Vec<Key> {
        let keys: Vec<Key> = self
            .due
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.due.remove(k);
        }
        keys
    }

    /// The earliest due time.
    pub fn next(&self) -> Option<Millis> {
        self.due.values().min().copied()
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

    #[test]
    fn queue_backoff_doubles_and_caps() {
        let mut q = WorkQueue::new(5, 20);
        let k = Key::new("ns", "a");
        q.retry(k.clone(), 0);
        assert_eq!(q.next(), Some(5));
        assert_eq!(q.pop_due(5), vec![k.clone()]);
        q.retry(k.clone(), 0);
        q.retry(k.clone(), 0);
        assert_eq!(q.next(), Some(10));
        q.pop_due(100);
        q.retry(k.clone(), 0);
        q.retry(k.clone(), 100);
        assert_eq!(q.next(), Some(20));
        q.forget(&k);
        q.pop_due(1000);
        q.retry(k, 1000);
        assert_eq!(q.next(), Some(1005));
    }
}
