//! Root-only: the `upstream` and `shared-map` nftables layouts behave the same in the kernel.
//! For each layout it builds a node namespace with the rules, an off-cluster client namespace,
//! a gateway namespace that answers on every service-CIDR address (so a REJECT or DROP is the
//! rules' doing, checked before they are applied) and four pod namespaces (routed /32 veths,
//! as the lab wires pods), runs TCP servers in the pods and clients in the client and a pod
//! (helper processes: this test binary re-run inside a namespace with `ip netns exec`), and
//! checks: uniform endpoint choice (chi-square),
//! masquerade of off-cluster sources only, hairpin masquerade, REJECT without endpoints, DROP
//! of unallocated ClusterIPs, the serving-terminating fallback, and that a partial sync leaves
//! an established connection alone. Namespaces are `zlnm-<pid>-<layout>-*`, removed by a Drop
//! guard (also after a panic); every connection has a timeout and every helper a deadline.
//! Reported as ignored without root, `nft` or `ip` (see build.rs); under CI it fails instead.

use runtime::Moment;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proxy::apply::{NftApplier, RuleApplier};
use proxy::fixtures::{ep, ep_cond, service, slice};
use proxy::nft::{NftConfig, NftLayout, NftRenderer};
use proxy::{Cidr, Plan, PlanConfig, Tracker};

const P80: &[(&str, u16, &str)] = &[("http", 80, "TCP")];
const P8080: &[(&str, u16, &str)] = &[("http", 8080, "TCP")];
const NODE_IP: &str = "192.168.77.1";
/// The Service with all four pods as endpoints.
const SPREAD: &str = "172.30.0.10:80";
const CLIENT_IP: &str = "192.168.77.2";
/// The node's default gateway, which also answers on every service-CIDR address: what the
/// REJECT and DROP rules stop would otherwise reach it and be answered.
const GATEWAY_IP: &str = "192.168.78.2";
const PODS: usize = 4;
/// How long any helper process lives at most.
const HELPER_DEADLINE: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Connections per source for the distribution check.
const SAMPLES: usize = 400;
/// Chi-square, 3 degrees of freedom, p = 0.001: a uniform choice fails 1 run in 1,000.
const CHI2_CRITICAL_DF3: f64 = 16.27;

fn pod_ip(i: usize) -> String {
    format!("10.244.1.{}", 10 + i)
}

