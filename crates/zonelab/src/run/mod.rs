//! `zonelab run SCENARIO --out DIR`: the resilience lab end to end. Checks the scenario,
//! builds the lab it describes, applies its workloads, starts its clients, injects its faults
//! on time, records the timeline (API watches + every proxy's syncs) and every request, and
//! writes `report.json`, `report.html`, `requests.jsonl` and `timeline.jsonl`.
//!
//! Start at [`run`]; the analysis itself is the `lab` crate's, this module is the I/O.

mod apply;
mod clients;
mod control_plane;
mod external;
mod kube_events;
mod prepare;
mod progress;
mod sim_run;
mod watch;
mod zonal_shift;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use lab::report::SloTarget;
use lab::{EventKind, Meta, Report};
use scenario::{FaultTarget, FaultType, Scenario, Until};

use crate::clock::epoch_ms;
use crate::lab::{FailMode, Target, UpPlan};
use clients::ClientPod;
use controllers::Moment;
pub use prepare::{Prepared, prepare, prepare_text};
use progress::Progress;
use watch::Timeline;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The scenario file (docs/scenarios.md).
    pub scenario: PathBuf,
    /// Directory for report.json, report.html, requests.jsonl and timeline.jsonl.
    #[arg(long, default_value = "zonelab-report")]
    pub out: PathBuf,
    /// Run in the simulator (virtual time, no root, docs/simulator.md) instead of the live lab.
    #[arg(long)]
    pub sim: bool,
    /// Seed of the run (recorded in the report; in the simulator it decides every random
    /// choice: the same seed gives the same report).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Name prefix of the lab this run builds.
    #[arg(long, default_value = "zr")]
    pub prefix: String,
    /// Where the lab keeps its state and logs.
    #[arg(long, default_value = netlab::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Loopback port of the lab's API server.
    #[arg(long, default_value_t = 16444)]
    pub api_port: u16,
    /// Leave the lab up after the run (`zonelab lab --prefix P down` removes it).
    #[arg(long)]
    pub keep: bool,
    /// Exit with status 3 when the SLO is not met.
    #[arg(long)]
    pub check_slo: bool,
}

/// Exit status when `--check-slo` is given and the SLO is missed.
pub const SLO_MISSED: i32 = 3;

/// Checks the scenario, then runs it.
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mode = if args.sim {
        scenario::sim::Mode::Sim
    } else {
        scenario::sim::Mode::Live
    };
    let prepared = prepare(&args.scenario, mode)?;
    execute(&args, &prepared).await
}

/// Runs a prepared scenario and tears the lab down afterwards (unless `--keep`), also on
/// failure or Ctrl-C.
pub async fn execute(args: &RunArgs, p: &Prepared) -> anyhow::Result<i32> {
    if args.sim {
        let (args, p) = (args.clone(), p.clone());
        return tokio::task::spawn_blocking(move || sim_run::run(&args, &p)).await?;
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the live lab builds network namespaces: run `zonelab run` as root");
    }
    crate::preflight::tools(&up_plan(args, p).proxy_mode)?;
    std::fs::create_dir_all(args.out.join("clients"))
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = std::fs::canonicalize(&args.out)?;
    let stop = Interrupts::listen();
    let teardown = Teardown {
        state_dir: args.state_dir.clone(),
        prefix: args.prefix.clone(),
        keep: args.keep,
        out: out.clone(),
    };
    let result = tokio::select! {
        r = live(args, p, &out, &stop) => r,
        _ = stop.aborted() => Err(anyhow::anyhow!("interrupted")),
    };
    drop(teardown);
    let report = result?;
    Ok(if args.check_slo && !report.slo.met {
        SLO_MISSED
    } else {
        0
    })
}

/// Takes the lab down when dropped (also when the run panics), unless `--keep`; first copies
/// the server's and agents' logs to `<out>/logs/`, since the lab's state goes with it.
struct Teardown {
    state_dir: PathBuf,
    prefix: String,
    keep: bool,
    out: PathBuf,
}

