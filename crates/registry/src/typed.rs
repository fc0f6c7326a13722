//! The hot writes' rules applied to k8s-openapi types directly, without JSON: pod, node,
//! ReplicaSet and Deployment status updates, Lease updates, pod binding. Each gives the same object as the JSON path
//! (tested below) or says [`FastPath::Fallback`] when the JSON path's validation could answer
//! differently (a metadata change, a deleted object, an invalid Lease spec).
//!
//! Start at [`pod_status`]. Assumes the stored object passed the rules (everything written through
//! them did): the spec a status write keeps is not validated again.

use std::sync::Arc;

use api::resources::ResourceInfo;
use api::status::StatusError;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::meta::Moment;
use crate::stored::{FastPath, Stored};
use crate::strategy::UpdateScope;
use runtime::time::to_time;

fn set(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|v| !v.is_empty())
}

/// Whether the update's metadata leaves everything validation looks at as stored (else the
/// JSON path decides).
fn meta_unchanged(new: &ObjectMeta, old: &ObjectMeta, keep_owner_refs: bool) -> bool {
    new.labels == old.labels && meta_unchanged_but_labels(new, old, keep_owner_refs)
}

/// [`meta_unchanged`] for a write whose labels come from the stored object anyway (the
/// status writes of the kinds in [`crate::strategy::status_keeps_meta`] with `labels`).
fn meta_unchanged_but_labels(new: &ObjectMeta, old: &ObjectMeta, keep_owner_refs: bool) -> bool {
    old.deletion_timestamp.is_none()
        && new.name == old.name
        && new.generate_name == old.generate_name
        && new.annotations == old.annotations
        && new.finalizers == old.finalizers
        && (keep_owner_refs || new.owner_references == old.owner_references)
        && (!set(&new.uid) || new.uid == old.uid)
        && (!set(&new.namespace) || new.namespace == old.namespace)
        && (new.creation_timestamp.is_none() || new.creation_timestamp == old.creation_timestamp)
}

/// The update's metadata rule, typed: server-owned fields from `old`.
fn carry_meta(new: &mut ObjectMeta, old: &ObjectMeta, keep_owner_refs: bool) {
    new.uid.clone_from(&old.uid);
    new.creation_timestamp.clone_from(&old.creation_timestamp);
    new.namespace.clone_from(&old.namespace);
    new.deletion_timestamp.clone_from(&old.deletion_timestamp);
    new.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
    new.self_link = None;
    if keep_owner_refs {
        new.owner_references.clone_from(&old.owner_references);
    }
}

/// A pod status write: spec and owner references from the stored pod.
pub fn pod_status(new: &mut Pod, old: &Pod) -> FastPath {
    if !meta_unchanged(&new.metadata, &old.metadata, true) {
        return FastPath::Fallback;
    }
    carry_meta(&mut new.metadata, &old.metadata, true);
    if new.spec != old.spec {
        new.spec.clone_from(&old.spec);
    }
    FastPath::Applied
}

/// A node status write: spec from the stored node; `allocatable` defaults to `capacity`.
pub fn node_status(new: &mut Node, old: &Node) -> FastPath {
    if !meta_unchanged(&new.metadata, &old.metadata, false) {
        return FastPath::Fallback;
    }
    carry_meta(&mut new.metadata, &old.metadata, false);
    if new.spec != old.spec {
        new.spec.clone_from(&old.spec);
    }
    node_defaults(new)
}

/// A ReplicaSet or Deployment status write (upstream's status strategies of both): spec and
/// labels from the stored object, `metadata.generation` kept (1 when the stored object has
/// none, as the JSON path); the status is the client's. The JSON path validates nothing of
/// the status, so neither does this.
fn apps_status<S: Clone + PartialEq>(
    new_meta: &mut ObjectMeta,
    new_spec: &mut Option<S>,
    old_meta: &ObjectMeta,
    old_spec: &Option<S>,
) -> FastPath {
    if !meta_unchanged_but_labels(new_meta, old_meta, false) {
        return FastPath::Fallback;
    }
    carry_meta(new_meta, old_meta, false);
    if new_meta.labels != old_meta.labels {
        new_meta.labels.clone_from(&old_meta.labels);
    }
    new_meta.generation = Some(old_meta.generation.unwrap_or(1));
    if new_spec != old_spec {
        new_spec.clone_from(old_spec);
    }
    FastPath::Applied
}

/// A ReplicaSet status write ([`apps_status`]).
pub fn replicaset_status(new: &mut ReplicaSet, old: &ReplicaSet) -> FastPath {
    apps_status(&mut new.metadata, &mut new.spec, &old.metadata, &old.spec)
}

