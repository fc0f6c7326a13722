//! Helpers shared by the integration tests: store constructors and watcher reading with a hang
//! guard (the guard only turns a hang into a failure; no test asserts on timing).

#![allow(dead_code)]

pub mod etcd;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use store::{
    DurableStore, EtcdStore, Event, KeyValue, MemStore, Revision, Store, WatchError, WatchMessage,
    Watcher,
};

/// How long a test waits for a message that must come before calling it a hang.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The next message, failing the test if the watch hangs.
pub async fn next_msg(w: &mut Watcher) -> Option<Result<WatchMessage, WatchError>> {
    tokio::time::timeout(HANG_GUARD, w.next())
        .await
        .expect("watch hung")
}

/// The next message, which must be an event.
pub async fn next_event(w: &mut Watcher) -> Event {
    match next_msg(w).await {
        Some(Ok(WatchMessage::Event(e))) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Every key/value pair under `prefix` at the current revision.
pub async fn snapshot<S: Store>(s: &S, prefix: &str) -> Vec<KeyValue> {
    s.list(prefix, Default::default())
        .await
        .expect("list")
        .items
}

/// A store under test. Compaction is the one behaviour that needs a backend-specific step: the
/// embedded stores compact by history capacity on their own, etcd when asked (as the API
/// server's compactor asks it).
pub trait Backend: Store {
    /// Compacts history up to `revision` (etcd); the embedded stores ignore it.
    fn compact_history(&self, revision: Revision) -> impl Future<Output = ()> + Send;
}

impl Backend for MemStore {
    async fn compact_history(&self, _revision: Revision) {}
}

impl Backend for DurableStore {
    async fn compact_history(&self, _revision: Revision) {}
}

impl Backend for EtcdStore {
    async fn compact_history(&self, revision: Revision) {
        self.compact(revision).await.expect("compact");
    }
}
