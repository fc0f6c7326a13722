//! The per-node pacing machine of kube-proxy, sans-IO and independent of how rules are
//! rendered: when a sync is due (upstream's runner, `pkg/proxy/runner`
//! `BoundedFrequencyRunner` as `Runner.AddProxier` builds it: `minSyncPeriod` counted from the
//! end of the previous sync with no burst, a retry `syncPeriod` after a failure, and a periodic
//! run only every `FullSyncPeriod`), whether it is full (at start, after a failure, every
//! `FullSyncPeriod`) or partial, one sync in flight at a time, and the sync metrics. The live
//! [`crate::syncer::Syncer`] and the simulator's [`crate::node_proxy::NodeProxy`] both drive
//! one. Start at [`Pacer::poll_sync`].

use std::time::Duration;

use crate::apply::ApplyError;
use crate::metrics::ProxyMetrics;
use crate::model::Moment;
use runtime::time::duration_ms;

/// `--min-sync-period` default 1 s (pkg/proxy/apis/config/v1alpha1/defaults.go).
pub const DEFAULT_MIN_SYNC_PERIOD_MS: Duration = Duration::from_millis(1_000);
/// `--sync-period` default 30 s (defaults.go). The current runner uses it only as the retry
/// interval after a failed sync (`Runner.AddProxier`: `retryInterval = syncPeriod`).
pub const DEFAULT_SYNC_PERIOD_MS: Duration = Duration::from_millis(30_000);
/// The runner's `maxInterval` and the proxier's full-resync age: `proxyutil.FullSyncPeriod`,
/// 1 h (pkg/proxy/util). Without changes or failures a sync runs this often, and it is full.
pub const FULL_SYNC_PERIOD_MS: Duration = Duration::from_millis(3_600_000);

/// Most trigger times kept for the programming-latency metric between two syncs; older ones
/// beyond it are dropped (the metric then under-counts, the pacing is unaffected).
pub const MAX_PENDING_TRIGGERS: usize = 4_096;

/// What kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Full,
    Partial,
    /// Deletes chains flushed >= 1 s ago (nftables only).
    StaleDelete,
}

/// The pacing flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerConfig {
    /// `--min-sync-period`.
    pub min_sync_period_ms: Duration,
    /// `--sync-period` (the retry interval after a failed sync).
    pub sync_period_ms: Duration,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            min_sync_period_ms: DEFAULT_MIN_SYNC_PERIOD_MS,
            sync_period_ms: DEFAULT_SYNC_PERIOD_MS,
        }
    }
}

#[derive(Debug, Clone)]
struct InFlight {
    kind: SyncKind,
    started_at: Moment,
    triggers: Vec<Moment>,
}

/// The outcome of one finished sync, as [`Pacer::handle_applied`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub kind: SyncKind,
    pub started_at: Moment,
    pub ok: bool,
}

/// When and how the node's proxy syncs; see the module doc.
#[derive(Debug, Clone)]
pub struct Pacer {
    cfg: PacerConfig,
    metrics: ProxyMetrics,
    initialized: bool,
    need_full: bool,
    pending: bool,
    retry_at: Option<Moment>,
    /// When the previous rule sync finished (the runner's timers restart then).
    last_end: Option<Moment>,
    /// When the informers had listed (the first sync is due then).
    ready_at: Moment,
    last_full: Moment,
    in_flight: Option<InFlight>,
    /// Trigger times of changes not yet in a sync (and of failed syncs, to retry).
    triggers: Vec<Moment>,
}

impl Pacer {
    /// A pacer whose metrics name `mode` (`nftables`, `iptables`, or the simulator's).
    pub fn new(cfg: PacerConfig, mode: &'static str) -> Pacer {
        Pacer {
            cfg,
            metrics: ProxyMetrics::new(mode),
            initialized: false,
            need_full: true,
            pending: false,
            retry_at: None,
            last_end: None,
            ready_at: Moment::EPOCH,
            last_full: Moment::EPOCH,
            in_flight: None,
            triggers: Vec::new(),
        }
    }

    /// Something the rules depend on changed; `trigger` is the change's
    /// `last-change-trigger-time`, if known.
    pub fn handle_change(&mut self, trigger: Option<Moment>) {
        self.pending = true;
        if let Some(t) = trigger {
            self.push_trigger(t);
        }
    }

    /// Something every rule may depend on changed (the node's topology labels): the next
    /// sync is a full one (upstream `OnTopologyChange` sets `needFullSync` and syncs).
    pub fn handle_full_resync_needed(&mut self) {
        self.pending = true;
        self.need_full = true;
    }

    fn push_trigger(&mut self, t: Moment) {
        if self.triggers.len() >= MAX_PENDING_TRIGGERS {
            self.triggers.remove(0);
        }
        self.triggers.push(t);
    }

    /// Trigger times seen by a tracker that collects them itself (the live syncer), added
    /// to the next sync without marking a change.
    pub fn handle_triggers(&mut self, triggers: impl IntoIterator<Item = Moment>) {
        for t in triggers {
            self.push_trigger(t);
        }
    }

