//! Running probes (I/O): httpGet and tcpSocket from the agent's own (node) namespace to the pod
//! IP, exec probes via `nsenter --net` in the pod's namespace, each bounded by the probe
//! timeout. Start at [`Prober`].

use std::time::Duration;

use netlab::topology::hash8;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use kubelet::core::{ProbeAction, ProbeOutcome, ProbeRequest};

/// Most bytes read from an HTTP probe's answer (only the status line matters).
const MAX_HTTP_HEAD: usize = 4096;

/// Runs probes; results are sent as `(probe id, outcome)`.
pub trait Prober: Send + Sync {
    fn probe(&self, req: ProbeRequest, results: mpsc::Sender<(u64, ProbeOutcome)>);
}

/// The real prober. Exec probes need the pod namespace name: `<prefix>-p-<hash8(uid)>`.
#[derive(Clone, Debug)]
pub struct NetProber {
    pub netns_prefix: String,
}

impl Prober for NetProber {
    fn probe(&self, req: ProbeRequest, results: mpsc::Sender<(u64, ProbeOutcome)>) {
        let netns = format!("{}-p-{}", self.netns_prefix, hash8(&req.pod.uid));
        tokio::spawn(async move {
            let timeout = req.timeout.max(Duration::from_millis(1));
            let outcome = match tokio::time::timeout(timeout, run(&req.action, &netns)).await {
                Ok(o) => o,
                Err(_) => ProbeOutcome::Failure(format!("timeout after {timeout:?}")),
            };
            let _ = results.send((req.id, outcome)).await;
        });
    }
}

/// Run one probe action (no timeout of its own).
pub async fn run(action: &ProbeAction, netns: &str) -> ProbeOutcome {
    let r = match action {
        ProbeAction::HttpGet {
            host,
            port,
            path,
            scheme,
            headers,
        } => http_get(host, *port, path, scheme, headers).await,
        ProbeAction::TcpSocket { host, port } => TcpStream::connect((host.as_str(), *port))
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        ProbeAction::Exec { command } => exec(netns, command).await,
    };
    match r {
        Ok(()) => ProbeOutcome::Success,
        Err(m) => ProbeOutcome::Failure(m),
    }
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    scheme: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!("scheme {scheme} is not supported"));
    }
    let mut s = TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MAX_HTTP_HEAD];
    let mut n = 0;
    while n < buf.len() && !buf[..n].windows(2).any(|w| w == b"\r\n") {
        let k = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad HTTP answer {:?}", head.lines().next().unwrap_or("")))?;
    // Upstream: 200 <= code < 400 is success.
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

async fn exec(netns: &str, command: &[String]) -> Result<(), String> {
    if command.is_empty() {
        return Err("exec probe has no command".into());
    }
    let argv = netlab::exec::enter_netns_argv(netns, command);
    let status = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("command exited with {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn http_and_tcp_probes_against_a_local_server() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            for code in [200, 503] {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let get = ProbeAction::HttpGet {
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
            scheme: "HTTP".into(),
            headers: vec![],
        };
        assert_eq!(run(&get, "unused").await, ProbeOutcome::Success);
        assert!(matches!(run(&get, "unused").await, ProbeOutcome::Failure(m) if m.contains("503")));
        // Nothing listens any more on a fresh ephemeral port of a dropped listener.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let cport = closed.local_addr().expect("addr").port();
        drop(closed);
        let tcp = ProbeAction::TcpSocket {
            host: "127.0.0.1".into(),
            port: cport,
        };
        assert!(matches!(
            run(&tcp, "unused").await,
            ProbeOutcome::Failure(_)
        ));
    }
}
