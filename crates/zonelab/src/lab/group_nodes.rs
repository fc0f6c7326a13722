//! A node group's instance as a lab node: [`launch`] builds its namespace, veth and routes in
//! its zone and starts its agent, exactly as `lab up` does for the nodes it starts with;
//! [`terminate`] stops the agent and removes the namespace. Both record the node in the lab's
//! state (`lab.json`, `lab-config.json`), so faults, `lab status` and `lab down` cover it.
//!
//! Start at [`launch`].

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use netlab::Lab;

use super::{agent_pid, config_path, kill_pid, load_config, runner, start_agent};

/// Serializes this process's changes to the lab's state files (faults, node launches and
/// terminations run on different threads of `zonelab run`).
static LAB_STATE: Mutex<()> = Mutex::new(());

/// Holds the lab-state lock of this process.
pub(crate) fn lock_state() -> MutexGuard<'static, ()> {
    LAB_STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Build node `name` (`<prefix>-<zone>-<n>`) in `zone` and start its agent.
pub fn launch(state_dir: &Path, prefix: &str, zone: &str, name: &str) -> anyhow::Result<()> {
    let _guard = lock_state();
    let mut cfg = load_config(state_dir, prefix)?;
    let mut lab = Lab::attach(prefix, runner(), state_dir)?;
    lab.add_node(zone, name)?;
    cfg.topology = lab.topology().clone();
    std::fs::write(
        config_path(state_dir, prefix),
        serde_json::to_vec_pretty(&cfg)?,
    )?;
    let exe = std::env::current_exe()?;
    start_agent(state_dir, &exe, &cfg, name)?;
    Ok(())
}

/// Stop node `name`'s agent (SIGTERM, then SIGKILL) and remove the node from the lab; nothing
/// to do for an instance that never became a node.
pub fn terminate(state_dir: &Path, prefix: &str, name: &str) -> anyhow::Result<()> {
    let _guard = lock_state();
    let mut cfg = load_config(state_dir, prefix)?;
    if let Some(p) = agent_pid(state_dir, prefix, name) {
        kill_pid(p);
    }
    let mut lab = Lab::attach(prefix, runner(), state_dir)?;
    if lab.topology().node(name).is_none() {
        // An instance that never ran (a failed launch) has no node.
        return Ok(());
    }
    lab.remove_node(name)?;
    cfg.topology = lab.topology().clone();
    std::fs::write(
        config_path(state_dir, prefix),
        serde_json::to_vec_pretty(&cfg)?,
    )?;
    Ok(())
}
