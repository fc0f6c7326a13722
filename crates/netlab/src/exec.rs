//! Running command lines: the `Runner` seam, the real `SystemRunner` and a recording `FakeRunner`.
//!
//! Start at [`Runner`]. Every netlink change the lab makes is an `ip`/`nft`/`sysctl` command
//! line (batched with `ip -n NS -batch -` where possible), so the whole lab can be tested
//! without root by recording the lines it would run.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Default bound on one command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// One command line to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    /// Written to the command's stdin, then stdin is closed.
    pub stdin: Option<String>,
    pub timeout: Duration,
}

impl Cmd {
    pub fn new<I, S>(program: &str, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            program: program.to_string(),
            args: args.into_iter().map(Into::into).collect(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_stdin(mut self, stdin: String) -> Cmd {
        self.stdin = Some(stdin);
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    /// `ip -batch -` fed with `lines` (one `ip` command per line, without the `ip`), in the
    /// root namespace or, with `netns`, inside it through [`Cmd::in_netns`] (not `ip -n NS`,
    /// which copies the whole mount table into a private mount namespace for every call: with
    /// a netns bind mount per pod that copy grows with the lab).
    pub fn ip_batch(netns: Option<&str>, lines: &[String]) -> Cmd {
        let mut script = lines.join("\n");
        script.push('\n');
        let argv = ["ip", "-batch", "-"];
        match netns {
            Some(ns) => Cmd::in_netns(ns, &argv),
            None => Cmd::new(argv[0], argv[1..].iter().copied()),
        }
        .with_stdin(script)
    }

    /// `nsenter --net=/run/netns/NS argv...`: `argv` in the network namespace `NS` only, see
    /// [`enter_netns_argv`].
    pub fn in_netns<S: AsRef<str>>(netns: &str, argv: &[S]) -> Cmd {
        let mut full = enter_netns_argv(netns, argv);
        let program = full.remove(0);
        Cmd::new(&program, full)
    }
}

/// Most commands [`run_parallel`] runs at once.
pub const PARALLEL: usize = 16;

/// `run_ok` of every command, up to [`PARALLEL`] at a time; results in the order of `cmds`.
pub fn run_parallel(runner: &dyn Runner, cmds: &[Cmd]) -> Vec<Result<CmdOutput, ExecError>> {
    let mut out = Vec::with_capacity(cmds.len());
    for chunk in cmds.chunks(PARALLEL) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|c| s.spawn(move || runner.run_ok(c)))
                .collect();
            for h in handles {
                out.push(h.join().unwrap_or_else(|_| {
                    Err(ExecError::Spawn {
                        cmd: "a parallel command".into(),
                        source: std::io::Error::other("thread panicked"),
                    })
                }));
            }
        });
    }
    out
}

/// Where `ip netns add` bind-mounts named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// `nsenter --net=/run/netns/NS argv...` (util-linux): joins the network namespace `NS` and
/// execs `argv` (the pid stays the program's), in the caller's mount namespace.
///
/// `ip netns exec` also unshares a mount namespace (to remount `/sys` for `NS`): a long-lived
/// process started that way keeps a private copy of every mount, and as a slave of the root
/// mount namespace it receives every later `ip netns add`/`del` bind mount, so with one such
/// process and one namespace per pod the kernel's mount work grows with pods² (measured:
/// 1,500 `ip netns exec` sleepers cost 20 s of system time and 0.9 GiB of unreclaimable slab
/// to set up, against 2.7 s and 0.26 GiB through `nsenter`; docs/performance.md). Lab pods
/// and probes need the network namespace only.
pub fn enter_netns_argv<S: AsRef<str>>(netns: &str, argv: &[S]) -> Vec<String> {
    let mut out = vec![
        "nsenter".to_string(),
        format!("--net={NETNS_RUN_DIR}/{netns}"),
    ];
    out.extend(argv.iter().map(|a| a.as_ref().to_string()));
    out
}

