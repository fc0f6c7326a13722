//! Long-running processes inside lab namespaces: start at [`Supervisor::start`] and
//! [`kill_in_netns`].
//!
//! A process is started as `nsenter --net=/run/netns/NS argv...` (which `exec`s, so the tracked
//! pid is the program itself; no private mount table, [`crate::exec::enter_netns_argv`]), with stdout/stderr in `<dir>/logs/<name>.{out,err}`. Every started process
//! is recorded with its pid and kernel start time in `<dir>/pids.json`, so `down` run by another
//! process can find and stop them without killing an unrelated process that reused the pid.
//! [`kill_in_netns`] finds processes by their network namespace (the inode of
//! `/proc/<pid>/ns/net` equals the inode of `/run/netns/NS`), which also catches children the
//! supervisor never saw; it is the power-off switch.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::exec::{Cmd, Runner};

/// How long processes get after SIGTERM before SIGKILL, and after SIGKILL before we give up.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(20);

/// A process to start inside a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSpec {
    /// Unique name inside the lab, `[A-Za-z0-9._-]{1,100}`; names the log files.
    pub name: String,
    pub netns: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A started process as recorded in `pids.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    pub name: String,
    pub netns: String,
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`; guards against pid reuse.
    pub start_ticks: u64,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// Starting, stopping or recording a process failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("process name {0:?} must match [A-Za-z0-9._-]{{1,100}}")]
    BadName(String),
    #[error("a process named {0:?} is already running")]
    AlreadyRunning(String),
    #[error("process {name:?} has an empty command line")]
    EmptyArgv { name: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ProcError + use<> {
    let path = path.to_path_buf();
    move |source| ProcError::Io { what, path, source }
}

/// Tracks the processes of one lab; state lives in one directory.
#[derive(Debug)]
pub struct Supervisor {
    dir: PathBuf,
    records: BTreeMap<String, ProcRecord>,
    /// Handles of processes this instance spawned, to reap them.
    children: BTreeMap<u32, Child>,
}

impl Supervisor {
    /// Open (or create) the state in `dir`, loading `pids.json` left by another process.
    pub fn open(dir: &Path) -> Result<Supervisor, ProcError> {
        let path = dir.join("pids.json");
        let records = match fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<ProcRecord> =
                    serde_json::from_slice(&bytes).map_err(|source| ProcError::State {
                        path: path.clone(),
                        source,
                    })?;
                list.into_iter().map(|r| (r.name.clone(), r)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io("cannot read", &path)(e)),
        };
        Ok(Supervisor {
            dir: dir.to_path_buf(),
            records,
            children: BTreeMap::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Start `spec` as `nsenter --net=/run/netns/NS argv...` (no private mount table: see
    /// [`crate::exec::enter_netns_argv`]), logging to files, and record it.
    pub fn start(&mut self, spec: &ProcSpec) -> Result<ProcRecord, ProcError> {
        validate_name(&spec.name)?;
        if spec.argv.is_empty() {
            return Err(ProcError::EmptyArgv {
                name: spec.name.clone(),
            });
        }
        self.reap();
        if self
            .records
            .get(&spec.name)
            .is_some_and(|r| pid_alive(r.pid, Some(r.start_ticks)))
        {
            return Err(ProcError::AlreadyRunning(spec.name.clone()));
        }
        let logs = self.dir.join("logs");
        fs::create_dir_all(&logs).map_err(io("cannot create", &logs))?;
        let out_path = logs.join(format!("{}.out", spec.name));
        let err_path = logs.join(format!("{}.err", spec.name));
        let out = fs::File::create(&out_path).map_err(io("cannot create", &out_path))?;
        let err = fs::File::create(&err_path).map_err(io("cannot create", &err_path))?;
        let argv = crate::exec::enter_netns_argv(&spec.netns, &spec.argv);
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io("cannot start `nsenter` for", &out_path))?;
        let pid = child.id();
        let record = ProcRecord {
            name: spec.name.clone(),
            netns: spec.netns.clone(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
            stdout: out_path,
            stderr: err_path,
        };
        self.children.insert(pid, child);
        self.records.insert(spec.name.clone(), record.clone());
        self.save()?;
        Ok(record)
    }

    /// Every recorded process, by name.
    pub fn records(&self) -> impl Iterator<Item = &ProcRecord> {
        self.records.values()
    }

    pub fn record(&self, name: &str) -> Option<&ProcRecord> {
        self.records.get(name)
    }

    /// True when the named process is still running (not exited, not a zombie).
    pub fn is_alive(&mut self, name: &str) -> bool {
        self.reap();
        self.records
            .get(name)
            .is_some_and(|r| pid_alive(r.pid, Some(r.start_ticks)))
    }

    /// Collect exit statuses of our own children so they do not linger as zombies.
    pub fn reap(&mut self) {
        self.children
            .retain(|_, c| matches!(c.try_wait(), Ok(None)));
    }

    /// SIGTERM the named process, SIGKILL after `grace`; forget it. Returns whether it died.
    pub fn stop(&mut self, runner: &dyn Runner, name: &str, grace: Duration) -> bool {
        let Some(r) = self.records.get(name).cloned() else {
            return true;
        };
        let dead = self.terminate(runner, &[(r.pid, Some(r.start_ticks))], grace);
        self.records.remove(name);
        let _ = self.save();
        dead
    }

    /// Stop every recorded process (SIGTERM, then SIGKILL after `grace`) and clear the record.
    pub fn stop_all(&mut self, runner: &dyn Runner, grace: Duration) -> bool {
        let targets: Vec<(u32, Option<u64>)> = self
            .records
            .values()
            .map(|r| (r.pid, Some(r.start_ticks)))
            .collect();
        let dead = self.terminate(runner, &targets, grace);
        self.records.clear();
        let _ = self.save();
        dead
    }

    fn terminate(
        &mut self,
        runner: &dyn Runner,
        targets: &[(u32, Option<u64>)],
        grace: Duration,
    ) -> bool {
        terminate(runner, targets, grace, || self.reap())
    }

    /// Write `pids.json` atomically (or remove it when nothing is tracked).
    fn save(&self) -> Result<(), ProcError> {
        let path = self.dir.join("pids.json");
        if self.records.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io("cannot remove", &path)(e))
                }
                _ => Ok(()),
            };
        }
        fs::create_dir_all(&self.dir).map_err(io("cannot create", &self.dir))?;
        let list: Vec<&ProcRecord> = self.records.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).map_err(|source| ProcError::State {
            path: path.clone(),
            source,
        })?;
        let tmp = self.dir.join("pids.json.tmp");
        fs::write(&tmp, bytes).map_err(io("cannot write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("cannot rename", &tmp))
    }
}

fn validate_name(name: &str) -> Result<(), ProcError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ProcError::BadName(name.to_string()))
    }
}