impl Teardown {
    fn save_logs(&self) -> std::io::Result<()> {
        let lab = self.state_dir.join(&self.prefix);
        if !lab.join("logs").is_dir() {
            return Ok(());
        }
        let dest = self.out.join("logs");
        std::fs::create_dir_all(&dest)?;
        let _ = std::fs::copy(lab.join("server.log"), dest.join("server.log"));
        for entry in std::fs::read_dir(lab.join("logs"))? {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, dest.join(name))?;
            }
        }
        Ok(())
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Err(e) = self.save_logs() {
            eprintln!("warning: could not keep the lab's logs: {e}");
        }
        if self.keep {
            eprintln!(
                "the lab stays up: zonelab lab --prefix {} down removes it",
                self.prefix
            );
            return;
        }
        eprintln!("taking the lab down");
        if let Err(e) = crate::lab::down(&self.state_dir, &self.prefix) {
            eprintln!("warning: teardown: {e:#}");
        }
    }
}

fn up_plan(args: &RunArgs, p: &Prepared) -> UpPlan {
    let s = &p.scenario;
    let mut agent_flags = p.agent_flags.clone();
    let cap = &s.topology.node_capacity;
    for (flag, value) in [
        ("node-capacity-cpu", cap.cpu.clone()),
        ("node-capacity-memory", cap.memory.clone()),
        ("max-pods", cap.pods.to_string()),
    ] {
        if !s.flags.contains_key(flag) {
            agent_flags.push(format!("--{flag}={value}"));
        }
    }
    UpPlan {
        zones: s.topology.zones.clone(),
        nodes_per_zone: s.topology.nodes_per_zone,
        profile: s.profile,
        proxy_mode: match s.proxy_mode {
            scenario::ProxyMode::Nftables => "nftables".into(),
            scenario::ProxyMode::Iptables => "iptables".into(),
        },
        api_port: args.api_port,
        wait: Duration::from_secs(120),
        server_flags: p.server_flags.clone(),
        agent_flags,
        etcd_in_zones: s.control_plane.zonal(),
        kube_proxy_daemonset: true,
    }
}

