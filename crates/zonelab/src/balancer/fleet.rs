//! The lab's "cloud" for the load-balancer controller: one `zonelab balancer` child process per
//! balancer, in the router namespace, configured through its file — rewrite it, then SIGHUP —
//! as docs/load-balancer.md describes.
//!
//! Start at [`plan`] (the pure part: which steps an action takes), then [`Fleet`] (runs them).
//! A child that has not yet logged `balancer <name> running` gets no SIGHUP (before its
//! handler is installed SIGHUP would kill it); it re-reads its file right after that line, so
//! a rewrite during its start is not lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use controllers::loadbalancer::CloudAction;
use controllers::loadbalancer::cloud::Cloud;
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

/// The running balancers.
pub struct Fleet {
    cfg: FleetConfig,
    children: BTreeMap<String, (Child, bool)>,
}

fn name_of(action: &CloudAction) -> &str {
    match action {
        CloudAction::EnsureLoadBalancer { config, .. } => &config.name,
        CloudAction::DeleteLoadBalancer { name, .. } => name,
    }
}

impl Fleet {
    pub fn new(cfg: FleetConfig) -> std::io::Result<Fleet> {
        std::fs::create_dir_all(&cfg.dir)?;
        Ok(Fleet {
            cfg,
            children: BTreeMap::new(),
        })
    }

    fn state(&mut self, name: &str) -> ChildState {
        let Some((child, running)) = self.children.get_mut(name) else {
            return ChildState::Absent;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            self.children.remove(name);
            return ChildState::Absent;
        }
        if !*running {
            let log = std::fs::read_to_string(self.cfg.log_path(name)).unwrap_or_default();
            *running = log.contains(&format!("balancer {name} running"));
        }
        if *running {
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
                let child = Command::new(&self.cfg.exe)
                    .args(&args)
                    .env("ZONELAB_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()?;
                self.children.insert(name, (child, false));
                Ok(())
            }
            Step::Reload { name } => {
                if let Some((child, _)) = self.children.get(&name) {
                    netlab::procs::signal(&SystemRunner, "HUP", &[child.id()]);
                }
                Ok(())
            }
            Step::Stop { name } => {
                if let Some((mut child, _)) = self.children.remove(&name) {
                    stop(&mut child);
                }
                Ok(())
            }
            Step::Remove { path } => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

fn stop(child: &mut Child) {
    netlab::procs::signal(&SystemRunner, "TERM", &[child.id()]);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Cloud for Fleet {
    fn apply(&mut self, action: &CloudAction) -> Result<(), String> {
        let name = name_of(action).to_string();
        let state = self.state(&name);
        for step in plan(&self.cfg, action, state)? {
            self.run(step)
                .map_err(|e| format!("balancer {name}: {e}"))?;
        }
        Ok(())
    }
}

impl Drop for Fleet {
    /// The balancers go with the process that started them (they remove their tables).
    fn drop(&mut self) {
        for (_, (mut child, _)) in std::mem::take(&mut self.children) {
            stop(&mut child);
        }
    }
}

/// The fleet's directory default under a server's data dir.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("balancers")
}

#[cfg(test)]
mod tests {
    use controllers::Key;
    use lb::BalancerConfig;

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
}
