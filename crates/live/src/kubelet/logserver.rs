//! The kubelet's log endpoint (I/O, thin): `GET /containerLogs/NS/POD/CONTAINER` on the
//! kubelet port (upstream 10250), with `follow`, `previous`, `tailLines`, `sinceSeconds`,
//! `sinceTime`, `timestamps` and `limitBytes`. Which instance to read comes from the kubelet
//! loop ([`LogQuery`], answered by [`kubelet::Kubelet::container_log_target`]); the bytes come
//! from the runtime's log files. Start at [`serve`].

use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use kubelet::core::logs::{LogTarget, LogTargetError};
use kubelet::logfmt::{self, LogOptions};

/// How often a follow looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often a follow asks the kubelet whether the instance still runs (every N polls).
const FOLLOW_CHECK_EVERY: u32 = 5;
/// Chunks buffered towards a slow follower before the reader waits.
const FOLLOW_CHANNEL: usize = 16;
/// Requests waiting for the kubelet loop at most.
pub const QUERY_CHANNEL: usize = 64;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A question for the kubelet loop: which instance does this request read?
pub struct LogQuery {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub previous: bool,
    pub reply: oneshot::Sender<Result<LogTarget, LogTargetError>>,
}

/// What the endpoint needs.
#[derive(Clone)]
pub struct LogServer {
    /// The runtime's log root (`LogConfig::root`).
    pub root: PathBuf,
    pub max_files: u32,
    pub queries: mpsc::Sender<LogQuery>,
}