    /// Both informers have listed: syncing may start (upstream waits for this).
    pub fn handle_initial_sync_done(&mut self, now: Moment) {
        if !self.initialized {
            self.initialized = true;
            self.pending = true;
            self.ready_at = now;
        }
    }

    /// Initialized and nothing in flight: a new transaction may start.
    pub fn is_idle(&self) -> bool {
        self.initialized && self.in_flight.is_none()
    }

    /// The next sync will be (or the one in flight is) full.
    pub fn needs_full(&self) -> bool {
        self.need_full
    }

    /// Something changed since the last sync started.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// When a rule sync is due. Upstream's runner: after a run ends it waits
    /// `minSyncPeriod`, then runs on the first of a change (`Run()`), the retry timer
    /// (`syncPeriod` after a failed run) or the max-interval timer (`FullSyncPeriod` after
    /// the last run).
    fn next_sync_at(&self) -> Option<Moment> {
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

    /// When [`Pacer::poll_sync`] next has a sync to start (`None` before the informers have
    /// listed and while a sync is in flight).
    pub fn poll_timeout(&self) -> Option<Moment> {
        if !self.is_idle() {
            return None;
        }
        self.next_sync_at()
    }

    /// If a rule sync is due at `now`, decides its kind and clears the pending flag; the
    /// caller then builds it and calls [`Pacer::start`], or [`Pacer::finish_empty`] when
    /// there is nothing to apply.
    pub fn poll_sync(&mut self, now: Moment) -> Option<SyncKind> {
        if !self.is_idle() || self.next_sync_at().is_none_or(|t| t > now) {
            return None;
        }
        self.pending = false;
        let full = self.need_full || now >= self.last_full + FULL_SYNC_PERIOD_MS;
        self.need_full = false;
        if full {
            self.last_full = now;
            Some(SyncKind::Full)
        } else {
            Some(SyncKind::Partial)
        }
    }

    /// A transaction of `kind` goes to the driver: it is in flight until
    /// [`Pacer::handle_applied`]. A rule sync carries the pending trigger times.
    pub fn start(&mut self, kind: SyncKind, now: Moment) {
        let triggers = if kind == SyncKind::StaleDelete {
            Vec::new()
        } else {
            std::mem::take(&mut self.triggers)
        };
        self.in_flight = Some(InFlight {
            kind,
            started_at: now,
            triggers,
        });
    }

    /// The due sync had nothing to change in the kernel: it is done at `now`.
    pub fn finish_empty(&mut self, now: Moment) {
        let triggers = std::mem::take(&mut self.triggers);
        self.observe_success(SyncKind::Partial, now, now, &triggers);
        self.retry_at = None;
        self.last_end = Some(now);
    }

    /// The driver applied the transaction in flight (`now` = when it finished). A failure
    /// forces a full sync, retried after `--sync-period` or at the next change; either way
    /// the next sync waits `--min-sync-period` from `now`. `None` without one in flight.
    pub fn handle_applied(
        &mut self,
        result: Result<(), ApplyError>,
        now: Moment,
    ) -> Option<Finished> {
        let f = self.in_flight.take()?;
        if f.kind != SyncKind::StaleDelete {
            self.last_end = Some(now);
            self.retry_at = None;
        }
        let ok = result.is_ok();
        match result {
            Ok(()) => self.observe_success(f.kind, f.started_at, now, &f.triggers),
            Err(e) => {
                tracing::warn!(error = %e, kind = ?f.kind, "proxy rule sync failed; next sync is a full sync");
                self.metrics.sync_failures_total += 1;
                self.need_full = true;
                self.retry_at = Some(now + self.cfg.sync_period_ms);
                let mut again = f.triggers;
                again.append(&mut self.triggers);
                // The same bound as push_trigger: the oldest go first.
                let excess = again.len().saturating_sub(MAX_PENDING_TRIGGERS);
                again.drain(..excess);
                self.triggers = again;
            }
        }
        Some(Finished {
            kind: f.kind,
            started_at: f.started_at,
            ok,
        })
    }

    fn observe_success(
        &mut self,
        kind: SyncKind,
        started: Moment,
        now: Moment,
        triggers: &[Moment],
    ) {
        let secs = duration_ms(now.saturating_since(started)) as f64 / 1000.0;
        match kind {
            SyncKind::Full => self.metrics.full_sync_duration.observe(secs),
            SyncKind::Partial => self.metrics.partial_sync_duration.observe(secs),
            SyncKind::StaleDelete => return,
        }
        self.metrics.sync_duration.observe(secs);
        self.metrics.last_sync_timestamp_s = now.as_millis() as f64 / 1000.0;
        for t in triggers {
            if now >= *t {
                self.metrics
                    .network_programming
                    .observe(duration_ms(now.saturating_since(*t)) as f64 / 1000.0);
            }
        }
    }

    pub fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    /// For the composition to set the gauges only it can compute (e.g. from its plan).
    pub fn metrics_mut(&mut self) -> &mut ProxyMetrics {
        &mut self.metrics
    }
}
