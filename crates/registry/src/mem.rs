//! An in-memory, synchronous API over the write rules: a BTreeMap store with a revision
//! counter, ClusterIP/NodePort allocators and a seeded RNG. The simulator's API server and the
//! controllers' test double.
//!
//! Start at [`MemApi`]: [`MemApi::create`], [`MemApi::update`], [`MemApi::delete`],
//! [`MemApi::bind`] return the stored object and the watch changes the write caused.

use std::collections::{BTreeMap, VecDeque};

use api::resources::{self, ResourceInfo};
use api::status::StatusError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::admission::{self, Admission};
use crate::alloc::{IpRange, PortRange, ServiceAllocations};
use crate::delete::{self, DeleteOptions, DeletePlan};
use crate::meta::{self, Moment};
use crate::stored::{FastPath, Stored};
use crate::strategy::UpdateScope;
use crate::{bind, gc};

/// Settings of a [`MemApi`] (the API server flags the rules read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemConfig {
    pub admission: Admission,
    /// `--service-cluster-ip-range`.
    pub service_cluster_ip_range: String,
    /// `--service-node-port-range`.
    pub service_node_port_range: (u16, u16),
    /// Refuse creates in a namespace that does not exist (404) or is terminating (403), as the
    /// NamespaceLifecycle admission plugin does. Off for test doubles that never create
    /// namespaces.
    pub check_namespaces: bool,
}

impl Default for MemConfig {
    fn default() -> MemConfig {
        MemConfig {
            admission: Admission::default(),
            service_cluster_ip_range: "10.96.0.0/12".into(),
            service_node_port_range: (30000, 32767),
            check_namespaces: true,
        }
    }
}

/// Error building a [`MemApi`] from bad settings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid --service-cluster-ip-range {0:?}: {1}")]
    ServiceRange(String, String),
    #[error("invalid --service-node-port-range {0}-{1}: {2}")]
    NodePortRange(u16, u16, String),
}

/// What a watcher sees of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One watch event: the object as stored (as last stored, for a delete).
#[derive(Clone, Debug)]
pub struct Change<S> {
    pub res: &'static ResourceInfo,
    pub kind: ChangeType,
    pub object: S,
}

/// The result of a write: the object it returns and the watch changes it caused (none for an
/// update that changed nothing; several for a delete that cascades).
#[derive(Clone, Debug)]
pub struct Written<S> {
    pub object: S,
    pub changes: Vec<Change<S>>,
}

type ObjKey = (&'static str, &'static str, String, String);

fn obj_key(res: &ResourceInfo, namespace: Option<&str>, name: &str) -> ObjKey {
    let ns = if res.namespaced {
        namespace.unwrap_or("")
    } else {
        ""
    };
    (res.group, res.plural, ns.to_string(), name.to_string())
}

fn namespace_of(v: &Value) -> Option<&str> {
    meta::meta_str(v, "namespace").filter(|n| !n.is_empty())
}

/// How many (resource, namespace, generateName) entries [`MemApi`]'s create memo holds
/// (oldest out first).
const CREATE_MEMO_CAP: usize = 16_384;

/// Creates from a `generateName` body (a controller's pods from one template), per resource,
/// namespace and `generateName`: the last body and the object the create rules made of it.
#[derive(Clone, Debug)]
struct CreateMemo<S> {
    last: BTreeMap<ObjKey, (S, S)>,
    order: VecDeque<ObjKey>,
    /// Pairs held at most (0: no memo).
    cap: usize,
    /// Creates answered from the memo.
    hits: u64,
}

impl<S: Stored> CreateMemo<S> {
    fn new() -> CreateMemo<S> {
        CreateMemo {
            last: BTreeMap::new(),
            order: VecDeque::new(),
            cap: CREATE_MEMO_CAP,
            hits: 0,
        }
    }

    /// A body the memo may answer: a name to generate, and no ClusterIP to allocate.
    fn eligible(&self, res: &ResourceInfo, obj: &S) -> bool {
        self.cap > 0
            && obj.name().is_empty()
            && obj.generate_name().is_some()
            && !admission::is_service(res)
    }