/// Namespaces and helper processes of one layout's topology; dropping kills and removes them.
struct Topo {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Topo {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn ip_batch(netns: Option<&str>, lines: &[String]) {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.join("\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("ip -batch");
    assert!(
        out.status.success(),
        "ip -batch in {netns:?} failed: {}\n{lines:#?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Topo {
    fn node(&self) -> String {
        format!("{}-node", self.prefix)
    }
    fn client(&self) -> String {
        format!("{}-client", self.prefix)
    }
    fn pod(&self, i: usize) -> String {
        format!("{}-p{i}", self.prefix)
    }
    fn gateway(&self) -> String {
        format!("{}-gw", self.prefix)
    }

    fn build(tag: &str) -> Topo {
        let prefix = format!("zlnm-{}-{tag}", std::process::id());
        let mut t = Topo {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let mut names = vec![t.node(), t.client(), t.gateway()];
        names.extend((0..PODS).map(|i| t.pod(i)));
        for ns in &names {
            // A leftover of a crashed run with the same pid goes first.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        t.namespaces = names.clone();
        ip_batch(
            None,
            &names
                .iter()
                .map(|n| format!("netns add {n}"))
                .collect::<Vec<_>>(),
        );
        let node = t.node();
        let client = t.client();
        let mut node_lines = vec![
            "link set lo up".to_string(),
            format!("link add eth-c type veth peer name eth0 netns {client}"),
            format!("addr add {NODE_IP}/24 dev eth-c"),
            "link set eth-c up".to_string(),
            format!(
                "link add eth-g type veth peer name eth0 netns {}",
                t.gateway()
            ),
            "addr add 192.168.78.1/24 dev eth-g".to_string(),
            "link set eth-g up".to_string(),
            format!("route add default via {GATEWAY_IP}"),
        ];
        for i in 0..PODS {
            node_lines.push(format!(
                "link add zvp{i} address ee:ee:ee:ee:ee:ee type veth peer name eth0 netns {}",
                t.pod(i)
            ));
            node_lines.push(format!("link set zvp{i} up"));
            node_lines.push(format!("route add {}/32 dev zvp{i} scope link", pod_ip(i)));
        }
        ip_batch(Some(&node), &node_lines);
        ip_batch(
            Some(&client),
            &[
                "link set lo up".to_string(),
                format!("addr add {CLIENT_IP}/24 dev eth0"),
                "link set eth0 up".to_string(),
                format!("route add default via {NODE_IP}"),
            ],
        );
        ip_batch(
            Some(&t.gateway()),
            &[
                "link set lo up".to_string(),
                format!("addr add {GATEWAY_IP}/24 dev eth0"),
                "link set eth0 up".to_string(),
                "route add default via 192.168.78.1".to_string(),
                "route add local 172.30.0.0/16 dev lo".to_string(),
            ],
        );
        for i in 0..PODS {
            t.wire_pod(i);
        }
        let sysctl = Command::new("ip")
            .args(["netns", "exec", &node, "sysctl", "-qw"])
            .args([
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ])
            .status()
            .expect("sysctl");
        assert!(sysctl.success());
        for i in 0..PODS {
            let child = t.start_server(&t.pod(i), 8080);
            t.children.push(child);
        }
        let child = t.start_server(&t.gateway(), 80);
        t.children.push(child);
        t
    }

    /// A pod as the lab wires it: a /32, the gateway 169.254.1.1 at the node's veth MAC.
    fn wire_pod(&self, i: usize) {
        ip_batch(
            Some(&self.pod(i)),
            &[
                "link set lo up".to_string(),
                format!("addr add {}/32 dev eth0", pod_ip(i)),
                "link set eth0 up".to_string(),
                "neigh add 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent".to_string(),
                "route add 169.254.1.1 dev eth0 scope link".to_string(),
                "route add default via 169.254.1.1 dev eth0".to_string(),
            ],
        );
    }

    /// Starts the echo helper in `netns` on `port` and waits until it listens.
    fn start_server(&self, netns: &str, port: u16) -> Child {
        let mut child = helper(netns, "helper_serve")
            .env("ZLNM_PORT", port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("server helper");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|l| l.is_ok_and(|l| l.contains("ZLNM listening")));
        assert!(ready, "server in {netns} did not start");
        child
    }

    /// Runs `count` connections from `netns` to `target`; one outcome per connection.
    fn connect(&self, netns: &str, target: &str, count: usize) -> Vec<Outcome> {
        let out = helper(netns, "helper_connect")
            .env("ZLNM_TARGET", target)
            .env("ZLNM_COUNT", count.to_string())
            .stdout(Stdio::piped())
            .output()
            .expect("client helper");
        let text = String::from_utf8_lossy(&out.stdout);
        let outcomes: Vec<Outcome> = text
            .lines()
            .filter_map(zlnm_line)
            .map(Outcome::parse)
            .collect();
        assert_eq!(outcomes.len(), count, "client output: {text}");
        outcomes
    }
}

/// A helper's output line (libtest may print `test NAME ... ` in front of it).
fn zlnm_line(l: &str) -> Option<&str> {
    l.find("ZLNM ").map(|i| &l[i + 5..])
}

/// This test binary re-run in `netns` as the helper test `name`.
fn helper(netns: &str, name: &str) -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .arg(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZLNM_HELPER", "1")
        .stderr(Stdio::null());
    cmd
}

/// One connection's result: which pod answered and whom it saw as the client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Answered { server: String, peer: String },
    Refused,
    TimedOut,
    Error(String),
}

impl Outcome {
    fn parse(l: &str) -> Outcome {
        let w: Vec<&str> = l.split(' ').collect();
        match w.as_slice() {
            ["ok", server, peer] => Outcome::Answered {
                server: server.to_string(),
                peer: peer.to_string(),
            },
            ["refused"] => Outcome::Refused,
            ["timeout"] => Outcome::TimedOut,
            _ => Outcome::Error(l.to_string()),
        }
    }

    fn line(&self) -> String {
        match self {
            Outcome::Answered { server, peer } => format!("ok {server} {peer}"),
            Outcome::Refused => "refused".into(),
            Outcome::TimedOut => "timeout".into(),
            Outcome::Error(e) => format!("error {e}"),
        }
    }
}

fn exchange(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"hello\n")?;
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.read_line(&mut line)?;
    Ok(line.trim().to_string())
}

fn dial(target: SocketAddr) -> (Outcome, Option<TcpStream>) {
    match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(CONNECT_TIMEOUT));
            match exchange(&mut s) {
                Ok(l) => (Outcome::parse(&format!("ok {l}")), Some(s)),
                Err(e) => (Outcome::Error(e.to_string()), None),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => (Outcome::Refused, None),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => (Outcome::TimedOut, None),
        Err(e) => (Outcome::Error(e.to_string()), None),
    }
}

/// Helper process: a TCP server on `ZLNM_PORT` answering every line with `<own IP> <peer IP>`.
#[test]
#[ignore = "helper process of the equivalence test (run inside a pod namespace)"]
fn helper_serve() {
    if std::env::var("ZLNM_HELPER").is_err() {
        return;
    }
    let port = std::env::var("ZLNM_PORT").expect("ZLNM_PORT");
    let listener = TcpListener::bind(format!("0.0.0.0:{port}")).expect("bind");
    println!("ZLNM listening");
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(HELPER_DEADLINE.saturating_sub(start.elapsed()));
        std::process::exit(0);
    });
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        std::thread::spawn(move || {
            let (Ok(local), Ok(peer)) = (conn.local_addr(), conn.peer_addr()) else {
                return;
            };
            let _ = conn.set_read_timeout(Some(HELPER_DEADLINE));
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                let reply = format!("{} {}\n", local.ip(), peer.ip());
                if conn.write_all(reply.as_bytes()).is_err() {
                    break;
                }
                line.clear();
            }
        });
    }
}

