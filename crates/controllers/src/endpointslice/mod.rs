//! The EndpointSlice controller: keeps each selector Service's EndpointSlices in line with its
//! pods, with upstream packing, conditions and trigger-time annotation. Start at
//! [`EndpointSliceController`]; the placement is in `reconcile`, pod → endpoint in `desired`.
//!
//! Event flow: a pod/service/node change maps to the Services it affects (through the
//! indexes in `index`: the Services selecting a pod, the pods a Service selects, the slices
//! holding a pod's endpoint); each is synced at once (or after
//! `endpoint_updates_batch_period` for pod changes). A sync builds the desired endpoints and
//! writes only slices that differ. While a Service is clean (its slices hold every endpoint
//! as desired except those of the pods changed since its last sync), a sync looks at just
//! those pods and the slices holding them: the same writes a full reconcile would plan, at a
//! cost that follows the change, not the Service's size. Our own writes are tracked
//! until they come back through the informer (as upstream's EndpointSliceTracker does), so a
//! Service is never synced against a cache that lacks its own writes: such a sync fails as
//! upstream's `StaleInformerCache` error does and is retried with the rate-limited backoff
//! (1 s, doubling), not the instant the write comes back. A failed write requeues the Service
//! with the same backoff.

mod desired;
mod hints;
#[cfg(test)]
mod incremental_tests;
mod index;
mod reconcile;
mod state;
#[cfg(test)]
mod tests;
mod topology;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::cache::{Cache, Change, Key, Object};
use crate::time::from_time;
use crate::{Action, Controller, Kind, Moment, WriteError};
use runtime::Outbox;
use runtime::queue::DelayQueue;

use desired::{desired_groups, ready_transition, selector, selects};
use index::{Holders, Selection};
use reconcile::{Ctx, desired_labels, plan};
use state::{Echo, Inflight, ServiceState};

/// `kubernetes.io/service-name` (discovery/v1 `LabelServiceName`) and
/// `endpoints.kubernetes.io/last-change-trigger-time` (core/v1 `EndpointsLastChangeTriggerTime`).
pub use runtime::labels::{SERVICE_NAME_LABEL, TRIGGER_TIME_ANNOTATION};
/// `endpointslice.kubernetes.io/managed-by` (k8s.io/api discovery/v1 `LabelManagedBy`).
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// `service.kubernetes.io/headless` (k8s.io/api core/v1 `IsHeadlessService`).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The managed-by value (upstream `pkg/controller/endpointslice` `ControllerName`).
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The only address type this project serves (IPv4 clusters).
pub const ADDRESS_TYPE: &str = "IPv4";

/// How long to wait for our own writes to come back before giving up on them and syncing
/// anyway (a bound, so a lost watch event cannot wedge a Service; not an upstream value).
pub const INFLIGHT_TIMEOUT_MS: Duration = Duration::from_millis(30_000);

/// Flags and constants of the upstream controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSliceConfig {
    /// `--max-endpoints-per-slice`: default 100, max 1000 (kube-controller-manager flag
    /// reference; `pkg/controller/endpointslice/config/v1alpha1/defaults.go`).
    pub max_endpoints_per_slice: usize,
    /// `--endpoint-updates-batch-period`: delay before a pod change is synced; default 0,
    /// no batching (kube-controller-manager flag reference).
    pub endpoint_updates_batch_period_ms: Duration,
    /// Delay before syncing a Service after someone else changed one of its slices: 1 s
    /// (upstream `endpointSliceChangeMinSyncDelay`, or the batch period if larger).
    pub endpoint_slice_change_min_sync_delay_ms: Duration,
    /// First retry delay after a failed sync: 1 s (upstream `defaultSyncBackOff`).
    pub sync_backoff_ms: Duration,
    /// Retry delay cap: 1000 s (upstream `maxSyncBackOff`).
    pub max_sync_backoff_ms: Duration,
    /// Retries before a Service is dropped from the retry queue: 15 (upstream `maxRetries`).
    pub max_retries: u32,
}

