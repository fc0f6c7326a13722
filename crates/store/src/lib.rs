//! Versioned, watchable key-value store: the ground the API server stands on.
//!
//! Start at [`Store`]: one global revision that every write increments (an object's
//! `resourceVersion` is the revision of its last write), compare-and-swap writes, multi-key
//! transactions, consistent lists at a revision with paging, and watches from a revision with a
//! bounded history (a watch or list from a compacted revision fails with
//! [`StoreError::Compacted`], which the API server turns into 410 Gone).
//!
//! The store knows nothing about Kubernetes objects: keys are strings, values are bytes. That
//! keeps the trait small enough for a real etcd backend (revisions, watch and transactions map
//! one to one onto etcd's).
//!
//! Backends: [`MemStore`] (tests, the simulator), [`DurableStore`] (redb on disk, group
//! commit: a write is acknowledged only once it is fsynced, and concurrent writers share fsyncs)
//! and [`EtcdStore`] (a real etcd v3 cluster over gRPC).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

mod core;
mod durable;
mod etcd;
mod memory;
#[cfg(feature = "testing")]
pub mod testing;
mod watchers;

pub use durable::DurableStore;
pub use etcd::{
    COMPACT_REV_KEY, DEFAULT_COMPACTION_INTERVAL, DEFAULT_ETCD_PREFIX, EtcdOptions, EtcdStore,
    MemberStatus,
};
pub use memory::MemStore;

/// A store revision. 0 means "nothing written yet"; the first write is revision 1.
pub type Revision = u64;

/// Default number of events kept for watches and lists at older revisions. Older events are
/// compacted; etcd's API-server default is a 5 minute compaction interval, we bound by count.
pub const DEFAULT_HISTORY_CAPACITY: usize = 100_000;

/// Default number of messages a watcher may fall behind before it is dropped with
/// [`WatchError::TooSlow`].
pub const DEFAULT_WATCHER_CAPACITY: usize = 1024;

/// Default bound on durable writes accepted but not yet committed (writers beyond it wait).
pub const DEFAULT_MAX_PENDING_WRITES: usize = 16_384;

/// Tuning for either backend. `Default` gives the `DEFAULT_*` constants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Events kept for watch replay and lists at older revisions (see [`Store::compacted_revision`]).
    pub history_capacity: usize,
    /// Messages a watcher may fall behind before it is dropped with [`WatchError::TooSlow`].
    pub watcher_capacity: usize,
    /// [`DurableStore`] only: writes applied in memory but not yet committed to disk; further
    /// writers wait for room.
    pub max_pending_writes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            history_capacity: DEFAULT_HISTORY_CAPACITY,
            watcher_capacity: DEFAULT_WATCHER_CAPACITY,
            max_pending_writes: DEFAULT_MAX_PENDING_WRITES,
        }
    }
}

/// One stored key with its value and the revisions that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (etcd's `create_revision`).
    pub create_revision: Revision,
    /// Revision of the last write to this key (etcd's `mod_revision`; Kubernetes'
    /// `resourceVersion`). For a delete event: the revision of the delete.
    pub mod_revision: Revision,
}

/// One operation of a transaction. Every operation's precondition must hold or the whole
/// transaction fails and changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create `key`; fails with [`StoreError::AlreadyExists`] if it exists.
    Create { key: String, value: Bytes },
    /// Replace `key`'s value; fails with [`StoreError::NotFound`] if it does not exist and with
    /// [`StoreError::Conflict`] if `expected` is set and differs from its `mod_revision`.
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    /// Delete `key`; same preconditions as `Update`.
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// What a list returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list is consistent at.
    pub revision: Revision,
    /// How many more keys under the prefix follow the last returned item at `revision`
    /// (0: the list is complete).
    pub remaining: u64,
}

/// How to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// List the state as of this revision (must be >= the compacted revision and
    /// <= the current one). `None`: the current state.
    pub revision: Option<Revision>,
    /// Return at most this many items. `None` or `Some(0)`: all.
    pub limit: Option<usize>,
    /// Start strictly after this key (paging). Must lie under the prefix.
    pub start_after: Option<String>,
}

/// The kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change, delivered to watchers in revision order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The new state. For `Deleted`: the last value, with `mod_revision` = the delete's revision.
    pub kv: KeyValue,
    /// The state before the change (`None` for `Added`).
    pub prev: Option<KeyValue>,
}

/// What a watcher receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    Event(Event),
    /// Every event up to and including this revision that matches the watch has been
    /// delivered (the API server turns this into a BOOKMARK).
    Progress(Revision),
}

