//! Preflight: which external programs each zonelab role executes (and the Debian package that
//! ships each), and a check that finds them on `PATH` before anything is built, so a missing
//! tool fails at once with its name instead of a half-working lab. Also decides, for the
//! root-only integration tests, whether they run here (see [`root_test_cfg`]).
//!
//! Start at [`Role::needs`] (pure) and [`check`] (the one function that reads `PATH`).
//!
//! This file depends on `std` and `thiserror` only: the `build.rs` of every crate with root
//! tests includes it with `#[path]`, so the tests and the binary share one list.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// An external program, the Debian package that ships it, and why zonelab runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
    pub why: &'static str,
}

/// `ip`: namespaces, veths, routes.
pub const IP: Tool = Tool {
    program: "ip",
    package: "iproute2",
    why: "network namespaces, veths and routes",
};
/// `nsenter`: the lab starts its agents and control-plane processes, and the kubelet its
/// containers and exec probes and pod wiring, inside a network namespace without the private
/// mount namespace `ip netns exec` gives them.
pub const NSENTER: Tool = Tool {
    program: "nsenter",
    package: "util-linux",
    why: "pod containers, exec probes and pod wiring in network namespaces",
};
/// `nft`: kube-proxy's nftables mode, and the lab's fault-injection rules in every mode.
pub const NFT: Tool = Tool {
    program: "nft",
    package: "nftables",
    why: "nftables rules (kube-proxy --proxy-mode nftables, lab faults)",
};
/// `iptables-restore`: kube-proxy's iptables mode.
pub const IPTABLES_RESTORE: Tool = Tool {
    program: "iptables-restore",
    package: "iptables",
    why: "kube-proxy --proxy-mode iptables",
};
/// `iptables`: the iptables mode's jump rules (`-C`/`-I`).
pub const IPTABLES: Tool = Tool {
    program: "iptables",
    package: "iptables",
    why: "kube-proxy --proxy-mode iptables jump rules",
};
/// `conntrack`: kube-proxy's stale UDP conntrack cleanup.
pub const CONNTRACK: Tool = Tool {
    program: "conntrack",
    package: "conntrack",
    why: "kube-proxy's conntrack cleanup",
};
/// `sysctl`: per-namespace forwarding and ARP settings of lab nodes.
pub const SYSCTL: Tool = Tool {
    program: "sysctl",
    package: "procps",
    why: "per-namespace sysctls of lab nodes",
};
/// `kill`: stopping lab processes.
pub const KILL: Tool = Tool {
    program: "kill",
    package: "procps",
    why: "stopping lab processes",
};
/// `python3`: the netlab integration tests' echo servers and clients.
pub const PYTHON3: Tool = Tool {
    program: "python3",
    package: "python3",
    why: "echo servers of the netlab tests",
};
/// `kubectl`: the integration tests that drive a lab the way a user does.
pub const KUBECTL: Tool = Tool {
    program: "kubectl",
    package: "kubectl (pkgs.k8s.io)",
    why: "integration tests that use kubectl",
};

/// kube-proxy's `--proxy-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Nftables,
    Iptables,
}

impl ProxyMode {
    /// `nftables` | `iptables` (the flag's values).
    pub fn parse(s: &str) -> Option<ProxyMode> {
        match s {
            "nftables" => Some(ProxyMode::Nftables),
            "iptables" => Some(ProxyMode::Iptables),
            _ => None,
        }
    }

    fn tools(self) -> &'static [Tool] {
        match self {
            ProxyMode::Nftables => &[NFT],
            ProxyMode::Iptables => &[IPTABLES_RESTORE, IPTABLES],
        }
    }
}

/// `etcd`: the etcd store backend's tests start real members (`zonelab server --etcd-servers`
/// talks to them).
pub const ETCD: Tool = Tool {
    program: "etcd",
    package: "etcd-server",
    why: "etcd members for the etcd store backend",
};

