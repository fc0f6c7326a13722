//! `lab fail` and `lab recover`: a fault on a zone or a node (power, partition, graceful stop)
//! and its undoing, with the zone's control-plane host when the control plane runs in the
//! zones. Start at [`inject`] and [`heal`]; the rules themselves are `netlab`'s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netlab::Lab;

use super::{
    FailMode, LabConfig, Target, agent_pid, control_plane, kill_pid, load_config, runner,
    start_agent,
};
use crate::clock::epoch_ms;

/// The nodes a `zone`/`node` target names (an error if none exists).
fn nodes_of(cfg: &LabConfig, what: Target, name: &str) -> anyhow::Result<Vec<String>> {
    let nodes: Vec<String> = match what {
        Target::Node => cfg
            .topology
            .node(name)
            .map(|n| vec![n.name.clone()])
            .unwrap_or_default(),
        Target::Zone => cfg
            .topology
            .nodes
            .iter()
            .filter(|n| n.zone == name)
            .map(|n| n.name.clone())
            .collect(),
    };
    anyhow::ensure!(
        !nodes.is_empty(),
        "no {what:?} named {name:?} in lab {:?}",
        cfg.prefix
    );
    Ok(nodes)
}

/// What a fault or a recovery touched, and when it took effect.
#[derive(Debug, Clone)]
pub struct Injected {
    pub nodes: Vec<String>,
    /// When the network change committed (or the agents were signalled), ms since the epoch:
    /// the moment clients start to notice.
    pub effective_ms: f64,
}

/// Inject a failure; returns the nodes it touched and when it took effect.
pub fn inject(
    state_dir: &Path,
    prefix: &str,
    what: Target,
    name: &str,
    mode: FailMode,
) -> anyhow::Result<Injected> {
    let _guard = super::group_nodes::lock_state();
    let cfg = load_config(state_dir, prefix)?;
    let mut lab = Lab::attach(prefix, runner(), state_dir)?;
    let nodes = nodes_of(&cfg, what, name)?;
    let mut effective_ms = epoch_ms();
    match (mode, what) {
        (FailMode::Power, _) => {
            // Every node (and the zone's control-plane host) cut at once, then killed: the cut
            // is when the power went.
            let hosts = match what {
                Target::Zone => cfg.topology.zone_hosts(name),
                Target::Node => nodes.clone(),
            };
            lab.isolate_nodes(&hosts)?;
            effective_ms = epoch_ms();
            lab.power_off_nodes(&hosts)?;
        }
        (FailMode::Partition, Target::Zone) => {
            lab.partition_zone(name)?;
            effective_ms = epoch_ms();
        }
        (FailMode::Partition, Target::Node) => {
            lab.isolate_node(name)?;
            effective_ms = epoch_ms();
        }
        (FailMode::Graceful, _) => {
            // The agent shuts its pods down (node graceful shutdown) on SIGTERM, then exits.
            for n in &nodes {
                if let Some(p) = agent_pid(state_dir, prefix, n) {
                    std::fs::write(stopping_marker(state_dir, prefix, n), p.pid.to_string())?;
                    p.signal("TERM");
                }
            }
        }
    }
    Ok(Injected {
        nodes,
        effective_ms,
    })
}

/// Marks a node whose agent was told to stop gracefully (holds the pid).
fn stopping_marker(state_dir: &Path, prefix: &str, node: &str) -> PathBuf {
    state_dir.join(prefix).join(format!("stopping-{node}"))
}

/// How long `recover` lets a gracefully stopping agent finish draining before it kills it.
const DRAIN_WAIT: Duration = Duration::from_secs(60);

/// An agent still draining after a graceful stop would exit right after `recover` decided it
/// runs: wait for it (bounded), so it is restarted.
fn finish_graceful_stop(state_dir: &Path, prefix: &str, node: &str) {
    let marker = stopping_marker(state_dir, prefix, node);
    if !marker.exists() {
        return;
    }
    if let Some(p) = agent_pid(state_dir, prefix, node) {
        let deadline = Instant::now() + DRAIN_WAIT;
        while p.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        kill_pid(p);
    }
    let _ = std::fs::remove_file(marker);
}

/// Undo failures: heal the network, restart agents that are not running; returns the nodes
/// and when the network was whole again.
pub fn heal(state_dir: &Path, prefix: &str, what: Target, name: &str) -> anyhow::Result<Injected> {
    let _guard = super::group_nodes::lock_state();
    let cfg = load_config(state_dir, prefix)?;
    let mut lab = Lab::attach(prefix, runner(), state_dir)?;
    let exe = std::env::current_exe()?;
    let nodes = nodes_of(&cfg, what, name)?;
    let hosts = match what {
        Target::Zone => {
            lab.heal_zone(name)?;
            cfg.topology.zone_hosts(name)
        }
        Target::Node => nodes.clone(),
    };
    for n in &hosts {
        lab.power_on_node(n)?;
        lab.heal_node(n)?;
    }
    let effective_ms = epoch_ms();
    if let (Some(z), Target::Zone) = (&cfg.zonal, what) {
        control_plane::restart_zone(&state_dir.join(prefix), &exe, &cfg.topology, z, name)?;
    }
    for n in &nodes {
        finish_graceful_stop(state_dir, prefix, n);
        if agent_pid(state_dir, prefix, n).is_none() {
            start_agent(state_dir, &exe, &cfg, n)?;
        }
    }
    Ok(Injected {
        nodes,
        effective_ms,
    })
}
