//! A StatefulSet's ControllerRevisions (upstream pkg/controller/history and the StatefulSet's
//! `getPatch`/`newRevision`/`ApplyRevision`/`truncateHistory`): each revision stores the pod
//! template as a `$patch: replace` of `spec.template`, named `<set>-<hash>`.
//!
//! Start at [`Revisions::resolve`].

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Value, json};

use super::pods::{API_VERSION, KIND};
use crate::Cache;
use crate::cache::Key;
use crate::workloads::deployment::util::safe_encode;
use crate::workloads::util::{controller_of, owner_ref};

/// Label carrying a revision's hash (upstream `history.ControllerRevisionHashLabel`).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Hash collisions tried before giving up for this sync (upstream loops until the name is free).
const MAX_COLLISIONS: i32 = 16;

/// Upstream `getPatch`: the set's template as a strategic merge patch replacing `spec.template`.
pub fn patch_of(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision stores (upstream `ApplyRevision` onto the set's template).
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// Upstream `HashControllerRevision`: FNV-32 over the data, then the collision count in
/// decimal, rendered with `SafeEncodeString`. The data is our canonical JSON, so hashes differ
/// from upstream's but are stable.
pub fn hash(data: &Value, collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h = h.wrapping_mul(0x0100_0193);
            h ^= u32::from(*b);
        }
    };
    feed(&serde_json::to_vec(data).unwrap_or_default());
    if collision_count > 0 {
        feed(collision_count.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// The revision for `set`'s current template (upstream `newRevision`).
fn new_revision(set: &StatefulSet, revision: i64, collision_count: i32) -> ControllerRevision {
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let data = patch_of(&template);
    let h = hash(&data, collision_count);
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.to_string(), h.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{h}",
                set.metadata.name.as_deref().unwrap_or("")
            )),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_ref(API_VERSION, KIND, &set.metadata)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

fn same_data(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// What one sync decided about the set's history.
#[derive(Debug)]
pub struct Revisions {
    /// The set's revisions, oldest first (by `revision`, then name).
    pub all: Vec<Arc<ControllerRevision>>,
    /// The revision pods below the partition keep (`status.currentRevision`).
    pub current: Arc<ControllerRevision>,
    /// The revision of the set's template now.
    pub update: Arc<ControllerRevision>,
    /// The collision count to report in status.
    pub collision_count: i32,
    /// A revision to create (the update revision is new) or to re-number (a rollback to an
    /// older template: upstream increments the old revision's number).
    pub write: Option<RevisionWrite>,
}

/// A ControllerRevision write a sync needs.
#[derive(Debug)]
pub enum RevisionWrite {
    Create(ControllerRevision),
    Renumber(ControllerRevision),
}

impl Revisions {
    /// Upstream `getStatefulSetRevisions`: find or make the update revision, find the current one.
    pub fn resolve(cache: &Cache, set: &StatefulSet) -> Option<Revisions> {
        let uid = set.metadata.uid.as_deref()?;
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let mut all: Vec<Arc<ControllerRevision>> = cache
            .controller_revisions
            .range(Key::new(&ns, "")..)
            .take_while(|(k, _)| k.namespace == ns)
            .map(|(_, r)| r)
            .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid && o.kind == KIND))
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.revision, &a.metadata.name).cmp(&(b.revision, &b.metadata.name)));
        let next = all.last().map_or(1, |r| r.revision + 1);
        let mut collision_count = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let mut candidate = new_revision(set, next, collision_count);
        let equal: Vec<&Arc<ControllerRevision>> =
            all.iter().filter(|r| same_data(r, &candidate)).collect();
        let (update, write) = match (equal.last(), all.last()) {
            (Some(eq), Some(latest)) if same_data(eq, latest) => (Arc::clone(latest), None),
            (Some(eq), _) => {
                let mut renumbered = (***eq).clone();
                renumbered.revision = next;
                (
                    Arc::new(renumbered.clone()),
                    Some(RevisionWrite::Renumber(renumbered)),
                )
            }
            (None, _) => {
                // A name taken by a revision with other data is a hash collision: bump the count.
                for _ in 0..MAX_COLLISIONS {
                    let taken = cache.controller_revisions.get(&Key::new(
                        &ns,
                        candidate.metadata.name.as_deref().unwrap_or(""),
                    ));
                    if taken.is_none() {
                        break;
                    }
                    collision_count += 1;
                    candidate = new_revision(set, next, collision_count);
                }
                (
                    Arc::new(candidate.clone()),
                    Some(RevisionWrite::Create(candidate)),
                )
            }
        };
        let wanted = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref())
            .unwrap_or("");
        let current = all
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(wanted))
            .cloned()
            .unwrap_or_else(|| Arc::clone(&update));
        Some(Revisions {
            all,
            current,
            update,
            collision_count,
            write,
        })
    }

    /// Upstream `truncateHistory`: the non-live revisions beyond `spec.revisionHistoryLimit`,
    /// oldest first. Live: the current and update revisions and any a pod still carries.
    pub fn to_truncate<'a>(
        &'a self,
        set: &StatefulSet,
        pod_revisions: &BTreeSet<&str>,
    ) -> Vec<&'a Arc<ControllerRevision>> {
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let live = |r: &ControllerRevision| {
            let n = r.metadata.name.as_deref().unwrap_or("");
            n == self.current.metadata.name.as_deref().unwrap_or("")
                || n == self.update.metadata.name.as_deref().unwrap_or("")
                || pod_revisions.contains(n)
        };
        let history: Vec<&Arc<ControllerRevision>> = self.all.iter().filter(|r| !live(r)).collect();
        let excess = history.len().saturating_sub(limit);
        history.into_iter().take(excess).collect()
    }
}

/// The revision's name (`""` if unset).
pub fn name(rev: &ControllerRevision) -> &str {
    rev.metadata.name.as_deref().unwrap_or("")
}