impl Default for EndpointSliceConfig {
    fn default() -> Self {
        EndpointSliceConfig {
            max_endpoints_per_slice: 100,
            endpoint_updates_batch_period_ms: Duration::ZERO,
            endpoint_slice_change_min_sync_delay_ms: Duration::from_millis(1_000),
            sync_backoff_ms: Duration::from_millis(1_000),
            max_sync_backoff_ms: Duration::from_millis(1_000_000),
            max_retries: 15,
        }
    }
}

/// The EndpointSlice controller (see the module docs).
pub struct EndpointSliceController {
    config: EndpointSliceConfig,
    /// Bookkeeping per Service we have seen (trigger times, writes in flight, retries).
    services: BTreeMap<Key, ServiceState>,
    /// Services due for a sync at a time (batching, retries, changes by others).
    scheduled: DelayQueue<Key>,
    /// Services with writes in flight, by when to stop waiting for them.
    deadlines: DelayQueue<Key>,
    /// Which Services select which pods.
    selection: Selection,
    /// Which slices hold which pod's endpoint.
    holders: Holders,
    /// Slices we asked to delete → their Service (a Delete action carries no labels).
    deleting: BTreeMap<Key, Key>,
    /// Writes and Events for the driver to poll.
    out: Outbox,
    /// Zones under a zonal shift (their Pod endpoints are left out).
    shifted: crate::zonalshift::ShiftedZones,
    /// Zone CPU shares and allocated hints (`topology-mode: Auto`).
    topology: topology::TopologyCache,
    /// Total syncs run (for benches and logs).
    pub syncs: u64,
    /// Syncs run as partial syncs (of the pods changed since the last sync).
    pub partial_syncs: u64,
    /// Every sync a full reconcile (the reference the partial syncs are tested against).
    #[cfg(test)]
    full_only: bool,
}

impl EndpointSliceController {
    pub fn new(config: EndpointSliceConfig) -> EndpointSliceController {
        EndpointSliceController {
            config: EndpointSliceConfig {
                max_endpoints_per_slice: config.max_endpoints_per_slice.max(1),
                ..config
            },
            services: BTreeMap::new(),
            scheduled: DelayQueue::default(),
            deadlines: DelayQueue::default(),
            selection: Selection::default(),
            holders: Holders::default(),
            deleting: BTreeMap::new(),
            out: Outbox::new(),
            shifted: Default::default(),
            topology: topology::TopologyCache::default(),
            syncs: 0,
            partial_syncs: 0,
            #[cfg(test)]
            full_only: false,
        }
    }

    /// A controller that reconciles every sync in full (test reference).
    #[cfg(test)]
    pub(crate) fn full_only(config: EndpointSliceConfig) -> EndpointSliceController {
        EndpointSliceController {
            full_only: true,
            ..EndpointSliceController::new(config)
        }
    }

    /// Sync every Service: once the informers have synced, and when a zone starts or stops
    /// being shifted away from (its endpoints leave or come back at once; shifts are rare).
    fn sync_all(&mut self, cache: &Cache, now: Moment) {
        let keys: Vec<Key> = cache.services.keys().cloned().collect();
        for key in keys {
            self.sync_full(cache, &key, now);
        }
    }

    fn schedule(&mut self, key: &Key, at: Moment) {
        if let Err(e) = self.scheduled.add_at(key.clone(), at) {
            // A Service past the bound is synced again by its next change.
            tracing::warn!(service = %key, "endpointslice: sync not queued: {e}");
        }
    }

    /// Queue `key` in `q` at `at`, replacing any time it had.
    fn set_due(q: &mut DelayQueue<Key>, key: &Key, at: Moment) {
        if let Err(e) = q.schedule(key.clone(), at) {
            tracing::warn!(service = %key, "endpointslice: not queued: {e}");
        }
    }

