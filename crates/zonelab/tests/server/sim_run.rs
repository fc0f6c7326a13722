//! `zonelab run SCENARIO --sim`: the simulator through the binary (no root needed): the
//! report files, byte-identical for one seed, and a live-only scenario refused before anything
//! is written.

use std::path::Path;
use std::process::Command;

fn zonelab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zonelab"))
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

fn sim_run(out: &Path, seed: &str) -> std::process::Output {
    zonelab()
        .args([
            "run",
            &example("zone-power-off.yaml"),
            "--sim",
            "--seed",
            seed,
            "--out",
        ])
        .arg(out)
        .output()
        .expect("zonelab runs")
}

#[test]
fn a_simulated_run_writes_the_report_files_and_one_seed_gives_one_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let o = sim_run(out, "5");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("(sim lab, fast profile"), "{stdout}");
        for f in [
            "report.json",
            "report.html",
            "requests.jsonl",
            "timeline.jsonl",
        ] {
            assert!(out.join(f).is_file(), "{f} missing");
        }
    }
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).expect("read");
    assert_eq!(read(&a, "report.json"), read(&b, "report.json"));
    assert_eq!(read(&a, "timeline.jsonl"), read(&b, "timeline.jsonl"));
    let report: serde_json::Value = serde_json::from_slice(&read(&a, "report.json")).expect("json");
    assert_eq!(report["mode"], "sim");
    assert_eq!(report["seed"], 5);
}

#[test]
fn a_live_only_scenario_is_refused_with_its_position_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let o = zonelab()
        .args(["run", &example("ha-zone-power-off.yaml"), "--sim", "--out"])
        .arg(&out)
        .output()
        .expect("zonelab runs");
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("ha-zone-power-off.yaml:12:36: controlPlane.store")
            && stderr.contains("live-only"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written");
}
