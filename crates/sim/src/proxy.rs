//! The simulator's kube-proxies: one shared, versioned endpoint model
//! ([`proxy::shared_model::SharedModel`], no rule text) fed each Service and EndpointSlice
//! change once at its commit, and per node a [`proxy::node_proxy::NodeProxy`] (upstream
//! pacing) told of a model version when the node's watch delivers it; a node's sync programs
//! the newest version delivered to it, never a later one. Everything the simulator knows
//! about kube-proxy goes through this module.
//!
//! Start at [`Endpoints`] (the model and the versions nodes still need) and [`ProxyNode`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use controllers::{Change, Moment, Object};
use proxy::Protocol;
use proxy::model::ServiceKey;
use proxy::node_proxy::{Candidates, NoTextSync, NodeInputs, NodeProxy};
use proxy::pacer::{PacerConfig, SyncKind};
use proxy::plan::NoEndpoints;
use proxy::shared_model::{ModelChange, SharedModel, Snapshot, Version};
use proxy::syncer;

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

/// The cluster's one endpoint model, and the snapshots of the versions some node may still
/// program (from the oldest version a node has been delivered up to the newest).
pub struct Endpoints {
    model: SharedModel,
    kept: BTreeMap<Version, Arc<Snapshot>>,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints::new()
    }
}

impl Endpoints {
    pub fn new() -> Endpoints {
        let model = SharedModel::new();
        let kept = BTreeMap::from([(model.version(), model.snapshot())]);
        Endpoints { model, kept }
    }

    /// A committed change; `Some` (for every watching node) when it changed a service port.
    pub fn change(&mut self, change: &Change) -> Option<Arc<ModelChange>> {
        let (obj, deleted) = crate::world::split(change);
        let done = match (obj, deleted) {
            (Object::Service(s), false) => self.model.handle_service(syncer::Change::Applied(s)),
            (Object::Service(s), true) => self.model.handle_service(syncer::Change::Deleted(s)),
            (Object::EndpointSlice(s), false) => {
                self.model.handle_slice(syncer::Change::Applied(s))
            }
            (Object::EndpointSlice(s), true) => self.model.handle_slice(syncer::Change::Deleted(s)),
            _ => None,
        }?;
        self.kept.insert(done.version, self.model.snapshot());
        Some(Arc::new(done))
    }

    /// The newest version.
    pub fn version(&self) -> Version {
        self.model.version()
    }

    /// The model as of version `v` (the newest kept one at or before it).
    pub fn at(&self, v: Version) -> Arc<Snapshot> {
        self.kept
            .range(..=v)
            .next_back()
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| self.model.snapshot())
    }

    /// No node will program a version before `oldest` any more: drop older snapshots.
    pub fn forget_before(&mut self, oldest: Version) {
        let keep = self.kept.split_off(&oldest);
        let floor = self.kept.pop_last();
        self.kept = keep;
        if let Some((v, s)) = floor
            && !self.kept.contains_key(&oldest)
        {
            self.kept.insert(v, s);
        }
    }

    /// How many versions are kept.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }
}

/// One node's proxy.
pub struct ProxyNode {
    proxy: NodeProxy,
    /// The newest model version the node's watch has delivered.
    delivered: Version,
    in_flight: Option<NoTextSync>,
}

/// A successful rule sync, for the timeline: Service -> endpoint IPs programmed.
pub type Programmed = lab::observe::Programmed;

/// Turns rule syncs into `proxy-sync` records through the shared
/// [`lab::observe::ProxySyncObserver`], without listing the endpoints again for a sync that
/// programs what another node's sync of the same model version already did: the key is the
/// version plus, per target port, which of the snapshot's endpoint lists the node's rules use
/// (the same list in the same snapshot is the same endpoints). Each kept snapshot is held, so
/// its lists' addresses stay its own.
#[derive(Default)]
pub struct SyncRecorder {
    observer: lab::observe::ProxySyncObserver,
    by_version: BTreeMap<Version, (Arc<Snapshot>, SetIds)>,
}