/// Ctrl-C: before the traffic starts it aborts the run; while it runs, the first one ends the
/// run early (the report is still written) and a second one aborts.
#[derive(Clone)]
struct Interrupts {
    count: tokio::sync::watch::Receiver<u32>,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Interrupts {
    fn listen() -> Interrupts {
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            let mut n = 0;
            while tokio::signal::ctrl_c().await.is_ok() {
                n += 1;
                if tx.send(n).is_err() {
                    return;
                }
            }
        });
        Interrupts {
            count: rx,
            running: Default::default(),
        }
    }

    /// Resolves when the run must be abandoned.
    async fn aborted(&self) {
        let mut rx = self.count.clone();
        loop {
            let n = *rx.borrow_and_update();
            let running = self.running.load(std::sync::atomic::Ordering::SeqCst);
            if n >= 2 || (n >= 1 && !running) {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves at the first Ctrl-C.
    async fn first(&self) {
        let mut rx = self.count.clone();
        while *rx.borrow_and_update() == 0 {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The run proper, between lab up and lab down.
async fn live(
    args: &RunArgs,
    p: &Prepared,
    out: &Path,
    stop: &Interrupts,
) -> anyhow::Result<Report> {
    let s = &p.scenario;
    eprintln!("scenario {:?} from {}", s.name, p.file.display());
    let cfg = crate::lab::bring_up(&args.state_dir, &args.prefix, &up_plan(args, p)).await?;
    let client = cfg.client()?;
    eprintln!("applying {} workload object(s)", p.manifests.len());
    apply::create_all(&client, &p.manifests).await?;
    apply::wait_available(&client, Duration::from_secs(180)).await?;
    let available = std::time::Instant::now();
    let Planned {
        services,
        pods,
        externals,
        lb,
    } = plan_clients(&client, s, &cfg, out).await?;
    // The shared start rule (as the simulator's): the client nodes' proxies programmed their
    // Services' endpoints, knowing every ready one.
    let logs = args.state_dir.join(&args.prefix).join("logs");
    let waiting: Vec<&ClientPod> = pods.iter().map(|(cp, _)| cp).collect();
    match clients::wait_programmed(&client, &logs, &waiting).await? {
        None => eprintln!(
            "  client nodes' proxies programmed their Services ({:.1}s after the workloads were available)",
            available.elapsed().as_secs_f64()
        ),
        Some(waiting) => eprintln!(
            "  warning: after {} s {waiting}; starting anyway",
            lab::load_start::CAP_MS / 1000
        ),
    }
    let tl: Timeline = Default::default();
    let capacity = start_capacity(args, s, &tl).await?;
    let watches = watch::spawn(&client, &tl, &services);
    let event_watch = kube_events::spawn(&client, &tl);
    // Its own client: the probe's connection never waits behind the watches'.
    let observers = control_plane::Observers::spawn(
        &cfg.client()?,
        &tl,
        cfg.zonal.as_ref().map(|_| &cfg.topology),
    );
    tokio::time::sleep(Duration::from_millis(lab::load_start::SETTLE_MS as u64)).await;
    let t0 = epoch_ms();
    eprintln!(
        "  t0: {:.1}s after the workloads were available",
        available.elapsed().as_secs_f64()
    );
    clients::start(&client, &pods).await?;
    let mut running_externals = Vec::new();
    for (cp, argv) in &externals {
        let c = s
            .clients
            .iter()
            .find(|c| c.name == cp.client)
            .context("client")?;
        let log = out
            .join("clients")
            .join(format!("{}-external.log", cp.client));
        running_externals.push(external::Process::start(argv, &log, c)?);
    }
    let pods: Vec<ClientPod> = pods
        .into_iter()
        .map(|(cp, _)| cp)
        .chain(externals.into_iter().map(|(cp, _)| cp))
        .collect();
    eprintln!(
        "running: {} client(s) -> {}; {} fault(s); {}",
        pods.len(),
        services.join(", "),
        s.faults.len(),
        match (s.run.duration, s.run.until) {
            (Some(d), _) => format!("for {}", scenario::format_duration(d)),
            (None, Some(Until::CapacityRestored)) => format!(
                "until capacity is restored (cap {})",
                scenario::format_duration(s.run.limit())
            ),
            _ => String::new(),
        }
    );
    let base = RunBase {
        args,
        p,
        cfg: &cfg,
        t0,
        services: &services,
        etcd_leader_hit: Default::default(),
        lb,
        cloud: capacity.as_ref().map(|c| c.cloud.clone()),
    };
    stop.running
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut syncs = clients::ProxySyncs::default();
    let (end_ms, ended_by) = drive(&base, &tl, &mut syncs, &pods, stop).await?;
    observers.finish(&client, &tl).await;
    clients::stop(&client, &pods).await;
    tokio::task::spawn_blocking(move || running_externals.iter_mut().for_each(|p| p.stop()))
        .await?;
    // Requests started before the end may still be in flight, retries included.
    let settle = s
        .clients
        .iter()
        .map(clients::longest_request)
        .max()
        .unwrap_or_default();
    tokio::time::sleep(settle + Duration::from_secs(1)).await;
    watches.iter().for_each(|w| w.abort());
    event_watch.abort();
    base.poll_syncs(&mut syncs);
    let (meta, events) = base.snapshot(&tl, &syncs, end_ms, &ended_by);
    let requests: Vec<lab::Request> = clients::read_requests(&pods)
        .into_iter()
        .filter(|r| r.start >= t0 && r.start <= end_ms)
        .collect();
    let report = lab::analyze(&meta, &events, &requests);
    write_outputs(out, &report, &events, &requests)?;
    print!("{}", lab::summary::render(&report));
    println!("report: {}", out.join("report.html").display());
    Ok(report)
}

/// The clients of a run.
struct Planned {
    /// The Services they target (`ns/name`, sorted).
    services: Vec<String>,
    pods: Vec<(ClientPod, k8s_openapi::api::core::v1::Pod)>,
    /// External clients and their command lines.
    externals: Vec<(ClientPod, Vec<String>)>,
    /// The balancers of the Services external clients go through.
    lb: external::LbWatch,
}

/// The client pods of the scenario (one per client and zone, on the zone's last node), its
/// external clients (one process each, in the router namespace) and the Services they target.
async fn plan_clients(
    client: &kube::Client,
    s: &Scenario,
    cfg: &crate::lab::LabConfig,
    out: &Path,
) -> anyhow::Result<Planned> {
    let mut services = Vec::new();
    let mut pods = Vec::new();
    let mut externals = Vec::new();
    let mut lb = external::LbWatch::default();
    let exe = std::env::current_exe()?;
    let run_for = s.run.limit() + Duration::from_secs(60);
    for c in &s.clients {
        let svc = c.service_ref().context("client without a Service")?;
        let full = format!("{}/{}", svc.namespace, svc.name);
        services.push(full.clone());
        if c.from == scenario::ClientFrom::External {
            let (ips, port) = external::lb_addresses(client, &svc.namespace, &svc.name).await?;
            let urls: Vec<String> = ips.iter().map(|ip| format!("http://{ip}:{port}")).collect();
            let (dir, name) = external::balancer_of(&cfg.topology, &svc.namespace, &svc.name);
            let status = dir.join(format!("{name}.status.jsonl"));
            if !lb.balancers.iter().any(|(s, ..)| *s == full) {
                lb.balancers.push((full.clone(), dir, name));
            }
            let cp = ClientPod {
                client: c.name.clone(),
                zone: lab::timeline::EXTERNAL.into(),
                node: cfg.topology.router_netns.clone(),
                pod: String::new(),
                out: out
                    .join("clients")
                    .join(format!("{}-external.jsonl", c.name)),
                kind: lab::timeline::EXTERNAL,
                service: full.clone(),
            };
            let _ = std::fs::remove_file(&cp.out);
            let common = external::Common {
                exe: &exe,
                netns: &cfg.topology.router_netns,
                run_for,
                profile: s.profile,
            };
            let argv = external::argv(c, &cp, &urls, &status, &common);
            eprintln!("  external client {} -> {}", c.name, urls.join(", "));
            externals.push((cp, argv));
            continue;
        }
        let url = apply::service_url(client, &svc.namespace, &svc.name).await?;
        for zone in s.client_zones(c) {
            let node = cfg
                .topology
                .nodes_in_zone(zone)
                .last()
                .with_context(|| format!("no node in zone {zone}"))?;
            let cp = ClientPod {
                client: c.name.clone(),
                zone: zone.clone(),
                node: node.name.clone(),
                pod: format!("client-{}-{zone}", c.name),
                out: out.join("clients").join(format!("{}-{zone}.jsonl", c.name)),
                kind: lab::timeline::CLUSTERIP,
                service: full.clone(),
            };
            let _ = std::fs::remove_file(&cp.out);
            let pod = clients::pod_manifest(c, &cp, &url, &exe, run_for);
            pods.push((cp, pod));
        }
    }
    services.sort();
    services.dedup();
    Ok(Planned {
        services,
        pods,
        externals,
        lb,
    })
}

/// What the run loop and the final analysis share.
struct RunBase<'a> {
    args: &'a RunArgs,
    p: &'a Prepared,
    cfg: &'a crate::lab::LabConfig,
    t0: f64,
    services: &'a [String],
    /// The zone the latest `etcd-leader` fault hit (what a `recover` of `etcd-leader` heals).
    etcd_leader_hit: std::sync::Mutex<Option<String>>,
    /// The balancers whose records join the timeline.
    lb: external::LbWatch,
    /// The node groups' cloud, when the scenario has `nodeGroups`.
    cloud: Option<crate::capacity::CloudHost>,
}

impl RunBase<'_> {
    /// Reads the proxy syncs the agents logged since the last call.
    fn poll_syncs(&self, syncs: &mut clients::ProxySyncs) {
        let nodes: Vec<String> = self
            .topology()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        syncs.poll(
            &self.args.state_dir.join(&self.args.prefix).join("logs"),
            &nodes,
        );
    }

    /// The lab's nodes now: node groups add and remove nodes during the run.
    fn topology(&self) -> netlab::Topology {
        if self.cloud.is_none() {
            return self.cfg.topology.clone();
        }
        crate::lab::load_config(&self.args.state_dir, &self.args.prefix)
            .map(|c| c.topology)
            .unwrap_or_else(|_| self.cfg.topology.clone())
    }

    /// Meta and every event so far (API timeline plus the proxies' syncs).
    fn snapshot(
        &self,
        tl: &Timeline,
        syncs: &clients::ProxySyncs,
        end_ms: f64,
        ended_by: &str,
    ) -> (Meta, Vec<lab::Event>) {
        let s = &self.p.scenario;
        let mut events = tl.lock().map(|v| v.clone()).unwrap_or_default();
        events.extend(syncs.events.iter().cloned());
        events.extend(self.lb.events(&self.cfg.topology));
        let meta = Meta {
            scenario: s.name.clone(),
            mode: "live".into(),
            seed: self.args.seed,
            profile: self.cfg.profile.to_string(),
            proxy_mode: self.cfg.proxy_mode.clone(),
            ended_by: ended_by.into(),
            timers: self.p.configs.report_timers(),
            slo: SloTarget {
                availability: s.slo.availability,
                max_error_window_s: s.slo.max_error_window.map(|d| d.as_secs_f64()),
            },
            node_zones: self
                .topology()
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.zone.clone()))
                .collect(),
            services: self.services.to_vec(),
            t0_ms: self.t0,
            end_ms,
            control_plane: Some(match &self.cfg.zonal {
                Some(z) => lab::report::ControlPlaneSetup {
                    store: z.store.clone(),
                    members: z.zones.len() as u32,
                    member_zones: z.zones.clone(),
                },
                None => lab::report::ControlPlaneSetup {
                    store: "embedded".into(),
                    members: 1,
                    member_zones: Vec::new(),
                },
            }),
        };
        (meta, events)
    }
}

/// Injects the faults on time and decides when the run ends; returns (end, why).
async fn drive(
    base: &RunBase<'_>,
    tl: &Timeline,
    syncs: &mut clients::ProxySyncs,
    pods: &[ClientPod],
    stop: &Interrupts,
) -> anyhow::Result<(f64, String)> {
    let s = &base.p.scenario;
    let faults = s.faults_by_time();
    let mut next = 0;
    let limit = s.run.limit();
    let mut progress = Progress::new();
    let mut tail = clients::Tail::default();
    let mut phase = String::from("steady");
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut ticks = 0u64;
    let mut interrupt = std::pin::pin!(stop.first());
    let mut zonal = zonal_shift::LiveShifts::of(s, base.cfg)?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut interrupt => {
                progress.finish();
                eprintln!("interrupted: ending the run early and writing the report (Ctrl-C again aborts)");
                return Ok((epoch_ms(), "interrupted".into()));
            }
        }
        ticks += 1;
        let elapsed_ms = epoch_ms() - base.t0;
        while next < faults.len() && faults[next].at.as_secs_f64() * 1e3 <= elapsed_ms {
            let f = faults[next];
            let line = inject(base, tl, s, f).await?;
            progress.note(&format!("t={:.1}s  {line}", elapsed_ms / 1e3));
            next += 1;
        }
        if let Some(zonal) = zonal.as_mut() {
            for line in zonal
                .step(
                    Moment::from_millis(base.t0 as i64),
                    live::controllers::wall_clock(),
                    pods,
                )
                .await?
            {
                progress.note(&format!("t={:.1}s  {line}", elapsed_ms / 1e3));
            }
        }
        let elapsed = Duration::from_secs_f64(elapsed_ms.max(0.0) / 1e3);
        if elapsed >= limit {
            progress.finish();
            let why = if s.run.duration.is_some() {
                "duration"
            } else {
                "cap"
            };
            return Ok((base.t0 + limit.as_secs_f64() * 1e3, why.into()));
        }
        if !ticks.is_multiple_of(4) {
            continue;
        }
        tail.poll(pods);
        if next > 0 {
            base.poll_syncs(syncs);
            let (meta, events) = base.snapshot(tl, syncs, epoch_ms(), "");
            let report = lab::analyze(&meta, &events, &[]);
            phase = latest_phase(&report);
            if next == faults.len()
                && s.run.until == Some(Until::CapacityRestored)
                && report.phases.capacity_restored_s.is_some()
            {
                progress.update(elapsed, limit, &tail, &phase);
                progress.finish();
                return Ok((epoch_ms(), "capacity-restored".into()));
            }
        }
        progress.update(elapsed, limit, &tail, &phase);
    }
}

