//! The pod runtime (I/O, thin): runs [`RuntimeCommand`]s and reports [`RuntimeEvent`]s.
//! Start at [`Runtime`]; [`ProcessRuntime`] runs containers as processes in the pod's network
//! namespace (`ip netns exec`), [`FakeRuntime`] answers at once for tests.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Container;
use netlab::topology::hash8;
use netlab::{PodNet, Runner, SystemRunner};
use tokio::sync::mpsc;

use crate::core::{PodRef, RuntimeCommand, RuntimeEvent, Signal};

/// The built-in image that runs `<exe> echo --port <containerPort>`.
pub const ECHO_IMAGE: &str = "zonelab/echo";
/// Port of the echo image when the container declares none.
pub const ECHO_DEFAULT_PORT: i32 = 8080;

/// Runs runtime commands. `execute` must not block: work runs in spawned tasks that report
/// on `events`.
pub trait Runtime: Send + Sync {
    fn execute(&self, cmd: RuntimeCommand, events: mpsc::Sender<RuntimeEvent>);
}

/// Where the process runtime puts things.
#[derive(Clone, Debug)]
pub struct ProcessRuntimeConfig {
    /// The lab prefix: pod namespaces are `<prefix>-p-<hash8(uid)>`.
    pub netns_prefix: String,
    /// The node's network namespace (its name is the node name in the lab).
    pub node_netns: String,
    /// Container logs go to `<state_dir>/<pod uid>/<container>.log`.
    pub state_dir: PathBuf,
    /// The binary that serves `zonelab/echo` (normally `std::env::current_exe()`).
    pub echo_exe: PathBuf,
}

/// Containers as processes in per-pod network namespaces.
pub struct ProcessRuntime {
    cfg: ProcessRuntimeConfig,
    runner: Arc<dyn Runner>,
    /// (pod uid, container) -> pid of the running process.
    pids: Arc<Mutex<BTreeMap<(String, String), u32>>>,
}

impl ProcessRuntime {
    pub fn new(cfg: ProcessRuntimeConfig) -> ProcessRuntime {
        ProcessRuntime {
            cfg,
            runner: Arc::new(SystemRunner),
            pids: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// The pod's network plan (the address only matters when wiring).
    pub fn pod_net(&self, uid: &str, ip: Ipv4Addr) -> PodNet {
        let h = hash8(uid);
        PodNet {
            pod_key: uid.to_string(),
            node: self.cfg.node_netns.clone(),
            netns: format!("{}-p-{h}", self.cfg.netns_prefix),
            ip,
            host_veth: format!("zv{h}"),
            pod_if: "eth0".into(),
        }
    }

    fn setup(&self, pod: PodRef, ip: Ipv4Addr, events: mpsc::Sender<RuntimeEvent>) {
        let net = self.pod_net(&pod.uid, ip);
        let runner = self.runner.clone();
        tokio::spawn(async move {
            let res = tokio::task::spawn_blocking(move || {
                // A leftover from a crashed agent would make `netns add` fail.
                netlab::unwire_pod(&*runner, &net);
                netlab::wire_pod(&*runner, &net)
            })
            .await;
            let ev = match res {
                Ok(Ok(())) => RuntimeEvent::PodNetworkReady { pod, ip },
                Ok(Err(e)) => RuntimeEvent::PodNetworkFailed {
                    pod,
                    message: e.to_string(),
                },
                Err(e) => RuntimeEvent::PodNetworkFailed {
                    pod,
                    message: e.to_string(),
                },
            };
            let _ = events.send(ev).await;
        });
    }

    fn teardown(&self, pod: PodRef, events: mpsc::Sender<RuntimeEvent>) {
        let net = self.pod_net(&pod.uid, Ipv4Addr::UNSPECIFIED);
        let runner = self.runner.clone();
        let log_dir = self.cfg.state_dir.join(&pod.uid);
        tokio::spawn(async move {
            let _ = tokio::task::spawn_blocking(move || {
                netlab::unwire_pod(&*runner, &net);
                let _ = std::fs::remove_dir_all(log_dir);
            })
            .await;
            let _ = events.send(RuntimeEvent::PodNetworkTornDown { pod }).await;
        });
    }

    fn signal(&self, pod: &PodRef, container: &str, signal: Signal) {
        let key = (pod.uid.clone(), container.to_string());
        let pid = self.pids.lock().ok().and_then(|m| m.get(&key).copied());
        let Some(pid) = pid else {
            return;
        };
        let sig = match signal {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        };
        let runner = self.runner.clone();
        tokio::task::spawn_blocking(move || netlab::procs::signal(&*runner, sig, &[pid]));
    }

    fn start(
        &self,
        pod: PodRef,
        container: &Container,
        env: Vec<(String, String)>,
        events: mpsc::Sender<RuntimeEvent>,
    ) {
        let name = container.name.clone();
        let failed = |message: String| RuntimeEvent::ContainerStartFailed {
            pod: pod.clone(),
            container: name.clone(),
            message,
        };
        let argv = match container_argv(container, &self.cfg.echo_exe) {
            Ok(a) => a,
            Err(m) => return send_now(events, failed(m)),
        };
        let netns = self.pod_net(&pod.uid, Ipv4Addr::UNSPECIFIED).netns;
        let dir = self.cfg.state_dir.join(&pod.uid);
        let log = std::fs::create_dir_all(&dir).and_then(|()| {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{name}.log")))?;
            Ok((f.try_clone()?, f))
        });
        let (out, err) = match log {
            Ok(f) => f,
            Err(e) => return send_now(events, failed(format!("log file: {e}"))),
        };
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &netns])
            .args(&argv)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return send_now(events, failed(format!("spawn {argv:?}: {e}"))),
        };
        let Some(pid) = child.id() else {
            return send_now(events, failed("process exited at once".into()));
        };
        let key = (pod.uid.clone(), name.clone());
        if let Ok(mut m) = self.pids.lock() {
            m.insert(key.clone(), pid);
        }
        let pids = self.pids.clone();
        tokio::spawn(async move {
            let started = RuntimeEvent::ContainerStarted {
                pod: pod.clone(),
                container: name.clone(),
                pid,
            };
            let _ = events.send(started).await;
            let code = match child.wait().await {
                Ok(st) => st.code().or(st.signal().map(|s| 128 + s)).unwrap_or(255),
                Err(_) => 255,
            };
            if let Ok(mut m) = pids.lock()
                && m.get(&key) == Some(&pid)
            {
                m.remove(&key);
            }
            let exited = RuntimeEvent::ContainerExited {
                pod,
                container: name,
                code,
            };
            let _ = events.send(exited).await;
        });
    }
}