/// A Deployment status write ([`apps_status`]).
pub fn deployment_status(new: &mut Deployment, old: &Deployment) -> FastPath {
    apps_status(&mut new.metadata, &mut new.spec, &old.metadata, &old.spec)
}

/// A Lease update (a renewal): the spec is the client's, validated as upstream does.
pub fn lease(new: &mut Lease, old: &Lease) -> FastPath {
    let valid = new.spec.as_ref().is_none_or(|s| {
        s.lease_duration_seconds.is_none_or(|d| d > 0) && s.lease_transitions.is_none_or(|t| t >= 0)
    });
    if !valid || !meta_unchanged(&new.metadata, &old.metadata, false) {
        return FastPath::Fallback;
    }
    carry_meta(&mut new.metadata, &old.metadata, false);
    FastPath::Applied
}

/// Pod equality, status first: a status write usually differs there, so the no-op check of
/// an update stops early instead of comparing the whole spec.
pub fn same_pod(a: &Pod, b: &Pod) -> bool {
    std::ptr::eq(a, b) || (a.status == b.status && a.metadata == b.metadata && a.spec == b.spec)
}

/// Kinds `api::admit::default` changes (the others need no defaulting).
pub fn has_defaults(res: &ResourceInfo) -> bool {
    matches!(
        (res.group, res.kind),
        ("", "Service" | "Pod" | "Namespace" | "Node" | "Secret")
            | (
                "apps",
                "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
            )
            | ("discovery.k8s.io", "EndpointSlice")
    )
}

/// Pod defaults touch only the spec: a pod whose spec is the stored (defaulted) one's needs none.
pub fn pod_defaults(new: &Pod, old: Option<&Pod>) -> FastPath {
    match old {
        Some(o) if o.spec == new.spec => FastPath::Applied,
        _ => FastPath::Fallback,
    }
}

/// Node defaults: `status.allocatable` from `status.capacity` when unset.
pub fn node_defaults(new: &mut Node) -> FastPath {
    if let Some(st) = new.status.as_mut()
        && st.allocatable.is_none()
    {
        st.allocatable.clone_from(&st.capacity);
    }
    FastPath::Applied
}

/// [`crate::Stored::raw_identity`] on typed metadata.
pub fn raw_identity(
    meta: &mut ObjectMeta,
    old: Option<&ObjectMeta>,
    name: Option<String>,
    fresh_uid: String,
    now: Moment,
) {
    if name.is_some() {
        meta.name = name;
    }
    match old {
        Some(o) => {
            meta.uid.clone_from(&o.uid);
            meta.creation_timestamp.clone_from(&o.creation_timestamp);
        }
        None => {
            if !set(&meta.uid) {
                meta.uid = Some(fresh_uid);
            }
            if meta.creation_timestamp.is_none() {
                meta.creation_timestamp = Some(to_time(now));
            }
        }
    }
}

/// [`crate::Stored::set_created_identity`] on typed metadata.
pub fn created_identity(meta: &mut ObjectMeta, name: String, uid: String, now: Moment) {
    meta.name = Some(name);
    meta.uid = Some(uid);
    meta.creation_timestamp = Some(to_time(now));
}

/// The binding rule on a typed pod ([`crate::bind::bind`]).
pub fn bind_pod(
    res: &ResourceInfo,
    pod: &mut Pod,
    node: &str,
    now: Moment,
) -> Result<(), StatusError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(StatusError::conflict_with(
            res,
            &name,
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    if let Some(current) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        return Err(StatusError::conflict_with(
            res,
            &name,
            &format!("pod {name} is already assigned to node \"{current}\""),
        ));
    }
    pod.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
    let conds = pod
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    let cond = PodCondition {
        type_: "PodScheduled".into(),
        status: "True".into(),
        last_transition_time: Some(to_time(now)),
        ..PodCondition::default()
    };
    match conds.iter_mut().find(|c| c.type_ == "PodScheduled") {
        Some(c) if c.status == "True" => {}
        Some(c) => *c = cond,
        None => conds.push(cond),
    }
    Ok(())
}

/// A typed [`Stored`] for [`crate::MemApi`]: the hot kinds (pods, Leases) typed with their fast
/// paths, everything else JSON. (The controllers' test double stores its own typed objects.)
#[derive(Clone, Debug, PartialEq)]
pub enum Obj {
    Pod(Arc<Pod>),
    Lease(Arc<Lease>),
    Json(Value),
}

impl Obj {
    fn meta(&self) -> Option<&ObjectMeta> {
        match self {
            Obj::Pod(p) => Some(&p.metadata),
            Obj::Lease(l) => Some(&l.metadata),
            Obj::Json(_) => None,
        }
    }
}

