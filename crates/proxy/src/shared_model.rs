//! The simulator's one endpoint model for every node's kube-proxy: a single [`Tracker`] fed
//! the Service and EndpointSlice changes, each change that alters a service port bumping the
//! model's version, and immutable [`Snapshot`]s of the planned ports at a version that nodes
//! hold as "what my proxy has programmed". Start at [`SharedModel::handle_slice`] and
//! [`SharedModel::snapshot`].
//!
//! Sharing. A snapshot is four persistent (structurally shared) ordered maps: Service ->
//! `Arc<[SharedPort]>` (the node-independent plan of each port: its usable endpoints
//! cluster-wide, per node and, with zone hints, per zone), destination `ClusterIP . proto . port` -> port name,
//! ClusterIP -> number of ports, and NodePort / external / LB destination -> port names. Taking a snapshot is O(1) (four root pointers); a change to
//! one Service replaces its entry and copies only the O(log S) tree nodes on the paths to it
//! (S = Services), so older snapshots stay valid and share everything else. The
//! node-specific parts of a node's plan (node name for Local policies, zone for hints) are applied at query
//! time by [`crate::node_proxy::NodeView`], so nodes hold no per-service state at all. A
//! bounded log of (version, Service) records lets a node find what changed since it synced
//! ([`SharedModel::changed_since`]).
//!
//! Memory. The model: one tracker and one current map, O(S + E) (E = endpoints). A node: its
//! pacer, its name and one `Arc<Snapshot>`: O(1) in S and E. Versions: a snapshot lives while a
//! node holds it (programmed or in flight), and costs O(k log S) beyond the current one, k =
//! service ports changed since; with every node at most one sync behind, the retained extra is
//! O(changes in one sync interval x log S), independent of the number of nodes (nodes at the
//! same version share one `Arc`). Nothing grows with history: a version nobody holds is freed,
//! and the change log is capped at [`CHANGE_LOG_CAPACITY`] records.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rpds::RedBlackTreeMapSync;

use crate::model::{Moment, Protocol, ServiceKey, ServicePortName};
use crate::plan::{ExternalKey, SharedPort, external_keys};
use crate::syncer::Change;
use crate::tracker::Tracker;

/// A model version: 0 before any change, +1 for every event that changed a service port.
pub type Version = u64;

/// A destination a ClusterIP rule matches: `ClusterIP . protocol . port`.
pub type Dest = (Ipv4Addr, Protocol, u16);

/// How many (version, Service) change records the model keeps: a node whose programmed
/// version is older than the oldest record treats every Service as changed.
pub const CHANGE_LOG_CAPACITY: usize = 65_536;

/// The model at one version, immutable; cheap to clone through its `Arc`.
#[derive(Clone)]
pub struct Snapshot {
    version: Version,
    services: RedBlackTreeMapSync<ServiceKey, Arc<[SharedPort]>>,
    by_dest: RedBlackTreeMapSync<Dest, ServicePortName>,
    cluster_ips: RedBlackTreeMapSync<Ipv4Addr, u32>,
    /// NodePort (`None` address), external and load-balancer destinations -> the ports
    /// claiming them (the lowest name wins, as in the rules).
    external: RedBlackTreeMapSync<ExternalKey, BTreeSet<ServicePortName>>,
    port_count: usize,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("services", &self.services.size())
            .finish()
    }
}

impl Snapshot {
    fn empty() -> Snapshot {
        Snapshot {
            version: 0,
            services: RedBlackTreeMapSync::new_sync(),
            by_dest: RedBlackTreeMapSync::new_sync(),
            cluster_ips: RedBlackTreeMapSync::new_sync(),
            external: RedBlackTreeMapSync::new_sync(),
            port_count: 0,
        }
    }

    /// The version this snapshot is of.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The shared plans of one Service's ports (empty if unknown).
    pub fn ports_of(&self, svc: &ServiceKey) -> &[SharedPort] {
        self.services.get(svc).map(|p| &p[..]).unwrap_or(&[])
    }

