//! One DaemonSet's reconcile (upstream `syncDaemonSet`, `manage`, `podsShouldBeOnNode`,
//! `syncNodes`, `updateDaemonSetStatus`).
//!
//! Start at [`DaemonSetController::sync`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Pod;

use super::placement::{
    TEMPLATE_GENERATION_ANNOTATION, new_pod, node_should_run, pod_is_updated, target_node,
};
use super::{Backoff, DaemonSetController, NODE_AGENT};
use crate::events::EventType;
use crate::workloads::deployment::util::compute_hash;
use crate::workloads::util::{
    Expectations, available_at, created, node_name, phase, pod_is_available, selector_matches,
};
use crate::{Action, Cache, Key, Kind, Moment, Object, node_ready_status, pod_is_ready};

/// What one DaemonSet looks like at the start of a sync.
pub(super) struct SyncCtx<'a> {
    pub ds: &'a DaemonSet,
    pub key: Key,
    /// The template's hash (the `controller-revision-hash` of up-to-date pods).
    pub hash: String,
    /// The template generation (annotation `deprecated.daemonset.template.generation`).
    pub generation: Option<i64>,
    pub min_ready: i32,
    /// Daemon pods by target node, scheduled first then oldest first (upstream
    /// `podByCreationTimestampAndPhase`); terminal pods already being deleted are left out.
    pub node_pods: BTreeMap<String, Vec<&'a Arc<Pod>>>,
    pub now: Moment,
}

/// Pods to delete and nodes to create a pod on.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub delete: Vec<Arc<Pod>>,
    pub create: Vec<String>,
}

fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

use runtime::labels::pod_is_terminal as is_terminal;

