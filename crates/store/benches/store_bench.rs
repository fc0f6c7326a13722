//! Store benchmarks (`cargo bench -p store`): durable acknowledged writes/s with 1 and 16
//! writers, fan-out latency of one event to 1,000 watchers, and list latency over 10,000 keys.
//! A plain main that prints figures; nothing here asserts.

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::{fan_out_latencies, ms, pct};
use store::{DurableStore, ListOptions, MemStore, Store};

const VALUE: &[u8] = &[b'x'; 256];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        for (writers, per_writer) in [(1, 500), (16, 1000), (64, 250)] {
            let path = dir.path().join(format!("w{writers}.redb"));
            let store = Arc::new(DurableStore::open(&path).expect("open"));
            durable_writes(store, writers, per_writer).await;
        }
        fan_out("mem", Arc::new(MemStore::new())).await;
        let path = dir.path().join("fanout.redb");
        fan_out(
            "durable",
            Arc::new(DurableStore::open(&path).expect("open")),
        )
        .await;
        list_10k().await;
    });
}

/// `writers` tasks each create `per_writer` keys; prints acknowledged writes per second.
async fn durable_writes(store: Arc<DurableStore>, writers: usize, per_writer: usize) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let key = format!("bench/{w:02}/{i:06}");
                    store
                        .create(&key, Bytes::from_static(VALUE))
                        .await
                        .expect("create");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let secs = start.elapsed().as_secs_f64();
    let total = writers * per_writer;
    println!(
        "durable writes, {writers:>2} writer(s): {total} acknowledged in {secs:.2} s = {:.0} writes/s",
        total as f64 / secs
    );
}

/// One event at a time to 1,000 watchers; latency from just before the write to each receipt.
async fn fan_out(name: &str, store: Arc<dyn Store>) {
    const WATCHERS: usize = 1000;
    const EVENTS: usize = 50;
    let latencies =
        fan_out_latencies(&store, WATCHERS, EVENTS, |_| Bytes::from_static(VALUE)).await;
    println!(
        "fan-out to {WATCHERS} watchers ({name}, {EVENTS} events): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(&latencies, 50)),
        ms(pct(&latencies, 99)),
        ms(pct(&latencies, 100))
    );
}

/// Lists 10,000 keys at the current revision and at one 1,000 writes older.
async fn list_10k() {
    let store = MemStore::new();
    for i in 0..10_000 {
        store
            .create(&format!("list/{i:06}"), Bytes::from_static(VALUE))
            .await
            .expect("create");
    }
    let old = store.current_revision();
    for i in 0..1000 {
        store
            .update(
                &format!("list/{:06}", i * 10),
                Bytes::from_static(b"new"),
                None,
            )
            .await
            .expect("update");
    }
    for (label, revision) in [("current", None), ("1,000 writes back", Some(old))] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            let opts = ListOptions {
                revision,
                ..Default::default()
            };
            let res = store.list("list/", opts).await.expect("list");
            times.push(start.elapsed());
            assert_eq!(res.items.len(), 10_000);
        }
        times.sort_unstable();
        println!(
            "list of 10,000 keys ({label}): median {:.2} ms, max {:.2} ms",
            ms(pct(&times, 50)),
            ms(pct(&times, 100))
        );
    }
}
