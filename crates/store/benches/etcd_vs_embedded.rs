//! The embedded durable store against a 3-member etcd cluster on 127.0.0.1, in one run on one
//! machine (`cargo bench -p store --bench etcd_vs_embedded`): acknowledged writes/s with 16
//! writers, a list of 10,000 stored Services, and the p99 latency of one change reaching 1,000
//! watchers. All figures are at the store level (the API server adds the same HTTP work on top
//! of either backend). Prints figures and ratios; nothing here asserts. Needs `etcd` on PATH
//! (Debian etcd-server); without it only the embedded figures are printed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{fan_out_latencies, ms, pct};
use store::testing::EtcdCluster;
use store::{DurableStore, EtcdOptions, EtcdStore, ListOptions, Store};

const WRITERS: usize = 16;
const WRITES_PER_WRITER: usize = 400;
const SERVICES: usize = 10_000;
const WATCHERS: usize = 1000;
const EVENTS: usize = 30;

/// What the API server stores for a small ClusterIP Service (about 600 bytes).
fn service(i: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"creationTimestamp":"2026-01-01T00:00:00Z","labels":{{"app":"svc-{i}"}},"name":"svc-{i:05}","namespace":"bench","uid":"6f1c2d3e-0000-4000-8000-{i:012}"}},"spec":{{"clusterIP":"10.96.{}.{}","clusterIPs":["10.96.{}.{}"],"internalTrafficPolicy":"Cluster","ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","ports":[{{"name":"http","port":80,"protocol":"TCP","targetPort":8080}}],"selector":{{"app":"svc-{i}"}},"sessionAffinity":"None","type":"ClusterIP"}},"status":{{"loadBalancer":{{}}}}}}"#,
        i / 250,
        i % 250 + 1,
        i / 250,
        i % 250 + 1
    ))
}

/// One backend's figures.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    writes_per_s: f64,
    list_median: Duration,
    fan_out_p50: Duration,
    fan_out_p99: Duration,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let embedded: Arc<dyn Store> =
            Arc::new(DurableStore::open(&dir.path().join("bench.redb")).expect("open"));
        let e = run("embedded (redb)", embedded).await;
        let cluster = match EtcdCluster::start(3) {
            Ok(c) => c,
            Err(err) => {
                println!("etcd figures skipped: {err}");
                return;
            }
        };
        let mut o = EtcdOptions::new(cluster.client_urls());
        o.root = String::new();
        o.prefix = "/bench/".into();
        o.compaction_interval = Duration::ZERO;
        let etcd: Arc<dyn Store> = Arc::new(EtcdStore::connect(o).await.expect("connect"));
        let x = run("etcd, 3 members", etcd).await;
        println!(
            "ratios (embedded vs etcd; >= 1.0 means the embedded store is at least as good): writes/s {:.2}x, list {:.2}x, fan-out p99 {:.2}x",
            e.writes_per_s / x.writes_per_s,
            x.list_median.as_secs_f64() / e.list_median.as_secs_f64(),
            x.fan_out_p99.as_secs_f64() / e.fan_out_p99.as_secs_f64()
        );
        drop(cluster);
    });
}

async fn run(name: &str, store: Arc<dyn Store>) -> Figures {
    let mut f = Figures {
        writes_per_s: writes(&store).await,
        ..Figures::default()
    };
    f.list_median = list(&store).await;
    (f.fan_out_p50, f.fan_out_p99) = fan_out(&store).await;
    println!(
        "{name}: {:.0} acknowledged writes/s ({WRITERS} writers); list of {SERVICES} Services: median {:.1} ms; one change to {WATCHERS} watchers: p50 {:.2} ms, p99 {:.2} ms",
        f.writes_per_s,
        ms(f.list_median),
        ms(f.fan_out_p50),
        ms(f.fan_out_p99)
    );
    f
}

/// 16 writers each create `WRITES_PER_WRITER` Services; acknowledged writes per second.
async fn writes(store: &Arc<dyn Store>) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                for i in 0..WRITES_PER_WRITER {
                    let key = format!("writes/{w:02}/{i:06}");
                    store.create(&key, service(i)).await.expect("create");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    (WRITERS * WRITES_PER_WRITER) as f64 / start.elapsed().as_secs_f64()
}

/// Stores 10,000 Services (16 writers), then lists them 20 times; the median.
async fn list(store: &Arc<dyn Store>) -> Duration {
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                for i in (w..SERVICES).step_by(WRITERS) {
                    let key = format!("services/bench/svc-{i:05}");
                    store.create(&key, service(i)).await.expect("create");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let res = store
            .list("services/", ListOptions::default())
            .await
            .expect("list");
        times.push(start.elapsed());
        assert_eq!(res.items.len(), SERVICES);
    }
    times.sort_unstable();
    pct(&times, 50)
}

/// One change at a time to 1,000 watchers: (p50, p99) latency to each receipt.
async fn fan_out(store: &Arc<dyn Store>) -> (Duration, Duration) {
    let latencies = fan_out_latencies(store, WATCHERS, EVENTS, service).await;
    (pct(&latencies, 50), pct(&latencies, 99))
}
