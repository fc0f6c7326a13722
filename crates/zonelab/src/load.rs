//! `zonelab load`: an open-loop HTTP client that records every request as one JSON line —
//! when it started and ended, how it ended (`ok|timeout|refused|reset|error`), which pod, node
//! and zone answered, and whether it used a new or a reused connection.
//!
//! Start at [`run`]. Requests start on a fixed schedule (rate N/s) whatever earlier ones do, so
//! a stall shows up as failures, not as a slower client. With several `--target`s, requests
//! go round-robin over them as a client of a DNS name would ([`dns`]).

pub mod dns;

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use lab::{ConnKind, Outcome};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::clock::epoch_ms;
use crate::flags::parse_duration;

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// `http://HOST:PORT[/path]` (a ClusterIP, a pod IP, anything reachable). Repeatable: the
    /// addresses a DNS name resolves to (a load balancer's nodes), used round-robin.
    #[arg(long, required = true)]
    pub target: Vec<String>,
    /// With several targets: the load balancer's status file (`zonelab balancer
    /// --status-file`); the round-robin then skips the LB nodes it reports unhealthy, as NLB's
    /// DNS drops their addresses, re-read every `--dns-ttl`.
    #[arg(long)]
    pub dns_status_file: Option<PathBuf>,
    /// How long a resolved answer is used [ELB: 60s].
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub dns_ttl: Duration,
    /// Requests per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// How long to send for.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Per-request timeout (connect + response).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Reuse connections (HTTP keep-alive) instead of one new connection per request.
    #[arg(long)]
    pub keepalive: bool,
    /// Retries after a failed request, each on a new connection (the record keeps the last
    /// outcome and counts the attempts).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Where to write the JSON lines (`-` = stdout).
    #[arg(long, default_value = "-")]
    pub out: PathBuf,
}

/// One request's record.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub start: f64,
    pub end: f64,
    pub outcome: Outcome,
    pub conn: ConnKind,
    /// When the connection used was opened (ms since the epoch).
    pub conn_opened: f64,
    /// Source port of the connection (0 when none was opened): a new connection that reuses
    /// the port of an earlier failed one can hit that one's stale conntrack entry.
    pub local_port: u16,
    /// Whether the TCP handshake completed (a timeout with `false` never got a SYN-ACK).
    pub connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tries it took (1 without retries).
    pub attempts: u32,
    /// The target used (`host:port`), when there were several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `host:port` and path of an `http://` URL.
pub fn parse_target(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("--target must start with http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((hostport, path.to_string()))
}

/// Map an I/O error to the outcome names of the report.
pub fn classify(e: &std::io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => Outcome::Reset,
        ErrorKind::TimedOut => Outcome::Timeout,
        _ => Outcome::Error,
    }
}

struct Conn {
    stream: TcpStream,
    opened: f64,
    /// Source port of the connection.
    local_port: u16,
}

/// Idle keep-alive connections.
type Pool = Arc<Mutex<Vec<Conn>>>;

/// Read one HTTP/1.1 response (Content-Length bodies); returns (status, body, keep-alive).
async fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>, bool)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let header_end = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "response header too large",
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let keep = !head.contains("connection: close");
    while buf.len() < header_end + len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed mid-body",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((code, buf[header_end..header_end + len].to_vec(), keep))
}

/// Starts a non-blocking connect and returns the socket with the source port the kernel chose
/// (known at once, so a request that times out still records it).
fn start_connect(addr: SocketAddr) -> std::io::Result<(std::net::TcpStream, u16)> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
        Err(e) => return Err(e),
    }
    let port = sock.local_addr()?.as_socket().map_or(0, |a| a.port());
    Ok((sock.into(), port))
}

/// Opens a connection to `addr`, recording its source port in `port` as soon as it is known.
async fn connect(addr: SocketAddr, port: &mut u16) -> std::io::Result<TcpStream> {
    let (std_stream, p) = start_connect(addr)?;
    *port = p;
    let stream = TcpStream::from_std(std_stream)?;
    stream.writable().await?;
    match stream.take_error()? {
        Some(e) => Err(e),
        None => Ok(stream),
    }
}

