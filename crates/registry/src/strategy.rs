//! Per-kind create and update strategies: server-owned metadata, status subresource rules,
//! `metadata.generation`, the status a new object starts with.
//!
//! Start at [`prepare_create`] and [`prepare_update`]. Pure: time and randomness are arguments.

use api::resources::ResourceInfo;
use rand::Rng;
use serde_json::{Value, json};

use crate::meta::{Moment, generate_suffix, metadata_mut, new_uid, timestamp};

/// Kinds whose `metadata.generation` tracks spec changes.
pub fn tracks_generation(res: &ResourceInfo) -> bool {
    matches!(
        res.kind,
        "Deployment" | "ReplicaSet" | "StatefulSet" | "PodDisruptionBudget" | "DaemonSet"
    )
}

/// Kinds whose status may be set on create (upstream node strategy keeps it; most reset it).
pub fn keeps_status_on_create(res: &ResourceInfo) -> bool {
    matches!(res.kind, "Node" | "Event" | "EndpointSlice" | "Lease")
}

/// Kinds that PUT may create when the object does not exist (upstream AllowCreateOnUpdate).
pub fn creates_on_update(res: &ResourceInfo) -> bool {
    matches!(
        res.kind,
        "Service" | "Node" | "Lease" | "Event" | "EndpointSlice"
    )
}

/// Fill in server-owned metadata and reset fields the client may not set on create.
/// `namespace` is the request's namespace (already checked against the body).
pub fn prepare_create(
    res: &ResourceInfo,
    obj: &mut Value,
    namespace: Option<&str>,
    now: Moment,
    rng: &mut impl Rng,
) {
    let kind = res.kind;
    let api_version = res.api_version();
    if let Some(o) = obj.as_object_mut() {
        o.insert("kind".into(), json!(kind));
        o.insert("apiVersion".into(), json!(api_version));
    }
    let generation = tracks_generation(res);
    let Some(meta) = metadata_mut(obj) else {
        return;
    };
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name && let Some(g) = meta.get("generateName").and_then(Value::as_str) {
        let name = format!("{g}{}", generate_suffix(rng));
        meta.insert("name".into(), json!(name));
    }
    match namespace {
        Some(ns) if res.namespaced => {
            meta.insert("namespace".into(), json!(ns));
        }
        _ => {
            meta.remove("namespace");
        }
    }
    meta.insert("uid".into(), json!(new_uid(rng)));
    meta.insert("creationTimestamp".into(), json!(timestamp(now)));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if !keeps_status_on_create(res)
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
        if let Some(s) = initial_status(res) {
            o.insert("status".into(), s);
        }
    }
}

/// The status a new object starts with, as upstream strategies set it.
fn initial_status(res: &ResourceInfo) -> Option<Value> {
    match res.kind {
        "Pod" => Some(json!({"phase": "Pending", "qosClass": "BestEffort"})),
        "Service" => Some(json!({"loadBalancer": {}})),
        "Namespace" => Some(json!({"phase": "Active"})),
        "Deployment" | "ReplicaSet" => Some(json!({})),
        // Upstream v1 StatefulSetStatus serializes `replicas` and `availableReplicas` always.
        "StatefulSet" => Some(json!({"replicas": 0, "availableReplicas": 0})),
        // apps/v1 DaemonSetStatus: these four counts are not omitempty.
        "DaemonSet" => Some(
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}),
        ),
        "PodDisruptionBudget" => Some(
            json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}),
        ),
        _ => None,
    }
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main resource: `status` is kept from the old object (when a status subresource exists).
    Main,
    /// The `status` subresource: only `status` (and nothing in spec) changes.
    Status,
}

/// The metadata fields a status write keeps from the stored object, per kind, as upstream's
/// status strategies decide: Deployments, ReplicaSets and StatefulSets keep their labels, pods
/// their owner references (old kubelets corrupted them); annotations may change (the deployment
/// controller writes its revision annotation through `status`).
pub fn status_keeps_meta(res: &ResourceInfo) -> &'static [&'static str] {
    match res.kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" => &["labels"],
        "Pod" => &["ownerReferences"],
        _ => &[],
    }
}

