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
            let listener = listen(addr).with_context(|| format!("binding {addr}"))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })?;
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("the bind thread for {netns} panicked"))?
}

/// A listener on `addr` with the backlog Go's `net.Listen` uses (the kernel's
/// `net.core.somaxconn` of the calling thread's namespace), as kube-apiserver's listener has.
/// `std`'s `TcpListener::bind` asks for 128: with 150 agents (each several watches) reconnecting
/// at once the queue overflowed (`TcpExtListenOverflows` 17,761 in the lab's control-plane
/// namespace within 3 minutes) and agents saw `client error (Connect)` and lost lease renewals.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default();
    socket.listen(listen_backlog(&somaxconn))?;
    Ok(socket.into())
}

/// Go's `maxListenerBacklog`: the value of `/proc/sys/net/core/somaxconn`, at most 65535 (the
/// kernel's `u16` before 4.1), `SOMAXCONN` (4096 since Linux 5.4) when unreadable.
fn listen_backlog(somaxconn: &str) -> i32 {
    const SOMAXCONN: i32 = 4096;
    match somaxconn.trim().parse::<i32>() {
        Ok(n) if n > 0 => n.min(65535),
        _ => SOMAXCONN,
    }
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
    fn backlog_is_somaxconn_as_go_reads_it() {
        assert_eq!(listen_backlog("4096\n"), 4096);
        assert_eq!(listen_backlog("100000"), 65535);
        assert_eq!(listen_backlog(""), 4096);
        assert_eq!(listen_backlog("0"), 4096);
    }

    #[test]
    fn listener_takes_connections_beyond_std_backlog() {
        // 200 connections none of which is accepted yet: all complete the handshake only if the
        // backlog is above std's 128.
        let l = listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = l.local_addr().expect("addr");
        let conns: Vec<TcpStream> = (0..200)
            .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect"))
            .collect();
        assert_eq!(conns.len(), 200);
        let (_first, _) = l.accept().expect("accept");
    }

    #[test]
    fn parses_netns_listen() {
        let (ns, addr) = parse_netns_listen("zl1-cp=172.20.250.2:6443").unwrap();
        assert_eq!(ns, "zl1-cp");
        assert_eq!(addr.port(), 6443);
        assert!(parse_netns_listen("nope").is_err());
        assert!(parse_netns_listen("../x=1.2.3.4:5").is_err());
    }
}
