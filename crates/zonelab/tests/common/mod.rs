//! Test harness: runs the real `zonelab server` binary and the installed `kubectl` against it.
#![allow(dead_code)]

pub mod lab;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A `zonelab server` process on a free loopback port.
pub struct ServerProc {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
}

impl ServerProc {
    /// Start the server over `data_dir` (durable) with extra flags; waits until it serves.
    pub fn start(data_dir: &Path, extra: &[&str]) -> ServerProc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zonelab"))
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("ZONELAB_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn zonelab server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read banner");
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .filter(|a| a.contains(':'))
            .unwrap_or_else(|| panic!("server did not start: {line:?}"))
            .to_string();
        ServerProc {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL the server and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A kubectl configured for one server, with its own empty kubeconfig and cache.
pub struct Kubectl {
    pub server: String,
    pub home: tempfile::TempDir,
    /// The kubectl binary run (`kubectl` on the PATH unless [`Kubectl::with_binary`]).
    pub binary: PathBuf,
}

impl Kubectl {
    pub fn new(server: &ServerProc) -> Kubectl {
        Kubectl::with_binary(server, Path::new("kubectl"))
    }

    /// A kubectl running `binary` (e.g. one versioned binary beside the dispatcher).
    pub fn with_binary(server: &ServerProc, binary: &Path) -> Kubectl {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::write(home.path().join("config"), "").expect("kubeconfig");
        Kubectl {
            server: server.url(),
            home,
            binary: binary.to_path_buf(),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.env("KUBECONFIG", self.home.path().join("config"))
            .env("HOME", self.home.path())
            .arg("--server")
            .arg(&self.server)
            .arg("--cache-dir")
            .arg(self.home.path().join("cache"))
            .arg("--request-timeout=20s");
        c
    }

    /// Run kubectl with `args` and optional stdin; returns the output.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.command();
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("kubectl output")
    }

    /// Run kubectl and require success; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// Run kubectl and require failure; returns stderr.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }
}

/// One raw HTTP/1.1 request (Connection: close); returns the status code and the body parsed as
/// JSON (or `Value::String` of the text when it is not JSON).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write head");
    // The server may answer (413) before reading a large body; ignore a broken pipe then.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (code, json)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// True when running as root with every tool of `tools` on the PATH; otherwise prints why the
/// test is skipped.
pub fn root_with(tools: &[&str]) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let found = tools.iter().all(|t| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !root || !found {
        eprintln!("SKIPPED: needs root and {}", tools.join(", "));
    }
    root && found
}