/// Upstream `podByCreationTimestampAndPhase`: bound pods first, then by creation, then name.
fn oldest_first(pods: &mut [&Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let bound = |p: &Pod| node_name(p).is_empty();
        bound(a)
            .cmp(&bound(b))
            .then(created(&a.metadata).cmp(&created(&b.metadata)))
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
}

pub(super) fn rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

impl DaemonSetController {
    /// Daemon pods of `ds`: controlled by it and matching its selector.
    fn owned_pods<'a>(&self, cache: &'a Cache, ds: &DaemonSet) -> Vec<&'a Arc<Pod>> {
        let uid = ds.metadata.uid.as_deref().unwrap_or("");
        let Some(spec) = ds.spec.as_ref() else {
            return Vec::new();
        };
        self.pods_by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| cache.pods.get(k))
            .filter(|p| selector_matches(&spec.selector, p.metadata.labels.as_ref()))
            .collect()
    }

    fn context<'a>(&self, cache: &'a Cache, ds: &'a DaemonSet, now: Moment) -> SyncCtx<'a> {
        let mut node_pods: BTreeMap<String, Vec<&'a Arc<Pod>>> = BTreeMap::new();
        for p in self.owned_pods(cache, ds) {
            if is_terminal(p) && p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(node) = target_node(p) {
                node_pods.entry(node).or_default().push(p);
            }
        }
        node_pods.values_mut().for_each(|v| oldest_first(v));
        let spec = ds.spec.as_ref();
        let template = spec.map(|s| s.template.clone()).unwrap_or_default();
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        SyncCtx {
            ds,
            key: Key::of(&ds.metadata),
            hash: compute_hash(&template, collisions),
            generation: template_generation(ds),
            min_ready: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
            node_pods,
            now,
        }
    }

    /// Reconcile one DaemonSet: create and delete pods (when expectations are satisfied), roll
    /// out a new template, then write status and schedule the next check.
    pub(super) fn sync(&mut self, cache: &Cache, key: &Key, now: Moment) {
        let Some(ds) = cache.daemon_sets.get(key).cloned() else {
            self.forget(key);
            return;
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return;
        }
        let before = self.out.pending_actions();
        if ds
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(NODE_AGENT))
        {
            let status = agent_status(cache, &ds);
            self.store_status(key, &ds, status);
            return;
        }
        let ctx = self.context(cache, &ds, now);
        if self.satisfied(key, now) {
            let plan = self.manage(cache, &ctx);
            let issued = self.sync_nodes(&ctx, plan);
            if !issued && rolling_update(&ds) {
                let plan = super::rolling::plan(cache, &ctx);
                self.sync_nodes(&ctx, plan);
            }
        }
        if let Some(e) = self.expectations.get(key)
            && !self.satisfied(key, now)
        {
            self.queue
                .add_at(key.clone(), e.set_at + self.cfg.expectations_timeout_ms);
        }
        let status = calculate_status(cache, &ctx);
        self.store_status(key, &ds, status);
        if let Some(t) = ctx
            .node_pods
            .values()
            .flatten()
            .filter_map(|p| available_at(p, ctx.min_ready))
            .filter(|t| *t > now)
            .min()
        {
            self.queue.add_at(key.clone(), t);
        }
        if self.out.pending_actions() == before {
            self.queue.forget(key);
        }
    }

    fn store_status(&mut self, key: &Key, ds: &DaemonSet, mut status: DaemonSetStatus) {
        status.observed_generation = Some(ds.metadata.generation.unwrap_or(0));
        let current = ds.status.clone().unwrap_or_default();
        status.conditions = current.conditions.clone();
        status.collision_count = current.collision_count;
        if current != status || self.out.has_pending_update(Kind::DaemonSet, key) {
            let mut copy = ds.clone();
            copy.status = Some(status);
            // No precondition: upstream `storeDaemonSetStatus` re-reads and retries on a
            // conflict, and the status is computed whole from the cache.
            copy.metadata.resource_version = None;
            self.push_status(copy);
        }
    }

    /// Upstream `manage` + `podsShouldBeOnNode`: nodes that need a pod, pods that must go.
    fn manage(&mut self, cache: &Cache, ctx: &SyncCtx<'_>) -> Plan {
        let mut plan = Plan::default();
        let surge = super::rolling::allows_surge(ctx.ds);
        for (name, node) in &cache.nodes {
            let (should_run, should_continue) = node_should_run(node, ctx.ds);
            let pods = ctx.node_pods.get(name);
            match pods {
                None if should_run => plan.create.push(name.clone()),
                Some(pods) if should_continue => {
                    let running = self.drop_failed(ctx, name, pods, &mut plan);
                    keep_one(ctx, &running, surge, &mut plan);
                }
                Some(pods) if !should_continue => plan.delete.extend(
                    pods.iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .map(|p| Arc::clone(p)),
                ),
                _ => {}
            }
        }
        // Upstream `getUnscheduledPodsWithoutNode`: pending pods pinned to a node that is gone.
        for (name, pods) in &ctx.node_pods {
            if !cache.nodes.contains_key(name) {
                plan.delete.extend(
                    pods.iter()
                        .filter(|p| node_name(p).is_empty())
                        .map(|p| Arc::clone(p)),
                );
            }
        }
        plan
    }

    /// Failed daemon pods on `node` are deleted (one per backoff period, with upstream's
    /// FailedDaemonPod Event), succeeded ones too; returns the pods still running.
    fn drop_failed<'a>(
        &mut self,
        ctx: &SyncCtx<'a>,
        node: &str,
        pods: &[&'a Arc<Pod>],
        plan: &mut Plan,
    ) -> Vec<&'a Arc<Pod>> {
        let mut running = Vec::new();
        for p in pods {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match phase(p) {
                "Failed" => {
                    let bk = (ctx.key.clone(), node.to_string());
                    if let Some(b) = self.failed_backoff.get(&bk)
                        && ctx.now < b.last_ms + b.delay_ms
                    {
                        self.queue.add_at(ctx.key.clone(), b.last_ms + b.delay_ms);
                        continue;
                    }
                    self.next_backoff(bk, ctx.now);
                    let name = p.metadata.name.as_deref().unwrap_or("");
                    let ns = p.metadata.namespace.as_deref().unwrap_or("");
                    let msg = format!(
                        "Found failed daemon pod {ns}/{name} on node {node}, will try to kill it"
                    );
                    self.record(ctx.ds, EventType::Warning, "FailedDaemonPod", msg, ctx.now);
                    plan.delete.push(Arc::clone(p));
                }
                "Succeeded" => plan.delete.push(Arc::clone(p)),
                _ => running.push(*p),
            }
        }
        running
    }

    /// Upstream `Backoff.Next`: double the delay (from the initial, up to the max); an entry
    /// idle for twice the max starts over.
    fn next_backoff(&mut self, key: (Key, String), now: Moment) {
        let (initial, max) = (
            self.cfg.failed_pod_backoff_initial_ms,
            self.cfg.failed_pod_backoff_max_ms,
        );
        let b = self.failed_backoff.entry(key).or_insert(Backoff {
            delay_ms: Duration::ZERO,
            last_ms: now,
        });
        b.delay_ms = if b.delay_ms.is_zero() || now.saturating_since(b.last_ms) > max * 2 {
            initial
        } else {
            (b.delay_ms * 2).min(max)
        };
        b.last_ms = now;
    }

    /// Upstream `syncNodes`: issue the deletes and creates (at most `burstReplicas` each) and
    /// expect to observe them. Returns whether anything was issued.
    fn sync_nodes(&mut self, ctx: &SyncCtx<'_>, plan: Plan) -> bool {
        let burst = self.cfg.burst_replicas.max(1) as usize;
        let mut seen = BTreeSet::new();
        let deletes: Vec<Arc<Pod>> = plan
            .delete
            .into_iter()
            .filter(|p| seen.insert(Key::of(&p.metadata)))
            .take(burst)
            .collect();
        let creates: Vec<String> = plan.create.into_iter().take(burst).collect();
        if deletes.is_empty() && creates.is_empty() {
            return false;
        }
        self.expectations.insert(
            ctx.key.clone(),
            Expectations {
                creates: creates.len() as i64,
                deletes: deletes.iter().map(|p| Key::of(&p.metadata)).collect(),
                set_at: ctx.now,
            },
        );
        for node in &creates {
            let pod = new_pod(ctx.ds, node, ctx.generation, &ctx.hash);
            self.out
                .push_action(Action::Create(Object::Pod(Arc::new(pod))));
        }
        for p in &deletes {
            self.out.push_action(Action::Delete {
                kind: Kind::Pod,
                key: Key::of(&p.metadata),
                uid: p.metadata.uid.clone(),
                grace_period_seconds: None,
            });
        }
        true
    }
}

