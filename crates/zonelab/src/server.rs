//! `zonelab server`: the API server plus, in the same process (as k3s does), the controllers
//! and the scheduler, with upstream flag names and defaults.
//!
//! Start at [`run`]; flag resolution (profiles) is crate `profile`'s, via [`ServerArgs::configs`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use controllers::Controller;

use crate::flags::{Profile, parse_duration, parse_port_range};

#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Where the durable store lives; state survives restarts.
    #[arg(long, default_value = "/var/lib/zonelab/server")]
    pub data_dir: PathBuf,
    /// Keep state in memory only (nothing survives a restart).
    #[arg(long)]
    pub in_memory: bool,
    /// Address to serve the Kubernetes API on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Also serve on HOST:PORT inside network namespace NETNS (`NETNS=HOST:PORT`; repeatable).
    /// The lab serves agents in its control-plane namespace this way while kubectl uses the
    /// loopback listener.
    #[arg(long = "listen-netns", value_parser = crate::netns::parse_netns_listen)]
    pub listen_netns: Vec<(String, SocketAddr)>,
    /// Timer profile: `upstream` (Kubernetes defaults) or `fast` (every timer / 10).
    #[arg(long, value_enum, default_value_t = Profile::Upstream)]
    pub profile: Profile,
    /// Controllers to run: `*` (all), a comma list of names, `-name` disables one, empty = none.
    /// Names: endpointslice, nodelifecycle, taint-eviction-controller, deployment, replicaset,
    /// scheduler, disruption, serviceaccount.
    #[arg(long, default_value = "*")]
    pub controllers: String,
    /// Also run the load-balancer controller (AWS Load Balancer Controller semantics,
    /// docs/load-balancer.md) with one `zonelab balancer` child per LoadBalancer Service in
    /// network namespace NETNS (the lab's router, `<prefix>-rt`); files under
    /// `/run/zonelab/balancers/NETNS`. Off by default (the lab's servers have it on).
    #[arg(long, value_name = "NETNS")]
    pub load_balancer_netns: Option<String>,
    /// CIDR of ClusterIPs (kube-apiserver).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// Port range for NodePort Services (kube-apiserver).
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// The timers and thresholds of the admission defaults and the controllers (crate
    /// `profile`: unset = upstream's under `--profile`).
    #[command(flatten)]
    pub flags: profile::ServerFlags,
    /// Store events kept for watch resume and consistent paging (older resourceVersions get
    /// 410 Gone, like etcd compaction).
    #[arg(long, default_value_t = store::StoreOptions::default().history_capacity)]
    pub watch_history: usize,
    /// How long an Event is kept after its last activity (kube-apiserver `--event-ttl`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub event_ttl: Duration,
    /// How often watchers that allow bookmarks receive one.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub bookmark_interval: Duration,
    /// Write one audit.k8s.io/v1 Event (Metadata level) per mutating request to FILE, as JSON
    /// lines (kube-apiserver `--audit-log-path`; `-` is stdout's upstream meaning, not
    /// supported).
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    #[command(flatten)]
    pub authz: crate::authz_args::AuthzArgs,
    #[command(flatten)]
    pub election: crate::election::ElectionArgs,
    #[command(flatten)]
    pub etcd: crate::storage::EtcdArgs,
    #[command(flatten)]
    pub tls: crate::serving::TlsArgs,
    #[command(flatten)]
    pub authn: crate::authn_flags::AuthnArgs,
}

impl ServerArgs {
    /// Every component's config: upstream's defaults under `--profile`, explicit flags winning
    /// (crate `profile`, the one place that mapping lives).
    pub fn configs(&self) -> Result<profile::Configs, profile::ConfigError> {
        let flags = profile::Flags {
            server: self.flags.clone(),
            election: self.election.flags.clone(),
            ..Default::default()
        };
        profile::Configs::resolve(self.profile, &flags)
    }

    fn enabled(&self, name: &str) -> bool {
        let items: Vec<&str> = self.controllers.split(',').map(str::trim).collect();
        if items.contains(&format!("-{name}").as_str()) {
            return false;
        }
        items.contains(&"*") || items.contains(&name)
    }
}

