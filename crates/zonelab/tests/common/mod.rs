//! Test harness: runs the real `zonelab server` binary and the installed `kubectl` against it.
#![allow(dead_code)]

pub mod audit;
pub mod lab;
pub mod scenario;

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
    /// Plain HTTP on loopback (`--insecure-serving`) unless `extra` asks for TLS.
    pub fn start(data_dir: &Path, extra: &[&str]) -> ServerProc {
        let tls = extra
            .iter()
            .any(|a| a.starts_with("--pki-dir") || a.starts_with("--tls-cert-file"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_zonelab"))
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args((!tls).then_some("--insecure-serving"))
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

/// Every versioned kubectl (`kubectl.1.27`, `kubectl.1.28`, …) that sits beside the `kubectl`
/// on the PATH, oldest first, as `(minor, path)`. Says which are missing; under `CI=true`
/// finding none is a failure, not a skip.
pub fn kubectl_versions() -> Vec<(u32, PathBuf)> {
    let dir = Command::new("sh")
        .args(["-c", "dirname \"$(readlink -f \"$(command -v kubectl)\")\""])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut found = Vec::new();
    for minor in 27..=40 {
        let Some(bin) = dir.as_ref().map(|d| d.join(format!("kubectl.1.{minor}"))) else {
            break;
        };
        if bin.exists() {
            found.push((minor, bin));
        } else if minor <= 33 {
            eprintln!("kubectl 1.{minor} not found beside kubectl: not tested");
        }
    }
    if found.is_empty() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "no versioned kubectl (kubectl.1.27 …) beside kubectl; the machine image ships them"
        );
    }
    found
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

/// The store's current revision, as a list of one collection reports it (lists answer at the
/// current revision, whatever they hold).
pub fn store_revision(addr: &str) -> String {
    let (code, list) = http(addr, "GET", "/api/v1/namespaces", "application/json", b"");
    assert_eq!(code, 200, "{list}");
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string()
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