/// One HTTP request on `reused` or a new connection, bounded by `timeout`.
async fn one_request(
    addr: SocketAddr,
    hostport: &str,
    path: &str,
    keepalive: bool,
    reused: Option<Conn>,
    timeout: Duration,
) -> (Record, Option<Conn>) {
    let start = epoch_ms();
    let conn_kind = if reused.is_some() {
        ConnKind::Reused
    } else {
        ConnKind::New
    };
    let mut rec = Record {
        start,
        end: 0.0,
        outcome: Outcome::Error,
        conn: conn_kind,
        conn_opened: reused.as_ref().map_or(start, |c| c.opened),
        local_port: reused.as_ref().map_or(0, |c| c.local_port),
        connected: reused.is_some(),
        pod: None,
        node: None,
        zone: None,
        error: None,
        attempts: 1,
        target: None,
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: {}\r\n\r\n",
        if keepalive { "keep-alive" } else { "close" }
    );
    let mut port = rec.local_port;
    let mut connected = rec.connected;
    let mut conn_slot: Option<Conn> = None;
    let work = async {
        let mut conn = match reused {
            Some(c) => c,
            None => {
                let stream = connect(addr, &mut port).await?;
                connected = true;
                Conn {
                    stream,
                    opened: start,
                    local_port: 0,
                }
            }
        };
        conn.stream.write_all(req.as_bytes()).await?;
        let resp = read_response(&mut conn.stream).await;
        conn_slot = Some(conn);
        resp
    };
    let result = tokio::time::timeout(timeout, work).await;
    rec.end = epoch_ms();
    rec.local_port = port;
    rec.connected = connected;
    let conn = conn_slot.map(|mut c| {
        c.local_port = port;
        c
    });
    match result {
        Err(_) => {
            rec.outcome = Outcome::Timeout;
            rec.error = Some(format!("no response within {timeout:?}"));
            (rec, None)
        }
        Ok(Ok((200, body, keep))) => {
            rec.outcome = Outcome::Ok;
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                rec.pod = field("pod");
                rec.node = field("node");
                rec.zone = field("zone");
            }
            (rec, conn.filter(|_| keepalive && keep))
        }
        Ok(Ok((code, _, _))) => {
            rec.error = Some(format!("HTTP {code}"));
            (rec, None)
        }
        Ok(Err(e)) => {
            rec.outcome = classify(&e);
            rec.error = Some(e.to_string());
            (rec, None)
        }
    }
}

/// One request within its timeout, retried on failure up to `retries` times (each retry on a
/// new connection). The record spans every attempt and carries the last outcome.
async fn attempt(
    target: &Target,
    keepalive: bool,
    timeout: Duration,
    retries: u32,
    pool: &Pool,
) -> Record {
    let first_start = epoch_ms();
    let mut first: Option<(ConnKind, f64)> = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let reused = if keepalive && attempts == 1 {
            pool.lock().ok().and_then(|mut p| p.pop())
        } else {
            None
        };
        let (mut rec, conn) = one_request(
            target.addr,
            &target.hostport,
            &target.path,
            keepalive,
            reused,
            timeout,
        )
        .await;
        if let (Some(c), Ok(mut p)) = (conn, pool.lock()) {
            p.push(c);
        }
        first.get_or_insert((rec.conn, rec.conn_opened));
        if rec.outcome == Outcome::Ok || attempts > retries {
            if let Some((kind, opened)) = first {
                rec.conn = kind;
                rec.conn_opened = opened;
            }
            rec.start = first_start;
            rec.attempts = attempts;
            return rec;
        }
    }
}

/// Where requests go.
struct Target {
    addr: SocketAddr,
    hostport: String,
    path: String,
}

/// The address of `url`.
async fn resolve_target(url: &str) -> anyhow::Result<Target> {
    let (hostport, path) = parse_target(url)?;
    let addr = tokio::net::lookup_host(&hostport)
        .await
        .with_context(|| format!("resolving {hostport}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("{hostport} has no IPv4 address"))?;
    Ok(Target {
        addr,
        hostport,
        path,
    })
}

/// Writes records as JSON lines, flushing each so a killed client (a powered-off node) keeps
/// everything it recorded; returns (total, ok).
fn write_records(out_path: PathBuf, mut rx: mpsc::Receiver<Record>) -> anyhow::Result<(u64, u64)> {
    let mut out: Box<dyn Write> = if out_path.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            std::fs::File::create(&out_path)
                .with_context(|| format!("creating {}", out_path.display()))?,
        )
    };
    let (mut total, mut ok) = (0, 0);
    let mut open = true;
    while let Some(r) = rx.blocking_recv() {
        total += 1;
        ok += u64::from(r.outcome == Outcome::Ok);
        if open {
            let mut line = serde_json::to_vec(&r)?;
            line.push(b'\n');
            // A reader that went away (`| head`) stops the output, not the run.
            match out.write_all(&line).and_then(|_| out.flush()) {
                Err(e) if e.kind() == ErrorKind::BrokenPipe => open = false,
                other => other?,
            }
        }
    }
    Ok((total, ok))
}

