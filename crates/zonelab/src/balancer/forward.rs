//! `--listen-loopback`: a listener opened in the root namespace on 127.0.0.1 whose connections
//! are dialled onward from the balancer's thread, which is inside the lab namespace, to one of
//! the balancer's listeners (so the kernel's DNAT picks the target). A userspace byte copy, for
//! kubectl and tools on the host only.
//!
//! Start at [`spawn`].

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Most forwarded connections open at once per listener.
const MAX_CONNECTIONS: usize = 256;
/// Bound on dialling the listener inside the namespace.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Keepalive on the inner connection: the client's own keepalive is answered by this process,
/// so without it a connection to a server that died with its zone (packets dropped) would
/// hang here until the client's read timeout; with it the pair closes a few seconds after the
/// server's last sign of life (the lab's watches get a bookmark every second) and the client
/// reconnects through the balancer.
const INNER_KEEPALIVE_IDLE: Duration = Duration::from_secs(3);
const INNER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const INNER_KEEPALIVE_PROBES: u32 = 3;

fn watch_liveness(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(INNER_KEEPALIVE_IDLE)
        .with_interval(INNER_KEEPALIVE_INTERVAL)
        .with_retries(INNER_KEEPALIVE_PROBES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!("forwarding: keepalive: {e}");
    }
}

/// Accept on `listener` forever, forwarding each connection to `to`.
pub fn spawn(listener: TcpListener, to: SocketAddrV4) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (mut inbound, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("loopback accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let _slot = slot;
                let dial = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(to)).await;
                match dial {
                    Ok(Ok(mut outbound)) => {
                        watch_liveness(&outbound);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    Ok(Err(e)) => tracing::debug!("forwarding to {to}: {e}"),
                    Err(_) => tracing::debug!("forwarding to {to}: timed out"),
                }
            });
        }
    });
}