/// Who is about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `zonelab agent`: kubelet (pod namespaces) and kube-proxy in the given mode.
    Agent(ProxyMode),
    /// `zonelab lab up`, `run`, `demo`: builds the network, injects faults (nft in every mode)
    /// and starts an agent per node on this machine, so it needs the agents' tools too.
    LabHost(ProxyMode),
}

impl Role {
    /// Every program this role will execute, sorted, each once.
    pub fn needs(self) -> Vec<Tool> {
        let mut out: Vec<Tool> = match self {
            Role::Agent(mode) => [IP, NSENTER, CONNTRACK]
                .iter()
                .chain(mode.tools())
                .copied()
                .collect(),
            Role::LabHost(mode) => [IP, NFT, SYSCTL, KILL]
                .into_iter()
                .chain(Role::Agent(mode).needs())
                .collect(),
        };
        out.sort();
        out.dedup();
        out
    }
}

/// What the lab integration tests execute: a lab host in both proxy modes, plus `kubectl`
/// and `python3` (used by build scripts and tests alike).
pub fn lab_test_tools() -> Vec<Tool> {
    let mut tools = Role::LabHost(ProxyMode::Nftables).needs();
    tools.extend(Role::LabHost(ProxyMode::Iptables).needs());
    tools.extend([KUBECTL, PYTHON3]);
    tools.sort();
    tools.dedup();
    tools
}

/// Tools missing on this machine (or something else preventing a run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    #[error("{}", missing_message(.0))]
    Missing(Vec<Tool>),
    #[error("{0}: run as root")]
    NotRoot(String),
}

fn missing_message(tools: &[Tool]) -> String {
    let each: Vec<String> = tools
        .iter()
        .map(|t| format!("`{}` (Debian package {}; {})", t.program, t.package, t.why))
        .collect();
    let mut packages: Vec<&str> = tools.iter().map(|t| t.package).collect();
    packages.dedup();
    format!(
        "missing on PATH: {}. Install with `apt-get install {}` or run scripts/setup.sh",
        each.join(", "),
        packages.join(" ")
    )
}

/// The executable named `program` in the directories of `path` (a `PATH` value), if any.
pub fn find_on_path(program: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The tools of `needs` that `path` lacks, in order.
pub fn missing(needs: &[Tool], path: &OsStr) -> Vec<Tool> {
    needs
        .iter()
        .filter(|t| find_on_path(t.program, path).is_none())
        .copied()
        .collect()
}

/// Checks this process's `PATH` for every tool `role` needs.
pub fn check(role: Role) -> Result<(), PreflightError> {
    check_tools(&role.needs())
}

/// Checks this process's `PATH` for `tools`.
pub fn check_tools(tools: &[Tool]) -> Result<(), PreflightError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let gone = missing(tools, &path);
    if gone.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::Missing(gone))
    }
}

/// Whether this process runs with effective uid 0 (from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Root and every tool of `tools`, or why not.
pub fn check_root_with(tools: &[Tool]) -> Result<(), PreflightError> {
    if !is_root() {
        return Err(PreflightError::NotRoot(
            "network namespaces need CAP_SYS_ADMIN".into(),
        ));
    }
    check_tools(tools)
}

/// The cfg the `build.rs` of a crate with root-only tests sets when they can run here.
pub const ROOT_TEST_CFG: &str = "zonelab_root";

