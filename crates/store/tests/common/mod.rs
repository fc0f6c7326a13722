//! Helpers shared by the integration tests: store constructors and watcher reading with a hang
//! guard (the guard only turns a hang into a failure; no test asserts on timing).

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use store::{Event, KeyValue, Store, WatchError, WatchMessage, Watcher};

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
