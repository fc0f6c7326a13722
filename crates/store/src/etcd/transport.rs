//! gRPC over HTTP/2 to an etcd cluster: one multiplexed connection per endpoint, unary calls
//! with a per-request timeout and failover, and bidirectional streams for watches. Start at
//! [`Transport::unary`].
//!
//! Failover: endpoints are tried in order starting from the last one that answered; a
//! connection error or a request the connection refused before sending moves to the next
//! endpoint. A request that may have reached etcd is never re-sent (a create could otherwise
//! report its own success as `AlreadyExists`); its error goes to the caller. An `Unavailable`
//! answer or a timeout moves the preferred endpoint on, so the next request tries another member.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prost::Message;
use tokio::sync::{Mutex, mpsc};

/// gRPC status codes etcd answers with that the store tells apart.
pub(crate) const CODE_DEADLINE_EXCEEDED: u32 = 4;
pub(crate) const CODE_OUT_OF_RANGE: u32 = 11;
pub(crate) const CODE_UNAVAILABLE: u32 = 14;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallError {
    /// etcd answered with a non-OK gRPC status.
    #[error("rpc error: code = {code} desc = {message}")]
    Grpc { code: u32, message: String },
    /// No endpoint could be reached, or the connection broke mid-call.
    #[error("{0}")]
    Unreachable(String),
    /// The call did not complete within the per-request timeout.
    #[error("request did not complete within requested timeout - context deadline exceeded")]
    TimedOut,
}

/// Timeouts of the transport.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// Connecting to one endpoint.
    pub dial: Duration,
    /// One whole unary call, failover included.
    pub request: Duration,
}

/// One etcd client URL.
struct Endpoint {
    /// `host:port`.
    authority: String,
    /// The connection, dialed on first use and re-dialed once it closes.
    conn: Mutex<Option<SendRequest<GrpcBody>>>,
}

/// The connections to every endpoint.
pub(crate) struct Transport {
    endpoints: Vec<Endpoint>,
    preferred: AtomicUsize,
    timeouts: Timeouts,
}

/// A request body: one message, or a stream of messages for a bidirectional call.
pub(crate) enum GrpcBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            GrpcBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GrpcBody::Stream(rx) => rx.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, GrpcBody::Full(None))
    }
}

/// Parses `http://host:port` client URLs (etcd's `--advertise-client-urls` form).
pub(crate) fn parse_endpoint(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("invalid etcd server URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "etcd server URL {url:?}: https is not supported (plain http only)"
            ));
        }
        _ => return Err(format!("etcd server URL {url:?} must start with http://")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("etcd server URL {url:?} has no host"))?;
    let port = authority.port_u16().unwrap_or(2379);
    Ok(format!("{}:{port}", authority.host()))
}

/// A message in gRPC's length-prefixed framing (uncompressed).
pub(crate) fn frame<M: Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Cannot fail: the buffer has room for the whole message.
    let _ = msg.encode(&mut buf);
    buf.freeze()
}

impl Transport {
    /// A transport for `authorities` (`host:port`, at least one). Connects lazily.
    pub(crate) fn new(authorities: Vec<String>, timeouts: Timeouts) -> Transport {
        let endpoints = authorities
            .into_iter()
            .map(|authority| Endpoint {
                authority,
                conn: Mutex::new(None),
            })
            .collect();
        Transport {
            endpoints,
            preferred: AtomicUsize::new(0),
            timeouts,
        }
    }