/// More than one running daemon pod on a node: without surge keep the oldest; with surge keep
/// the oldest up-to-date and the oldest old pod, and drop the old one once the new one is
/// available (or the old one is not ready) — upstream `podsShouldBeOnNode`.
fn keep_one(ctx: &SyncCtx<'_>, running: &[&Arc<Pod>], surge: bool, plan: &mut Plan) {
    if running.len() <= 1 {
        return;
    }
    if !surge {
        plan.delete
            .extend(running[1..].iter().map(|p| Arc::clone(p)));
        return;
    }
    let (mut newest, mut oldest_old): (Option<&Arc<Pod>>, Option<&Arc<Pod>>) = (None, None);
    for p in running {
        let slot = if pod_is_updated(p, &ctx.hash, None) {
            &mut newest
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            plan.delete.push(Arc::clone(p));
        }
    }
    if let (Some(new), Some(old)) = (newest, oldest_old)
        && (!pod_is_ready(old) || pod_is_available(new, ctx.min_ready, ctx.now))
    {
        plan.delete.push(Arc::clone(old));
    }
}

/// Upstream `updateDaemonSetStatus`: per node that should run the pod, whether its oldest
/// daemon pod exists, is ready, available and up to date; pods on other nodes are
/// misscheduled.
fn calculate_status(cache: &Cache, ctx: &SyncCtx<'_>) -> DaemonSetStatus {
    let mut s = DaemonSetStatus::default();
    let (mut updated, mut available) = (0, 0);
    for (name, node) in &cache.nodes {
        let (should_run, _) = node_should_run(node, ctx.ds);
        let first = ctx.node_pods.get(name).and_then(|p| p.first());
        match (should_run, first) {
            (true, None) => s.desired_number_scheduled += 1,
            (true, Some(pod)) => {
                s.desired_number_scheduled += 1;
                s.current_number_scheduled += 1;
                if pod_is_ready(pod) {
                    s.number_ready += 1;
                    if pod_is_available(pod, ctx.min_ready, ctx.now) {
                        available += 1;
                    }
                }
                if pod_is_updated(pod, &ctx.hash, ctx.generation) {
                    updated += 1;
                }
            }
            (false, Some(_)) => s.number_misscheduled += 1,
            (false, None) => {}
        }
    }
    s.updated_number_scheduled = Some(updated);
    s.number_available = Some(available);
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    s
}

/// Status of a [`NODE_AGENT`] DaemonSet: every node runs the agent inside its zonelab agent
/// process, so a node that should run it counts as scheduled and up to date, and as ready and
/// available while the node is Ready (the agent's kubelet posts that); a node that should no
/// longer get a pod but keeps it (an unreachable node) is misscheduled, as upstream counts
/// the kube-proxy pod on a dead node.
fn agent_status(cache: &Cache, ds: &DaemonSet) -> DaemonSetStatus {
    let mut s = DaemonSetStatus::default();
    for node in cache.nodes.values() {
        match node_should_run(node, ds) {
            (true, _) => {
                s.desired_number_scheduled += 1;
                s.current_number_scheduled += 1;
                if node_ready_status(node) == Some("True") {
                    s.number_ready += 1;
                }
            }
            (false, true) => s.number_misscheduled += 1,
            (false, false) => {}
        }
    }
    s.updated_number_scheduled = Some(s.current_number_scheduled);
    s.number_available = Some(s.number_ready);
    s.number_unavailable = Some(s.desired_number_scheduled - s.number_ready);
    s
}
