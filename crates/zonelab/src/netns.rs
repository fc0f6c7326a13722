//! Sockets inside another network namespace: a listener is bound on a short-lived OS thread
//! that entered the namespace (`setns` changes only the calling thread), and keeps working
//! after that thread is gone. Never done on a tokio worker.
//!
//! Start at [`bind_in_netns`] and [`connect_in_netns`].

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::Context;
use nix::sched::{CloneFlags, setns};

/// Bind a TCP listener on `addr` inside the named network namespace (`/run/netns/<netns>`).
pub fn bind_in_netns(netns: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let path = format!("/run/netns/{netns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    let handle = std::thread::Builder::new()
        .name(format!("bind-{netns}"))
        .spawn(move || -> anyhow::Result<TcpListener> {
            setns(&file, CloneFlags::CLONE_NEWNET).context("entering the network namespace")?;
            let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })?;
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("the bind thread for {netns} panicked"))?
}

/// Connect to `addr` from inside the named network namespace (the lab reads each node's
/// kube-proxy `/healthz` this way); the stream keeps working after the thread is gone.
pub fn connect_in_netns(
    netns: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<TcpStream> {
    let path = format!("/run/netns/{netns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    let handle = std::thread::Builder::new()
        .name(format!("connect-{netns}"))
        .spawn(move || -> anyhow::Result<TcpStream> {
            setns(&file, CloneFlags::CLONE_NEWNET).context("entering the network namespace")?;
            TcpStream::connect_timeout(&addr, timeout)
                .with_context(|| format!("connecting to {addr}"))
        })?;
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("the connect thread for {netns} panicked"))?
}

/// Move the calling thread into the named network namespace. Call it before any other thread
/// exists (e.g. first thing in `main`): threads started later inherit it. Unlike
/// `ip netns exec`, this keeps the mount namespace, so namespaces this process creates with
/// `ip netns add` stay visible to everyone.
pub fn enter(netns: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{netns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {netns}"))?;
    Ok(())
}

/// Parse `NETNS=HOST:PORT`.
pub fn parse_netns_listen(s: &str) -> Result<(String, SocketAddr), String> {
    let (ns, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("want NETNS=HOST:PORT, got {s:?}"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address in {s:?}: {e}"))?;
    if ns.is_empty() || ns.contains('/') {
        return Err(format!("bad namespace name in {s:?}"));
    }
    Ok((ns.to_string(), addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_netns_listen() {
        let (ns, addr) = parse_netns_listen("zl1-cp=172.20.250.2:6443").unwrap();
        assert_eq!(ns, "zl1-cp");
        assert_eq!(addr.port(), 6443);
        assert!(parse_netns_listen("nope").is_err());
        assert!(parse_netns_listen("../x=1.2.3.4:5").is_err());
    }
}