    /// Forget a Service that is gone.
    fn forget_service(&mut self, key: &Key) {
        self.services.remove(key);
        self.scheduled.remove(key);
        self.deadlines.remove(key);
    }

    /// Stop waiting on `key`'s writes once none is left in flight.
    fn settle(&mut self, key: &Key) {
        if self.services.get(key).is_none_or(|s| s.inflight.is_empty()) {
            self.deadlines.remove(key);
        }
    }

    /// Full reconcile of `key` now (a Service, node or topology change, a change by someone
    /// else), unless its own writes are still in flight (then at its retry).
    fn sync_full(&mut self, cache: &Cache, key: &Key, now: Moment) {
        if let Some(s) = self.services.get_mut(key) {
            s.clean = false;
        }
        self.sync(cache, key, now);
    }

    /// Sync `key` now: while it is clean, just the pods changed since its last sync (a
    /// partial sync: its last sync was full or partial and all its writes came back as sent,
    /// so every other endpoint is current, as a full reconcile would find it); else in full.
    fn sync(&mut self, cache: &Cache, key: &Key, now: Moment) {
        let scheduled_at = self.scheduled.remove(key);
        let state = self.services.entry(key.clone()).or_default();
        if !state.inflight.is_empty() {
            // Upstream: `StaleSlices` → `NewStaleInformerCache(...)` → `AddRateLimited`; a
            // retry already waiting keeps its earlier time (the delaying queue's rule).
            tracing::debug!(service = %key, "endpointslice: informer cache is out of date; retrying with backoff");
            if let Some(at) = scheduled_at.filter(|at| *at > now) {
                Self::set_due(&mut self.scheduled, key, at);
            }
            self.fail(key, now);
            return;
        }
        let partial = state.clean && state.known;
        #[cfg(test)]
        let partial = partial && !self.full_only;
        let dirty = std::mem::take(&mut state.dirty);
        let Some(svc) = cache.services.get(key) else {
            self.forget_service(key);
            return;
        };
        if selector(svc).is_none() {
            return;
        }
        // Upstream forgets the retry count when a sync succeeds; ours succeeds once its
        // writes come back, so count from zero now and let a failing write restore it.
        state.failures_before_sync = state.failures;
        state.failures = 0;
        self.syncs += 1;
        let trigger = if state.known {
            state.trigger.take()
        } else {
            state.known = true;
            state.trigger = None;
            svc.metadata.creation_timestamp.as_ref().map(from_time)
        };
        state.clean = true;
        let existing: Vec<&Arc<EndpointSlice>> =
            cache.slices_of(key).filter(|s| is_managed(s)).collect();
        // Empty slices (the placeholder) take part in placement only in a full sync.
        let partial = partial && existing.iter().all(|s| !s.endpoints.is_empty());
        let only: Option<Vec<String>> = partial.then(|| dirty.into_iter().collect());
        self.partial_syncs += u64::from(partial);
        let holding = only.as_ref().map(|o| self.holders.holding(key, o.iter()));
        let desired = match &only {
            Some(names) => desired_groups(cache, svc, names.iter(), &self.shifted),
            None => desired_groups(cache, svc, self.selection.members(key), &self.shifted),
        };
        let labels = desired_labels(svc, CONTROLLER_NAME);
        let ctx = Ctx {
            svc,
            labels: &labels,
            max: self.config.max_endpoints_per_slice,
            only: only.as_deref(),
            holding: holding.as_ref(),
        };
        let mut planned = plan(&ctx, &desired, &existing);
        let events = hints::reconcile_hints(
            &mut self.topology,
            svc,
            key,
            &mut planned,
            &existing,
            partial,
        );
        self.record_hint_events(svc, events, now);
        let missing_node = desired.missing_node;
        self.emit(key, planned, trigger, now);
        if missing_node {
            self.fail_after_sync(key, now);
        } else if self
            .services
            .get(key)
            .is_some_and(|s| s.inflight.is_empty())
        {
            self.succeed(key);
        }
    }