/// The furthest phase reached, for the progress line.
fn latest_phase(r: &Report) -> String {
    let steps = r.phases.steps();
    match steps
        .iter()
        .rev()
        .find_map(|(name, t)| t.map(|t| (name, t)))
    {
        Some((&"fault", t)) => format!("fault injected (t={t:.1}s)"),
        Some((name, t)) => format!("{name} (t={t:.1}s)"),
        None => "steady".into(),
    }
}

/// Injects one fault and records it on the timeline.
async fn inject(
    base: &RunBase<'_>,
    tl: &Timeline,
    s: &Scenario,
    f: &scenario::Fault,
) -> anyhow::Result<String> {
    let (what, name) = match s.fault_target(f) {
        Some(FaultTarget::Zone(z)) => (Target::Zone, z),
        Some(FaultTarget::Node { zone, index }) => (
            Target::Node,
            netlab::topology::node_name(&base.args.prefix, &zone, index),
        ),
        Some(FaultTarget::EtcdLeader) => (Target::Zone, etcd_leader_zone(base, f).await?),
        None => bail!("fault target {:?} is not in the lab", f.target),
    };
    let mode = match f.kind {
        FaultType::NodePowerOff | FaultType::ZonePowerOff => Some(FailMode::Power),
        FaultType::NodePartition | FaultType::ZonePartition => Some(FailMode::Partition),
        FaultType::GracefulStop => Some(FailMode::Graceful),
        FaultType::Recover => None,
    };
    let (state_dir, prefix) = (base.args.state_dir.clone(), base.args.prefix.clone());
    let name_of_zone = name.clone();
    let done = tokio::task::spawn_blocking(move || match mode {
        Some(m) => crate::lab::inject(&state_dir, &prefix, what, &name, m),
        None => crate::lab::heal(&state_dir, &prefix, what, &name),
    })
    .await??;
    if let (Some(cloud), Target::Zone) = (&base.cloud, what) {
        // A zone that lost power or its network cannot launch instances (FIS's
        // insufficient-capacity action); a recovery ends that.
        cloud.set_zone_fault(&name_of_zone, mode.is_some());
    }
    let target = match base.etcd_leader_hit.lock() {
        Ok(z) if f.target == scenario::ETCD_LEADER => {
            format!("{} ({})", f.target, z.clone().unwrap_or_default())
        }
        _ => f.target.clone(),
    };
    if let Ok(mut v) = tl.lock() {
        v.push(lab::Event {
            at: done.effective_ms,
            kind: EventKind::Fault {
                fault: f.kind.as_str().into(),
                target: target.clone(),
                nodes: done.nodes.clone(),
            },
        });
    }
    Ok(format!("{} {target} ({})", f.kind, done.nodes.join(", ")))
}

