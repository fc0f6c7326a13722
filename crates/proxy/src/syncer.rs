//! The sans-IO sync loop of kube-proxy: fed Service/EndpointSlice events and the time, it
//! hands out rule transactions paced like upstream's current runner (`pkg/proxy/runner`
//! `BoundedFrequencyRunner` as `Runner.AddProxier` builds it: `minSyncPeriod` counted from the
//! end of the previous sync with no burst, a retry `syncPeriod` after a failure, and a periodic
//! run only every `FullSyncPeriod`), full syncs at start and after failures, partial syncs
//! otherwise, delayed stale-chain deletes, and metrics. Start at [`Syncer::poll`].

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::apply::ApplyError;
use crate::iptables::{IptablesConfig, IptablesRenderer};
use crate::metrics::ProxyMetrics;
use crate::model::Millis;
use crate::nft::{NftConfig, NftRenderer};
use crate::plan::{Plan, PlanConfig};
use crate::tracker::Tracker;

/// `--min-sync-period` default 1 s (pkg/proxy/apis/config/v1alpha1/defaults.go).
pub const DEFAULT_MIN_SYNC_PERIOD_MS: Millis = 1_000;
/// `--sync-period` default 30 s (defaults.go). The current runner uses it only as the retry
/// interval after a failed sync (`Runner.AddProxier`: `retryInterval = syncPeriod`).
pub const DEFAULT_SYNC_PERIOD_MS: Millis = 30_000;
/// The runner's `maxInterval` and the proxier's full-resync age: `proxyutil.FullSyncPeriod`,
/// 1 h (pkg/proxy/util). Without changes or failures a sync runs this often, and it is full.
pub const FULL_SYNC_PERIOD_MS: Millis = 3_600_000;

/// `--proxy-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Nftables,
    Iptables,
}

/// Syncer configuration.
#[derive(Debug, Clone)]
pub struct SyncerConfig {
    pub mode: ProxyMode,
    pub min_sync_period_ms: Millis,
    pub sync_period_ms: Millis,
    pub plan: PlanConfig,
    pub nft: NftConfig,
    pub iptables: IptablesConfig,
}

impl Default for SyncerConfig {
    fn default() -> Self {
        SyncerConfig {
            mode: ProxyMode::Nftables,
            min_sync_period_ms: DEFAULT_MIN_SYNC_PERIOD_MS,
            sync_period_ms: DEFAULT_SYNC_PERIOD_MS,
            plan: PlanConfig::default(),
            nft: NftConfig::default(),
            iptables: IptablesConfig::default(),
        }
    }
}

/// What kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Full,
    Partial,
    /// Deletes chains flushed >= 1 s ago (nftables only).
    StaleDelete,
}

/// A transaction for the driver to apply, then report with [`Syncer::on_applied`].
#[derive(Debug, Clone)]
pub struct SyncTransaction {
    pub kind: SyncKind,
    pub mode: ProxyMode,
    pub text: String,
    pub started_at: Millis,
}

