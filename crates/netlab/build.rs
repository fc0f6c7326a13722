//! Sets `cfg(zonelab_root)` as root (or under `CI=true`): then this crate's root-only tests
//! run, and fail with the preflight's message if a tool they need is missing (`ip`, `nft`,
//! `sysctl`, `kill`, `python3`); otherwise they are reported as ignored.

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
