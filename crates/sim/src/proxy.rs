//! One node's kube-proxy in the simulator: the real `proxy::syncer::Syncer` (tracker, plan,
//! upstream pacing), its transactions "applied" after a modelled delay, and what the node's
//! data plane does with a new connection once a sync is applied. Everything the simulator
//! knows about kube-proxy goes through this module, so the shared, text-free tracker/plan
//! can replace the per-node syncer here alone.
//!
//! Start at [`ProxyNode`]. Today each node renders its rule text (discarded at once); the
//! shared model will drop that cost.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use controllers::{Change, Millis, Object};
use proxy::model::{Protocol, ServiceKey};
use proxy::plan::{NoEndpoints, Verdict};
use proxy::syncer::{self, SyncKind, Syncer, SyncerConfig};

/// What the applied rules do with a new TCP connection to a ClusterIP:port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// DNAT to one of these `(ip, port)`, uniformly.
    Endpoints(Vec<(Ipv4Addr, u16)>),
    /// No endpoints: ICMP port unreachable (the client sees "connection refused").
    Reject,
    /// Silently dropped (the client times out).
    Drop,
}

/// One node's proxy.
pub struct ProxyNode {
    syncer: Syncer,
    in_flight: Option<SyncKind>,
    /// Routes of the target Services as of the last applied sync (`None`: nothing applied
    /// yet; new connections to a ClusterIP then match no rule and go nowhere).
    applied: Option<BTreeMap<(Ipv4Addr, u16), Route>>,
}

/// A successful rule sync, for the timeline: Service -> endpoint IPs programmed.
pub type Programmed = BTreeMap<String, Vec<String>>;

impl ProxyNode {
    pub fn new(mut cfg: SyncerConfig, node: &str) -> ProxyNode {
        cfg.plan.node_name = Some(node.to_string());
        ProxyNode {
            syncer: Syncer::new(cfg),
            in_flight: None,
            applied: None,
        }
    }

    /// A Service or EndpointSlice change from the node's informers (others are ignored).
    pub fn change(&mut self, change: &Change) {
        let (obj, deleted) = match change {
            Change::Applied { new, .. } => (new, false),
            Change::Deleted(o) => (o, true),
        };
        match (obj, deleted) {
            (Object::Service(s), false) => self.syncer.handle_service(syncer::Change::Applied(s)),
            (Object::Service(s), true) => self.syncer.handle_service(syncer::Change::Deleted(s)),
            (Object::EndpointSlice(s), false) => {
                self.syncer.handle_slice(syncer::Change::Applied(s))
            }
            (Object::EndpointSlice(s), true) => {
                self.syncer.handle_slice(syncer::Change::Deleted(s))
            }
            _ => {}
        }
    }

    /// Both informers have listed.
    pub fn synced(&mut self, now: Millis) {
        self.syncer.handle_initial_sync_done(now);
    }

    /// When [`ProxyNode::poll`] has work.
    pub fn next_wakeup(&self) -> Option<Millis> {
        self.syncer.poll_timeout()
    }

    /// Start the sync due at `now`, if any; the caller schedules [`ProxyNode::applied`].
    pub fn poll(&mut self, now: Millis) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        match self.syncer.poll_transaction(now) {
            Some(tx) => {
                self.in_flight = Some(tx.kind);
                true
            }
            None => false,
        }
    }

    /// The transaction started by [`ProxyNode::poll`] is in the kernel at `now`. Returns the
    /// endpoints programmed for the Services `targets` (`namespace/name`) after a rule sync
    /// (not after a stale-chain delete).
    pub fn applied(&mut self, now: Millis, targets: &[String]) -> Option<Programmed> {
        let kind = self.in_flight.take()?;
        self.syncer.handle_applied(Ok(()), now);
        if kind == SyncKind::StaleDelete {
            return None;
        }
        let plan = self.syncer.plan();
        let mut routes = BTreeMap::new();
        let mut programmed: Programmed = BTreeMap::new();
        for t in targets {
            let (ns, name) = t.split_once('/').unwrap_or(("default", t));
            let ips = programmed.entry(t.clone()).or_default();
            for sp in plan.ports_of(&ServiceKey::new(ns, name)) {
                ips.extend(sp.endpoints.iter().map(|e| e.endpoint.ip.to_string()));
                let (ip, port) = (sp.port.cluster_ip, sp.port.port);
                let route = match plan.lookup(ip, Protocol::Tcp, port, &[]) {
                    Verdict::Dnat(sp) => Route::Endpoints(
                        sp.endpoints
                            .iter()
                            .map(|e| (e.endpoint.ip, e.endpoint.port))
                            .collect(),
                    ),
                    Verdict::NoEndpoints(NoEndpoints::Reject) | Verdict::RejectPort => {
                        Route::Reject
                    }
                    Verdict::NoEndpoints(NoEndpoints::Drop)
                    | Verdict::DropUnallocated
                    | Verdict::Pass => Route::Drop,
                };
                routes.insert((ip, port), route);
            }
            ips.sort();
            ips.dedup();
        }
        self.applied = Some(routes);
        Some(programmed)
    }

    /// What the applied rules do with a new connection to `ip:port`.
    pub fn route(&self, ip: Ipv4Addr, port: u16) -> Route {
        self.applied
            .as_ref()
            .and_then(|r| r.get(&(ip, port)).cloned())
            .unwrap_or(Route::Drop)
    }
}