/// What a `status` write may change: the spec always comes from the stored object, and the
/// metadata of [`status_keeps_meta`].
fn status_strategy(res: &ResourceInfo, new: &mut Value, old: &Value) {
    let Some(o) = new.as_object_mut() else { return };
    match old.get("spec") {
        Some(spec) => o.insert("spec".into(), spec.clone()),
        None => o.remove("spec"),
    };
    if let Some(meta) = metadata_mut(new) {
        for field in status_keeps_meta(res) {
            match old.get("metadata").and_then(|m| m.get(*field)) {
                Some(v) => meta.insert((*field).into(), v.clone()),
                None => meta.remove(*field),
            };
        }
    }
}

/// Metadata an update always carries over from the stored object.
pub const SERVER_OWNED_META: [&str; 5] = [
    "uid",
    "creationTimestamp",
    "namespace",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Carry server-owned fields from `old` into `new` and apply the subresource rule.
pub fn prepare_update(res: &ResourceInfo, new: &mut Value, old: &Value, scope: UpdateScope) {
    if let Some(o) = new.as_object_mut() {
        o.insert("kind".into(), json!(res.kind));
        o.insert("apiVersion".into(), json!(res.api_version()));
    }
    let has_status_sub = res.subresources.contains(&"status");
    match scope {
        UpdateScope::Status => status_strategy(res, new, old),
        UpdateScope::Main if has_status_sub => {
            if let Some(o) = new.as_object_mut() {
                match old.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
        }
        UpdateScope::Main => {}
    }
    let spec_changed = new.get("spec") != old.get("spec");
    let empty = json!({});
    let old_meta = old.get("metadata").unwrap_or(&empty);
    let Some(meta) = metadata_mut(new) else {
        return;
    };
    for field in SERVER_OWNED_META {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    meta.remove("selfLink");
    if tracks_generation(res) {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let g = if spec_changed && scope == UpdateScope::Main {
            g + 1
        } else {
            g
        };
        meta.insert("generation".into(), json!(g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn create_fills_metadata_and_resets_status() {
        let dep = by_plural("apps", "deployments").unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let mut obj = json!({"metadata": {"generateName": "web-", "resourceVersion": "9"}, "status": {"replicas": 3}});
        // 2026-01-02T03:04:05Z
        prepare_create(
            dep,
            &mut obj,
            Some("ns"),
            Moment::from_millis(1_767_323_045_000),
            &mut rng,
        );
        let name = obj["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(obj["metadata"]["namespace"], "ns");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert_eq!(obj["metadata"]["creationTimestamp"], "2026-01-02T03:04:05Z");
        assert_eq!(obj["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(obj["metadata"].get("resourceVersion").is_none());
        assert_eq!(obj["status"], json!({}));
        assert_eq!(obj["kind"], "Deployment");
        assert_eq!(obj["apiVersion"], "apps/v1");
    }

    #[test]
    fn status_scope_changes_only_status_and_main_keeps_status() {
        let dep = by_plural("apps", "deployments").unwrap();
        let old = json!({"metadata": {"name": "a", "uid": "u", "generation": 2}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new =
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 5}, "status": {"replicas": 4}});
        prepare_update(dep, &mut new, &old, UpdateScope::Status);
        assert_eq!(new["spec"]["replicas"], 1);
        assert_eq!(new["status"]["replicas"], 4);
        assert_eq!(new["metadata"]["generation"], 2);

        let mut main =
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 5}, "status": {"replicas": 4}});
        prepare_update(dep, &mut main, &old, UpdateScope::Main);
        assert_eq!(main["spec"]["replicas"], 5);
        assert_eq!(main["status"]["replicas"], 1);
        assert_eq!(main["metadata"]["generation"], 3);
        assert_eq!(main["metadata"]["uid"], "u");
    }

    #[test]
    fn pod_status_write_keeps_owner_references() {
        let pods = by_plural("", "pods").unwrap();
        let old = json!({"metadata": {"name": "p", "ownerReferences": [{"uid": "rs"}]}, "spec": {"nodeName": "n1"}});
        let mut new = json!({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"nodeName": "n2"}, "status": {"phase": "Running"}});
        prepare_update(pods, &mut new, &old, UpdateScope::Status);
        assert_eq!(new["metadata"]["ownerReferences"][0]["uid"], "rs");
        assert_eq!(new["metadata"]["labels"]["a"], "b");
        assert_eq!(new["spec"]["nodeName"], "n1");
        assert!(new["metadata"].get("generation").is_none());
    }
}