/// Helper process: `ZLNM_COUNT` connections to `ZLNM_TARGET`, one outcome line each; with
/// `ZLNM_HOLD` one connection kept open: an exchange, then another after a line on stdin.
#[test]
#[ignore = "helper process of the equivalence test (run inside a namespace)"]
fn helper_connect() {
    if std::env::var("ZLNM_HELPER").is_err() {
        return;
    }
    let target: SocketAddr = std::env::var("ZLNM_TARGET")
        .expect("ZLNM_TARGET")
        .parse()
        .expect("addr");
    if std::env::var("ZLNM_HOLD").is_ok() {
        let (first, stream) = dial(target);
        println!("ZLNM {}", first.line());
        let _ = std::io::stdout().flush();
        let mut go = String::new();
        let _ = std::io::stdin().read_line(&mut go);
        let second = match stream {
            Some(mut s) => match exchange(&mut s) {
                Ok(l) => Outcome::parse(&format!("ok {l}")),
                Err(e) => Outcome::Error(e.to_string()),
            },
            None => Outcome::Error("no connection".into()),
        };
        println!("ZLNM {}", second.line());
        return;
    }
    let count: usize = std::env::var("ZLNM_COUNT")
        .expect("ZLNM_COUNT")
        .parse()
        .expect("count");
    for _ in 0..count {
        println!("ZLNM {}", dial(target).0.line());
    }
}

/// The rules of one node: its tracker, plan, renderer and applier.
struct Proxy {
    tracker: Tracker,
    plan: Plan,
    renderer: NftRenderer,
    applier: NftApplier,
    now: Moment,
}

impl Proxy {
    fn new(layout: NftLayout, node_ns: &str) -> Proxy {
        let cfg = NftConfig {
            cluster_cidr: Some(Cidr::parse("10.244.0.0/16").expect("cidr")),
            service_cidrs: vec![Cidr::parse("172.30.0.0/16").expect("cidr")],
            nodeport_ips: vec![NODE_IP.parse().expect("ip")],
            node_ip: Some(NODE_IP.parse().expect("ip")),
            layout,
            ..NftConfig::default()
        };
        let mut tracker = Tracker::new();
        let all: Vec<_> = (0..PODS).map(|i| ep(&pod_ip(i))).collect();
        tracker.apply_service(&service("ns", "spread", "172.30.0.10", P80));
        tracker.apply_slice(&slice("ns", "spread", "spread-1", P8080, all));
        tracker.apply_service(&service("ns", "self", "172.30.0.11", P80));
        tracker.apply_slice(&slice("ns", "self", "self-1", P8080, vec![ep(&pod_ip(0))]));
        tracker.apply_service(&service("ns", "empty", "172.30.0.12", P80));
        tracker.apply_service(&service("ns", "draining", "172.30.0.13", P80));
        let draining = vec![
            ep_cond(&pod_ip(1), false, true, true, None),
            ep_cond(&pod_ip(2), false, false, true, None),
        ];
        tracker.apply_slice(&slice("ns", "draining", "draining-1", P8080, draining));
        tracker.take_changes();
        let plan = Plan::build(&tracker, &PlanConfig::default());
        Proxy {
            tracker,
            plan,
            renderer: NftRenderer::new(cfg),
            applier: NftApplier::new(Some(node_ns.to_string())),
            now: Moment::from_millis(1_000_000),
        }
    }

