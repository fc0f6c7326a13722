//! Sets `cfg(zonelab_root)` when this crate's root-only tests can run here (root, `ip`, `nft`,
//! `sysctl`, `kill`, `python3`), or under `CI=true`; without it they are reported as ignored.
//! Start at `netlab::preflight::root_test_cfg`.

#[allow(dead_code)]
#[path = "src/preflight.rs"]
mod preflight;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/preflight.rs");
    preflight::root_test_cfg(&[
        preflight::IP,
        preflight::NFT,
        preflight::SYSCTL,
        preflight::KILL,
        preflight::PYTHON3,
    ]);
}