/// For a `build.rs`: prints the cargo directives that set `cfg(zonelab_root)` when the root
/// tests of this crate can run: as root, or always under `CI=true` (or `ZONELAB_ROOT_TESTS=1`).
/// Without it they are `#[ignore]`d (reported as ignored, not passed). As root they run even
/// when a tool of `tools` is missing, and fail with the preflight's message (README: on a fresh
/// machine `cargo test` as root finds the tools or says which are missing); the build warns.
/// Reruns when the environment that decides it changes.
pub fn root_test_cfg(tools: &[Tool]) {
    println!("cargo::rustc-check-cfg=cfg({ROOT_TEST_CFG})");
    for var in ["PATH", "CI", "ZONELAB_ROOT_TESTS", "SUDO_UID", "USER"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let forced = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("ZONELAB_ROOT_TESTS").is_ok_and(|v| v == "1");
    if forced || is_root() {
        println!("cargo::rustc-cfg={ROOT_TEST_CFG}");
        if let Err(e) = check_root_with(tools) {
            println!("cargo::warning=the root-only tests will fail: {e}");
        }
    }
}

/// The cfg the `build.rs` of a crate with etcd tests sets when they can run here.
pub const ETCD_TEST_CFG: &str = "zonelab_etcd";

/// For a `build.rs`: sets `cfg(zonelab_etcd)` when the tests that start real etcd processes can
/// run: `etcd` is on `PATH` (no root needed), or always under `CI=true` (or
/// `ZONELAB_ROOT_TESTS=1`), where a missing `etcd` must fail them. Without it they are
/// `#[ignore]`d with their reason.
pub fn etcd_test_cfg() {
    println!("cargo::rustc-check-cfg=cfg({ETCD_TEST_CFG})");
    for var in ["PATH", "CI", "ZONELAB_ROOT_TESTS"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let forced = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("ZONELAB_ROOT_TESTS").is_ok_and(|v| v == "1");
    let present = check_tools(&[ETCD]).is_ok();
    if forced || present {
        println!("cargo::rustc-cfg={ETCD_TEST_CFG}");
        if !present {
            println!(
                "cargo::warning=the etcd tests will fail: `etcd` (Debian package etcd-server) is not on PATH"
            );
        }
    }
}

/// For a test that starts `etcd`: panics with the preflight's message when it is missing.
pub fn require_etcd_for_test() {
    if let Err(e) = check_tools(&[ETCD]) {
        panic!("this etcd test cannot run here: {e}");
    }
}

/// For a root-only test that runs: panics with the preflight's message when root or a tool is
/// missing (it runs as root or under CI, where a missing prerequisite must fail it).
pub fn require_for_test(tools: &[Tool]) {
    if let Err(e) = check_root_with(tools) {
        panic!("this root-only test cannot run here: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_per_role_and_mode() {
        let names = |r: Role| -> Vec<&str> { r.needs().iter().map(|t| t.program).collect() };
        assert_eq!(
            names(Role::Agent(ProxyMode::Nftables)),
            ["conntrack", "ip", "nft", "nsenter"]
        );
        assert_eq!(
            names(Role::Agent(ProxyMode::Iptables)),
            ["conntrack", "ip", "iptables", "iptables-restore", "nsenter"]
        );
        // The lab injects faults with nft in either mode, and runs the agents.
        assert_eq!(
            names(Role::LabHost(ProxyMode::Iptables)),
            [
                "conntrack",
                "ip",
                "iptables",
                "iptables-restore",
                "kill",
                "nft",
                "nsenter",
                "sysctl"
            ]
        );
    }

    #[test]
    fn missing_tools_are_named_with_their_package() {
        let dir = tempfile_dir();
        let exe = dir.join("ip");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Not executable: does not count.
        std::fs::write(dir.join("nft"), "").unwrap();
        let gone = missing(&Role::Agent(ProxyMode::Nftables).needs(), dir.as_os_str());
        assert_eq!(gone, vec![CONNTRACK, NFT, NSENTER]);
        let msg = PreflightError::Missing(gone).to_string();
        assert!(msg.contains("`nft` (Debian package nftables"), "{msg}");
        assert!(
            msg.contains("`nsenter` (Debian package util-linux"),
            "{msg}"
        );
        assert!(
            msg.contains("apt-get install conntrack nftables util-linux"),
            "{msg}"
        );
        assert!(find_on_path("ip", dir.as_os_str()).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("netlab-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