/// SIGTERM the live `targets` (pid, start ticks), SIGKILL what is left after `grace`, and wait
/// (up to `grace` again) until all are gone; `reap` runs while waiting (to collect children, so
/// they do not linger as zombies). Returns whether every target died.
pub fn terminate(
    runner: &dyn Runner,
    targets: &[(u32, Option<u64>)],
    grace: Duration,
    mut reap: impl FnMut(),
) -> bool {
    let alive = || -> Vec<u32> {
        targets
            .iter()
            .filter(|(p, s)| pid_alive(*p, *s))
            .map(|(p, _)| *p)
            .collect()
    };
    let mut wait_gone = |bound: Duration| {
        let deadline = Instant::now() + bound;
        loop {
            reap();
            if targets.iter().all(|(p, s)| !pid_alive(*p, *s)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    };
    signal(runner, "TERM", &alive());
    if wait_gone(grace) {
        return true;
    }
    signal(runner, "KILL", &alive());
    wait_gone(grace)
}

/// Send `SIGsig` to `pids` with the `kill` program (errors such as "no such process" ignored).
pub fn signal(runner: &dyn Runner, sig: &str, pids: &[u32]) {
    let me = std::process::id();
    let pids: Vec<String> = pids
        .iter()
        .filter(|p| **p > 1 && **p != me)
        .map(ToString::to_string)
        .collect();
    if pids.is_empty() {
        return;
    }
    let mut args = vec!["-s".to_string(), sig.to_string(), "--".to_string()];
    args.extend(pids);
    let _ = runner.run(&Cmd::new("kill", args));
}

/// Kernel start time of `pid` (field 22 of `/proc/<pid>/stat`).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Running, not a zombie, and (when given) started at `start_ticks`.
pub fn pid_alive(pid: u32, start: Option<u64>) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields.next().unwrap_or("X");
    if state == "Z" || state == "X" {
        return false;
    }
    match start {
        Some(s) if s != 0 => fields.nth(18).and_then(|f| f.parse::<u64>().ok()) == Some(s),
        _ => true,
    }
}

/// Inode of the named network namespace (`/run/netns/NS`), if it exists.
pub fn netns_inode(netns: &str) -> Option<u64> {
    fs::metadata(Path::new("/run/netns").join(netns))
        .ok()
        .map(|m| m.ino())
}

/// Pids of live processes whose network namespace is one of `namespaces`, per namespace.
/// One scan of `/proc`; processes that exit meanwhile are skipped.
pub fn pids_in_netns(namespaces: &[String]) -> BTreeMap<String, Vec<u32>> {
    let by_inode: BTreeMap<u64, &String> = namespaces
        .iter()
        .filter_map(|n| netns_inode(n).map(|i| (i, n)))
        .collect();
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    if by_inode.is_empty() {
        return out;
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id();
    let mut pids: BTreeSet<u32> = BTreeSet::new();
    for e in entries.flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
            pids.insert(pid);
        }
    }
    for pid in pids.into_iter().filter(|p| *p > 1 && *p != me) {
        let Ok(link) = fs::read_link(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        let inode = link
            .to_str()
            .and_then(|s| s.strip_prefix("net:["))
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(ns) = inode.and_then(|i| by_inode.get(&i)) {
            out.entry((*ns).clone()).or_default().push(pid);
        }
    }
    out
}

/// SIGKILL every process in the network namespaces `namespaces` (power loss: no grace), then
/// wait up to [`STOP_GRACE`] until they are gone. Returns the pids that were killed.
pub fn kill_in_netns(runner: &dyn Runner, namespaces: &[String]) -> Vec<u32> {
    let mut killed = Vec::new();
    let deadline = Instant::now() + STOP_GRACE;
    // Repeat: a dying parent may have forked just before the signal.
    loop {
        let pids: Vec<u32> = pids_in_netns(namespaces).into_values().flatten().collect();
        let live: Vec<u32> = pids.into_iter().filter(|p| pid_alive(*p, None)).collect();
        if live.is_empty() || Instant::now() >= deadline {
            break;
        }
        signal(runner, "KILL", &live);
        killed.extend(live.iter().copied());
        std::thread::sleep(POLL);
    }
    killed.sort_unstable();
    killed.dedup();
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::FakeRunner;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("kubelet-zl1-a-1").is_ok());
        assert!(validate_name("../x").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
    }

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let me = std::process::id();
        let st = start_ticks(me).expect("own stat");
        assert!(pid_alive(me, Some(st)));
        assert!(!pid_alive(me, Some(st + 1)));
    }

    #[test]
    fn missing_namespace_has_no_processes() {
        assert!(pids_in_netns(&["no-such-netns-zzz".to_string()]).is_empty());
        let fake = FakeRunner::new();
        assert!(kill_in_netns(&fake, &["no-such-netns-zzz".to_string()]).is_empty());
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn signal_never_targets_init_or_self() {
        let fake = FakeRunner::new();
        signal(&fake, "KILL", &[1, std::process::id()]);
        assert!(fake.calls().is_empty());
        signal(&fake, "TERM", &[4242]);
        assert_eq!(fake.lines(), ["kill -s TERM -- 4242"]);
    }

    #[test]
    fn state_round_trips_through_pids_json() {
        let dir = std::env::temp_dir().join(format!("netlab-procs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut s = Supervisor::open(&dir).expect("open");
        let rec = ProcRecord {
            name: "x".into(),
            netns: "ns".into(),
            pid: 999_999_999,
            start_ticks: 1,
            stdout: dir.join("x.out"),
            stderr: dir.join("x.err"),
        };
        s.records.insert("x".into(), rec.clone());
        s.save().expect("save");
        let s2 = Supervisor::open(&dir).expect("reopen");
        assert_eq!(s2.record("x"), Some(&rec));
        let fake = FakeRunner::new();
        let mut s2 = s2;
        assert!(s2.stop_all(&fake, Duration::from_millis(10)));
        assert!(fake.calls().is_empty(), "dead pid is not signalled");
        assert!(!dir.join("pids.json").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
