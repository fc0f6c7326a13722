//! The lab executor: builds a `Topology` with a `Runner`, adds pods, runs processes, injects
//! faults, tears down. Start at [`Lab::up`] and [`Lab::down`].
//!
//! State lives in `<state_dir>/<prefix>/`: `lab.json` (topology, pods, faults) and `pids.json`
//! (processes), so another process can [`Lab::attach`] or [`Lab::down_prefix`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exec::{Cmd, CmdOutput, ExecError, Runner, run_parallel};
use crate::faults::{self, FaultState};
use crate::plan;
use crate::procs::{self, ProcError, ProcRecord, ProcSpec, STOP_GRACE, Supervisor};
use crate::topology::{FIRST_POD_HOST, LAST_POD_HOST, NodeNet, PodNet, Topology, TopologyError};

/// Where labs keep their state unless told otherwise: on tmpfs, gone after a reboot like the
/// namespaces themselves.
pub const DEFAULT_STATE_DIR: &str = "/run/zonelab";

/// A lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lab state {path} is not valid: {source}")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no lab state in {0}")]
    NoState(PathBuf),
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    #[error("unknown zone {0:?}")]
    UnknownZone(String),
    #[error("unknown pod {0:?}")]
    UnknownPod(String),
    #[error("pod {0:?} already has a network")]
    PodExists(String),
    #[error("pods {pod_key:?} and {other:?} hash to the same namespace name")]
    PodHashCollision { pod_key: String, other: String },
    #[error("node {0:?} has no free pod address")]
    PodCidrFull(String),
    #[error("namespaces still present after teardown: {0:?}")]
    Leftovers(Vec<String>),
    #[error("the lab is down")]
    IsDown,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LabError + use<> {
    let path = path.to_path_buf();
    move |source| LabError::Io { what, path, source }
}

/// What `lab.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LabState {
    topology: Topology,
    pods: BTreeMap<String, PodNet>,
    faults: FaultState,
    powered_off: BTreeSet<String>,
}

/// One node as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub zone: String,
    pub ip: Ipv4Addr,
    pub isolated: bool,
    pub powered_off: bool,
    pub pods: usize,
}

/// One supervised process as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStatus {
    pub record: ProcRecord,
    pub alive: bool,
}

/// A snapshot of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabStatus {
    pub prefix: String,
    pub up: bool,
    /// Namespaces with the lab's prefix that exist right now.
    pub namespaces: Vec<String>,
    pub nodes: Vec<NodeStatus>,
    pub pods: Vec<PodNet>,
    pub partitioned_zones: Vec<String>,
    pub processes: Vec<ProcStatus>,
}

/// A running lab.
pub struct Lab {
    runner: Arc<dyn Runner>,
    dir: PathBuf,
    state: LabState,
    procs: Supervisor,
    is_down: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("dir", &self.dir)
            .field("is_down", &self.is_down)
            .finish()
    }
}

impl Lab {
    /// Clear leftovers with the same prefix, then build every namespace, link and route.
    /// On failure whatever was built is torn down again.
    pub fn up(topo: &Topology, runner: Arc<dyn Runner>, state_dir: &Path) -> Result<Lab, LabError> {
        let dir = state_dir.join(&topo.prefix);
        clear_prefix(&*runner, &topo.prefix, &dir)?;
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        let state = LabState {
            topology: topo.clone(),
            pods: BTreeMap::new(),
            faults: FaultState::default(),
            powered_off: BTreeSet::new(),
        };
        let procs = Supervisor::open(&dir)?;
        let mut lab = Lab {
            runner,
            dir,
            state,
            procs,
            is_down: false,
        };
        lab.save()?;
        let built = plan::up_steps(topo)
            .iter()
            .try_for_each(|c| lab.runner.run_ok(c).map(drop));
        if let Err(e) = built {
            tracing::warn!(prefix = %topo.prefix, error = %e, "lab up failed, tearing down");
            let _ = lab.down();
            return Err(e.into());
        }
        tracing::info!(prefix = %topo.prefix, nodes = topo.nodes.len(), "lab up");
        Ok(lab)
    }