/// The scenario's node groups as the lab's cloud, and the cluster autoscaler, recording on
/// the timeline (`None` without `nodeGroups`).
async fn start_capacity(
    args: &RunArgs,
    s: &Scenario,
    tl: &Timeline,
) -> anyhow::Result<Option<crate::capacity::Capacity>> {
    if s.node_groups.is_empty() {
        return Ok(None);
    }
    let timeline = std::sync::Arc::clone(tl);
    let record: crate::capacity::Recorder =
        std::sync::Arc::new(move |kind| watch::record(&timeline, kind));
    let lab = crate::capacity::LabTarget {
        state_dir: args.state_dir.clone(),
        prefix: args.prefix.clone(),
    };
    eprintln!(
        "node groups: {}; cluster autoscaler started",
        s.node_groups
            .iter()
            .map(|g| format!("{} ({}, {}..{})", g.name, g.zone, g.min, g.max))
            .collect::<Vec<_>>()
            .join(", ")
    );
    crate::capacity::start(s, lab, s.profile, args.seed, record)
        .await
        .map(Some)
}

/// The zone an `etcd-leader` fault hits: the etcd leader's now, or for a `recover` the zone
/// the latest `etcd-leader` fault hit.
async fn etcd_leader_zone(base: &RunBase<'_>, f: &scenario::Fault) -> anyhow::Result<String> {
    anyhow::ensure!(
        base.cfg.zonal.is_some(),
        "fault target etcd-leader: this lab has no etcd control plane in the zones"
    );
    if f.kind == FaultType::Recover {
        return base
            .etcd_leader_hit
            .lock()
            .ok()
            .and_then(|z| z.clone())
            .context("recover etcd-leader: no etcd-leader fault was injected before");
    }
    let topo = base.cfg.topology.clone();
    let zone = tokio::task::spawn_blocking(move || crate::lab::control_plane::leader_zone(&topo))
        .await?
        .context("fault target etcd-leader: no etcd member reports a leader")?;
    if let Ok(mut hit) = base.etcd_leader_hit.lock() {
        *hit = Some(zone.clone());
    }
    Ok(zone)
}

