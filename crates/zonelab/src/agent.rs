//! `zonelab agent`: one node — the kubelet (node registration, lease, pods as processes in
//! their own network namespaces, probes) and the kube-proxy (nftables or iptables rules in this
//! node's network namespace). Run inside the node's namespace; SIGTERM = graceful node
//! shutdown (pods terminated first, then exit).
//!
//! Start at [`run`].

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use kubelet::KubeletConfig;
use live::kubelet::{Agent, NetProber, ProcessRuntime, ProcessRuntimeConfig};
use proxy::Cidr;
use proxy::syncer::{ProxyMode, SyncerConfig};
use tokio::signal::unix::{SignalKind, signal};

use crate::flags::Profile;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The Node name (kubelet `--hostname-override`).
    #[arg(long)]
    pub node_name: String,
    /// Value of the node's `topology.kubernetes.io/zone` label.
    #[arg(long)]
    pub zone: String,
    /// The node's InternalIP.
    #[arg(long)]
    pub node_ip: Ipv4Addr,
    /// The node's pod CIDR (`10.244.N.0/24`).
    #[arg(long)]
    pub pod_cidr: String,
    /// API server URL; overrides the kubeconfigs' server (kube-proxy's `--master`). Without
    /// `--kubeconfig` the agent talks to it without credentials.
    #[arg(long)]
    pub server: Option<String>,
    /// The kubelet's kubeconfig (kubelet `--kubeconfig`): the API server's CA and the node's
    /// client certificate (`system:node:NAME` in `system:nodes`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kube-proxy's kubeconfig (kube-proxy `--kubeconfig`; `system:kube-proxy`). Default: the
    /// kubelet's `--kubeconfig`.
    #[arg(long)]
    pub proxy_kubeconfig: Option<PathBuf>,
    /// Enter this network namespace at start (the node's), keeping the mount namespace.
    #[arg(long)]
    pub netns: Option<String>,
    /// Lab prefix: pod network namespaces are `<prefix>-p-<hash>`.
    #[arg(long, default_value = "zl")]
    pub lab_prefix: String,
    /// Where container logs go.
    #[arg(long, default_value = "/run/zonelab/agents")]
    pub state_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = Profile::Upstream)]
    pub profile: Profile,
    /// kube-proxy mode.
    #[arg(long, default_value = "nftables", value_parser = ["nftables", "iptables"])]
    pub proxy_mode: String,
    /// nftables rule layout: `upstream` (upstream kube-proxy's rules: an anonymous vmap per
    /// Service, O(N^2) in the kernel per transaction) or `shared-map` (one endpoint map per
    /// protocol and dispatch chains; docs/proxy.md).
    #[arg(long, default_value = "upstream", value_parser = ["upstream", "shared-map"])]
    pub nftables_layout: String,
    /// The node's timers: proxy sync pacing, lease, conntrack SYN_SENT timeout (crate
    /// `profile`: unset = upstream's under `--profile`).
    #[command(flatten)]
    pub node: profile::NodeFlags,
    /// kube-proxy `/metrics` and `/healthz` (upstream serves them on :10249 and :10256).
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub proxy_status_address: std::net::SocketAddr,
    /// Pod network of the whole cluster (traffic to a ClusterIP from outside it is masqueraded).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Node `capacity.cpu` the kubelet reports (a quantity).
    #[arg(long, default_value = "2")]
    pub node_capacity_cpu: String,
    /// Node `capacity.memory` the kubelet reports (a quantity).
    #[arg(long, default_value = "4Gi")]
    pub node_capacity_memory: String,
    /// Most pods this node runs (kubelet `--max-pods`).
    #[arg(long, default_value_t = kubelet::core::config::DEFAULT_MAX_PODS)]
    pub max_pods: u32,
    /// Labels to add when registering the node (kubelet `--node-labels`):
    /// `key=value` pairs, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// ClusterIP range (unallocated addresses in it are dropped).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// What the kubelet does with an image the lab cannot run (anything but `zonelab/echo`
    /// without a `command`): `stand-in` runs the `zonelab/echo` stand-in on its declared TCP
    /// ports; `fail` refuses it as a failed pull (ErrImagePull, then ImagePullBackOff).
    #[arg(long, default_value = "stand-in", value_parser = ["stand-in", "fail"])]
    pub image_policy: String,
    /// kubelet `--port`: the node's kubelet endpoint (`/containerLogs`), on every address of
    /// the node's network namespace [upstream 10250].
    #[arg(long, default_value_t = kubelet::core::config::DEFAULT_KUBELET_PORT)]
    pub port: u16,
    /// kubelet `--container-log-max-size`: a container log file is rotated past this size
    /// (a quantity, e.g. `10Mi`) [upstream 10Mi].
    #[arg(long, default_value = "10Mi", value_parser = parse_log_size)]
    pub container_log_max_size: u64,
    /// kubelet `--container-log-max-files`: log files kept per container instance
    /// [upstream 5].
    #[arg(long, default_value_t = kubelet::logfmt::DEFAULT_CONTAINER_LOG_MAX_FILES)]
    pub container_log_max_files: u32,
}

