//! The kube clients of the lab's roles (agents, the runner, `lab` commands): a dead server is
//! found by the kernel (TCP keepalive and `TCP_USER_TIMEOUT`), a slow one is waited for, so a
//! watch pinned to an API server that died with its zone fails over through the load balancer
//! while a server that answers late under load is not torn down into a re-list storm.
//!
//! Start at [`Policy::for_idle`] and [`client`]. client-go tells the two apart with HTTP/2 health
//! checks: after `ReadIdleTimeout` (30 s) without a frame it pings and drops the connection
//! when no answer comes within `PingTimeout` (15 s) (k8s.io/client-go/transport,
//! kubernetes#87615); a request itself has no timeout unless its caller sets one. This
//! HTTP/1.1 client cannot ping, so the ping is the kernel's: keepalive probes after the same
//! idle time, and `TCP_USER_TIMEOUT` for data the peer never acknowledges. The peer's kernel
//! answers them however starved its process is. Reads are only bounded by the server's own
//! `--request-timeout` (60 s), and the lab's servers send watch bookmarks every
//! [`LAB_BOOKMARK_INTERVAL`], so a healthy watch is never idle that long.

use std::time::Duration;

use kube::client::ConfigExt;

/// client-go's HTTP/2 `ReadIdleTimeout`.
pub const UPSTREAM_READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest idle time before a liveness probe (the `fast` profile's 30 s ÷ 10).
pub const MIN_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// kube-apiserver's `--request-timeout` default: the server gives up on a (non-watch) request
/// after this, so a client waiting longer learns nothing; the bound on one read of an answer.
pub const SERVER_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// `--bookmark-interval` of the servers a lab starts (upstream's apiserver sends one about
/// every minute; the lab's clients want a sign of life well within [`MIN_READ_TIMEOUT`], so a
/// watch never goes idle long enough for a keepalive probe while its server is alive).
pub const LAB_BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// Keepalive probes sent before the kernel declares the peer dead.
const KEEPALIVE_PROBES: u32 = 3;

/// When a lab client gives up on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Idle time before the first keepalive probe (client-go's `ReadIdleTimeout`).
    pub keepalive_idle: Duration,
    /// Between probes; [`KEEPALIVE_PROBES`] unanswered ones end the connection.
    pub keepalive_interval: Duration,
    /// Sent data unacknowledged this long ends the connection (also caps the probes):
    /// `ReadIdleTimeout` + `PingTimeout` (its half).
    pub user_timeout: Duration,
    /// A TCP connect (SYN unanswered) gives up after this (the same liveness bound).
    pub connect_timeout: Duration,
    /// One read of an answer gives up after this, counted from the request's last write: the
    /// server's `--request-timeout`, never shorter than the liveness bound.
    pub read_timeout: Duration,
}

impl Policy {
    /// The policy for a profile's read-idle timeout (`profile.duration(`
    /// [`UPSTREAM_READ_IDLE_TIMEOUT`]`)`: 30 s upstream, 3 s `fast`; at least
    /// [`MIN_READ_TIMEOUT`]). A dead peer is found `idle` + `idle / 2` after its last sign of
    /// life (45 s upstream, 4.5 s `fast`); a live one has [`SERVER_REQUEST_TIMEOUT`] to answer.
    pub fn for_idle(idle: Duration) -> Policy {
        let idle = idle.max(MIN_READ_TIMEOUT);
        let ping = idle / 2;
        // The kernel counts keepalive times in whole seconds.
        let interval = Duration::from_secs((ping / KEEPALIVE_PROBES).as_secs().max(1));
        Policy {
            keepalive_idle: Duration::from_secs(idle.as_secs()),
            keepalive_interval: interval,
            user_timeout: idle + ping,
            connect_timeout: idle + ping,
            read_timeout: SERVER_REQUEST_TIMEOUT.max(idle + ping),
        }
    }
}

/// A client config for `url` with [`Policy::for_idle`]`(idle)`'s timeouts (TLS and
/// credentials go here too); [`client`] builds the client with the keepalive transport.
pub fn config(url: http::Uri, idle: Duration) -> kube::Config {
    let policy = Policy::for_idle(idle);
    let mut c = kube::Config::new(url);
    c.read_timeout = Some(policy.read_timeout);
    c.connect_timeout = Some(policy.connect_timeout);
    c.reset_reader_on_write = true;
    c
}

