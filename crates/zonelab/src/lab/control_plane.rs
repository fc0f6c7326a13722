//! The control plane in the zones: on every zone's control-plane host one etcd member and one
//! `zonelab server` (API, controllers and scheduler, leader-elected, storing in the etcd
//! cluster), behind the `lb` balancer in the router namespace (a virtual IP for the agents, a
//! loopback listener for the runner and kubectl, health checks on each server's `/readyz`).
//! Also the etcd leader's zone, read from every member's Maintenance Status.
//!
//! Start at [`start`]; [`restart_zone`] brings a zone's member and server back after a heal,
//! [`leader_zone`] answers `etcd-leader`. The argv builders are pure and tested.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use netlab::Topology;
use serde::{Deserialize, Serialize};

use super::{LAB_API_PORT, ProcId};

/// etcd's client and peer ports (upstream defaults).
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
/// etcd `--heartbeat-interval` and `--election-timeout` in ms: upstream's defaults (etcd.io,
/// "Tuning": 100 ms and 1000 ms), in both profiles, as the issue asks.
pub const ETCD_HEARTBEAT_MS: u32 = 100;
pub const ETCD_ELECTION_TIMEOUT_MS: u32 = 1000;
/// The API's virtual IP in the load balancers' subnet (172.20.251.0/24).
pub const API_VIP: Ipv4Addr = Ipv4Addr::new(172, 20, netlab::topology::LOAD_BALANCER_OCTET, 10);
/// How long connecting to one etcd member may take (a connect inside the lab takes well under
/// a millisecond; a dead member's SYN is dropped, so this bounds each poll during an outage).
const STATUS_CONNECT_TIMEOUT: Duration = Duration::from_millis(150);
/// How long its status answer may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// What `lab up` records about a control plane in the zones (in `lab-config.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZonalControlPlane {
    /// `etcd`.
    pub store: String,
    /// Zones with a member, in topology order.
    pub zones: Vec<String>,
    /// The API's virtual address (agents use it).
    pub vip: SocketAddr,
    /// `--profile` and the extra flags of every server (kept for restarts).
    pub profile: crate::flags::Profile,
    pub server_flags: Vec<String>,
}

/// etcd client URL of `zone`'s member.
pub fn client_url(topo: &Topology, zone: &str) -> Option<String> {
    let h = topo.zone_control_plane(zone)?;
    Some(format!("http://{}:{ETCD_CLIENT_PORT}", h.ip))
}

/// `--etcd-servers`: the zone's own member only, as kubeadm's stacked etcd topology wires each
/// kube-apiserver to its local member. A server whose member loses its leader (the zone cut
/// off) then fails `/readyz` and leaves the balancer, and no server's client can rotate onto a
/// member that died with its zone: with every member listed, a request that got "no leader"
/// during the election moved on to the dead member, and in about one run of five a surviving
/// server stayed stuck there (and out of the balancer) for 40 s.
pub fn etcd_servers(topo: &Topology, zone: &str) -> String {
    client_url(topo, zone).unwrap_or_default()
}

/// The argv of `zone`'s etcd member (data under `dir/etcd-<zone>`).
pub fn etcd_argv(topo: &Topology, zone: &str, dir: &Path) -> anyhow::Result<Vec<String>> {
    let h = topo
        .zone_control_plane(zone)
        .with_context(|| format!("zone {zone:?} has no control-plane host"))?;
    let cluster: Vec<String> = topo
        .zone_control_planes
        .iter()
        .map(|m| format!("{}=http://{}:{ETCD_PEER_PORT}", m.zone, m.ip))
        .collect();
    let peer = format!("http://{}:{ETCD_PEER_PORT}", h.ip);
    let client = format!("http://{}:{ETCD_CLIENT_PORT}", h.ip);
    Ok([
        "etcd",
        "--name",
        zone,
        "--data-dir",
        &dir.join(format!("etcd-{zone}")).display().to_string(),
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--listen-client-urls",
        &format!("{client},http://127.0.0.1:{ETCD_CLIENT_PORT}"),
        "--advertise-client-urls",
        &client,
        "--initial-cluster",
        &cluster.join(","),
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        &topo.prefix,
        "--heartbeat-interval",
        &ETCD_HEARTBEAT_MS.to_string(),
        "--election-timeout",
        &ETCD_ELECTION_TIMEOUT_MS.to_string(),
    ]
    .map(str::to_string)
    .to_vec())
}

