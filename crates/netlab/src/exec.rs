//! Running command lines: the `Runner` seam, the real `SystemRunner` and a recording `FakeRunner`.
//!
//! Start at [`Runner`]. Every netlink change the lab makes is an `ip`/`nft`/`sysctl` command
//! line (batched with `ip -n NS -batch -` where possible), so the whole lab can be tested
//! without root by recording the lines it would run.

use std::fmt;
use std::io::{Read, Write};
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

    /// `ip -n NS -batch -` fed with `lines` (one `ip` command per line, without the `ip`).
    pub fn ip_batch(netns: Option<&str>, lines: &[String]) -> Cmd {
        let mut args = Vec::new();
        if let Some(ns) = netns {
            args.extend(["-n".to_string(), ns.to_string()]);
        }
        args.extend(["-batch".to_string(), "-".to_string()]);
        let mut script = lines.join("\n");
        script.push('\n');
        Cmd::new("ip", args).with_stdin(script)
    }

    /// `ip netns exec NS argv...`.
    pub fn in_netns<S: AsRef<str>>(netns: &str, argv: &[S]) -> Cmd {
        let mut args = vec!["netns".to_string(), "exec".to_string(), netns.to_string()];
        args.extend(argv.iter().map(|a| a.as_ref().to_string()));
        Cmd::new("ip", args)
    }
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
    fn fake_runner_records_and_scripts() {
        let f = FakeRunner::new();
        f.respond("ip netns list", CmdOutput::ok("x-rt (id: 0)\n"));
        let out = f.run(&Cmd::new("ip", ["netns", "list"])).expect("fake");
        assert_eq!(out.stdout, "x-rt (id: 0)\n");
        let b = Cmd::ip_batch(Some("x-rt"), &["link set lo up".to_string()]);
        assert_eq!(b.to_string(), "ip -n x-rt -batch -");
        f.run(&b).expect("fake");
        assert_eq!(f.lines(), ["ip netns list", "ip -n x-rt -batch -"]);
        assert_eq!(f.calls()[1].stdin.as_deref(), Some("link set lo up\n"));
    }
}
