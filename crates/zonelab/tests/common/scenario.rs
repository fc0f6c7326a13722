//! Runs a scenario with the real `zonelab run` in its own temp dir, lab prefix and API port, one
//! scenario at a time, and hands back what it wrote. Start at [`run`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_zonelab");

/// One scenario run at a time: their assertions read error windows and phase times, which two
/// scenario labs on two cores blur (seen at load average ~100: a graceful stop's and a
/// partition's windows). The labs of `common::lab` tests still run beside one.
pub static ONE_LAB: Mutex<()> = Mutex::new(());

/// Removes the lab if the run left it (a panic, a killed run).
pub struct Down {
    pub prefix: String,
    pub state: PathBuf,
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["lab", "--prefix", &self.prefix, "--state-dir"])
            .arg(&self.state)
            .arg("down")
            .output();
    }
}

pub fn web_yaml() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/web.yaml")
        .display()
        .to_string()
}

/// What a run wrote: report.json, requests.jsonl, timeline.jsonl.
pub struct Run {
    pub report: Value,
    pub requests: Vec<Value>,
    pub timeline: Vec<Value>,
    /// The run's `--out` directory (removed with the run's temp dir when this is dropped).
    pub out: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Runs `scenario` (YAML text) on lab `prefix` with its API server on `port` (both unique among
/// the tests); fails with the preflight's message without root or the tools.
pub fn run(prefix: &str, port: u16, scenario: &str) -> Run {
    netlab::preflight::require_for_test(&netlab::preflight::lab_test_tools());
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("scenario.yaml");
    std::fs::write(&file, scenario.replace("WEB_YAML", &web_yaml())).expect("write scenario");
    let state = dir.path().join("state");
    let _down = Down {
        prefix: prefix.into(),
        state: state.clone(),
    };
    let out = dir.path().join("out");
    let res = Command::new(BIN)
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .args(["--prefix", prefix, "--api-port", &port.to_string()])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("zonelab run");
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success(),
        "zonelab run failed\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
            .expect("valid report");
    let requests = json_lines(&out.join("requests.jsonl"));
    let timeline = json_lines(&out.join("timeline.jsonl"));
    assert!(out.join("report.html").exists() && out.join("timeline.jsonl").exists());
    // One server (`server.log`) or one per zone (`server-<zone>.log`).
    let kept = std::fs::read_dir(out.join("logs"))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("server"))
        })
        .unwrap_or(false);
    assert!(kept, "the lab's logs were not kept");
    // The analysis is a function of the records: `zonelab report` gives the same report.
    let again = Command::new(BIN)
        .arg("report")
        .arg(&out)
        .output()
        .expect("zonelab report");
    assert!(again.status.success(), "{again:?}");
    let reread: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
            .expect("valid report");
    assert_eq!(reread, report, "re-analysis differs");
    Run {
        report,
        requests,
        timeline,
        out,
        dir,
    }
}

pub fn phase(r: &Value, name: &str) -> f64 {
    r["phases"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("phase {name} missing: {}", r["phases"]))
}