/// The argv of `zone`'s API server (state under `dir/server-<zone>`), without the executable.
pub fn server_argv(
    topo: &Topology,
    zone: &str,
    dir: &Path,
    cp: &ZonalControlPlane,
) -> anyhow::Result<Vec<String>> {
    let h = topo
        .zone_control_plane(zone)
        .with_context(|| format!("zone {zone:?} has no control-plane host"))?;
    let mut argv: Vec<String> = [
        "server",
        "--data-dir",
        &dir.join(format!("server-{zone}")).display().to_string(),
        "--listen",
        &SocketAddr::from((h.ip, LAB_API_PORT)).to_string(),
        "--profile",
        cp.profile.as_str(),
        "--etcd-servers",
        &etcd_servers(topo, zone),
        "--leader-elect=true",
        "--leader-elect-identity",
        zone,
    ]
    .map(str::to_string)
    .to_vec();
    argv.extend(crate::client::bookmark_flag(&cp.server_flags));
    argv.extend(super::identities::server_flags(dir, &cp.server_flags));
    argv.extend(cp.server_flags.iter().cloned());
    Ok(argv)
}

/// Every process of the control plane, by name (`etcd-<zone>`, `server-<zone>`, `balancer`).
fn procs_path(dir: &Path) -> PathBuf {
    dir.join("control-plane.json")
}

fn read_procs(dir: &Path) -> BTreeMap<String, ProcId> {
    std::fs::read(procs_path(dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub(super) fn record(dir: &Path, name: &str, pid: u32) -> anyhow::Result<()> {
    let mut map = read_procs(dir);
    map.insert(name.to_string(), ProcId::of(pid));
    std::fs::write(procs_path(dir), serde_json::to_vec(&map)?)?;
    Ok(())
}

/// The named process if it still runs.
pub fn running(dir: &Path, name: &str) -> Option<ProcId> {
    read_procs(dir).get(name).copied().filter(ProcId::alive)
}

/// Start `argv` inside `netns` (`nsenter --net`, which execs: the pid is the program's), output
/// appended to `dir/logs/<log>`.
fn spawn_in(netns: &str, argv: &[String], dir: &Path, log: &str) -> anyhow::Result<u32> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(log))?;
    let entered = netlab::exec::enter_netns_argv(netns, argv);
    let child = Command::new(&entered[0])
        .args(&entered[1..])
        .env("ZONELAB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} in {netns}", argv[0]))?;
    Ok(child.id())
}

/// Start `zone`'s etcd member unless it runs.
fn start_etcd(dir: &Path, topo: &Topology, zone: &str) -> anyhow::Result<()> {
    let name = format!("etcd-{zone}");
    if running(dir, &name).is_some() {
        return Ok(());
    }
    let h = topo
        .zone_control_plane(zone)
        .with_context(|| format!("zone {zone:?} has no control-plane host"))?;
    let pid = spawn_in(
        &h.netns,
        &etcd_argv(topo, zone, dir)?,
        dir,
        &format!("{name}.log"),
    )?;
    record(dir, &name, pid)
}

/// Start `zone`'s API server unless it runs.
fn start_server(
    dir: &Path,
    exe: &Path,
    topo: &Topology,
    zone: &str,
    cp: &ZonalControlPlane,
) -> anyhow::Result<()> {
    let name = format!("server-{zone}");
    if running(dir, &name).is_some() {
        return Ok(());
    }
    let h = topo
        .zone_control_plane(zone)
        .with_context(|| format!("zone {zone:?} has no control-plane host"))?;
    let mut argv = vec![exe.display().to_string()];
    argv.extend(server_argv(topo, zone, dir, cp)?);
    let pid = spawn_in(&h.netns, &argv, dir, &format!("{name}.log"))?;
    record(dir, &name, pid)
}

/// Start every member and server, then the balancer; returns the balancer's pid (it serves
/// `api` on loopback).
pub fn start(
    dir: &Path,
    exe: &Path,
    topo: &Topology,
    cp: &ZonalControlPlane,
    api: SocketAddr,
) -> anyhow::Result<u32> {
    // Every member first: the first ones wait for a quorum of the initial cluster.
    for zone in &cp.zones {
        start_etcd(dir, topo, zone)?;
    }
    for zone in &cp.zones {
        start_server(dir, exe, topo, zone, cp)?;
    }
    super::balancer::start(dir, exe, topo, cp, api)
}

/// After a heal: start `zone`'s member and server again if they are gone (the member rejoins
/// with its data dir; the server catches up from etcd).
pub fn restart_zone(
    dir: &Path,
    exe: &Path,
    topo: &Topology,
    cp: &ZonalControlPlane,
    zone: &str,
) -> anyhow::Result<()> {
    if !cp.zones.iter().any(|z| z == zone) {
        return Ok(());
    }
    start_etcd(dir, topo, zone)?;
    start_server(dir, exe, topo, zone, cp)
}

