//! The `zonelab` binary: one executable with roles, like k3s. `zonelab server` runs the API
//! server (and, in later milestones, the controllers) over a durable store.
//!
//! Start at [`main`]; each role lives in its own module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zonelab",
    version,
    about = "Kubernetes ClusterIP networking and an AZ-failure lab"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (kubectl --server http://HOST:PORT talks to it).
    Server(ServerArgs),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where the durable store lives; state survives restarts.
    #[arg(long, default_value = "/var/lib/zonelab/server")]
    data_dir: PathBuf,
    /// Keep state in memory only (nothing survives a restart; for tests and the simulator).
    #[arg(long, conflicts_with = "data_dir")]
    in_memory: bool,
    /// Address to serve the Kubernetes API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// CIDR of ClusterIPs (kube-apiserver's flag; kubeadm's default).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// Port range for NodePort Services.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Tolerations added to pods for node.kubernetes.io/not-ready:NoExecute.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Tolerations added to pods for node.kubernetes.io/unreachable:NoExecute.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Store events kept for watch resume and consistent paging; a watch from an older
    /// resourceVersion gets 410 Gone (like etcd compaction).
    #[arg(long, default_value_t = store::StoreOptions::default().history_capacity)]
    watch_history: usize,
    /// How often watchers that allow bookmarks receive one.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    bookmark_interval: Duration,
}

/// Parse `10s`, `500ms`, `2m`, `1h` (Go duration style, one unit).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("invalid --service-node-port-range {s:?}: want LOW-HIGH"))?;
    let lo: u16 = a
        .trim()
        .parse()
        .with_context(|| format!("invalid port {a:?}"))?;
    let hi: u16 = b
        .trim()
        .parse()
        .with_context(|| format!("invalid port {b:?}"))?;
    anyhow::ensure!(
        lo <= hi,
        "invalid --service-node-port-range {s:?}: LOW > HIGH"
    );
    Ok((lo, hi))
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let opts = store::StoreOptions {
        history_capacity: args.watch_history,
        ..Default::default()
    };
    let store: store::SharedStore = if args.in_memory {
        Arc::new(store::MemStore::with_options(opts))
    } else {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating --data-dir {}", args.data_dir.display()))?;
        let path = args.data_dir.join("state.redb");
        Arc::new(
            store::DurableStore::open_with_options(&path, opts)
                .with_context(|| format!("opening the store at {}", path.display()))?,
        )
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let cfg = apiserver::Config {
        service_cluster_ip_range: args.service_cluster_ip_range,
        service_node_port_range: parse_port_range(&args.service_node_port_range)?,
        advertise_address: listener.local_addr()?,
        bookmark_interval: args.bookmark_interval,
        default_not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
    };
    let server = apiserver::Server::new(store, cfg).await?;
    tracing::info!(
        "serving the Kubernetes API on http://{}",
        listener.local_addr()?
    );
    println!(
        "zonelab server listening on http://{}",
        listener.local_addr()?
    );
    tokio::select! {
        r = server.serve(listener) => r.context("serving")?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZONELAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(args) => rt.block_on(run_server(args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ranges() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_port_range("30000-32767").unwrap(), (30000, 32767));
        assert!(parse_port_range("5-1").is_err());
    }
}
