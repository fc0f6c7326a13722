//! Integration tests of the preflight and of the lab's health checks: `lab up` with `nft`
//! hidden from PATH fails at once naming nftables and builds nothing; `run` with its API port
//! taken fails at once naming the holder; an agent whose kube-proxy cannot program rules answers
//! 503 on `/healthz` with the reason. Start at `lab_up_without_nft_names_nftables_and_builds_nothing`.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_zonelab");

/// Every tool the lab and its agents execute (both proxy modes).
const LAB_TOOLS: [&str; 7] = [
    "ip",
    "nft",
    "iptables-restore",
    "iptables",
    "conntrack",
    "sysctl",
    "kill",
];

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    })
}

/// A PATH directory holding a link to every lab tool this machine has, except `hidden`.
fn path_without(dir: &Path, hidden: &str) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for tool in LAB_TOOLS.iter().filter(|t| **t != hidden) {
        if let Some(real) = which(tool) {
            std::os::unix::fs::symlink(real, bin.join(tool)).expect("symlink");
        }
    }
    bin
}

/// Network namespaces whose name starts with `prefix`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn lab_up_without_nft_names_nftables_and_builds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!("zp{}", std::process::id() % 1000);
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["lab", "--prefix", &prefix, "--state-dir"])
        .arg(dir.path().join("state"))
        .args(["up", "--zones", "2", "--nodes-per-zone", "1"])
        .env("PATH", path_without(dir.path(), "nft"))
        .output()
        .expect("zonelab lab up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "lab up succeeded without nft");
    assert!(
        stderr.contains("`nft` (Debian package nftables"),
        "the error does not name nft and its package: {stderr}"
    );
    // "Within seconds": the preflight ran before anything slow (a lab takes tens of seconds).
    assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");
    assert_eq!(namespaces_with(&format!("{prefix}-")), Vec::<String>::new());
    assert!(
        !dir.path().join("state").join(&prefix).exists(),
        "lab up left state behind"
    );
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn run_with_its_api_port_taken_names_the_holder() {
    netlab::preflight::require_for_test(
        &netlab::preflight::Role::LabHost(netlab::preflight::ProxyMode::Nftables).needs(),
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!("zy{}", std::process::id() % 1000);
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.yaml");
    let out = Command::new(BIN)
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--prefix", &prefix, "--api-port", &port.to_string()])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .expect("zonelab run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "run succeeded on a taken port");
    assert!(
        stderr.contains(&format!(
            "127.0.0.1:{port} is already in use by pid {}",
            std::process::id()
        )),
        "the error does not name the port and its holder: {stderr}"
    );
    assert!(!stderr.contains("control plane:"), "{stderr}");
    assert_eq!(namespaces_with(&format!("{prefix}-")), Vec::<String>::new());
    drop(taken);
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Kills the agent when the test ends.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn agent_healthz_is_503_with_the_reason_when_rules_cannot_be_programmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::ServerProc::start(&dir.path().join("data"), &["--in-memory"]);
    // `nft` that refuses every transaction, as a kernel without nf_tables would; `ip`,
    // `conntrack` and `nsenter` for the agent's preflight (with no pod and no UDP Service it
    // runs none of them).
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let nft = bin.join("nft");
    std::fs::write(
        &nft,
        "#!/bin/sh\necho 'Error: Could not process rule: Operation not supported' >&2\nexit 1\n",
    )
    .expect("write nft");
    std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for tool in ["ip", "conntrack", "nsenter"] {
        let real = which(tool).unwrap_or_else(|| PathBuf::from("/bin/true"));
        std::os::unix::fs::symlink(real, bin.join(tool)).expect("symlink");
    }
    let status = format!("127.0.0.1:{}", free_port());
    let _agent = Agent(
        Command::new(BIN)
            .args(["agent", "--node-name", "hz-1", "--zone", "a"])
            .args(["--node-ip", "127.0.0.1", "--pod-cidr", "10.244.250.0/24"])
            .args(["--server", &server.url(), "--lab-prefix", "zhz"])
            .args(["--sync-period", "1s", "--min-sync-period", "100ms"])
            .args(["--proxy-status-address", &status])
            .arg("--state-dir")
            .arg(dir.path().join("agents"))
            .env("PATH", &bin)
            .env("ZONELAB_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("zonelab agent"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (code, body) = loop {
        let answer = std::net::TcpStream::connect(&status)
            .is_ok()
            .then(|| common::http(&status, "GET", "/healthz", "text/plain", b""));
        if let Some((503, body)) = answer {
            break (503, body);
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never answered 503: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 503);
    assert_eq!(body["synced"], false, "{body}");
    let why = body["lastError"].as_str().unwrap_or_default();
    assert!(
        why.contains("nft exited") && why.contains("Operation not supported"),
        "{body}"
    );
    assert!(body["currentTime"].as_str().is_some(), "{body}");
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn run_says_when_its_server_exits_with_the_end_of_its_log() {
    netlab::preflight::require_for_test(
        &netlab::preflight::Role::LabHost(netlab::preflight::ProxyMode::Nftables).needs(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!("zx{}", std::process::id() % 1000);
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web.yaml");
    let file = dir.path().join("s.yaml");
    // A server flag that clap accepts but the server rejects at start.
    std::fs::write(
        &file,
        format!(
            "name: bad-server\ntopology: {{zones: [a], nodesPerZone: 1}}\nprofile: fast\nflags: {{service-cluster-ip-range: \"10.96.0.0/40\"}}\nworkloads: [{{path: {}}}]\nclients: [{{name: web, target: web, rate: 5, timeout: 1s}}]\nrun: {{duration: 10s}}\n",
            web.display()
        ),
    )
    .expect("write scenario");
    let out = Command::new(BIN)
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--prefix", &prefix, "--api-port", &free_port().to_string()])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .expect("zonelab run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the API server (pid ") && stderr.contains(") exited"),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid --service-cluster-ip-range"),
        "the server's own error is missing: {stderr}"
    );
    assert_eq!(namespaces_with(&format!("{prefix}-")), Vec::<String>::new());
}
