//! An in-memory API and a virtual-time harness for driving controllers without I/O: the test
//! double at the API seam (and the seed of the simulator's control plane).
//!
//! Start at [`Harness`]: add objects, run controllers to a virtual time, inspect the cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cache::{Cache, Change, Key, Object};
use crate::{Action, Controller, Kind, Moment, WriteError};

/// A fixed start time for tests: 2027-01-15T08:00:00Z.
pub const T0: Moment = Moment::from_millis(1_800_000_000_000);

/// The seed of a [`FakeApi`]'s randomness (uids, generated names, ClusterIPs).
const SEED: u64 = 0x5eed;

/// An in-memory API: a typed adapter over [`registry::MemApi`], so controllers see the API
/// server's write rules (admission defaults, validation, generation, status vs spec, CAS on
/// resourceVersion, graceful pod deletion, finalizers, binding, ClusterIP allocation, garbage
/// collection), with the cache their informers would hold. Namespaces need not exist.
pub struct FakeApi {
    pub cache: Cache,
    api: registry::MemApi<Stored>,
    /// Every write executed, in order (for assertions).
    pub log: Vec<(Moment, Action)>,
}

impl Default for FakeApi {
    fn default() -> FakeApi {
        FakeApi::new()
    }
}

/// A controllers' [`Object`] as [`registry::MemApi`] stores it: typed, with the typed fast
/// paths for status updates (pods, nodes, ReplicaSets, Deployments), Lease renewals and binding.
#[derive(Clone, Debug, PartialEq)]
struct Stored(Object);

fn meta_mut(obj: &mut Object) -> &mut ObjectMeta {
    match obj {
        Object::Pod(o) => &mut Arc::make_mut(o).metadata,
        Object::Node(o) => &mut Arc::make_mut(o).metadata,
        Object::Service(o) => &mut Arc::make_mut(o).metadata,
        Object::EndpointSlice(o) => &mut Arc::make_mut(o).metadata,
        Object::Lease(o) => &mut Arc::make_mut(o).metadata,
        Object::Deployment(o) => &mut Arc::make_mut(o).metadata,
        Object::ReplicaSet(o) => &mut Arc::make_mut(o).metadata,
        Object::PodDisruptionBudget(o) => &mut Arc::make_mut(o).metadata,
        Object::Namespace(o) => &mut Arc::make_mut(o).metadata,
        Object::ServiceAccount(o) => &mut Arc::make_mut(o).metadata,
        Object::StatefulSet(o) => &mut Arc::make_mut(o).metadata,
        Object::ControllerRevision(o) => &mut Arc::make_mut(o).metadata,
        Object::DaemonSet(o) => &mut Arc::make_mut(o).metadata,
    }
}

fn json<T: serde::Serialize>(o: &T) -> serde_json::Value {
    serde_json::to_value(o).unwrap_or(serde_json::Value::Null)
}

fn typed<T: serde::de::DeserializeOwned>(
    v: serde_json::Value,
) -> Result<Arc<T>, registry::StatusError> {
    serde_json::from_value(v)
        .map(Arc::new)
        .map_err(|e| registry::StatusError::internal(format!("decoding a stored object: {e}")))
}

impl registry::Stored for Stored {
    fn to_value(&self) -> serde_json::Value {
        match &self.0 {
            Object::Pod(o) => json(&**o),
            Object::Node(o) => json(&**o),
            Object::Service(o) => json(&**o),
            Object::EndpointSlice(o) => json(&**o),
            Object::Lease(o) => json(&**o),
            Object::Deployment(o) => json(&**o),
            Object::ReplicaSet(o) => json(&**o),
            Object::PodDisruptionBudget(o) => json(&**o),
            Object::Namespace(o) => json(&**o),
            Object::ServiceAccount(o) => json(&**o),
            Object::StatefulSet(o) => json(&**o),
            Object::ControllerRevision(o) => json(&**o),
            Object::DaemonSet(o) => json(&**o),
        }
    }