impl LogServer {
    async fn target(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogTarget, LogTargetError> {
        let gone = || LogTargetError::Unavailable("the kubelet is shutting down".into());
        let (reply, rx) = oneshot::channel();
        let q = LogQuery {
            namespace: ns.into(),
            pod: pod.into(),
            container: container.into(),
            previous,
            reply,
        };
        self.queries.send(q).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// Serve the endpoint on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, server: LogServer) {
    let server = Arc::new(server);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(handle(&server, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(code: StatusCode, msg: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(msg.into()).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(server: &LogServer, req: Request<Incoming>) -> Response<Body> {
    let segs: Vec<&str> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (ns, pod, container) = match segs.as_slice() {
        ["containerLogs", ns, pod, container] => (*ns, *pod, *container),
        ["containerLogs", ..] => {
            return text(StatusCode::BAD_REQUEST, "Missing container name.");
        }
        _ => return text(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    let query = req.uri().query().unwrap_or("");
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let Ok(opts) = LogOptions::parse(pairs) else {
        // Upstream's kubelet answers an undecodable query with exactly this.
        return text(
            StatusCode::BAD_REQUEST,
            r#"{"message": "Unable to decode query."}"#,
        );
    };
    let target = match server.target(ns, pod, container, opts.previous).await {
        Ok(t) => t,
        Err(e) => {
            let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::BAD_REQUEST);
            return text(code, e.to_string());
        }
    };
    let mut reader = InstanceReader::new(server, &target);
    let now = chrono::Utc::now();
    let mut first = logfmt::render(&reader.read_all(), &opts, now);
    let mut budget = opts.limit_bytes.unwrap_or(u64::MAX);
    cap(&mut first, &mut budget);
    if !(opts.follow && target.running) || budget == 0 {
        return text(StatusCode::OK, first);
    }
    let (tx, rx) = mpsc::channel::<Bytes>(FOLLOW_CHANNEL);
    let follow = Follow {
        server: server.clone(),
        ns: ns.into(),
        pod: pod.into(),
        target,
        opts,
        budget,
    };
    tokio::spawn(follow.run(reader, first, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Cut `bytes` to the remaining `limitBytes` budget.
fn cap(bytes: &mut Vec<u8>, budget: &mut u64) {
    let n = (bytes.len() as u64).min(*budget);
    bytes.truncate(n as usize);
    *budget -= n;
}

/// Reads one instance's files; remembers where the current file ended for a follow.
struct InstanceReader {
    dir: PathBuf,
    attempt: i32,
    max_files: u32,
    /// Inode and offset of the current file (`<attempt>.log`) read so far.
    inode: Option<u64>,
    offset: u64,
}

impl InstanceReader {
    fn new(server: &LogServer, t: &LogTarget) -> InstanceReader {
        InstanceReader {
            dir: logfmt::container_dir(&server.root, &t.uid, &t.container),
            attempt: t.attempt,
            max_files: server.max_files,
            inode: None,
            offset: 0,
        }
    }

    /// Every record of the instance, oldest first.
    fn read_all(&mut self) -> Vec<logfmt::CriLine> {
        let mut out = Vec::new();
        let files = logfmt::instance_files(&self.dir, self.attempt, self.max_files);
        let last = files.len().saturating_sub(1);
        for (i, f) in files.iter().enumerate() {
            let Ok(bytes) = std::fs::read(f) else {
                continue;
            };
            let complete = complete_len(&bytes);
            out.extend(logfmt::parse_all(&bytes[..complete]));
            if i == last {
                self.inode = std::fs::metadata(f).ok().map(|m| m.ino());
                self.offset = complete as u64;
            }
        }
        out
    }

    /// Records written since the last read (following a rotation once).
    fn read_new(&mut self) -> Vec<logfmt::CriLine> {
        let current = logfmt::log_file(&self.dir, self.attempt, 0);
        let ino = std::fs::metadata(&current).ok().map(|m| m.ino());
        let mut out = Vec::new();
        if ino != self.inode && self.inode.is_some() {
            // Rotated: finish the old file (now `.log.1`), then start the new one.
            let old = logfmt::log_file(&self.dir, self.attempt, 1);
            if std::fs::metadata(&old).ok().map(|m| m.ino()) == self.inode {
                out.extend(self.read_from(&old).0);
            }
            self.offset = 0;
        }
        self.inode = ino;
        let (lines, end) = self.read_from(&current);
        self.offset = end;
        out.extend(lines);
        out
    }

    fn read_from(&self, path: &std::path::Path) -> (Vec<logfmt::CriLine>, u64) {
        let Ok(bytes) = std::fs::read(path) else {
            return (Vec::new(), self.offset);
        };
        let start = (self.offset as usize).min(bytes.len());
        let tail = &bytes[start..];
        let complete = complete_len(tail);
        (
            logfmt::parse_all(&tail[..complete]),
            (start + complete) as u64,
        )
    }
}

/// Length of `bytes` up to and including its last newline.
fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
}

struct Follow {
    server: LogServer,
    ns: String,
    pod: String,
    target: LogTarget,
    opts: LogOptions,
    budget: u64,
}

impl Follow {
    /// Send `first`, then new lines until the instance ends, the budget is spent or the client
    /// goes away.
    async fn run(mut self, mut reader: InstanceReader, first: Vec<u8>, tx: mpsc::Sender<Bytes>) {
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        let mut polls = 0u32;
        loop {
            tokio::time::sleep(FOLLOW_POLL).await;
            polls += 1;
            let ended = polls.is_multiple_of(FOLLOW_CHECK_EVERY) && !self.still_running().await;
            let since = self.opts.since(chrono::Utc::now());
            let mut chunk: Vec<u8> = reader
                .read_new()
                .iter()
                .filter(|l| since.is_none_or(|t| l.time >= t))
                .flat_map(|l| logfmt::render_line(l, self.opts.timestamps))
                .collect();
            cap(&mut chunk, &mut self.budget);
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            if ended || self.budget == 0 || tx.is_closed() {
                return;
            }
        }
    }

    async fn still_running(&self) -> bool {
        let now = self
            .server
            .target(&self.ns, &self.pod, &self.target.container, false)
            .await;
        matches!(now, Ok(t) if t.running && t.uid == self.target.uid && t.attempt == self.target.attempt)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::kubelet::logwriter::LogConfig;
    use kubelet::logfmt::Stream;

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        (
            code,
            if chunked {
                dechunk(body)
            } else {
                body.to_string()
            },
        )
    }

    /// The payload of a chunked body (or the body itself).
    fn dechunk(body: &str) -> String {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                return body.to_string();
            };
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    }

    #[tokio::test]
    async fn serves_tail_errors_and_a_follow_that_ends_with_the_instance() {
        let root = tempfile::tempdir().expect("tmp");
        let cfg = LogConfig {
            root: root.path().to_path_buf(),
            max_size: 1 << 20,
            max_files: 2,
        };
        let cap = cfg.capture("u", "c", 0).expect("capture");
        let (mut out, rx) = tokio::io::duplex(1 << 16);
        cap.spawn_reader(Stream::Stdout, rx);
        out.write_all(b"one\ntwo\n").await.expect("write");
        let running = Arc::new(AtomicBool::new(true));
        let (qtx, mut qrx) = mpsc::channel::<LogQuery>(4);
        let r = running.clone();
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        tokio::spawn(async move {
            while let Some(q) = qrx.recv().await {
                a.fetch_add(1, Ordering::SeqCst);
                let answer = if q.pod == "p" {
                    Ok(LogTarget {
                        uid: "u".into(),
                        container: q.container.clone(),
                        attempt: 0,
                        running: r.load(Ordering::SeqCst),
                    })
                } else {
                    Err(LogTargetError::NotFound(format!(
                        "pod {:?} does not exist\n",
                        q.pod
                    )))
                };
                let _ = q.reply.send(answer);
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(
            listener,
            LogServer {
                root: root.path().to_path_buf(),
                max_files: 2,
                queries: qtx,
            },
        ));
        // Wait (bounded) until the reader wrote both lines.
        let mut body = String::new();
        for _ in 0..100 {
            body = get(addr, "/containerLogs/ns/p/c").await.1;
            if body == "one\ntwo\n" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(body, "one\ntwo\n");
        assert_eq!(
            get(addr, "/containerLogs/ns/p/c?tailLines=1").await,
            (200, "two\n".to_string())
        );
        assert_eq!(
            get(addr, "/containerLogs/ns/p/c?limitBytes=5").await,
            (200, "one\nt".to_string())
        );
        assert_eq!(
            get(addr, "/containerLogs/ns/gone/c").await,
            (404, "pod \"gone\" does not exist\n".to_string())
        );
        assert_eq!(get(addr, "/containerLogs/ns/p/c?tailLines=x").await.0, 400);
        // Follow: new lines arrive; the stream ends once the instance stops running.
        let before = asked.load(Ordering::SeqCst);
        let follow = tokio::spawn(get(addr, "/containerLogs/ns/p/c?follow=true"));
        for _ in 0..500 {
            if asked.load(Ordering::SeqCst) > before {
                break; // the follow has its target (a running instance)
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out.write_all(b"three\n").await.expect("write");
        for _ in 0..100 {
            if get(addr, "/containerLogs/ns/p/c?tailLines=1").await.1 == "three\n" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running.store(false, Ordering::SeqCst);
        let (code, body) = tokio::time::timeout(Duration::from_secs(10), follow)
            .await
            .expect("the follow ended")
            .expect("join");
        assert_eq!((code, body.as_str()), (200, "one\ntwo\nthree\n"));
    }
}
