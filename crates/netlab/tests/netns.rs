//! Root-only integration tests: real labs in network namespaces (reported as ignored without root or
//! the tools, see build.rs; under CI they fail instead). Start at `two_zone_lab_faults_and_teardown`.
//!
//! Every lab uses a prefix unique to this test process and is torn down by a guard, also when a
//! test panics. Traffic stays inside the lab's namespaces.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlab::{Lab, LabSpec, ProcSpec, SystemRunner, Topology};

const ECHO_PORT: &str = "7000";

/// Threaded TCP echo server on ECHO_PORT.
const SERVER: &str = r#"
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000))
s.listen(64)
def serve(c):
    with c:
        while True:
            d = c.recv(4096)
            if not d:
                return
            c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// One connect + echo round trip; prints ok|timeout|refused|reset|error:...
const CLIENT: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.sendall(b"ping")
    d = c.recv(16)
    print("ok" if d == b"ping" else "bad:" + repr(d))
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except ConnectionResetError:
    print("reset")
except OSError as e:
    print("error:" + str(e))
"#;

fn python() -> String {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

/// What these tests need besides root (the same list `build.rs` checks).
const TOOLS: [netlab::preflight::Tool; 5] = {
    use netlab::preflight::{IP, KILL, NFT, PYTHON3, SYSCTL};
    [IP, NFT, SYSCTL, KILL, PYTHON3]
};

/// Fails the test with the preflight's message when root or a tool is missing: it only runs
/// where `build.rs` found them (`cfg(zonelab_root)`), or under CI, where it must not pass.
macro_rules! require_root_tools {
    () => {
        netlab::preflight::require_for_test(&TOOLS)
    };
}

/// `<tag><4 base36 digits of the pid>`: unique per test process, <= 5 chars.
fn prefix(tag: char) -> String {
    let mut n = std::process::id() % 36u32.pow(4);
    let mut digits = Vec::new();
    for _ in 0..4 {
        digits.push(std::char::from_digit(n % 36, 36).unwrap_or('0'));
        n /= 36;
    }
    digits.reverse();
    format!("{tag}{}", digits.into_iter().collect::<String>())
}

fn state_dir() -> PathBuf {
    std::env::temp_dir().join("netlab-it")
}

fn spec(prefix: &str, zones: &[&str], nodes: u32) -> Topology {
    let zones = zones.iter().map(|z| z.to_string()).collect();
    Topology::new(&LabSpec {
        prefix: prefix.into(),
        zones,
        nodes_per_zone: nodes,
    })
    .expect("valid spec")
}

/// Tears the lab down when the test ends, also on panic.
struct Guard(Lab);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            eprintln!("lab down failed: {e}");
        }
    }
}

impl std::ops::Deref for Guard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.0
    }
}

fn lab_netns(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    netlab::plan::owned_namespaces(prefix, &netlab::plan::parse_netns_list(&text))
}

/// One echo round trip from `netns` to `ip` with a connect/read bound of `secs`.
fn probe(lab: &Lab, netns: &str, ip: &str, secs: &str) -> String {
    let argv = [
        python(),
        "-c".into(),
        CLIENT.into(),
        ip.into(),
        ECHO_PORT.into(),
        secs.into(),
    ];
    match lab.exec(netns, &argv, Duration::from_secs(10)) {
        Ok(out) => out.stdout.trim().to_string(),
        Err(e) => format!("exec failed: {e}"),
    }
}