/// Run the load and write the records; returns (total, ok). SIGTERM or SIGINT stop the
/// schedule early; requests in flight still finish and are recorded.
pub async fn run(args: LoadArgs) -> anyhow::Result<(u64, u64)> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 10_000.0,
        "--rate must be in (0, 10000]"
    );
    let mut targets = Vec::new();
    for url in &args.target {
        targets.push(Arc::new(resolve_target(url).await?));
    }
    let several = targets.len() > 1;
    let mut resolver = dns::Resolver::new(
        targets
            .iter()
            .map(|t| dns::Candidate {
                hostport: t.hostport.clone(),
                host: t.addr.ip().to_string(),
            })
            .collect(),
        args.dns_ttl,
    );
    let (tx, rx) = mpsc::channel::<Record>(4096);
    let out_path = args.out.clone();
    let writer = tokio::task::spawn_blocking(move || write_records(out_path, rx));
    // One pool per target: a kept-alive connection belongs to the address it went to.
    let pools: Vec<Pool> = targets.iter().map(|_| Pool::default()).collect();
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let count = (args.duration.as_secs_f64() * args.rate).round() as u64;
    let began = Instant::now();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        tokio::select! {
            _ = tokio::time::sleep_until((began + interval.mul_f64(i as f64)).into()) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        if let Some(file) = &args.dns_status_file
            && resolver.expired(began.elapsed())
        {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let before = resolver.answer().join(",");
            resolver.resolve(&text, began.elapsed());
            let after = resolver.answer().join(",");
            if before != after {
                eprintln!("{:.0} dns answer: {after}", epoch_ms());
            }
        }
        let picked = resolver.pick().hostport.clone();
        let i = targets
            .iter()
            .position(|t| t.hostport == picked)
            .unwrap_or(0);
        let target = Arc::clone(&targets[i]);
        let (pool, tx) = (Arc::clone(&pools[i]), tx.clone());
        let (keepalive, timeout, retries) = (args.keepalive, args.timeout, args.retries);
        tasks.spawn(async move {
            let mut rec = attempt(&target, keepalive, timeout, retries, &pool).await;
            if several {
                rec.target = Some(target.hostport.clone());
            }
            let _ = tx.send(rec).await;
        });
        while let Some(done) = tasks.try_join_next() {
            done.ok();
        }
    }
    while tasks.join_next().await.is_some() {}
    drop(tx);
    writer.await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_outcomes() {
        assert_eq!(
            parse_target("http://10.96.0.10").unwrap(),
            ("10.96.0.10:80".into(), "/".into())
        );
        assert_eq!(
            parse_target("http://a:8080/x").unwrap(),
            ("a:8080".into(), "/x".into())
        );
        assert!(parse_target("https://a").is_err());
        assert_eq!(
            classify(&std::io::Error::from(ErrorKind::ConnectionRefused)),
            Outcome::Refused
        );
        assert_eq!(
            classify(&std::io::Error::from(ErrorKind::ConnectionReset)),
            Outcome::Reset
        );
        assert_eq!(
            classify(&std::io::Error::from(ErrorKind::TimedOut)),
            Outcome::Timeout
        );
        let rec = Record {
            start: 1.0,
            end: 2.0,
            outcome: Outcome::Timeout,
            conn: ConnKind::Reused,
            conn_opened: 0.5,
            local_port: 40000,
            connected: false,
            pod: None,
            node: None,
            zone: None,
            error: None,
            attempts: 1,
            target: None,
        };
        assert_eq!(
            serde_json::to_string(&rec).unwrap(),
            r#"{"start":1.0,"end":2.0,"outcome":"timeout","conn":"reused","conn_opened":0.5,"local_port":40000,"connected":false,"attempts":1}"#,
            "the names requests.jsonl has always had"
        );
    }
}
