//! A store wrapper that times every storage call into [`Metrics`] under etcd's metric names
//! (operation and group-resource), so `/metrics` shows storage latency on any backend.
//!
//! Start at [`MeteredStore`].

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use store::{
    KeyValue, ListOptions, ListResult, Op, Revision, SharedStore, Store, StoreError, Watcher,
};

use crate::metrics::Metrics;

/// Wraps a store; behaviour is the inner store's, plus one metric sample per call.
pub struct MeteredStore {
    inner: SharedStore,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: SharedStore, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }

    fn record<T>(
        &self,
        operation: &'static str,
        key: &str,
        started: Instant,
        r: &Result<T, StoreError>,
    ) {
        self.metrics
            .storage_call(operation, group_resource(key), started.elapsed(), r.is_ok());
    }
}

/// `pods` or `deployments.apps` from a storage key `/registry/<group>/<plural>/...` (the
/// group is `core` for the core group); `unknown` for anything else.
pub fn group_resource(key: &str) -> String {
    let mut parts = key.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("registry"), Some("core"), Some(plural)) => plural.to_string(),
        (Some("registry"), Some(group), Some(plural)) => format!("{plural}.{group}"),
        _ => "unknown".to_string(),
    }
}

/// The etcd3 store's operation name for a transaction.
fn txn_operation(ops: &[Op]) -> &'static str {
    match ops {
        [Op::Create { .. }] => "create",
        [Op::Update { .. }] => "update",
        [Op::Delete { .. }] => "delete",
        _ => "txn",
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn txn(&self, ops: Vec<Op>) -> Result<Vec<KeyValue>, StoreError> {
        let op = txn_operation(&ops);
        let key = ops.first().map(|o| o.key().to_string()).unwrap_or_default();
        let started = Instant::now();
        let r = self.inner.txn(ops).await;
        self.record(op, &key, started, &r);
        r
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let started = Instant::now();
        let r = self.inner.get(key).await;
        self.record("get", key, started, &r);
        r
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let started = Instant::now();
        let r = self.inner.list(prefix, opts).await;
        self.record("list", prefix, started, &r);
        r
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError> {
        let started = Instant::now();
        let r = self.inner.watch(prefix, after).await;
        self.record("watch", prefix, started, &r);
        r
    }

    fn current_revision(&self) -> Revision {
        self.inner.current_revision()
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.compacted_revision()
    }

    fn request_progress(&self) {
        self.inner.request_progress()
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }

    async fn wait_for_revision(&self, revision: Revision) {
        self.inner.wait_for_revision(revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn keys_name_their_group_resource() {
        assert_eq!(group_resource("/registry/core/pods/default/p"), "pods");
        assert_eq!(
            group_resource("/registry/apps/deployments/"),
            "deployments.apps"
        );
        assert_eq!(group_resource("/elsewhere"), "unknown");
    }

    #[tokio::test]
    async fn calls_pass_through_and_are_counted() {
        let metrics = Arc::new(Metrics::default());
        let store = MeteredStore::new(Arc::new(store::MemStore::new()), Arc::clone(&metrics));
        store
            .create("/registry/core/pods/default/a", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let again = store
            .create("/registry/core/pods/default/a", Bytes::from_static(b"{}"))
            .await;
        assert!(matches!(again, Err(StoreError::AlreadyExists { .. })));
        assert!(
            store
                .get("/registry/core/pods/default/a")
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.current_revision(), 1);
        let page = metrics.render(&[]);
        assert!(page.contains("etcd_requests_total{operation=\"create\",type=\"pods\"} 2"));
        assert!(page.contains("etcd_request_errors_total{operation=\"create\",type=\"pods\"} 1"));
        assert!(page.contains("etcd_requests_total{operation=\"get\",type=\"pods\"} 1"));
    }
}
