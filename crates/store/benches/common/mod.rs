//! Helpers both store benchmarks use: watch fan-out latency and percentiles.
//!
//! Start at [`fan_out_latencies`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use store::{Store, WatchMessage};

/// Writes `events` keys under `fan/`, one at a time, to `watchers` watchers of that prefix and
/// returns every receipt's latency from just before its write, sorted.
pub async fn fan_out_latencies(
    store: &Arc<dyn Store>,
    watchers: usize,
    events: usize,
    value: impl Fn(usize) -> Bytes,
) -> Vec<Duration> {
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::channel::<Instant>(watchers * 2);
    for _ in 0..watchers {
        let mut w = store
            .watch("fan/", store.current_revision())
            .await
            .expect("watch");
        let lat_tx = lat_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(WatchMessage::Event(_))) = w.next().await {
                if lat_tx.send(Instant::now()).await.is_err() {
                    break;
                }
            }
        });
    }
    let mut latencies = Vec::with_capacity(watchers * events);
    for i in 0..events {
        let start = Instant::now();
        store
            .create(&format!("fan/{i:04}"), value(i))
            .await
            .expect("create");
        for _ in 0..watchers {
            let at = lat_rx.recv().await.expect("receipt");
            latencies.push(at.saturating_duration_since(start));
        }
    }
    latencies.sort_unstable();
    latencies
}

/// The `p`th percentile of `sorted` (0 for an empty slice).
pub fn pct(sorted: &[Duration], p: usize) -> Duration {
    let idx = (sorted.len().saturating_sub(1) * p) / 100;
    sorted.get(idx).copied().unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