/// An object event.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a, T> {
    Applied(&'a T),
    Deleted(&'a T),
}

#[derive(Debug)]
struct InFlight {
    kind: SyncKind,
    started_at: Millis,
    triggers: Vec<Millis>,
}

/// The proxy's sync state machine.
#[derive(Debug)]
pub struct Syncer {
    cfg: SyncerConfig,
    tracker: Tracker,
    plan: Plan,
    nft: NftRenderer,
    ipt: IptablesRenderer,
    metrics: ProxyMetrics,
    initialized: bool,
    need_full: bool,
    pending: bool,
    retry_at: Option<Millis>,
    /// When the previous rule sync finished (the runner's timers restart then).
    last_end: Option<Millis>,
    /// When the informers had listed (the first sync is due then).
    ready_at: Millis,
    last_full: Millis,
    in_flight: Option<InFlight>,
    requeued_triggers: Vec<Millis>,
}

impl Syncer {
    pub fn new(cfg: SyncerConfig) -> Syncer {
        let mode = match cfg.mode {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
        };
        Syncer {
            nft: NftRenderer::new(cfg.nft.clone()),
            ipt: IptablesRenderer::new(cfg.iptables.clone()),
            metrics: ProxyMetrics::new(mode),
            cfg,
            tracker: Tracker::new(),
            plan: Plan::default(),
            initialized: false,
            need_full: true,
            pending: false,
            retry_at: None,
            last_end: None,
            ready_at: 0,
            last_full: 0,
            in_flight: None,
            requeued_triggers: Vec::new(),
        }
    }

    /// A Service event.
    pub fn on_service(&mut self, change: Change<'_, Service>) {
        match change {
            Change::Applied(s) => self.tracker.apply_service(s),
            Change::Deleted(s) => self.tracker.delete_service(s),
        }
        self.pending |= self.tracker.has_changes();
    }

    /// An EndpointSlice event.
    pub fn on_slice(&mut self, change: Change<'_, EndpointSlice>) {
        match change {
            Change::Applied(s) => self.tracker.apply_slice(s),
            Change::Deleted(s) => self.tracker.delete_slice(s),
        }
        self.pending |= self.tracker.has_changes();
    }

    /// Both informers have listed: syncing may start (upstream waits for this).
    pub fn on_initial_sync_done(&mut self, now: Millis) {
        if !self.initialized {
            self.initialized = true;
            self.pending = true;
            self.ready_at = now;
        }
    }

    /// When a rule sync is due (ignoring stale deletes). Upstream's runner: after a run ends
    /// it waits `minSyncPeriod`, then runs on the first of a change (`Run()`), the retry
    /// timer (`syncPeriod` after a failed run) or the max-interval timer (`FullSyncPeriod`
    /// after the last run).
    fn next_sync_at(&self) -> Option<Millis> {
        let Some(end) = self.last_end else {
            // Nothing has run yet: the first change runs at once.
            return self.pending.then_some(self.ready_at);
        };
        let mut due = end + FULL_SYNC_PERIOD_MS;
        if self.pending {
            due = due.min(end);
        }
        if let Some(r) = self.retry_at {
            due = due.min(r);
        }
        Some(due.max(end + self.cfg.min_sync_period_ms))
    }

    /// The next time [`Syncer::poll`] has something to do (the driver's wake-up).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if !self.initialized || self.in_flight.is_some() {
            return None;
        }
        let stale = if self.cfg.mode == ProxyMode::Nftables && !self.need_full {
            self.nft.next_stale_due()
        } else {
            None
        };
        match (self.next_sync_at(), stale) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Returns the next transaction to apply, if one is due at `now`. At most one is in
    /// flight: call [`Syncer::on_applied`] before polling for the next.
    pub fn poll(&mut self, now: Millis) -> Option<SyncTransaction> {
        if !self.initialized || self.in_flight.is_some() {
            return None;
        }
        if self.cfg.mode == ProxyMode::Nftables
            && !self.need_full
            && let Some(text) = self.nft.render_stale_deletes(now)
        {
            return Some(self.start(SyncKind::StaleDelete, text, now, Vec::new()));
        }
        loop {
            if self.next_sync_at().is_none_or(|t| t > now) {
                return None;
            }
            self.pending = false;
            let changes = self.tracker.take_changes();
            self.metrics.service_changes_total += changes.service_events;
            self.metrics.endpoint_changes_total += changes.slice_events;
            let mut triggers = std::mem::take(&mut self.requeued_triggers);
            triggers.extend(changes.trigger_times);
            let full = self.need_full || now - self.last_full >= FULL_SYNC_PERIOD_MS;
            let (kind, text) = if full {
                self.plan = Plan::build(&self.tracker, &self.cfg.plan);
                self.last_full = now;
                let text = match self.cfg.mode {
                    ProxyMode::Nftables => self.nft.render_full_at(&self.plan, now),
                    ProxyMode::Iptables => self.ipt.render_full(&self.plan),
                };
                (SyncKind::Full, text)
            } else {
                let affected = self
                    .plan
                    .update(&self.tracker, &self.cfg.plan, &changes.services);
                let text = match self.cfg.mode {
                    ProxyMode::Nftables => self.nft.render_partial(&self.plan, &affected, now),
                    ProxyMode::Iptables => self.ipt.render_partial(&self.plan, &affected),
                };
                (SyncKind::Partial, text)
            };
            self.need_full = false;
            if text.is_empty() {
                // Nothing to change in the kernel: the sync is done.
                self.observe_success(SyncKind::Partial, now, now, &triggers);
                self.retry_at = None;
                self.last_end = Some(now);
                continue;
            }
            return Some(self.start(kind, text, now, triggers));
        }
    }

    fn start(
        &mut self,
        kind: SyncKind,
        text: String,
        now: Millis,
        triggers: Vec<Millis>,
    ) -> SyncTransaction {
        self.in_flight = Some(InFlight {
            kind,
            started_at: now,
            triggers,
        });
        SyncTransaction {
            kind,
            mode: self.cfg.mode,
            text,
            started_at: now,
        }
    }

    /// The driver applied the last transaction (`now` = when it finished). A failure forces
    /// a full sync, retried after `--sync-period` or at the next change; either way the next
    /// sync waits `--min-sync-period` from `now`.
    pub fn on_applied(&mut self, result: Result<(), ApplyError>, now: Millis) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        if f.kind != SyncKind::StaleDelete {
            self.last_end = Some(now);
            self.retry_at = None;
        }
        match result {
            Ok(()) => self.observe_success(f.kind, f.started_at, now, &f.triggers),
            Err(e) => {
                tracing::warn!(error = %e, kind = ?f.kind, "proxy rule sync failed; next sync is a full sync");
                self.metrics.sync_failures_total += 1;
                self.need_full = true;
                self.retry_at = Some(now + self.cfg.sync_period_ms);
                self.requeued_triggers.extend(f.triggers);
            }
        }
    }

    fn observe_success(
        &mut self,
        kind: SyncKind,
        started: Millis,
        now: Millis,
        triggers: &[Millis],
    ) {
        let secs = (now - started).max(0) as f64 / 1000.0;
        match kind {
            SyncKind::Full => self.metrics.full_sync_duration.observe(secs),
            SyncKind::Partial => self.metrics.partial_sync_duration.observe(secs),
            SyncKind::StaleDelete => return,
        }
        self.metrics.sync_duration.observe(secs);
        self.metrics.last_sync_timestamp_s = now as f64 / 1000.0;
        let (internal, external) = self.plan.no_local_endpoints();
        self.metrics.no_local_endpoints_internal = internal;
        self.metrics.no_local_endpoints_external = external;
        for t in triggers {
            if now >= *t {
                self.metrics
                    .network_programming
                    .observe((now - t) as f64 / 1000.0);
            }
        }
    }

    /// The current rule plan (what the data plane does once the last sync is applied).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    /// Metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }
}

#[cfg(test)]
#[path = "syncer_tests.rs"]
mod tests;
