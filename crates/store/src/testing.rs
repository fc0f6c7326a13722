//! Test support (cargo feature `testing`): real etcd processes on 127.0.0.1 with free ports in
//! a temporary directory, killed on drop. Start at [`EtcdCluster::start`].
//!
//! Used by this crate's tests and by `zonelab`'s (which start `zonelab server --etcd-servers`
//! against one). Members can be killed with SIGKILL and restarted on the same data directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a cluster may take to elect a leader and answer `/health`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One etcd member process.
pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl EtcdMember {
    /// `http://127.0.0.1:<client port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The member's log file (etcd's stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts the process (again, on the same data directory after [`EtcdMember::kill`]).
    pub fn spawn(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("open {}: {e}", self.log.display()))?;
        let child = Command::new("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn etcd (Debian package etcd-server): {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, then reap. The data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether `/health` answers `"health":"true"` (a leader is known and the member serves).
    pub fn healthy(&self) -> bool {
        http_get(self.client_port, "/health").is_some_and(|b| b.contains("\"health\":\"true\""))
    }

    /// The member's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An etcd cluster of one or more members on 127.0.0.1.
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members (upstream default timers: heartbeat 100 ms, election 1000 ms) and
    /// waits until every one is healthy.
    pub fn start(n: usize) -> Result<EtcdCluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("zonelab-etcd-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let ports = free_ports(2 * n)?;
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let initial: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect();
        let token = dir
            .path()
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut members = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let (client_port, peer_port) = (ports[2 * i], ports[2 * i + 1]);
            let data_dir = dir.path().join(format!("{name}.etcd"));
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-state=new".to_string(),
                format!("--initial-cluster-token={token}"),
                "--logger=zap".to_string(),
                "--log-level=warn".to_string(),
            ];
            members.push(EtcdMember {
                name: name.clone(),
                client_port,
                peer_port,
                log: dir.path().join(format!("{name}.log")),
                data_dir,
                args,
                child: None,
            });
        }
        let mut cluster = EtcdCluster { members, dir };
        for m in &mut cluster.members {
            m.spawn()?;
        }
        cluster.wait_healthy(START_TIMEOUT)?;
        Ok(cluster)
    }

    /// Client URLs of every member.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// The `--etcd-servers` value for this cluster.
    pub fn servers_flag(&self) -> String {
        self.client_urls().join(",")
    }

    /// The directory holding data directories and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until every running member is healthy, or fails after `timeout` naming the
    /// unhealthy members and the tail of their logs.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let sick: Vec<&EtcdMember> = self
                .members
                .iter()
                .filter(|m| m.child.is_some() && !m.healthy())
                .collect();
            if sick.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let why: Vec<String> = sick
                    .iter()
                    .map(|m| {
                        let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                        let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join("\n");
                        format!("{} ({}): {tail}", m.name, m.client_url())
                    })
                    .collect();
                return Err(format!(
                    "etcd not healthy after {timeout:?}: {}",
                    why.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `n` distinct free TCP ports on 127.0.0.1 (held open together so none repeats).
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}")))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| format!("local_addr: {e}"))
        })
        .collect()
}

/// A bounded HTTP/1.0 GET on 127.0.0.1; the response body, or `None`.
fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}
