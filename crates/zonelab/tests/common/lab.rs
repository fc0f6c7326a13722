//! A lab brought up by the real `zonelab lab` binary for one test, taken down when dropped
//! (even on panic), with kubectl pointed at it.
//!
//! Start at [`LabGuard`].

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_zonelab");

/// Takes the lab down when dropped.
pub struct LabGuard {
    pub prefix: String,
    pub state: PathBuf,
}

impl LabGuard {
    pub fn lab(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(["lab", "--prefix", &self.prefix, "--state-dir"])
            .arg(&self.state)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("zonelab lab")
    }

    /// kubectl against the lab, whatever its outcome.
    pub fn kubectl_run(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .env(
                "KUBECONFIG",
                self.state.join(&self.prefix).join("kubeconfig"),
            )
            .args(args)
            .output()
            .expect("kubectl")
    }

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut c = Command::new("kubectl")
            .env(
                "KUBECONFIG",
                self.state.join(&self.prefix).join("kubeconfig"),
            )
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(s) = stdin {
            c.stdin
                .take()
                .expect("stdin")
                .write_all(s.as_bytes())
                .expect("write");
        }
        drop(c.stdin.take());
        let out = c.wait_with_output().expect("kubectl output");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a, None)).expect("json")
    }

    /// `zonelab load` from inside a pod; returns the records.
    pub fn load(
        &self,
        pod: &str,
        target: &str,
        rate: u32,
        duration: &str,
        out: &Path,
    ) -> Vec<Value> {
        let o = self.lab(&[
            "exec",
            pod,
            "--",
            BIN,
            "load",
            "--target",
            target,
            "--rate",
            &rate.to_string(),
            "--duration",
            duration,
            "--timeout",
            "1s",
            "--out",
            out.to_str().unwrap_or("-"),
        ]);
        assert!(
            o.status.success(),
            "load from {pod}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = self.lab(&["down"]);
    }
}
