//! The kube-proxy live driver: informers for Services and EndpointSlices feed the sans-IO
//! [`proxy::syncer::Syncer`], one for the proxy's own Node its zone label (topology hints); its transactions are applied with `nft -f -` (or
//! `iptables-restore --noflush`) in this process's network namespace, and the outcome reported
//! back. Each applied sync is logged on stdout as one JSON line (the lab's timeline reads it).
//! After each sync the health check node ports of Local-policy LoadBalancers are reconciled
//! ([`health_ports`]).
//!
//! Start at [`run`].

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher;
use proxy::apply::{IptablesApplier, NftApplier, RuleApplier};
use proxy::health::ProxyHealth;
use proxy::service_health::ServiceHealth;
use proxy::syncer::{Change, ProxyMode, SyncKind, Syncer, SyncerConfig};
use tokio::sync::mpsc;

use crate::controllers::wall_clock;
use crate::relist::{self, Step};
use controllers::Key;

pub mod apply;
pub mod conntrack;
pub mod health_ports;

enum Feed {
    Service(Box<Step<Service>>),
    Slice(Box<Step<EndpointSlice>>),
    Node(Box<Step<Node>>),
}

fn spawn_watch<K, F>(api: Api<K>, what: &'static str, wrap: F, tx: mpsc::Sender<Feed>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(Step<K>) -> Feed + Send + 'static,
{
    spawn_watch_with(api, watcher::Config::default(), what, wrap, tx);
}

fn spawn_watch_with<K, F>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    wrap: F,
    tx: mpsc::Sender<Feed>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(Step<K>) -> Feed + Send + 'static,
{
    tokio::spawn(async move {
        let mut s = std::pin::pin!(relist::steps(api, config, what));
        while let Some(step) = s.next().await {
            if tx.send(wrap(step)).await.is_err() {
                return;
            }
        }
    });
}

/// The objects of one kind the proxy has handed to the syncer, so that a relist can deliver
/// the deletions a watch gap hid (the tracker needs the deleted object).
struct Known<T>(BTreeMap<Key, T>);

impl<T: kube::Resource> Known<T> {
    /// Apply one step; hands each resulting change to `apply`. Returns true on a relist.
    fn feed(&mut self, step: Step<T>, mut apply: impl FnMut(Change<'_, T>)) -> bool {
        match step {
            Step::Apply(o) => {
                apply(Change::Applied(&o));
                self.0.insert(relist::key_of(&o), o);
                false
            }
            Step::Delete(o) => {
                apply(Change::Deleted(&o));
                self.0.remove(&relist::key_of(&o));
                false
            }
            Step::Relisted(list) => {
                let r = relist::diff(self.0.keys().cloned(), list, relist::key_of);
                for key in r.deletions {
                    if let Some(o) = self.0.remove(&key) {
                        apply(Change::Deleted(&o));
                    }
                }
                for o in r.upserts {
                    apply(Change::Applied(&o));
                    self.0.insert(relist::key_of(&o), o);
                }
                true
            }
        }
    }
}

/// What the proxy's HTTP endpoints report.
struct Status {
    metrics: String,
    health: ProxyHealth,
    /// Health check node ports and their Services' local endpoint counts.
    services: ServiceHealth,
}

impl health_ports::HealthSource for Status {
    fn answer(&self, svc: &proxy::ServiceKey) -> Option<proxy::service_health::HealthCheckAnswer> {
        let healthy = self.health.check(wall_clock()).healthy;
        self.services.answer(svc, healthy)
    }
}

/// Re-reads the health check state from the synced tracker and opens/closes the ports.
async fn sync_health_ports(
    syncer: &Syncer,
    node: &str,
    status: &Arc<Mutex<Status>>,
    ports: &mut health_ports::HealthPorts,
) {
    let wanted = match status.lock() {
        Ok(mut st) => {
            st.services.sync(syncer.tracker(), Some(node));
            st.services.ports()
        }
        Err(_) => return,
    };
    ports.reconcile(wanted, status).await;
}

/// Serve `/metrics` (Prometheus text, upstream metric names) and `/healthz` (upstream's
/// semantics and body, see [`ProxyHealth`]: 503 once a queued update is not programmed within
/// 2 x `--sync-period`).
fn serve_status(addr: SocketAddr, status: Arc<Mutex<Status>>) {
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("proxy status endpoint {addr}: {e}");
                return;
            }
        };
        while let Ok((stream, _)) = listener.accept().await {
            let status = Arc::clone(&status);
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let status = Arc::clone(&status);
                    async move {
                        let (code, body) = match status.lock() {
                            Ok(s) => match req.uri().path() {
                                "/metrics" => (200, s.metrics.clone()),
                                "/healthz" | "/livez" => {
                                    let r = s.health.check(wall_clock());
                                    (r.status_code(), r.body())
                                }
                                _ => (404, "not found".to_string()),
                            },
                            Err(_) => (500, "status lock poisoned".to_string()),
                        };
                        let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = hyper::StatusCode::from_u16(code)
                            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

/// Run the proxy until the process ends; `/metrics` and `/healthz` are served on `status_addr`.
pub async fn run(client: kube::Client, cfg: SyncerConfig, node: String, status_addr: SocketAddr) {
    let mode = cfg.mode;
    let status = Arc::new(Mutex::new(Status {
        metrics: String::new(),
        health: ProxyHealth::new(cfg.sync_period_ms),
        services: ServiceHealth::new(),
    }));
    let mut health_ports = health_ports::HealthPorts::new(match mode {
        ProxyMode::Nftables => cfg.nft.nodeport_ips.clone(),
        ProxyMode::Iptables => cfg.iptables.nodeport_ips.clone(),
    });
    serve_status(status_addr, Arc::clone(&status));
    let mut syncer = Syncer::new(cfg);
    let (tx, mut rx) = mpsc::channel(1024);
    spawn_watch(
        Api::<Service>::all(client.clone()),
        "proxy Service",
        |s| Feed::Service(Box::new(s)),
        tx.clone(),
    );
    spawn_watch(
        Api::<EndpointSlice>::all(client.clone()),
        "proxy EndpointSlice",
        |s| Feed::Slice(Box::new(s)),
        tx.clone(),
    );
    // Upstream's NodeTopologyConfig: the proxy's own Node, for its zone label.
    spawn_watch_with(
        Api::<Node>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={node}")),
        "proxy Node",
        |s| Feed::Node(Box::new(s)),
        tx,
    );
    let (mut services, mut slices) = (Known(BTreeMap::new()), Known(BTreeMap::new()));
    let (mut services_synced, mut slices_synced, mut started) = (false, false, false);
    let mut udp = conntrack::UdpView::new();
    // The ready endpoints per Service the last proxy-sync/proxy-known line told.
    let mut last_ready: BTreeMap<String, usize> = BTreeMap::new();
    let mut applier: Box<dyn RuleApplier + Send> = match mode {
        ProxyMode::Nftables => Box::new(NftApplier::new(None)),
        ProxyMode::Iptables => Box::new(IptablesApplier::new(None)),
    };
    loop {
        let now = wall_clock();
        let queued = syncer.tracker().has_changes();
        let polled = if started {
            syncer.poll_transaction(now)
        } else {
            None
        };
        if started && polled.is_none() && queued && !syncer.tracker().has_changes() {
            // The changes were taken and needed no rule change: the sync is done.
            if let Ok(mut st) = status.lock() {
                st.health.updated(now);
            }
            // The rules stay those of the last `proxy-sync` line, but the proxy may now know
            // other endpoints (zone hints left its rules as they were): the load gate's count,
            // printed when it changed.
            let ready = known_ready(syncer.tracker());
            if ready != last_ready {
                println!(
                    "{}",
                    serde_json::json!({"event": "proxy-known", "node": node, "at": now.as_millis(),
                        "ready": ready})
                );
                last_ready = ready;
            }
            sync_health_ports(&syncer, &node, &status, &mut health_ports).await;
        }
        if let Some(txn) = polled {
            let (kind, text) = (txn.kind, txn.text);
            let began = std::time::Instant::now();
            let (back, result) = apply::apply_blocking(applier, text)
                .await
                .unwrap_or_else(|e| panic!("proxy {e}"));
            applier = back;
            let ok = result.is_ok();
            if let Err(e) = &result {
                tracing::warn!("proxy sync failed: {e}");
            }
            let done = wall_clock();
            if let Ok(mut st) = status.lock() {
                match &result {
                    Ok(()) if kind != SyncKind::StaleDelete => st.health.updated(done),
                    Ok(()) => {}
                    Err(e) => st.health.sync_failed(done, e.to_string()),
                }
            }
            syncer.handle_applied(result, done);
            if ok && kind != SyncKind::StaleDelete {
                sync_health_ports(&syncer, &node, &status, &mut health_ports).await;
            }
            if ok {
                let now_udp = conntrack::udp_view(syncer.plan());
                let cmds = conntrack::cleanup_commands(&udp, &now_udp);
                udp = now_udp;
                if !cmds.is_empty() {
                    let _ = tokio::task::spawn_blocking(move || conntrack::run(&cmds)).await;
                }
            }
            if let Ok(mut st) = status.lock() {
                st.metrics = syncer.render_metrics();
            }
            if kind != SyncKind::StaleDelete {
                let ready: usize = syncer.plan().services().map(|s| s.endpoints.len()).sum();
                last_ready = known_ready(syncer.tracker());
                println!(
                    "{}",
                    serde_json::json!({"event": "proxy-sync", "node": node, "at": done.as_millis(), "kind": format!("{kind:?}"),
                        "ok": ok, "duration_ms": began.elapsed().as_secs_f64() * 1e3, "endpoints": ready,
                        "services": programmed_ips(syncer.plan()), "ready": last_ready})
                );
            }
            continue;
        }
        let sleep_for = syncer
            .poll_timeout()
            .map(|t| {
                t.saturating_since(wall_clock())
                    .min(Duration::from_secs(30))
            })
            .unwrap_or(Duration::from_secs(30));
        tokio::select! {
            f = rx.recv() => {
                let Some(f) = f else { return };
                match f {
                    Feed::Service(step) => services_synced |= services.feed(*step, |c| syncer.handle_service(c)),
                    Feed::Slice(step) => slices_synced |= slices.feed(*step, |c| syncer.handle_slice(c)),
                    Feed::Node(step) => {
                        // Upstream's OnTopologyChange: a full sync, queued like any update.
                        if syncer.handle_node_zone(node_zone(&node, *step).as_deref())
                            && started
                            && let Ok(mut st) = status.lock()
                        {
                            st.health.queued_update(wall_clock());
                        }
                    }
                }
                let first = !started && services_synced && slices_synced;
                if first {
                    started = true;
                    syncer.handle_initial_sync_done(wall_clock());
                }
                if (first || (started && syncer.tracker().has_changes()))
                    && let Ok(mut st) = status.lock()
                {
                    st.health.queued_update(wall_clock());
                }
            }
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}

/// The zone label of the proxy's own Node after a step of its watch (`None` once it is
/// deleted or has no label; a relist without it counts as deleted).
fn node_zone(name: &str, step: Step<Node>) -> Option<String> {
    let node = match step {
        Step::Apply(n) => Some(n),
        Step::Delete(_) => None,
        Step::Relisted(list) => list
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(name)),
    }?;
    node.metadata
        .labels?
        .remove(runtime::labels::ZONE_LABEL)
        .filter(|z| !z.is_empty())
}

/// Endpoint IPs the rules send each Service's ClusterIP traffic to (`ns/name` -> sorted IPs,
/// over all its ports): what the lab's timeline compares against the EndpointSlices.
fn programmed_ips(plan: &proxy::plan::Plan) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for svc in plan.services() {
        out.entry(svc.port.name.service.to_string())
            .or_default()
            .extend(svc.endpoints.iter().map(|e| e.endpoint.ip.to_string()));
    }
    out.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

/// Per Service (`ns/name`), how many ready endpoints (distinct addresses) the proxy knows from
/// its EndpointSlices, used by its rules or not (zone hints narrow what they use): the load
/// gate's check that a sync saw every ready endpoint (`lab::load_start`). The tracker is the
/// plan's input: no watch event is fed between the sync's plan and this line.
fn known_ready(tracker: &proxy::tracker::Tracker) -> BTreeMap<String, usize> {
    tracker
        .services()
        .map(|(svc, ports)| {
            let ready: BTreeSet<_> = ports
                .iter()
                .flat_map(|p| tracker.endpoints_of(&p.name))
                .filter(|e| e.ready)
                .map(|e| e.ip)
                .collect();
            (svc.to_string(), ready.len())
        })
        .collect()
}

#[cfg(test)]
mod relist_tests {
    use super::*;
    use proxy::fixtures::{ep, service, slice};

    const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];

    #[test]
    fn a_relist_after_a_watch_gap_deletes_what_is_gone() {
        let mut syncer = Syncer::new(SyncerConfig::default());
        let (mut services, mut slices) = (Known(BTreeMap::new()), Known(BTreeMap::new()));
        let a = service("ns", "a", "10.96.0.1", P80);
        let b = service("ns", "b", "10.96.0.2", P80);
        let a_slice = slice("ns", "a", "a-1", P80, vec![ep("10.244.1.1")]);
        assert!(
            services.feed(Step::Relisted(vec![a.clone(), b.clone()]), |c| {
                syncer.handle_service(c)
            })
        );
        assert!(slices.feed(Step::Relisted(vec![a_slice]), |c| syncer.handle_slice(c)));
        assert_eq!(syncer.tracker().service_count(), 2);
        // Service `a` and its slice were deleted while the watch was down: the relists after
        // the gap no longer list them, and the syncer must forget them.
        services.feed(Step::Relisted(vec![b.clone()]), |c| {
            syncer.handle_service(c)
        });
        slices.feed(Step::Relisted(Vec::new()), |c| syncer.handle_slice(c));
        assert_eq!(syncer.tracker().service_count(), 1);
        assert_eq!(
            services.0.keys().cloned().collect::<Vec<_>>(),
            vec![Key::new("ns", "b")]
        );
        assert!(slices.0.is_empty());
        // Ordinary deletes still work.
        services.feed(Step::Delete(b), |c| syncer.handle_service(c));
        assert_eq!(syncer.tracker().service_count(), 0);
    }

    #[test]
    fn the_sync_line_counts_each_services_known_ready_addresses_once() {
        use proxy::fixtures::ep_cond;
        const TWO: &[(&str, u16, &str)] = &[("p80", 80, "TCP"), ("p81", 81, "TCP")];
        let mut t = proxy::tracker::Tracker::new();
        t.apply_service(&service("ns", "web", "10.96.0.1", TWO));
        t.apply_service(&service("ns", "idle", "10.96.0.2", P80));
        let eps = vec![
            ep("10.244.1.1"),
            ep("10.244.2.1"),
            ep_cond("10.244.3.1", false, true, true, None),
        ];
        t.apply_slice(&slice("ns", "web", "web-1", TWO, eps));
        let want = BTreeMap::from([("ns/idle".to_string(), 0), ("ns/web".to_string(), 2)]);
        assert_eq!(known_ready(&t), want);
    }
}
