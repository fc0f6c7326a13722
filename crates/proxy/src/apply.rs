//! Rule appliers: the seam between rendered text and the kernel. [`NftApplier`] runs
//! `nft -f -`, [`IptablesApplier`] runs `iptables-restore --noflush`, both optionally via
//! `ip netns exec <ns>`; [`FakeApplier`] records transactions for tests. Start at [`RuleApplier`].

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::iptables::JUMP_RULES;

/// Why applying a transaction failed. A failed transaction changed nothing (nft and
/// iptables-restore are atomic per table).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} exited with {status}: {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("injected failure: {0}")]
    Injected(String),
    #[error("applier task failed: {0}")]
    Join(String),
}

/// Applies one rendered transaction.
pub trait RuleApplier {
    fn apply(&mut self, text: &str) -> Result<(), ApplyError>;
}

/// A boxed applier (the live driver picks nft or iptables at start) is an applier.
impl<A: RuleApplier + ?Sized> RuleApplier for Box<A> {
    fn apply(&mut self, text: &str) -> Result<(), ApplyError> {
        (**self).apply(text)
    }
}

/// Records every transaction; can be told to fail the next ones.
#[derive(Debug, Default)]
pub struct FakeApplier {
    pub transactions: Vec<String>,
    /// Number of upcoming `apply` calls that fail (and are not recorded).
    pub fail_next: usize,
}

impl RuleApplier for FakeApplier {
    fn apply(&mut self, text: &str) -> Result<(), ApplyError> {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(ApplyError::Injected("FakeApplier.fail_next".into()));
        }
        self.transactions.push(text.to_string());
        Ok(())
    }
}

/// Builds `program args...`, prefixed with `ip netns exec <ns>` when a namespace is given.
fn command(netns: Option<&str>, program: &str, args: &[&str]) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]).args(args);
            c
        }
        None => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
    }
}

/// Runs a command with `stdin` fed to it; maps non-zero exit to [`ApplyError::Failed`].
pub fn run_with_stdin(mut cmd: Command, program: &str, stdin: &str) -> Result<(), ApplyError> {
    let spawn_err = |source| ApplyError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let write_result = match child.stdin.take() {
        Some(mut pipe) => pipe.write_all(stdin.as_bytes()),
        None => Ok(()),
    };
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(ApplyError::Failed {
            program: program.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(4000)
                .collect(),
        });
    }
    write_result.map_err(spawn_err)
}

/// Runs `nft -f -` (one atomic transaction), optionally inside a network namespace.
#[derive(Debug, Clone, Default)]
pub struct NftApplier {
    pub netns: Option<String>,
    /// Only validate (`nft --check -f -`), change nothing.
    pub check_only: bool,
}

impl NftApplier {
    pub fn new(netns: Option<String>) -> NftApplier {
        NftApplier {
            netns,
            check_only: false,
        }
    }
}

impl RuleApplier for NftApplier {
    fn apply(&mut self, text: &str) -> Result<(), ApplyError> {
        let args: &[&str] = if self.check_only {
            &["--check", "-f", "-"]
        } else {
            &["-f", "-"]
        };
        run_with_stdin(command(self.netns.as_deref(), "nft", args), "nft", text)
    }
}

/// Runs `iptables-restore --noflush`, optionally inside a network namespace; before the
/// first restore (and after a failure) it ensures the jump rules from the built-in chains.
#[derive(Debug, Clone, Default)]
pub struct IptablesApplier {
    pub netns: Option<String>,
    jumps_ensured: bool,
}

impl IptablesApplier {
    pub fn new(netns: Option<String>) -> IptablesApplier {
        IptablesApplier {
            netns,
            jumps_ensured: false,
        }
    }

    /// `iptables -C` each jump rule and `-I` it when missing.
    fn ensure_jumps(&self) -> Result<(), ApplyError> {
        for (table, chain, rule) in JUMP_RULES {
            let args = split_args(rule);
            let mut check: Vec<&str> = vec!["-w", "-t", table, "-C", chain];
            check.extend(args.iter().map(String::as_str));
            let exists = command(self.netns.as_deref(), "iptables", &check)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|source| ApplyError::Spawn {
                    program: "iptables".into(),
                    source,
                })?
                .success();
            if !exists {
                let mut insert: Vec<&str> = vec!["-w", "-t", table, "-I", chain];
                insert.extend(args.iter().map(String::as_str));
                run_with_stdin(
                    command(self.netns.as_deref(), "iptables", &insert),
                    "iptables",
                    "",
                )?;
            }
        }
        Ok(())
    }
}

/// Splits a rule into arguments, honouring double quotes.
fn split_args(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in rule.chars() {
        match ch {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl RuleApplier for IptablesApplier {
    fn apply(&mut self, text: &str) -> Result<(), ApplyError> {
        let restore = command(
            self.netns.as_deref(),
            "iptables-restore",
            &["-w", "--noflush"],
        );
        let result = run_with_stdin(restore, "iptables-restore", text);
        if result.is_ok() && !self.jumps_ensured {
            self.ensure_jumps()?;
            self.jumps_ensured = true;
        }
        if result.is_err() {
            self.jumps_ensured = false;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_args_honours_quotes() {
        assert_eq!(
            split_args("-m comment --comment \"a b\" -j X"),
            ["-m", "comment", "--comment", "a b", "-j", "X"]
        );
    }

    #[test]
    fn netns_prefix() {
        let c = command(Some("zl-n1"), "nft", &["-f", "-"]);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(c.get_program(), "ip");
        assert_eq!(args, ["netns", "exec", "zl-n1", "nft", "-f", "-"]);
    }

    #[test]
    fn fake_records_and_fails_on_demand() {
        let mut f = FakeApplier {
            fail_next: 1,
            ..Default::default()
        };
        assert!(f.apply("a").is_err());
        assert!(f.apply("b").is_ok());
        assert_eq!(f.transactions, ["b"]);
    }

    #[test]
    fn missing_binary_is_a_spawn_error() {
        let r = run_with_stdin(Command::new("/nonexistent/zl-nft"), "zl-nft", "x");
        assert!(matches!(r, Err(ApplyError::Spawn { .. })));
    }
}