/// A size quantity in bytes (`10Mi`, `512Ki`, `1000`).
fn parse_log_size(s: &str) -> Result<u64, String> {
    let (num, mult) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .iter()
        .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((s, 1));
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {s:?}: expected a positive quantity like 10Mi"))
}

fn syncer_config(args: &AgentArgs) -> anyhow::Result<SyncerConfig> {
    let mut cfg = SyncerConfig {
        mode: match args.proxy_mode.as_str() {
            "iptables" => ProxyMode::Iptables,
            _ => ProxyMode::Nftables,
        },
        ..profile::proxy(args.profile, &args.node)
    };
    cfg.plan.node_name = Some(args.node_name.clone());
    let cluster = Cidr::parse(&args.cluster_cidr)
        .map_err(|e| anyhow::anyhow!("invalid --cluster-cidr {:?}", e.0))?;
    let services = Cidr::parse(&args.service_cluster_ip_range)
        .map_err(|e| anyhow::anyhow!("invalid --service-cluster-ip-range {:?}", e.0))?;
    // NodePorts on the node's primary IP: upstream's nftables default `--nodeport-addresses
    // primary`; iptables keeps upstream's default of every local address.
    cfg.nft.nodeport_ips = vec![args.node_ip];
    cfg.nft.node_ip = Some(args.node_ip);
    cfg.iptables.node_ip = Some(args.node_ip);
    cfg.nft.layout = proxy::nft::NftLayout::parse(&args.nftables_layout)?;
    cfg.nft.cluster_cidr = Some(cluster);
    cfg.nft.service_cidrs = vec![services];
    cfg.iptables.cluster_cidr = Some(cluster);
    Ok(cfg)
}

/// One `--node-labels` pair, `key=value`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("invalid label {s:?}: expected key=value")),
    }
}

fn kubelet_config(args: &AgentArgs) -> KubeletConfig {
    KubeletConfig {
        node_name: args.node_name.clone(),
        zone: args.zone.clone(),
        node_ip: args.node_ip,
        pod_cidr: args.pod_cidr.clone(),
        capacity_cpu: args.node_capacity_cpu.clone(),
        capacity_memory: args.node_capacity_memory.clone(),
        max_pods: args.max_pods,
        node_labels: args.node_labels.clone(),
        image_policy: kubelet::core::standin::ImagePolicy::parse(&args.image_policy)
            .unwrap_or_default(),
        port: args.port,
        ..profile::kubelet(args.profile, &args.node)
    }
}

