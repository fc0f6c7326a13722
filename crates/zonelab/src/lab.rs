//! `zonelab lab ...`: bring a lab up (namespaces for the control plane, the nodes and the pods;
//! `zonelab server` and one `zonelab agent` per node), inspect it, run commands in pods, inject
//! failures, and take it down again.
//!
//! Start at [`run`]. The network work is `netlab`'s; this module is the process orchestration
//! and the user interface.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use netlab::{Lab, LabSpec, Runner, SystemRunner, Topology};
use serde::{Deserialize, Serialize};

use crate::flags::Profile;

mod balancer;
pub mod control_plane;
mod faults;
pub mod group_nodes;
pub mod identities;
pub mod kube_proxy;
pub mod load_balancers;
mod sole_server;

pub use faults::{heal, inject};
use load_balancers::with_load_balancers;

use control_plane::ZonalControlPlane;

/// Port the API server listens on inside the control-plane namespace (for agents).
pub const LAB_API_PORT: u16 = 6443;

#[derive(clap::Args, Debug)]
pub struct LabArgs {
    /// Lab name prefix (namespaces are `<prefix>-...`).
    #[arg(long, default_value = "zl", global = true)]
    pub prefix: String,
    /// Where the lab keeps its state, logs and kubeconfig.
    #[arg(long, default_value = netlab::DEFAULT_STATE_DIR, global = true)]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {
    /// Build the lab and start the control plane and one agent per node.
    Up(UpArgs),
    /// Stop every process and remove every namespace and rule of the lab.
    Down,
    /// Nodes, zones, readiness and pods.
    Status,
    /// Print the path of the admin kubeconfig for kubectl (`export KUBECONFIG=$(zonelab lab
    /// kubeconfig)`): https, the lab's CA, the admin's client certificate. `--node NAME`: that
    /// node's kubelet kubeconfig (`system:node:NAME`) instead.
    Kubeconfig {
        #[arg(long)]
        node: Option<String>,
    },
    /// Run a command inside a pod's network namespace: `zonelab lab exec POD -- CMD...`.
    Exec {
        pod: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Fail a zone or a node: `fail zone a --mode power|partition|graceful`; `fail zone
    /// etcd-leader` fails the zone whose etcd member leads now.
    Fail {
        #[arg(value_enum)]
        what: Target,
        name: String,
        #[arg(long, value_enum, default_value_t = FailMode::Power)]
        mode: FailMode,
    },
    /// Undo a failure: `recover zone a`.
    Recover {
        #[arg(value_enum)]
        what: Target,
        name: String,
    },
    /// Start, extend or cancel an EKS-style zonal shift: `zonal-shift --zone a [--expires-in
    /// 30m] [--cancel]` (docs/zonal-shift.md).
    ZonalShift(crate::zonal_shift::ZonalShiftArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Zone,
    Node,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum FailMode {
    /// Processes killed, packets silently dropped (clients time out).
    Power,
    /// Packets dropped between the zone (or node) and everything else; processes keep running.
    Partition,
    /// The kubelet shuts its pods down first, then the node stops.
    Graceful,
}

#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Zones: a count (`3` = a,b,c) or names (`a,b,c`).
    #[arg(long, default_value = "3")]
    pub zones: String,
    #[arg(long, default_value_t = 2)]
    pub nodes_per_zone: u32,
    #[arg(long, value_enum, default_value_t = Profile::Fast)]
    pub profile: Profile,
    /// kube-proxy mode of every agent.
    #[arg(long, default_value = "nftables", value_parser = ["nftables", "iptables"])]
    pub proxy_mode: String,
    /// nftables rule layout of every agent (`zonelab agent --nftables-layout`).
    #[arg(long, default_value = "upstream", value_parser = ["upstream", "shared-map"])]
    pub nftables_layout: String,
    /// Loopback port for kubectl.
    #[arg(long, default_value_t = 6443)]
    pub api_port: u16,
    /// How long to wait for every node to be Ready.
    #[arg(long, default_value = "90s", value_parser = crate::flags::parse_duration)]
    pub wait: Duration,
    /// API servers: 1 (outside the zones, embedded store) or the number of zones (one per
    /// zone, with `--control-plane-store etcd`).
    #[arg(long, default_value_t = 1)]
    pub control_plane_replicas: u32,
    /// `embedded` (one server outside the zones) or `etcd` (an etcd member and an API server
    /// in every zone, behind a load balancer).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "etcd"])]
    pub control_plane_store: String,
    /// Record every agent's kube-proxy as the DaemonSet kube-system/kube-proxy (no pods: the
    /// agents run it; docs/lab.md).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub kube_proxy_daemonset: bool,
    /// Every kubelet's `--image-policy`: `stand-in` runs images the lab cannot run as the
    /// `zonelab/echo` stand-in, `fail` refuses them (ErrImagePull / ImagePullBackOff).
    #[arg(long, default_value = "stand-in", value_parser = ["stand-in", "fail"])]
    pub image_policy: String,
}

/// What `lab up` leaves for the other subcommands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabConfig {
    pub prefix: String,
    pub api: SocketAddr,
    pub server_pid: u32,
    /// Kernel start time of the server (see [`ProcId`]).
    #[serde(default)]
    pub server_start: Option<u64>,
    pub profile: Profile,
    pub proxy_mode: String,
    pub topology: Topology,
    /// Extra flags every agent gets (also when `recover` restarts one).
    #[serde(default)]
    pub agent_flags: Vec<String>,
    /// The control plane in the zones (`None`: one server outside them; then `server_pid` is
    /// that server, else the balancer serving `api`).
    #[serde(default)]
    pub zonal: Option<ZonalControlPlane>,
    /// The admin kubeconfig (https, the lab's CA, the admin's client certificate).
    #[serde(default)]
    pub kubeconfig: PathBuf,
}

/// Everything `lab up` needs, whether it comes from flags or from a scenario file.
#[derive(Clone, Debug)]
pub struct UpPlan {
    pub zones: Vec<String>,
    pub nodes_per_zone: u32,
    pub profile: Profile,
    pub proxy_mode: String,
    pub api_port: u16,
    pub wait: Duration,
    /// Extra `zonelab server` flags (`--name=value`).
    pub server_flags: Vec<String>,
    /// Extra `zonelab agent` flags (`--name=value`).
    pub agent_flags: Vec<String>,
    /// An etcd member and an API server in every zone (else one embedded server outside).
    pub etcd_in_zones: bool,
    /// Create the kube-system/kube-proxy DaemonSet record ([`kube_proxy`]).
    pub kube_proxy_daemonset: bool,
}

/// `--control-plane-replicas` and `--control-plane-store` (the scenario's `controlPlane`
/// rules): whether the control plane runs in the zones.
pub fn etcd_in_zones(replicas: u32, store: &str, zones: usize) -> anyhow::Result<bool> {
    match store {
        "embedded" => {
            anyhow::ensure!(
                replicas == 1,
                "--control-plane-replicas {replicas}: the embedded store serves one API server outside the zones; use 1, or --control-plane-store etcd with {zones} (one per zone)"
            );
            Ok(false)
        }
        "etcd" => {
            anyhow::ensure!(
                replicas as usize == zones,
                "--control-plane-replicas {replicas}: --control-plane-store etcd runs one etcd member and one API server in every zone; use {zones} (the number of zones)"
            );
            Ok(true)
        }
        other => bail!("--control-plane-store {other:?}: expected embedded or etcd"),
    }
}

impl LabConfig {
    /// A client of the lab's API as its admin.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        kube_client(&self.kubeconfig)
    }

