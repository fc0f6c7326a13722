//! The lab's "cloud" for the load-balancer controller: one `zonelab balancer` child process per
//! balancer, in the router namespace, configured through its file — rewrite it, then SIGHUP —
//! as docs/load-balancer.md describes.
//!
//! Start at [`plan`] (the pure part: which steps an action takes), then [`Fleet`] (runs them,
//! on the worker thread of a [`super::background::Background`]) and [`stop_all`] (`lab down`).
//! A child runs wholly in the balancers' namespace (`ip netns exec`): started by a server in a
//! zone's control-plane namespace it would otherwise die with that zone's power, and `lab
//! down`'s sweep of the lab's namespaces would miss it.
//! A child that has not yet logged `balancer <name> running` gets no SIGHUP (before its
//! handler is installed SIGHUP would kill it); it re-reads its file right after that line, so
//! a rewrite during its start is not lost.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use controllers::loadbalancer::CloudAction;
use controllers::loadbalancer::cloud::Apply;
use netlab::SystemRunner;

/// How long a stopping balancer gets to remove its table and addresses before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where the files go, which namespace the balancers run in, and which binary runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    pub dir: PathBuf,
    pub netns: Option<String>,
    pub exe: PathBuf,
}

impl FleetConfig {
    pub fn config_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }
    pub fn status_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.status.jsonl"))
    }
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// `zonelab balancer` arguments for `name`.
    pub fn args(&self, name: &str) -> Vec<String> {
        let mut a = vec![
            "balancer".to_string(),
            "--config".to_string(),
            self.config_path(name).display().to_string(),
            "--status-file".to_string(),
            self.status_path(name).display().to_string(),
        ];
        if let Some(ns) = &self.netns {
            a.extend(["--netns".to_string(), ns.clone()]);
        }
        a
    }

    /// The whole command line that starts a balancer with `args`: inside the namespace
    /// (`ip netns exec` execs, so the pid is the balancer's) when there is one.
    pub fn command(&self, args: &[String]) -> Vec<String> {
        let mut argv = match &self.netns {
            Some(ns) => vec!["ip".into(), "netns".into(), "exec".into(), ns.clone()],
            None => Vec::new(),
        };
        argv.push(self.exe.display().to_string());
        argv.extend(args.iter().cloned());
        argv
    }
}

/// What a child is doing, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// No live process.
    Absent,
    /// Started, its SIGHUP handler not known to be installed yet.
    Starting,
    Running,
}

/// One step of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write `text` to `path` (through a temporary file and a rename).
    Write {
        path: PathBuf,
        text: String,
    },
    Start {
        name: String,
        args: Vec<String>,
    },
    /// SIGHUP: read the file again.
    Reload {
        name: String,
    },
    /// SIGTERM, then wait (SIGKILL after [`STOP_GRACE`]).
    Stop {
        name: String,
    },
    Remove {
        path: PathBuf,
    },
}

/// The steps `action` takes when the balancer's child is in state `child`.
pub fn plan(
    cfg: &FleetConfig,
    action: &CloudAction,
    child: ChildState,
) -> Result<Vec<Step>, String> {
    match action {
        CloudAction::EnsureLoadBalancer { config, .. } => {
            let name = config.name.clone();
            let text = serde_json::to_string_pretty(config).map_err(|e| e.to_string())?;
            let write = Step::Write {
                path: cfg.config_path(&name),
                text,
            };
            let then = match child {
                ChildState::Absent => Some(Step::Start {
                    args: cfg.args(&name),
                    name,
                }),
                ChildState::Starting => None,
                ChildState::Running => Some(Step::Reload { name }),
            };
            Ok([Some(write), then].into_iter().flatten().collect())
        }
        CloudAction::DeleteLoadBalancer { name, .. } => {
            let stop = (child != ChildState::Absent).then(|| Step::Stop { name: name.clone() });
            let remove = Step::Remove {
                path: cfg.config_path(name),
            };
            Ok(stop.into_iter().chain([remove]).collect())
        }
    }
}

/// The balancers. Stateless on purpose: a balancer is found by its command line (its
/// `--config` path), so a new leader's fleet, or another server's sharing the directory, takes
/// over the running ones instead of starting a second process per balancer. Balancers outlive
/// the controller, as NLBs outlive LBC: they stop when their Service goes.
pub struct Fleet {
    cfg: FleetConfig,
    /// Children this process started, kept only to reap them once they exit.
    children: Vec<Child>,
}

fn name_of(action: &CloudAction) -> &str {
    match action {
        CloudAction::EnsureLoadBalancer { config, .. } => &config.name,
        CloudAction::DeleteLoadBalancer { name, .. } => name,
    }
}