    /// The admitted object of the last create of an equal body in `key`.
    fn get(&self, key: &ObjKey, obj: &S) -> Option<&S> {
        self.last
            .get(key)
            .filter(|(body, _)| body.same(obj))
            .map(|(_, admitted)| admitted)
    }

    fn put(&mut self, key: ObjKey, body: S, admitted: S) {
        if self.last.insert(key.clone(), (body, admitted)).is_none() {
            self.order.push_back(key);
            if self.order.len() > self.cap
                && let Some(old) = self.order.pop_front()
            {
                self.last.remove(&old);
            }
        }
    }
}

/// An in-memory API: every write goes through the crate's rules.
#[derive(Clone, Debug)]
pub struct MemApi<S: Stored = Value> {
    objects: BTreeMap<ObjKey, S>,
    revision: u64,
    rng: ChaCha8Rng,
    alloc: ServiceAllocations,
    cfg: MemConfig,
    memo: CreateMemo<S>,
}

impl<S: Stored> MemApi<S> {
    /// An empty API with `cfg`, its randomness (uids, generated names, ClusterIPs) from `seed`.
    pub fn new(cfg: MemConfig, seed: u64) -> Result<MemApi<S>, ConfigError> {
        let ips = IpRange::parse(&cfg.service_cluster_ip_range).map_err(|e| {
            ConfigError::ServiceRange(cfg.service_cluster_ip_range.clone(), e.to_string())
        })?;
        let (lo, hi) = cfg.service_node_port_range;
        let ports = PortRange::parse(&format!("{lo}-{hi}"))
            .map_err(|e| ConfigError::NodePortRange(lo, hi, e.0))?;
        Ok(MemApi {
            objects: BTreeMap::new(),
            revision: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            alloc: ServiceAllocations::new(ips, ports),
            cfg,
            memo: CreateMemo::new(),
        })
    }

    /// The store's current revision (the resourceVersion of the last write).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// How many creates the create memo answered (see [`MemApi::create`]).
    #[cfg(test)]
    pub(crate) fn create_memo_hits(&self) -> u64 {
        self.memo.hits
    }

    /// The allocators (read-only).
    pub fn allocations(&self) -> &ServiceAllocations {
        &self.alloc
    }

    pub fn get(&self, res: &ResourceInfo, namespace: Option<&str>, name: &str) -> Option<&S> {
        self.objects.get(&obj_key(res, namespace, name))
    }

