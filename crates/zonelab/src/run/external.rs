//! Clients from outside the cluster and the load balancers they go through: an external
//! client is one `zonelab load` process in the lab's router namespace (where an internet
//! client's packets would arrive; never the root namespace) sending to every address in its
//! Service's `status.loadBalancer.ingress` as DNS round-robin would; the balancer's status
//! file becomes timeline events for the report.
//!
//! Start at [`lb_addresses`] (wait for EXTERNAL-IP), [`argv`] and [`Process`] (the client),
//! and [`LbWatch::events`] (the balancer's records).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use lab::{Event, EventKind};
use lb::{BalancerConfig, Record};
use netlab::Topology;
use runtime::Key;
use scenario::Client;

use super::clients::{ClientPod, longest_request};
use crate::balancer::fleet;
use crate::flags::Profile;
use crate::load::dns::NLB_DNS_TTL;

/// How long the run waits for a LoadBalancer Service's EXTERNAL-IP.
const INGRESS_WAIT: Duration = Duration::from_secs(90);

/// The ingress addresses and first port of LoadBalancer Service `ns/name`, waiting (bounded)
/// until the load-balancer controller wrote them.
pub async fn lb_addresses(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<(Vec<String>, i32)> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    loop {
        let svc = api.get(name).await.with_context(|| {
            format!(
                "external clients target Service {ns}/{name}, which the workloads do not create"
            )
        })?;
        let spec = svc.spec.clone().context("Service without spec")?;
        anyhow::ensure!(
            spec.type_.as_deref() == Some("LoadBalancer"),
            "external clients go through a load balancer: Service {ns}/{name} has type {}, expected LoadBalancer",
            spec.type_.as_deref().unwrap_or("ClusterIP")
        );
        let port = spec
            .ports
            .and_then(|p| p.first().map(|p| p.port))
            .with_context(|| format!("Service {ns}/{name} has no port"))?;
        let ips: Vec<String> = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect();
        if !ips.is_empty() {
            return Ok((ips, port));
        }
        anyhow::ensure!(
            start.elapsed() < INGRESS_WAIT,
            "Service {ns}/{name} got no EXTERNAL-IP within {INGRESS_WAIT:?}: see `kubectl describe svc {name}` (the load-balancer controller's Events)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The balancer of Service `ns/name` in the lab `topo`: its directory and name.
pub fn balancer_of(topo: &Topology, ns: &str, name: &str) -> (PathBuf, String) {
    (
        fleet::default_dir(&topo.router_netns),
        controllers::loadbalancer::model::balancer_name(&Key::new(ns, name)),
    )
}

/// What every external client of a run shares.
pub struct Common<'a> {
    pub exe: &'a Path,
    /// The router namespace.
    pub netns: &'a str,
    pub run_for: Duration,
    pub profile: Profile,
}

/// The command line of external client `c` (one process in the router namespace).
pub fn argv(
    c: &Client,
    cp: &ClientPod,
    urls: &[String],
    status_file: &Path,
    common: &Common,
) -> Vec<String> {
    let mut v: Vec<String> = ["ip", "netns", "exec", common.netns]
        .map(str::to_string)
        .to_vec();
    v.push(common.exe.display().to_string());
    v.push("load".into());
    for u in urls {
        v.extend(["--target".to_string(), u.clone()]);
    }
    v.extend([
        "--dns-status-file".into(),
        status_file.display().to_string(),
        "--dns-ttl".into(),
        format!("{}ms", common.profile.duration(NLB_DNS_TTL).as_millis()),
        "--rate".into(),
        c.rate.to_string(),
        "--duration".into(),
        format!("{}ms", common.run_for.as_millis()),
        "--timeout".into(),
        format!("{}ms", c.timeout.as_millis()),
        "--retries".into(),
        c.retries.to_string(),
        "--out".into(),
        cp.out.display().to_string(),
    ]);
    if c.keepalive {
        v.push("--keepalive".into());
    }
    v
}

/// A running external client; SIGTERM on [`Process::stop`] or drop (it flushes and exits).
pub struct Process {
    child: Child,
    grace: Duration,
}

impl Process {
    pub fn start(argv: &[String], log: &Path, c: &Client) -> anyhow::Result<Process> {
        let err = std::fs::File::create(log)?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting external client {}", c.name))?;
        Ok(Process {
            child,
            grace: longest_request(c) + Duration::from_secs(2),
        })
    }

    /// SIGTERM, then wait (bounded by the longest request, then SIGKILL).
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        netlab::procs::signal(&netlab::SystemRunner, "TERM", &[self.child.id()]);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The balancers of the run's LoadBalancer Services, read as timeline events.
#[derive(Debug, Clone, Default)]
pub struct LbWatch {
    /// (`ns/name`, balancer directory, balancer name).
    pub balancers: Vec<(String, PathBuf, String)>,
}

impl LbWatch {
    /// Every record so far: the configuration (once) and each target and node change. The
    /// files are read whole each time (they are small) so this keeps no state.
    pub fn events(&self, topo: &Topology) -> Vec<Event> {
        let mut out = Vec::new();
        for (service, dir, name) in &self.balancers {
            let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.json"))) else {
                continue;
            };
            let Ok(config) = BalancerConfig::parse(&text) else {
                continue;
            };
            let status = std::fs::read_to_string(dir.join(format!("{name}.status.jsonl")))
                .unwrap_or_default();
            let lines: Vec<lb::status::StatusLine> = status
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let first = lines.first().map_or(0.0, |l| l.at);
            if let Some(setup) = setup(service, &config) {
                out.push(Event {
                    at: first,
                    kind: EventKind::LoadBalancer(setup),
                });
            }
            out.extend(lines.iter().map(|l| event(service, l, topo)));
        }
        out
    }
}

fn setup(service: &str, config: &BalancerConfig) -> Option<lab::timeline::LoadBalancerSetup> {
    let group = config.target_groups.first()?;
    let hc = &group.health_check;
    Some(lab::timeline::LoadBalancerSetup {
        service: service.to_string(),
        name: config.name.clone(),
        cross_zone: config.cross_zone,
        interval_s: hc.interval.as_secs_f64(),
        timeout_s: hc.timeout.as_secs_f64(),
        healthy_threshold: hc.healthy_threshold,
        unhealthy_threshold: hc.unhealthy_threshold,
        nodes: config
            .nodes
            .iter()
            .map(|n| {
                (
                    n.zone.clone().unwrap_or_else(|| "-".into()),
                    n.address.to_string(),
                )
            })
            .collect(),
    })
}

fn event(service: &str, l: &lb::status::StatusLine, topo: &Topology) -> Event {
    let kind = match &l.record {
        Record::Target {
            target,
            zone,
            to,
            reason,
            ..
        } => {
            let ip = target.split(':').next().unwrap_or_default();
            EventKind::LbTarget {
                service: service.to_string(),
                target: target.clone(),
                zone: zone.clone(),
                node: topo
                    .nodes
                    .iter()
                    .find(|n| n.ip.to_string() == ip)
                    .map(|n| n.name.clone()),
                to: to.as_str().to_string(),
                reason: reason.map(|r| r.as_str().to_string()),
            }
        }
        Record::Node {
            address, zone, to, ..
        } => EventKind::LbNode {
            service: service.to_string(),
            address: address.to_string(),
            zone: zone.clone(),
            to: to.as_str().to_string(),
        },
    };
    Event { at: l.at, kind }
}
