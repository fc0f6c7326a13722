//! Node registration, node status reporting and lease renewal, in virtual time.

use controllers::fake::T0;
use runtime::{Action, Key, Object, WriteError};

use super::testkit::*;
use super::*;

fn lease_renew_times(rig: &Rig) -> Vec<i64> {
    rig.writes_where(is_lease_write)
        .into_iter()
        .map(|(t, _)| t.as_millis() - T0.as_millis())
        .collect()
}

#[test]
fn node_labels_are_added_at_registration_but_never_override_the_kubelets_own() {
    let mut c = cfg();
    c.node_labels = vec![
        ("eks.amazonaws.com/nodegroup".into(), "ng-a".into()),
        ("topology.kubernetes.io/zone".into(), "elsewhere".into()),
    ];
    let mut rig = Rig::new(c);
    rig.start();
    let node = rig.api.cache.nodes.get("n1").expect("registered");
    let labels = node.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["eks.amazonaws.com/nodegroup"], "ng-a");
    assert_eq!(labels["topology.kubernetes.io/zone"], "a");
}

#[test]
fn node_registers_with_labels_capacity_and_conditions() {
    let mut rig = Rig::new(cfg());
    rig.start();
    let node = rig.api.cache.nodes.get("n1").expect("registered");
    let labels = node.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["topology.kubernetes.io/zone"], "a");
    assert_eq!(labels["kubernetes.io/hostname"], "n1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    let spec = node.spec.as_ref().expect("spec");
    assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.0.0/24"));
    let st = node.status.as_ref().expect("status");
    assert_eq!(st.capacity.as_ref().expect("cap")["pods"].0, "110");
    assert_eq!(st.allocatable, st.capacity);
    let addrs: Vec<(&str, &str)> = st
        .addresses
        .iter()
        .flatten()
        .map(|a| (a.type_.as_str(), a.address.as_str()))
        .collect();
    assert_eq!(addrs, [("InternalIP", "172.20.0.11"), ("Hostname", "n1")]);
    let conds = st.conditions.as_ref().expect("conditions");
    let ready = conds.iter().find(|c| c.type_ == "Ready").expect("ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("KubeletReady"))
    );
    for p in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = conds.iter().find(|c| c.type_ == p).expect(p);
        assert_eq!(c.status, "False", "{p}");
    }
}

#[test]
fn lease_is_created_then_renewed_every_ten_seconds() {
    let mut rig = Rig::new(cfg());
    rig.start();
    rig.advance(Duration::from_millis(35_000));
    assert_eq!(lease_renew_times(&rig), [0, 10_000, 20_000, 30_000]);
    let lease = rig
        .api
        .cache
        .leases
        .get(&Key::new(LEASE_NAMESPACE, "n1"))
        .expect("lease");
    let spec = lease.spec.as_ref().expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let renew = Moment::from_millis(spec.renew_time.as_ref().expect("renew").0.as_millisecond());
    assert_eq!(renew, T0 + Duration::from_millis(30_000));
    let owner = &lease.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", "n1"));
    let creates = rig.writes_where(|a| matches!(a, Action::Create(Object::Lease(_))));
    assert_eq!(creates.len(), 1, "created once, then updated");
}

#[test]
fn failed_lease_renewals_back_off_from_200ms_to_7s() {
    let mut rig = Rig::new(cfg());
    rig.start();
    // Renewals between 10 s and 30 s fail (the API server is unreachable).
    rig.writes = Box::new(|a, now| {
        let outage =
            (T0 + Duration::from_millis(10_000)..T0 + Duration::from_millis(30_000)).contains(&now);
        (is_lease_write(a) && outage).then(|| WriteError::Other("unreachable".into()))
    });
    rig.advance(Duration::from_millis(45_000));
    let attempts: Vec<i64> = rig
        .log
        .iter()
        .filter_map(|(t, e)| match e {
            Entry::Action(a, _) if is_lease_write(a) => Some(t.as_millis() - T0.as_millis()),
            _ => None,
        })
        .collect();
    // 10 s fails, then retries after 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 7, 7 s; 30.6 s succeeds.
    assert_eq!(
        attempts,
        [
            0, 10_000, 10_200, 10_600, 11_400, 13_000, 16_200, 22_600, 29_600, 36_600
        ]
    );
    assert_eq!(lease_renew_times(&rig), [0, 36_600]);
    rig.advance(Duration::from_millis(10_000));
    assert_eq!(lease_renew_times(&rig), [0, 36_600, 46_600], "back to 10 s");
}