/// A kube client for `config` whose connections follow [`Policy::for_idle`]`(idle)`, over
/// HTTPS when its URL says so (its CA and client certificate from `config`).
pub fn client(config: kube::Config, idle: Duration) -> anyhow::Result<kube::Client> {
    let policy = Policy::for_idle(idle);
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(policy.keepalive_idle));
    http.set_keepalive_interval(Some(policy.keepalive_interval));
    http.set_keepalive_retries(Some(KEEPALIVE_PROBES));
    http.set_tcp_user_timeout(Some(policy.user_timeout));
    http.set_connect_timeout(Some(policy.connect_timeout));
    if config.cluster_url.scheme() == Some(&http::uri::Scheme::HTTPS) {
        let https = config.rustls_https_connector_with_connector(http)?;
        service(config, timed(https, &policy))
    } else {
        service(config, timed(http, &policy))
    }
}

/// The connector with the policy's read and write bounds.
fn timed<C>(connector: C, policy: &Policy) -> hyper_timeout::TimeoutConnector<C>
where
    C: tower::Service<http::Uri> + Send + Clone + 'static,
    C::Response: hyper::rt::Read
        + hyper::rt::Write
        + hyper_util::client::legacy::connect::Connection
        + Send
        + Unpin,
    C::Future: Send + 'static,
    C::Error: Into<tower::BoxError>,
{
    let mut timed = hyper_timeout::TimeoutConnector::new(connector);
    timed.set_read_timeout(Some(policy.read_timeout));
    timed.set_write_timeout(Some(policy.user_timeout));
    timed.set_reset_reader_on_write(true);
    timed
}

/// kube's layers (base URI, credentials, headers) over a pooled client of `connector`.
fn service<C>(config: kube::Config, connector: C) -> anyhow::Result<kube::Client>
where
    C: tower::Service<http::Uri> + Send + Sync + Clone + 'static,
    C::Response: hyper::rt::Read
        + hyper::rt::Write
        + hyper_util::client::legacy::connect::Connection
        + Send
        + Unpin,
    C::Future: Send + Unpin + 'static,
    C::Error: Into<tower::BoxError>,
{
    let http_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// `--bookmark-interval` for a lab server unless `flags` set it already.
pub fn bookmark_flag(flags: &[String]) -> Option<String> {
    let set = flags.iter().any(|f| f.starts_with("--bookmark-interval"));
    (!set).then(|| format!("--bookmark-interval={}s", LAB_BOOKMARK_INTERVAL.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_peer_is_found_at_idle_plus_half_a_live_one_gets_the_request_timeout() {
        let fast = Policy::for_idle(Duration::from_secs(3));
        assert_eq!(fast.keepalive_idle, Duration::from_secs(3));
        assert_eq!(fast.keepalive_interval, Duration::from_secs(1));
        assert_eq!(fast.user_timeout, Duration::from_millis(4_500));
        assert_eq!(fast.read_timeout, SERVER_REQUEST_TIMEOUT);
        let upstream = Policy::for_idle(UPSTREAM_READ_IDLE_TIMEOUT);
        assert_eq!(upstream.keepalive_idle, UPSTREAM_READ_IDLE_TIMEOUT);
        assert_eq!(upstream.keepalive_interval, Duration::from_secs(5));
        assert_eq!(upstream.user_timeout, Duration::from_secs(45));
        assert_eq!(upstream.read_timeout, SERVER_REQUEST_TIMEOUT);
        // Shorter idle times are raised to the floor; a watch's bookmarks come well within it.
        assert_eq!(Policy::for_idle(Duration::from_millis(10)), fast);
        assert!(LAB_BOOKMARK_INTERVAL < fast.keepalive_idle);
    }

    #[test]
    fn a_slow_answer_is_waited_for() {
        // A server that reads the request and answers 4 s later: past the `fast` idle time
        // (the old per-read bound of 3 s gave up here), well within the request timeout.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while let Ok((mut s, _)) = listener.accept().await {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    let body = r#"{"major":"1","minor":"33","gitVersion":"v1.33.0"}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(body.as_bytes()).await;
                }
            });
            let url: http::Uri = format!("http://{addr}").parse().expect("uri");
            let c = client(config(url, MIN_READ_TIMEOUT), MIN_READ_TIMEOUT).expect("client");
            let v = c.apiserver_version().await.expect("a 4 s answer is not a dead server");
            assert_eq!(v.git_version, "v1.33.0");
        });
    }

    #[test]
    fn bookmark_flag_unless_set() {
        assert_eq!(
            bookmark_flag(&[]).as_deref(),
            Some("--bookmark-interval=1s")
        );
        assert_eq!(bookmark_flag(&["--bookmark-interval=5s".into()]), None);
    }
}
