//! Sets `cfg(zonelab_etcd)` when `etcd` is on PATH or under `CI=true`: then this crate's etcd
//! tests run (and fail with the preflight's message if `etcd` is missing); otherwise they are
//! reported as ignored. The check is netlab's preflight, included by path.

#[allow(dead_code)]
#[path = "../netlab/src/preflight.rs"]
mod preflight;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=../netlab/src/preflight.rs");
    preflight::etcd_test_cfg();
}
