//! API-level benchmarks over real HTTP on loopback, against the durable store and then (when
//! `etcd` is installed) a 3-member etcd cluster on 127.0.0.1, in one run:
//! Service creates/s from 16 clients, list of 10,000 Services (JSON and kubectl's Table), and
//! the latency of one change fanned out to 1,000 watch streams.
//!
//! The Table list is also timed at 1,000 / 2,000 / 5,000 Services while they are created.
//!
//! Run: `cargo bench -p apiserver --bench api`; `-- table` times only the lists on the
//! durable store (no watch fan-out, no etcd); `-- fanout` times one change to 100 / 1,000 /
//! 5,000 watch streams with the readers in this process and in a separate one
//! (`-- fanout external`: only the separate one), each figure with the load average before it.

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

/// Wall-clock time in ns: comparable between the benchmark and its reader process.
fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Open `n` watch streams on `svc-0` from `rv`; each sends on `ready` once its response head
/// is in, and the arrival time (ns) of the first MODIFIED on `got`.
fn spawn_readers(
    addr: &str,
    rv: &str,
    n: usize,
) -> (
    tokio::sync::mpsc::Receiver<()>,
    tokio::sync::mpsc::Receiver<u128>,
) {
    let (ready_tx, ready_rx) = tokio::sync::mpsc::channel::<()>(n);
    let (got_tx, got_rx) = tokio::sync::mpsc::channel::<u128>(n);
    for _ in 0..n {
        let addr = addr.to_string();
        let rv = rv.to_string();
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
                    let _ = got.send(now_ns()).await;
                    return;
                }
            }
        });
    }
    (ready_rx, got_rx)
}

/// The reader process (`api readers ADDR RV N`): prints `ready` once all `N` streams are
/// open, then one arrival time (ns) per stream.
async fn reader_process(addr: &str, rv: &str, n: usize) {
    let (mut ready, mut got) = spawn_readers(addr, rv, n);
    for _ in 0..n {
        ready.recv().await.expect("watcher ready");
    }
    println!("ready");
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(30), got.recv()).await {
            Ok(Some(at)) => println!("{at}"),
            _ => return,
        }
    }
    // Stay until the benchmark has read this process's CPU time and kills it.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Open `n` watch streams (in this process, or in a child process when `external`, so the
/// readers' CPU is told apart from the server's), change one Service, and time its arrival
/// on each stream: (p50, p99, max) in ms.
/// One fan-out's figures: arrival times after the write was sent (ms) and the CPU time the
/// server's process (and the reader process, when separate) spent from the write to the last
/// arrival.
struct FanOut {
    p50: f64,
    p99: f64,
    max: f64,
    /// The first arrival: the write's own latency (fsync) plus one delivery.
    first: f64,
    server_cpu_ms: f64,
    /// The server's part of `server_cpu_ms` spent in the kernel (10 ms ticks).
    server_sys_ms: f64,
    readers_cpu_ms: f64,
}

/// Kernel CPU time (ms) of this process so far: `stime` of /proc/self/stat (clock ticks, 100/s).
fn sys_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis: state is field 3, stime field 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .nth(12)
        .and_then(|t| t.parse::<f64>().ok())
        .map_or(0.0, |t| t * 10.0)
}

