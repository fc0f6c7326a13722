//! The live kube-proxy's sans-IO sync loop: its own [`Tracker`] and [`Plan`], the nftables or
//! iptables renderer, and a [`Pacer`] deciding when syncs run (upstream's runner) and whether
//! they are full or partial; delayed stale-chain deletes and metrics. Fed Service and
//! EndpointSlice events and the time, it hands out rule transactions. The simulator instead
//! shares one [`crate::shared_model::SharedModel`] between its nodes' pacers
//! ([`crate::node_proxy::NodeProxy`]). Start at [`Syncer::poll_transaction`].

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::apply::ApplyError;
use crate::iptables::{IptablesConfig, IptablesRenderer};
use crate::metrics::ProxyMetrics;
use crate::model::Moment;
use crate::nft::{NftConfig, NftRenderer};
pub use crate::pacer::{
    DEFAULT_MIN_SYNC_PERIOD_MS, DEFAULT_SYNC_PERIOD_MS, FULL_SYNC_PERIOD_MS, SyncKind,
};
use crate::pacer::{Pacer, PacerConfig};
use crate::plan::{Plan, PlanConfig};
use crate::tracker::Tracker;

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
    pub min_sync_period_ms: Duration,
    pub sync_period_ms: Duration,
    pub plan: PlanConfig,
    pub nft: NftConfig,
    pub iptables: IptablesConfig,
}

impl SyncerConfig {
    /// The pacing flags alone, for a simulated node's [`crate::node_proxy::NodeProxy`].
    pub fn pacing(&self) -> PacerConfig {
        PacerConfig {
            min_sync_period_ms: self.min_sync_period_ms,
            sync_period_ms: self.sync_period_ms,
        }
    }
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

/// A transaction for the driver to apply, then report with [`Syncer::handle_applied`].
#[derive(Debug, Clone)]
pub struct SyncTransaction {
    pub kind: SyncKind,
    pub mode: ProxyMode,
    pub text: String,
    pub started_at: Moment,
}

/// An object event.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a, T> {
    Applied(&'a T),
    Deleted(&'a T),
}

/// The live proxy's sync state machine: tracker, plan and renderers driven by a [`Pacer`].
#[derive(Debug)]
pub struct Syncer {
    cfg: SyncerConfig,
    tracker: Tracker,
    plan: Plan,
    nft: NftRenderer,
    ipt: IptablesRenderer,
    pacer: Pacer,
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
            pacer: Pacer::new(cfg.pacing(), mode),
            cfg,
            tracker: Tracker::new(),
            plan: Plan::default(),
        }
    }

    /// A Service event.
    pub fn handle_service(&mut self, change: Change<'_, Service>) {
        match change {
            Change::Applied(s) => self.tracker.apply_service(s),
            Change::Deleted(s) => self.tracker.delete_service(s),
        }
        if self.tracker.has_changes() {
            self.pacer.handle_change(None);
        }
    }

    /// An EndpointSlice event.
    pub fn handle_slice(&mut self, change: Change<'_, EndpointSlice>) {
        match change {
            Change::Applied(s) => self.tracker.apply_slice(s),
            Change::Deleted(s) => self.tracker.delete_slice(s),
        }
        if self.tracker.has_changes() {
            self.pacer.handle_change(None);
        }
    }

    /// The proxy's own Node: its `topology.kubernetes.io/zone` label (`None` without one).
    /// A change re-plans every port in a full sync (upstream `OnTopologyChange`). True if
    /// the zone changed (a full sync is now queued).
    pub fn handle_node_zone(&mut self, zone: Option<&str>) -> bool {
        let zone = zone.filter(|z| !z.is_empty());
        if self.cfg.plan.zone.as_deref() == zone {
            return false;
        }
        self.cfg.plan.zone = zone.map(str::to_string);
        self.pacer.handle_full_resync_needed();
        true
    }

    /// Both informers have listed: syncing may start (upstream waits for this).
    pub fn handle_initial_sync_done(&mut self, now: Moment) {
        self.pacer.handle_initial_sync_done(now);
    }

    /// Stale chains are deleted only by nftables, and not before a full sync rebuilt them.
    fn stale_deletes_allowed(&self) -> bool {
        self.cfg.mode == ProxyMode::Nftables && !self.pacer.needs_full()
    }

    /// The next time [`Syncer::poll_transaction`] has something to do (the driver's wake-up).
    pub fn poll_timeout(&self) -> Option<Moment> {
        if !self.pacer.is_idle() {
            return None;
        }
        let stale = if self.stale_deletes_allowed() {
            self.nft.next_stale_due()
        } else {
            None
        };
        match (self.pacer.poll_timeout(), stale) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Returns the next transaction to apply, if one is due at `now`. At most one is in
    /// flight: call [`Syncer::handle_applied`] before polling for the next.
    pub fn poll_transaction(&mut self, now: Moment) -> Option<SyncTransaction> {
        if !self.pacer.is_idle() {
            return None;
        }
        if self.stale_deletes_allowed()
            && let Some(text) = self.nft.render_stale_deletes(now)
        {
            return Some(self.start(SyncKind::StaleDelete, text, now));
        }
        while let Some(kind) = self.pacer.poll_sync(now) {
            let changes = self.tracker.take_changes();
            let m = self.pacer.metrics_mut();
            m.service_changes_total += changes.service_events;
            m.endpoint_changes_total += changes.slice_events;
            self.pacer.handle_triggers(changes.trigger_times);
            let text = if kind == SyncKind::Full {
                self.plan = Plan::build(&self.tracker, &self.cfg.plan);
                match self.cfg.mode {
                    ProxyMode::Nftables => self.nft.render_full_at(&self.plan, now),
                    ProxyMode::Iptables => self.ipt.render_full(&self.plan),
                }
            } else {
                let affected = self
                    .plan
                    .update(&self.tracker, &self.cfg.plan, &changes.services);
                match self.cfg.mode {
                    ProxyMode::Nftables => self.nft.render_partial(&self.plan, &affected, now),
                    ProxyMode::Iptables => self.ipt.render_partial(&self.plan, &affected),
                }
            };
            if text.is_empty() {
                // Nothing to change in the kernel: the sync is done.
                self.pacer.finish_empty(now);
                self.observe_plan();
                continue;
            }
            return Some(self.start(kind, text, now));
        }
        None
    }

    fn start(&mut self, kind: SyncKind, text: String, now: Moment) -> SyncTransaction {
        self.pacer.start(kind, now);
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
    pub fn handle_applied(&mut self, result: Result<(), ApplyError>, now: Moment) {
        if let Some(f) = self.pacer.handle_applied(result, now)
            && f.ok
            && f.kind != SyncKind::StaleDelete
        {
            self.observe_plan();
        }
    }

    /// The no-local-endpoints gauges, as of the last successful sync.
    fn observe_plan(&mut self) {
        let (internal, external) = self.plan.no_local_endpoints();
        let m = self.pacer.metrics_mut();
        m.no_local_endpoints_internal = internal;
        m.no_local_endpoints_external = external;
    }

    /// The current rule plan (what the data plane does once the last sync is applied).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn metrics(&self) -> &ProxyMetrics {
        self.pacer.metrics()
    }

    /// Metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.pacer.metrics().render()
    }
}

#[cfg(test)]
#[path = "syncer_tests.rs"]
mod tests;
