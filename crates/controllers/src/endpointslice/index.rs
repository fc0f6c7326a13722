//! Indexes that let the EndpointSlice controller's work follow the change: the Services
//! selecting a pod (by one label of each selector), the pods each Service selects and the
//! slices holding each pod's endpoint. Start at [`Selection`].
//!
//! They hold what a scan of the cache would find (`pods_in(namespace)` filtered by selector,
//! the managed slices' endpoints): kept up to date from the changes the controller is handed
//! and rebuilt from the cache when the informers sync.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::cache::{Cache, Key};

use super::desired::{selector, selects};

type Selector = BTreeMap<String, String>;

/// Which Services select which pods.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    /// namespace → label key → label value → the Services whose selector's first (smallest
    /// key) pair it is. Each Service is filed under exactly one pair.
    by_label: BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeSet<Key>>>>,
    /// Service → its selector as filed.
    selectors: BTreeMap<Key, Selector>,
    /// Service → names of the pods (in its namespace) it selects.
    members: BTreeMap<Key, BTreeSet<String>>,
}

impl Selection {
    /// Rebuild from the cache: every selector Service and every pod.
    pub fn rebuild(&mut self, cache: &Cache) {
        *self = Selection::default();
        for (key, svc) in &cache.services {
            if let Some(sel) = selector(svc) {
                self.file(key, sel.clone());
            }
        }
        for (key, pod) in &cache.pods {
            for svc in self.selecting(&key.namespace, pod) {
                self.members
                    .entry(svc)
                    .or_default()
                    .insert(key.name.clone());
            }
        }
    }

    fn file(&mut self, key: &Key, sel: Selector) {
        if let Some((k, v)) = sel.iter().next() {
            self.by_label
                .entry(key.namespace.clone())
                .or_default()
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(key.clone());
        }
        self.selectors.insert(key.clone(), sel);
    }

    fn unfile(&mut self, key: &Key) {
        let Some(sel) = self.selectors.remove(key) else {
            return;
        };
        let Some((k, v)) = sel.iter().next() else {
            return;
        };
        let Some(keys) = self.by_label.get_mut(&key.namespace) else {
            return;
        };
        if let Some(values) = keys.get_mut(k) {
            if let Some(set) = values.get_mut(v) {
                set.remove(key);
                if set.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                keys.remove(k);
            }
        }
        if keys.is_empty() {
            self.by_label.remove(&key.namespace);
        }
    }

    /// The Services in `namespace` whose selector selects `pod`, in key order.
    pub fn selecting(&self, namespace: &str, pod: &Pod) -> BTreeSet<Key> {
        let mut out = BTreeSet::new();
        let (Some(keys), Some(labels)) = (self.by_label.get(namespace), &pod.metadata.labels)
        else {
            return out;
        };
        for (k, v) in labels {
            let Some(candidates) = keys.get(k).and_then(|values| values.get(v)) else {
                continue;
            };
            for key in candidates {
                if self.selectors.get(key).is_some_and(|sel| selects(sel, pod)) {
                    out.insert(key.clone());
                }
            }
        }
        out
    }

    /// A Service added, changed (`sel`: its selector now) or deleted (`None`). Returns true if
    /// its selection changed (its members were recomputed from the namespace's pods, each
    /// selected pod handed to `visit` on the way: the one scan of the namespace).
    pub fn set_service(
        &mut self,
        cache: &Cache,
        key: &Key,
        sel: Option<&Selector>,
        mut visit: impl FnMut(&Pod),
    ) -> bool {
        if self.selectors.get(key) == sel {
            return false;
        }
        self.unfile(key);
        self.members.remove(key);
        let Some(sel) = sel else { return true };
        self.file(key, sel.clone());
        let names: BTreeSet<String> = cache
            .pods_in(&key.namespace)
            .filter(|p| selects(sel, p))
            .inspect(|p| visit(p))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if !names.is_empty() {
            self.members.insert(key.clone(), names);
        }
        true
    }

    /// A pod added, changed or deleted (`new` absent): moves it between the Services that
    /// selected it (`old`) and select it now. Returns both sets of Services.
    pub fn pod_changed(
        &mut self,
        new: Option<&Pod>,
        old: Option<&Pod>,
    ) -> (BTreeSet<Key>, BTreeSet<Key>) {
        let Some(p) = new.or(old) else {
            return Default::default();
        };
        let ns = p.metadata.namespace.as_deref().unwrap_or("");
        let name = p.metadata.name.clone().unwrap_or_default();
        let was = old.map(|o| self.selecting(ns, o)).unwrap_or_default();
        let is = new.map(|n| self.selecting(ns, n)).unwrap_or_default();
        for key in was.difference(&is) {
            if let Some(set) = self.members.get_mut(key) {
                set.remove(&name);
                if set.is_empty() {
                    self.members.remove(key);
                }
            }
        }
        for key in is.difference(&was) {
            self.members
                .entry(key.clone())
                .or_default()
                .insert(name.clone());
        }
        (was, is)
    }

    /// Names of the pods `key` selects, in name order.
    pub fn members(&self, key: &Key) -> impl Iterator<Item = &String> + '_ {
        self.members.get(key).into_iter().flatten()
    }
}

/// Which managed slices hold an endpoint for which pod, per Service.
#[derive(Debug, Default)]
pub(crate) struct Holders {
    /// Service → pod name → slice names.
    by_service: BTreeMap<Key, BTreeMap<String, BTreeSet<String>>>,
}

impl Holders {
    /// Rebuild from the cache's managed slices.
    pub fn rebuild(&mut self, cache: &Cache) {
        self.by_service.clear();
        for slice in cache
            .endpoint_slices
            .values()
            .filter(|s| super::is_managed(s))
        {
            self.add(slice);
        }
    }

    fn pods_of(slice: &EndpointSlice) -> impl Iterator<Item = &str> {
        slice
            .endpoints
            .iter()
            .filter_map(|e| e.target_ref.as_ref()?.name.as_deref())
    }

    /// A managed slice of Service `svc` now in the cache.
    pub fn add(&mut self, slice: &EndpointSlice) {
        let (Some(svc), Some(name)) = (super::service_of(slice), &slice.metadata.name) else {
            return;
        };
        let pods = self.by_service.entry(svc).or_default();
        for pod in Self::pods_of(slice) {
            pods.entry(pod.to_string())
                .or_default()
                .insert(name.clone());
        }
    }

    /// A managed slice no longer in the cache in this version.
    pub fn remove(&mut self, slice: &EndpointSlice) {
        let (Some(svc), Some(name)) = (super::service_of(slice), &slice.metadata.name) else {
            return;
        };
        let Some(pods) = self.by_service.get_mut(&svc) else {
            return;
        };
        for pod in Self::pods_of(slice) {
            if let Some(set) = pods.get_mut(pod) {
                set.remove(name);
                if set.is_empty() {
                    pods.remove(pod);
                }
            }
        }
        if pods.is_empty() {
            self.by_service.remove(&svc);
        }
    }

    /// Names of the slices of `svc` holding an endpoint of any of `pods`.
    pub fn holding<'a>(
        &'a self,
        svc: &Key,
        pods: impl Iterator<Item = &'a String>,
    ) -> BTreeSet<&'a str> {
        let mut out = BTreeSet::new();
        if let Some(by_pod) = self.by_service.get(svc) {
            for pod in pods {
                out.extend(by_pod.get(pod).into_iter().flatten().map(String::as_str));
            }
        }
        out
    }
}