/// Whether `argv` runs `zonelab balancer` with `--config config`.
pub fn is_balancer_for(argv: &[String], config: &Path) -> bool {
    balancer_config(argv).is_some_and(|c| Path::new(c) == config)
}

/// The `--config` path of a `zonelab balancer` command line.
pub fn balancer_config(argv: &[String]) -> Option<&str> {
    if !argv.iter().any(|a| a == "balancer") {
        return None;
    }
    argv.windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1].as_str())
}

/// Every live process with its command line (processes that exit meanwhile are skipped).
fn processes() -> Vec<(u32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let raw = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        out.push((pid, argv));
    }
    out.sort_by_key(|(pid, _)| *pid);
    out
}

/// The live process running the balancer configured by `config`, if any.
fn pid_for(config: &Path) -> Option<u32> {
    processes()
        .into_iter()
        .find(|(_, argv)| is_balancer_for(argv, config))
        .map(|(pid, _)| pid)
}

/// The balancers whose configuration lies in `dir` (a fleet's directory), by pid.
pub fn pids_in(dir: &Path) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(_, argv)| {
            balancer_config(argv).is_some_and(|c| Path::new(c).parent() == Some(dir))
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Stop every balancer of the fleet in `dir` (SIGTERM, SIGKILL after [`STOP_GRACE`]) and
/// remove the directory: `lab down`, and `lab up` clearing a crashed run. Found by command
/// line, wherever their threads are. Returns the pids stopped.
pub fn stop_all(dir: &Path) -> Vec<u32> {
    let pids = pids_in(dir);
    let targets: Vec<(u32, Option<u64>)> = pids
        .iter()
        .map(|p| (*p, netlab::procs::start_ticks(*p)))
        .collect();
    if !targets.is_empty() {
        netlab::procs::terminate(&SystemRunner, &targets, STOP_GRACE, || {});
    }
    let _ = std::fs::remove_dir_all(dir);
    pids
}

impl Fleet {
    pub fn new(cfg: FleetConfig) -> std::io::Result<Fleet> {
        std::fs::create_dir_all(&cfg.dir)?;
        Ok(Fleet {
            cfg,
            children: Vec::new(),
        })
    }

    fn state(&self, name: &str) -> ChildState {
        if pid_for(&self.cfg.config_path(name)).is_none() {
            return ChildState::Absent;
        }
        let log = std::fs::read_to_string(self.cfg.log_path(name)).unwrap_or_default();
        if log.contains(&format!("balancer {name} running")) {
            ChildState::Running
        } else {
            ChildState::Starting
        }
    }

    fn run(&mut self, step: Step) -> std::io::Result<()> {
        match step {
            Step::Write { path, text } => {
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, text)?;
                std::fs::rename(&tmp, &path)
            }
            Step::Start { name, args } => {
                let log = std::fs::File::create(self.cfg.log_path(&name))?;
                let argv = self.cfg.command(&args);
                let child = Command::new(&argv[0])
                    .args(&argv[1..])
                    .env("ZONELAB_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    // Its own group: a signal to the server's group (Ctrl-C) spares it.
                    .process_group(0)
                    .spawn()?;
                self.children.push(child);
                Ok(())
            }
            Step::Reload { name } => {
                if let Some(pid) = pid_for(&self.cfg.config_path(&name)) {
                    netlab::procs::signal(&SystemRunner, "HUP", &[pid]);
                }
                Ok(())
            }
            Step::Stop { name } => {
                self.stop(&self.cfg.config_path(&name));
                Ok(())
            }
            Step::Remove { path } => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// SIGTERM (the balancer removes its table and addresses), SIGKILL after [`STOP_GRACE`].
    fn stop(&mut self, config: &Path) {
        let Some(pid) = pid_for(config) else { return };
        netlab::procs::signal(&SystemRunner, "TERM", &[pid]);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            self.reap();
            if pid_for(config).is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        netlab::procs::signal(&SystemRunner, "KILL", &[pid]);
        self.reap();
    }

    fn reap(&mut self) {
        self.children
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }
}

impl Apply for Fleet {
    fn apply(&mut self, action: &CloudAction) -> Result<(), String> {
        self.reap();
        let name = name_of(action).to_string();
        let state = self.state(&name);
        for step in plan(&self.cfg, action, state)? {
            self.run(step)
                .map_err(|e| format!("balancer {name}: {e}"))?;
        }
        Ok(())
    }
}

/// Where the balancers of the lab whose router namespace is `netns` keep their files: one
/// directory per lab, shared by every server of its control plane.
pub fn default_dir(netns: &str) -> PathBuf {
    Path::new("/run/zonelab/balancers").join(netns)
}

#[cfg(test)]
mod tests {
    use lb::BalancerConfig;
    use runtime::Key;

    use super::*;

    fn cfg() -> FleetConfig {
        FleetConfig {
            dir: PathBuf::from("/run/zl/balancers"),
            netns: Some("zl1-rt".into()),
            exe: PathBuf::from("/usr/bin/zonelab"),
        }
    }

    fn config() -> BalancerConfig {
        BalancerConfig::parse(
            "name: k8s-abc1234\nnodes: [{zone: a, address: 172.20.251.16}]\nlisteners: [{port: 80, targetGroup: port-80}]\ntargetGroups: [{name: port-80, targets: [{ip: 172.20.0.11, port: 30080, zone: a}]}]\n",
        )
        .expect("valid")
    }

    #[test]
    fn ensure_writes_the_file_then_starts_or_reloads() {
        let ensure = CloudAction::EnsureLoadBalancer {
            service: Key::new("default", "web"),
            config: config(),
        };
        let steps = plan(&cfg(), &ensure, ChildState::Absent).expect("plan");
        let Step::Write { path, text } = &steps[0] else {
            panic!("{steps:?}")
        };
        assert_eq!(path, Path::new("/run/zl/balancers/k8s-abc1234.json"));
        // What the balancer reads back is what the controller asked for.
        assert_eq!(BalancerConfig::parse(text).expect("parses"), config());
        assert_eq!(
            steps[1],
            Step::Start {
                name: "k8s-abc1234".into(),
                args: [
                    "balancer",
                    "--config",
                    "/run/zl/balancers/k8s-abc1234.json",
                    "--status-file",
                    "/run/zl/balancers/k8s-abc1234.status.jsonl",
                    "--netns",
                    "zl1-rt"
                ]
                .map(String::from)
                .to_vec(),
            }
        );
        let steps = plan(&cfg(), &ensure, ChildState::Running).expect("plan");
        assert_eq!(
            steps[1],
            Step::Reload {
                name: "k8s-abc1234".into()
            }
        );
        // Starting: no SIGHUP (it would kill the child); it re-reads the file itself.
        assert_eq!(
            plan(&cfg(), &ensure, ChildState::Starting)
                .expect("plan")
                .len(),
            1
        );
    }

    #[test]
    fn a_balancer_starts_inside_its_namespace_and_is_found_by_its_directory() {
        let c = cfg();
        let argv = c.command(&c.args("k8s-abc1234"));
        // `ip netns exec` execs the balancer: its whole process lives in the router namespace.
        assert_eq!(
            &argv[..5],
            ["ip", "netns", "exec", "zl1-rt", "/usr/bin/zonelab"]
        );
        assert_eq!(argv[5], "balancer");
        assert_eq!(
            balancer_config(&argv),
            Some("/run/zl/balancers/k8s-abc1234.json")
        );
        let without = FleetConfig {
            netns: None,
            ..cfg()
        };
        assert_eq!(without.command(&without.args("x"))[0], "/usr/bin/zonelab");
        let agent = ["zonelab", "agent", "--config", "/run/zl/balancers/x.json"].map(String::from);
        assert_eq!(balancer_config(&agent), None);
    }

    #[test]
    fn delete_stops_then_removes_and_is_idempotent() {
        let delete = CloudAction::DeleteLoadBalancer {
            service: Key::new("default", "web"),
            name: "k8s-abc1234".into(),
        };
        let path = PathBuf::from("/run/zl/balancers/k8s-abc1234.json");
        let steps = plan(&cfg(), &delete, ChildState::Running).expect("plan");
        assert_eq!(
            steps,
            vec![
                Step::Stop {
                    name: "k8s-abc1234".into()
                },
                Step::Remove { path: path.clone() }
            ]
        );
        let steps = plan(&cfg(), &delete, ChildState::Absent).expect("plan");
        assert_eq!(steps, vec![Step::Remove { path }]);
    }

    #[test]
    fn a_running_balancer_is_found_by_its_config_path() {
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let path = cfg().config_path("k8s-abc1234");
        let mut running = vec!["/usr/bin/zonelab".to_string()];
        running.extend(cfg().args("k8s-abc1234"));
        assert!(is_balancer_for(&running, &path));
        assert!(!is_balancer_for(
            &running,
            &cfg().config_path("k8s-0000000")
        ));
        let other = argv(&[
            "zonelab",
            "agent",
            "--config",
            "/run/zl/balancers/k8s-abc1234.json",
        ]);
        assert!(!is_balancer_for(&other, &path));
    }
}