    fn server(&self) -> ProcId {
        ProcId {
            pid: self.server_pid,
            start: self.server_start,
        }
    }
}

fn config_path(state_dir: &Path, prefix: &str) -> PathBuf {
    state_dir.join(prefix).join("lab-config.json")
}

pub fn load_config(state_dir: &Path, prefix: &str) -> anyhow::Result<LabConfig> {
    let path = config_path(state_dir, prefix);
    let bytes = std::fs::read(&path)
        .with_context(|| format!("no lab {prefix:?} is up (reading {})", path.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// `3` -> a,b,c; `x,y` -> x,y.
pub fn parse_zones(s: &str) -> anyhow::Result<Vec<String>> {
    if let Ok(n) = s.trim().parse::<usize>() {
        anyhow::ensure!((1..=26).contains(&n), "--zones count must be 1..=26");
        return Ok((0..n)
            .map(|i| ((b'a' + i as u8) as char).to_string())
            .collect());
    }
    Ok(s.split(',')
        .map(|z| z.trim().to_string())
        .filter(|z| !z.is_empty())
        .collect())
}

fn runner() -> Arc<dyn Runner> {
    Arc::new(SystemRunner)
}

/// A client with the credentials of the kubeconfig at `path` (a lab's).
pub(crate) fn kube_client(path: &Path) -> anyhow::Result<kube::Client> {
    let config = crate::kubeconfig::client_config(path, None, crate::client::MIN_READ_TIMEOUT)?;
    crate::client::client(config, crate::client::MIN_READ_TIMEOUT)
}

/// A process the lab started: its pid and kernel start time, so a recycled pid is never taken
/// for it (and a zombie counts as gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: u32,
    #[serde(default)]
    pub start: Option<u64>,
}

impl ProcId {
    fn of(pid: u32) -> ProcId {
        ProcId {
            pid,
            start: netlab::procs::start_ticks(pid),
        }
    }

    fn alive(&self) -> bool {
        netlab::procs::pid_alive(self.pid, self.start)
    }

    fn signal(&self, sig: &str) {
        if self.alive() {
            netlab::procs::signal(&SystemRunner, sig, &[self.pid]);
        }
    }
}

/// SIGTERM, up to 3 s of grace, then SIGKILL.
fn kill_pid(p: ProcId) {
    netlab::procs::terminate(
        &SystemRunner,
        &[(p.pid, p.start)],
        netlab::procs::STOP_GRACE,
        || {},
    );
}

/// Start `zonelab server` in the root namespace on loopback, also listening inside the
/// control-plane namespace for the agents.
fn start_server(
    exe: &Path,
    dir: &Path,
    topo: &Topology,
    up: &UpPlan,
) -> anyhow::Result<(u32, SocketAddr)> {
    let api = SocketAddr::from(([127, 0, 0, 1], up.api_port));
    let cp = SocketAddr::from((topo.control_plane.ip, LAB_API_PORT));
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = Command::new(exe)
        .arg("server")
        .arg("--data-dir")
        .arg(dir.join("server"))
        .arg("--listen")
        .arg(api.to_string())
        .arg("--listen-netns")
        .arg(format!("{}={cp}", topo.control_plane.netns))
        .arg("--profile")
        .arg(up.profile.as_str())
        .args(crate::client::bookmark_flag(&up.server_flags))
        .args(identities::server_flags(dir, &up.server_flags))
        .args(sole_server::election_flags(&up.server_flags))
        .args(&up.server_flags)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting zonelab server")?;
    Ok((child.id(), api))
}

pub(crate) use runtime::labels::node_is_ready as node_ready;

async fn wait_nodes_ready(
    client: &kube::Client,
    want: usize,
    limit: Duration,
    still_running: impl Fn() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < limit {
        still_running()?;
        if let Ok(list) = api.list(&ListParams::default()).await {
            let ready = list.items.iter().filter(|n| node_ready(n)).count();
            if ready != last {
                eprintln!(
                    "  {ready}/{want} nodes Ready ({:.1}s)",
                    start.elapsed().as_secs_f64()
                );
                last = ready;
            }
            if ready >= want {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "only {last}/{want} nodes became Ready within {limit:?}; see the logs under the lab's state dir"
    )
}

/// The argv of one node's agent.
pub fn agent_argv(
    exe: &Path,
    topo: &Topology,
    node: &netlab::NodeNet,
    cfg: &LabConfig,
) -> Vec<String> {
    vec![
        exe.display().to_string(),
        "agent".into(),
        "--node-name".into(),
        node.name.clone(),
        "--zone".into(),
        node.zone.clone(),
        "--node-ip".into(),
        node.ip.to_string(),
        "--pod-cidr".into(),
        format!("{}/24", node.pod_cidr),
        "--server".into(),
        match &cfg.zonal {
            Some(z) => format!("https://{}", z.vip),
            None => format!("https://{}:{LAB_API_PORT}", topo.control_plane.ip),
        },
        "--lab-prefix".into(),
        topo.prefix.clone(),
        "--proxy-mode".into(),
        cfg.proxy_mode.clone(),
        "--profile".into(),
        cfg.profile.to_string(),
    ]
}

/// Start one node's agent: a process in the root mount namespace that enters the node's network
/// namespace itself (`ip netns exec` would give it a private mount namespace, and the pod
/// namespaces it creates would be invisible to everyone else).
fn start_agent(state_dir: &Path, exe: &Path, cfg: &LabConfig, node: &str) -> anyhow::Result<u32> {
    let n = cfg
        .topology
        .node(node)
        .with_context(|| format!("no node {node:?} in the lab"))?;
    let mut argv = agent_argv(exe, &cfg.topology, n, cfg);
    let lab_dir = state_dir.join(&cfg.prefix);
    let kubeconfig = identities::node_kubeconfig(&lab_dir, cfg.api, &n.name)?;
    argv.extend([
        format!("--kubeconfig={}", kubeconfig.display()),
        format!(
            "--proxy-kubeconfig={}",
            identities::proxy_kubeconfig_path(&lab_dir).display()
        ),
    ]);
    argv.extend([
        "--netns".to_string(),
        n.name.clone(),
        "--state-dir".to_string(),
    ]);
    argv.push(
        state_dir
            .join(&cfg.prefix)
            .join("agents")
            .display()
            .to_string(),
    );
    argv.extend(cfg.agent_flags.iter().cloned());
    let logs = state_dir.join(&cfg.prefix).join("logs");
    std::fs::create_dir_all(&logs)?;
    // Appended to, so a restarted agent (recover) keeps the earlier lines.
    let append = |name: String| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(name))
    };
    let out = append(format!("agent-{node}.out"))?;
    let err = append(format!("agent-{node}.err"))?;
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("ZONELAB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting the agent of {node}"))?;
    let pids = agents_path(state_dir, &cfg.prefix);
    let mut map: std::collections::BTreeMap<String, ProcId> = std::fs::read(&pids)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    map.insert(node.to_string(), ProcId::of(child.id()));
    std::fs::write(&pids, serde_json::to_vec(&map)?)?;
    Ok(child.id())
}

fn agents_path(state_dir: &Path, prefix: &str) -> PathBuf {
    state_dir.join(prefix).join("agents.json")
}

/// The running agent of `node`, if any.
fn agent_pid(state_dir: &Path, prefix: &str, node: &str) -> Option<ProcId> {
    let map: std::collections::BTreeMap<String, ProcId> =
        serde_json::from_slice(&std::fs::read(agents_path(state_dir, prefix)).ok()?).ok()?;
    map.get(node).copied().filter(ProcId::alive)
}

async fn up(args: &LabArgs, up: &UpArgs) -> anyhow::Result<()> {
    let zones = parse_zones(&up.zones)?;
    let etcd_in_zones = etcd_in_zones(
        up.control_plane_replicas,
        &up.control_plane_store,
        zones.len(),
    )?;
    let plan = UpPlan {
        zones,
        etcd_in_zones,
        nodes_per_zone: up.nodes_per_zone,
        profile: up.profile,
        proxy_mode: up.proxy_mode.clone(),
        api_port: up.api_port,
        wait: up.wait,
        server_flags: Vec::new(),
        // Kept in the lab's config, so agents `recover` restarts get it too.
        agent_flags: vec![
            format!("--nftables-layout={}", up.nftables_layout),
            format!("--image-policy={}", up.image_policy),
        ],
        kube_proxy_daemonset: up.kube_proxy_daemonset,
    };
    bring_up(&args.state_dir, &args.prefix, &plan).await?;
    Ok(())
}

/// Before anything is built: the tools, an earlier lab's processes gone, the API port free.
fn preflight_and_clear(
    state_dir: &Path,
    prefix: &str,
    plan: &UpPlan,
    api: SocketAddr,
) -> anyhow::Result<()> {
    crate::preflight::tools(&plan.proxy_mode)?;
    if plan.etcd_in_zones {
        crate::preflight::etcd()?;
    }
    if let Ok(old) = load_config(state_dir, prefix) {
        eprintln!("clearing the leftovers of an earlier lab {prefix:?}");
        group_nodes::stop_autoscaler(state_dir, prefix);
        kill_pid(old.server());
        control_plane::all_procs(&state_dir.join(prefix))
            .into_iter()
            .for_each(kill_pid);
    }
    // A crashed run's Service load balancers, found by command line (no lab config needed).
    load_balancers::stop(prefix);
    crate::ports::check_free(api).context("the API port")
}

/// One server outside the zones, or the control plane in the zones behind its balancer:
/// the pid serving `api`, its log, and what a zonal control plane is made of.
fn start_control_plane(
    dir: &Path,
    exe: &Path,
    topo: &Topology,
    plan: &UpPlan,
    api: SocketAddr,
) -> anyhow::Result<(u32, PathBuf, Option<ZonalControlPlane>)> {
    if !plan.etcd_in_zones {
        let pid = start_server(exe, dir, topo, plan)?.0;
        return Ok((pid, dir.join("server.log"), None));
    }
    let z = ZonalControlPlane {
        store: "etcd".into(),
        zones: plan.zones.clone(),
        vip: SocketAddr::from((control_plane::API_VIP, LAB_API_PORT)),
        profile: plan.profile,
        server_flags: plan.server_flags.clone(),
    };
    let pid = control_plane::start(dir, exe, topo, &z, api)?;
    Ok((pid, dir.join("logs").join(balancer::LOG), Some(z)))
}

/// Build the lab, start the server and the agents, wait until every node is Ready.
pub async fn bring_up(state_dir: &Path, prefix: &str, plan: &UpPlan) -> anyhow::Result<LabConfig> {
    let started = Instant::now();
    let spec = LabSpec {
        prefix: prefix.to_string(),
        zones: plan.zones.clone(),
        nodes_per_zone: plan.nodes_per_zone,
    };
    let mut topo = Topology::new(&spec)?;
    if plan.etcd_in_zones {
        topo = topo.with_zone_control_planes();
    }
    let api = SocketAddr::from(([127, 0, 0, 1], plan.api_port));
    preflight_and_clear(state_dir, prefix, plan, api)?;
    let plan = &with_load_balancers(plan, &topo);
    let r = runner();
    let lab = Lab::up(&topo, Arc::clone(&r), state_dir)?;
    eprintln!(
        "network: {} zones x {} nodes ({:.1}s)",
        spec.zones.len(),
        plan.nodes_per_zone,
        started.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let dir = state_dir.join(prefix);
    let kubeconfig = kubeconfig_path(state_dir, prefix);
    identities::create(
        &dir,
        &topo,
        plan.etcd_in_zones,
        api,
        &plan.server_flags,
        &kubeconfig,
    )?;
    let (server_pid, log, zonal) = start_control_plane(&dir, &exe, &topo, plan, api)?;
    let cfg = LabConfig {
        prefix: prefix.to_string(),
        api,
        server_pid,
        server_start: netlab::procs::start_ticks(server_pid),
        profile: plan.profile,
        proxy_mode: plan.proxy_mode.clone(),
        topology: topo.clone(),
        agent_flags: plan.agent_flags.clone(),
        zonal,
        kubeconfig,
    };
    std::fs::write(
        config_path(state_dir, prefix),
        serde_json::to_vec_pretty(&cfg)?,
    )?;
    let server = cfg.server();
    let client = cfg.client()?;
    crate::preflight::wait_server(
        || server.alive(),
        server_pid,
        api,
        &client,
        &log,
        Duration::from_secs(if cfg.zonal.is_some() { 60 } else { 20 }),
    )
    .await?;
    eprintln!(
        "control plane: https://{api} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    for node in &topo.nodes {
        start_agent(state_dir, &exe, &cfg, &node.name)?;
    }
    drop(lab);
    let waiting = Instant::now();
    let running = || {
        anyhow::ensure!(
            server.alive(),
            "the API server (pid {server_pid}) exited; the end of {}:\n{}",
            log.display(),
            crate::preflight::log_tail(&log, 15)
        );
        for n in &topo.nodes {
            anyhow::ensure!(
                agent_pid(state_dir, prefix, &n.name).is_some(),
                "the agent of {} exited; the end of its log:\n{}",
                n.name,
                crate::preflight::log_tail(
                    &dir.join("logs").join(format!("agent-{}.err", n.name)),
                    15
                )
            );
        }
        Ok(())
    };
    wait_nodes_ready(&client, topo.nodes.len(), plan.wait, running).await?;
    let nodes: Vec<String> = topo.nodes.iter().map(|n| n.name.clone()).collect();
    let left = plan
        .wait
        .saturating_sub(waiting.elapsed())
        .max(Duration::from_secs(10));
    crate::preflight::wait_proxies(&nodes, left).await?;
    eprintln!(
        "  {}/{} kube-proxies programmed their rules ({:.1}s)",
        nodes.len(),
        nodes.len(),
        started.elapsed().as_secs_f64()
    );
    if plan.kube_proxy_daemonset {
        kube_proxy::record(&client, &plan.proxy_mode).await?;
    }
    println!(
        "lab {prefix:?} is up: {} nodes in {} zones, profile {}, proxy {} ({:.1}s)\nexport KUBECONFIG={}",
        topo.nodes.len(),
        spec.zones.len(),
        cfg.profile,
        cfg.proxy_mode,
        started.elapsed().as_secs_f64(),
        kubeconfig_path(state_dir, prefix).display()
    );
    Ok(cfg)
}

/// The lab's admin kubeconfig.
pub fn kubeconfig_path(state_dir: &Path, prefix: &str) -> PathBuf {
    state_dir.join(prefix).join("kubeconfig")
}

/// Take the lab down: server, agents, pods, namespaces, rules, state.
pub fn down(state_dir: &Path, prefix: &str) -> anyhow::Result<()> {
    group_nodes::stop_autoscaler(state_dir, prefix);
    if let Ok(cfg) = load_config(state_dir, prefix) {
        kill_pid(cfg.server());
        control_plane::all_procs(&state_dir.join(prefix))
            .into_iter()
            .for_each(kill_pid);
        for n in &cfg.topology.nodes {
            if let Some(p) = agent_pid(state_dir, prefix, &n.name) {
                p.signal("KILL");
            }
        }
    }
    // After the servers: none of them starts a balancer again.
    load_balancers::stop(prefix);
    let r = runner();
    match Lab::attach(prefix, Arc::clone(&r), state_dir) {
        Ok(mut lab) => lab.down()?,
        Err(_) => Lab::down_prefix(prefix, &*r, state_dir)?,
    }
    let _ = std::fs::remove_dir_all(state_dir.join(prefix));
    Ok(())
}

async fn status(args: &LabArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.state_dir, &args.prefix)?;
    let client = cfg.client()?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client);
    let pod_list = pods.list(&ListParams::default()).await?;
    println!(
        "{:<14} {:<6} {:<10} {:>5}",
        "NODE", "ZONE", "STATUS", "PODS"
    );
    for n in nodes.list(&ListParams::default()).await?.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let zone = n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(runtime::ZONE_LABEL))
            .cloned()
            .unwrap_or_default();
        let ready = match runtime::node_ready_status(&n) {
            Some("True") => "Ready",
            Some("False") => "NotReady",
            _ => "Unknown",
        };
        let count = pod_list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
            .count();
        println!("{name:<14} {zone:<6} {ready:<10} {count:>5}");
    }
    let lab = Lab::attach(&args.prefix, runner(), &args.state_dir)?;
    let f = lab.faults();
    if !f.isolated_nodes.is_empty() || !f.partitioned_zones.is_empty() {
        println!(
            "faults: isolated nodes {:?}, partitioned zones {:?}",
            f.isolated_nodes, f.partitioned_zones
        );
    }
    if let Some(z) = &cfg.zonal {
        let topo = cfg.topology.clone();
        let leader = tokio::task::spawn_blocking(move || control_plane::leader_zone(&topo)).await?;
        print!(
            "{}",
            control_plane::status_lines(&args.state_dir.join(&args.prefix), z, leader.as_deref())
        );
    }
    Ok(())
}