/// CPU time (ns) of every live thread of process `pid` (`self` or a number), from schedstat.
fn cpu_ns(pid: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

async fn fan_out(addr: &str, n: usize, external: bool) -> FanOut {
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
    let mut child = None;
    let mut got_rx = if external {
        let mut cmd = std::process::Command::new(std::env::current_exe().expect("exe"));
        cmd.args(["readers", addr, &rv, &n.to_string()]);
        cmd.stdout(std::process::Stdio::piped());
        let mut proc = cmd.spawn().expect("reader process");
        let out = proc.stdout.take().expect("stdout");
        child = Some(proc);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let (tx, rx) = tokio::sync::mpsc::channel::<u128>(n);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready_tx.send(());
                } else if let Ok(at) = line.parse() {
                    let _ = tx.blocking_send(at);
                }
            }
        });
        tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)))
            .await
            .expect("join")
            .expect("reader process ready");
        rx
    } else {
        let (mut ready_rx, got_rx) = spawn_readers(addr, &rv, n);
        for _ in 0..n {
            ready_rx.recv().await.expect("watcher ready");
        }
        got_rx
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let patch = format!(
        r#"{{"metadata":{{"labels":{{"touched":"t{}"}}}}}}"#,
        now_ns()
    );
    let readers_pid = child
        .as_ref()
        .map_or("self".to_string(), |p: &std::process::Child| {
            p.id().to_string()
        });
    let (cpu0, rcpu0, sys0) = (cpu_ns("self"), cpu_ns(&readers_pid), sys_ms());
    let sent = now_ns();
    let head = format!(
        "PATCH /api/v1/namespaces/default/services/svc-0 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/merge-patch+json\r\nContent-Length: {}\r\n\r\n",
        patch.len()
    );
    c.w.write_all(head.as_bytes()).await.expect("patch");
    c.w.write_all(patch.as_bytes()).await.expect("patch body");
    let mut ms = Vec::new();
    for _ in 0..n {
        let at = tokio::time::timeout(Duration::from_secs(30), got_rx.recv())
            .await
            .expect("fan-out")
            .expect("event");
        ms.push(at.saturating_sub(sent) as f64 / 1e6);
    }
    let (cpu1, rcpu1, sys1) = (cpu_ns("self"), cpu_ns(&readers_pid), sys_ms());
    if let Some(mut p) = child {
        let _ = p.kill();
        let _ = p.wait();
    }
    ms.sort_by(f64::total_cmp);
    FanOut {
        p50: percentile(&ms, 0.5),
        p99: percentile(&ms, 0.99),
        max: ms[ms.len() - 1],
        first: ms[0],
        server_cpu_ms: cpu1.saturating_sub(cpu0) as f64 / 1e6,
        server_sys_ms: sys1 - sys0,
        readers_cpu_ms: if external {
            rcpu1.saturating_sub(rcpu0) as f64 / 1e6
        } else {
            0.0
        },
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("readers") && args.len() == 5 {
        let n = args[4].parse().expect("reader count");
        rt.block_on(reader_process(&args[2], &args[3], n));
        return;
    }
    let mode = if args.iter().any(|a| a == "table") {
        Mode::Table
    } else if args.iter().any(|a| a == "fanout") {
        Mode::FanOut
    } else {
        Mode::All
    };
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let durable = store::DurableStore::open(&dir.path().join("state.redb")).expect("store");
        if mode == Mode::FanOut {
            let external_only = args.iter().any(|a| a == "external");
            fan_out_growth(Arc::new(durable), external_only).await;
            return;
        }
        run("durable store", Arc::new(durable), mode == Mode::Table).await;
        if mode == Mode::Table {
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

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    All,
    Table,
    FanOut,
}

async fn start_server(store: store::SharedStore) -> String {
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
    addr
}

/// `-- fanout`: one change to 100 / 1,000 / 5,000 watch streams, readers in this process and
/// in a separate one, on the durable store with 1,000 Services.
async fn fan_out_growth(store: store::SharedStore, external_only: bool) {
    let addr = start_server(store).await;
    create_services(&addr, 0, 1_000).await;
    for n in [100, 1_000, 5_000] {
        for external in [false, true] {
            if external_only && !external {
                continue;
            }
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let load = load.split_whitespace().next().unwrap_or("?").to_string();
            let f = fan_out(&addr, n, external).await;
            let readers = if external {
                "separate process"
            } else {
                "in process"
            };
            println!(
                "one change to {n} watch streams (readers {readers}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; first {:.1} ms, p99 - first {:.1} ms; CPU server {:.1} ms ({:.0} ms in the kernel), readers {:.1} ms (load average {load})",
                f.p50,
                f.p99,
                f.max,
                f.first,
                f.p99 - f.first,
                f.server_cpu_ms,
                f.server_sys_ms,
                f.readers_cpu_ms
            );
        }
    }
}

/// Every figure against one API server on `store`.
async fn run(name: &str, store: store::SharedStore, table_only: bool) {
    let addr = start_server(store).await;
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
    let f = fan_out(&addr, WATCHERS, false).await;
    println!(
        "[{name}] one change to {WATCHERS} watch streams: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        f.p50, f.p99, f.max
    );
}
