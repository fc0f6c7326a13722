//! [`MemStore`]: the in-memory backend (tests, the simulator); every write is visible and fanned
//! out to watchers before `txn` returns.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::core::Core;
use crate::{
    KeyValue, ListOptions, ListResult, Op, Revision, Store, StoreError, StoreOptions, Watcher,
};

/// A store that lives in memory only. Cheap to create; lost on drop.
pub struct MemStore {
    core: Core,
}

impl MemStore {
    /// An empty store with default options.
    pub fn new() -> Self {
        Self::with_options(StoreOptions::default())
    }

    /// An empty store with `opts` (`max_pending_writes` is ignored).
    pub fn with_options(opts: StoreOptions) -> Self {
        MemStore {
            core: Core::new(&opts, BTreeMap::new(), 0),
        }
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Store for MemStore {
    async fn txn(&self, ops: Vec<Op>) -> Result<Vec<KeyValue>, StoreError> {
        let (results, ()) = self.core.txn(ops, true, |_, _| Ok(()))?;
        Ok(results)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.core.get(key))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        self.core.list(prefix, &opts)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError> {
        self.core.watch(prefix, after)
    }

    fn current_revision(&self) -> Revision {
        self.core.current_revision()
    }

    fn compacted_revision(&self) -> Revision {
        self.core.compacted_revision()
    }

    fn request_progress(&self) {
        self.core.request_progress();
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn wait_for_revision(&self, revision: Revision) {
        self.core.wait_published(revision).await;
    }
}