/// Probe until "ok" (servers need a moment to start), at most `tries` times.
fn probe_until_ok(lab: &Lab, netns: &str, ip: &str, tries: u32) -> String {
    let mut last = String::new();
    for _ in 0..tries {
        last = probe(lab, netns, ip, "1");
        if last == "ok" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

fn echo_server(name: &str, netns: &str) -> ProcSpec {
    ProcSpec {
        name: name.into(),
        netns: netns.into(),
        argv: vec![python(), "-c".into(), SERVER.into()],
        env: vec![],
    }
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn two_zone_lab_faults_and_teardown() {
    require_root_tools!();
    let p = prefix('t');
    let topo = spec(&p, &["a", "b"], 2);
    let started = Instant::now();
    let mut lab = Guard(Lab::up(&topo, Arc::new(SystemRunner), &state_dir()).expect("lab up"));
    eprintln!("2x2 lab up in {:?}", started.elapsed());
    let (a1, b1, b2) = (format!("{p}-a-1"), format!("{p}-b-1"), format!("{p}-b-2"));

    let client = lab.add_pod(&a1, "default/client").expect("client pod");
    let local = lab.add_pod(&a1, "default/local").expect("same-node pod");
    let server = lab.add_pod(&b1, "default/server").expect("server pod");
    let peer_b2 = lab.add_pod(&b2, "default/peer").expect("zone-b pod");
    let (server_ip, local_ip) = (server.ip.to_string(), local.ip.to_string());

    // The host veth inherited proxy ARP from the node's defaults.
    let sysctl = format!("/proc/sys/net/ipv4/conf/{}/proxy_arp", client.host_veth);
    let arp = lab
        .exec(&a1, &["cat", sysctl.as_str()], Duration::from_secs(5))
        .expect("cat");
    assert_eq!(arp.stdout.trim(), "1");

    lab.start_process(&echo_server("echo-b", &server.netns))
        .expect("server b");
    lab.start_process(&echo_server("echo-local", &local.netns))
        .expect("server local");
    let cp = topo.control_plane.clone();
    let cp_ip = cp.ip.to_string();
    lab.start_process(&echo_server("echo-cp", &cp.netns))
        .expect("server cp");
    assert_eq!(
        probe_until_ok(&lab, &a1, &cp_ip, 15),
        "ok",
        "node to control plane"
    );
    assert_eq!(
        probe_until_ok(&lab, &client.netns, &server_ip, 15),
        "ok",
        "pod to pod across zones"
    );
    assert_eq!(
        probe_until_ok(&lab, &client.netns, &local_ip, 15),
        "ok",
        "pod to pod on one node"
    );
    assert_eq!(
        probe(&lab, &peer_b2.netns, &server_ip, "1"),
        "ok",
        "pod to pod inside zone b"
    );

    lab.partition_zone("b").expect("partition");
    assert_eq!(
        probe(&lab, &client.netns, &server_ip, "2"),
        "timeout",
        "partition drops silently"
    );
    assert_eq!(
        probe(&lab, &peer_b2.netns, &server_ip, "1"),
        "ok",
        "zone b still talks to itself"
    );
    assert_eq!(
        probe(&lab, &b2, &cp_ip, "2"),
        "timeout",
        "partitioned zone loses the control plane"
    );
    assert_eq!(
        probe(&lab, &client.netns, &local_ip, "1"),
        "ok",
        "zone a unaffected"
    );
    lab.heal_zone("b").expect("heal zone");
    assert_eq!(
        probe_until_ok(&lab, &client.netns, &server_ip, 5),
        "ok",
        "healed zone"
    );

    lab.isolate_node(&b1).expect("isolate");
    assert_eq!(
        probe(&lab, &client.netns, &server_ip, "2"),
        "timeout",
        "isolated across zones"
    );
    assert_eq!(
        probe(&lab, &peer_b2.netns, &server_ip, "2"),
        "timeout",
        "isolated inside zone"
    );
    lab.heal_node(&b1).expect("heal node");
    assert_eq!(
        probe_until_ok(&lab, &client.netns, &server_ip, 5),
        "ok",
        "healed node"
    );

    // A pod wired by a node agent without the lab's bookkeeping is still powered off.
    let node_b1 = topo.node(&b1).expect("node");
    let agent_pod = topo.pod_net(node_b1, "default/agent-wired", 200);
    netlab::wire_pod(&**lab.runner(), &agent_pod).expect("wire pod");
    let sleeper = ProcSpec {
        name: "agent-pod".into(),
        netns: agent_pod.netns.clone(),
        argv: vec!["sleep".into(), "30".into()],
        env: vec![],
    };
    let sleeper_pid = lab.start_process(&sleeper).expect("sleeper").pid;

    let server_pid = lab.process("echo-b").expect("record").pid;
    let killed = lab.power_off_node(&b1).expect("power off");
    assert!(
        killed.contains(&server_pid),
        "power off killed the server: {killed:?}"
    );
    assert!(
        killed.contains(&sleeper_pid),
        "power off killed the agent-wired pod: {killed:?}"
    );
    assert!(!lab.process_alive("echo-b"));
    assert!(!lab.process_alive("agent-pod"));
    assert_eq!(
        probe(&lab, &client.netns, &server_ip, "2"),
        "timeout",
        "powered-off node is silent"
    );
    lab.power_on_node(&b1).expect("power on");
    assert_eq!(
        probe(&lab, &client.netns, &server_ip, "2"),
        "refused",
        "back, but nothing listens"
    );

    let status = lab.status().expect("status");
    assert_eq!(status.namespaces.len(), 6 + 5);
    assert!(
        status
            .processes
            .iter()
            .any(|p| p.record.name == "echo-cp" && p.alive)
    );
    let local_pid = lab.process("echo-local").expect("record").pid;
    lab.down().expect("down");
    lab.down().expect("down is idempotent");
    assert!(
        lab_netns(&p).is_empty(),
        "no namespace with prefix {p} left"
    );
    assert!(
        !netlab::procs::pid_alive(local_pid, None),
        "server stopped by down"
    );
    assert!(!state_dir().join(&p).exists(), "state removed");
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn up_clears_leftovers_of_a_crashed_run() {
    require_root_tools!();
    let p = prefix('u');
    let topo = spec(&p, &["a"], 1);
    let node = format!("{p}-a-1");
    let mut crashed = Lab::up(&topo, Arc::new(SystemRunner), &state_dir()).expect("first up");
    crashed.add_pod(&node, "default/x").expect("pod");
    let sleeper = ProcSpec {
        name: "sleeper".into(),
        netns: node.clone(),
        argv: vec!["sleep".into(), "30".into()],
        env: vec![],
    };
    let pid = crashed.start_process(&sleeper).expect("sleep").pid;
    drop(crashed); // no down: leftovers stay behind

    let lab = Guard(Lab::up(&topo, Arc::new(SystemRunner), &state_dir()).expect("second up"));
    assert!(
        !netlab::procs::pid_alive(pid, None),
        "leftover process killed"
    );
    assert_eq!(
        lab_netns(&p).len(),
        3,
        "router, control plane, one node; old pod gone"
    );
    drop(lab);
    assert!(lab_netns(&p).is_empty());
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn a_node_added_to_a_running_lab_is_wired_faulted_and_removed() {
    require_root_tools!();
    let p = prefix('g');
    let topo = spec(&p, &["a", "b"], 1);
    let mut lab = Guard(Lab::up(&topo, Arc::new(SystemRunner), &state_dir()).expect("lab up"));
    let (a1, b2) = (format!("{p}-a-1"), format!("{p}-b-2"));
    let added = lab.add_node("b", &b2).expect("add node");
    assert_eq!(added.ip.to_string(), "172.20.1.12");
    // A pod on the new node reaches and is reached like any other: routes both ways.
    let server = lab
        .add_pod(&b2, "default/server")
        .expect("pod on the new node");
    let client = lab.add_pod(&a1, "default/client").expect("pod on a-1");
    lab.start_process(&echo_server("echo-new", &server.netns))
        .expect("server");
    let ip = server.ip.to_string();
    assert_eq!(
        probe_until_ok(&lab, &client.netns, &ip, 15),
        "ok",
        "pod to a pod of the new node"
    );
    lab.start_process(&echo_server("echo-cp", &topo.control_plane.netns))
        .expect("server cp");
    let cp_ip = topo.control_plane.ip.to_string();
    assert_eq!(
        probe_until_ok(&lab, &b2, &cp_ip, 15),
        "ok",
        "new node to control plane"
    );
    // A zone fault covers it.
    lab.partition_zone("b").expect("partition");
    assert_eq!(
        probe(&lab, &client.netns, &ip, "2"),
        "timeout",
        "partition drops silently"
    );
    lab.heal_zone("b").expect("heal");
    assert_eq!(probe_until_ok(&lab, &client.netns, &ip, 15), "ok", "healed");
    // Removed: its processes, its pods' namespaces and its own are gone, the plan forgets it.
    lab.remove_node(&b2).expect("remove node");
    assert!(lab.topology().node(&b2).is_none());
    let left = lab_netns(&p);
    assert!(
        !left.contains(&b2) && !left.contains(&server.netns),
        "namespaces left: {left:?}"
    );
    assert!(lab_netns(&p).contains(&client.netns), "other pods stay");
    drop(lab);
    assert!(lab_netns(&p).is_empty());
}

/// `cargo test -p netlab --test netns -- --ignored --nocapture`: times a 3x10 lab with 300 pods.
#[test]
#[ignore = "benchmark: builds a 30-node lab with 300 pods"]
fn bench_3x10_lab_with_300_pods() {
    require_root_tools!();
    let p = prefix('b');
    let topo = spec(&p, &["a", "b", "c"], 10);
    let t0 = Instant::now();
    let mut lab = Guard(Lab::up(&topo, Arc::new(SystemRunner), &state_dir()).expect("lab up"));
    let up = t0.elapsed();
    let t1 = Instant::now();
    let nodes: Vec<String> = topo.nodes.iter().map(|n| n.name.clone()).collect();
    for (i, node) in nodes.iter().enumerate() {
        for j in 0..10 {
            lab.add_pod(node, &format!("default/pod-{i}-{j}"))
                .expect("pod");
        }
    }
    let pods = t1.elapsed();
    let t2 = Instant::now();
    lab.partition_zone("c").expect("partition");
    lab.heal_zone("c").expect("heal");
    let faults = t2.elapsed();
    let t3 = Instant::now();
    lab.down().expect("down");
    let down = t3.elapsed();
    eprintln!("3x10 lab: up {up:?}, 300 pods {pods:?}, partition+heal {faults:?}, down {down:?}");
    assert!(lab_netns(&p).is_empty());
}
