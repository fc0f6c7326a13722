//! Sets `cfg(zonelab_root)` as root (or under `CI=true`): then this crate's root-only tests
//! run, and fail with the preflight's message if a tool they need is missing (every tool the
//! lab and its agents execute in both proxy modes, `kubectl`, `python3`); otherwise they are
//! reported as ignored. `cfg(zonelab_etcd)` likewise for the etcd tests (etcd on PATH or CI).
//! The check is netlab's preflight, included by path.

#[allow(dead_code)]
#[path = "../netlab/src/preflight.rs"]
mod preflight;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=../netlab/src/preflight.rs");
    preflight::root_test_cfg(&preflight::lab_test_tools());
    preflight::etcd_test_cfg();
}
