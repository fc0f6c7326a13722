//! `zonelab agent`: one node — the kubelet (node registration, lease, pods as processes in
//! their own network namespaces, probes) and the kube-proxy (nftables or iptables rules in this
//! node's network namespace). Run inside the node's namespace; SIGTERM = graceful node
//! shutdown (pods terminated first, then exit).
//!
//! Start at [`run`].

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kubelet::{Agent, KubeletConfig, NetProber, ProcessRuntime, ProcessRuntimeConfig};
use proxy::Cidr;
use proxy::syncer::{ProxyMode, SyncerConfig};
use tokio::signal::unix::{SignalKind, signal};

use crate::flags::{Profile, parse_duration};

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
    /// API server URL.
    #[arg(long)]
    pub server: String,
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
    /// Minimum time between proxy syncs [upstream 1s; fast 100ms].
    #[arg(long, value_parser = parse_duration)]
    pub min_sync_period: Option<Duration>,
    /// Retry interval after a failed proxy sync (the current runner has no periodic sync at
    /// this period; it syncs on changes and every hour) [upstream 30s; fast 3s].
    #[arg(long, value_parser = parse_duration)]
    pub sync_period: Option<Duration>,
    /// Lease duration; the lease is renewed every quarter of it [upstream 40; fast 4].
    #[arg(long)]
    pub node_lease_duration_seconds: Option<i32>,
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
    /// Sets this node's `net.netfilter.nf_conntrack_tcp_timeout_syn_sent` (kernel default
    /// 120s): how long an unanswered connection's conntrack entry, and its DNAT to the endpoint
    /// it picked, outlives the endpoint for a client that reuses the source port. A lab knob,
    /// like kube-proxy's `--conntrack-tcp-timeout-*` flags.
    #[arg(long, value_parser = parse_duration)]
    pub conntrack_tcp_timeout_syn_sent: Option<Duration>,
    /// Labels to add when registering the node (kubelet `--node-labels`):
    /// `key=value` pairs, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// ClusterIP range (unallocated addresses in it are dropped).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn syncer_config(args: &AgentArgs) -> anyhow::Result<SyncerConfig> {
    let mut cfg = SyncerConfig {
        mode: match args.proxy_mode.as_str() {
            "iptables" => ProxyMode::Iptables,
            _ => ProxyMode::Nftables,
        },
        ..SyncerConfig::default()
    };
    cfg.min_sync_period_ms = ms(args
        .min_sync_period
        .unwrap_or(args.profile.duration(Duration::from_secs(1))));
    cfg.sync_period_ms = ms(args
        .sync_period
        .unwrap_or(args.profile.duration(Duration::from_secs(30))));
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
    let mut cfg = KubeletConfig {
        node_name: args.node_name.clone(),
        zone: args.zone.clone(),
        node_ip: args.node_ip,
        pod_cidr: args.pod_cidr.clone(),
        capacity_cpu: args.node_capacity_cpu.clone(),
        capacity_memory: args.node_capacity_memory.clone(),
        max_pods: args.max_pods,
        node_labels: args.node_labels.clone(),
        ..KubeletConfig::default()
    };
    if args.profile == Profile::Fast {
        cfg = cfg.fast();
    }
    if let Some(d) = args.node_lease_duration_seconds {
        cfg.node_lease_duration_seconds = d;
    }
    cfg
}

/// The sysctl behind `--conntrack-tcp-timeout-syn-sent` (per network namespace).
const SYN_SENT_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_syn_sent";

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let mode = crate::preflight::proxy_mode(&args.proxy_mode)?;
    netlab::preflight::check(netlab::preflight::Role::Agent(mode))?;
    if let Some(t) = args.conntrack_tcp_timeout_syn_sent {
        let secs = t.as_secs().max(1);
        std::fs::write(SYN_SENT_SYSCTL, secs.to_string())
            .with_context(|| format!("setting {SYN_SENT_SYSCTL} to {secs}"))?;
    }
    let url: http::Uri = args.server.parse().context("--server")?;
    let read_timeout = args
        .profile
        .duration(crate::client::UPSTREAM_READ_IDLE_TIMEOUT);
    let client = kube::Client::try_from(crate::client::config(url, read_timeout))?;
    let syncer = syncer_config(&args)?;
    let mut proxy = tokio::spawn(crate::proxy_driver::run(
        client.clone(),
        syncer,
        args.node_name.clone(),
        args.proxy_status_address,
    ));
    let runtime = ProcessRuntime::new(ProcessRuntimeConfig {
        netns_prefix: args.lab_prefix.clone(),
        node_netns: args.node_name.clone(),
        state_dir: args.state_dir.join(&args.node_name),
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
    Ok(())
}