/// Every recorded control-plane process, for `down`.
pub fn all_procs(dir: &Path) -> Vec<ProcId> {
    read_procs(dir).into_values().collect()
}

/// `lab status`'s control-plane lines: each zone's etcd member and server, running or not,
/// and the etcd leader's zone.
pub fn status_lines(dir: &Path, cp: &ZonalControlPlane, leader: Option<&str>) -> String {
    let mut out = format!(
        "control plane: {} in zones {}, API {} (etcd leader: {})\n",
        cp.store,
        cp.zones.join(", "),
        cp.vip,
        leader.map_or("none".to_string(), |z| format!("zone {z}"))
    );
    let state = |name: &str| {
        if running(dir, name).is_some() {
            "running"
        } else {
            "down"
        }
    };
    for zone in &cp.zones {
        out += &format!(
            "  zone {zone}: etcd {}, server {}\n",
            state(&format!("etcd-{zone}")),
            state(&format!("server-{zone}"))
        );
    }
    out
}

/// One member's answer to Maintenance Status (the JSON gateway writes uint64 as strings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct MemberStatus {
    pub header: StatusHeader,
    #[serde(default)]
    pub leader: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StatusHeader {
    #[serde(default)]
    pub member_id: String,
    #[serde(default)]
    pub raft_term: String,
}

/// Maps the leader's member ID to its zone across polls (a dead leader's zone stays known).
#[derive(Clone, Debug, Default)]
pub struct LeaderTracker {
    zone_of: BTreeMap<String, String>,
}

impl LeaderTracker {
    /// The leader's zone from the answers of the members that answered: the leader named by
    /// the highest Raft term (a partitioned old leader may still believe in its own term).
    pub fn observe(&mut self, answers: &[(String, MemberStatus)]) -> Option<String> {
        for (zone, st) in answers {
            if !st.header.member_id.is_empty() {
                self.zone_of
                    .insert(st.header.member_id.clone(), zone.clone());
            }
        }
        let term = |s: &MemberStatus| s.header.raft_term.parse::<u64>().unwrap_or(0);
        let best = answers
            .iter()
            .filter(|(_, s)| !s.leader.is_empty() && s.leader != "0")
            .max_by_key(|(_, s)| term(s))?;
        self.zone_of.get(&best.1.leader).cloned()
    }
}