    fn owned_by(&self, uid: &str) -> bool {
        !uid.is_empty()
            && self
                .0
                .meta()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid)
    }

    fn from_value(
        res: &'static registry::ResourceInfo,
        v: serde_json::Value,
    ) -> Result<Stored, registry::StatusError> {
        let obj = match res.kind {
            "Pod" => Object::Pod(typed(v)?),
            "Node" => Object::Node(typed(v)?),
            "Service" => Object::Service(typed(v)?),
            "EndpointSlice" => Object::EndpointSlice(typed(v)?),
            "Lease" => Object::Lease(typed(v)?),
            "Deployment" => Object::Deployment(typed(v)?),
            "ReplicaSet" => Object::ReplicaSet(typed(v)?),
            "PodDisruptionBudget" => Object::PodDisruptionBudget(typed(v)?),
            "Namespace" => Object::Namespace(typed(v)?),
            "ServiceAccount" => Object::ServiceAccount(typed(v)?),
            "StatefulSet" => Object::StatefulSet(typed(v)?),
            "ControllerRevision" => Object::ControllerRevision(typed(v)?),
            "DaemonSet" => Object::DaemonSet(typed(v)?),
            other => {
                return Err(registry::StatusError::internal(format!(
                    "no typed object for kind {other}"
                )));
            }
        };
        Ok(Stored(obj))
    }

    fn name(&self) -> &str {
        self.0.meta().name.as_deref().unwrap_or("")
    }

    fn namespace(&self) -> Option<&str> {
        self.0.meta().namespace.as_deref().filter(|n| !n.is_empty())
    }

    fn generate_name(&self) -> Option<&str> {
        self.0.meta().generate_name.as_deref()
    }

    fn resource_version(&self) -> Option<&str> {
        self.0.meta().resource_version.as_deref()
    }

    fn set_resource_version(&mut self, rv: u64) {
        meta_mut(&mut self.0).resource_version = Some(rv.to_string());
    }

    fn same(&self, other: &Stored) -> bool {
        match (&self.0, &other.0) {
            (Object::Pod(a), Object::Pod(b)) => registry::typed::same_pod(a, b),
            (a, b) => a == b,
        }
    }

    fn set_created_identity(&mut self, name: String, uid: String, now: Moment) {
        registry::typed::created_identity(meta_mut(&mut self.0), name, uid, now);
    }

    fn raw_identity(
        &mut self,
        old: Option<&Stored>,
        name: Option<String>,
        fresh_uid: String,
        now: Moment,
    ) {
        let old = old.map(|o| o.0.meta());
        registry::typed::raw_identity(meta_mut(&mut self.0), old, name, fresh_uid, now);
    }

    fn fast_update(
        &mut self,
        _res: &registry::ResourceInfo,
        scope: registry::UpdateScope,
        old: &Stored,
    ) -> registry::FastPath {
        use registry::UpdateScope::Status;
        match (&mut self.0, &old.0, scope) {
            (Object::Pod(n), Object::Pod(o), Status) => {
                registry::typed::pod_status(Arc::make_mut(n), o)
            }
            (Object::Node(n), Object::Node(o), Status) => {
                registry::typed::node_status(Arc::make_mut(n), o)
            }
            (Object::ReplicaSet(n), Object::ReplicaSet(o), Status) => {
                registry::typed::replicaset_status(Arc::make_mut(n), o)
            }
            (Object::Deployment(n), Object::Deployment(o), Status) => {
                registry::typed::deployment_status(Arc::make_mut(n), o)
            }
            (Object::Lease(n), Object::Lease(o), _) => registry::typed::lease(Arc::make_mut(n), o),
            _ => registry::FastPath::Fallback,
        }
    }

    fn fast_defaults(
        &mut self,
        res: &registry::ResourceInfo,
        old: Option<&Stored>,
    ) -> registry::FastPath {
        match (&mut self.0, old.map(|o| &o.0)) {
            (Object::Pod(n), Some(Object::Pod(o))) => registry::typed::pod_defaults(n, Some(o)),
            (Object::Node(n), _) => registry::typed::node_defaults(Arc::make_mut(n)),
            _ if !registry::typed::has_defaults(res) => registry::FastPath::Applied,
            _ => registry::FastPath::Fallback,
        }
    }

    fn fast_bind(
        &mut self,
        res: &registry::ResourceInfo,
        node: &str,
        now: Moment,
    ) -> Option<Result<(), registry::StatusError>> {
        match &mut self.0 {
            Object::Pod(p) => Some(registry::typed::bind_pod(res, Arc::make_mut(p), node, now)),
            _ => None,
        }
    }
}

