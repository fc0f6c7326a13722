//! Event expiry, upstream `--event-ttl` (1 h): an Event is deleted once its last activity
//! (lastTimestamp, series.lastObservedTime, eventTime or creation) is older than the TTL.
//! Upstream attaches an etcd lease to every Event write; here a task sweeps the events prefix.
//!
//! Start at [`expired`] (pure) and [`spawn`] (the sweeping task).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use store::{KeyValue, ListOptions, SharedStore};

use crate::table::format::timestamp;

/// Upstream kube-apiserver `--event-ttl` default.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);
/// Keys read per list page while sweeping (bounds the sweep's memory).
const PAGE: usize = 500;
/// The prefix core/v1 Events are stored under.
const PREFIX: &str = "/registry/core/events/";

/// The latest activity time of a stored Event.
pub fn last_activity(obj: &Value) -> Option<DateTime<Utc>> {
    let at = |path: &[&str]| {
        let mut cur = obj;
        for p in path {
            cur = cur.get(p)?;
        }
        timestamp(cur.as_str()?)
    };
    [
        at(&["lastTimestamp"]),
        at(&["series", "lastObservedTime"]),
        at(&["eventTime"]),
        at(&["metadata", "creationTimestamp"]),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// The `(key, mod_revision)` of every Event in `items` whose last activity is older than
/// `ttl` at `now` (an undecodable or undated one counts as expired).
pub fn expired(items: &[KeyValue], now: DateTime<Utc>, ttl: Duration) -> Vec<(String, u64)> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    items
        .iter()
        .filter(|kv| {
            serde_json::from_slice::<Value>(&kv.value)
                .ok()
                .and_then(|v| last_activity(&v))
                .is_none_or(|t| now - t > ttl)
        })
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect()
}

/// One sweep: delete expired Events (compare-and-swap on their revision, so one written again
/// meanwhile stays). Returns how many were deleted.
pub async fn sweep(store: &SharedStore, now: DateTime<Utc>, ttl: Duration) -> usize {
    let mut deleted = 0;
    let mut start_after: Option<String> = None;
    loop {
        let opts = ListOptions {
            limit: Some(PAGE),
            start_after: start_after.clone(),
            ..ListOptions::default()
        };
        let Ok(page) = store.list(PREFIX, opts).await else {
            return deleted;
        };
        for (key, rev) in expired(&page.items, now, ttl) {
            if store.delete(&key, Some(rev)).await.is_ok() {
                deleted += 1;
            }
        }
        match page.items.last() {
            Some(last) if page.remaining > 0 => start_after = Some(last.key.clone()),
            _ => return deleted,
        }
    }
}

/// Sweep every `min(ttl / 10, 60 s)` until the process ends.
pub fn spawn(store: SharedStore, ttl: Duration) -> tokio::task::JoinHandle<()> {
    let every = (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let n = sweep(&store, Utc::now(), ttl).await;
            if n > 0 {
                tracing::debug!(deleted = n, "expired events removed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(key: &str, rev: u64, v: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: bytes::Bytes::from(serde_json::to_vec(&v).unwrap()),
            create_revision: rev,
            mod_revision: rev,
        }
    }

    #[test]
    fn expiry_follows_the_latest_activity() {
        let now = timestamp("2026-12-05T01:00:00Z").unwrap();
        let ttl = Duration::from_secs(3600);
        let items = vec![
            kv("a", 1, json!({"lastTimestamp": "2026-12-04T23:59:00Z"})),
            kv("b", 2, json!({"lastTimestamp": "2026-12-05T00:30:00Z"})),
            kv(
                "c",
                3,
                json!({"lastTimestamp": "2026-12-04T20:00:00Z",
                       "series": {"lastObservedTime": "2026-12-05T00:59:00.000000Z"}}),
            ),
            kv("d", 4, json!({"eventTime": "2026-12-04T23:00:00.000000Z"})),
            kv(
                "e",
                5,
                json!({"metadata": {"creationTimestamp": "2026-12-05T00:10:00Z"}}),
            ),
        ];
        assert_eq!(
            expired(&items, now, ttl),
            vec![("a".to_string(), 1), ("d".to_string(), 4)]
        );
    }
}