/// Every controller name `--controllers` accepts.
pub const CONTROLLER_NAMES: [&str; 12] = [
    "endpointslice",
    "nodelifecycle",
    "taint-eviction-controller",
    "deployment",
    "replicaset",
    "scheduler",
    "disruption",
    "serviceaccount",
    "statefulset",
    "podgc",
    "daemonset",
    "zonalshift",
];

fn build_controllers(
    args: &ServerArgs,
    cfg: &profile::Configs,
) -> anyhow::Result<Vec<Box<dyn Controller>>> {
    for item in args
        .controllers
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let name = item.trim_start_matches('-');
        anyhow::ensure!(
            name == "*" || CONTROLLER_NAMES.contains(&name),
            "unknown controller {name:?} in --controllers (known: {})",
            CONTROLLER_NAMES.join(", ")
        );
    }
    let mut out: Vec<Box<dyn Controller>> = Vec::new();
    if args.enabled("endpointslice") {
        out.push(Box::new(
            controllers::endpointslice::EndpointSliceController::new(cfg.endpointslice.clone()),
        ));
    }
    if args.enabled("nodelifecycle") {
        out.push(Box::new(
            controllers::nodelifecycle::NodeLifecycleController::new(cfg.node_lifecycle.clone())?,
        ));
    }
    if args.enabled("taint-eviction-controller") {
        out.push(Box::new(
            controllers::nodelifecycle::TaintEvictionController::new(),
        ));
    }
    if args.enabled("deployment") {
        out.push(Box::new(controllers::workloads::DeploymentController::new(
            cfg.workloads.deployment.clone(),
        )));
    }
    if args.enabled("replicaset") {
        out.push(Box::new(controllers::workloads::ReplicaSetController::new(
            cfg.workloads.replicaset.clone(),
        )));
    }
    if args.enabled("statefulset") {
        out.push(Box::new(
            controllers::workloads::StatefulSetController::new(cfg.workloads.statefulset.clone()),
        ));
    }
    if args.enabled("podgc") {
        out.push(Box::new(controllers::podgc::PodGcController::new(
            cfg.podgc.clone(),
        )));
    }
    if args.enabled("daemonset") {
        out.push(Box::new(controllers::workloads::DaemonSetController::new(
            cfg.workloads.daemonset.clone(),
        )));
    }
    if args.enabled("scheduler") {
        out.push(Box::new(controllers::scheduler::Scheduler::new(
            cfg.scheduler.clone(),
        )));
    }
    if args.enabled("disruption") {
        out.push(Box::new(
            controllers::disruption::DisruptionController::new(cfg.disruption.clone()),
        ));
    }
    if args.enabled("serviceaccount") {
        out.push(Box::new(
            controllers::serviceaccounts::ServiceAccountsController::new(),
        ));
    }
    if args.enabled("zonalshift") {
        out.push(Box::new(
            controllers::zonalshift::ZonalShiftController::new(),
        ));
    }
    if let Some(netns) = &args.load_balancer_netns {
        let fleet = crate::balancer::fleet::Fleet::new(crate::balancer::fleet::FleetConfig {
            dir: crate::balancer::fleet::default_dir(netns),
            netns: Some(netns.clone()),
            exe: std::env::current_exe().context("locating the zonelab binary")?,
        })
        .context("creating the balancers' directory")?;
        let pool = controllers::loadbalancer::addresses::Allocator::new(
            netlab::topology::load_balancer_service_addresses(),
        );
        let ctl = controllers::loadbalancer::LoadBalancerController::new(pool)
            .with_time_divisor(cfg.load_balancer_time_divisor);
        // Applied on a thread of its own: a balancer stop (up to 5 s) never blocks the loop.
        let cloud = crate::balancer::background::Background::spawn(fleet)
            .context("starting the load-balancer cloud worker")?;
        out.push(Box::new(
            controllers::loadbalancer::cloud::CloudDriven::new(ctl, cloud),
        ));
    }
    Ok(out)
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let configs = args.configs()?;
    build_controllers(&args, &configs)?;
    args.election.validate(&configs.election)?;
    let opts = store::StoreOptions {
        history_capacity: args.watch_history,
        ..Default::default()
    };
    let store = crate::storage::open(&args.etcd, args.in_memory, &args.data_dir, opts).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut addrs = vec![addr];
    addrs.extend(args.listen_netns.iter().map(|(_, a)| *a));
    let serving = crate::serving::Serving::resolve(
        &args.tls,
        &args.data_dir,
        &addrs,
        &args.service_cluster_ip_range,
    )?;
    let mut cfg = apiserver::Config {
        service_cluster_ip_range: args.service_cluster_ip_range.clone(),
        service_node_port_range: parse_port_range(&args.service_node_port_range)?,
        advertise_address: addr,
        bookmark_interval: args.bookmark_interval,
        default_not_ready_toleration_seconds: configs.admission.not_ready_toleration_seconds,
        default_unreachable_toleration_seconds: configs.admission.unreachable_toleration_seconds,
        audit_log_path: args.audit_log_path.clone(),
        kubelet_dialer: kubelet_dialer(&args.listen_netns),
        token_auth_file: args.authn.token_auth_file.clone(),
        service_accounts: args.authn.service_accounts(),
        anonymous_auth: args.authn.anonymous_auth,
        ..apiserver::Config::default()
    };
    args.authz.apply(&mut cfg)?;
    let server = apiserver::Server::new(Arc::clone(&store), cfg).await?;
    apiserver::event_ttl::spawn(store, args.event_ttl);
    tracing::info!(
        node_lifecycle = ?configs.node_lifecycle,
        admission = ?configs.admission,
        "serving the Kubernetes API on {}://{addr}",
        serving.scheme()
    );
    let (served, insecure) =
        crate::serving::spawn(Arc::clone(&server), &serving, listener, &args.tls).await?;
    if let crate::serving::Serving::Tls { pki: Some(pki), .. } = &serving {
        let url = format!("https://{}", loopback_if_unspecified(addr));
        let admin = pki.write_kubeconfigs(&args.data_dir, &url, &[])?;
        tracing::info!("wrote {} and the components' kubeconfigs", admin.display());
    }
    println!("zonelab server listening on {}://{addr}", serving.scheme());
    if let Some(plain) = insecure {
        println!("zonelab server insecure listener on http://{plain}");
    }
    for (netns, extra) in &args.listen_netns {
        let std_listener = crate::netns::bind_in_netns(netns, *extra)?;
        let l = tokio::net::TcpListener::from_std(std_listener)?;
        tracing::info!(
            "also serving on {}://{extra} in network namespace {netns}",
            serving.scheme()
        );
        let server = Arc::clone(&server);
        match &serving {
            crate::serving::Serving::Plain => tokio::spawn(server.accept_loop(l)),
            crate::serving::Serving::Tls { config, .. } => {
                tokio::spawn(server.accept_loop_tls(l, Arc::clone(config)))
            }
        };
    }
    // The controllers are API clients of this very server, over loopback.
    let kube_config = controllers_client(&serving, &args.data_dir, addr, insecure)?;
    let build_args = args.clone();
    let election = configs.election;
    let build = move || build_controllers(&build_args, &configs).unwrap_or_default();
    crate::election::spawn(&args.election, election, kube_config, build)?;
    tokio::select! {
        r = served => r?.context("serving")?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
    }
    Ok(())
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// The controllers' clients of this very server. With a generated PKI (`--pki-dir`) the
/// controllers run as `system:kube-controller-manager` and the scheduler as
/// `system:kube-scheduler` over HTTPS, from the kubeconfigs just written into `data_dir`
/// (kubeadm's controller-manager.conf and scheduler.conf); with given certificate files
/// through the `--insecure-port` listener; without TLS over loopback plain HTTP.
fn controllers_client(
    serving: &crate::serving::Serving,
    data_dir: &std::path::Path,
    addr: SocketAddr,
    insecure: Option<SocketAddr>,
) -> anyhow::Result<crate::election::Clients> {
    let local = match (serving, insecure) {
        (crate::serving::Serving::Tls { pki: Some(_), .. }, _) => {
            let load = |f: &str| crate::kubeconfig::load(&data_dir.join(f));
            return Ok(crate::election::Clients {
                manager: load("controller-manager.conf")?,
                scheduler: load("scheduler.conf")?,
            });
        }
        (crate::serving::Serving::Plain, _) => loopback_if_unspecified(addr),
        (_, Some(plain)) => plain,
        (_, None) => anyhow::bail!(
            "serving TLS with --tls-cert-file: the in-process controllers need --insecure-port \
             (or --pki-dir, which gives them their own client certificates)"
        ),
    };
    let plain = kube::Config::new(format!("http://{local}").parse()?);
    Ok(crate::election::Clients {
        manager: plain.clone(),
        scheduler: plain,
    })
}

