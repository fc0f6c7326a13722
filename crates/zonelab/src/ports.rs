//! Who listens on a TCP port: parses `/proc/net/tcp{,6}` for listening sockets and maps their
//! inodes to processes through `/proc/<pid>/fd`. The lab uses it to refuse a taken API port at
//! once (naming the process that holds it) and to check that the API server it talks to is the
//! process it started. Start at [`check_free`] and [`pid_listens_on`].

use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The port is taken; `holder` is the process listening on it, when it could be found.
#[derive(Debug, thiserror::Error)]
#[error("{addr} is already in use{}; pick another port (--api-port) or stop it", holder_text(.holder))]
pub struct PortTaken {
    pub addr: SocketAddr,
    pub holder: Option<Holder>,
}

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
}

fn holder_text(h: &Option<Holder>) -> String {
    match h {
        Some(h) => format!(" by pid {} ({})", h.pid, h.command),
        None => String::new(),
    }
}

/// TCP state `LISTEN` in `/proc/net/tcp` (include/net/tcp_states.h: TCP_LISTEN = 10).
const TCP_LISTEN: &str = "0A";

/// Socket inodes listening on `port` in a `/proc/net/tcp` or `/proc/net/tcp6` text.
pub fn listening_inodes(text: &str, port: u16) -> BTreeSet<u64> {
    let want = format!("{port:04X}");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
            let local_port = f.get(1)?.rsplit(':').next()?;
            (local_port.eq_ignore_ascii_case(&want) && *f.get(3)? == TCP_LISTEN)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

fn listening_inodes_here(port: u16) -> BTreeSet<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| listening_inodes(&t, port))
        .collect()
}

/// Socket inodes among `pid`'s open files.
fn socket_inodes_of(pid: u32) -> BTreeSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Whether `pid` holds a socket listening on `port` (in this network namespace).
pub fn pid_listens_on(pid: u32, port: u16) -> bool {
    let listening = listening_inodes_here(port);
    !listening.is_empty() && !socket_inodes_of(pid).is_disjoint(&listening)
}

/// The process listening on `port`, found by one scan of `/proc`.
pub fn holder_of(port: u16) -> Option<Holder> {
    let listening = listening_inodes_here(port);
    if listening.is_empty() {
        return None;
    }
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let pid = pids
        .into_iter()
        .find(|p| !socket_inodes_of(*p).is_disjoint(&listening))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Some(Holder { pid, command })
}

/// Fails when `addr` cannot be bound because something listens there.
pub fn check_free(addr: SocketAddr) -> Result<(), PortTaken> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(PortTaken {
            addr,
            holder: holder_of(addr.port()),
        }),
        // Other errors (no such address, ...) surface when the server binds.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:404C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:404C 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 41299 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn parses_listening_sockets_of_a_port() {
        // 0x404C = 16460: the listening socket only, not the established connection.
        assert_eq!(listening_inodes(TCP, 16460), BTreeSet::from([41234]));
        assert_eq!(listening_inodes(TCP, 22), BTreeSet::from([1111]));
        assert!(listening_inodes(TCP, 80).is_empty());
    }

    #[test]
    fn a_taken_port_names_this_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let err = check_free(addr).unwrap_err();
        let h = err.holder.clone().expect("the holder is found");
        assert_eq!(h.pid, std::process::id());
        assert!(pid_listens_on(std::process::id(), addr.port()));
        assert!(err.to_string().contains(&format!("by pid {}", h.pid)));
        drop(l);
        assert!(check_free(addr).is_ok());
    }
}