    /// The per-request timeout.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.timeouts.request
    }

    /// How many endpoints there are.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// `host:port` of endpoint `idx`.
    pub(crate) fn authority(&self, idx: usize) -> &str {
        &self.endpoints[idx].authority
    }

    /// One unary call, with failover across endpoints, bounded by the request timeout.
    pub(crate) async fn unary<Req: Message, Resp: Message + Default>(
        &self,
        path: &'static str,
        req: &Req,
    ) -> Result<Resp, CallError> {
        self.unary_with_timeout(path, req, self.timeouts.request)
            .await
    }

    /// [`Transport::unary`] with its own timeout.
    pub(crate) async fn unary_with_timeout<Req: Message, Resp: Message + Default>(
        &self,
        path: &'static str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let body = frame(req);
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let out = tokio::time::timeout(timeout, async {
            let mut errors = Vec::new();
            for i in 0..n {
                let idx = (start + i) % n;
                match self.call_at(idx, path, body.clone(), false).await {
                    Ok(resp) => {
                        self.preferred.store(idx, Ordering::Relaxed);
                        return read_unary(resp).await;
                    }
                    Err(Attempt::NotSent(e)) => errors.push(e),
                    Err(Attempt::MaybeSent(e)) => return Err(CallError::Unreachable(e)),
                }
            }
            Err(CallError::Unreachable(errors.join("; ")))
        })
        .await
        .unwrap_or(Err(CallError::TimedOut));
        if matches!(
            &out,
            Err(CallError::TimedOut)
                | Err(CallError::Grpc {
                    code: CODE_UNAVAILABLE,
                    ..
                })
        ) {
            self.preferred.store((start + 1) % n, Ordering::Relaxed);
        }
        out
    }

    /// One unary call to endpoint `idx` only (no failover), bounded by the request timeout.
    pub(crate) async fn unary_at<Req: Message, Resp: Message + Default>(
        &self,
        idx: usize,
        path: &'static str,
        req: &Req,
    ) -> Result<Resp, CallError> {
        let body = frame(req);
        tokio::time::timeout(self.timeouts.request, async {
            match self.call_at(idx, path, body, false).await {
                Ok(resp) => read_unary(resp).await,
                Err(Attempt::NotSent(e) | Attempt::MaybeSent(e)) => Err(CallError::Unreachable(e)),
            }
        })
        .await
        .unwrap_or(Err(CallError::TimedOut))
    }

    /// Opens a bidirectional stream: sends `first`, returns the sender for further messages and
    /// the response stream. Bounded by the request timeout (until the response headers). The
    /// stream requires a leader (upstream's `WithRequireLeader` on watches): a member that loses
    /// its leader, e.g. the minority side of a partition, ends it with `etcdserver: no leader`
    /// instead of leaving it silent.
    pub(crate) async fn open_stream(
        &self,
        path: &'static str,
        first: Bytes,
    ) -> Result<(mpsc::Sender<Bytes>, MessageReader), CallError> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        tokio::time::timeout(self.timeouts.request, async {
            let mut errors = Vec::new();
            for i in 0..n {
                let idx = (start + i) % n;
                let (tx, rx) = mpsc::channel(16);
                // Cannot fail: fresh channel with room.
                let _ = tx.try_send(first.clone());
                match self.call_at(idx, path, rx, true).await {
                    Ok(resp) => {
                        let reader = start_stream(resp)?;
                        return Ok((tx, reader));
                    }
                    Err(Attempt::NotSent(e)) => errors.push(e),
                    Err(Attempt::MaybeSent(e)) => return Err(CallError::Unreachable(e)),
                }
            }
            Err(CallError::Unreachable(errors.join("; ")))
        })
        .await
        .unwrap_or(Err(CallError::TimedOut))
    }

    /// Sends one request on endpoint `idx`'s connection.
    async fn call_at(
        &self,
        idx: usize,
        path: &'static str,
        body: impl Into<GrpcBody>,
        require_leader: bool,
    ) -> Result<hyper::Response<Incoming>, Attempt> {
        let mut conn = self.connection(idx).await.map_err(Attempt::NotSent)?;
        let authority = &self.endpoints[idx].authority;
        if let Err(e) = conn.ready().await {
            return Err(Attempt::NotSent(format!("{authority}: {e}")));
        }
        let mut req = hyper::Request::post(format!("http://{authority}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if require_leader {
            // etcd's rpctypes.MetadataRequireLeaderKey.
            req = req.header("hasleader", "true");
        }
        let req = req
            .body(body.into())
            .map_err(|e| Attempt::NotSent(e.to_string()))?;
        match conn.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(mut e) => {
                let msg = format!("{authority}: {}", e.error());
                if e.take_message().is_some() {
                    Err(Attempt::NotSent(msg))
                } else {
                    Err(Attempt::MaybeSent(msg))
                }
            }
        }
    }

    /// The open connection to endpoint `idx`, dialing it if needed.
    async fn connection(&self, idx: usize) -> Result<SendRequest<GrpcBody>, String> {
        let ep = &self.endpoints[idx];
        let mut slot = ep.conn.lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.is_closed()
        {
            return Ok(conn.clone());
        }
        *slot = None;
        let conn = dial(&ep.authority, self.timeouts.dial).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// The outcome of a failed send.
enum Attempt {
    /// The request never left: safe to try another endpoint.
    NotSent(String),
    /// The request may have reached etcd.
    MaybeSent(String),
}

impl From<Bytes> for GrpcBody {
    fn from(b: Bytes) -> Self {
        GrpcBody::Full(Some(b))
    }
}

impl From<mpsc::Receiver<Bytes>> for GrpcBody {
    fn from(rx: mpsc::Receiver<Bytes>) -> Self {
        GrpcBody::Stream(rx)
    }
}

/// Connects and performs the HTTP/2 handshake (prior knowledge, as gRPC over plain TCP).
async fn dial(authority: &str, timeout: Duration) -> Result<SendRequest<GrpcBody>, String> {
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| format!("dial tcp {authority}: i/o timeout"))?
        .map_err(|e| format!("dial tcp {authority}: connect: {}", io_text(&e)))?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // Upstream's apiserver etcd client: keepalive time 30 s, keepalive timeout 10 s.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(1 << 20)
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("{authority}: http2 handshake: {e}"))?;
    let authority = authority.to_string();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("etcd connection to {authority} ended: {e}");
        }
    });
    Ok(send)
}