fn send_now(events: mpsc::Sender<RuntimeEvent>, ev: RuntimeEvent) {
    tokio::spawn(async move {
        let _ = events.send(ev).await;
    });
}

/// The command line of a container: the echo server for [`ECHO_IMAGE`], else command + args.
pub fn container_argv(c: &Container, echo_exe: &std::path::Path) -> Result<Vec<String>, String> {
    let image = c.image.as_deref().unwrap_or("");
    let base = image.split(':').next().unwrap_or("");
    if base == ECHO_IMAGE {
        let port = c
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .next()
            .unwrap_or(ECHO_DEFAULT_PORT);
        return Ok(vec![
            echo_exe.display().to_string(),
            "echo".into(),
            "--port".into(),
            port.to_string(),
        ]);
    }
    let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
    argv.extend(c.args.clone().unwrap_or_default());
    if argv.is_empty() {
        return Err(format!(
            "image {image:?} is not built in and the container has no command"
        ));
    }
    Ok(argv)
}

impl Runtime for ProcessRuntime {
    fn execute(&self, cmd: RuntimeCommand, events: mpsc::Sender<RuntimeEvent>) {
        match cmd {
            RuntimeCommand::SetupNetwork { pod, ip } => self.setup(pod, ip, events),
            RuntimeCommand::StartContainer {
                pod,
                container,
                env,
            } => self.start(pod, &container, env, events),
            RuntimeCommand::Signal {
                pod,
                container,
                signal,
            } => self.signal(&pod, &container, signal),
            RuntimeCommand::TeardownNetwork { pod } => self.teardown(pod, events),
        }
    }
}

/// A runtime that answers at once: networks come up, containers start with made-up pids and
/// exit on any signal (143 on TERM, 137 on KILL). Records every command.
#[derive(Default)]
pub struct FakeRuntime {
    pub commands: Mutex<Vec<RuntimeCommand>>,
    next_pid: Mutex<u32>,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    pub fn commands(&self) -> Vec<RuntimeCommand> {
        self.commands.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Runtime for FakeRuntime {
    fn execute(&self, cmd: RuntimeCommand, events: mpsc::Sender<RuntimeEvent>) {
        if let Ok(mut log) = self.commands.lock() {
            log.push(cmd.clone());
        }
        let ev = match cmd {
            RuntimeCommand::SetupNetwork { pod, ip } => RuntimeEvent::PodNetworkReady { pod, ip },
            RuntimeCommand::StartContainer { pod, container, .. } => {
                let pid = self
                    .next_pid
                    .lock()
                    .map(|mut p| {
                        *p += 1;
                        10_000 + *p
                    })
                    .unwrap_or(10_000);
                RuntimeEvent::ContainerStarted {
                    pod,
                    container: container.name.clone(),
                    pid,
                }
            }
            RuntimeCommand::Signal {
                pod,
                container,
                signal,
            } => RuntimeEvent::ContainerExited {
                pod,
                container,
                code: if signal == Signal::Kill { 137 } else { 143 },
            },
            RuntimeCommand::TeardownNetwork { pod } => RuntimeEvent::PodNetworkTornDown { pod },
        };
        send_now(events, ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn echo_image_and_commands() {
        let exe = Path::new("/usr/bin/zonelab");
        let c = container(serde_json::json!({"name": "c", "image": "zonelab/echo:1",
            "ports": [{"containerPort": 9000}]}));
        assert_eq!(
            container_argv(&c, exe).expect("argv"),
            ["/usr/bin/zonelab", "echo", "--port", "9000"]
        );
        let c = container(serde_json::json!({"name": "c", "image": "busybox",
            "command": ["sleep"], "args": ["100"]}));
        assert_eq!(container_argv(&c, exe).expect("argv"), ["sleep", "100"]);
        let c = container(serde_json::json!({"name": "c", "image": "nginx"}));
        assert!(container_argv(&c, exe).is_err());
    }

    #[test]
    fn pod_net_names_match_netlab() {
        let rt = ProcessRuntime::new(ProcessRuntimeConfig {
            netns_prefix: "zl1".into(),
            node_netns: "zl1-a-1".into(),
            state_dir: PathBuf::from("/tmp/x"),
            echo_exe: PathBuf::from("/bin/true"),
        });
        let spec = netlab::LabSpec {
            prefix: "zl1".into(),
            zones: vec!["a".into()],
            nodes_per_zone: 1,
        };
        let topo = netlab::Topology::new(&spec).expect("topo");
        let ip = Ipv4Addr::new(10, 244, 0, 5);
        assert_eq!(
            rt.pod_net("uid-1", ip),
            topo.pod_net(&topo.nodes[0], "uid-1", 5)
        );
    }
}
