//! One Deployment sync as a working set: the owned ReplicaSets (modified in place as the
//! sync decides), the working status, and the writes they turn into (upstream sync.go).
//!
//! Start at [`SyncCtx::new`] and [`SyncCtx::finish`]; strategies are in `rolling.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::util::{
    DEFAULT_PROGRESS_DEADLINE_SECONDS, DEFAULT_REVISION_HISTORY_LIMIT, POD_TEMPLATE_HASH, REVISION,
    compute_hash, condition, equal_ignore_hash, get_condition, max_surge, max_unavailable,
    remove_condition, replicas, revision, rs_replicas, set_condition, set_new_rs_annotations,
    set_replicas_annotations,
};
use crate::events::{self, EventRecord, EventType};
use crate::time::from_time;
use crate::workloads::util::{controller_of, created, owner_ref, secs};
use crate::{Action, Cache, Key, Kind, Moment, Object};

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";

/// One owned ReplicaSet in the working set.
pub struct Slot {
    pub rs: ReplicaSet,
    /// Not in the API yet: the sync creates it.
    pub create: bool,
}

/// The working state of one Deployment sync.
pub struct SyncCtx<'a> {
    pub d: &'a Deployment,
    pub cache: &'a Cache,
    pub now: Moment,
    /// Owned ReplicaSets, oldest first (creation time, then name).
    pub slots: Vec<Slot>,
    pub new_idx: Option<usize>,
    /// Working status (conditions, collision count) written at the end if changed.
    pub status: DeploymentStatus,
    revision: Option<String>,
    /// Slots to write, in the order first changed.
    writes: Vec<usize>,
    deletes: Vec<usize>,
    /// When the Deployment must be looked at again (progress deadline).
    pub requeue_at: Option<Moment>,
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    let s = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    (s != i32::MAX).then_some(s)
}