    /// Reopen a lab another process brought up, from `<state_dir>/<prefix>/`.
    pub fn attach(
        prefix: &str,
        runner: Arc<dyn Runner>,
        state_dir: &Path,
    ) -> Result<Lab, LabError> {
        let dir = state_dir.join(prefix);
        let path = dir.join("lab.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LabError::NoState(dir));
            }
            Err(e) => return Err(io_err("cannot read", &path)(e)),
        };
        let state: LabState =
            serde_json::from_slice(&bytes).map_err(|source| LabError::State { path, source })?;
        let procs = Supervisor::open(&dir)?;
        Ok(Lab {
            runner,
            dir,
            state,
            procs,
            is_down: false,
        })
    }

    /// Stop every process (SIGTERM, SIGKILL after a bound), kill anything else left in the
    /// lab's namespaces, delete them all and the state. Safe to call more than once.
    pub fn down(&mut self) -> Result<(), LabError> {
        self.procs.stop_all(&*self.runner, STOP_GRACE);
        self.is_down = true;
        clear_prefix(&*self.runner, &self.state.topology.prefix, &self.dir)
    }

    /// `down` for a lab known only by prefix (e.g. from another process or after a crash).
    pub fn down_prefix(
        prefix: &str,
        runner: &dyn Runner,
        state_dir: &Path,
    ) -> Result<(), LabError> {
        clear_prefix(runner, prefix, &state_dir.join(prefix))
    }

    pub fn topology(&self) -> &Topology {
        &self.state.topology
    }

    pub fn runner(&self) -> &Arc<dyn Runner> {
        &self.runner
    }

    /// The lab's state directory, `<state_dir>/<prefix>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pod(&self, pod_key: &str) -> Option<&PodNet> {
        self.state.pods.get(pod_key)
    }

    pub fn pods(&self) -> impl Iterator<Item = &PodNet> {
        self.state.pods.values()
    }

    pub fn faults(&self) -> &FaultState {
        &self.state.faults
    }

    /// Build one more node in `zone` of this running lab (a node group's new instance, named
    /// `<prefix>-<zone>-<n>`; see [`Topology::add_node`]) and record it, so faults, status and
    /// teardown treat it like the nodes the lab started with. On failure what was built is
    /// removed again and the plan is unchanged.
    pub fn add_node(&mut self, zone: &str, name: &str) -> Result<NodeNet, LabError> {
        self.check_up()?;
        let mut topo = self.state.topology.clone();
        let node = topo.add_node(zone, name)?;
        for step in plan::add_node_steps(&topo, &node) {
            if let Err(e) = self.runner.run_ok(&step) {
                for undo in plan::remove_node_steps(&topo, &node) {
                    let _ = self.runner.run(&undo);
                }
                return Err(e.into());
            }
        }
        self.state.topology = topo;
        // The router's fault table names nodes by address: render it again with this one.
        self.apply_faults(None)?;
        tracing::info!(node = %node.name, ip = %node.ip, "node added");
        Ok(node)
    }

    /// Remove a node of this running lab (an instance its group terminated): kill every process
    /// in its namespace and its pods', delete the pods' namespaces, its links, route and
    /// namespace, and forget it. An unknown node is an error and changes nothing.
    pub fn remove_node(&mut self, name: &str) -> Result<NodeNet, LabError> {
        self.check_up()?;
        let node = self
            .state
            .topology
            .node(name)
            .cloned()
            .ok_or_else(|| LabError::UnknownNode(name.to_string()))?;
        let mut pods = vec![name.to_string()];
        let links = self
            .runner
            .run(&Cmd::new("ip", ["-n", name, "-o", "link", "show"]))?;
        pods.extend(plan::pod_namespaces_from_links(
            &self.state.topology.prefix,
            &links.stdout,
        ));
        pods.extend(
            self.state
                .pods
                .values()
                .filter(|p| p.node == name)
                .map(|p| p.netns.clone()),
        );
        pods.sort();
        pods.dedup();
        procs::kill_in_netns(&*self.runner, &pods);
        self.procs.reap();
        let pod_ns: Vec<String> = pods.into_iter().filter(|n| n != name).collect();
        if let Some(del) = plan::delete_namespaces(&pod_ns) {
            let _ = self.runner.run(&del);
        }
        for step in plan::remove_node_steps(&self.state.topology, &node) {
            let _ = self.runner.run(&step);
        }
        self.state.pods.retain(|_, p| p.node != name);
        self.state.topology.remove_node(name);
        self.state.faults.isolated_nodes.remove(name);
        self.state.powered_off.remove(name);
        self.apply_faults(None)?;
        tracing::info!(node = name, "node removed");
        Ok(node)
    }

    /// Give `pod_key` a namespace on `node` with the lowest free address of the node's CIDR.
    pub fn add_pod(&mut self, node: &str, pod_key: &str) -> Result<PodNet, LabError> {
        self.check_up()?;
        let topo = &self.state.topology;
        let node_net = topo
            .node(node)
            .ok_or_else(|| LabError::UnknownNode(node.to_string()))?;
        if self.state.pods.contains_key(pod_key) {
            return Err(LabError::PodExists(pod_key.to_string()));
        }
        let netns = topo.pod_netns(pod_key);
        if let Some(other) = self.state.pods.values().find(|p| p.netns == netns) {
            let other = other.pod_key.clone();
            return Err(LabError::PodHashCollision {
                pod_key: pod_key.to_string(),
                other,
            });
        }
        let used: BTreeSet<u8> = self
            .state
            .pods
            .values()
            .filter(|p| p.node == node)
            .map(|p| p.ip.octets()[3])
            .collect();
        let host = (FIRST_POD_HOST..=LAST_POD_HOST)
            .find(|h| !used.contains(h))
            .ok_or_else(|| LabError::PodCidrFull(node.to_string()))?;
        let pod = topo.pod_net(node_net, pod_key, host);
        wire_pod(&*self.runner, &pod)?;
        self.state.pods.insert(pod_key.to_string(), pod.clone());
        self.save()?;
        Ok(pod)
    }

    /// Kill whatever runs in the pod's namespace and delete it with its veth and route.
    pub fn remove_pod(&mut self, pod_key: &str) -> Result<(), LabError> {
        let pod = self.state.pods.get(pod_key).cloned();
        let pod = pod.ok_or_else(|| LabError::UnknownPod(pod_key.to_string()))?;
        self.unwire(&pod);
        self.state.pods.remove(pod_key);
        self.save()
    }

    fn unwire(&mut self, pod: &PodNet) {
        unwire_pod(&*self.runner, pod);
        self.procs.reap();
    }

    /// Start a long-running process inside a lab namespace (see [`Supervisor::start`]).
    pub fn start_process(&mut self, spec: &ProcSpec) -> Result<ProcRecord, LabError> {
        self.check_up()?;
        Ok(self.procs.start(spec)?)
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns whether the process is gone.
    pub fn stop_process(&mut self, name: &str, grace: Duration) -> bool {
        self.procs.stop(&*self.runner, name, grace)
    }

    pub fn process_alive(&mut self, name: &str) -> bool {
        self.procs.is_alive(name)
    }

    pub fn process(&self, name: &str) -> Option<&ProcRecord> {
        self.procs.record(name)
    }

    /// Run one bounded command inside `netns` ([`Cmd::in_netns`]).
    pub fn exec<S: AsRef<str>>(
        &self,
        netns: &str,
        argv: &[S],
        timeout: Duration,
    ) -> Result<CmdOutput, LabError> {
        Ok(self
            .runner
            .run(&Cmd::in_netns(netns, argv).with_timeout(timeout))?)
    }

    /// Silently drop everything to and from `node` (its IP, pod CIDR and uplink).
    pub fn isolate_node(&mut self, node: &str) -> Result<(), LabError> {
        self.known_node(node)?;
        self.state.faults.isolated_nodes.insert(node.to_string());
        self.apply_faults(Some(node))
    }

    /// Isolate several nodes at the same instant: the router's rules for all of them in one
    /// transaction (that cuts them from the other zones and the control plane at once), then
    /// each node's own table.
    pub fn isolate_nodes(&mut self, nodes: &[String]) -> Result<(), LabError> {
        for n in nodes {
            self.known_node(n)?;
        }
        self.state
            .faults
            .isolated_nodes
            .extend(nodes.iter().cloned());
        let topo = &self.state.topology;
        let script = faults::router_script(topo, &self.state.faults);
        self.runner
            .run_ok(&faults::apply_cmd(&topo.router_netns, script))?;
        // The nodes' own tables in parallel: a zone's 50 nodes one after another took seconds
        // at 150 nodes (each `nft` waits its turn on the kernel's RTNL lock).
        let cmds: Vec<Cmd> = nodes
            .iter()
            .map(|n| faults::apply_cmd(n, faults::node_script(true)))
            .collect();
        for res in run_parallel(&*self.runner, &cmds) {
            res?;
        }
        self.save()
    }

    /// Undo `isolate_node` (a powered-off node stays marked powered off).
    pub fn heal_node(&mut self, node: &str) -> Result<(), LabError> {
        self.known_node(node)?;
        self.state.faults.isolated_nodes.remove(node);
        self.apply_faults(Some(node))
    }

    /// Silently drop traffic between `zone` and every other zone and the control plane.
    pub fn partition_zone(&mut self, zone: &str) -> Result<(), LabError> {
        self.known_zone(zone)?;
        self.state.faults.partitioned_zones.insert(zone.to_string());
        self.apply_faults(None)
    }

    pub fn heal_zone(&mut self, zone: &str) -> Result<(), LabError> {
        self.known_zone(zone)?;
        self.state.faults.partitioned_zones.remove(zone);
        self.apply_faults(None)
    }

    /// Power loss: isolate first (so no FIN or RST escapes from dying sockets), then SIGKILL
    /// every process in the node's namespace and its pods' namespaces. Returns killed pids.
    pub fn power_off_node(&mut self, node: &str) -> Result<Vec<u32>, LabError> {
        self.power_off_nodes(&[node.to_string()])
    }

    /// Power loss of several nodes (and zone control-plane hosts) at the same instant (an AZ):
    /// all of them isolated first, then every process of each killed. Returns killed pids.
    pub fn power_off_nodes(&mut self, nodes: &[String]) -> Result<Vec<u32>, LabError> {
        self.isolate_nodes(nodes)?;
        self.kill_nodes(nodes)
    }

    /// SIGKILL every process of (isolated) nodes and of their pods, all in one sweep of
    /// `/proc` (one per node took seconds for a zone of 50); marks them powered off.
    fn kill_nodes(&mut self, nodes: &[String]) -> Result<Vec<u32>, LabError> {
        let mut namespaces: Vec<String> = nodes.to_vec();
        namespaces.extend(
            self.state
                .pods
                .values()
                .filter(|p| nodes.contains(&p.node))
                .map(|p| p.netns.clone()),
        );
        // Pods wired by someone else (a node agent using `wire_pod`) are found from the kernel.
        let shows: Vec<Cmd> = nodes
            .iter()
            .map(|n| Cmd::in_netns(n, &["ip", "-o", "link", "show"]))
            .collect();
        for links in run_parallel(&*self.runner, &shows) {
            namespaces.extend(plan::pod_namespaces_from_links(
                &self.state.topology.prefix,
                &links?.stdout,
            ));
        }
        namespaces.sort();
        namespaces.dedup();
        let killed = procs::kill_in_netns(&*self.runner, &namespaces);
        self.procs.reap();
        self.state.powered_off.extend(nodes.iter().cloned());
        self.save()?;
        tracing::info!(
            nodes = nodes.len(),
            killed = killed.len(),
            "nodes powered off"
        );
        Ok(killed)
    }

    /// Reconnect a powered-off node. Its kernel state (nftables rules, conntrack, sockets of
    /// killed processes) survives, unlike a real reboot; restarting the agent is the caller's job.
    pub fn power_on_node(&mut self, node: &str) -> Result<(), LabError> {
        self.known_node(node)?;
        self.state.powered_off.remove(node);
        self.heal_node(node)
    }

    /// Power off every node of `zone` and its control-plane host (an AZ power loss); returns
    /// killed pids.
    pub fn power_off_zone(&mut self, zone: &str) -> Result<Vec<u32>, LabError> {
        self.known_zone(zone)?;
        let hosts = self.state.topology.zone_hosts(zone);
        self.power_off_nodes(&hosts)
    }

    /// Snapshot: namespaces present, nodes with their faults, pods, processes.
    pub fn status(&mut self) -> Result<LabStatus, LabError> {
        let prefix = self.state.topology.prefix.clone();
        let namespaces = list_owned(&*self.runner, &prefix)?;
        let st = &self.state;
        let nodes = st
            .topology
            .nodes
            .iter()
            .map(|n| NodeStatus {
                name: n.name.clone(),
                zone: n.zone.clone(),
                ip: n.ip,
                isolated: st.faults.isolated_nodes.contains(&n.name),
                powered_off: st.powered_off.contains(&n.name),
                pods: st.pods.values().filter(|p| p.node == n.name).count(),
            })
            .collect();
        self.procs.reap();
        let processes = self
            .procs
            .records()
            .map(|r| ProcStatus {
                record: r.clone(),
                alive: procs::pid_alive(r.pid, Some(r.start_ticks)),
            })
            .collect();
        Ok(LabStatus {
            up: !self.is_down && !namespaces.is_empty(),
            prefix,
            namespaces,
            nodes,
            pods: st.pods.values().cloned().collect(),
            partitioned_zones: st.faults.partitioned_zones.iter().cloned().collect(),
            processes,
        })
    }

    fn check_up(&self) -> Result<(), LabError> {
        if self.is_down {
            Err(LabError::IsDown)
        } else {
            Ok(())
        }
    }

    /// A node, or a zone control-plane host (faults treat both alike).
    fn known_node(&self, node: &str) -> Result<(), LabError> {
        self.check_up()?;
        match self.state.topology.isolation_set(node) {
            Some(_) => Ok(()),
            None => Err(LabError::UnknownNode(node.to_string())),
        }
    }

    fn known_zone(&self, zone: &str) -> Result<(), LabError> {
        self.check_up()?;
        match self.state.topology.zone(zone) {
            Some(_) => Ok(()),
            None => Err(LabError::UnknownZone(zone.to_string())),
        }
    }

    /// Re-render the router's fault table and, when given, one node's.
    fn apply_faults(&mut self, node: Option<&str>) -> Result<(), LabError> {
        let topo = &self.state.topology;
        let script = faults::router_script(topo, &self.state.faults);
        self.runner
            .run_ok(&faults::apply_cmd(&topo.router_netns, script))?;
        if let Some(node) = node {
            let script = faults::node_script(self.state.faults.isolated_nodes.contains(node));
            self.runner.run_ok(&faults::apply_cmd(node, script))?;
        }
        self.save()
    }

    fn save(&self) -> Result<(), LabError> {
        let path = self.dir.join("lab.json");
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|source| LabError::State {
            path: path.clone(),
            source,
        })?;
        let tmp = self.dir.join("lab.json.tmp");
        fs::write(&tmp, bytes).map_err(io_err("cannot write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("cannot rename", &tmp))
    }
}

/// Create `pod`'s namespace, veth pair, address and routes (see [`plan::add_pod_steps`]).
/// For node agents that allocate pod addresses themselves (`Topology::pod_net`) and must not
/// share `lab.json`; on failure whatever was created is removed again.
pub fn wire_pod(runner: &dyn Runner, pod: &PodNet) -> Result<(), LabError> {
    for step in plan::add_pod_steps(pod) {
        if let Err(e) = runner.run_ok(&step) {
            unwire_pod(runner, pod);
            return Err(e.into());
        }
    }
    Ok(())
}

/// SIGKILL whatever runs in `pod`'s namespace, then delete its veth (with the /32 route) and
/// the namespace. Anything already gone is skipped.
pub fn unwire_pod(runner: &dyn Runner, pod: &PodNet) {
    procs::kill_in_netns(runner, std::slice::from_ref(&pod.netns));
    for step in plan::remove_pod_steps(pod) {
        let _ = runner.run(&step);
    }
}

/// Namespaces carrying `prefix` that exist now.
fn list_owned(runner: &dyn Runner, prefix: &str) -> Result<Vec<String>, LabError> {
    let out = runner.run_ok(&Cmd::new("ip", ["netns", "list"]))?;
    Ok(plan::owned_namespaces(
        prefix,
        &plan::parse_netns_list(&out.stdout),
    ))
}

/// Remove everything a lab with `prefix` may have left: recorded processes, any process in
/// its namespaces, the namespaces, and the state directory `dir`.
fn clear_prefix(runner: &dyn Runner, prefix: &str, dir: &Path) -> Result<(), LabError> {
    match Supervisor::open(dir) {
        Ok(mut s) => {
            s.stop_all(runner, STOP_GRACE);
        }
        Err(e) => tracing::warn!(error = %e, "ignoring unreadable process state"),
    }
    let owned = list_owned(runner, prefix)?;
    if !owned.is_empty() {
        let killed = procs::kill_in_netns(runner, &owned);
        tracing::info!(
            prefix,
            namespaces = owned.len(),
            killed = killed.len(),
            "clearing lab"
        );
        if let Some(del) = plan::delete_namespaces(&owned) {
            runner.run(&del)?;
        }
        let left = list_owned(runner, prefix)?;
        if !left.is_empty() {
            return Err(LabError::Leftovers(left));
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("cannot remove", dir)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::FakeRunner;
    use crate::topology::LabSpec;

    fn setup(tag: &str) -> (Topology, Arc<FakeRunner>, PathBuf) {
        let spec = LabSpec {
            prefix: "zf".into(),
            zones: vec!["a".into(), "b".into()],
            nodes_per_zone: 2,
        };
        let dir = std::env::temp_dir().join(format!("netlab-lab-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        (
            Topology::new(&spec).expect("valid"),
            Arc::new(FakeRunner::new()),
            dir,
        )
    }

    #[test]
    fn up_clears_leftovers_then_builds() {
        let (topo, fake, dir) = setup("up");
        fake.respond("ip netns list", CmdOutput::ok("zf-rt (id: 1)\nzf0-rt\n"));
        let lab = Lab::up(&topo, fake.clone(), &dir);
        // The fake keeps listing zf-rt, so the leftover check trips: nothing is built.
        assert!(matches!(lab, Err(LabError::Leftovers(ref l)) if l == &["zf-rt".to_string()]));
        let calls = fake.calls();
        let del = calls
            .iter()
            .find(|c| c.args.first().map(String::as_str) == Some("-force"));
        assert_eq!(
            del.and_then(|c| c.stdin.as_deref()),
            Some("netns del zf-rt\n")
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn pods_get_lowest_free_address_and_faults_render() {
        let (topo, fake, dir) = setup("pods");
        let mut lab = Lab::up(&topo, fake.clone(), &dir).expect("up on fake");
        let p1 = lab.add_pod("zf-a-1", "default/x").expect("pod");
        let p2 = lab.add_pod("zf-a-1", "default/y").expect("pod");
        assert_eq!(p1.ip, Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(p2.ip, Ipv4Addr::new(10, 244, 0, 3));
        assert!(matches!(
            lab.add_pod("zf-a-1", "default/x"),
            Err(LabError::PodExists(_))
        ));
        assert!(matches!(
            lab.add_pod("nope", "default/z"),
            Err(LabError::UnknownNode(_))
        ));
        lab.remove_pod("default/x").expect("remove");
        let p3 = lab.add_pod("zf-a-1", "default/z").expect("pod");
        assert_eq!(
            p3.ip,
            Ipv4Addr::new(10, 244, 0, 2),
            "freed address is reused"
        );

        lab.partition_zone("b").expect("partition");
        assert!(matches!(
            lab.partition_zone("q"),
            Err(LabError::UnknownZone(_))
        ));
        let last = fake.calls().last().cloned().expect("call");
        assert_eq!(last.to_string(), "nsenter --net=/run/netns/zf-rt nft -f -");
        assert!(
            last.stdin
                .as_deref()
                .expect("script")
                .contains("172.20.1.0/24")
        );

        let attached = Lab::attach("zf", fake.clone(), &dir).expect("attach");
        assert_eq!(attached.pods().count(), 2);
        assert!(attached.faults().partitioned_zones.contains("b"));

        lab.down().expect("down");
        lab.down().expect("down twice");
        assert!(matches!(
            lab.add_pod("zf-a-1", "default/w"),
            Err(LabError::IsDown)
        ));
        assert!(!dir.join("zf").exists());
    }

    #[test]
    fn added_nodes_are_built_faulted_and_removed_like_the_first_ones() {
        let (topo, fake, dir) = setup("addnode");
        let mut lab = Lab::up(&topo, fake.clone(), &dir).expect("up on fake");
        let n = lab.add_node("b", "zf-b-3").expect("add");
        assert_eq!(n.ip, Ipv4Addr::new(172, 20, 1, 13));
        let text = |fake: &FakeRunner| -> String {
            fake.calls()
                .iter()
                .map(|c| format!("{c}\n{}", c.stdin.as_deref().unwrap_or("")))
                .collect()
        };
        let built = text(&fake);
        assert!(built.contains("netns add zf-b-3"), "{built}");
        assert!(built.contains("link add vn4 type veth peer name eth0 netns zf-b-3"));
        assert!(built.contains("route add 10.244.4.0/24 via 172.20.1.13"));
        let attached = Lab::attach("zf", fake.clone(), &dir).expect("attach");
        assert!(
            attached.topology().node("zf-b-3").is_some(),
            "recorded in lab.json"
        );
        // A zone fault covers it.
        lab.power_off_zone("b").expect("power off");
        let router = fake
            .calls()
            .iter()
            .rev()
            .find(|c| c.to_string() == "nsenter --net=/run/netns/zf-rt nft -f -")
            .and_then(|c| c.stdin.clone())
            .expect("router script");
        assert!(router.contains("172.20.1.13, 10.244.4.0/24"), "{router}");
        lab.remove_node("zf-b-3").expect("remove");
        assert!(lab.topology().node("zf-b-3").is_none());
        assert!(
            fake.lines().iter().any(|l| l.contains("link del vn4")),
            "{}",
            text(&fake)
        );
        assert!(matches!(
            lab.remove_node("zf-b-3"),
            Err(LabError::UnknownNode(_))
        ));
        assert!(matches!(
            lab.add_node("q", "zf-q-1"),
            Err(LabError::Topology(_))
        ));
        lab.down().expect("down");
    }

    #[test]
    fn zone_power_off_cuts_and_marks_the_zone_control_plane_host() {
        let (topo, fake, dir) = setup("zcp");
        let topo = topo.with_zone_control_planes();
        let mut lab = Lab::up(&topo, fake.clone(), &dir).expect("up on fake");
        lab.power_off_zone("a").expect("power off");
        let router = fake
            .calls()
            .iter()
            .rev()
            .find(|c| c.to_string() == "nsenter --net=/run/netns/zf-rt nft -f -")
            .and_then(|c| c.stdin.clone())
            .expect("router script");
        assert!(router.contains("ip daddr { 172.20.0.10 } drop"), "{router}");
        assert!(router.contains("ip daddr { 172.20.0.11, 10.244.0.0/24 } drop"));
        assert!(!router.contains("172.20.1.10"));
        let calls: Vec<String> = fake.calls().iter().map(ToString::to_string).collect();
        assert!(calls.contains(&"nsenter --net=/run/netns/zf-cp-a nft -f -".to_string()));
        assert!(
            lab.status()
                .expect("status")
                .nodes
                .iter()
                .all(|n| n.zone != "a" || n.powered_off)
        );
        lab.power_on_node("zf-cp-a").expect("power on the host");
        assert!(!lab.faults().isolated_nodes.contains("zf-cp-a"));
        assert!(matches!(
            lab.isolate_node("zf-cp-q"),
            Err(LabError::UnknownNode(_))
        ));
        lab.down().expect("down");
    }
}