/// Whether the named network namespace `netns` exists (`/run/netns/NS`).
pub fn netns_exists(netns: &str) -> bool {
    !netns.is_empty() && !netns.contains('/') && Path::new(NETNS_RUN_DIR).join(netns).exists()
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// What a finished command printed and returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn ok(stdout: &str) -> CmdOutput {
        CmdOutput {
            code: Some(0),
            stdout: stdout.to_string(),
            stderr: String::new(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A command could not be run, did not finish in time, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` did not finish within {after:?} and was killed")]
    Timeout { cmd: String, after: Duration },
    #[error("`{cmd}` exited with {code:?}: {stderr}")]
    Failed {
        cmd: String,
        code: Option<i32>,
        stderr: String,
    },
}

/// Runs command lines. Implementations must bound every command by `cmd.timeout`.
pub trait Runner: Send + Sync {
    /// Run `cmd` and return its output whatever its exit code.
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, ExecError>;

    /// Run `cmd` and turn a non-zero exit into [`ExecError::Failed`].
    fn run_ok(&self, cmd: &Cmd) -> Result<CmdOutput, ExecError> {
        let out = self.run(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(ExecError::Failed {
                cmd: short(cmd),
                code: out.code,
                stderr: out.stderr.trim().to_string(),
            })
        }
    }
}

/// Command line plus the first lines of its stdin, for error messages.
fn short(cmd: &Cmd) -> String {
    match &cmd.stdin {
        Some(s) if !s.is_empty() => {
            let head: Vec<&str> = s.lines().take(3).collect();
            format!("{cmd} <<< {}", head.join("; "))
        }
        _ => cmd.to_string(),
    }
}

/// The real runner: `std::process::Command` with a wall-clock bound.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, ExecError> {
        let start = Instant::now();
        let mut child = Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ExecError::Spawn {
                cmd: cmd.to_string(),
                source,
            })?;
        if let (Some(mut pipe), Some(text)) = (child.stdin.take(), cmd.stdin.clone()) {
            // A writer thread so a child that does not read cannot block us past the bound.
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        let out_rx = drain(child.stdout.take());
        let err_rx = drain(child.stderr.take());
        let mut pause = Duration::from_micros(200);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(source) => {
                    return Err(ExecError::Spawn {
                        cmd: cmd.to_string(),
                        source,
                    });
                }
            }
            if start.elapsed() >= cmd.timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExecError::Timeout {
                    cmd: short(cmd),
                    after: cmd.timeout,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        };
        // Output pipes close when the child exits unless it left a grandchild holding them.
        let grace = cmd
            .timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(100));
        let stdout = out_rx.recv_timeout(grace).unwrap_or_default();
        let stderr = err_rx
            .recv_timeout(Duration::from_millis(100))
            .unwrap_or_default();
        Ok(CmdOutput {
            code: status.code(),
            stdout,
            stderr,
        })
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Records every command; answers with scripted outputs (first rule whose prefix matches the
/// command line wins) or success with empty output.
#[derive(Debug, Default)]
pub struct FakeRunner {
    calls: Mutex<Vec<Cmd>>,
    rules: Mutex<Vec<(String, CmdOutput)>>,
}

impl FakeRunner {
    pub fn new() -> FakeRunner {
        FakeRunner::default()
    }

    /// Answer commands whose line starts with `prefix` with `output`.
    pub fn respond(&self, prefix: &str, output: CmdOutput) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push((prefix.to_string(), output));
        }
    }

    /// Every command run so far, in order.
    pub fn calls(&self) -> Vec<Cmd> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Command lines (`Display` form) run so far.
    pub fn lines(&self) -> Vec<String> {
        self.calls().iter().map(ToString::to_string).collect()
    }
}

impl Runner for FakeRunner {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, ExecError> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(cmd.clone());
        }
        let line = cmd.to_string();
        let rules = self.rules.lock().map(|r| r.clone()).unwrap_or_default();
        Ok(rules
            .into_iter()
            .find(|(p, _)| line.starts_with(p.as_str()))
            .map(|(_, o)| o)
            .unwrap_or_else(|| CmdOutput::ok("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_runner_captures_output_and_feeds_stdin() {
        let out =
            SystemRunner.run(&Cmd::new("cat", Vec::<String>::new()).with_stdin("hi\n".into()));
        let out = out.expect("cat runs");
        assert_eq!(out.stdout, "hi\n");
        assert!(out.success());
    }

    #[test]
    fn system_runner_reports_failure_and_timeout() {
        let err = SystemRunner.run_ok(&Cmd::new("sh", ["-c", "echo bad >&2; exit 3"]));
        match err {
            Err(ExecError::Failed { code, stderr, .. }) => {
                assert_eq!(code, Some(3));
                assert_eq!(stderr, "bad");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        let slow = Cmd::new("sleep", ["5"]).with_timeout(Duration::from_millis(100));
        assert!(matches!(
            SystemRunner.run(&slow),
            Err(ExecError::Timeout { .. })
        ));
    }

    #[test]
    fn entering_a_netns_is_nsenter_not_ip_netns_exec() {
        assert_eq!(
            enter_netns_argv("zl1-p-0a1b2c3d", &["/bin/echo", "--port", "8080"]),
            [
                "nsenter",
                "--net=/run/netns/zl1-p-0a1b2c3d",
                "/bin/echo",
                "--port",
                "8080"
            ]
        );
        let batch = Cmd::ip_batch(Some("zl1-a-1"), &["link set lo up".to_string()]);
        assert_eq!(
            batch.to_string(),
            "nsenter --net=/run/netns/zl1-a-1 ip -batch -"
        );
        assert_eq!(batch.stdin.as_deref(), Some("link set lo up\n"));
        assert!(!netns_exists(""));
        assert!(!netns_exists("../netns"));
        assert!(!netns_exists("no-such-netns-zzz"));
    }

    #[test]
    fn run_parallel_keeps_the_order_of_commands_and_their_errors() {
        let f = FakeRunner::new();
        f.respond(
            "echo 7.",
            CmdOutput {
                code: Some(1),
                stdout: String::new(),
                stderr: "no".into(),
            },
        );
        for i in 0..PARALLEL + 4 {
            f.respond(&format!("echo {i}."), CmdOutput::ok(&i.to_string()));
        }
        let cmds: Vec<Cmd> = (0..PARALLEL + 4)
            .map(|i| Cmd::new("echo", [format!("{i}.")]))
            .collect();
        let out = run_parallel(&f, &cmds);
        assert_eq!(out.len(), cmds.len());
        for (i, r) in out.iter().enumerate() {
            match r {
                Ok(o) => assert_eq!(o.stdout, i.to_string()),
                Err(ExecError::Failed { cmd, .. }) => {
                    assert_eq!((i, cmd.as_str()), (7, "echo 7."))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(out[7].is_err());
        assert_eq!(f.calls().len(), cmds.len());
    }

    #[test]
    fn fake_runner_records_and_scripts() {
        let f = FakeRunner::new();
        f.respond("ip netns list", CmdOutput::ok("x-rt (id: 0)\n"));
        let out = f.run(&Cmd::new("ip", ["netns", "list"])).expect("fake");
        assert_eq!(out.stdout, "x-rt (id: 0)\n");
        let b = Cmd::ip_batch(Some("x-rt"), &["link set lo up".to_string()]);
        assert_eq!(b.to_string(), "nsenter --net=/run/netns/x-rt ip -batch -");
        f.run(&b).expect("fake");
        assert_eq!(
            f.lines(),
            ["ip netns list", "nsenter --net=/run/netns/x-rt ip -batch -"]
        );
        assert_eq!(f.calls()[1].stdin.as_deref(), Some("link set lo up\n"));
    }
}