    /// Objects of `res` in `namespace` (all namespaces when `None`), in key order.
    pub fn list<'a>(
        &'a self,
        res: &'a ResourceInfo,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a S> + 'a {
        let lo = (res.group, res.plural, String::new(), String::new());
        self.objects
            .range(lo..)
            .take_while(move |(k, _)| k.0 == res.group && k.1 == res.plural)
            .filter(move |(k, _)| namespace.is_none_or(|ns| !res.namespaced || k.2 == ns))
            .map(|(_, v)| v)
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn store(
        &mut self,
        res: &'static ResourceInfo,
        mut obj: S,
        kind: ChangeType,
        key: ObjKey,
    ) -> Written<S> {
        let rv = self.next_revision();
        obj.set_resource_version(rv);
        self.objects.insert(key, obj.clone());
        Written {
            object: obj.clone(),
            changes: vec![Change {
                res,
                kind,
                object: obj,
            }],
        }
    }

    fn check_namespace(&self, res: &ResourceInfo, ns: Option<&str>) -> Result<(), StatusError> {
        let (true, true, Some(ns)) = (self.cfg.check_namespaces, res.namespaced, ns) else {
            return Ok(());
        };
        let nsres =
            resources::by_plural("", "namespaces").ok_or_else(StatusError::path_not_found)?;
        let obj = self
            .get(nsres, None, ns)
            .ok_or_else(|| StatusError::not_found(nsres, ns))?;
        admission::check_namespace_active(ns, &obj.to_value())
    }

    /// POST: admit `obj` as a new object of `res` in `namespace` and store it. A rejected create
    /// changes nothing (no revision, no ClusterIP taken).
    ///
    /// A body with `generateName` and no name that equals the last such body created with the
    /// same resource, namespace and `generateName` (a controller's pods from one template) skips the JSON
    /// rules: they are a function of the body but for the name, uid and creationTimestamp they
    /// draw and stamp, so the memoized result gets those, drawn in the same order
    /// ([`Stored::set_created_identity`]); the name's validity does not depend on the random
    /// suffix (same length, DNS-safe letters). The same object results, byte for byte.
    pub fn create(
        &mut self,
        res: &'static ResourceInfo,
        namespace: Option<&str>,
        obj: &S,
        now: Moment,
    ) -> Result<Written<S>, StatusError> {
        let memo_key = self
            .memo
            .eligible(res, obj)
            .then(|| obj_key(res, namespace, obj.generate_name().unwrap_or("")));
        if let Some(mk) = &memo_key
            && let Some(admitted) = self.memo.get(mk, obj)
        {
            let mut new = admitted.clone();
            self.memo.hits += 1;
            let ns = new.namespace().map(str::to_string);
            let name = format!(
                "{}{}",
                obj.generate_name().unwrap_or(""),
                meta::generate_suffix(&mut self.rng)
            );
            let uid = meta::new_uid(&mut self.rng);
            self.check_namespace(res, ns.as_deref())?;
            let key = obj_key(res, ns.as_deref(), &name);
            if self.objects.contains_key(&key) {
                return Err(StatusError::already_exists(res, &name));
            }
            new.set_created_identity(name, uid, now);
            return Ok(self.store(res, new, ChangeType::Added, key));
        }
        let mut v = obj.to_value();
        admission::check_identity(res, &v, namespace)?;
        api::admit::convert(res, &mut v)?;
        let namespace = namespace.or(namespace_of(&v)).map(str::to_string);
        let namespace = namespace.as_deref().filter(|_| res.namespaced);
        if res.namespaced && namespace.is_none() {
            return Err(StatusError::method_not_allowed("POST", res.kind));
        }
        admission::admit_create(
            res,
            namespace,
            &mut v,
            &self.cfg.admission,
            now,
            &mut self.rng,
        )?;
        self.check_namespace(res, namespace)?;
        let name = meta::name_of(&v).to_string();
        let key = obj_key(res, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(StatusError::already_exists(res, &name));
        }
        let taken = if admission::is_service(res) {
            self.alloc.allocate_for_create(&mut v, &mut self.rng)?
        } else {
            Default::default()
        };
        let typed = match S::from_value(res, v) {
            Ok(t) => t,
            Err(e) => {
                self.alloc.release(&taken);
                return Err(e);
            }
        };
        if let Some(mk) = memo_key {
            self.memo.put(mk, obj.clone(), typed.clone());
        }
        Ok(self.store(res, typed, ChangeType::Added, key))
    }

    /// PUT (`scope` Main) or PUT status (`scope` Status) of `obj`, whose `resourceVersion`, if
    /// set, is a precondition (taken by value: the typed fast paths then mutate it in place). An update that changes nothing stores nothing and returns no
    /// change; one that removes the last finalizer of a deleted object removes it.
    pub fn update(
        &mut self,
        res: &'static ResourceInfo,
        namespace: Option<&str>,
        obj: S,
        scope: UpdateScope,
        _now: Moment,
    ) -> Result<Written<S>, StatusError> {
        let name = obj.name().to_string();
        let key = obj_key(res, namespace, &name);
        let old = self
            .objects
            .get(&key)
            .ok_or_else(|| StatusError::not_found(res, &name))?;
        let stored_rev = meta::parse_resource_version(old.resource_version())?.unwrap_or(0);
        let mut new = obj;
        if new.fast_update(res, scope, old) == FastPath::Applied {
            let precondition = meta::parse_resource_version(new.resource_version())?;
            if precondition.is_some_and(|rv| rv != stored_rev) {
                return Err(StatusError::conflict(res, &name));
            }
            return Ok(self.finish_update(res, key, new, stored_rev));
        }
        let old_v = old.to_value();
        let mut v = new.to_value();
        admission::decode_update(res, namespace, &name, &mut v)?;
        admission::admit_update(res, &name, &mut v, &old_v, scope, stored_rev)?;
        let change = if admission::is_service(res) && scope == UpdateScope::Main {
            Some(
                self.alloc
                    .allocate_for_update(&old_v, &mut v, &mut self.rng)?,
            )
        } else {
            None
        };
        let rollback = |api: &mut MemApi<S>| {
            if let Some(c) = &change {
                api.alloc.abort_update(c);
            }
        };
        if let Err(e) = admission::validate_update(res, &name, &v, &old_v) {
            rollback(self);
            return Err(e);
        }
        let finalized = admission::deletes_on_update(&old_v, &v);
        let new = match S::from_value(res, v) {
            Ok(n) => n,
            Err(e) => {
                rollback(self);
                return Err(e);
            }
        };
        if let Some(c) = &change {
            self.alloc.commit_update(c);
        }
        if finalized {
            return Ok(self.remove_key(res, key).unwrap_or(Written {
                object: new,
                changes: Vec::new(),
            }));
        }
        Ok(self.finish_update(res, key, new, stored_rev))
    }

    fn finish_update(
        &mut self,
        res: &'static ResourceInfo,
        key: ObjKey,
        mut new: S,
        stored_rev: u64,
    ) -> Written<S> {
        new.set_resource_version(stored_rev);
        if self.objects.get(&key).is_some_and(|old| old.same(&new)) {
            // Nothing changed: as upstream's GuaranteedUpdate, no write, no event.
            return Written {
                object: new,
                changes: Vec::new(),
            };
        }
        self.store(res, new, ChangeType::Modified, key)
    }

    /// PUT status.
    pub fn update_status(
        &mut self,
        res: &'static ResourceInfo,
        namespace: Option<&str>,
        obj: S,
        now: Moment,
    ) -> Result<Written<S>, StatusError> {
        self.update(res, namespace, obj, UpdateScope::Status, now)
    }

    fn remove_key(&mut self, res: &'static ResourceInfo, key: ObjKey) -> Option<Written<S>> {
        let mut obj = self.objects.remove(&key)?;
        if admission::is_service(res) {
            self.alloc.release_service(&obj.to_value());
        }
        let rv = self.next_revision();
        obj.set_resource_version(rv);
        Some(Written {
            object: obj.clone(),
            changes: vec![Change {
                res,
                kind: ChangeType::Deleted,
                object: obj,
            }],
        })
    }

    /// DELETE: mark (graceful pod deletion, finalizers, namespaces) or remove, then cascade to
    /// dependents as the garbage collector does (at once) and empty a deleted namespace.
    pub fn delete(
        &mut self,
        res: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        now: Moment,
    ) -> Result<Written<S>, StatusError> {
        delete::check_deletable(res, name)?;
        opts.validate()?;
        let key = obj_key(res, namespace, name);
        let old = self
            .objects
            .get(&key)
            .ok_or_else(|| StatusError::not_found(res, name))?;
        let old_v = old.to_value();
        match delete::plan_delete(res, name, &old_v, opts, now)? {
            DeletePlan::Mark(marked) => {
                let stored_rev = meta::parse_resource_version(old.resource_version())?.unwrap_or(0);
                let new = S::from_value(res, marked)?;
                let mut w = self.finish_update(res, key, new, stored_rev);
                if res.kind == "Namespace" {
                    self.empty_namespace(name, &mut w.changes);
                    if let Some(gone) = self.remove_key(res, obj_key(res, None, name)) {
                        w.changes.extend(gone.changes);
                    }
                }
                Ok(w)
            }
            DeletePlan::Remove => {
                let mut w = self
                    .remove_key(res, key)
                    .ok_or_else(|| StatusError::not_found(res, name))?;
                let uid = meta::meta_str(&old_v, "uid").unwrap_or("").to_string();
                self.cascade(
                    &uid,
                    namespace_of(&old_v),
                    opts.orphans(),
                    now,
                    &mut w.changes,
                );
                Ok(w)
            }
        }
    }

    /// Delete (or orphan) every dependent of `uid` in `namespace`.
    fn cascade(
        &mut self,
        uid: &str,
        namespace: Option<&str>,
        orphan: bool,
        now: Moment,
        out: &mut Vec<Change<S>>,
    ) {
        if uid.is_empty() {
            return;
        }
        for res in gc::dependent_kinds() {
            let steps: Vec<(String, Option<String>, gc::GcStep)> = self
                .list(res, namespace)
                .filter(|o| o.owned_by(uid))
                .filter_map(|o| {
                    let v = o.to_value();
                    let step = gc::cascade(uid, orphan, &v)?;
                    Some((
                        meta::name_of(&v).to_string(),
                        namespace_of(&v).map(str::to_string),
                        step,
                    ))
                })
                .collect();
            for (name, ns, step) in steps {
                match step {
                    gc::GcStep::Delete => {
                        if let Ok(w) =
                            self.delete(res, ns.as_deref(), &name, &DeleteOptions::default(), now)
                        {
                            out.extend(w.changes);
                        }
                    }
                    gc::GcStep::Orphan(freed) => {
                        if let Ok(t) = S::from_value(res, freed) {
                            let key = obj_key(res, ns.as_deref(), &name);
                            out.extend(self.store(res, t, ChangeType::Modified, key).changes);
                        }
                    }
                }
            }
        }
    }

    /// Remove everything in a deleted namespace (at once, as the API server's cleanup does).
    fn empty_namespace(&mut self, ns: &str, out: &mut Vec<Change<S>>) {
        for res in gc::namespace_kinds() {
            let names: Vec<String> = self
                .list(res, Some(ns))
                .map(|o| o.name().to_string())
                .collect();
            for name in names {
                if let Some(w) = self.remove_key(res, obj_key(res, Some(ns), &name)) {
                    out.extend(w.changes);
                }
            }
        }
    }

    /// POST pods/binding: assign the pod to `node` (409 when assigned or being deleted).
    pub fn bind(
        &mut self,
        namespace: &str,
        name: &str,
        node: &str,
        now: Moment,
    ) -> Result<Written<S>, StatusError> {
        let pods = resources::by_plural("", "pods").ok_or_else(StatusError::path_not_found)?;
        let key = obj_key(pods, Some(namespace), name);
        let old = self
            .objects
            .get(&key)
            .ok_or_else(|| StatusError::not_found(pods, name))?;
        let mut typed = old.clone();
        let pod = match typed.fast_bind(pods, node, now) {
            Some(r) => r.map(|()| typed)?,
            None => {
                let mut v = old.to_value();
                bind::bind(pods, name, &mut v, node, now)?;
                S::from_value(pods, v)?
            }
        };
        Ok(self.store(pods, pod, ChangeType::Modified, key))
    }

    /// Store `obj` as given, without admission or validation (seeding a store, as writing to
    /// etcd directly): keeps the stored uid and creationTimestamp, fills a missing name (from
    /// generateName), uid and creationTimestamp, applies the kind's defaults (as reading from
    /// storage would), bumps the revision; a Service's ClusterIP and node ports are marked
    /// taken.
    pub fn put_raw(
        &mut self,
        res: &'static ResourceInfo,
        namespace: Option<&str>,
        obj: S,
        now: Moment,
    ) -> Result<Written<S>, StatusError> {
        let mut o = obj;
        let ns = namespace
            .or(o.namespace())
            .filter(|_| res.namespaced)
            .map(str::to_string);
        let name = o.name().is_empty().then(|| {
            let g = o.generate_name().unwrap_or("");
            format!("{g}{}", meta::generate_suffix(&mut self.rng))
        });
        let key = obj_key(res, ns.as_deref(), name.as_deref().unwrap_or(o.name()));
        let fresh = meta::new_uid(&mut self.rng);
        let old = self.objects.get(&key);
        let kind = if old.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        o.raw_identity(old, name, fresh, now);
        // Objects read from storage are defaulted (upstream's storage codec defaults on decode).
        if o.fast_defaults(res, old) == FastPath::Fallback {
            let mut v = o.to_value();
            api::admit::default(res, &mut v);
            o = S::from_value(res, v)?;
        }
        if admission::is_service(res) {
            let held = self.alloc.held_by(&o.to_value());
            self.alloc.mark(&held);
        }
        Ok(self.store(res, o, kind, key))
    }

    /// Remove an object without the delete rules (as deleting from etcd directly).
    pub fn remove_raw(
        &mut self,
        res: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Written<S>> {
        self.remove_key(res, obj_key(res, namespace, name))
    }
}

#[cfg(test)]
#[path = "mem_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "memo_tests.rs"]
mod memo_tests;
