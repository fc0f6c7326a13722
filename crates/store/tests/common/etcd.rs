//! A real single-member etcd and an `EtcdStore` on it, for the conformance and etcd tests.

use std::time::Duration;

use store::testing::EtcdCluster;
use store::{EtcdOptions, EtcdStore, StoreOptions};

/// Fails the test (with the preflight's message) when `etcd` is missing.
pub fn require_etcd() {
    netlab::preflight::require_etcd_for_test();
}

/// Starts an `n`-member cluster (blocking work off the runtime).
pub async fn start_cluster(n: usize) -> EtcdCluster {
    require_etcd();
    tokio::task::spawn_blocking(move || EtcdCluster::start(n))
        .await
        .expect("join")
        .expect("etcd starts")
}

/// Store options for tests: keys under `/conformance/`, no background compaction.
pub fn options(cluster: &EtcdCluster, opts: &StoreOptions) -> EtcdOptions {
    let mut o = EtcdOptions::new(cluster.client_urls());
    o.root = String::new();
    o.prefix = "/conformance/".to_string();
    o.compaction_interval = Duration::ZERO;
    o.watcher_capacity = opts.watcher_capacity;
    o
}

/// A fresh one-member etcd and a store on it (keep the cluster alive as long as the store).
pub async fn start_store(opts: &StoreOptions) -> (EtcdCluster, EtcdStore) {
    let cluster = start_cluster(1).await;
    let s = EtcdStore::connect(options(&cluster, opts))
        .await
        .expect("connect to etcd");
    (cluster, s)
}