/// The served resource of a kind.
fn resource(kind: Kind) -> &'static registry::ResourceInfo {
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::core::v1 as core;
    let res = match kind {
        Kind::Pod => registry::resource_of::<Pod>(),
        Kind::Node => registry::resource_of::<core::Node>(),
        Kind::Service => registry::resource_of::<core::Service>(),
        Kind::EndpointSlice => {
            registry::resource_of::<k8s_openapi::api::discovery::v1::EndpointSlice>()
        }
        Kind::Lease => registry::resource_of::<k8s_openapi::api::coordination::v1::Lease>(),
        Kind::Deployment => registry::resource_of::<apps::Deployment>(),
        Kind::ReplicaSet => registry::resource_of::<apps::ReplicaSet>(),
        Kind::PodDisruptionBudget => {
            registry::resource_of::<k8s_openapi::api::policy::v1::PodDisruptionBudget>()
        }
        Kind::Namespace => registry::resource_of::<core::Namespace>(),
        Kind::ServiceAccount => registry::resource_of::<core::ServiceAccount>(),
        Kind::StatefulSet => registry::resource_of::<apps::StatefulSet>(),
        Kind::ControllerRevision => registry::resource_of::<apps::ControllerRevision>(),
        Kind::DaemonSet => registry::resource_of::<apps::DaemonSet>(),
    };
    res.unwrap_or_else(|| panic!("the API serves every Kind, not {kind:?}"))
}

/// A Status error as a controller sees it (as the live driver maps it).
fn write_error(e: registry::StatusError) -> WriteError {
    match (e.code, e.reason) {
        (409, "AlreadyExists") => WriteError::AlreadyExists,
        (409, _) => WriteError::Conflict,
        (404, _) => WriteError::NotFound,
        (422, _) => WriteError::Invalid(e.message),
        _ => WriteError::Other(e.message),
    }
}

fn namespace_of(key: &Key) -> Option<&str> {
    Some(key.namespace.as_str()).filter(|n| !n.is_empty())
}

impl FakeApi {
    pub fn new() -> FakeApi {
        let cfg = registry::MemConfig {
            check_namespaces: false,
            ..registry::MemConfig::default()
        };
        FakeApi::with_config(cfg, SEED).expect("the default ranges parse")
    }

    /// An API with the server settings `cfg` (admission's default toleration seconds, Service
    /// ranges, namespace checks) and its randomness from `seed` (a simulator's run seed).
    pub fn with_config(
        cfg: registry::MemConfig,
        seed: u64,
    ) -> Result<FakeApi, registry::mem::ConfigError> {
        Ok(FakeApi {
            cache: Cache::default(),
            api: registry::MemApi::new(cfg, seed)?,
            log: Vec::new(),
        })
    }

    /// Look up the current object of `kind` at `key`.
    pub fn get(&self, kind: Kind, key: &Key) -> Option<Object> {
        self.cache.get(kind, key)
    }

    /// Apply a write's watch changes to the cache, in order.
    fn apply(&mut self, changes: Vec<registry::Change<Stored>>) -> Vec<Change> {
        changes
            .into_iter()
            .map(|c| {
                let deleted = c.kind == registry::ChangeType::Deleted;
                self.cache.apply(c.object.0, deleted)
            })
            .collect()
    }

    /// Store `obj` as given (an external write: test setup, a kubelet), without admission:
    /// fills a missing name (from generateName), uid and creationTimestamp, keeps a stored
    /// object's, and bumps the resourceVersion.
    pub fn put(&mut self, obj: Object, now: Moment) -> Change {
        let res = resource(obj.kind());
        let key = obj.key();
        let w = self
            .api
            .put_raw(res, namespace_of(&key), Stored(obj), now)
            .unwrap_or_else(|e| panic!("raw write refused: {}", e.message));
        self.apply(w.changes)
            .pop()
            .expect("a raw write reports its change")
    }

    /// Remove an object outright.
    pub fn remove(&mut self, kind: Kind, key: &Key) -> Option<Change> {
        let w = self
            .api
            .remove_raw(resource(kind), namespace_of(key), &key.name)?;
        self.apply(w.changes).pop()
    }

