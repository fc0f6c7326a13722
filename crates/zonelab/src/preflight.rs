//! The lab's checks before and while it comes up: the tools every role will execute and the
//! API port (before anything is built), then that the API server answering is the process the
//! lab started, then that every node's kube-proxy has programmed its rules (its `/healthz`,
//! read inside the node's network namespace), each failure saying why.
//!
//! Start at [`tools`], then [`wait_server`] and [`wait_proxies`]. The list of tools is
//! `netlab::preflight`'s.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use netlab::preflight::{self, ProxyMode, Role};

/// Port kube-proxy serves `/healthz` on (upstream `--healthz-bind-address` 0.0.0.0:10256; the
/// agent's `--proxy-status-address` default).
pub const PROXY_HEALTHZ_PORT: u16 = 10256;

/// The mode named by `--proxy-mode` (clap has checked the value).
pub fn proxy_mode(s: &str) -> anyhow::Result<ProxyMode> {
    ProxyMode::parse(s).with_context(|| format!("unknown --proxy-mode {s:?}"))
}

/// Before the lab builds anything: every tool `lab up`/`run`/`demo` and their agents will
/// execute is on PATH. (The API port is checked with `ports::check_free` once an earlier lab's
/// leftovers are cleared.)
pub fn tools(mode: &str) -> anyhow::Result<()> {
    preflight::check(Role::LabHost(proxy_mode(mode)?))?;
    Ok(())
}

/// Before a lab with an etcd control plane builds anything: `etcd` is on PATH.
pub fn etcd() -> anyhow::Result<()> {
    preflight::check_tools(&[preflight::ETCD])?;
    Ok(())
}

/// The last `lines` lines of a log file ("" when unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One `GET path` over `stream` (HTTP/1.0, the server closes): status code and body.
fn http_get(mut stream: TcpStream, path: &str) -> std::io::Result<(u16, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_string()))
}

/// Waits until the server the lab started (`pid`) listens on `api` itself and answers
/// `/healthz` with 200 to `client` (the lab's admin, over HTTPS). Fails at once, with the tail
/// of its log, if it exits; and never takes another process listening there for it.
pub async fn wait_server(
    proc_alive: impl Fn() -> bool,
    pid: u32,
    api: SocketAddr,
    client: &kube::Client,
    log: &Path,
    limit: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !proc_alive() {
            bail!(
                "the API server (pid {pid}) exited; the end of {}:\n{}",
                log.display(),
                log_tail(log, 15)
            );
        }
        if crate::ports::pid_listens_on(pid, api.port()) {
            let req = http::Request::get("/healthz").body(Vec::new())?;
            let answer =
                tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await;
            if matches!(answer, Ok(Ok(ref body)) if body == "ok") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holder = crate::ports::holder_of(api.port())
        .map(|h| format!("; {api} is held by pid {} ({})", h.pid, h.command))
        .unwrap_or_default();
    bail!(
        "the API server (pid {pid}) did not answer on {api} within {limit:?}{holder}; the end of {}:\n{}",
        log.display(),
        log_tail(log, 15)
    )
}

/// What one node's kube-proxy `/healthz` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyState {
    /// 200 and at least one successful sync: rules are programmed.
    Programmed,
    /// Not (yet) programmed; why, as far as known.
    Not(String),
}

/// Reads a `/healthz` answer (status code and JSON body, see `proxy::health`).
pub fn proxy_state(code: u16, body: &str) -> ProxyState {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let synced = v["synced"].as_bool().unwrap_or(false);
    let error = v["lastError"].as_str().map(str::to_string);
    match (code, synced, error) {
        (200, true, _) => ProxyState::Programmed,
        (_, _, Some(e)) => ProxyState::Not(format!("last sync failed: {e}")),
        (200, false, None) => ProxyState::Not("no sync yet".into()),
        (c, _, None) => ProxyState::Not(format!("/healthz answered {c}")),
    }
}

/// Asks the kube-proxy of the node whose network namespace is `netns`.
fn ask_proxy(netns: &str) -> ProxyState {
    let addr = SocketAddr::from(([127, 0, 0, 1], PROXY_HEALTHZ_PORT));
    let answer = crate::netns::connect_in_netns(netns, addr, Duration::from_secs(1))
        .and_then(|s| http_get(s, "/healthz").context("GET /healthz"));
    match answer {
        Ok((code, body)) => proxy_state(code, &body),
        Err(e) => ProxyState::Not(format!("no answer on {addr}: {e:#}")),
    }
}

/// Waits until the kube-proxy of every node in `netns_of_nodes` has programmed its rules;
/// otherwise fails naming each node that has not, and why (its last sync error).
pub async fn wait_proxies(nodes: &[String], limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut not: Vec<(String, String)>;
    loop {
        let list = nodes.to_vec();
        not = tokio::task::spawn_blocking(move || {
            list.into_iter()
                .filter_map(|n| match ask_proxy(&n) {
                    ProxyState::Programmed => None,
                    ProxyState::Not(why) => Some((n, why)),
                })
                .collect()
        })
        .await?;
        if not.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lines: Vec<String> = not.iter().map(|(n, why)| format!("  {n}: {why}")).collect();
    bail!(
        "{}/{} kube-proxies did not program their rules within {limit:?}:\n{}",
        not.len(),
        nodes.len(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_state_from_healthz() {
        let ok = r#"{"lastUpdated":"x","currentTime":"x","synced":true,"lastError":null}"#;
        assert_eq!(proxy_state(200, ok), ProxyState::Programmed);
        let failing =
            r#"{"synced":false,"lastError":"could not run nft: No such file or directory"}"#;
        assert_eq!(
            proxy_state(503, failing),
            ProxyState::Not(
                "last sync failed: could not run nft: No such file or directory".into()
            )
        );
        // Healthy by upstream's rule (nothing late yet) but never synced: not programmed.
        assert_eq!(
            proxy_state(200, failing),
            ProxyState::Not(
                "last sync failed: could not run nft: No such file or directory".into()
            )
        );
        assert_eq!(
            proxy_state(200, r#"{"synced":false,"lastError":null}"#),
            ProxyState::Not("no sync yet".into())
        );
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("zl-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("log");
        std::fs::write(&f, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&f, 2), "b\nc");
        assert_eq!(log_tail(&dir.join("none"), 2), "");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