/// `POST /v3/maintenance/status` to one member from inside the router namespace.
fn member_status(router: &str, ip: Ipv4Addr) -> anyhow::Result<MemberStatus> {
    let addr = SocketAddr::from((ip, ETCD_CLIENT_PORT));
    let mut s = crate::netns::connect_in_netns(router, addr, STATUS_CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(STATUS_TIMEOUT))?;
    s.set_write_timeout(Some(STATUS_TIMEOUT))?;
    write!(
        s,
        "POST /v3/maintenance/status HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).with_context(|| format!("status of {addr}: {body:?}"))
}

/// Every member's status, queried in parallel (blocking; call from a blocking thread).
pub fn statuses(topo: &Topology) -> Vec<(String, MemberStatus)> {
    let router = topo.router_netns.clone();
    let handles: Vec<_> = topo
        .zone_control_planes
        .iter()
        .map(|h| {
            let (router, zone, ip) = (router.clone(), h.zone.clone(), h.ip);
            std::thread::spawn(move || member_status(&router, ip).ok().map(|s| (zone, s)))
        })
        .collect();
    handles
        .into_iter()
        .filter_map(|h| h.join().ok().flatten())
        .collect()
}

/// `etcd-leader` as a zone target -> the leader's zone now (printed); any other name as is.
pub fn resolve(
    state_dir: &Path,
    prefix: &str,
    what: super::Target,
    name: &str,
) -> anyhow::Result<String> {
    if what != super::Target::Zone || name != scenario::ETCD_LEADER {
        return Ok(name.to_string());
    }
    let cfg = super::load_config(state_dir, prefix)?;
    anyhow::ensure!(
        cfg.zonal.is_some(),
        "zone etcd-leader: lab {prefix:?} has no etcd control plane in the zones (lab up --control-plane-store etcd)"
    );
    let zone =
        leader_zone(&cfg.topology).context("zone etcd-leader: no etcd member reports a leader")?;
    println!("the etcd leader is in zone {zone}");
    Ok(zone)
}

/// The zone whose member leads now (blocking).
pub fn leader_zone(topo: &Topology) -> Option<String> {
    LeaderTracker::default().observe(&statuses(topo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::new(&netlab::LabSpec {
            prefix: "zh".into(),
            zones: vec!["a".into(), "b".into(), "c".into()],
            nodes_per_zone: 2,
        })
        .expect("valid")
        .with_zone_control_planes()
    }

    fn cp() -> ZonalControlPlane {
        ZonalControlPlane {
            store: "etcd".into(),
            zones: vec!["a".into(), "b".into(), "c".into()],
            vip: SocketAddr::from((API_VIP, LAB_API_PORT)),
            profile: crate::flags::Profile::Fast,
            server_flags: vec!["--v=2".into()],
        }
    }

    fn flag<'a>(argv: &'a [String], name: &str) -> &'a str {
        let i = argv
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("{name} in {argv:?}"));
        &argv[i + 1]
    }

    #[test]
    fn etcd_member_argv_names_the_whole_cluster_with_upstream_timers() {
        let argv = etcd_argv(&topo(), "b", Path::new("/run/zonelab/zh")).expect("argv");
        assert_eq!(argv[0], "etcd");
        assert_eq!(flag(&argv, "--name"), "b");
        assert_eq!(flag(&argv, "--data-dir"), "/run/zonelab/zh/etcd-b");
        assert_eq!(
            flag(&argv, "--initial-cluster"),
            "a=http://172.20.0.10:2380,b=http://172.20.1.10:2380,c=http://172.20.2.10:2380"
        );
        assert_eq!(
            flag(&argv, "--advertise-client-urls"),
            "http://172.20.1.10:2379"
        );
        assert_eq!(flag(&argv, "--heartbeat-interval"), "100");
        assert_eq!(flag(&argv, "--election-timeout"), "1000");
        assert!(etcd_argv(&topo(), "q", Path::new("/x")).is_err());
    }

    #[test]
    fn server_argv_names_its_own_member_and_its_zone_as_identity() {
        let argv = server_argv(&topo(), "c", Path::new("/s"), &cp()).expect("argv");
        assert_eq!(flag(&argv, "--etcd-servers"), "http://172.20.2.10:2379");
        assert_eq!(flag(&argv, "--leader-elect-identity"), "c");
        assert_eq!(flag(&argv, "--listen"), "172.20.2.10:6443");
        assert_eq!(flag(&argv, "--profile"), "fast");
        assert_eq!(argv.last().map(String::as_str), Some("--v=2"));
    }

    #[test]
    fn status_lines_name_each_zone_and_the_leader() {
        let dir = tempfile::tempdir().expect("tempdir");
        record(dir.path(), "etcd-a", std::process::id()).expect("record");
        let text = status_lines(dir.path(), &cp(), Some("a"));
        assert!(text.starts_with("control plane: etcd in zones a, b, c, API 172.20.251.10:6443 (etcd leader: zone a)\n"), "{text}");
        assert!(
            text.contains("  zone a: etcd running, server down\n"),
            "{text}"
        );
        assert!(
            text.contains("  zone c: etcd down, server down\n"),
            "{text}"
        );
    }

    fn status(id: &str, term: &str, leader: &str) -> MemberStatus {
        serde_json::from_str(&format!(
            r#"{{"header":{{"cluster_id":"1","member_id":"{id}","revision":"1","raft_term":"{term}"}},"version":"3.4.23","leader":"{leader}"}}"#
        ))
        .expect("etcd's JSON")
    }

    #[test]
    fn leader_is_the_highest_terms_leader_and_its_zone_is_remembered() {
        let mut t = LeaderTracker::default();
        let all = vec![
            ("a".to_string(), status("11", "2", "22")),
            ("b".to_string(), status("22", "2", "22")),
            ("c".to_string(), status("33", "2", "22")),
        ];
        assert_eq!(t.observe(&all).as_deref(), Some("b"));
        // b is cut off and still believes in term 2; a and c elected a in term 3.
        let split = vec![
            ("a".to_string(), status("11", "3", "11")),
            ("b".to_string(), status("22", "2", "22")),
        ];
        assert_eq!(t.observe(&split).as_deref(), Some("a"));
        // Only c answers and names a, which did not answer this time.
        let one = vec![("c".to_string(), status("33", "3", "11"))];
        assert_eq!(t.observe(&one).as_deref(), Some("a"));
        // No leader known ("0") or no answer at all.
        assert_eq!(
            t.observe(&[("c".to_string(), status("33", "4", "0"))]),
            None
        );
        assert_eq!(t.observe(&[]), None);
    }
}