impl Stored for Obj {
    fn to_value(&self) -> Value {
        match self {
            Obj::Pod(p) => serde_json::to_value(&**p).unwrap_or(Value::Null),
            Obj::Lease(l) => serde_json::to_value(&**l).unwrap_or(Value::Null),
            Obj::Json(v) => v.clone(),
        }
    }
    fn from_value(res: &'static ResourceInfo, v: Value) -> Result<Obj, StatusError> {
        let bad = |e: serde_json::Error| StatusError::bad_request(e.to_string());
        Ok(match res.kind {
            "Pod" => Obj::Pod(Arc::new(serde_json::from_value(v).map_err(bad)?)),
            "Lease" => Obj::Lease(Arc::new(serde_json::from_value(v).map_err(bad)?)),
            _ => Obj::Json(v),
        })
    }
    fn name(&self) -> &str {
        match self {
            Obj::Pod(p) => p.metadata.name.as_deref().unwrap_or(""),
            Obj::Lease(l) => l.metadata.name.as_deref().unwrap_or(""),
            Obj::Json(v) => crate::meta::name_of(v),
        }
    }
    fn namespace(&self) -> Option<&str> {
        self.meta().and_then(|m| m.namespace.as_deref())
    }
    fn generate_name(&self) -> Option<&str> {
        self.meta().and_then(|m| m.generate_name.as_deref())
    }
    fn raw_identity(&mut self, old: Option<&Obj>, name: Option<String>, uid: String, now: Moment) {
        match (self, old) {
            (Obj::Json(v), o) => {
                let o = o.map(Stored::to_value);
                v.raw_identity(o.as_ref(), name, uid, now)
            }
            (Obj::Pod(p), o) => raw_identity(
                &mut Arc::make_mut(p).metadata,
                o.and_then(Obj::meta),
                name,
                uid,
                now,
            ),
            (Obj::Lease(l), o) => raw_identity(
                &mut Arc::make_mut(l).metadata,
                o.and_then(Obj::meta),
                name,
                uid,
                now,
            ),
        }
    }
    fn set_created_identity(&mut self, name: String, uid: String, now: Moment) {
        match self {
            Obj::Pod(p) => created_identity(&mut Arc::make_mut(p).metadata, name, uid, now),
            Obj::Lease(l) => created_identity(&mut Arc::make_mut(l).metadata, name, uid, now),
            Obj::Json(v) => v.set_created_identity(name, uid, now),
        }
    }
    fn resource_version(&self) -> Option<&str> {
        match self {
            Obj::Pod(p) => p.metadata.resource_version.as_deref(),
            Obj::Lease(l) => l.metadata.resource_version.as_deref(),
            Obj::Json(v) => crate::meta::meta_str(v, "resourceVersion"),
        }
    }
    fn set_resource_version(&mut self, rv: u64) {
        match self {
            Obj::Pod(p) => Arc::make_mut(p).metadata.resource_version = Some(rv.to_string()),
            Obj::Lease(l) => Arc::make_mut(l).metadata.resource_version = Some(rv.to_string()),
            Obj::Json(v) => crate::meta::set_resource_version(v, rv),
        }
    }
    fn same(&self, other: &Obj) -> bool {
        match (self, other) {
            (Obj::Pod(a), Obj::Pod(b)) => same_pod(a, b),
            _ => self == other,
        }
    }
    fn fast_update(&mut self, _res: &ResourceInfo, scope: UpdateScope, old: &Obj) -> FastPath {
        match (self, old, scope) {
            (Obj::Pod(n), Obj::Pod(o), UpdateScope::Status) => pod_status(Arc::make_mut(n), o),
            (Obj::Lease(n), Obj::Lease(o), _) => lease(Arc::make_mut(n), o),
            _ => FastPath::Fallback,
        }
    }
    fn fast_defaults(&mut self, res: &ResourceInfo, old: Option<&Obj>) -> FastPath {
        match (self, old) {
            (Obj::Pod(n), Some(Obj::Pod(o))) => pod_defaults(n, Some(o)),
            (Obj::Json(v), _) => v.fast_defaults(res, None),
            (_, _) if !has_defaults(res) => FastPath::Applied,
            _ => FastPath::Fallback,
        }
    }
    fn fast_bind(
        &mut self,
        res: &ResourceInfo,
        node: &str,
        now: Moment,
    ) -> Option<Result<(), StatusError>> {
        match self {
            Obj::Pod(p) => Some(bind_pod(res, Arc::make_mut(p), node, now)),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "typed_tests.rs"]
mod tests;
