//! `zonelab balancer`: runs one NLB-style load balancer ([`lb`]) inside a network namespace —
//! its node addresses on `lo` (/32, labelled `lo:<name>`), its data path an nftables table of
//! DNAT rules replaced whenever routing changes, its health checks from sockets in that
//! namespace — and writes every target and node state change to a status file.
//! `zonelab balancer status` prints that file as a table.
//!
//! Start at [`run`]. The health checker runs on a dedicated OS thread that enters the namespace
//! before it starts its own single-threaded tokio runtime (`setns` changes only the calling
//! thread; never on a shared tokio worker). `--listen-loopback` forwards TCP byte streams from a
//! socket opened in the root namespace on 127.0.0.1 to a listener inside the namespace: a
//! userspace copy for access from the host only; traffic inside the lab is forwarded by the
//! kernel.

pub mod background;
pub mod fleet;
mod forward;
mod probe;

use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use lb::{Balancer, BalancerConfig, Time};
use netlab::{Cmd, Runner, SystemRunner};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, mpsc};

use crate::clock::epoch_ms;

/// Most health checks in flight at once.
const MAX_CONCURRENT_PROBES: usize = 512;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BalancerArgs {
    #[command(subcommand)]
    pub command: Option<BalancerCommand>,
    /// The balancer's configuration, YAML or JSON (docs/load-balancer.md). Rewrite it and send
    /// SIGHUP to register or deregister targets.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Network namespace to run in (the lab's router, `<prefix>-rt`); default: this one.
    #[arg(long)]
    pub netns: Option<String>,
    /// Append every target and node state change here, one JSON line each.
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// `127.0.0.1:PORT=ADDR:PORT`: accept on loopback in the root namespace and forward each
    /// connection to the listener ADDR:PORT inside the namespace (userspace copy, host access only).
    #[arg(long, value_parser = parse_loopback)]
    pub listen_loopback: Vec<(SocketAddr, SocketAddrV4)>,
}

#[derive(Subcommand, Debug)]
pub enum BalancerCommand {
    /// Print the latest state of every LB node and target from a status file.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    pub status_file: PathBuf,
}

/// Parse `127.0.0.1:PORT=ADDR:PORT`; the local side must be a loopback address.
fn parse_loopback(s: &str) -> Result<(SocketAddr, SocketAddrV4), String> {
    let (local, listener) = s
        .split_once('=')
        .ok_or_else(|| format!("want 127.0.0.1:PORT=ADDR:PORT, got {s:?}"))?;
    let local: SocketAddr = local
        .parse()
        .map_err(|e| format!("bad local address in {s:?}: {e}"))?;
    if !local.ip().is_loopback() {
        return Err(format!(
            "{local} is not a loopback address (the root namespace gets no lab routes)"
        ));
    }
    let listener: SocketAddrV4 = listener
        .parse()
        .map_err(|e| format!("bad listener in {s:?}: {e}"))?;
    Ok((local, listener))
}

/// `zonelab balancer …`: run a balancer until SIGTERM/SIGINT, or print a status file.
pub fn run(args: BalancerArgs) -> anyhow::Result<()> {
    if let Some(BalancerCommand::Status(s)) = &args.command {
        return status(&s.status_file);
    }
    let path = args
        .config
        .clone()
        .context("--config FILE is required (or use `zonelab balancer status`)")?;
    let config = read_config(&path)?;
    netlab::preflight::check_tools(&[netlab::preflight::IP, netlab::preflight::NFT])?;
    for (local, listener) in &args.listen_loopback {
        let known = config.nodes.iter().any(|n| n.address == *listener.ip())
            && config.listeners.iter().any(|l| l.port == listener.port());
        anyhow::ensure!(
            known,
            "--listen-loopback {local}={listener}: no listener {listener} in the configuration"
        );
    }
    // Bound here, in the root namespace, before any thread enters the balancer's.
    let loopback: Vec<(std::net::TcpListener, SocketAddrV4)> = args
        .listen_loopback
        .iter()
        .map(|(local, listener)| {
            let l =
                std::net::TcpListener::bind(local).with_context(|| format!("binding {local}"))?;
            l.set_nonblocking(true)?;
            Ok((l, *listener))
        })
        .collect::<anyhow::Result<_>>()?;
    let data = DataPath {
        netns: args.netns.clone(),
        name: config.name.clone(),
    };
    data.remove();
    let result = data.add_addresses(&config).and_then(|()| {
        let netns = args.netns.clone();
        let status_file = args.status_file.clone();
        let data = data.clone();
        let thread = std::thread::Builder::new()
            .name(format!("lb-{}", config.name))
            .spawn(move || -> anyhow::Result<()> {
                if let Some(ns) = &netns {
                    crate::netns::enter(ns)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(drive(config, path, data, status_file, loopback))
            })?;
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the balancer thread panicked"))?
    });
    data.remove();
    result
}

fn read_config(path: &Path) -> anyhow::Result<BalancerConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    BalancerConfig::parse(&text).with_context(|| format!("{}", path.display()))
}