/// Go's wording for the common socket errors (`connection refused`), as etcd's client reports
/// them; anything else as Rust prints it.
fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        k @ (K::ConnectionRefused
        | K::ConnectionReset
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::AddrNotAvailable) => k.to_string(),
        _ => e.to_string(),
    }
}

/// The gRPC status of headers or trailers, if present: `(code, message)`.
fn grpc_status(h: &http::HeaderMap) -> Option<(u32, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let raw = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let message = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    Some((code, message))
}

/// Checks a response's HTTP status and trailers-only gRPC errors.
fn check_head(resp: &hyper::Response<Incoming>) -> Result<(), CallError> {
    if resp.status() != http::StatusCode::OK {
        return Err(CallError::Unreachable(format!(
            "etcd answered HTTP {} (not a gRPC server?)",
            resp.status()
        )));
    }
    match grpc_status(resp.headers()) {
        Some((0, _)) | None => Ok(()),
        Some((code, message)) => Err(CallError::Grpc { code, message }),
    }
}

/// Reads a unary response: one message, then an OK status in the trailers.
async fn read_unary<Resp: Message + Default>(
    resp: hyper::Response<Incoming>,
) -> Result<Resp, CallError> {
    check_head(&resp)?;
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| CallError::Unreachable(format!("reading etcd response: {e}")))?;
    if let Some((code, message)) = collected.trailers().and_then(grpc_status)
        && code != 0
    {
        return Err(CallError::Grpc { code, message });
    }
    let mut buf = collected.to_bytes();
    if buf.len() < 5 {
        return Err(CallError::Unreachable(
            "etcd sent no response message".into(),
        ));
    }
    buf.advance(1);
    let len = buf.get_u32() as usize;
    if buf.len() < len {
        return Err(CallError::Unreachable(
            "etcd sent a truncated message".into(),
        ));
    }
    Resp::decode(buf.slice(..len))
        .map_err(|e| CallError::Unreachable(format!("decoding etcd response: {e}")))
}

/// Checks the head of a streaming response and wraps its body.
fn start_stream(resp: hyper::Response<Incoming>) -> Result<MessageReader, CallError> {
    check_head(&resp)?;
    Ok(MessageReader {
        body: resp.into_body(),
        buf: BytesMut::new(),
    })
}

/// Splits a streaming response body into messages.
pub(crate) struct MessageReader {
    body: Incoming,
    buf: BytesMut,
}

impl MessageReader {
    /// The next message; `Ok(None)` when the stream ended with an OK status.
    pub(crate) async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, CallError> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = len as usize;
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    let msg = self.buf.split_to(len).freeze();
                    return M::decode(msg).map(Some).map_err(|e| {
                        CallError::Unreachable(format!("decoding etcd stream message: {e}"))
                    });
                }
            }
            let frame = match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(CallError::Unreachable(format!("etcd stream broke: {e}")));
                }
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => self.buf.extend_from_slice(&data),
                Err(frame) => {
                    if let Some((code, message)) = frame.trailers_ref().and_then(grpc_status)
                        && code != 0
                    {
                        return Err(CallError::Grpc { code, message });
                    }
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379").as_deref(),
            Ok("127.0.0.1:2379")
        );
        assert_eq!(
            parse_endpoint("http://etcd-a").as_deref(),
            Ok("etcd-a:2379")
        );
        assert!(parse_endpoint("https://x:1").is_err());
        assert!(parse_endpoint("127.0.0.1:2379").is_err());
        assert!(parse_endpoint("http://").is_err());
    }

    #[test]
    fn frames_are_length_prefixed() {
        let msg = crate::etcd::proto::WatchCancelRequest { watch_id: 5 };
        let f = frame(&msg);
        assert_eq!(&f[..5], &[0, 0, 0, 0, 2]);
        assert_eq!(f.len(), 7);
    }
}