    /// Turn a plan into actions, remembering them as in flight.
    fn emit(&mut self, key: &Key, planned: reconcile::Plan, trigger: Option<Moment>, now: Moment) {
        let state = self.services.entry(key.clone()).or_default();
        let inflight = &mut state.inflight;
        for mut slice in planned.creates {
            set_trigger(&mut slice, trigger);
            let slice = Arc::new(slice);
            inflight.creates.push(slice.clone());
            self.out
                .push_action(Action::Create(Object::EndpointSlice(slice)));
        }
        for mut slice in planned.updates {
            set_trigger(&mut slice, trigger);
            let slice = Arc::new(slice);
            inflight.updates.insert(
                slice.metadata.name.clone().unwrap_or_default(),
                slice.clone(),
            );
            self.out
                .push_action(Action::Update(Object::EndpointSlice(slice)));
        }
        for name in planned.deletes {
            let slice_key = Key::new(&key.namespace, &name);
            inflight.deletes.insert(name);
            self.deleting.insert(slice_key.clone(), key.clone());
            self.out.push_action(Action::Delete {
                kind: Kind::EndpointSlice,
                key: slice_key,
                uid: None,
                grace_period_seconds: None,
            });
        }
        if !inflight.is_empty() {
            // When to stop waiting for them.
            Self::set_due(&mut self.deadlines, key, now + INFLIGHT_TIMEOUT_MS);
        }
    }

    fn succeed(&mut self, key: &Key) {
        if let Some(s) = self.services.get_mut(key) {
            s.failures = 0;
        }
    }

    /// The sync that reset the retry count failed after all (a write failed, a pod's node is
    /// unknown): count on from before it, and reconcile in full at the retry.
    fn fail_after_sync(&mut self, key: &Key, now: Moment) {
        if let Some(s) = self.services.get_mut(key) {
            s.failures = s.failures.max(s.failures_before_sync);
            s.clean = false;
        }
        self.fail(key, now);
    }

    /// Requeue `key` with exponential backoff (bounded by `max_retries`). The pods changed
    /// since its last sync stay noted for the retry.
    fn fail(&mut self, key: &Key, now: Moment) {
        let state = self.services.entry(key.clone()).or_default();
        state.failures += 1;
        if state.failures > self.config.max_retries {
            tracing::warn!(service = %key, "endpointslice: dropping service out of the retry queue");
            state.failures = 0;
            return;
        }
        let shift = (state.failures - 1).min(30);
        let delay = self
            .config
            .sync_backoff_ms
            .saturating_mul(1 << shift)
            .min(self.config.max_sync_backoff_ms);
        self.schedule(key, now + delay);
    }

    /// Record a trigger time for `key` (the earliest change not yet written).
    fn note_trigger(&mut self, key: &Key, at: Option<Moment>) {
        if let (Some(at), Some(state)) = (at, self.services.get_mut(key)) {
            state.trigger = Some(state.trigger.map_or(at, |t| t.min(at)));
        }
    }

    fn on_pod(&mut self, cache: &Cache, new: Option<&Pod>, old: Option<&Pod>, now: Moment) {
        if let (Some(n), Some(o)) = (new, old)
            && !pod_endpoint_changed(o, n)
        {
            return;
        }
        let Some(name) = new.or(old).and_then(|p| p.metadata.name.clone()) else {
            return;
        };
        let (was, is) = self.selection.pod_changed(new, old);
        let affected: BTreeSet<Key> = was.union(&is).cloned().collect();
        let batch = self.config.endpoint_updates_batch_period_ms;
        for key in &affected {
            let t_old = old.filter(|_| was.contains(key)).and_then(ready_transition);
            let t_new = new.filter(|_| is.contains(key)).and_then(ready_transition);
            if t_new > t_old {
                self.note_trigger(key, t_new);
            }
            if let Some(state) = self.services.get_mut(key) {
                state.dirty.insert(name.clone());
            }
        }
        for key in affected {
            if batch > Duration::ZERO {
                self.schedule(&key, now + batch);
            } else {
                self.sync(cache, &key, now);
            }
        }
    }