    /// One service port's shared plan.
    pub fn port(&self, name: &ServicePortName) -> Option<&SharedPort> {
        self.ports_of(&name.service)
            .iter()
            .find(|p| p.port.name == *name)
    }

    /// The service port a ClusterIP destination belongs to.
    pub fn port_at(&self, dest: &Dest) -> Option<&SharedPort> {
        self.by_dest.get(dest).and_then(|n| self.port(n))
    }

    /// The service port an external destination belongs to: `(Some(ip), proto, port)` for
    /// an external or load-balancer IP, `(None, proto, nodePort)` for a NodePort.
    pub fn external_port_at(&self, key: &ExternalKey) -> Option<&SharedPort> {
        let name = self.external.get(key)?.first()?;
        self.port(name)
    }

    /// True if `ip` is the ClusterIP of some service port.
    pub fn is_cluster_ip(&self, ip: Ipv4Addr) -> bool {
        self.cluster_ips.contains_key(&ip)
    }

    /// Every service port in Service order.
    pub fn ports(&self) -> impl Iterator<Item = &SharedPort> {
        self.services.values().flat_map(|p| p.iter())
    }

    /// Number of service ports.
    pub fn len(&self) -> usize {
        self.port_count
    }

    /// True without service ports.
    pub fn is_empty(&self) -> bool {
        self.port_count == 0
    }

    /// The rules of node `node` in `zone` for Service `svc` are the same in both snapshots
    /// (what the live syncer's partial sync finds when it renders no text for it).
    pub fn same_for_node(
        &self,
        other: &Snapshot,
        svc: &ServiceKey,
        node: Option<&str>,
        zone: Option<&str>,
    ) -> bool {
        match (self.services.get(svc), other.services.get(svc)) {
            (None, None) => true,
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            (Some(a), Some(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b.iter())
                        .all(|(x, y)| x.same_for_node(y, node, zone))
            }
            _ => false,
        }
    }

    fn remove_service(&mut self, svc: &ServiceKey) {
        let Some(old) = self.services.get(svc).cloned() else {
            return;
        };
        self.services.remove_mut(svc);
        self.port_count -= old.len();
        for sp in old.iter() {
            let p = &sp.port;
            let dest = (p.cluster_ip, p.name.protocol, p.port);
            if self.by_dest.get(&dest) == Some(&p.name) {
                self.by_dest.remove_mut(&dest);
            }
            match self.cluster_ips.get(&p.cluster_ip).copied() {
                Some(n) if n > 1 => self.cluster_ips.insert_mut(p.cluster_ip, n - 1),
                Some(_) => {
                    self.cluster_ips.remove_mut(&p.cluster_ip);
                }
                None => {}
            }
            for key in external_keys(p) {
                if let Some(names) = self.external.get(&key) {
                    let mut names = names.clone();
                    names.remove(&p.name);
                    if names.is_empty() {
                        self.external.remove_mut(&key);
                    } else {
                        self.external.insert_mut(key, names);
                    }
                }
            }
        }
    }

    fn insert_service(&mut self, svc: ServiceKey, ports: Vec<SharedPort>) {
        for sp in &ports {
            let p = &sp.port;
            self.by_dest
                .insert_mut((p.cluster_ip, p.name.protocol, p.port), p.name.clone());
            let n = self.cluster_ips.get(&p.cluster_ip).copied().unwrap_or(0);
            self.cluster_ips.insert_mut(p.cluster_ip, n + 1);
            for key in external_keys(p) {
                let mut names = self.external.get(&key).cloned().unwrap_or_default();
                names.insert(p.name.clone());
                self.external.insert_mut(key, names);
            }
        }
        self.port_count += ports.len();
        self.services.insert_mut(svc, ports.into());
    }
}

