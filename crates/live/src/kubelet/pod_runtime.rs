//! The pod runtime (I/O, thin): runs [`RuntimeCommand`]s and reports [`RuntimeEvent`]s.
//! Start at [`Runtime`]; [`ProcessRuntime`] runs containers as processes in the pod's network
//! namespace (`nsenter --net`, see [`netlab::exec::enter_netns_argv`]), [`FakeRuntime`] answers
//! at once for tests.

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

use super::logwriter::LogConfig;
use kubelet::core::standin::Plan;
use kubelet::core::{PodRef, RuntimeCommand, RuntimeEvent, Signal};
use kubelet::logfmt::Stream;

pub use kubelet::core::standin::{ECHO_DEFAULT_PORT, ECHO_IMAGE};

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
    /// Container logs: `<logs.root>/<pod uid>/<container>/<attempt>.log`.
    pub logs: LogConfig,
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
                // A leftover from a crashed agent would make `netns add` fail (a host veth
                // never outlives its pod namespace: the pair goes with the namespace).
                if netlab::exec::netns_exists(&net.netns) {
                    netlab::unwire_pod(&*runner, &net);
                }
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
        tokio::spawn(async move {
            let _ = tokio::task::spawn_blocking(move || {
                netlab::unwire_pod(&*runner, &net);
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

    fn start(&self, pod: PodRef, start: Start, events: mpsc::Sender<RuntimeEvent>) {
        let Start {
            container,
            env,
            attempt,
            plan,
        } = start;
        let name = container.name.clone();
        let failed = |message: String| RuntimeEvent::ContainerStartFailed {
            pod: pod.clone(),
            container: name.clone(),
            message,
        };
        let argv = match container_argv(&plan, &self.cfg.echo_exe) {
            Ok(a) => a,
            Err(m) => return send_now(events, failed(m)),
        };
        let netns = self.pod_net(&pod.uid, Ipv4Addr::UNSPECIFIED).netns;
        let capture = match self.cfg.logs.capture(&pod.uid, &name, attempt) {
            Ok(c) => c,
            Err(e) => return send_now(events, failed(format!("log file: {e}"))),
        };
        let full = netlab::exec::enter_netns_argv(&netns, &argv);
        let mut cmd = tokio::process::Command::new(&full[0]);
        cmd.args(&full[1..])
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return send_now(events, failed(format!("spawn {argv:?}: {e}"))),
        };
        if let Some(out) = child.stdout.take() {
            capture.spawn_reader(Stream::Stdout, out);
        }
        if let Some(err) = child.stderr.take() {
            capture.spawn_reader(Stream::Stderr, err);
        }
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

/// What [`RuntimeCommand::StartContainer`] carries.
struct Start {
    container: Box<Container>,
    env: Vec<(String, String)>,
    attempt: i32,
    plan: Plan,
}

/// The command line of a container: the echo server for [`ECHO_IMAGE`] and for a stand-in
/// (`--stands-in-for IMAGE`, one `--port` per declared TCP port), else command + args.
pub fn container_argv(plan: &Plan, echo_exe: &std::path::Path) -> Result<Vec<String>, String> {
    let echo = |ports: &[u16]| {
        let mut argv = vec![echo_exe.display().to_string(), "echo".into()];
        for p in ports {
            argv.extend(["--port".to_string(), p.to_string()]);
        }
        argv
    };
    match plan {
        Plan::Echo { port } => Ok(echo(&[*port])),
        Plan::StandIn { image, ports } => {
            let mut argv = echo(ports);
            argv.extend(["--stands-in-for".to_string(), image.clone()]);
            Ok(argv)
        }
        Plan::Command(argv) => Ok(argv.clone()),
        Plan::Refuse { image } => Err(kubelet::core::standin::refused_message(image)),
    }
}

impl Runtime for ProcessRuntime {
    fn execute(&self, cmd: RuntimeCommand, events: mpsc::Sender<RuntimeEvent>) {
        match cmd {
            RuntimeCommand::SetupNetwork { pod, ip } => self.setup(pod, ip, events),
            RuntimeCommand::StartContainer {
                pod,
                container,
                env,
                attempt,
                plan,
            } => self.start(
                pod,
                Start {
                    container,
                    env,
                    attempt,
                    plan,
                },
                events,
            ),
            RuntimeCommand::RemoveLogs { pod } => {
                let logs = self.cfg.logs.clone();
                tokio::task::spawn_blocking(move || logs.remove_pod(&pod.uid));
            }
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
            RuntimeCommand::RemoveLogs { .. } => return,
        };
        send_now(events, ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet::core::standin::{self, ImagePolicy};
    use std::path::Path;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn echo_image_stand_ins_and_commands() {
        let exe = Path::new("/usr/bin/zonelab");
        let argv = |v: serde_json::Value, policy: ImagePolicy| {
            container_argv(&standin::plan(&container(v), policy), exe)
        };
        assert_eq!(
            argv(
                serde_json::json!({"name": "c", "image": "zonelab/echo:1",
                    "ports": [{"containerPort": 9000}]}),
                ImagePolicy::StandIn
            )
            .expect("argv"),
            ["/usr/bin/zonelab", "echo", "--port", "9000"]
        );
        assert_eq!(
            argv(
                serde_json::json!({"name": "c", "image": "busybox",
                    "command": ["sleep"], "args": ["100"]}),
                ImagePolicy::StandIn
            )
            .expect("argv"),
            ["sleep", "100"]
        );
        let nginx = serde_json::json!({"name": "c", "image": "nginx:1.25",
            "ports": [{"containerPort": 80}, {"containerPort": 443}]});
        assert_eq!(
            argv(nginx.clone(), ImagePolicy::StandIn).expect("argv"),
            [
                "/usr/bin/zonelab",
                "echo",
                "--port",
                "80",
                "--port",
                "443",
                "--stands-in-for",
                "nginx:1.25"
            ]
        );
        assert!(argv(nginx, ImagePolicy::Fail).is_err());
    }

    #[test]
    fn pod_net_names_match_netlab() {
        let rt = ProcessRuntime::new(ProcessRuntimeConfig {
            netns_prefix: "zl1".into(),
            node_netns: "zl1-a-1".into(),
            logs: LogConfig {
                root: PathBuf::from("/tmp/x"),
                max_size: 1 << 20,
                max_files: 2,
            },
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