/// The network namespace of a pod, found from its IP.
async fn pod_netns(cfg: &LabConfig, namespace: &str, pod: &str) -> anyhow::Result<String> {
    let api: Api<Pod> = Api::namespaced(cfg.client()?, namespace);
    let p = api
        .get(pod)
        .await
        .with_context(|| format!("pod {namespace}/{pod}"))?;
    let ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .with_context(|| format!("pod {namespace}/{pod} has no IP yet"))?;
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let candidates = [format!("{namespace}/{pod}"), uid];
    let r = runner();
    // `ip` itself can fail on a busy machine (RTNL contention, a timeout): only an answer that
    // lists the namespace's addresses rules a candidate out; a failed look is retried, bounded.
    let mut failed = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(300 * attempt)).await;
        }
        failed.clear();
        for key in &candidates {
            let ns = cfg.topology.pod_netns(key);
            match r.run(&netlab::Cmd::new(
                "ip",
                ["-n", ns.as_str(), "-4", "-o", "addr", "show"],
            )) {
                Ok(o) if o.success() && o.stdout.contains(&format!("{ip}/")) => return Ok(ns),
                Ok(o) if o.success() => {}
                Ok(o) => failed = format!("; `ip -n {ns}` failed: {}", o.stderr.trim()),
                Err(e) => failed = format!("; `ip -n {ns}` failed: {e}"),
            }
        }
        if failed.is_empty() {
            break;
        }
    }
    bail!("no network namespace holds {ip} (pod {namespace}/{pod}){failed}")
}

