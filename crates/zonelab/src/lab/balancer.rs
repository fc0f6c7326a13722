//! The API endpoint of a control plane in the zones: a `zonelab balancer` (crate `lb`) in the
//! router namespace with one regional node at the API's virtual IP, a target group of every
//! zone's API server health-checked on `/readyz` over HTTPS, and a loopback listener in the root namespace
//! for the runner and kubectl. Start at [`config`] (pure) and [`start`].

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use lb::BalancerConfig;
use lb::config::{
    HealthCheckConfig, HealthProtocol, ListenerConfig, NodeConfig, TargetConfig, TargetGroupConfig,
    TargetType,
};
use netlab::Topology;

use super::LAB_API_PORT;
use super::control_plane::ZonalControlPlane;

/// The balancer's log in the lab's `logs/` (kept in a run's `<out>/logs/`).
pub const LOG: &str = "balancer.log";
/// Its target state transitions, one JSON line each.
pub const STATUS: &str = "balancer-status.jsonl";
/// The balancer's name (nft table `zonelab-lb-api`).
const NAME: &str = "api";

/// The balancer of the API: health checks every 10 s with a 10 s timeout and thresholds of 3
/// (the AWS Load Balancer Controller's defaults, `lb::config`), divided by 10 in the fast
/// profile like every other timer.
pub fn config(topo: &Topology, cp: &ZonalControlPlane) -> BalancerConfig {
    let divisor = cp.profile.divisor();
    let health_check = HealthCheckConfig {
        protocol: HealthProtocol::Https,
        path: "/readyz".into(),
        interval: lb::config::DEFAULT_INTERVAL / divisor,
        timeout: lb::config::DEFAULT_TIMEOUT / divisor,
        ..HealthCheckConfig::default()
    };
    let targets = topo
        .zone_control_planes
        .iter()
        .filter(|h| cp.zones.contains(&h.zone))
        .map(|h| TargetConfig {
            ip: h.ip,
            port: LAB_API_PORT,
            zone: h.zone.clone(),
        })
        .collect();
    let vip = match cp.vip {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => super::control_plane::API_VIP,
    };
    BalancerConfig {
        name: NAME.into(),
        cross_zone: true,
        nodes: vec![NodeConfig {
            zone: None,
            address: vip,
        }],
        listeners: vec![ListenerConfig {
            port: cp.vip.port(),
            protocol: Default::default(),
            target_group: "apiservers".into(),
        }],
        target_groups: vec![TargetGroupConfig {
            name: "apiservers".into(),
            target_type: TargetType::Ip,
            preserve_client_ip: None,
            health_check,
            deregistration_delay: Duration::from_secs(0),
            targets,
        }],
        zonal_shift_away_from: Vec::new(),
    }
}

/// Write the configuration and start the balancer; returns its pid.
pub fn start(
    dir: &Path,
    exe: &Path,
    topo: &Topology,
    cp: &ZonalControlPlane,
    api: SocketAddr,
) -> anyhow::Result<u32> {
    let file = dir.join("balancer.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&config(topo, cp))?)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(LOG))?;
    let child = Command::new(exe)
        .arg("balancer")
        .arg("--config")
        .arg(&file)
        .args(["--netns", &topo.router_netns])
        .arg("--status-file")
        .arg(logs.join(STATUS))
        .arg("--listen-loopback")
        .arg(format!("{api}={}", cp.vip))
        .env("ZONELAB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting zonelab balancer")?;
    let pid = child.id();
    super::control_plane::record(dir, "balancer", pid)?;
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_regional_node_at_the_vip_and_every_server_checked_on_readyz() {
        let topo = Topology::new(&netlab::LabSpec {
            prefix: "zh".into(),
            zones: vec!["a".into(), "b".into(), "c".into()],
            nodes_per_zone: 1,
        })
        .expect("valid")
        .with_zone_control_planes();
        let cp = ZonalControlPlane {
            store: "etcd".into(),
            zones: vec!["a".into(), "b".into(), "c".into()],
            vip: SocketAddr::from((super::super::control_plane::API_VIP, LAB_API_PORT)),
            profile: crate::flags::Profile::Fast,
            server_flags: Vec::new(),
        };
        let c = config(&topo, &cp);
        c.validate().expect("the lb crate accepts it");
        assert_eq!(c.nodes[0].address.to_string(), "172.20.251.10");
        assert_eq!(c.listeners[0].port, 6443);
        let g = &c.target_groups[0];
        let ips: Vec<String> = g
            .targets
            .iter()
            .map(|t| format!("{}:{}", t.ip, t.port))
            .collect();
        assert_eq!(
            ips,
            ["172.20.0.10:6443", "172.20.1.10:6443", "172.20.2.10:6443"]
        );
        assert_eq!(g.health_check.path, "/readyz");
        assert_eq!(g.health_check.interval, Duration::from_secs(1));
        let upstream = ZonalControlPlane {
            profile: crate::flags::Profile::Upstream,
            ..cp
        };
        assert_eq!(
            config(&topo, &upstream).target_groups[0]
                .health_check
                .interval,
            Duration::from_secs(10)
        );
    }
}