    fn full_sync(&mut self) -> String {
        let text = self.renderer.render_full_at(&self.plan, self.now);
        self.applier.apply(&text).expect("full sync applies");
        text
    }

    /// Partial sync of what the tracker saw since the last one, then the stale deletes.
    fn partial_sync(&mut self) -> String {
        let changes = self.tracker.take_changes();
        let affected = self
            .plan
            .update(&self.tracker, &PlanConfig::default(), &changes.services);
        self.now += Duration::from_secs(1);
        let text = self
            .renderer
            .render_partial(&self.plan, &affected, self.now);
        self.applier.apply(&text).expect("partial sync applies");
        self.now += Duration::from_secs(1);
        if let Some(del) = self.renderer.render_stale_deletes(self.now) {
            self.applier.apply(&del).expect("stale deletes apply");
        }
        text
    }
}

fn answered(outcomes: &[Outcome]) -> Vec<(String, String)> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Answered { server, peer } => (server.clone(), peer.clone()),
            other => {
                let failed = outcomes
                    .iter()
                    .filter(|o| !matches!(o, Outcome::Answered { .. }));
                panic!(
                    "expected an answer, got {other:?} ({} of {} connections failed)",
                    failed.count(),
                    outcomes.len()
                )
            }
        })
        .collect()
}

fn chi_square(counts: &BTreeMap<String, usize>, n: usize, k: usize) -> f64 {
    let expected = n as f64 / k as f64;
    let missing = k.saturating_sub(counts.len()) as f64 * expected;
    counts
        .values()
        .map(|c| (*c as f64 - expected).powi(2) / expected)
        .sum::<f64>()
        + missing
}

/// What one layout did, for comparing the two.
#[derive(Debug, PartialEq)]
struct Behaviour {
    servers_off_cluster: Vec<String>,
    servers_from_pod: Vec<String>,
    hairpin_peer: String,
    empty: Outcome,
    unallocated: Outcome,
    draining_servers: Vec<String>,
    held_connection_survived: bool,
    servers_after_partial: usize,
}

/// Distinct servers that answered, sorted.
fn servers(v: &[(String, String)]) -> Vec<String> {
    let mut s: Vec<String> = v.iter().map(|(s, _)| s.clone()).collect();
    s.sort();
    s.dedup();
    s
}

/// `SAMPLES` connections from `netns` to the 4-endpoint Service: uniform over the pods, and
/// each seen by the server from `peer_for(server)`.
fn check_choice(
    topo: &Topo,
    layout: NftLayout,
    netns: &str,
    peer_for: impl Fn(&str) -> String,
) -> Vec<String> {
    let got = answered(&topo.connect(netns, SPREAD, SAMPLES));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (server, peer) in &got {
        assert_eq!(
            *peer,
            peer_for(server),
            "{layout:?} from {netns}: answered by {server}"
        );
        *counts.entry(server.clone()).or_default() += 1;
    }
    let chi2 = chi_square(&counts, SAMPLES, PODS);
    assert!(
        chi2 < CHI2_CRITICAL_DF3,
        "{layout:?} from {netns}: not uniform: {counts:?} chi2 {chi2:.1}"
    );
    servers(&got)
}

/// Reads the hold helper's next outcome line.
fn read_outcome(r: &mut BufReader<std::process::ChildStdout>) -> Outcome {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return Outcome::Error("helper ended".into());
        }
        if let Some(o) = zlnm_line(line.trim()) {
            return Outcome::parse(o);
        }
    }
}