fn status(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let summary =
        lb::status::Summary::from_lines(&text).with_context(|| format!("{}", path.display()))?;
    let age = |d: std::time::Duration| {
        apiserver::table::human_duration(chrono::TimeDelta::from_std(d).unwrap_or_default())
    };
    print!("{}", summary.render(epoch_ms(), &age));
    Ok(())
}

/// The kernel side: the node addresses on `lo` and the nft table, in `netns`.
#[derive(Debug, Clone)]
struct DataPath {
    netns: Option<String>,
    name: String,
}

impl DataPath {
    /// The address label `lo:<name>` that marks this balancer's addresses.
    fn label(&self) -> String {
        format!("lo:{}", self.name)
    }

    fn ip(&self, args: &[&str]) -> Cmd {
        let mut all: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            all.extend(["-n".to_string(), ns.clone()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        Cmd::new("ip", all)
    }

    fn nft(&self, script: String) -> Cmd {
        match &self.netns {
            Some(ns) => Cmd::in_netns(ns, &["nft", "-f", "-"]).with_stdin(script),
            None => Cmd::new("nft", ["-f", "-"]).with_stdin(script),
        }
    }

    /// Every node's address as a /32 on `lo` labelled `lo:<name>`, replacing leftovers.
    fn add_addresses(&self, config: &BalancerConfig) -> anyhow::Result<()> {
        let label = self.label();
        SystemRunner.run_ok(&self.ip(&["addr", "flush", "dev", "lo", "label", &label]))?;
        SystemRunner.run_ok(&self.ip(&["link", "set", "lo", "up"]))?;
        for n in &config.nodes {
            let a = format!("{}/32", n.address);
            SystemRunner.run_ok(&self.ip(&["addr", "add", &a, "dev", "lo", "label", &label]))?;
        }
        Ok(())
    }

    fn apply(&self, script: String) -> anyhow::Result<()> {
        SystemRunner.run_ok(&self.nft(script))?;
        Ok(())
    }

    /// Delete the table and the addresses; absent ones are fine.
    fn remove(&self) {
        let _ = SystemRunner.run(&self.nft(lb::nft::remove_script(&self.name)));
        let _ = SystemRunner.run(&self.ip(&["addr", "flush", "dev", "lo", "label", &self.label()]));
    }
}

/// Appends status lines; failures to write are logged, never fatal.
struct StatusWriter {
    file: Option<std::fs::File>,
    /// Wall clock (epoch ms) at the balancer's `Time::ZERO`.
    wall_zero_ms: f64,
}

impl StatusWriter {
    fn open(path: Option<&Path>, wall_zero_ms: f64) -> anyhow::Result<StatusWriter> {
        let file = path
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening {}", p.display()))
            })
            .transpose()?;
        Ok(StatusWriter { file, wall_zero_ms })
    }

    fn write(&mut self, b: &mut Balancer) {
        use std::io::Write as _;
        let mut text = String::new();
        while let Some(e) = b.poll_event() {
            let line = lb::status::StatusLine {
                at: self.wall_zero_ms + e.at.as_millis() as f64,
                record: e.record,
            };
            if let Ok(json) = serde_json::to_string(&line) {
                tracing::info!("{json}");
                text.push_str(&json);
                text.push('\n');
            }
        }
        if let (Some(f), false) = (&mut self.file, text.is_empty())
            && let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.flush())
        {
            tracing::warn!("writing the status file: {e}");
        }
    }
}

