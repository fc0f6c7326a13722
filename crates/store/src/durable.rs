//! [`DurableStore`]: the redb-backed backend with group commit; start at [`DurableStore::open`].
//!
//! Why redb: pure Rust (no C toolchain, unlike SQLite or RocksDB), ACID, crash-safe by design
//! (copy-on-write B-trees with a checksummed commit slot), and a commit with
//! `Durability::Immediate` returns only after fsync.
//!
//! A write goes: precondition check, new revision and in-memory apply under the core lock (so a
//! following compare-and-swap sees it), then, still under the lock, onto the committer's queue
//! (so the queue is in revision order). One committer thread takes everything queued, writes it
//! in one redb transaction, commits (one fsync for the whole batch), publishes the batch's
//! revisions (reads, lists and watchers see a write only once it is durable) and acknowledges
//! the writers. Concurrent writers therefore share fsyncs. A compare-and-swap racing a write that
//! is applied but not yet durable fails with [`StoreError::Conflict`] naming that write's
//! revision, which readers see a moment later (once it is durable).
//!
//! If a commit fails, every write in that batch (and every one queued after it) fails with
//! [`StoreError::Io`], and the store refuses all further writes: memory already holds writes the
//! disk does not, so the only safe continuation is to drop the store and reopen it. Reads keep
//! answering at the last durable revision; watchers are ended with [`WatchError::Closed`].
//!
//! [`WatchError::Closed`]: crate::WatchError::Closed

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{Semaphore, oneshot};

use crate::core::Core;
use crate::{
    KeyValue, ListOptions, ListResult, Op, Revision, Store, StoreError, StoreOptions, Watcher,
};

mod disk;

use disk::{Pending, Write, io_error};

/// A store persisted in one redb file. Dropping it blocks until the queued commits finish
/// (milliseconds) and closes the file, so the same path can be reopened at once.
pub struct DurableStore {
    core: Arc<Core>,
    committer: Option<mpsc::Sender<Pending>>,
    thread: Option<JoinHandle<()>>,
    /// Bounds writes applied in memory but not yet committed.
    pending: Semaphore,
}

impl DurableStore {
    /// Opens (or creates) the store at `path` with default options.
    pub fn open(path: &Path) -> Result<DurableStore, StoreError> {
        Self::open_with_options(path, StoreOptions::default())
    }

    /// Opens (or creates) the store at `path`. Loads every key and the last committed revision;
    /// the history starts empty, so the compacted revision is the loaded revision.
    pub fn open_with_options(path: &Path, opts: StoreOptions) -> Result<DurableStore, StoreError> {
        let (db, kv, revision) = disk::open(path)?;
        let core = Arc::new(Core::new(&opts, kv, revision));
        let (tx, rx) = mpsc::channel();
        let thread_core = Arc::clone(&core);
        let thread = std::thread::Builder::new()
            .name("store-committer".to_string())
            .spawn(move || disk::run_committer(db, rx, thread_core))
            .map_err(io_error)?;
        Ok(DurableStore {
            core,
            committer: Some(tx),
            thread: Some(thread),
            pending: Semaphore::new(opts.max_pending_writes.max(1)),
        })
    }
}

impl Drop for DurableStore {
    fn drop(&mut self) {
        // Closing the queue lets the committer finish what is queued and exit.
        self.committer.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("store committer thread panicked");
        }
    }
}

#[async_trait]
impl Store for DurableStore {
    async fn txn(&self, ops: Vec<Op>) -> Result<Vec<KeyValue>, StoreError> {
        let _permit = self
            .pending
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let committer = self.committer.as_ref().ok_or(StoreError::Closed)?;
        let (results, ack) = self.core.txn(ops, false, |revision, events| {
            let (ack, rx) = oneshot::channel();
            let writes = events.iter().map(Write::from_event).collect();
            committer
                .send(Pending {
                    revision,
                    writes,
                    ack,
                })
                .map_err(|_| StoreError::Io("the committer thread is gone".to_string()))?;
            Ok(rx)
        })?;
        match ack.await {
            Ok(Ok(())) => Ok(results),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(StoreError::Closed),
        }
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
        self.core.refusing_writes()
    }

    async fn wait_for_revision(&self, revision: Revision) {
        self.core.wait_published(revision).await;
    }
}
