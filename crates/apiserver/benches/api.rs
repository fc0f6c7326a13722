//! API-level benchmarks over real HTTP on loopback, against the durable store and then (when
//! `etcd` is installed) a 3-member etcd cluster on 127.0.0.1, in one run:
//! Service creates/s from 16 clients, list of 10,000 Services (JSON and kubectl's Table), and
//! the latency of one change fanned out to 1,000 watch streams.
//!
//! The Table list is also timed at 1,000 / 2,000 / 5,000 Services while they are created.
//!
//! Run: `cargo bench -p apiserver --bench api`; `-- table` times only the lists on the
//! durable store (no watch fan-out, no etcd).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SERVICES: usize = 10_000;
const WRITERS: usize = 16;
const WATCHERS: usize = 1_000;

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    addr: String,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).ok();
        let (r, w) = s.into_split();
        Conn {
            r: BufReader::new(r),
            w,
            addr: addr.to_string(),
        }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        accept: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.w.write_all(head.as_bytes()).await.expect("write");
        self.w.write_all(body).await.expect("write body");
        let mut status = String::new();
        self.r.read_line(&mut status).await.expect("status line");
        let code = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0; len];
        self.r.read_exact(&mut buf).await.expect("body");
        (code, buf)
    }
}

fn service(i: usize) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"svc-{i}","labels":{{"app":"a{}"}}}},"spec":{{"selector":{{"app":"a{}"}},"ports":[{{"name":"http","port":80,"targetPort":8080}}]}}}}"#,
        i % 100,
        i % 100
    )
    .into_bytes()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Create Services `from..to` from `WRITERS` clients.
async fn create_services(addr: &str, from: usize, to: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(from));
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let next = Arc::clone(&next);
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr).await;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= to {
                    break;
                }
                let (code, body) = c
                    .request(
                        "POST",
                        "/api/v1/namespaces/default/services",
                        "application/json",
                        &service(i),
                    )
                    .await;
                assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
}

async fn time_lists(addr: &str, accept: &str) -> (f64, usize) {
    let mut c = Conn::open(addr).await;
    let mut ms = Vec::new();
    let mut size = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let (code, body) = c.request("GET", "/api/v1/services", accept, b"").await;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(code, 200);
        size = body.len();
    }
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), size)
}

/// Open `WATCHERS` watch streams, change one Service, and time its arrival on each stream.
async fn fan_out(addr: &str) -> (f64, f64, f64) {
    let mut c = Conn::open(addr).await;
    // Watch from the current revision (a list's), as an informer does after its list.
    let (_, body) = c
        .request(
            "GET",
            "/api/v1/namespaces/default/services?limit=1",
            "application/json",
            b"",
        )
        .await;
    let list: serde_json::Value = serde_json::from_slice(&body).expect("list");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(WATCHERS);
    let (got_tx, mut got_rx) = tokio::sync::mpsc::channel::<Instant>(WATCHERS);
    for _ in 0..WATCHERS {
        let addr = addr.to_string();
        let rv = rv.clone();
        let ready = ready_tx.clone();
        let got = got_tx.clone();
        tokio::spawn(async move {
            let s = TcpStream::connect(&addr).await.expect("connect");
            let (r, mut w) = s.into_split();
            let path = format!(
                "/api/v1/namespaces/default/services?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Dsvc-0"
            );
            let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            w.write_all(head.as_bytes()).await.expect("watch");
            let mut r = BufReader::new(r);
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
            }
            let _ = ready.send(()).await;
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line.contains("MODIFIED") {
                    let _ = got.send(Instant::now()).await;
                    return;
                }
            }
        });
    }
    for _ in 0..WATCHERS {
        ready_rx.recv().await.expect("watcher ready");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let patch = br#"{"metadata":{"labels":{"touched":"yes"}}}"#;
    let sent = Instant::now();
    let head = format!(
        "PATCH /api/v1/namespaces/default/services/svc-0 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/merge-patch+json\r\nContent-Length: {}\r\n\r\n",
        patch.len()
    );
    c.w.write_all(head.as_bytes()).await.expect("patch");
    c.w.write_all(patch).await.expect("patch body");
    let mut ms = Vec::new();
    for _ in 0..WATCHERS {
        let at = tokio::time::timeout(Duration::from_secs(30), got_rx.recv())
            .await
            .expect("fan-out")
            .expect("event");
        ms.push(at.duration_since(sent).as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let durable = store::DurableStore::open(&dir.path().join("state.redb")).expect("store");
        let table_only = std::env::args().any(|a| a == "table");
        run("durable store", Arc::new(durable), table_only).await;
        if table_only {
            return;
        }
        match store::testing::EtcdCluster::start(3) {
            Ok(cluster) => {
                let mut o = store::EtcdOptions::new(cluster.client_urls());
                o.compaction_interval = Duration::ZERO;
                let etcd = store::EtcdStore::connect(o).await.expect("connect to etcd");
                run("etcd, 3 members", Arc::new(etcd), false).await;
            }
            Err(e) => println!("etcd figures skipped: {e}"),
        }
    });
}

/// Every figure against one API server on `store`.
async fn run(name: &str, store: store::SharedStore, table_only: bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let cfg = apiserver::Config {
        advertise_address: listener.local_addr().expect("addr"),
        ..Default::default()
    };
    let server = apiserver::Server::new(store, cfg).await.expect("server");
    tokio::spawn(server.serve(listener));

    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let mut created = 0;
    let mut creating = Duration::ZERO;
    for size in [1_000, 2_000, 5_000, SERVICES] {
        let start = Instant::now();
        create_services(&addr, created, size).await;
        creating += start.elapsed();
        created = size;
        let (json_ms, json_bytes) = time_lists(&addr, "application/json").await;
        println!(
            "[{name}] list {size} Services as JSON: median {json_ms:.1} ms ({:.1} MiB)",
            json_bytes as f64 / 1048576.0
        );
        let (table_ms, table_bytes) = time_lists(&addr, table).await;
        println!(
            "[{name}] list {size} Services as a Table (kubectl get): median {table_ms:.1} ms ({:.1} MiB)",
            table_bytes as f64 / 1048576.0
        );
    }
    let rate = SERVICES as f64 / creating.as_secs_f64();
    println!("[{name}] create {SERVICES} Services, {WRITERS} HTTP clients: {rate:.0} creates/s");
    if table_only {
        return;
    }
    let (p50, p99, max) = fan_out(&addr).await;
    println!(
        "[{name}] one change to {WATCHERS} watch streams: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
}
