//! The kube-proxy live driver: informers for Services and EndpointSlices feed the sans-IO
//! [`proxy::syncer::Syncer`]; its transactions are applied with `nft -f -` (or
//! `iptables-restore --noflush`) in this process's network namespace, and the outcome reported
//! back. Each applied sync is logged on stdout as one JSON line (the lab's timeline reads it).
//!
//! Start at [`run`].

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher;
use proxy::apply::{IptablesApplier, NftApplier, RuleApplier};
use proxy::syncer::{Change, ProxyMode, SyncKind, Syncer, SyncerConfig};
use tokio::sync::mpsc;

use controllers::live::wall_clock;

enum Feed {
    Service(Box<watcher::Event<Service>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
}

fn spawn_watch<K, F>(api: Api<K>, wrap: F, tx: mpsc::Sender<Feed>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(watcher::Event<K>) -> Feed + Send + 'static,
{
    tokio::spawn(async move {
        let mut s = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            match ev {
                Ok(ev) => {
                    if tx.send(wrap(ev)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("proxy informer: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
}

/// Apply events of one kind to the syncer; returns true once the initial list is done.
fn feed<T>(ev: watcher::Event<T>, mut apply: impl FnMut(Change<'_, T>)) -> bool {
    match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
            apply(Change::Applied(&o));
            false
        }
        watcher::Event::Delete(o) => {
            apply(Change::Deleted(&o));
            false
        }
        watcher::Event::Init => false,
        watcher::Event::InitDone => true,
    }
}

/// Run the proxy until the process ends.
pub async fn run(client: kube::Client, cfg: SyncerConfig, node: String) {
    let mode = cfg.mode;
    let mut syncer = Syncer::new(cfg);
    let (tx, mut rx) = mpsc::channel(1024);
    spawn_watch(
        Api::<Service>::all(client.clone()),
        |e| Feed::Service(Box::new(e)),
        tx.clone(),
    );
    spawn_watch(
        Api::<EndpointSlice>::all(client),
        |e| Feed::Slice(Box::new(e)),
        tx,
    );
    let (mut services_synced, mut slices_synced, mut started) = (false, false, false);
    let mut applier: Box<dyn RuleApplier + Send> = match mode {
        ProxyMode::Nftables => Box::new(NftApplier::new(None)),
        ProxyMode::Iptables => Box::new(IptablesApplier::new(None)),
    };
    loop {
        let now = wall_clock();
        if started && let Some(txn) = syncer.poll(now) {
            let (kind, text) = (txn.kind, txn.text);
            let began = std::time::Instant::now();
            let (back, result) = tokio::task::spawn_blocking(move || {
                let r = applier.apply(&text);
                (applier, r)
            })
            .await
            .unwrap_or_else(|e| panic!("proxy applier task failed: {e}"));
            applier = back;
            let ok = result.is_ok();
            if let Err(e) = &result {
                tracing::warn!("proxy sync failed: {e}");
            }
            let done = wall_clock();
            syncer.on_applied(result, done);
            if kind != SyncKind::StaleDelete {
                let ready: usize = syncer.plan().services().map(|s| s.endpoints.len()).sum();
                println!(
                    "{}",
                    serde_json::json!({"event": "proxy-sync", "node": node, "at": done, "kind": format!("{kind:?}"),
                        "ok": ok, "duration_ms": began.elapsed().as_secs_f64() * 1e3, "endpoints": ready})
                );
            }
            continue;
        }
        let sleep_ms = syncer
            .poll_timeout()
            .map(|t| t.saturating_sub(wall_clock()).clamp(0, 30_000))
            .unwrap_or(30_000);
        tokio::select! {
            f = rx.recv() => {
                let Some(f) = f else { return };
                match f {
                    Feed::Service(ev) => services_synced |= feed(*ev, |c| syncer.on_service(c)),
                    Feed::Slice(ev) => slices_synced |= feed(*ev, |c| syncer.on_slice(c)),
                }
                if !started && services_synced && slices_synced {
                    started = true;
                    syncer.on_initial_sync_done(wall_clock());
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
        }
    }
}