impl<'a> SyncCtx<'a> {
    pub fn new(d: &'a Deployment, cache: &'a Cache, now: Moment) -> SyncCtx<'a> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let mut slots: Vec<Slot> = cache
            .replica_sets
            .range(Key::new(&ns, "")..)
            .take_while(|(k, _)| k.namespace == ns)
            .map(|(_, r)| r)
            .filter(|r| {
                controller_of(&r.metadata).is_some_and(|o| o.kind == "Deployment" && o.uid == uid)
            })
            .map(|r| Slot {
                rs: (**r).clone(),
                create: false,
            })
            .collect();
        slots.sort_by(|a, b| {
            created(&a.rs.metadata)
                .cmp(&created(&b.rs.metadata))
                .then(a.rs.metadata.name.cmp(&b.rs.metadata.name))
        });
        let status = d.status.clone().unwrap_or_default();
        let revision = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .cloned();
        SyncCtx {
            d,
            cache,
            now,
            slots,
            new_idx: None,
            status,
            revision,
            writes: Vec::new(),
            deletes: Vec::new(),
            requeue_at: None,
        }
    }

    pub fn olds(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| Some(*i) != self.new_idx)
            .collect()
    }

    pub fn rs(&self, i: usize) -> &ReplicaSet {
        &self.slots[i].rs
    }

    fn mark(&mut self, i: usize) {
        if !self.writes.contains(&i) {
            self.writes.push(i);
        }
    }

    fn template(&self) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    fn new_rs_name(&self) -> String {
        match self.new_idx {
            Some(i) => self.rs(i).metadata.name.clone().unwrap_or_default(),
            None => self.d.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// Upstream `getAllReplicaSetsAndSyncRevision`: find the new ReplicaSet (oldest whose
    /// template matches), sync its revision annotations, create it if asked. False if the
    /// sync must stop (hash collision: the collision count was bumped).
    pub fn sync_revision(&mut self, create: bool) -> bool {
        let template = self.template();
        self.new_idx = self.slots.iter().position(|s| {
            s.rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let max_old = self
            .olds()
            .iter()
            .map(|i| revision(self.rs(*i)))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = self.new_idx {
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs = &mut self.slots[i].rs;
            let mut changed = set_new_rs_annotations(self.d, rs, new_revision);
            let spec = rs.spec.get_or_insert_with(Default::default);
            if spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
            self.revision = Some(revision(rs).to_string());
            if changed {
                self.mark(i);
            }
            if progress_deadline(self.d).is_some()
                && get_condition(&self.status, PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set \"{}\"", self.new_rs_name());
                set_condition(
                    &mut self.status,
                    condition(PROGRESSING, "True", "FoundNewReplicaSet", msg, self.now),
                );
            }
            return true;
        }
        if !create {
            return true;
        }
        self.create_new(template, new_revision)
    }

    fn create_new(
        &mut self,
        mut template: k8s_openapi::api::core::v1::PodTemplateSpec,
        new_revision: i64,
    ) -> bool {
        let d = self.d;
        let hash = compute_hash(&template, self.status.collision_count);
        let name = format!("{}-{}", d.metadata.name.as_deref().unwrap_or(""), hash);
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        if self.cache.replica_sets.contains_key(&Key::new(&ns, &name)) {
            // Upstream: the name is taken by a ReplicaSet with another template (or owner).
            self.status.collision_count = Some(self.status.collision_count.unwrap_or(0) + 1);
            return false;
        }
        let tmeta = template.metadata.get_or_insert_with(Default::default);
        tmeta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = tmeta.labels.clone();
        let mut selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns),
                labels,
                owner_references: Some(vec![owner_ref("apps/v1", "Deployment", &d.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(d, &mut rs, new_revision);
        let all: Vec<&ReplicaSet> = self.slots.iter().map(|s| &s.rs).collect();
        let size = self.new_rs_new_replicas(&all, &rs);
        rs.spec.get_or_insert_with(Default::default).replicas = Some(size);
        set_replicas_annotations(&mut rs, replicas(d), replicas(d) + max_surge(d));
        self.slots.push(Slot { rs, create: true });
        let i = self.slots.len() - 1;
        self.new_idx = Some(i);
        self.mark(i);
        self.revision = Some(new_revision.to_string());
        if progress_deadline(d).is_some() {
            let msg = format!("Created new replica set \"{}\"", self.new_rs_name());
            set_condition(
                &mut self.status,
                condition(PROGRESSING, "True", "NewReplicaSetCreated", msg, self.now),
            );
        }
        true
    }

    /// Upstream `NewRSNewReplicas`: how big the new ReplicaSet may be now.
    pub fn new_rs_new_replicas(&self, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
        let d = self.d;
        if super::util::is_recreate(d) {
            return replicas(d);
        }
        let current: i32 = all.iter().map(|r| rs_replicas(r)).sum();
        let max_total = replicas(d) + max_surge(d);
        if current >= max_total {
            return rs_replicas(new_rs);
        }
        let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
        rs_replicas(new_rs) + up
    }

    /// Upstream `scaleReplicaSetAndRecordEvent`: false if already at `size`.
    pub fn scale_to(&mut self, i: usize, size: i32) -> bool {
        if rs_replicas(self.rs(i)) == size {
            return false;
        }
        self.scale(i, size);
        true
    }

    /// Upstream `scaleReplicaSet`: set size and replica annotations.
    pub fn scale(&mut self, i: usize, size: i32) {
        let (desired, max) = (replicas(self.d), replicas(self.d) + max_surge(self.d));
        let rs = &mut self.slots[i].rs;
        let mut changed = set_replicas_annotations(rs, desired, max);
        let spec = rs.spec.get_or_insert_with(Default::default);
        if spec.replicas != Some(size) {
            spec.replicas = Some(size);
            changed = true;
        }
        if changed {
            self.mark(i);
        }
    }

    /// Upstream `calculateStatus`, over the working set.
    pub fn calculate_status(&self) -> DeploymentStatus {
        let d = self.d;
        let sum = |f: fn(&ReplicaSet) -> i32| self.slots.iter().map(|s| f(&s.rs)).sum::<i32>();
        let available = sum(rs_available);
        let total: i32 = sum(rs_replicas);
        let mut status = self.status.clone();
        status.observed_generation = Some(d.metadata.generation.unwrap_or(0));
        status.replicas = Some(sum(rs_status_replicas));
        status.updated_replicas = Some(
            self.new_idx
                .map(|i| rs_status_replicas(self.rs(i)))
                .unwrap_or(0),
        );
        status.ready_replicas = Some(sum(rs_ready));
        status.available_replicas = Some(available);
        status.unavailable_replicas = Some((total - available).max(0));
        let cond = if available >= replicas(d) - max_unavailable(d) {
            condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            let msg = "Deployment does not have minimum availability.".to_string();
            condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                msg,
                self.now,
            )
        };
        set_condition(&mut status, cond);
        status
    }

    /// Upstream `syncDeploymentStatus` (scaling and paused syncs).
    pub fn sync_deployment_status(&mut self) {
        self.status = self.calculate_status();
    }

    /// Upstream `syncRolloutStatus`: status plus the Progressing condition and its deadline.
    pub fn sync_rollout_status(&mut self) {
        let mut st = self.calculate_status();
        if let Some(deadline) = progress_deadline(self.d) {
            let name = self.new_rs_name();
            let cur = get_condition(&st, PROGRESSING).cloned();
            if self.complete(&st) {
                let msg = format!("ReplicaSet \"{name}\" has successfully progressed.");
                set_condition(
                    &mut st,
                    condition(PROGRESSING, "True", "NewReplicaSetAvailable", msg, self.now),
                );
            } else if self.progressing(&st) {
                let msg = format!("ReplicaSet \"{name}\" is progressing.");
                let mut c = condition(PROGRESSING, "True", "ReplicaSetUpdated", msg, self.now);
                if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut st, PROGRESSING);
                set_condition(&mut st, c);
            } else if self.timed_out(&st, deadline) {
                let msg = format!("ReplicaSet \"{name}\" has timed out progressing.");
                set_condition(
                    &mut st,
                    condition(
                        PROGRESSING,
                        "False",
                        "ProgressDeadlineExceeded",
                        msg,
                        self.now,
                    ),
                );
            }
            let c = get_condition(&st, PROGRESSING);
            if let Some(t) = c
                .filter(|c| {
                    c.status == "True" && c.reason.as_deref() != Some("NewReplicaSetAvailable")
                })
                .and_then(|c| c.last_update_time.as_ref())
            {
                let at = from_time(t) + secs(deadline) + Duration::from_millis(1);
                if at > self.now {
                    self.requeue_at = Some(at);
                }
            }
        }
        self.status = st;
    }

    /// Upstream `DeploymentComplete`.
    pub fn complete(&self, st: &DeploymentStatus) -> bool {
        let r = replicas(self.d);
        st.updated_replicas == Some(r)
            && st.replicas == Some(r)
            && st.available_replicas == Some(r)
            && st.observed_generation.unwrap_or(0) >= self.d.metadata.generation.unwrap_or(0)
    }

    /// Upstream `DeploymentProgressing`: progress compared with the current status.
    fn progressing(&self, st: &DeploymentStatus) -> bool {
        let old = self.d.status.clone().unwrap_or_default();
        let g = |v: Option<i32>| v.unwrap_or(0);
        let old_old = g(old.replicas) - g(old.updated_replicas);
        let new_old = g(st.replicas) - g(st.updated_replicas);
        g(st.updated_replicas) > g(old.updated_replicas)
            || new_old < old_old
            || g(st.ready_replicas) > g(old.ready_replicas)
            || g(st.available_replicas) > g(old.available_replicas)
    }

    /// Upstream `DeploymentTimedOut`.
    fn timed_out(&self, st: &DeploymentStatus, deadline: i32) -> bool {
        let Some(c) = get_condition(st, PROGRESSING) else {
            return false;
        };
        match c.reason.as_deref() {
            Some("NewReplicaSetAvailable") => false,
            Some("ProgressDeadlineExceeded") => true,
            _ => c
                .last_update_time
                .as_ref()
                .is_some_and(|t| from_time(t) + secs(deadline) < self.now),
        }
    }

    /// Upstream `cleanupDeployment`: delete the oldest scaled-down ReplicaSets beyond
    /// `revisionHistoryLimit`.
    pub fn cleanup(&mut self) {
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
        let mut cleanable: Vec<usize> = self
            .olds()
            .into_iter()
            .filter(|i| !self.slots[*i].create && self.rs(*i).metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit.max(0));
        if diff <= 0 {
            return;
        }
        cleanable.sort_by_key(|i| (revision(self.rs(*i)), created(&self.rs(*i).metadata)));
        for i in cleanable.into_iter().take(diff as usize) {
            let rs = self.rs(i);
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status_replicas(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            self.deletes.push(i);
        }
    }

    /// The writes this sync decided, in order: ReplicaSet creates/updates, deletes, status.
    /// `pending(kind, key)`: a write for that object is still queued (undrained); it is then
    /// rewritten even if unchanged, since the queued one may be stale.
    /// `announced`: sizes already announced in a ScalingReplicaSet event whose write the cache
    /// does not show yet (so a re-sent pending write is not announced twice).
    pub fn finish(
        mut self,
        pending: &dyn Fn(Kind, &Key) -> bool,
        announced: &BTreeMap<Key, i32>,
    ) -> Finished {
        for i in 0..self.slots.len() {
            if !self.slots[i].create
                && pending(Kind::ReplicaSet, &Key::of(&self.slots[i].rs.metadata))
            {
                self.mark(i);
            }
        }
        let mut out = Vec::new();
        let mut events = Vec::new();
        let mut scaled = Vec::new();
        for i in &self.writes {
            let slot = &self.slots[*i];
            if let Some(ev) = self.scaling_event(slot, announced) {
                scaled.push((Key::of(&slot.rs.metadata), rs_replicas(&slot.rs)));
                events.push(ev);
            }
            let obj = Object::ReplicaSet(Arc::new(slot.rs.clone()));
            out.push(if slot.create {
                Action::Create(obj)
            } else {
                Action::Update(obj)
            });
        }
        for i in &self.deletes {
            let rs = &self.slots[*i].rs;
            out.push(Action::Delete {
                kind: Kind::ReplicaSet,
                key: Key::of(&rs.metadata),
                uid: rs.metadata.uid.clone(),
                grace_period_seconds: None,
            });
        }
        let d = self.d;
        let cur_rev = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        let status_changed = d.status.as_ref() != Some(&self.status);
        if status_changed
            || cur_rev != self.revision.as_ref()
            || pending(Kind::Deployment, &Key::of(&d.metadata))
        {
            let mut copy = d.clone();
            copy.status = Some(self.status);
            if let Some(r) = self.revision {
                copy.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(REVISION.into(), r);
            }
            out.push(Action::UpdateStatus(Object::Deployment(Arc::new(copy))));
        }
        Finished {
            actions: out,
            requeue_at: self.requeue_at,
            events,
            scaled,
        }
    }

    /// Upstream `scaleReplicaSet` / `getNewReplicaSet`'s `ScalingReplicaSet` event when a
    /// write changes a ReplicaSet's size ("Scaled up replica set X from A to B").
    fn scaling_event(&self, slot: &Slot, announced: &BTreeMap<Key, i32>) -> Option<EventRecord> {
        let key = Key::of(&slot.rs.metadata);
        let cached = || {
            self.cache
                .replica_sets
                .get(&key)
                .map_or(0, |rs| rs_replicas(rs))
        };
        let old = match announced.get(&key) {
            Some(&size) => size,
            None if slot.create => 0,
            None => cached(),
        };
        let new = rs_replicas(&slot.rs);
        if old == new {
            return None;
        }
        let op = if old < new { "up" } else { "down" };
        let name = slot.rs.metadata.name.as_deref().unwrap_or("");
        Some(EventRecord::new(
            events::source::DEPLOYMENT,
            events::object_ref("apps/v1", "Deployment", &self.d.metadata),
            EventType::Normal,
            "ScalingReplicaSet",
            format!("Scaled {op} replica set {name} from {old} to {new}"),
            self.now,
        ))
    }
}

/// What one sync decided: writes, the next look, and the Events to record.
pub struct Finished {
    pub actions: Vec<Action>,
    pub requeue_at: Option<Moment>,
    pub events: Vec<EventRecord>,
    /// ReplicaSets whose new size `events` announced.
    pub scaled: Vec<(Key, i32)>,
}
