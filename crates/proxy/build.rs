//! Sets `cfg(zonelab_root)` when this crate's root-only tests can run here (root, `ip`, `nft`),
//! or under `CI=true`; without it they are reported as ignored. The check is netlab's
//! preflight, included by path (netlab is only a dev-dependency here).

#[allow(dead_code)]
#[path = "../netlab/src/preflight.rs"]
mod preflight;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=../netlab/src/preflight.rs");
    preflight::root_test_cfg(&[preflight::IP, preflight::NFT]);
}