    /// Execute `c`'s pending writes, feeding the resulting changes (and failures) back to it,
    /// until it asks for none; returns how many writes ran. For driving one controller alone
    /// (benchmarks); [`Harness`] drives several.
    pub fn drain(&mut self, c: &mut dyn Controller, now: Moment) -> usize {
        let mut n = 0;
        loop {
            let out: Vec<Action> = std::iter::from_fn(|| c.poll_action()).collect();
            if out.is_empty() {
                return n;
            }
            for a in &out {
                n += 1;
                match self.execute(a, now) {
                    Ok(changes) => changes
                        .iter()
                        .for_each(|ch| c.handle_change(&self.cache, ch, now)),
                    Err(e) => c.handle_write_failed(a, &e, now),
                }
            }
        }
    }

    /// Execute a controller's write with the API server's rules. Returns the resulting changes.
    pub fn execute(&mut self, action: &Action, now: Moment) -> Result<Vec<Change>, WriteError> {
        self.log.push((now, action.clone()));
        let written = match action {
            Action::Create(obj) => {
                let key = obj.key();
                let res = resource(obj.kind());
                self.api
                    .create(res, namespace_of(&key), &Stored(obj.clone()), now)
            }
            Action::Update(obj) | Action::UpdateStatus(obj) => {
                let scope = match action {
                    Action::UpdateStatus(_) => registry::UpdateScope::Status,
                    _ => registry::UpdateScope::Main,
                };
                let key = obj.key();
                let res = resource(obj.kind());
                self.api
                    .update(res, namespace_of(&key), Stored(obj.clone()), scope, now)
            }
            Action::Delete {
                kind,
                key,
                uid,
                grace_period_seconds,
            } => {
                let opts = registry::DeleteOptions {
                    grace_seconds: *grace_period_seconds,
                    uid: uid.clone(),
                    ..registry::DeleteOptions::default()
                };
                self.api
                    .delete(resource(*kind), namespace_of(key), &key.name, &opts, now)
            }
            Action::Bind { pod, node } => self.api.bind(&pod.namespace, &pod.name, node, now),
        };
        let w = written.map_err(write_error)?;
        Ok(self.apply(w.changes))
    }
}

/// Controllers plus a [`FakeApi`] in virtual time.
pub struct Harness {
    pub api: FakeApi,
    pub controllers: Vec<Box<dyn Controller>>,
    pub now: Moment,
    /// Failed writes, with the error (for assertions).
    pub failures: Vec<(Moment, Action, WriteError)>,
    /// Events the controllers recorded, in order (for assertions).
    pub events: Vec<crate::events::EventRecord>,
    synced: bool,
}

/// Upper bound on write rounds per step, so a controller loop that never settles fails a test
/// instead of hanging it.
const MAX_ROUNDS: usize = 10_000;

impl Harness {
    pub fn new(controllers: Vec<Box<dyn Controller>>) -> Harness {
        Harness {
            api: FakeApi::new(),
            controllers,
            now: T0,
            failures: Vec::new(),
            events: Vec::new(),
            synced: false,
        }
    }

    fn deliver(&mut self, changes: Vec<Change>) {
        if !self.synced {
            return;
        }
        for change in &changes {
            for c in self.controllers.iter_mut() {
                c.handle_change(&self.api.cache, change, self.now);
            }
        }
    }

    /// An external write (test setup, a kubelet, a user), delivered to the controllers.
    pub fn put(&mut self, obj: Object) {
        let change = self.api.put(obj, self.now);
        self.deliver(vec![change]);
        self.settle();
    }

    /// An external delete, delivered to the controllers.
    pub fn remove(&mut self, kind: Kind, key: &Key) {
        let change = self.api.remove(kind, key);
        self.deliver(change.into_iter().collect());
        self.settle();
    }

    /// Start the controllers over what the cache holds now (informers synced).
    pub fn start(&mut self) {
        self.synced = true;
        for c in self.controllers.iter_mut() {
            c.handle_synced(&self.api.cache, self.now);
        }
        self.settle();
    }