/// The balancer loop: checks, state changes, table updates, reloads, until a stop signal.
async fn drive(
    config: BalancerConfig,
    path: PathBuf,
    data: DataPath,
    status_file: Option<PathBuf>,
    loopback: Vec<(std::net::TcpListener, SocketAddrV4)>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let now = move || Time::from_millis(u64::try_from(start.elapsed().as_millis()).unwrap_or(0));
    let mut status = StatusWriter::open(status_file.as_deref(), epoch_ms())?;
    let mut b = Balancer::new(config, now())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    for (l, listener) in loopback {
        forward::spawn(tokio::net::TcpListener::from_std(l)?, listener);
    }
    let (tx, mut rx) = mpsc::channel::<(u64, lb::ProbeReport)>(MAX_CONCURRENT_PROBES);
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES));
    let mut applied: Option<String> = None;
    let mut rendered_generation = 0;
    tracing::info!("balancer {} running", b.config().name);
    // A rewrite between reading the file and installing the SIGHUP handler is picked up here
    // (a driver sends no SIGHUP before the line above: it would kill the process).
    if read_config(&path).is_ok_and(|c| &c != b.config()) {
        reload(&mut b, &path, &data, now());
    }
    loop {
        b.handle_timeout(now());
        while let Some(p) = b.poll_probe() {
            let tx = tx.clone();
            let slots = Arc::clone(&slots);
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                let report = probe::run(&p).await;
                let _ = tx.send((p.id, report)).await;
            });
        }
        if applied.is_none() || rendered_generation != b.routes_generation() {
            rendered_generation = b.routes_generation();
            let script = lb::nft::render(&b.config().name, &b.routes());
            if applied.as_deref() != Some(script.as_str()) {
                applied = None;
                match data.apply(script.clone()) {
                    Ok(()) => applied = Some(script),
                    Err(e) => tracing::error!("applying the nftables table: {e:#}"),
                }
            }
        }
        // Status lines after the table: a reader that sees a state change can rely on the data
        // path already following it.
        status.write(&mut b);
        // An unapplied table is retried within a second.
        let wake = b.poll_timeout().map(|t| t.since(now()));
        let wake = match (&applied, wake) {
            (None, w) => w.map_or(std::time::Duration::from_secs(1), |w| {
                w.min(std::time::Duration::from_secs(1))
            }),
            (Some(_), Some(w)) => w,
            (Some(_), None) => std::time::Duration::from_secs(3600),
        };
        tokio::select! {
            Some((id, report)) = rx.recv() => b.handle_probe_result(id, report, now()),
            _ = tokio::time::sleep(wake) => {}
            _ = hup.recv() => reload(&mut b, &path, &data, now()),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("balancer {} stopping", b.config().name);
    Ok(())
}

/// SIGHUP: read the configuration again; a bad one is logged and changes nothing.
fn reload(b: &mut Balancer, path: &Path, data: &DataPath, now: Time) {
    let config = match read_config(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload ignored: {e:#}");
            return;
        }
    };
    if config.name != b.config().name {
        tracing::error!("reload ignored: the balancer's name cannot change");
        return;
    }
    let addresses_changed = config.nodes != b.config().nodes;
    if let Err(e) = b.reconfigure(config.clone(), now) {
        tracing::error!("reload ignored: {e}");
        return;
    }
    if addresses_changed && let Err(e) = data.add_addresses(&config) {
        tracing::error!("re-adding the node addresses: {e:#}");
    }
    tracing::info!("configuration reloaded");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_listeners() {
        let (l, t) = parse_loopback("127.0.0.1:6443=172.20.251.1:443").expect("valid");
        assert_eq!(l.port(), 6443);
        assert_eq!(t.to_string(), "172.20.251.1:443");
        assert!(parse_loopback("0.0.0.0:6443=172.20.251.1:443").is_err());
        assert!(parse_loopback("127.0.0.1:6443").is_err());
    }

    #[test]
    fn data_path_commands() {
        let d = DataPath {
            netns: Some("zl1-rt".into()),
            name: "api".into(),
        };
        assert_eq!(
            d.ip(&["addr", "flush", "dev", "lo", "label", &d.label()])
                .to_string(),
            "ip -n zl1-rt addr flush dev lo label lo:api"
        );
        assert_eq!(
            d.nft(String::new()).to_string(),
            "nsenter --net=/run/netns/zl1-rt nft -f -"
        );
    }
}