/// Why a store call failed. The API server maps each to a Kubernetes `Status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key}: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (current: {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("store is closed")]
    Closed,
    /// The backing cluster cannot be reached or has no quorum (the API server answers 503).
    #[error("{0}")]
    Unavailable(String),
    /// The request did not complete in time (the API server answers 504).
    #[error("{0}")]
    Timeout(String),
}

/// Why a watch ended. After any of these the watcher should re-watch from the last revision it
/// saw, or relist on `Compacted`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("watcher fell behind by more than {capacity} messages and was dropped")]
    TooSlow { capacity: usize },
    #[error("store is closed")]
    Closed,
    /// The backing cluster was lost; re-watch once it answers again.
    #[error("watch lost: {0}")]
    Unavailable(String),
    /// The history the watch needed was compacted; relist.
    #[error("the watched revision has been compacted (oldest available: {compacted})")]
    Compacted { compacted: Revision },
}

/// A live watch: events after the revision it started from, for keys under its prefix.
/// Bounded: a watcher that does not keep up is ended with [`WatchError::TooSlow`].
pub struct Watcher {
    rx: tokio::sync::mpsc::Receiver<Result<WatchMessage, WatchError>>,
}

impl Watcher {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<Result<WatchMessage, WatchError>>) -> Self {
        Watcher { rx }
    }

    /// The next message; `None` once the store has shut the watch down.
    pub async fn next(&mut self) -> Option<Result<WatchMessage, WatchError>> {
        self.rx.recv().await
    }

    /// [`Watcher::next`] for a hand-written `Stream` or body: `Pending` registers `cx`'s waker,
    /// woken by the next message (the API server polls a watch from the HTTP connection's task,
    /// so one event costs that task one wake-up).
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<WatchMessage, WatchError>>> {
        self.rx.poll_recv(cx)
    }
}

/// The store every backend implements. All methods are safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Apply `ops` atomically at one new revision. `ops` must be non-empty with distinct,
    /// non-empty keys ([`StoreError::Invalid`] otherwise); if any op's precondition fails, the
    /// error names the first failing op and nothing changes (the revision does not advance).
    /// Returns, per op, the resulting key-value (for `Delete`: the deleted value with
    /// `mod_revision` = the new revision). Returns only once the write is durable, for durable
    /// backends.
    async fn txn(&self, ops: Vec<Op>) -> Result<Vec<KeyValue>, StoreError>;

    /// The current value of `key` (for durable backends: as of the latest durable revision).
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys under `prefix`, in key order, consistent at one revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError>;

    /// Watch keys under `prefix` for changes with revision > `after`. Fails with
    /// [`StoreError::Compacted`] if events after `after` are no longer kept, and with
    /// [`StoreError::FutureRevision`] if `after` is beyond the current revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError>;

    /// The latest committed revision (durable backends: the latest durable one). Reads, lists
    /// and watches all answer at or up to it.
    fn current_revision(&self) -> Revision;

    /// The oldest revision a watch may start after (older events were compacted).
    fn compacted_revision(&self) -> Revision;

    /// Returns once reads answer at `revision` or later. A compare-and-swap may fail against a
    /// write that is applied but not yet readable (a durable store publishes a write only once
    /// it is on disk); a writer that lost to revision `r` waits for `r` before re-reading.
    async fn wait_for_revision(&self, revision: Revision);

    /// A cheap, bounded check that the store answers (the API server's `etcd` health check).
    /// Wrappers must forward it.
    async fn health(&self) -> Result<(), StoreError>;

    /// Send [`WatchMessage::Progress`] with the current revision to every watcher whose
    /// events up to it have all been queued.
    fn request_progress(&self);

    /// Convenience: create one key.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let mut out = self
            .txn(vec![Op::Create {
                key: key.to_string(),
                value,
            }])
            .await?;
        Ok(out.remove(0))
    }

    /// Convenience: update one key, optionally only if its `mod_revision` is `expected`.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let mut out = self
            .txn(vec![Op::Update {
                key: key.to_string(),
                value,
                expected,
            }])
            .await?;
        Ok(out.remove(0))
    }

    /// Convenience: delete one key, optionally only if its `mod_revision` is `expected`.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let mut out = self
            .txn(vec![Op::Delete {
                key: key.to_string(),
                expected,
            }])
            .await?;
        Ok(out.remove(0))
    }
}

/// A shared handle to any store.
pub type SharedStore = Arc<dyn Store>;
