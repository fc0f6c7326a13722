//! The live-lab integration tests (root, network namespaces) in one test binary: each module is
//! one former `tests/NAME.rs` file, unchanged but for `use crate::common;`. One binary links
//! once instead of once per file, and libtest runs its tests side by side (two at a time on two
//! cores): a lab mostly waits on timers, so independent labs overlap instead of running one
//! file after another. A test whose assertions are tight on latencies keeps a binary of its
//! own so that no other lab runs beside it (`tests/sim_parity.rs`).
//!
//! Run one file's tests: `cargo test -p zonelab --test labs lab_traffic::` (one test: add its
//! name). Every test here brings up its own lab with a lab prefix and API port no other test
//! here uses. A new file joins with `git mv tests/NEW.rs tests/labs/NEW.rs`, a `mod NEW;` line
//! below, and `mod common;` → `use crate::common;` in the file.
//! Reported as ignored without root or the tools (crates/zonelab/build.rs); under CI they fail.

#[path = "../common/mod.rs"]
mod common;

mod balancer;
mod ha_control_plane;
mod lab_autoscaler;
mod lab_daemonset;
mod lab_drain;
mod lab_events;
mod lab_load_balancer;
mod lab_nodeport;
mod lab_standin;
mod lab_statefulset;
mod lab_traffic;
mod leader_election_etcd;
mod load_balancer_controller;
mod preflight;
mod scenario_run;
mod topology_routing;
mod zonal_shift_run;

/// Every lab here runs beside the others in one process, so two tests with the same lab
/// prefix would tear down each other's labs (`lab up` and `run` clear leftovers of their
/// prefix): each `format!("zX{}", pid)` prefix and each literal `--prefix` may appear once.
#[test]
fn lab_prefixes_are_unique_across_the_files_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/labs");
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/labs")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for (i, line) in text.lines().enumerate() {
            let found = line
                .split("format!(\"")
                .skip(1)
                .filter_map(|rest| rest.strip_prefix('z'))
                .filter_map(|rest| rest.split_once("{}\"").map(|(p, _)| format!("z{p}{{}}")))
                .filter(|p| {
                    p.len() <= 5 && p[1..p.len() - 2].chars().all(|c| c.is_ascii_lowercase())
                })
                .chain(
                    line.split("\"--prefix\", \"")
                        .skip(1)
                        .filter_map(|rest| rest.split_once('"').map(|(p, _)| p.to_string())),
                );
            for prefix in found {
                let here = format!("{name}:{}", i + 1);
                if let Some(first) = seen.insert(prefix.clone(), here.clone()) {
                    panic!("lab prefix {prefix} is used at {first} and at {here}");
                }
            }
        }
    }
    assert!(seen.len() >= 8, "too few prefixes found: {seen:?}");
}
