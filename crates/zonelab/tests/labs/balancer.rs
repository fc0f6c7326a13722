//! Integration test (root, network namespaces): `zonelab balancer` in a tiny topology of its
//! own — a balancer namespace routing between a client namespace and three target namespaces
//! running `zonelab echo` (two in zone a, one in zone b). Shows the kernel data path reaching
//! every healthy target, a target whose health checks fail receiving no new connections,
//! cross-zone load balancing off keeping each LB node's traffic in its zone, fail-open when
//! every target is unhealthy, recovery after the healthy threshold, the loopback listener, and
//! removal of the table and addresses on SIGTERM.
//! Reported as ignored without root (see build.rs); under CI it fails instead.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lb::TargetState;
use lb::balancer::Record;

const BIN: &str = env!("CARGO_BIN_EXE_zonelab");
/// The tests share one set of namespace names: one at a time.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// This test's own namespace names (the prefix keeps them apart from every other test's).
const BAL: &str = "zlbt-bal";
const CLIENT: &str = "zlbt-cli";
/// (namespace, zone, address, bridge in the balancer namespace)
const TARGETS: [(&str, &str, &str, &str); 3] = [
    ("zlbt-t1", "a", "172.20.0.11", "br-a"),
    ("zlbt-t2", "a", "172.20.0.12", "br-a"),
    ("zlbt-t3", "b", "172.20.1.11", "br-b"),
];
/// Bound on every wait for a state change.
const WAIT: Duration = Duration::from_secs(30);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, argv: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .expect("run ip netns exec")
}

/// Kills the processes this test started and deletes its namespaces, also after a panic.
struct Topo {
    children: Vec<Child>,
}

impl Topo {
    fn namespaces() -> Vec<&'static str> {
        let mut v = vec![BAL, CLIENT];
        v.extend(TARGETS.iter().map(|t| t.0));
        v
    }

    fn clean() {
        for ns in Topo::namespaces() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }

    /// balancer: br-a 172.20.0.1/24, br-b 172.20.1.1/24, veth to the client 172.20.9.1/24.
    fn build() -> Topo {
        Topo::clean();
        for ns in Topo::namespaces() {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let sysctl = in_ns(BAL, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        assert!(sysctl.status.success());
        for (br, gw) in [("br-a", "172.20.0.1/24"), ("br-b", "172.20.1.1/24")] {
            ip(&["-n", BAL, "link", "add", br, "type", "bridge"]);
            ip(&["-n", BAL, "addr", "add", gw, "dev", br]);
            ip(&["-n", BAL, "link", "set", br, "up"]);
        }
        for (i, (ns, _, addr, br)) in TARGETS.iter().enumerate() {
            let host = format!("vt{i}");
            ip(&[
                "-n", BAL, "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns",
                ns,
            ]);
            ip(&["-n", BAL, "link", "set", &host, "master", br, "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            let gw = if *br == "br-a" {
                "172.20.0.1"
            } else {
                "172.20.1.1"
            };
            ip(&["-n", ns, "route", "add", "default", "via", gw]);
        }
        ip(&[
            "-n", BAL, "link", "add", "vc", "type", "veth", "peer", "name", "eth0", "netns", CLIENT,
        ]);
        ip(&["-n", BAL, "addr", "add", "172.20.9.1/24", "dev", "vc"]);
        ip(&["-n", BAL, "link", "set", "vc", "up"]);
        ip(&["-n", CLIENT, "addr", "add", "172.20.9.10/24", "dev", "eth0"]);
        ip(&["-n", CLIENT, "link", "set", "eth0", "up"]);
        ip(&["-n", CLIENT, "route", "add", "default", "via", "172.20.9.1"]);
        Topo {
            children: Vec::new(),
        }
    }

    fn spawn(&mut self, cmd: &mut Command) -> u32 {
        let child = cmd.spawn().expect("spawn");
        let pid = child.id();
        self.children.push(child);
        pid
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        Topo::clean();
    }
}

/// Health checks come from the balancer's bridge address; drop exactly those in `ns`, so the
/// server keeps answering clients while the balancer sees it dead.
fn block_health_checks(ns: &str, from: &str, blocked: bool) {
    let script = if blocked {
        format!(
            "table inet zlbt\ndelete table inet zlbt\ntable inet zlbt {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  ip saddr {from} tcp dport 8080 drop\n }}\n}}\n"
        )
    } else {
        "table inet zlbt\ndelete table inet zlbt\n".to_string()
    };
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    assert!(child.wait().expect("nft").success());
}

/// One HTTP GET / on a new connection; the answering pod's name, or why not.
fn get(stream: std::io::Result<TcpStream>) -> Result<String, String> {
    let mut s = stream.map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    let json = body.split("\r\n\r\n").nth(1).ok_or("no body")?;
    let v: serde_json::Value = serde_json::from_str(json.trim()).map_err(|e| e.to_string())?;
    Ok(v["pod"].as_str().unwrap_or_default().to_string())
}

/// `n` requests to `addr` from inside the client namespace, each on a new connection.
fn requests(addr: &str, n: usize) -> Vec<Result<String, String>> {
    requests_from(CLIENT, addr, n)
}

/// `n` requests to `addr` from inside `ns`, each on a new connection.
fn requests_from(ns: &'static str, addr: &str, n: usize) -> Vec<Result<String, String>> {
    let addr: SocketAddr = addr.parse().expect("addr");
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        (0..n)
            .map(|_| get(TcpStream::connect_timeout(&addr, Duration::from_secs(3))))
            .collect()
    })
    .join()
    .expect("client thread")
}