async fn exec(args: &LabArgs, namespace: &str, pod: &str, cmd: &[String]) -> anyhow::Result<i32> {
    let cfg = load_config(&args.state_dir, &args.prefix)?;
    let ns = pod_netns(&cfg, namespace, pod).await?;
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(cmd)
        .status()?;
    Ok(status.code().unwrap_or(1))
}

pub async fn run(args: LabArgs) -> anyhow::Result<i32> {
    match &args.command {
        LabCommand::Up(u) => up(&args, u).await.map(|_| 0),
        LabCommand::Down => {
            down(&args.state_dir, &args.prefix)?;
            println!("lab {:?} is down", args.prefix);
            Ok(0)
        }
        LabCommand::Status => status(&args).await.map(|_| 0),
        LabCommand::Kubeconfig { node } => {
            let cfg = load_config(&args.state_dir, &args.prefix)?;
            let path = match node {
                None => kubeconfig_path(&args.state_dir, &args.prefix),
                Some(n) => {
                    anyhow::ensure!(
                        cfg.topology.node(n).is_some(),
                        "no node {n:?} in lab {:?}",
                        args.prefix
                    );
                    identities::node_kubeconfig(&args.state_dir.join(&args.prefix), cfg.api, n)?
                }
            };
            println!("{}", path.display());
            Ok(0)
        }
        LabCommand::Exec {
            pod,
            namespace,
            cmd,
        } => exec(&args, namespace, pod, cmd).await,
        LabCommand::Fail { what, name, mode } => {
            let name = &control_plane::resolve(&args.state_dir, &args.prefix, *what, name)?;
            let nodes = inject(&args.state_dir, &args.prefix, *what, name, *mode)?.nodes;
            println!(
                "{what:?} {name}: {mode:?} failure injected ({} node(s))",
                nodes.len()
            );
            Ok(0)
        }
        LabCommand::Recover { what, name } => {
            let nodes = heal(&args.state_dir, &args.prefix, *what, name)?.nodes;
            println!("{what:?} {name}: recovered ({} node(s))", nodes.len());
            Ok(0)
        }
        LabCommand::ZonalShift(z) => crate::zonal_shift::cli(&args, z).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_from_count_or_names() {
        assert_eq!(parse_zones("3").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(parse_zones("x, y").unwrap(), vec!["x", "y"]);
        assert!(parse_zones("0").is_err());
    }

    #[test]
    fn control_plane_flags_follow_the_scenario_rules() {
        assert!(!etcd_in_zones(1, "embedded", 3).expect("default"));
        assert!(etcd_in_zones(3, "etcd", 3).expect("one per zone"));
        let e = etcd_in_zones(3, "embedded", 3).expect_err("embedded x3");
        assert!(
            e.to_string()
                .contains("the embedded store serves one API server"),
            "{e}"
        );
        let e = etcd_in_zones(2, "etcd", 3).expect_err("etcd x2 of 3 zones");
        assert!(e.to_string().contains("use 3 (the number of zones)"), "{e}");
    }
}
