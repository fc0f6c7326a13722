//! An in-memory API and a virtual-time harness for driving controllers without I/O: the test
//! double at the API seam (and the seed of the simulator's control plane).
//!
//! Start at [`Harness`]: add objects, run controllers to a virtual time, inspect the cache.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cache::{Cache, Change, Key, Object};
use crate::time::to_time;
use crate::{Action, Controller, Kind, Millis, WriteError};

/// A fixed start time for tests: 2027-01-15T08:00:00Z.
pub const T0: Millis = 1_800_000_000_000;

/// An in-memory API: a cache plus resourceVersion, uid and name generation, with the write
/// semantics controllers rely on (CAS on resourceVersion, graceful pod deletion, binding).
#[derive(Default)]
pub struct FakeApi {
    pub cache: Cache,
    rv: u64,
    uids: u64,
    names: u64,
    /// Every write executed, in order (for assertions).
    pub log: Vec<(Millis, Action)>,
}

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

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// Look up the current object of `kind` at `key`.
    pub fn get(&self, kind: Kind, key: &Key) -> Option<Object> {
        self.cache.get(kind, key)
    }

    /// Store `obj` as given (an external write: test setup, a kubelet): fills uid, name,
    /// creationTimestamp if missing and bumps the resourceVersion.
    pub fn put(&mut self, mut obj: Object, now: Millis) -> Change {
        self.rv += 1;
        let rv = self.rv;
        let old = self.cache.get(obj.kind(), &obj.key());
        let meta = meta_mut(&mut obj);
        if meta.name.as_deref().unwrap_or("").is_empty()
            && let Some(g) = &meta.generate_name
        {
            self.names += 1;
            meta.name = Some(format!("{g}{:05x}", self.names));
        }
        match old.as_ref() {
            Some(o) => {
                meta.uid = o.meta().uid.clone();
                meta.creation_timestamp = o.meta().creation_timestamp.clone();
            }
            None => {
                self.uids += 1;
                meta.uid = Some(format!("uid-{}", self.uids));
                meta.creation_timestamp = Some(to_time(now));
            }
        }
        meta.resource_version = Some(rv.to_string());
        self.cache.apply(obj, false)
    }

    /// Remove an object outright.
    pub fn remove(&mut self, kind: Kind, key: &Key) -> Option<Change> {
        let obj = self.cache.get(kind, key)?;
        self.rv += 1;
        Some(self.cache.apply(obj, true))
    }

    fn check_rv(&self, obj: &Object) -> Result<Option<Object>, WriteError> {
        let current = self.cache.get(obj.kind(), &obj.key());
        let Some(cur) = current else {
            return Err(WriteError::NotFound);
        };
        match obj.meta().resource_version.as_deref() {
            Some(rv) if Some(rv) != cur.meta().resource_version.as_deref() => {
                Err(WriteError::Conflict)
            }
            _ => Ok(Some(cur)),
        }
    }

    /// Execute `c`'s pending writes, feeding the resulting changes (and failures) back to it,
    /// until it asks for none; returns how many writes ran. For driving one controller alone
    /// (benchmarks); [`Harness`] drives several.
    pub fn drain(&mut self, c: &mut dyn Controller, now: Millis) -> usize {
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

    /// Execute a controller's write with API semantics. Returns the resulting changes.
    pub fn execute(&mut self, action: &Action, now: Millis) -> Result<Vec<Change>, WriteError> {
        self.log.push((now, action.clone()));
        match action {
            Action::Create(obj) => {
                let exists = !obj.meta().name.as_deref().unwrap_or("").is_empty()
                    && self.cache.get(obj.kind(), &obj.key()).is_some();
                if exists {
                    return Err(WriteError::AlreadyExists);
                }
                Ok(vec![self.put(obj.clone(), now)])
            }
            Action::Update(obj) | Action::UpdateStatus(obj) => {
                let cur = self.check_rv(obj)?;
                // Upstream `ShouldDeleteDuringUpdate`: an object a delete left to its finalizers
                // (deletionGracePeriodSeconds 0) goes once the last finalizer is removed.
                let held = cur.is_some_and(|c| {
                    let m = c.meta();
                    m.deletion_timestamp.is_some()
                        && m.deletion_grace_period_seconds.is_none_or(|g| g == 0)
                });
                let change = self.put(obj.clone(), now);
                if held && obj.meta().finalizers.as_ref().is_none_or(Vec::is_empty) {
                    return Ok(self.remove(obj.kind(), &obj.key()).into_iter().collect());
                }
                Ok(vec![change])
            }
            Action::Delete {
                kind,
                key,
                uid,
                grace_period_seconds,
            } => {
                let cur = self.cache.get(*kind, key).ok_or(WriteError::NotFound)?;
                if uid.is_some() && cur.meta().uid != *uid {
                    return Err(WriteError::Conflict);
                }
                if let Object::Pod(p) = &cur {
                    let grace = grace_period_seconds
                        .or_else(|| {
                            p.spec
                                .as_ref()
                                .and_then(|s| s.termination_grace_period_seconds)
                        })
                        .unwrap_or(30);
                    let bound = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| !n.is_empty());
                    if bound && grace > 0 {
                        if p.metadata.deletion_timestamp.is_some() {
                            return Ok(vec![]);
                        }
                        let mut pod = (**p).clone();
                        pod.metadata.deletion_timestamp = Some(to_time(now + grace * 1000));
                        pod.metadata.deletion_grace_period_seconds = Some(grace);
                        return Ok(vec![self.put(Object::Pod(Arc::new(pod)), now)]);
                    }
                }
                if cur
                    .meta()
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| !f.is_empty())
                {
                    // Finalizers hold the object: only deletionTimestamp is set (once).
                    if cur.meta().deletion_timestamp.is_some() {
                        return Ok(vec![]);
                    }
                    let mut obj = cur.clone();
                    let m = meta_mut(&mut obj);
                    m.deletion_timestamp = Some(to_time(now));
                    m.deletion_grace_period_seconds = Some(0);
                    return Ok(vec![self.put(obj, now)]);
                }
                Ok(self.remove(*kind, key).into_iter().collect())
            }
            Action::Bind { pod, node } => {
                let Some(Object::Pod(p)) = self.cache.get(Kind::Pod, pod) else {
                    return Err(WriteError::NotFound);
                };
                if p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty())
                {
                    return Err(WriteError::Conflict);
                }
                let mut pod = (*p).clone();
                pod.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
                let status = pod.status.get_or_insert_with(Default::default);
                let conds = status.conditions.get_or_insert_with(Vec::new);
                conds.retain(|c| c.type_ != "PodScheduled");
                conds.push(PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(to_time(now)),
                    ..PodCondition::default()
                });
                Ok(vec![self.put(Object::Pod(Arc::new(pod)), now)])
            }
        }
    }
}

/// Controllers plus a [`FakeApi`] in virtual time.
pub struct Harness {
    pub api: FakeApi,
    pub controllers: Vec<Box<dyn Controller>>,
    pub now: Millis,
    /// Failed writes, with the error (for assertions).
    pub failures: Vec<(Millis, Action, WriteError)>,
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
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.controllers
            .iter()
            .filter_map(|c| c.poll_timeout())
            .min()
    }

    /// Advance virtual time to `until`, running every timer due on the way (in order).
    pub fn run_until(&mut self, until: Millis) {
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
    pub fn advance(&mut self, ms: Millis) {
        self.run_until(self.now + ms);
    }

    /// Writes executed so far, grouped by a label (for assertions on write counts).
    pub fn write_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (_, a) in &self.api.log {
            let label = match a {
                Action::Create(o) => format!("create {:?}", o.kind()),
                Action::Update(o) => format!("update {:?}", o.kind()),
                Action::UpdateStatus(o) => format!("status {:?}", o.kind()),
                Action::Delete { kind, .. } => format!("delete {kind:?}"),
                Action::Bind { .. } => "bind".to_string(),
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