/// Per target port, `(address, length)` of the endpoint list programmed (`(0, 0)` for none)
/// -> the set's id.
type SetIds = BTreeMap<Vec<(usize, usize)>, u64>;

impl SyncRecorder {
    /// No node will program a version before `oldest` any more.
    pub fn forget_before(&mut self, oldest: Version) {
        self.by_version = self.by_version.split_off(&oldest);
    }
}

impl ProxyNode {
    /// A proxy whose informers listed the model at version `listed`, on a node in `zone`
    /// (its `topology.kubernetes.io/zone` label, for zone hints).
    pub fn new(
        pacing: PacerConfig,
        node: &str,
        node_ip: Ipv4Addr,
        zone: Option<&str>,
        listed: Version,
    ) -> ProxyNode {
        let inputs = NodeInputs {
            node_name: node.to_string(),
            node_ip: Some(node_ip),
            zone: zone.filter(|z| !z.is_empty()).map(str::to_string),
            service_cidrs: Vec::new(),
        };
        ProxyNode {
            proxy: NodeProxy::new(inputs, pacing),
            delivered: listed,
            in_flight: None,
        }
    }

    /// The node's watch delivers a model change. Only a node not already pending is told
    /// (its next sync programs the newest delivered version anyway).
    pub fn change(&mut self, change: &ModelChange) {
        self.delivered = self.delivered.max(change.version);
        if !self.proxy.is_pending() {
            self.proxy.handle_change(change);
        }
    }

    /// Until when (exclusive) a delivered change would only raise [`ProxyNode::delivered`]:
    /// a change is already pending and no sync can start before the one in flight is applied
    /// (at `applied_at`) or before the pending one is due. `None` when a change would do more.
    pub fn absorbs_until(&self, applied_at: Option<Moment>) -> Option<Moment> {
        if !self.proxy.is_pending() {
            return None;
        }
        if self.in_flight.is_some() {
            return applied_at;
        }
        self.proxy.poll_timeout()
    }

    /// The newest version delivered to this node.
    pub fn delivered(&self) -> Version {
        self.delivered
    }

    /// Both informers have listed.
    pub fn synced(&mut self, now: Moment) {
        self.proxy.handle_initial_sync_done(now);
    }

    /// When [`ProxyNode::poll`] has work.
    pub fn next_wakeup(&self) -> Option<Moment> {
        self.proxy.poll_timeout()
    }