    /// Execute pending actions (and the actions they cause) until none remain.
    pub fn settle(&mut self) {
        if !self.synced {
            return;
        }
        for _ in 0..MAX_ROUNDS {
            let mut pending: Vec<(usize, Action)> = Vec::new();
            for (i, c) in self.controllers.iter_mut().enumerate() {
                pending.extend(std::iter::from_fn(|| c.poll_action()).map(|a| (i, a)));
                self.events.extend(std::iter::from_fn(|| c.poll_event()));
            }
            if pending.is_empty() {
                return;
            }
            for (i, action) in pending {
                match self.api.execute(&action, self.now) {
                    Ok(changes) => self.deliver(changes),
                    Err(e) => {
                        self.controllers[i].handle_write_failed(&action, &e, self.now);
                        self.failures.push((self.now, action, e));
                    }
                }
            }
        }
        panic!("controllers did not settle within {MAX_ROUNDS} rounds");
    }

    /// The earliest wake-up any controller asked for.
    pub fn poll_timeout(&self) -> Option<Moment> {
        self.controllers
            .iter()
            .filter_map(|c| c.poll_timeout())
            .min()
    }

    /// Advance virtual time to `until`, running every timer due on the way (in order).
    pub fn run_until(&mut self, until: Moment) {
        for _ in 0..MAX_ROUNDS * 10 {
            match self.poll_timeout() {
                Some(w) if w <= until => {
                    self.now = self.now.max(w);
                    let now = self.now;
                    for c in self.controllers.iter_mut() {
                        if c.poll_timeout().is_some_and(|x| x <= now) {
                            c.handle_timeout(&self.api.cache, now);
                        }
                    }
                    self.settle();
                }
                _ => {
                    self.now = self.now.max(until);
                    return;
                }
            }
        }
        panic!("timers did not reach {until}");
    }

    /// Advance virtual time by `ms`.
    pub fn advance(&mut self, ms: Duration) {
        self.run_until(self.now + ms);
    }

    /// Writes executed so far, grouped by a label (for assertions on write counts).
    pub fn write_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (_, a) in &self.api.log {
            let label = match a.verb_and_kind() {
                ("bind", _) => "bind".to_string(),
                (verb, kind) => format!("{verb} {kind:?}"),
            };
            *out.entry(label).or_default() += 1;
        }
        out
    }
}

/// Build a pod object from JSON (tests).
pub fn pod(v: serde_json::Value) -> Object {
    Object::Pod(Arc::new(
        serde_json::from_value::<Pod>(v).expect("pod json"),
    ))
}

/// Build any object from JSON by its `kind` field (tests).
pub fn object(v: serde_json::Value) -> Object {
    let kind = v["kind"].as_str().unwrap_or("").to_string();
    match kind.as_str() {
        "Pod" => Object::Pod(Arc::new(serde_json::from_value(v).expect("pod"))),
        "Node" => Object::Node(Arc::new(serde_json::from_value(v).expect("node"))),
        "Service" => Object::Service(Arc::new(serde_json::from_value(v).expect("service"))),
        "EndpointSlice" => {
            Object::EndpointSlice(Arc::new(serde_json::from_value(v).expect("slice")))
        }
        "Lease" => Object::Lease(Arc::new(serde_json::from_value(v).expect("lease"))),
        "Deployment" => {
            Object::Deployment(Arc::new(serde_json::from_value(v).expect("deployment")))
        }
        "ReplicaSet" => {
            Object::ReplicaSet(Arc::new(serde_json::from_value(v).expect("replicaset")))
        }
        "PodDisruptionBudget" => {
            Object::PodDisruptionBudget(Arc::new(serde_json::from_value(v).expect("pdb")))
        }
        "Namespace" => Object::Namespace(Arc::new(serde_json::from_value(v).expect("namespace"))),
        "ServiceAccount" => {
            Object::ServiceAccount(Arc::new(serde_json::from_value(v).expect("serviceaccount")))
        }
        "StatefulSet" => {
            Object::StatefulSet(Arc::new(serde_json::from_value(v).expect("statefulset")))
        }
        "ControllerRevision" => Object::ControllerRevision(Arc::new(
            serde_json::from_value(v).expect("controllerrevision"),
        )),
        "DaemonSet" => Object::DaemonSet(Arc::new(serde_json::from_value(v).expect("daemonset"))),
        other => panic!("unknown kind {other:?}"),
    }
}

#[cfg(test)]
#[path = "fake_tests.rs"]
mod tests;
