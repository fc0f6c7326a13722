//! The informer cache controllers read: the current objects of every kind, with the indexes
//! controllers need (pods by node, by namespace; slices by service).
//!
//! Start at [`Cache::apply`]. Iteration order is always key order (BTreeMap) so runs are
//! reproducible.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::Kind;
use crate::labels::SERVICE_NAME_LABEL;

/// `namespace/name` (namespace empty for cluster-scoped objects).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Key {
        Key {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn of(meta: &ObjectMeta) -> Key {
        Key {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One object of a kind controllers handle. Shared (`Arc`) between the cache and events.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Pod(Arc<Pod>),
    Node(Arc<Node>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Lease(Arc<Lease>),
    Deployment(Arc<Deployment>),
    ReplicaSet(Arc<ReplicaSet>),
    PodDisruptionBudget(Arc<PodDisruptionBudget>),
    Namespace(Arc<Namespace>),
    ServiceAccount(Arc<ServiceAccount>),
    StatefulSet(Arc<StatefulSet>),
    ControllerRevision(Arc<ControllerRevision>),
    DaemonSet(Arc<DaemonSet>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Pod(_) => Kind::Pod,
            Object::Node(_) => Kind::Node,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Lease(_) => Kind::Lease,
            Object::Deployment(_) => Kind::Deployment,
            Object::ReplicaSet(_) => Kind::ReplicaSet,
            Object::PodDisruptionBudget(_) => Kind::PodDisruptionBudget,
            Object::Namespace(_) => Kind::Namespace,
            Object::ServiceAccount(_) => Kind::ServiceAccount,
            Object::StatefulSet(_) => Kind::StatefulSet,
            Object::ControllerRevision(_) => Kind::ControllerRevision,
            Object::DaemonSet(_) => Kind::DaemonSet,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Pod(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Lease(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::ReplicaSet(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::ControllerRevision(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
        }
    }

    pub fn key(&self) -> Key {
        Key::of(self.meta())
    }
}

/// An informer event.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Added or modified (`old` is the cached state before, if any).
    Applied { new: Object, old: Option<Object> },
    /// Deleted (the last known state).
    Deleted(Object),
}

impl Change {
    /// The object the change is about (new state, or the deleted one).
    pub fn object(&self) -> &Object {
        match self {
            Change::Applied { new, .. } => new,
            Change::Deleted(o) => o,
        }
    }
}

/// The current state of every watched kind.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    pub pods: BTreeMap<Key, Arc<Pod>>,
    pub nodes: BTreeMap<String, Arc<Node>>,
    pub services: BTreeMap<Key, Arc<Service>>,
    pub endpoint_slices: BTreeMap<Key, Arc<EndpointSlice>>,
    pub leases: BTreeMap<Key, Arc<Lease>>,
    pub deployments: BTreeMap<Key, Arc<Deployment>>,
    pub replica_sets: BTreeMap<Key, Arc<ReplicaSet>>,
    pub pdbs: BTreeMap<Key, Arc<PodDisruptionBudget>>,
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    pub service_accounts: BTreeMap<Key, Arc<ServiceAccount>>,
    pub stateful_sets: BTreeMap<Key, Arc<StatefulSet>>,
    pub controller_revisions: BTreeMap<Key, Arc<ControllerRevision>>,
    pub daemon_sets: BTreeMap<Key, Arc<DaemonSet>>,
    /// Pods by `spec.nodeName` (unscheduled pods under "").
    pods_by_node: BTreeMap<String, BTreeSet<Key>>,
    /// Slices by namespace/service-name label.
    slices_by_service: BTreeMap<Key, BTreeSet<Key>>,
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn service_of(slice: &EndpointSlice) -> Option<Key> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(Key::new(
        slice.metadata.namespace.as_deref().unwrap_or(""),
        name,
    ))
}

fn index_remove<T: Ord>(index: &mut BTreeMap<T, BTreeSet<Key>>, at: &T, key: &Key) {
    if let Some(set) = index.get_mut(at) {
        set.remove(key);
        if set.is_empty() {
            index.remove(at);
        }
    }
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Apply an informer event: an add/modify (`deleted` false) or a delete. Returns the
    /// [`Change`] to hand to controllers (with the previous state filled in).
    pub fn apply(&mut self, obj: Object, deleted: bool) -> Change {
        let key = obj.key();
        let old = self.remove(&obj);
        if deleted {
            return Change::Deleted(old.unwrap_or(obj));
        }
        self.insert(obj.clone());
        let _ = key;
        Change::Applied { new: obj, old }
    }

    fn insert(&mut self, obj: Object) {
        let key = obj.key();
        match obj {
            Object::Pod(p) => {
                self.pods_by_node
                    .entry(node_of(&p))
                    .or_default()
                    .insert(key.clone());
                self.pods.insert(key, p);
            }
            Object::Node(n) => {
                self.nodes.insert(key.name, n);
            }
            Object::Service(s) => {
                self.services.insert(key, s);
            }
            Object::EndpointSlice(s) => {
                if let Some(svc) = service_of(&s) {
                    self.slices_by_service
                        .entry(svc)
                        .or_default()
                        .insert(key.clone());
                }
                self.endpoint_slices.insert(key, s);
            }
            Object::Lease(l) => {
                self.leases.insert(key, l);
            }
            Object::Deployment(d) => {
                self.deployments.insert(key, d);
            }
            Object::ReplicaSet(r) => {
                self.replica_sets.insert(key, r);
            }
            Object::PodDisruptionBudget(p) => {
                self.pdbs.insert(key, p);
            }
            Object::Namespace(n) => {
                self.namespaces.insert(key.name, n);
            }
            Object::ServiceAccount(a) => {
                self.service_accounts.insert(key, a);
            }
            Object::StatefulSet(s) => {
                self.stateful_sets.insert(key, s);
            }
            Object::ControllerRevision(r) => {
                self.controller_revisions.insert(key, r);
            }
            Object::DaemonSet(d) => {
                self.daemon_sets.insert(key, d);
            }
        }
    }

    /// Remove the cached object with `obj`'s kind and key; returns it.
    fn remove(&mut self, obj: &Object) -> Option<Object> {
        let key = obj.key();
        match obj {
            Object::Pod(_) => {
                let old = self.pods.remove(&key)?;
                index_remove(&mut self.pods_by_node, &node_of(&old), &key);
                Some(Object::Pod(old))
            }
            Object::Node(_) => self.nodes.remove(&key.name).map(Object::Node),
            Object::Service(_) => self.services.remove(&key).map(Object::Service),
            Object::EndpointSlice(_) => {
                let old = self.endpoint_slices.remove(&key)?;
                if let Some(svc) = service_of(&old) {
                    index_remove(&mut self.slices_by_service, &svc, &key);
                }
                Some(Object::EndpointSlice(old))
            }
            Object::Lease(_) => self.leases.remove(&key).map(Object::Lease),
            Object::Deployment(_) => self.deployments.remove(&key).map(Object::Deployment),
            Object::ReplicaSet(_) => self.replica_sets.remove(&key).map(Object::ReplicaSet),
            Object::PodDisruptionBudget(_) => {
                self.pdbs.remove(&key).map(Object::PodDisruptionBudget)
            }
            Object::Namespace(_) => self.namespaces.remove(&key.name).map(Object::Namespace),
            Object::ServiceAccount(_) => self
                .service_accounts
                .remove(&key)
                .map(Object::ServiceAccount),
            Object::StatefulSet(_) => self.stateful_sets.remove(&key).map(Object::StatefulSet),
            Object::ControllerRevision(_) => self
                .controller_revisions
                .remove(&key)
                .map(Object::ControllerRevision),
            Object::DaemonSet(_) => self.daemon_sets.remove(&key).map(Object::DaemonSet),
        }
    }

    /// Every cached object of `kind`, in key order.
    pub fn objects(&self, kind: Kind) -> Vec<Object> {
        fn all<T>(m: &BTreeMap<impl Ord, Arc<T>>, wrap: fn(Arc<T>) -> Object) -> Vec<Object> {
            m.values().map(|o| wrap(Arc::clone(o))).collect()
        }
        match kind {
            Kind::Pod => all(&self.pods, Object::Pod),
            Kind::Node => all(&self.nodes, Object::Node),
            Kind::Service => all(&self.services, Object::Service),
            Kind::EndpointSlice => all(&self.endpoint_slices, Object::EndpointSlice),
            Kind::Lease => all(&self.leases, Object::Lease),
            Kind::Deployment => all(&self.deployments, Object::Deployment),
            Kind::ReplicaSet => all(&self.replica_sets, Object::ReplicaSet),
            Kind::PodDisruptionBudget => all(&self.pdbs, Object::PodDisruptionBudget),
            Kind::Namespace => all(&self.namespaces, Object::Namespace),
            Kind::ServiceAccount => all(&self.service_accounts, Object::ServiceAccount),
            Kind::StatefulSet => all(&self.stateful_sets, Object::StatefulSet),
            Kind::ControllerRevision => all(&self.controller_revisions, Object::ControllerRevision),
            Kind::DaemonSet => all(&self.daemon_sets, Object::DaemonSet),
        }
    }

    /// The cached object of `kind` at `key` (nodes are keyed by name only).
    pub fn get(&self, kind: Kind, key: &Key) -> Option<Object> {
        match kind {
            Kind::Pod => self.pods.get(key).cloned().map(Object::Pod),
            Kind::Node => self.nodes.get(&key.name).cloned().map(Object::Node),
            Kind::Service => self.services.get(key).cloned().map(Object::Service),
            Kind::EndpointSlice => self
                .endpoint_slices
                .get(key)
                .cloned()
                .map(Object::EndpointSlice),
            Kind::Lease => self.leases.get(key).cloned().map(Object::Lease),
            Kind::Deployment => self.deployments.get(key).cloned().map(Object::Deployment),
            Kind::ReplicaSet => self.replica_sets.get(key).cloned().map(Object::ReplicaSet),
            Kind::PodDisruptionBudget => {
                self.pdbs.get(key).cloned().map(Object::PodDisruptionBudget)
            }
            Kind::Namespace => self
                .namespaces
                .get(&key.name)
                .cloned()
                .map(Object::Namespace),
            Kind::ServiceAccount => self
                .service_accounts
                .get(key)
                .cloned()
                .map(Object::ServiceAccount),
            Kind::StatefulSet => self
                .stateful_sets
                .get(key)
                .cloned()
                .map(Object::StatefulSet),
            Kind::ControllerRevision => self
                .controller_revisions
                .get(key)
                .cloned()
                .map(Object::ControllerRevision),
            Kind::DaemonSet => self.daemon_sets.get(key).cloned().map(Object::DaemonSet),
        }
    }

    /// Pods bound to `node` (`""`: unscheduled pods), in key order.
    pub fn pods_on_node<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
        self.pods_by_node
            .get(node)
            .into_iter()
            .flat_map(|keys| keys.iter())
            .filter_map(|k| self.pods.get(k))
    }

    /// Pods in `namespace`, in key order.
    pub fn pods_in<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
        let start = Key::new(namespace, "");
        self.pods
            .range(start..)
            .take_while(move |(k, _)| k.namespace == namespace)
            .map(|(_, p)| p)
    }

    /// EndpointSlices labelled for the Service `svc`, in key order.
    pub fn slices_of<'a>(&'a self, svc: &Key) -> impl Iterator<Item = &'a Arc<EndpointSlice>> + 'a {
        self.slices_by_service
            .get(svc)
            .into_iter()
            .flat_map(|keys| keys.iter())
            .filter_map(|k| self.endpoint_slices.get(k))
    }

    /// The zone label of a node, if the node is known.
    pub fn zone_of(&self, node: &str) -> Option<&str> {
        crate::labels::node_zone(self.nodes.get(node)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str) -> Object {
        Object::Pod(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": [], "nodeName": node}}))
                .unwrap(),
        ))
    }

    #[test]
    fn pods_by_node_follow_rebinding_and_delete() {
        let mut c = Cache::new();
        c.apply(pod("a", ""), false);
        c.apply(pod("b", "n1"), false);
        assert_eq!(c.pods_on_node("").count(), 1);
        let change = c.apply(pod("a", "n1"), false);
        assert!(matches!(change, Change::Applied { old: Some(_), .. }));
        assert_eq!(c.pods_on_node("").count(), 0);
        assert_eq!(c.pods_on_node("n1").count(), 2);
        let gone = c.apply(pod("a", "n1"), true);
        assert!(matches!(gone, Change::Deleted(_)));
        assert_eq!(c.pods_on_node("n1").count(), 1);
        assert_eq!(c.pods_in("default").count(), 1);
        assert_eq!(c.pods_in("other").count(), 0);
    }
}