    fn on_service(&mut self, cache: &Cache, new: &Service, old: Option<&Service>, now: Moment) {
        let key = Key::of(&new.metadata);
        // Pods newly selected count as changed (upstream: not in the last sync's state): the
        // earliest Ready transition among them, found in the selection's scan of the namespace.
        let changed = old.filter(|o| selector(new).is_some() && selector(o) != selector(new));
        let old_sel = changed.and_then(selector);
        let mut first: Option<Moment> = None;
        let mut visit = |p: &Pod| {
            if changed.is_some()
                && !old_sel.is_some_and(|o| selects(o, p))
                && let Some(t) = ready_transition(p)
            {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
        };
        let scanned = self
            .selection
            .set_service(cache, &key, selector(new), &mut visit);
        if let (Some(_), Some(sel)) = (changed, selector(new)) {
            if !scanned {
                // The index already had this selector: scan for the trigger alone.
                cache
                    .pods_in(&key.namespace)
                    .filter(|p| selects(sel, p))
                    .for_each(|p| visit(p));
            }
            self.note_trigger(&key, first);
        }
        self.sync_full(cache, &key, now);
    }

    /// The Services selecting a pod on node `name`, if its zone changed (their endpoints'
    /// zone did).
    fn on_node(&self, cache: &Cache, name: &str, zone_changed: bool) -> BTreeSet<Key> {
        let mut keys = BTreeSet::new();
        if !zone_changed {
            return keys;
        }
        for pod in cache.pods_on_node(name) {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            keys.extend(self.selection.selecting(ns, pod));
        }
        keys
    }

    /// After a node change: `keys` plus, if the node's share of the zone CPU changed
    /// (`topology_changed`), the Services whose hints a zone would now overload (upstream
    /// `checkNodeTopologyDistribution`). Upstream queues both, so each is synced once.
    fn sync_after_node(
        &mut self,
        cache: &Cache,
        mut keys: BTreeSet<Key>,
        topology_changed: bool,
        now: Moment,
    ) {
        if topology_changed {
            for key in self.topology.overloaded_services() {
                tracing::debug!(service = %key, "endpointslice: queuing Service after Node change due to overloading");
                keys.insert(key);
            }
        }
        for key in keys {
            self.sync_full(cache, &key, now);
        }
    }
}

impl EndpointSliceController {
    /// Record the hint Events of a sync on the Service.
    fn record_hint_events(&mut self, svc: &Service, events: Vec<topology::HintEvent>, now: Moment) {
        for e in events {
            let type_ = if e.normal {
                crate::events::EventType::Normal
            } else {
                crate::events::EventType::Warning
            };
            self.out.push_event(crate::events::EventRecord::new(
                topology::EVENT_SOURCE,
                crate::events::object_ref("v1", "Service", &svc.metadata),
                type_,
                e.reason,
                e.message,
                now,
            ));
        }
    }

