//! The store `zonelab server` runs on: the embedded durable store (default), memory only
//! (`--in-memory`), or an etcd cluster (`--etcd-servers`, upstream's flag names and defaults).
//! Start at [`open`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use store::{EtcdOptions, EtcdStore, SharedStore, StoreError, StoreOptions};

use crate::flags::parse_duration;

/// How long startup waits for etcd to answer before it fails (upstream's etcd client dial
/// timeout, 20 s).
pub const ETCD_STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// etcd flags of `zonelab server` (kube-apiserver's names).
#[derive(clap::Args, Debug, Clone)]
pub struct EtcdArgs {
    /// Store in this etcd cluster instead of the embedded store: comma-separated client URLs
    /// (`http://host:port,…`), tried in order with failover (kube-apiserver `--etcd-servers`).
    #[arg(long)]
    pub etcd_servers: Option<String>,
    /// Prefix of every key in etcd (kube-apiserver `--etcd-prefix`).
    #[arg(long, default_value = store::DEFAULT_ETCD_PREFIX)]
    pub etcd_prefix: String,
    /// How often etcd's history is compacted; 0 disables (kube-apiserver
    /// `--etcd-compaction-interval`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub etcd_compaction_interval: Duration,
}

/// Opens the store the flags select. With `--etcd-servers`, waits up to
/// [`ETCD_STARTUP_TIMEOUT`] for the cluster to answer, then fails naming the URLs.
pub async fn open(
    etcd: &EtcdArgs,
    in_memory: bool,
    data_dir: &Path,
    opts: StoreOptions,
) -> anyhow::Result<SharedStore> {
    if let Some(servers) = &etcd.etcd_servers {
        anyhow::ensure!(
            !in_memory,
            "--in-memory and --etcd-servers are exclusive: choose one store"
        );
        let mut o = EtcdOptions::new(EtcdOptions::parse_servers(servers)?);
        // Keys are joined to the prefix as paths (upstream's `path.Join`): no doubled slash.
        o.prefix = etcd.etcd_prefix.trim_end_matches('/').to_string();
        o.compaction_interval = etcd.etcd_compaction_interval;
        o.watcher_capacity = opts.watcher_capacity;
        let s = connect(o, servers, ETCD_STARTUP_TIMEOUT).await?;
        return Ok(Arc::new(s));
    }
    if in_memory {
        return Ok(Arc::new(store::MemStore::with_options(opts)));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating --data-dir {}", data_dir.display()))?;
    let path = data_dir.join("state.redb");
    Ok(Arc::new(
        store::DurableStore::open_with_options(&path, opts)
            .with_context(|| format!("opening the store at {}", path.display()))?,
    ))
}

/// Connects, retrying every 500 ms until `timeout`; bad input fails at once.
async fn connect(o: EtcdOptions, servers: &str, timeout: Duration) -> anyhow::Result<EtcdStore> {
    let start = Instant::now();
    loop {
        match EtcdStore::connect(o.clone()).await {
            Ok(s) => {
                tracing::info!("storing in etcd at {servers} under {:?}", o.prefix);
                return Ok(s);
            }
            Err(e @ StoreError::Invalid(_)) => return Err(e.into()),
            Err(e) if start.elapsed() >= timeout => {
                anyhow::bail!(
                    "etcd at --etcd-servers {servers} did not answer within {timeout:?}: {e}"
                );
            }
            Err(e) => {
                tracing::warn!("waiting for etcd at {servers}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(servers: &str) -> EtcdArgs {
        EtcdArgs {
            etcd_servers: Some(servers.to_string()),
            etcd_prefix: "/registry".into(),
            etcd_compaction_interval: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn bad_urls_fail_at_once() {
        let dir = Path::new("/nonexistent");
        for bad in ["", "127.0.0.1:2379", "https://127.0.0.1:2379", "http://"] {
            let err = open(&args(bad), false, dir, StoreOptions::default())
                .await
                .err()
                .expect("refused");
            assert!(err.to_string().contains("invalid request"), "{bad}: {err}");
        }
        let err = open(
            &args("http://127.0.0.1:1"),
            true,
            dir,
            StoreOptions::default(),
        )
        .await
        .err()
        .expect("refused");
        assert!(err.to_string().contains("exclusive"), "{err}");
    }

    #[tokio::test]
    async fn an_etcd_that_never_answers_fails_naming_the_url() {
        // A listener that accepts nothing useful: port 1 on loopback refuses connections.
        let mut o = EtcdOptions::new(vec!["http://127.0.0.1:1".into()]);
        o.compaction_interval = Duration::ZERO;
        let err = connect(o, "http://127.0.0.1:1", Duration::from_millis(600))
            .await
            .err()
            .expect("fails");
        let msg = err.to_string();
        assert!(
            msg.starts_with("etcd at --etcd-servers http://127.0.0.1:1 did not answer within"),
            "{msg}"
        );
        assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
    }
}