/// A keep-alive connection from the client namespace through 172.20.251.1:80 that landed on
/// t1 (new connections pick a target at random; 20 tries miss t1 with probability 2^-20).
fn connection_to_t1() -> TcpStream {
    for _ in 0..20 {
        let mut s = std::thread::spawn(|| {
            let f = std::fs::File::open(format!("/run/netns/{CLIENT}")).expect("netns");
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let addr: SocketAddr = "172.20.251.1:80".parse().expect("addr");
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect")
        })
        .join()
        .expect("connect thread");
        if ask(&mut s).as_deref() == Ok("zlbt-t1") {
            return s;
        }
    }
    panic!("20 connections through 172.20.251.1 never reached t1");
}

/// One keep-alive `GET /` on `s`: the answering pod's name.
fn ask(s: &mut TcpStream) -> Result<String, String> {
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).map_err(|e| e.to_string())?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no content-length")?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(v["pod"].as_str().unwrap_or_default().to_string())
}

fn answered_by(addr: &str, n: usize) -> BTreeSet<String> {
    let all = requests(addr, n);
    let mut pods = BTreeSet::new();
    for r in all {
        pods.insert(r.unwrap_or_else(|e| panic!("a request to {addr} failed: {e}")));
    }
    pods
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Latest state of each target in the status file.
fn states(status: &Path) -> Vec<(String, TargetState)> {
    let text = std::fs::read_to_string(status).unwrap_or_default();
    let summary = lb::status::Summary::from_lines(&text).expect("status file");
    summary
        .targets
        .values()
        .filter_map(|l| match &l.record {
            Record::Target { target, to, .. } => Some((target.clone(), *to)),
            Record::Node { .. } => None,
        })
        .collect()
}

fn node_state(status: &Path, address: &str) -> Option<lb::NodeState> {
    let text = std::fs::read_to_string(status).unwrap_or_default();
    let summary = lb::status::Summary::from_lines(&text).expect("status file");
    summary.nodes.get(address).and_then(|l| match &l.record {
        Record::Node { to, .. } => Some(*to),
        Record::Target { .. } => None,
    })
}

/// Waits (bounded) until every target of `want` is in its state.
fn wait_for(status: &Path, want: &[(&str, TargetState)]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = states(status);
        let ok = want.iter().all(|(t, s)| {
            now.iter()
                .any(|(nt, ns)| nt == &format!("{t}:8080") && ns == s)
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {want:?}; status: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_config(dir: &Path) -> PathBuf {
    let config = "
name: zlbt
nodes:
  - {zone: a, address: 172.20.251.1}
  - {zone: b, address: 172.20.251.2}
listeners:
  - {port: 80, targetGroup: echo}
targetGroups:
  - name: echo
    healthCheck: {protocol: HTTP, path: /healthz, interval: 1s, timeout: 500ms, healthyThreshold: 2, unhealthyThreshold: 2}
    deregistrationDelay: 1s
    targets:
      - {ip: 172.20.0.11, port: 8080, zone: a}
      - {ip: 172.20.0.12, port: 8080, zone: a}
      - {ip: 172.20.1.11, port: 8080, zone: b}
";
    let path = dir.join("lb.yaml");
    std::fs::write(&path, config).expect("write config");
    path
}

fn free_loopback_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn balancer_routes_by_health_and_zone_through_the_kernel() {
    use netlab::preflight::{IP, NFT, SYSCTL};
    netlab::preflight::require_for_test(&[IP, NFT, SYSCTL]);
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut topo = Topo::build();
    for (ns, zone, _, _) in TARGETS {
        topo.spawn(
            Command::new("ip")
                .args(["netns", "exec", ns, BIN, "echo", "--port", "8080"])
                .env("POD_NAME", ns)
                .env("ZONE", zone),
        );
    }
    let status = dir.path().join("status.jsonl");
    let loopback = free_loopback_port();
    let config = write_config(dir.path());
    let balancer = topo.spawn(
        Command::new(BIN)
            .arg("balancer")
            .arg("--config")
            .arg(&config)
            .args(["--netns", BAL, "--status-file"])
            .arg(&status)
            .arg("--listen-loopback")
            .arg(format!("127.0.0.1:{loopback}=172.20.251.1:80"))
            .env("ZONELAB_LOG", "warn"),
    );
    wait_for(&status, &[(T1, Healthy), (T2, Healthy), (T3, Healthy)]);
    zones_and_loopback(loopback);
    let mut kept = connection_to_t1();
    failed_checks_then_fail_open(&status, &mut kept);
    recovery_then_a_stopped_server(&mut topo, &status);
    removal_on_sigterm(&mut topo, balancer);
}

const T1: &str = "172.20.0.11";
const T2: &str = "172.20.0.12";
const T3: &str = "172.20.1.11";
use TargetState::{Healthy, Unhealthy};

/// Every healthy target of the node's own zone answers; cross-zone off keeps zones apart; the
/// host reaches a listener through the loopback forwarder.
fn zones_and_loopback(loopback: u16) {
    let zone_a = set(&["zlbt-t1", "zlbt-t2"]);
    assert_eq!(answered_by("172.20.251.1:80", 30), zone_a);
    assert_eq!(answered_by("172.20.251.2:80", 10), set(&["zlbt-t3"]));
    let host = get(TcpStream::connect(("127.0.0.1", loopback))).expect("loopback request");
    assert!(zone_a.contains(&host), "{host}");
}

/// t1 and t3 fail their checks (dropped) while still serving: no new connections reach them;
/// zone b has no healthy target, so its node leaves DNS (zone a's stays). Then every target is
/// unhealthy: the group fails open, each node routes to all of its zone's targets.
/// An established connection keeps its target through every table replacement (conntrack
/// holds its NAT), while new connections skip the target.
fn failed_checks_then_fail_open(status: &Path, kept: &mut TcpStream) {
    block_health_checks("zlbt-t1", "172.20.0.1", true);
    block_health_checks("zlbt-t3", "172.20.1.1", true);
    wait_for(status, &[(T1, Unhealthy), (T3, Unhealthy), (T2, Healthy)]);
    assert_eq!(answered_by("172.20.251.1:80", 20), set(&["zlbt-t2"]));
    assert_eq!(ask(kept), Ok("zlbt-t1".to_string()));
    let unhealthy = Some(lb::NodeState::Unhealthy);
    assert_eq!(node_state(status, "172.20.251.2"), unhealthy);
    assert_eq!(
        node_state(status, "172.20.251.1"),
        Some(lb::NodeState::Healthy)
    );

    block_health_checks("zlbt-t2", "172.20.0.1", true);
    wait_for(status, &[(T1, Unhealthy), (T2, Unhealthy), (T3, Unhealthy)]);
    assert_eq!(
        answered_by("172.20.251.1:80", 30),
        set(&["zlbt-t1", "zlbt-t2"])
    );
    assert_eq!(answered_by("172.20.251.2:80", 5), set(&["zlbt-t3"]));
}

/// Checks pass again: healthy after the healthy threshold, routed again. Then a stopped
/// server: refused checks, unhealthy, no longer routed.
fn recovery_then_a_stopped_server(topo: &mut Topo, status: &Path) {
    for (ns, gw) in [
        ("zlbt-t1", "172.20.0.1"),
        ("zlbt-t2", "172.20.0.1"),
        ("zlbt-t3", "172.20.1.1"),
    ] {
        block_health_checks(ns, gw, false);
    }
    wait_for(status, &[(T1, Healthy), (T2, Healthy), (T3, Healthy)]);
    assert_eq!(
        answered_by("172.20.251.1:80", 30),
        set(&["zlbt-t1", "zlbt-t2"])
    );
    assert_eq!(
        node_state(status, "172.20.251.2"),
        Some(lb::NodeState::Healthy)
    );

    let t2_echo = &mut topo.children[1];
    t2_echo.kill().expect("kill t2's echo");
    let _ = t2_echo.wait();
    wait_for(status, &[(T2, Unhealthy)]);
    assert_eq!(answered_by("172.20.251.1:80", 20), set(&["zlbt-t1"]));
}

/// SIGTERM: the balancer stops and takes its table and addresses with it.
fn removal_on_sigterm(topo: &mut Topo, balancer: u32) {
    let term = Command::new("kill")
        .args(["-TERM", &balancer.to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let deadline = Instant::now() + WAIT;
    while topo.children[3].try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the balancer did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = in_ns(BAL, &["nft", "list", "table", "ip", "zonelab-lb-zlbt"]);
    assert!(!table.status.success(), "the table is left behind");
    let addrs = in_ns(BAL, &["ip", "-4", "addr", "show", "dev", "lo"]);
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(
        !addrs.contains("172.20.251."),
        "addresses left behind: {addrs}"
    );
}

/// Waits (bounded) until the balancer's table does (or does not) masquerade.
fn wait_for_masquerade(present: bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = in_ns(BAL, &["nft", "list", "table", "ip", "zonelab-lb-zlbt"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.contains("masquerade") == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "table never had masquerade={present}: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client on the same bridge as its target (a node calling an API server of its own zone):
/// with client IPs preserved the target answers straight over the bridge, around the
/// balancer's conntrack, and the client never sees a reply; `preserveClientIp: false`
/// masquerades and it works. `bridge-nf-call-iptables=0` makes the balancer's namespace behave
/// like a host without br_netfilter. Also shows a SIGHUP reload.
#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn same_subnet_clients_need_masquerade() {
    use netlab::preflight::{IP, NFT, SYSCTL};
    netlab::preflight::require_for_test(&[IP, NFT, SYSCTL]);
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut topo = Topo::build();
    if Path::new("/proc/sys/net/bridge").exists() {
        let off = in_ns(
            BAL,
            &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"],
        );
        assert!(off.status.success());
    }
    topo.spawn(
        Command::new("ip")
            .args(["netns", "exec", "zlbt-t2", BIN, "echo", "--port", "8080"])
            .env("POD_NAME", "zlbt-t2"),
    );
    let config = |preserve: bool| {
        format!(
            "
name: zlbt
nodes: [{{zone: a, address: 172.20.251.1}}]
listeners: [{{port: 80, targetGroup: echo}}]
targetGroups:
  - name: echo
    preserveClientIp: {preserve}
    healthCheck: {{interval: 1s, timeout: 500ms, healthyThreshold: 2, unhealthyThreshold: 2}}
    targets: [{{ip: 172.20.0.12, port: 8080, zone: a}}]
"
        )
    };
    let path = dir.path().join("lb.yaml");
    std::fs::write(&path, config(false)).expect("write");
    let status = dir.path().join("status.jsonl");
    let balancer = topo.spawn(
        Command::new(BIN)
            .arg("balancer")
            .arg("--config")
            .arg(&path)
            .args(["--netns", BAL, "--status-file"])
            .arg(&status)
            .env("ZONELAB_LOG", "warn"),
    );
    wait_for(&status, &[("172.20.0.12", TargetState::Healthy)]);
    wait_for_masquerade(true);
    let masqueraded = requests_from("zlbt-t1", "172.20.251.1:80", 5);
    assert!(
        masqueraded.iter().all(|r| r.as_deref() == Ok("zlbt-t2")),
        "{masqueraded:?}"
    );
    std::fs::write(&path, config(true)).expect("write");
    let hup = Command::new("kill")
        .args(["-HUP", &balancer.to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    wait_for_masquerade(false);
    let preserved = requests_from("zlbt-t1", "172.20.251.1:80", 1);
    assert!(preserved[0].is_err(), "{preserved:?}");
    // The client in its own subnet still works: its replies are routed through the balancer.
    assert_eq!(
        requests("172.20.251.1:80", 3),
        vec![Ok("zlbt-t2".to_string()); 3]
    );
}