    fn on_slice(&mut self, new: Option<&EndpointSlice>, old: Option<&EndpointSlice>, now: Moment) {
        if let Some(o) = old.filter(|s| is_managed(s)) {
            self.holders.remove(o);
        }
        if let Some(n) = new.filter(|s| is_managed(s)) {
            self.holders.add(n);
        }
        if !new.is_some_and(is_managed) && !old.is_some_and(is_managed) {
            return;
        }
        let Some(key) = new
            .and_then(service_of)
            .or_else(|| old.and_then(service_of))
        else {
            return;
        };
        if new.is_none()
            && let Some(o) = old
        {
            self.deleting.remove(&Key::of(&o.metadata));
        }
        let echo = self
            .services
            .get_mut(&key)
            .map_or(Echo::Foreign, |s| s.inflight.echo(new, old));
        self.settle(&key);
        match echo {
            Echo::Ours => self.after_echo(&key),
            Echo::Foreign => {
                if let Some(s) = self.services.get_mut(&key) {
                    s.clean = false;
                }
                // Someone else changed one of our slices: put it right after a short delay.
                let delay = self
                    .config
                    .endpoint_slice_change_min_sync_delay_ms
                    .max(self.config.endpoint_updates_batch_period_ms);
                self.schedule(&key, now + delay);
                // A slice relabelled to another Service leaves its old one short of
                // endpoints: that one reconciles in full too (upstream queues both).
                if let Some(from) = old.and_then(service_of).filter(|from| *from != key) {
                    if let Some(s) = self.services.get_mut(&from) {
                        s.clean = false;
                    }
                    self.schedule(&from, now + delay);
                }
            }
        }
    }

    /// One of our writes is settled: once all are and no retry is queued, the Service is in
    /// sync. A sync that found them in flight waits for its rate-limited retry, as upstream
    /// (its tracker does not queue a Service for the echo of its own write).
    fn after_echo(&mut self, key: &Key) {
        let Some(state) = self.services.get(key) else {
            return;
        };
        if state.inflight.is_empty() && !self.scheduled.contains(key) {
            self.succeed(key);
        }
    }
}

/// The keys of `q` due at or before `now`, in key order (left queued: a sync pass handles
/// them all).
fn due_keys(q: &DelayQueue<Key>, now: Moment) -> Vec<Key> {
    let mut keys: Vec<Key> = q
        .iter()
        .take_while(|(at, _)| *at <= now)
        .map(|(_, k)| k.clone())
        .collect();
    keys.sort();
    keys
}

/// True if the slice is managed by this controller.
fn is_managed(slice: &EndpointSlice) -> bool {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(CONTROLLER_NAME)
}

/// The Service a slice belongs to, by its label.
fn service_of(slice: &EndpointSlice) -> Option<Key> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(Key::new(
        slice.metadata.namespace.as_deref().unwrap_or(""),
        name,
    ))
}

/// Set (or clear, when there is no new trigger) the trigger-time annotation, RFC 3339.
fn set_trigger(slice: &mut EndpointSlice, trigger: Option<Moment>) {
    let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger.and_then(|t| k8s_openapi::jiff::Timestamp::from_millisecond(t.as_millis()).ok()) {
        Some(ts) => {
            annotations.insert(TRIGGER_TIME_ANNOTATION.to_string(), ts.to_string());
        }
        None => {
            annotations.remove(TRIGGER_TIME_ANNOTATION);
        }
    }
}

/// True if a pod update can change its endpoints or its Service membership (upstream
/// `podEndpointsChanged`, plus phase and node name).
fn pod_endpoint_changed(old: &Pod, new: &Pod) -> bool {
    let spec = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| (s.hostname.clone(), s.subdomain.clone(), s.node_name.clone()))
    };
    let status = |p: &Pod| {
        p.status
            .as_ref()
            .map(|s| (s.phase.clone(), s.pod_ip.clone(), s.pod_ips.clone()))
    };
    old.metadata.labels != new.metadata.labels
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || crate::pod_is_ready(old) != crate::pod_is_ready(new)
        || spec(old) != spec(new)
        || status(old) != status(new)
}