/// What one event did to the model, for every node's pacer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChange {
    /// The version the change produced.
    pub version: Version,
    /// The Services whose ports or endpoints changed.
    pub services: BTreeSet<ServiceKey>,
    /// The slice's `last-change-trigger-time`, for the programming-latency metric.
    pub trigger: Option<Moment>,
}

/// The shared, versioned endpoint model; see the module doc.
#[derive(Debug)]
pub struct SharedModel {
    tracker: Tracker,
    current: Snapshot,
    /// `current` as of its version, handed to every node that syncs to it.
    published: Arc<Snapshot>,
    /// The last `log_capacity` (version, changed Service) records, oldest first.
    log: VecDeque<(Version, ServiceKey)>,
    log_capacity: usize,
}

impl Default for SharedModel {
    fn default() -> Self {
        SharedModel::new()
    }
}

impl SharedModel {
    pub fn new() -> SharedModel {
        SharedModel::with_log_capacity(CHANGE_LOG_CAPACITY)
    }

    /// A model keeping the last `capacity` (at least 1) change records.
    pub fn with_log_capacity(capacity: usize) -> SharedModel {
        SharedModel {
            tracker: Tracker::new(),
            current: Snapshot::empty(),
            published: Arc::new(Snapshot::empty()),
            log: VecDeque::new(),
            log_capacity: capacity.max(1),
        }
    }

    /// A Service event; `Some` when it changed a service port.
    pub fn handle_service(&mut self, change: Change<'_, Service>) -> Option<ModelChange> {
        match change {
            Change::Applied(s) => self.tracker.apply_service(s),
            Change::Deleted(s) => self.tracker.delete_service(s),
        }
        self.commit()
    }

    /// An EndpointSlice event; `Some` when it changed a service port.
    pub fn handle_slice(&mut self, change: Change<'_, EndpointSlice>) -> Option<ModelChange> {
        match change {
            Change::Applied(s) => self.tracker.apply_slice(s),
            Change::Deleted(s) => self.tracker.delete_slice(s),
        }
        self.commit()
    }

    /// Re-plans the Services the tracker saw change and bumps the version.
    fn commit(&mut self) -> Option<ModelChange> {
        let changes = self.tracker.take_changes();
        if changes.services.is_empty() {
            return None;
        }
        let version = self.current.version + 1;
        for svc in &changes.services {
            self.current.remove_service(svc);
            let ports = self.tracker.ports_of(svc);
            if !ports.is_empty() {
                let shared = ports
                    .iter()
                    .map(|p| SharedPort::new(p, self.tracker.endpoints_of(&p.name)))
                    .collect();
                self.current.insert_service(svc.clone(), shared);
            }
            if self.log.len() >= self.log_capacity {
                self.log.pop_front();
            }
            self.log.push_back((version, svc.clone()));
        }
        self.current.version = version;
        self.published = Arc::new(self.current.clone());
        Some(ModelChange {
            version,
            services: changes.services,
            trigger: changes.trigger_times.iter().copied().max(),
        })
    }

    /// The current version.
    pub fn version(&self) -> Version {
        self.current.version
    }

    /// The model at the current version. O(1); every caller at the same version gets the
    /// same `Arc`.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.clone()
    }

    /// The Services changed after version `since` (possibly repeated), or `None` when the
    /// change log no longer reaches back that far.
    pub fn changed_since(&self, since: Version) -> Option<impl Iterator<Item = &ServiceKey>> {
        let covered = match self.log.front() {
            Some((oldest, _)) => *oldest <= since + 1,
            None => true,
        };
        if !covered {
            return None;
        }
        let start = self.log.partition_point(|(v, _)| *v <= since);
        Some(self.log.range(start..).map(|(_, s)| s))
    }

    /// The tracker behind the model (Services, merged endpoints).
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }
}

#[cfg(test)]
#[path = "shared_model_tests.rs"]
mod tests;
