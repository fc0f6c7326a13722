//! `zonelab load`: an open-loop HTTP client that records every request as one JSON line —
//! when it started and ended, how it ended (`ok|timeout|refused|reset|error`), which pod, node
//! and zone answered, and whether it used a new or a reused connection.
//!
//! Start at [`run`]. Requests start on a fixed schedule (rate N/s) whatever earlier ones do, so
//! a stall shows up as failures, not as a slower client.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::flags::parse_duration;

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// `http://HOST:PORT[/path]` (a ClusterIP, a pod IP, anything reachable).
    #[arg(long)]
    pub target: String,
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
    pub outcome: &'static str,
    /// `new` or `reused`.
    pub conn: &'static str,
    /// When the connection used was opened (ms since the epoch).
    pub conn_opened: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
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
pub fn classify(e: &std::io::Error) -> &'static str {
    match e.kind() {
        ErrorKind::ConnectionRefused => "refused",
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => "reset",
        ErrorKind::TimedOut => "timeout",
        _ => "error",
    }
}

struct Conn {
    stream: TcpStream,
    opened: f64,
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

async fn one_request(
    hostport: &str,
    path: &str,
    keepalive: bool,
    reused: Option<Conn>,
) -> (Record, Option<Conn>) {
    let start = epoch_ms();
    let conn_kind = if reused.is_some() { "reused" } else { "new" };
    let mut rec = Record {
        start,
        end: 0.0,
        outcome: "error",
        conn: conn_kind,
        conn_opened: start,
        pod: None,
        node: None,
        zone: None,
        error: None,
    };
    let mut conn = match reused {
        Some(c) => c,
        None => match TcpStream::connect(hostport).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                Conn {
                    stream,
                    opened: start,
                }
            }
            Err(e) => {
                rec.outcome = classify(&e);
                rec.error = Some(e.to_string());
                rec.end = epoch_ms();
                return (rec, None);
            }
        },
    };
    rec.conn_opened = conn.opened;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: {}\r\n\r\n",
        if keepalive { "keep-alive" } else { "close" }
    );
    let result = async {
        conn.stream.write_all(req.as_bytes()).await?;
        read_response(&mut conn.stream).await
    }
    .await;
    rec.end = epoch_ms();
    match result {
        Ok((200, body, keep)) => {
            rec.outcome = "ok";
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                rec.pod = field("pod");
                rec.node = field("node");
                rec.zone = field("zone");
            }
            (rec, (keepalive && keep).then_some(conn))
        }
        Ok((code, _, _)) => {
            rec.error = Some(format!("HTTP {code}"));
            (rec, None)
        }
        Err(e) => {
            rec.outcome = classify(&e);
            rec.error = Some(e.to_string());
            (rec, None)
        }
    }
}

/// Run the load and write the records; returns (total, ok).
pub async fn run(args: LoadArgs) -> anyhow::Result<(u64, u64)> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 10_000.0,
        "--rate must be in (0, 10000]"
    );
    let (hostport, path) = parse_target(&args.target)?;
    let (tx, mut rx) = mpsc::channel::<Record>(4096);
    let out_path = args.out.clone();
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
        let mut out: Box<dyn Write> = if out_path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(&out_path)
                    .with_context(|| format!("creating {}", out_path.display()))?,
            ))
        };
        let (mut total, mut ok) = (0, 0);
        let mut open = true;
        while let Some(r) = rx.blocking_recv() {
            total += 1;
            ok += u64::from(r.outcome == "ok");
            if open {
                let mut line = serde_json::to_vec(&r)?;
                line.push(b'\n');
                // A reader that went away (`| head`) stops the output, not the run.
                match out.write_all(&line) {
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => open = false,
                    other => other?,
                }
            }
        }
        if open {
            let _ = out.flush();
        }
        Ok((total, ok))
    });
    let pool: Pool = Arc::new(Mutex::new(Vec::new()));
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let count = (args.duration.as_secs_f64() * args.rate).round() as u64;
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        tokio::time::sleep_until((began + interval.mul_f64(i as f64)).into()).await;
        let (hostport, path, pool, tx) = (
            hostport.clone(),
            path.clone(),
            Arc::clone(&pool),
            tx.clone(),
        );
        let (keepalive, timeout) = (args.keepalive, args.timeout);
        tasks.spawn(async move {
            let start = epoch_ms();
            let reused = if keepalive {
                pool.lock().ok().and_then(|mut p| p.pop())
            } else {
                None
            };
            let kind = if reused.is_some() { "reused" } else { "new" };
            let opened = reused.as_ref().map_or(start, |c| c.opened);
            let rec = match tokio::time::timeout(
                timeout,
                one_request(&hostport, &path, keepalive, reused),
            )
            .await
            {
                Ok((rec, conn)) => {
                    if let (Some(c), Ok(mut p)) = (conn, pool.lock()) {
                        p.push(c);
                    }
                    rec
                }
                Err(_) => Record {
                    start,
                    end: epoch_ms(),
                    outcome: "timeout",
                    conn: kind,
                    conn_opened: opened,
                    pod: None,
                    node: None,
                    zone: None,
                    error: Some(format!("no response within {timeout:?}")),
                },
            };
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
            "refused"
        );
        assert_eq!(
            classify(&std::io::Error::from(ErrorKind::ConnectionReset)),
            "reset"
        );
        assert_eq!(
            classify(&std::io::Error::from(ErrorKind::TimedOut)),
            "timeout"
        );
    }
}
