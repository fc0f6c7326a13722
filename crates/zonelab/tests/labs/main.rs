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