    /// Start the sync due at `now`, if any, programming the newest delivered version; the
    /// caller schedules [`ProxyNode::applied`].
    pub fn poll(&mut self, now: Moment, eps: &Endpoints) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        let snapshot = eps.at(self.delivered);
        self.in_flight = self.proxy.poll_transaction_at(now, &eps.model, snapshot);
        self.in_flight.is_some()
    }

    /// The sync started by [`ProxyNode::poll`] is in the kernel at `now`. Returns the
    /// `proxy-sync` record of node `node` (the endpoints programmed for the Services `targets`,
    /// `namespace/name`) after a rule sync (not after a stale-chain delete).
    pub fn applied(
        &mut self,
        now: Moment,
        node: &str,
        targets: &[String],
        rec: &mut SyncRecorder,
    ) -> Option<lab::EventKind> {
        let sync = self.in_flight.take()?;
        self.proxy.handle_applied(Ok(()), now);
        if sync.kind == SyncKind::StaleDelete {
            return None;
        }
        let view = self.proxy.view()?;
        let lists = |f: &mut dyn FnMut(&String, Option<&[proxy::model::Endpoint]>)| {
            for t in targets {
                let (ns, name) = t.split_once('/').unwrap_or(("default", t));
                f(t, None);
                for sp in sync.snapshot.ports_of(&ServiceKey::new(ns, name)) {
                    let p = &sp.port;
                    if let Candidates::Endpoints(eps) =
                        view.lookup(p.cluster_ip, p.name.protocol, p.port)
                    {
                        f(t, Some(eps));
                    }
                }
            }
        };
        let mut key = Vec::new();
        lists(&mut |_, eps| key.push(eps.map_or((0, 0), |e| (e.as_ptr() as usize, e.len()))));
        let entry = rec
            .by_version
            .entry(sync.version())
            .or_insert_with(|| (sync.snapshot.clone(), BTreeMap::new()));
        if !Arc::ptr_eq(&entry.0, &sync.snapshot) {
            *entry = (sync.snapshot.clone(), BTreeMap::new());
        }
        if let Some(&id) = entry.1.get(&key) {
            return Some(lab::observe::ProxySyncObserver::again(node, id));
        }
        let mut programmed: Programmed = BTreeMap::new();
        lists(&mut |t, eps| {
            let ips = programmed.entry(t.clone()).or_default();
            ips.extend(eps.into_iter().flatten().map(|e| e.ip.to_string()));
        });
        for ips in programmed.values_mut() {
            ips.sort();
            ips.dedup();
        }
        let (id, kind) = rec.observer.synced(node, programmed);
        entry.1.insert(key, id);
        Some(kind)
    }

    /// How many ready endpoints (distinct addresses) of the TCP service port `ip:port` the
    /// applied model version knows, used by the rules or not (zone hints narrow what they
    /// use): the load gate's check that a sync saw every ready endpoint (`lab::load_start`).
    pub fn known_ready(&self, ip: Ipv4Addr, port: u16) -> usize {
        let Some(sp) = self
            .proxy
            .view()
            .and_then(|v| v.port_at(ip, Protocol::Tcp, port))
        else {
            return 0;
        };
        let ready: std::collections::BTreeSet<Ipv4Addr> =
            sp.usable.iter().filter(|e| e.ready).map(|e| e.ip).collect();
        ready.len()
    }

    /// What the applied rules do with a new TCP connection to `ip:port` (nothing applied
    /// yet: no rule matches and the packet goes nowhere).
    pub fn route(&self, ip: Ipv4Addr, port: u16) -> Route {
        let Some(view) = self.proxy.view() else {
            return Route::Drop;
        };
        match view.lookup(ip, Protocol::Tcp, port) {
            Candidates::Endpoints(eps) => {
                Route::Endpoints(eps.iter().map(|e| (e.ip, e.port)).collect())
            }
            Candidates::NoEndpoints(NoEndpoints::Reject) | Candidates::RejectPort => Route::Reject,
            Candidates::NoEndpoints(NoEndpoints::Drop)
            | Candidates::DropUnallocated
            | Candidates::Pass => Route::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use std::time::Duration;

    use controllers::{Change, Moment, Object};
    use proxy::fixtures::{ep, service, slice};
    use proxy::pacer::PacerConfig;

    use super::{Endpoints, ProxyNode, Route};

    const P80: &[(&str, u16, &str)] = &[("http", 80, "TCP")];
    const T0: i64 = 1_700_000_000_000;

    fn applied(obj: Object) -> Change {
        Change::Applied {
            new: obj,
            old: None,
        }
    }

    fn set_endpoints(eps: &mut Endpoints, ips: &[&str]) -> Arc<proxy::shared_model::ModelChange> {
        let list = ips.iter().map(|ip| ep(ip)).collect();
        let s = slice("ns", "web", "web-1", P80, list);
        eps.change(&applied(Object::EndpointSlice(Arc::new(s))))
            .expect("the slice changes the model")
    }

    fn route_ips(route: Route) -> Vec<String> {
        match route {
            Route::Endpoints(e) => e.iter().map(|(ip, _)| ip.to_string()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn a_node_programs_only_the_versions_its_watch_delivered() {
        let mut eps = Endpoints::new();
        let svc = service("ns", "web", "172.30.0.10", P80);
        let first = eps
            .change(&applied(Object::Service(Arc::new(svc))))
            .expect("a new Service changes the model");
        let cip = "172.30.0.10".parse().expect("ip");
        let mut node = ProxyNode::new(
            PacerConfig::default(),
            "n1",
            "172.16.0.11".parse().expect("ip"),
            None,
            0,
        );
        node.change(&first);
        let second = set_endpoints(&mut eps, &["10.64.0.5"]);
        // The model is at `second`, but only `first` reached this node: it rejects.
        node.synced(Moment::from_millis(T0));
        assert!(
            node.poll(Moment::from_millis(T0), &eps),
            "the first sync starts"
        );
        let mut rec = super::SyncRecorder::default();
        node.applied(Moment::from_millis(T0 + 20), "n1", &[], &mut rec);
        assert_eq!(node.route(cip, 80), Route::Reject);
        // Its watch delivers the endpoints: the next sync programs them.
        node.change(&second);
        let due = node.next_wakeup().expect("a sync is due");
        assert!(node.poll(due, &eps));
        let record = node
            .applied(
                due + Duration::from_millis(20),
                "n1",
                &["ns/web".to_string()],
                &mut rec,
            )
            .expect("a rule sync");
        let lab::EventKind::ProxySync {
            services: Some(programmed),
            ..
        } = record
        else {
            panic!("the first sync of a set lists it: {record:?}")
        };
        assert_eq!(programmed["ns/web"], ["10.64.0.5"]);
        assert_eq!(route_ips(node.route(cip, 80)), ["10.64.0.5"]);
    }

    #[test]
    fn nodes_programming_the_same_version_share_one_listed_set() {
        let mut eps = Endpoints::new();
        let svc = service("ns", "web", "172.30.0.10", P80);
        let first = eps
            .change(&applied(Object::Service(Arc::new(svc))))
            .expect("a new Service changes the model");
        let second = set_endpoints(&mut eps, &["10.64.0.5", "10.64.0.6"]);
        let mut rec = super::SyncRecorder::default();
        let targets = ["ns/web".to_string()];
        let mut records = Vec::new();
        for (name, ip) in [("n1", "172.16.0.11"), ("n2", "172.16.0.12")] {
            let mut node = ProxyNode::new(
                PacerConfig::default(),
                name,
                ip.parse().expect("ip"),
                None,
                0,
            );
            node.change(&first);
            node.change(&second);
            node.synced(Moment::from_millis(T0));
            assert!(node.poll(Moment::from_millis(T0), &eps));
            records.push(
                node.applied(Moment::from_millis(T0 + 20), name, &targets, &mut rec)
                    .expect("a sync"),
            );
        }
        let [
            lab::EventKind::ProxySync {
                set: Some(a),
                services: Some(listed),
                ..
            },
            lab::EventKind::ProxySync {
                node,
                set: Some(b),
                services: None,
            },
        ] = &records[..]
        else {
            panic!("the second node's sync names the first one's set: {records:?}")
        };
        assert_eq!((a, node.as_str()), (b, "n2"));
        assert_eq!(listed["ns/web"], ["10.64.0.5", "10.64.0.6"]);
    }

    #[test]
    fn forgetting_keeps_the_version_a_lagging_node_programs() {
        let mut eps = Endpoints::new();
        eps.change(&applied(Object::Service(Arc::new(service(
            "ns",
            "web",
            "172.30.0.10",
            P80,
        )))));
        let v1 = eps.version();
        set_endpoints(&mut eps, &["10.64.0.5"]);
        set_endpoints(&mut eps, &["10.64.0.6"]);
        let v3 = eps.version();
        eps.forget_before(v1 + 1);
        assert_eq!(eps.kept(), 2, "v2 and v3");
        assert_eq!(
            eps.at(v1 + 1).version(),
            v1 + 1,
            "a node delivered v2 programs v2"
        );
        eps.forget_before(v3);
        assert_eq!(eps.kept(), 1);
        assert_eq!(eps.at(v1).version(), v3, "nothing older is kept");
    }
}