/// An established connection (off-cluster client) across a partial sync that removes
/// another endpoint of its Service: it keeps working, and new connections no longer reach
/// the removed endpoint. Returns whether it survived and how many servers answer afterwards.
fn check_partial_sync(topo: &Topo, proxy: &mut Proxy, layout: NftLayout) -> (bool, usize) {
    let mut hold = helper(&topo.client(), "helper_connect")
        .env("ZLNM_TARGET", SPREAD)
        .env("ZLNM_HOLD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("hold helper");
    let mut hold_out = BufReader::new(hold.stdout.take().expect("stdout"));
    let before = read_outcome(&mut hold_out);
    let Outcome::Answered { server: held, .. } = before.clone() else {
        let _ = hold.kill();
        let _ = hold.wait();
        panic!("{layout:?}: held connection failed: {before:?}");
    };
    let removed = (0..PODS)
        .map(pod_ip)
        .find(|p| *p != held)
        .expect("another pod");
    let remaining: Vec<_> = (0..PODS)
        .map(pod_ip)
        .filter(|p| *p != removed)
        .map(|p| ep(&p))
        .collect();
    proxy
        .tracker
        .apply_slice(&slice("ns", "spread", "spread-1", P8080, remaining));
    let partial = proxy.partial_sync();
    assert!(!partial.contains("delete table"), "{partial}");
    let _ = hold.stdin.take().expect("stdin").write_all(b"go\n");
    let after = read_outcome(&mut hold_out);
    let _ = hold.kill();
    let _ = hold.wait();
    let mut rest = String::new();
    let _ = hold_out.read_to_string(&mut rest);
    assert_eq!(
        after, before,
        "{layout:?}: established connection disturbed"
    );
    let next = answered(&topo.connect(&topo.client(), SPREAD, 60));
    assert!(
        next.iter().all(|(s, _)| *s != removed),
        "{layout:?}: {removed} still chosen"
    );
    (after == before, servers(&next).len())
}

fn check_layout(layout: NftLayout, tag: &str) -> Behaviour {
    let topo = Topo::build(tag);
    // Without rules the gateway answers on the addresses the rules reject or drop.
    for target in ["172.30.0.12:80", "172.30.0.99:80"] {
        let leaked = answered(&topo.connect(&topo.client(), target, 1));
        let ip = target.split(':').next().unwrap_or_default();
        assert_eq!(
            leaked[0].0, ip,
            "the gateway answers {target} without rules"
        );
    }
    let mut proxy = Proxy::new(layout, &topo.node());
    let full = proxy.full_sync();
    // The layout under test is the one in the kernel.
    let marker = match layout {
        NftLayout::Upstream => "numgen random mod 4 vmap {",
        NftLayout::SharedMap => "goto dispatch-tcp-4",
    };
    assert!(full.contains(marker), "{layout:?}: {full}");

    // Off-cluster client: always masqueraded to the node's IP. Pod 3: its own address is
    // kept, except when it reaches itself (hairpin), which is masqueraded.
    let servers_off_cluster = check_choice(&topo, layout, &topo.client(), |_| NODE_IP.into());
    let servers_from_pod = check_choice(&topo, layout, &topo.pod(3), |server| {
        if server == pod_ip(3) {
            NODE_IP.into()
        } else {
            pod_ip(3)
        }
    });

    // Hairpin: pod 0 through a Service whose only endpoint is pod 0.
    let hairpin = answered(&topo.connect(&topo.pod(0), "172.30.0.11:80", 5));
    assert!(
        hairpin.iter().all(|(s, p)| *s == pod_ip(0) && p == NODE_IP),
        "{hairpin:?}"
    );

    // No endpoints: rejected; an unallocated ClusterIP: dropped (the connect times out).
    let empty = topo.connect(&topo.client(), "172.30.0.12:80", 3);
    assert!(
        empty.iter().all(|o| *o == Outcome::Refused),
        "{layout:?}: {empty:?}"
    );
    let unallocated = topo.connect(&topo.client(), "172.30.0.99:80", 2);
    assert!(
        unallocated.iter().all(|o| *o == Outcome::TimedOut),
        "{layout:?}: {unallocated:?}"
    );

    // Only terminating endpoints: the serving one takes the traffic.
    let draining = answered(&topo.connect(&topo.pod(3), "172.30.0.13:80", 20));
    assert!(
        draining.iter().all(|(s, _)| *s == pod_ip(1)),
        "{layout:?}: {draining:?}"
    );

    let (held_connection_survived, servers_after_partial) =
        check_partial_sync(&topo, &mut proxy, layout);
    Behaviour {
        servers_off_cluster,
        servers_from_pod,
        hairpin_peer: hairpin[0].1.clone(),
        empty: empty[0].clone(),
        unallocated: unallocated[0].clone(),
        draining_servers: servers(&draining),
        held_connection_survived,
        servers_after_partial,
    }
}

#[test]
#[cfg_attr(
    not(zonelab_root),
    ignore = "needs root (network namespaces): run as root; scripts/setup.sh installs the tools"
)]
fn upstream_and_shared_map_layouts_behave_alike_in_the_kernel() {
    use netlab::preflight::{IP, NFT, require_for_test};
    require_for_test(&[IP, NFT]);
    let upstream = check_layout(NftLayout::Upstream, "up");
    let shared = check_layout(NftLayout::SharedMap, "sm");
    assert_eq!(upstream, shared);
}