fn lease_writes(rig: &Rig) -> Vec<(i64, Result<(), WriteError>)> {
    rig.log
        .iter()
        .filter_map(|(t, e)| match e {
            Entry::Action(a, r) if is_lease_write(a) => {
                Some((t.as_millis() - T0.as_millis(), r.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn lease_renewals_start_from_the_servers_answer_not_the_lagging_watch() {
    let mut rig = Rig::new(cfg());
    rig.start();
    rig.advance(Duration::from_millis(5_000));
    rig.lease_watch = false;
    rig.advance(Duration::from_millis(30_000));
    let ok = |t| (t, Ok(()));
    assert_eq!(
        lease_writes(&rig),
        [ok(0), ok(10_000), ok(20_000), ok(30_000)]
    );
    assert!(rig.lease_reads.is_empty(), "no conflict, no read");
}

#[test]
fn a_conflicting_lease_renewal_rereads_the_lease_and_renews_from_it() {
    let mut rig = Rig::new(cfg());
    // A driver that does not hand write answers back: renewals use the watch's copy.
    rig.lease_answers = false;
    rig.start();
    rig.advance(Duration::from_millis(5_000));
    // From now on the kubelet's Lease watch lags: its copy keeps the create's resourceVersion.
    rig.lease_watch = false;
    rig.advance(Duration::from_millis(30_000));
    // The first update works from the stale copy (nothing changed since); the second conflicts,
    // the kubelet reads the Lease and renews at once from the fresh copy; every later renewal
    // repeats that (the watch stays behind), none waits for a backoff or fails twice.
    assert_eq!(
        lease_writes(&rig),
        [
            (0, Ok(())),
            (10_000, Ok(())),
            (20_000, Err(WriteError::Conflict)),
            (20_000, Ok(())),
            (30_000, Err(WriteError::Conflict)),
            (30_000, Ok(())),
        ]
    );
    let reads: Vec<i64> = rig
        .lease_reads
        .iter()
        .map(|t| t.as_millis() - T0.as_millis())
        .collect();
    assert_eq!(reads, [20_000, 30_000]);
    assert_eq!(
        lease_renew_times(&rig),
        [0, 10_000, 20_000, 30_000],
        "renewed on time"
    );
}

#[test]
fn node_status_is_posted_on_change_or_every_report_period() {
    let mut rig = Rig::new(cfg());
    rig.start();
    let statuses = |rig: &Rig| {
        rig.writes_where(|a| matches!(a, Action::UpdateStatus(Object::Node(_))))
            .into_iter()
            .map(|(t, _)| t.as_millis() - T0.as_millis())
            .collect::<Vec<_>>()
    };
    rig.advance(Duration::from_millis(299_000));
    assert_eq!(
        statuses(&rig),
        Vec::<i64>::new(),
        "registration carried the status"
    );
    rig.advance(Duration::from_millis(2_000));
    assert_eq!(statuses(&rig), [300_000], "report period");
    // Someone (the node lifecycle controller) marks the node Unknown: fixed at the next tick.
    let mut node = (**rig.api.cache.nodes.get("n1").expect("node")).clone();
    for c in node
        .status
        .as_mut()
        .and_then(|s| s.conditions.as_mut())
        .expect("conds")
    {
        if c.type_ == "Ready" {
            c.status = "Unknown".into();
        }
    }
    rig.put(Object::Node(std::sync::Arc::new(node)));
    rig.advance(Duration::from_millis(10_000));
    assert_eq!(statuses(&rig), [300_000, 310_000]);
    let node = rig.api.cache.nodes.get("n1").expect("node");
    assert_eq!(runtime::node_ready_status(node), Some("True"));
}

#[test]
fn shutdown_reports_not_ready_at_once() {
    let mut rig = Rig::new(cfg());
    rig.start();
    rig.advance(Duration::from_millis(3_000));
    rig.kubelet.begin_shutdown(rig.now);
    rig.settle();
    let node = rig.api.cache.nodes.get("n1").expect("node");
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .expect("ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
    assert_eq!(ready.message.as_deref(), Some("node is shutting down"));
    assert!(rig.kubelet.shutdown_complete(), "no pods to stop");
}

#[test]
fn shutdown_during_a_status_write_still_posts_not_ready_at_once() {
    let mut rig = Rig::new(cfg());
    rig.start();
    rig.advance(Duration::from_millis(295_000));
    // A status write is in flight (report period) when the shutdown begins.
    rig.now = T0 + Duration::from_millis(300_000);
    rig.kubelet.handle_timeout(rig.now);
    let mut inflight = None;
    while let Some(a) = rig.kubelet.poll_action() {
        if matches!(a, Action::UpdateStatus(Object::Node(_))) {
            inflight = Some(a);
        } else {
            let r = rig.api.execute(&a, rig.now).map(drop);
            rig.kubelet.handle_write_result(&a, r, rig.now);
        }
    }
    let inflight = inflight.expect("status write");
    rig.kubelet.begin_shutdown(rig.now);
    rig.kubelet
        .handle_write_result(&inflight, Err(WriteError::Other("slow".into())), rig.now);
    rig.advance(Duration::from_millis(100));
    let node = rig.api.cache.nodes.get("n1").expect("node");
    assert_eq!(runtime::node_ready_status(node), Some("False"));
}
