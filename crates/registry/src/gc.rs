//! The garbage collector's decisions: which objects a delete cascades to (dependents named by
//! `ownerReferences`, background or orphan propagation) and what a deleted namespace empties.
//!
//! Start at [`cascade`]. Pure: the caller lists candidates and carries the steps out.

use api::resources::{RESOURCES, ResourceInfo};
use serde_json::Value;

/// Kinds that carry owner references to something we serve.
pub fn dependent_kinds() -> impl Iterator<Item = &'static ResourceInfo> {
    RESOURCES.iter().filter(|r| {
        matches!(
            r.kind,
            "ReplicaSet" | "Pod" | "EndpointSlice" | "ControllerRevision"
        )
    })
}

/// Namespaced kinds a namespace deletion empties (a storage alias, events.k8s.io Events, shares
/// its target's objects: once).
pub fn namespace_kinds() -> impl Iterator<Item = &'static ResourceInfo> {
    RESOURCES
        .iter()
        .filter(|r| r.namespaced && api::resources::storage_alias_of(r).is_none())
}

/// `obj` names `uid` among its owners.
pub fn owned_by(obj: &Value, uid: &str) -> bool {
    !uid.is_empty()
        && obj["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
}

/// `obj` without its owner reference to `uid` (orphan propagation).
pub fn orphaned(obj: &Value, uid: &str) -> Value {
    let mut freed = obj.clone();
    if let Some(refs) = freed["metadata"]["ownerReferences"].as_array_mut() {
        refs.retain(|r| r["uid"].as_str() != Some(uid));
    }
    freed
}

/// One step of a cascade.
#[derive(Clone, Debug, PartialEq)]
pub enum GcStep {
    /// Delete the dependent (with default options: its own delete cascades in turn).
    Delete,
    /// Replace the dependent with this (its reference to the owner removed).
    Orphan(Value),
}

/// What deleting the owner `uid` does to `candidate` (an object of a [`dependent_kinds`] kind in
/// the owner's namespace): nothing when it is not a dependent.
pub fn cascade(uid: &str, orphan: bool, candidate: &Value) -> Option<GcStep> {
    if !owned_by(candidate, uid) {
        return None;
    }
    Some(if orphan {
        GcStep::Orphan(orphaned(candidate, uid))
    } else {
        GcStep::Delete
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dependents_are_deleted_or_orphaned() {
        let pod =
            json!({"metadata": {"name": "p", "ownerReferences": [{"uid": "rs1"}, {"uid": "x"}]}});
        assert_eq!(cascade("rs1", false, &pod), Some(GcStep::Delete));
        let Some(GcStep::Orphan(freed)) = cascade("rs1", true, &pod) else {
            panic!()
        };
        assert_eq!(freed["metadata"]["ownerReferences"], json!([{"uid": "x"}]));
        assert_eq!(cascade("other", false, &pod), None);
        assert_eq!(cascade("", false, &json!({"metadata": {}})), None);
    }

    #[test]
    fn kinds() {
        let dep: Vec<_> = dependent_kinds().map(|r| r.kind).collect();
        assert!(
            dep.contains(&"Pod") && dep.contains(&"ReplicaSet"),
            "{dep:?}"
        );
        assert!(namespace_kinds().all(|r| r.namespaced));
        assert_eq!(namespace_kinds().filter(|r| r.kind == "Event").count(), 1);
    }
}
