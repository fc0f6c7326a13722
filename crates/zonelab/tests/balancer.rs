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
    let addr: SocketAddr = addr.parse().expect("addr");
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{CLIENT}")).expect("netns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        (0..n)
            .map(|_| get(TcpStream::connect_timeout(&addr, Duration::from_secs(3))))
            .collect()
    })
    .join()
    .expect("client thread")
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
    let (t1, t2, t3) = ("172.20.0.11", "172.20.0.12", "172.20.1.11");
    use TargetState::{Healthy, Unhealthy};
    wait_for(&status, &[(t1, Healthy), (t2, Healthy), (t3, Healthy)]);

    // Every healthy target of the node's own zone answers; cross-zone off keeps zones apart.
    assert_eq!(
        answered_by("172.20.251.1:80", 30),
        set(&["zlbt-t1", "zlbt-t2"])
    );
    assert_eq!(answered_by("172.20.251.2:80", 10), set(&["zlbt-t3"]));

    // The host reaches a listener through the loopback forwarder.
    let host = get(TcpStream::connect(("127.0.0.1", loopback))).expect("loopback request");
    assert!(["zlbt-t1", "zlbt-t2"].contains(&host.as_str()), "{host}");

    // t1 and t3 fail their checks (dropped) while still serving: no new connections reach
    // them; zone b has no healthy target, so its node leaves DNS (zone a's stays).
    block_health_checks("zlbt-t1", "172.20.0.1", true);
    block_health_checks("zlbt-t3", "172.20.1.1", true);
    wait_for(&status, &[(t1, Unhealthy), (t3, Unhealthy), (t2, Healthy)]);
    assert_eq!(answered_by("172.20.251.1:80", 20), set(&["zlbt-t2"]));
    assert_eq!(
        node_state(&status, "172.20.251.2"),
        Some(lb::NodeState::Unhealthy)
    );
    assert_eq!(
        node_state(&status, "172.20.251.1"),
        Some(lb::NodeState::Healthy)
    );

    // Every target unhealthy: the group fails open, each node routes to all of its zone's.
    block_health_checks("zlbt-t2", "172.20.0.1", true);
    wait_for(
        &status,
        &[(t1, Unhealthy), (t2, Unhealthy), (t3, Unhealthy)],
    );
    assert_eq!(
        answered_by("172.20.251.1:80", 30),
        set(&["zlbt-t1", "zlbt-t2"])
    );
    assert_eq!(answered_by("172.20.251.2:80", 5), set(&["zlbt-t3"]));

    // Checks pass again: healthy after the healthy threshold, routed again.
    for (ns, gw) in [
        ("zlbt-t1", "172.20.0.1"),
        ("zlbt-t2", "172.20.0.1"),
        ("zlbt-t3", "172.20.1.1"),
    ] {
        block_health_checks(ns, gw, false);
    }
    wait_for(&status, &[(t1, Healthy), (t2, Healthy), (t3, Healthy)]);
    assert_eq!(
        answered_by("172.20.251.1:80", 30),
        set(&["zlbt-t1", "zlbt-t2"])
    );
    assert_eq!(
        node_state(&status, "172.20.251.2"),
        Some(lb::NodeState::Healthy)
    );

    // A stopped server: refused checks, unhealthy, no longer routed.
    let t2_echo = &mut topo.children[1];
    t2_echo.kill().expect("kill t2's echo");
    let _ = t2_echo.wait();
    wait_for(&status, &[(t2, Unhealthy)]);
    assert_eq!(answered_by("172.20.251.1:80", 20), set(&["zlbt-t1"]));

    // SIGTERM: the table and the addresses go.
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