fn write_report(out: &Path, report: &Report) -> anyhow::Result<()> {
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(report)?)?;
    std::fs::write(out.join("report.html"), lab::html::render(report))?;
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The `--out` directory of a run (report.json, timeline.jsonl, requests.jsonl).
    pub dir: PathBuf,
}

/// `zonelab report DIR`: analyses a run's records again and rewrites report.json and
/// report.html (after an analysis change, or to check a report).
pub fn report(a: ReportArgs) -> anyhow::Result<i32> {
    let read = |name: &str| {
        let path = a.dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let old: Report = serde_json::from_str(&read("report.json")?).context("report.json")?;
    anyhow::ensure!(
        !old.nodes.is_empty() && !old.services.is_empty(),
        "report.json was written by a zonelab without the node and service lists; run the scenario again"
    );
    fn lines<T: serde::de::DeserializeOwned>(text: &str, name: &str) -> anyhow::Result<Vec<T>> {
        text.lines()
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{name}:{}", i + 1)))
            .collect()
    }
    let events: Vec<lab::Event> = lines(&read("timeline.jsonl")?, "timeline.jsonl")?;
    let requests: Vec<lab::Request> = lines(&read("requests.jsonl")?, "requests.jsonl")?;
    let report = lab::analyze(&lab::Meta::of(&old), &events, &requests);
    write_report(&a.dir, &report)?;
    print!("{}", lab::summary::render(&report));
    Ok(0)
}

pub(crate) fn write_outputs(
    out: &Path,
    report: &Report,
    events: &[lab::Event],
    requests: &[lab::Request],
) -> anyhow::Result<()> {
    let mut events = events.to_vec();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let lines =
        |items: &mut dyn Iterator<Item = serde_json::Result<String>>| -> anyhow::Result<String> {
            let mut s = String::new();
            for l in items {
                s.push_str(&l?);
                s.push('\n');
            }
            Ok(s)
        };
    write_report(out, report)?;
    std::fs::write(
        out.join("timeline.jsonl"),
        lines(&mut events.iter().map(serde_json::to_string))?,
    )?;
    std::fs::write(
        out.join("requests.jsonl"),
        lines(&mut requests.iter().map(serde_json::to_string))?,
    )?;
    Ok(())
}

/// The bundled demo scenario (examples/demo.yaml, compiled in).
pub const DEMO_SCENARIO: &str = include_str!("../../../../examples/demo.yaml");

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Directory for the report.
    #[arg(long, default_value = "zonelab-demo")]
    pub out: PathBuf,
    /// Name prefix of the demo's lab.
    #[arg(long, default_value = "zdemo")]
    pub prefix: String,
    /// Where the lab keeps its state and logs.
    #[arg(long, default_value = netlab::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Loopback port of the lab's API server.
    #[arg(long, default_value_t = 16443)]
    pub api_port: u16,
    /// Leave the lab up afterwards, to look around with kubectl.
    #[arg(long)]
    pub keep: bool,
    /// Print the bundled scenario and exit.
    #[arg(long)]
    pub print_scenario: bool,
}

/// `zonelab demo`: the bundled scenario, then the answer in plain words.
pub async fn demo(d: DemoArgs) -> anyhow::Result<i32> {
    if d.print_scenario {
        print!("{DEMO_SCENARIO}");
        return Ok(0);
    }
    let name = Path::new("examples/demo.yaml (bundled)");
    let p = prepare::prepare_text(
        DEMO_SCENARIO,
        name,
        Path::new("."),
        scenario::sim::Mode::Live,
    )?;
    let args = RunArgs {
        scenario: name.to_path_buf(),
        out: d.out,
        sim: false,
        seed: 1,
        prefix: d.prefix,
        state_dir: d.state_dir,
        api_port: d.api_port,
        keep: d.keep,
        check_slo: false,
    };
    execute(&args, &p).await
}
