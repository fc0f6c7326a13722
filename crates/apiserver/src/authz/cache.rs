//! The authorizers' view of the store: the RBAC objects and the Pods, kept current by watches
//! so a request is decided without a store read. Start at [`Caches::start`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::resources::{ResourceInfo, by_plural};
use serde_json::Value;
use store::{EventKind, ListOptions, SharedStore, WatchMessage};

/// One prefix's objects, by key, and a counter bumped on every change.
#[derive(Default)]
pub struct PrefixCache {
    objects: Mutex<BTreeMap<String, Value>>,
    generation: AtomicU64,
}

impl PrefixCache {
    fn replace(&self, all: BTreeMap<String, Value>) {
        *self.objects.lock().unwrap_or_else(|e| e.into_inner()) = all;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn apply(&self, key: String, value: Option<Value>) {
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        match value {
            Some(v) => objects.insert(key, v),
            None => objects.remove(&key),
        };
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Every object, in key order.
    pub fn values(&self) -> Vec<Value> {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects.values().cloned().collect()
    }

    /// Whether any object satisfies `f` (no copies made).
    pub fn any(&self, f: impl Fn(&Value) -> bool) -> bool {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects.values().any(f)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// The RBAC kinds (Role, ClusterRole, RoleBinding, ClusterRoleBinding) and Pods.
#[derive(Default)]
pub struct Caches {
    rbac: [PrefixCache; 4],
    pub pods: PrefixCache,
}

const RBAC_PLURALS: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

fn resource(group: &str, plural: &str) -> &'static ResourceInfo {
    by_plural(group, plural).expect("served resource")
}

impl Caches {
    /// Sum of the RBAC caches' generations: changes whenever one of them changed.
    pub fn rbac_generation(&self) -> u64 {
        self.rbac.iter().map(PrefixCache::generation).sum()
    }

    /// Roles, ClusterRoles, RoleBindings, ClusterRoleBindings.
    pub fn rbac_objects(&self) -> [Vec<Value>; 4] {
        [0, 1, 2, 3].map(|i| self.rbac[i].values())
    }

    /// Fill every cache from the store, then keep it current from a watch (relisting after a
    /// watch ends). Returns once the first lists are in.
    pub async fn start(self: &Arc<Self>, store: &SharedStore) -> Result<(), store::StoreError> {
        let mut targets: Vec<(String, usize)> = RBAC_PLURALS
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let prefix = crate::objects::prefix(resource(api::admit::rbac::GROUP, p), None);
                (prefix, i)
            })
            .collect();
        targets.push((crate::objects::prefix(resource("", "pods"), None), 4));
        for (prefix, index) in targets {
            let revision = self.relist(store, &prefix, index).await?;
            let me = Arc::clone(self);
            let store = Arc::clone(store);
            tokio::spawn(async move { me.follow(store, prefix, index, revision).await });
        }
        Ok(())
    }

    fn cache(&self, index: usize) -> &PrefixCache {
        self.rbac.get(index).unwrap_or(&self.pods)
    }

    async fn relist(
        &self,
        store: &SharedStore,
        prefix: &str,
        index: usize,
    ) -> Result<store::Revision, store::StoreError> {
        let page = store.list(prefix, ListOptions::default()).await?;
        let all = page
            .items
            .iter()
            .filter_map(|kv| Some((kv.key.clone(), crate::objects::decode(kv).ok()?)))
            .collect();
        self.cache(index).replace(all);
        Ok(page.revision)
    }

    /// Watch `prefix` from `revision` forever, relisting when the watch breaks.
    async fn follow(
        self: Arc<Self>,
        store: SharedStore,
        prefix: String,
        index: usize,
        mut revision: store::Revision,
    ) {
        loop {
            if let Ok(mut w) = store.watch(&prefix, revision).await {
                while let Some(Ok(msg)) = w.next().await {
                    if let WatchMessage::Event(e) = msg {
                        revision = e.kv.mod_revision;
                        let value = match e.kind {
                            EventKind::Deleted => None,
                            _ => crate::objects::decode(&e.kv).ok(),
                        };
                        self.cache(index).apply(e.kv.key.clone(), value);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            match self.relist(&store, &prefix, index).await {
                Ok(r) => revision = r,
                Err(e) => tracing::warn!("authorization cache relist of {prefix} failed: {e}"),
            }
        }
    }
}
