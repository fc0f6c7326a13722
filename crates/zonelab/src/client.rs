//! The kube clients of the lab's roles (agents, the runner, `lab` commands): every read on a
//! connection is bounded, so a request or watch pinned to an API server that died with its
//! zone fails and is retried through the load balancer instead of hanging.
//!
//! Start at [`config`]. client-go finds a dead connection with HTTP/2 health checks
//! (`ReadIdleTimeout` 30 s, then a ping with `PingTimeout` 15 s; k8s.io/client-go/transport,
//! kubernetes#87615); this HTTP/1.1 client bounds every read instead, and the lab's servers send
//! watch bookmarks every [`LAB_BOOKMARK_INTERVAL`] so an idle but healthy watch never trips it.

use std::time::Duration;

/// client-go's HTTP/2 `ReadIdleTimeout`.
pub const UPSTREAM_READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest read timeout: above [`LAB_BOOKMARK_INTERVAL`] with room for a slow write.
pub const MIN_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// `--bookmark-interval` of the servers a lab starts (upstream's apiserver sends one about
/// every minute; the lab's clients need a sign of life well within [`MIN_READ_TIMEOUT`]).
pub const LAB_BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// A client config for `url` whose reads (and connects) give up after `read_timeout`
/// (at least [`MIN_READ_TIMEOUT`]), counted from the last write of each request.
pub fn config(url: http::Uri, read_timeout: Duration) -> kube::Config {
    let t = read_timeout.max(MIN_READ_TIMEOUT);
    let mut c = kube::Config::new(url);
    c.read_timeout = Some(t);
    c.connect_timeout = Some(t);
    c.reset_reader_on_write = true;
    c
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
    fn reads_are_bounded_and_bookmarks_come_first() {
        let c = config(
            "http://127.0.0.1:1".parse().expect("uri"),
            Duration::from_secs(1),
        );
        assert_eq!(c.read_timeout, Some(MIN_READ_TIMEOUT));
        assert!(c.reset_reader_on_write);
        assert!(LAB_BOOKMARK_INTERVAL < MIN_READ_TIMEOUT);
        assert_eq!(
            bookmark_flag(&[]).as_deref(),
            Some("--bookmark-interval=1s")
        );
        assert_eq!(bookmark_flag(&["--bookmark-interval=5s".into()]), None);
    }
}