impl Controller for EndpointSliceController {
    fn name(&self) -> &'static str {
        "endpointslice"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        self.shifted = crate::zonalshift::ShiftedZones::from_cache(cache);
        self.selection.rebuild(cache);
        self.holders.rebuild(cache);
        for (name, node) in &cache.nodes {
            self.topology.set_node(name, Some(node));
        }
        self.sync_all(cache, now);
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        match change {
            Change::Applied {
                new: Object::Pod(new),
                old,
            } => {
                let old = match old {
                    Some(Object::Pod(p)) => Some(p.as_ref()),
                    _ => None,
                };
                self.on_pod(cache, Some(new), old, now);
            }
            Change::Deleted(Object::Pod(old)) => self.on_pod(cache, None, Some(old), now),
            Change::Applied {
                new: Object::Service(new),
                old,
            } => {
                let old = match old {
                    Some(Object::Service(s)) => Some(s.as_ref()),
                    _ => None,
                };
                self.on_service(cache, new, old, now);
            }
            Change::Deleted(Object::Service(old)) => {
                // The garbage collector deletes the slices (ownerReferences).
                let key = Key::of(&old.metadata);
                self.selection.set_service(cache, &key, None, |_| {});
                self.forget_service(&key);
                self.topology.remove_hints(&key);
            }
            Change::Applied {
                new: Object::Node(new),
                old,
            } => {
                let zone = |n: &k8s_openapi::api::core::v1::Node| {
                    n.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(crate::ZONE_LABEL))
                        .cloned()
                };
                let name = new.metadata.name.as_deref().unwrap_or("");
                let topology_changed = self.topology.set_node(name, Some(new));
                if self.shifted.update(new) {
                    // Every Service is synced, after the topology update: nothing left to do.
                    self.sync_all(cache, now);
                    return;
                }
                let changed = match old {
                    Some(Object::Node(o)) => zone(o) != zone(new),
                    _ => true,
                };
                let keys = self.on_node(cache, name, changed);
                self.sync_after_node(cache, keys, topology_changed, now);
            }
            Change::Deleted(Object::Node(old)) => {
                let name = old.metadata.name.as_deref().unwrap_or("");
                let topology_changed = self.topology.set_node(name, None);
                if self.shifted.remove(name) {
                    self.sync_all(cache, now);
                    return;
                }
                let keys = self.on_node(cache, name, true);
                self.sync_after_node(cache, keys, topology_changed, now);
            }
            Change::Applied {
                new: Object::EndpointSlice(new),
                old,
            } => {
                let old = match old {
                    Some(Object::EndpointSlice(s)) => Some(s.as_ref()),
                    _ => None,
                };
                self.on_slice(Some(new), old, now);
            }
            Change::Deleted(Object::EndpointSlice(old)) => self.on_slice(None, Some(old), now),
            _ => {}
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        for key in due_keys(&self.deadlines, now) {
            tracing::warn!(service = %key, "endpointslice: own writes not seen back in time; resyncing");
            self.deadlines.remove(&key);
            if let Some(s) = self.services.get_mut(&key) {
                s.inflight = Inflight::default();
                s.clean = false;
            }
            self.sync(cache, &key, now);
        }
        for key in due_keys(&self.scheduled, now) {
            self.scheduled.remove(&key);
            self.sync(cache, &key, now);
        }
    }

    fn poll_timeout(&self) -> Option<Moment> {
        [self.scheduled.next_due(), self.deadlines.next_due()]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        let key = match action {
            Action::Create(Object::EndpointSlice(s)) | Action::Update(Object::EndpointSlice(s)) => {
                service_of(s)
            }
            Action::Delete {
                kind: Kind::EndpointSlice,
                key,
                ..
            } => self.deleting.remove(key),
            _ => None,
        };
        let Some(key) = key else { return };
        if let Some(state) = self.services.get_mut(&key) {
            state.inflight.forget(action);
        }
        self.settle(&key);
        let harmless = matches!(
            (action, error),
            (Action::Delete { .. }, WriteError::NotFound)
        );
        tracing::debug!(service = %key, ?error, "endpointslice: write failed");
        if harmless {
            self.after_echo(&key);
        } else {
            self.fail_after_sync(&key, now);
        }
    }
}
