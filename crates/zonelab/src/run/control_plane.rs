//! The run's view of the control plane: a write probe through the API endpoint (a new
//! ConfigMap 10 times a second, each recorded with its acknowledgement), the etcd leader's zone
//! (every member's Maintenance Status, from the router namespace) and the holders of the
//! leader-election Leases, all as timeline events; after the run, every probe write read back.
//! The analysis is `lab`'s (`control_plane` in report.json).
//!
//! Start at [`Observers::spawn`], then [`Observers::finish`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use lab::EventKind;
use lab::report::{CONTROLLER_MANAGER_LEASE, SCHEDULER_LEASE};
use netlab::Topology;

use super::watch::{Timeline, record};
use crate::clock::epoch_ms;
use crate::lab::control_plane::{LeaderTracker, statuses};

/// Probe writes per second.
pub const PROBE_RATE: u32 = 10;
/// How long one probe write may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The label every probe ConfigMap carries (read back by it).
pub const PROBE_LABEL: &str = "zonelab.io/probe";
/// Namespace of the probe's ConfigMaps.
const PROBE_NAMESPACE: &str = "default";
/// How often the etcd leader and the Lease holders are read.
const LEADER_POLL: Duration = Duration::from_millis(200);
const LEASE_POLL: Duration = Duration::from_millis(250);
/// How long the read-back keeps trying while the API recovers.
const READ_BACK_LIMIT: Duration = Duration::from_secs(60);

/// The probe and the pollers of one run.
pub struct Observers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Observers {
    /// Starts the probe and the Lease poller, and with an etcd control plane in the zones the
    /// etcd leader poller.
    pub fn spawn(client: &kube::Client, tl: &Timeline, etcd: Option<&Topology>) -> Observers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = vec![
            tokio::spawn(probe(client.clone(), Arc::clone(tl), Arc::clone(&stop))),
            tokio::spawn(leases(client.clone(), Arc::clone(tl), Arc::clone(&stop))),
        ];
        if let Some(topo) = etcd {
            let (topo, tl, stop) = (topo.clone(), Arc::clone(tl), Arc::clone(&stop));
            tasks.push(tokio::task::spawn_blocking(move || {
                etcd_leader(&topo, &tl, &stop)
            }));
        }
        Observers { stop, tasks }
    }

    /// Stops the probe and the pollers, then reads every probe write back.
    pub async fn finish(self, client: &kube::Client, tl: &Timeline) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        match read_back(client).await {
            Ok(found) => record(tl, EventKind::ProbeReadBack { found }),
            Err(e) => eprintln!("warning: the probe's writes could not be read back: {e:#}"),
        }
    }
}

fn probe_name(seq: u64) -> String {
    format!("zonelab-probe-{seq:06}")
}

/// One new ConfigMap every 1/[`PROBE_RATE`] s, each with at most [`PROBE_TIMEOUT`].
async fn probe(client: kube::Client, tl: Timeline, stop: Arc<AtomicBool>) {
    let api: Api<ConfigMap> = Api::namespaced(client, PROBE_NAMESPACE);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / PROBE_RATE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(probe_name(seq)),
                labels: Some(BTreeMap::from([(PROBE_LABEL.into(), "write".into())])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("seq".into(), seq.to_string())])),
            ..ConfigMap::default()
        };
        let sent_ms = epoch_ms();
        let done =
            tokio::time::timeout(PROBE_TIMEOUT, api.create(&PostParams::default(), &cm)).await;
        let ok = matches!(done, Ok(Ok(_)));
        record(&tl, EventKind::ProbeWrite { seq, sent_ms, ok });
        seq += 1;
    }
}

/// Every probe write's `seq` found in the API (retried while the API is away, bounded).
async fn read_back(client: &kube::Client) -> anyhow::Result<Vec<u64>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), PROBE_NAMESPACE);
    let params = ListParams::default().labels(&format!("{PROBE_LABEL}=write"));
    let deadline = tokio::time::Instant::now() + READ_BACK_LIMIT;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), api.list(&params)).await {
            Ok(Ok(list)) => {
                let mut found: Vec<u64> = list
                    .items
                    .iter()
                    .filter_map(|cm| cm.data.as_ref()?.get("seq")?.parse().ok())
                    .collect();
                found.sort_unstable();
                return Ok(found);
            }
            Ok(Err(e)) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("listing the probe's ConfigMaps timed out")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The holders of the two leader-election Leases, recorded at every change with the Lease's
/// `acquireTime`.
async fn leases(client: kube::Client, tl: Timeline, stop: Arc<AtomicBool>) {
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    let mut last: BTreeMap<&str, String> = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        for full in [CONTROLLER_MANAGER_LEASE, SCHEDULER_LEASE] {
            let name = full.trim_start_matches("kube-system/");
            let Ok(Ok(Some(lease))) =
                tokio::time::timeout(Duration::from_secs(1), api.get_opt(name)).await
            else {
                continue;
            };
            let spec = lease.spec.unwrap_or_default();
            let holder = spec.holder_identity.unwrap_or_default();
            if holder.is_empty() || last.get(full) == Some(&holder) {
                continue;
            }
            last.insert(full, holder.clone());
            let acquired_ms = spec.acquire_time.map(|t| t.0.as_microsecond() as f64 / 1e3);
            record(
                &tl,
                EventKind::LeaseHolder {
                    lease: full.into(),
                    holder,
                    acquired_ms,
                },
            );
        }
        tokio::time::sleep(LEASE_POLL).await;
    }
}

/// The etcd leader's zone, recorded at every change (blocking: runs on its own thread).
fn etcd_leader(topo: &Topology, tl: &Timeline, stop: &AtomicBool) {
    let mut tracker = LeaderTracker::default();
    let mut last: Option<Option<String>> = None;
    while !stop.load(Ordering::SeqCst) {
        let zone = tracker.observe(&statuses(topo));
        if last.as_ref() != Some(&zone) {
            record(tl, EventKind::EtcdLeader { zone: zone.clone() });
            last = Some(zone);
        }
        std::thread::sleep(LEADER_POLL);
    }
}
