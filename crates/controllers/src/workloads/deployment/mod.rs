//! The Deployment controller (upstream pkg/controller/deployment): owns ReplicaSets named
//! `<deployment>-<pod-template-hash>`, rolls templates out (RollingUpdate or Recreate), scales
//! proportionally, prunes history and reports status with upstream conditions.
//!
//! Start at [`DeploymentController`]; one sync is a [`sync::SyncCtx`].

mod rolling;

use std::collections::BTreeMap;
use std::time::Duration;
mod sync;
pub mod util;

use crate::workloads::util::{WorkQueue, controller_key, selector_matches};
use crate::{Action, Cache, Change, Controller, Key, Kind, Moment, Object, WriteError};
use runtime::Outbox;

pub use sync::{AVAILABLE, PROGRESSING};

/// Tunables, named after upstream's.
#[derive(Clone, Debug)]
pub struct DeploymentConfig {
    /// First retry delay after a failed write. Upstream `DefaultControllerRateLimiter`
    /// (client-go util/workqueue): exponential from 5ms.
    pub retry_base_ms: Duration,
    /// Retry delay cap: 1000s in `DefaultControllerRateLimiter`.
    pub retry_max_ms: Duration,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        DeploymentConfig {
            retry_base_ms: Duration::from_millis(5),
            retry_max_ms: Duration::from_millis(1_000_000),
        }
    }
}

/// The Deployment controller.
pub struct DeploymentController {
    queue: WorkQueue,
    /// Writes and Events for the driver to poll.
    out: Outbox,
    /// ReplicaSet sizes announced (ScalingReplicaSet) but not yet seen in the cache.
    announced: BTreeMap<Key, i32>,
}

impl DeploymentController {
    pub fn new(cfg: DeploymentConfig) -> DeploymentController {
        DeploymentController {
            queue: WorkQueue::new(cfg.retry_base_ms, cfg.retry_max_ms),
            out: Outbox::new(),
            announced: BTreeMap::new(),
        }
    }

    /// Upstream `syncDeployment` for one key.
    fn sync(&mut self, cache: &Cache, key: &Key, now: Moment) {
        let Some(d) = cache.deployments.get(key).cloned() else {
            self.queue.remove(key);
            return;
        };
        let Some(spec) = d.spec.as_ref() else { return };
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        if !selector_matches(&spec.selector, template_labels) {
            // Upstream: an empty selector (selects everything) or one not matching the
            // template is refused (validation rejects the latter).
            return;
        }
        let mut ctx = sync::SyncCtx::new(&d, cache, now);
        if d.metadata.deletion_timestamp.is_some() {
            if ctx.sync_revision(false) {
                ctx.sync_deployment_status();
            }
        } else if spec.paused == Some(true) {
            ctx.sync_scale(true);
        } else if ctx.is_scaling_event() {
            ctx.sync_scale(false);
        } else if util::is_recreate(&d) {
            ctx.rollout_recreate();
        } else {
            ctx.rollout_rolling();
        }
        let pending = |kind: Kind, key: &Key| self.out.has_pending_update(kind, key);
        let sync::Finished {
            actions,
            requeue_at: requeue,
            events,
            scaled,
        } = ctx.finish(&pending, &self.announced);
        events.into_iter().for_each(|e| self.out.push_event(e));
        self.announced.extend(scaled);
        if actions.is_empty() {
            self.queue.forget(key);
        }
        for a in actions {
            self.push(a);
        }
        if let Some(at) = requeue {
            self.queue.add_at(key.clone(), at);
        }
    }

    /// Queue a write; a newer sync's update of an object replaces a pending one (it was
    /// computed from a fresher cache), so bursts of events coalesce.
    fn push(&mut self, action: Action) {
        self.out.push_coalesced(action);
    }

    /// The Deployment controlling the ReplicaSet `rs` (namespace/name), via the cache.
    fn deployment_of_rs(cache: &Cache, rs: &Key) -> Option<Key> {
        let rs = cache.replica_sets.get(rs)?;
        controller_key(&rs.metadata, "Deployment").map(|(k, _)| k)
    }
}

impl Controller for DeploymentController {
    fn name(&self) -> &'static str {
        "deployment"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        let keys: Vec<Key> = cache.deployments.keys().cloned().collect();
        for k in keys {
            self.sync(cache, &k, now);
        }
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        let mut keys: Vec<Key> = Vec::new();
        match change.object() {
            Object::Deployment(d) => {
                if matches!(change, Change::Deleted(_)) {
                    self.queue.remove(&Key::of(&d.metadata));
                } else {
                    keys.push(Key::of(&d.metadata));
                }
            }
            Object::ReplicaSet(rs) => {
                let rs_key = Key::of(&rs.metadata);
                let size = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                if matches!(change, Change::Deleted(_))
                    || self.announced.get(&rs_key) == Some(&size)
                {
                    self.announced.remove(&rs_key);
                }
                keys.extend(controller_key(&rs.metadata, "Deployment").map(|(k, _)| k));
                if let Change::Applied {
                    old: Some(Object::ReplicaSet(old)),
                    ..
                } = change
                {
                    keys.extend(controller_key(&old.metadata, "Deployment").map(|(k, _)| k));
                }
            }
            Object::Pod(p) if matches!(change, Change::Deleted(_)) => {
                // Recreate waits for old pods to be gone (upstream `deletePod`).
                let d = controller_key(&p.metadata, "ReplicaSet")
                    .and_then(|(rs, _)| Self::deployment_of_rs(cache, &rs));
                keys.extend(d.filter(|d| {
                    cache
                        .deployments
                        .get(d)
                        .is_some_and(|d| util::is_recreate(d))
                }));
            }
            _ => {}
        }
        keys.sort();
        keys.dedup();
        for k in keys {
            self.sync(cache, &k, now);
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        for key in self.queue.pop_due(now) {
            self.sync(cache, &key, now);
        }
    }

    fn poll_timeout(&self) -> Option<Moment> {
        self.queue.next()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        let key = match action {
            Action::Create(Object::ReplicaSet(rs)) | Action::Update(Object::ReplicaSet(rs)) => {
                controller_key(&rs.metadata, "Deployment").map(|(k, _)| k)
            }
            Action::UpdateStatus(Object::Deployment(d)) => Some(Key::of(&d.metadata)),
            Action::Delete {
                kind: Kind::ReplicaSet,
                key,
                ..
            } => {
                // The owner is not in the action; the ReplicaSet's namespace is a bound on it.
                tracing::debug!(%key, ?error, "deleting old replicaset failed");
                None
            }
            _ => None,
        };
        if let Some(key) = key {
            tracing::debug!(%key, ?error, "deployment write failed; requeueing");
            self.queue.retry(key, now);
        }
    }
}