/// The sysctl behind `--conntrack-tcp-timeout-syn-sent` (per network namespace).
const SYN_SENT_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_syn_sent";

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let mode = crate::preflight::proxy_mode(&args.proxy_mode)?;
    netlab::preflight::check(netlab::preflight::Role::Agent(mode))?;
    if let Some(t) = args.node.conntrack_tcp_timeout_syn_sent {
        let secs = t.as_secs().max(1);
        std::fs::write(SYN_SENT_SYSCTL, secs.to_string())
            .with_context(|| format!("setting {SYN_SENT_SYSCTL} to {secs}"))?;
    }
    let read_timeout = args
        .profile
        .duration(crate::client::UPSTREAM_READ_IDLE_TIMEOUT);
    let server = args.server.as_deref();
    let kubelet_kc = crate::kubeconfig::role_config(
        args.kubeconfig.as_deref(),
        server,
        read_timeout,
        "kubelet",
    )?;
    let proxy_kc = crate::kubeconfig::role_config(
        args.proxy_kubeconfig
            .as_deref()
            .or(args.kubeconfig.as_deref()),
        server,
        read_timeout,
        "kube-proxy",
    )?;
    let client = crate::client::client(kubelet_kc, read_timeout)?;
    let proxy_client = crate::client::client(proxy_kc, read_timeout)?;
    let syncer = syncer_config(&args)?;
    let mut proxy = tokio::spawn(live::proxy::run(
        proxy_client,
        syncer,
        args.node_name.clone(),
        args.proxy_status_address,
    ));
    let logs = live::kubelet::logwriter::LogConfig {
        root: args.state_dir.join(&args.node_name),
        max_size: args.container_log_max_size,
        max_files: args.container_log_max_files,
    };
    let (log_tx, log_rx) = tokio::sync::mpsc::channel(live::kubelet::logserver::QUERY_CHANNEL);
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, args.port))
        .await
        .with_context(|| format!("kubelet --port {}", args.port))?;
    let log_server = tokio::spawn(live::kubelet::logserver::serve(
        listener,
        live::kubelet::logserver::LogServer {
            root: logs.root.clone(),
            max_files: logs.max_files,
            queries: log_tx,
        },
    ));
    let runtime = ProcessRuntime::new(ProcessRuntimeConfig {
        netns_prefix: args.lab_prefix.clone(),
        node_netns: args.node_name.clone(),
        logs,
        echo_exe: std::env::current_exe()?,
    });
    let prober = NetProber {
        netns_prefix: args.lab_prefix.clone(),
    };
    let agent = Agent::start(
        client,
        kubelet_config(&args),
        Arc::new(runtime),
        Arc::new(prober),
        Some(log_rx),
    );
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let signals = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: graceful node shutdown"),
            _ = int.recv() => tracing::info!("interrupted: graceful node shutdown"),
        }
        agent.shutdown().await?;
        Ok::<(), anyhow::Error>(())
    };
    // The proxy never ends on its own: if it does (a panic), the agent exits non-zero.
    crate::supervise::until_task_ends("kube-proxy", &mut proxy, signals).await?;
    log_server.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn parse(extra: &[&str]) -> Result<Cli, clap::Error> {
        let mut argv = vec![
            "agent",
            "--node-name=n1",
            "--zone=a",
            "--node-ip=10.0.0.2",
            "--pod-cidr=10.244.1.0/24",
            "--server=http://10.0.0.1:6443",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv)
    }

    #[test]
    fn node_timers_come_from_the_profile_and_flags_win() {
        let fast = parse(&["--profile", "fast"]).expect("parses").agent;
        let cfg = syncer_config(&fast).expect("config");
        assert_eq!(
            (cfg.min_sync_period_ms, cfg.sync_period_ms),
            (Duration::from_millis(100), Duration::from_secs(3))
        );
        assert_eq!(kubelet_config(&fast).node_lease_duration_seconds, 4);
        assert_eq!(kubelet_config(&fast).node_name, "n1");
        let mixed = parse(&[
            "--profile",
            "fast",
            "--min-sync-period",
            "250ms",
            "--node-lease-duration-seconds",
            "12",
        ])
        .expect("parses")
        .agent;
        let cfg = syncer_config(&mixed).expect("config");
        assert_eq!(
            (cfg.min_sync_period_ms, cfg.sync_period_ms),
            (Duration::from_millis(250), Duration::from_secs(3))
        );
        assert_eq!(kubelet_config(&mixed).node_lease_duration_seconds, 12);
        let up = parse(&[]).expect("parses").agent;
        assert_eq!(
            syncer_config(&up).expect("config").sync_period_ms,
            Duration::from_secs(30)
        );
        assert_eq!(kubelet_config(&up).node_lease_duration_seconds, 40);
    }

    #[test]
    fn nftables_layout_flag() {
        let default = syncer_config(&parse(&[]).expect("parses").agent).expect("config");
        assert_eq!(default.nft.layout, proxy::nft::NftLayout::Upstream);
        let shared = parse(&["--nftables-layout", "shared-map"]).expect("parses");
        let cfg = syncer_config(&shared.agent).expect("config");
        assert_eq!(cfg.nft.layout, proxy::nft::NftLayout::SharedMap);
        let bad = parse(&["--nftables-layout", "shared"])
            .err()
            .expect("rejected");
        assert!(bad.to_string().contains("shared-map"), "{bad}");
    }
}