/// With `--listen-netns`, `pods/log` dials kubelets from inside the first of those
/// namespaces (the lab's control-plane namespace): the lab's node addresses exist only there,
/// and a connect from this process's own namespace must never leave for the real network.
fn kubelet_dialer(
    listen_netns: &[(String, SocketAddr)],
) -> Option<apiserver::handlers::KubeletDialer> {
    let (netns, _) = listen_netns.first()?;
    let netns = netns.clone();
    Some(apiserver::handlers::KubeletDialer(Arc::new(
        move |addr, timeout| {
            crate::netns::connect_in_netns(&netns, addr, timeout).map_err(|e| match e
                .downcast_ref::<std::io::Error>()
            {
                Some(io) => std::io::Error::new(io.kind(), io.to_string()),
                None => std::io::Error::other(format!("{e:#}")),
            })
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        s: ServerArgs,
    }

    fn args(extra: &[&str]) -> ServerArgs {
        let mut v = vec!["t"];
        v.extend(extra);
        T::parse_from(v).s
    }

    #[test]
    fn fast_profile_divides_timers_and_flags_win() {
        let up = args(&[]).configs().unwrap();
        assert_eq!(
            up.node_lifecycle.node_monitor_grace_period,
            Duration::from_secs(50)
        );
        assert_eq!(up.admission.unreachable_toleration_seconds, 300);
        let fast = args(&["--profile", "fast"]).configs().unwrap();
        assert_eq!(
            fast.node_lifecycle.node_monitor_grace_period,
            Duration::from_secs(5)
        );
        assert_eq!(
            fast.node_lifecycle.node_monitor_period,
            Duration::from_millis(500)
        );
        assert_eq!(fast.admission.unreachable_toleration_seconds, 30);
        assert!((fast.node_lifecycle.node_eviction_rate - 1.0).abs() < 1e-6);
        assert_eq!(fast.election.retry_period, Duration::from_millis(200));
        let mixed = args(&[
            "--profile",
            "fast",
            "--node-monitor-grace-period",
            "4s",
            "--unhealthy-zone-threshold",
            "0.3",
            "--leader-elect-retry-period",
            "1s",
        ])
        .configs()
        .unwrap();
        assert_eq!(
            mixed.node_lifecycle.node_monitor_grace_period,
            Duration::from_secs(4)
        );
        assert!((mixed.node_lifecycle.unhealthy_zone_threshold - 0.3).abs() < 1e-6);
        assert_eq!(mixed.election.retry_period, Duration::from_secs(1));
    }

    #[test]
    fn controller_selection() {
        let a = args(&["--controllers", "*,-scheduler"]);
        assert!(a.enabled("endpointslice"));
        assert!(!a.enabled("scheduler"));
        let b = args(&["--controllers", "endpointslice"]);
        assert!(!b.enabled("deployment"));
        let cfg = b.configs().unwrap();
        assert!(build_controllers(&args(&["--controllers", "bogus"]), &cfg).is_err());
        assert!(
            build_controllers(&args(&["--controllers", ""]), &cfg)
                .unwrap()
                .is_empty()
        );
    }
}
