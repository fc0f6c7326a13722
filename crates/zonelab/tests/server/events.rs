//! Events through a real `zonelab server`: 10,000 identical occurrences stored as one Event
//! with count 10,000 for a handful of store revisions; the controllers' upstream events
//! (ScalingReplicaSet, SuccessfulCreate, Scheduled, RegisteredNode, NodeNotReady,
//! TaintManagerEviction, FailedScheduling) with the right involvedObject; and what
//! `kubectl get events` / `kubectl describe` show of them.

use crate::common;

use runtime::Moment;
use std::time::{Duration, Instant};

use common::{Kubectl, ServerProc};
use controllers::events::{
    EventRecord, EventRecorder, EventType, RecorderConfig, WriteOutcome, source,
};
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, ListParams, PostParams};
use live::controllers::event_writer::apply;
use live::controllers::wall_clock;
use serde_json::json;

fn client(server: &ServerProc) -> kube::Client {
    let cfg = kube::Config::new(server.url().parse().expect("url"));
    kube::Client::try_from(cfg).expect("client")
}

/// The store's current revision, as a list reports it.
async fn revision(client: &kube::Client) -> u64 {
    let api: Api<Event> = Api::all(client.clone());
    let list = api.list(&ListParams::default().limit(1)).await.unwrap();
    list.metadata.resource_version.unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_identical_events_are_one_event_with_count_10000() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let client = client(&server);
    let before = revision(&client).await;
    let involved = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some("default".into()),
        name: Some("flappy".into()),
        uid: Some("uid-flappy".into()),
        field_path: Some("spec.containers{c}".into()),
        ..ObjectReference::default()
    };
    let occurrence = EventRecord::new(
        source::KUBELET,
        involved,
        EventType::Warning,
        "Unhealthy",
        "Readiness probe failed: connection refused".into(),
        Moment::EPOCH,
    )
    .on_host("n1");
    // Virtual time: 10,000 occurrences 1 ms apart, every write made through the API as due.
    let mut rec = EventRecorder::new(RecorderConfig::default());
    let t0 = wall_clock();
    let mut writes = 0;
    for i in 0..10_000 {
        let now = t0 + Duration::from_millis(i);
        rec.record(occurrence.clone(), now);
        while let Some(w) = rec.poll_write(now) {
            let outcome = apply(&client, &w).await;
            assert_eq!(outcome, WriteOutcome::Ok, "{w:?}");
            rec.handle_write_result(w.id(), outcome, now);
            writes += 1;
        }
    }
    let end = rec
        .poll_timeout()
        .expect("the last occurrences wait for a flush");
    while let Some(w) = rec.poll_write(end) {
        let outcome = apply(&client, &w).await;
        rec.handle_write_result(w.id(), outcome, end);
        writes += 1;
    }
    assert_eq!(rec.poll_timeout(), None);

    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().fields("involvedObject.name=flappy,reason=Unhealthy");
    let stored = api.list(&lp).await.unwrap().items;
    assert_eq!(stored.len(), 1, "one Event object");
    let ev = &stored[0];
    assert_eq!(ev.count, Some(10_000));
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert!(ev.metadata.name.as_deref().unwrap().starts_with("flappy."));
    assert!(ev.first_timestamp <= ev.last_timestamp);
    let grown = revision(&client).await - before;
    eprintln!("10,000 occurrences: {writes} writes, store revision +{grown}");
    assert!(
        grown < 100,
        "the store grew by {grown} revisions ({writes} writes)"
    );
    assert_eq!(grown, writes, "one revision per write, nothing else");
}

fn node(name: &str) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "a"}},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": now, "lastTransitionTime": now}]
        }
    })
}

fn deployment(replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": "n1"},
                         "containers": [{"name": "c", "image": "zonelab/echo"}]}
            }
        }
    })
}

/// Keep node `name`'s Lease renewed (a stand-in kubelet) until the task is aborted.
fn renew_lease(client: kube::Client, name: &'static str) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            let mut lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 4}
            }))
            .unwrap();
            let now = k8s_openapi::jiff::Timestamp::now();
            lease.spec.as_mut().unwrap().renew_time = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now),
            );
            let r = api.replace(name, &PostParams::default(), &lease).await;
            if r.is_err() {
                let _ = api.create(&PostParams::default(), &lease).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// (kind/name, reason, message) of every Event in `default`.
async fn events(client: &kube::Client) -> Vec<(String, String, String, Event)> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .map(|e| {
            let i = &e.involved_object;
            let obj = format!(
                "{}/{}",
                i.kind.clone().unwrap_or_default(),
                i.name.clone().unwrap_or_default()
            );
            let reason = e.reason.clone().unwrap_or_default();
            let msg = e.message.clone().unwrap_or_default();
            (obj, reason, msg, e)
        })
        .collect()
}

/// Wait (bounded) until `want` holds for the events; returns them.
async fn wait_for(
    client: &kube::Client,
    what: &str,
    want: impl Fn(&[(String, String, String, Event)]) -> bool,
) -> Vec<(String, String, String, Event)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let evs = events(client).await;
        if want(&evs) {
            return evs;
        }
        if Instant::now() > deadline {
            let seen: Vec<_> = evs.iter().map(|(o, r, m, _)| (o, r, m)).collect();
            panic!("no {what} within 120 s; events: {seen:#?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn has(evs: &[(String, String, String, Event)], obj_prefix: &str, reason: &str) -> bool {
    evs.iter()
        .any(|(o, r, _, _)| o.starts_with(obj_prefix) && r == reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_record_upstream_events_that_kubectl_shows() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(
        dir.path(),
        &[
            "--profile",
            "fast",
            "--default-unreachable-toleration-seconds",
            "1",
            "--default-not-ready-toleration-seconds",
            "1",
            // Wide enough that n2's stand-in kubelet stays Ready on a loaded machine (both
            // nodes down would stop evictions, as upstream's full-disruption rule does).
            "--node-monitor-grace-period",
            "8s",
        ],
    );
    let client = client(&server);
    let kubectl = Kubectl::new(&server);
    // n2 stays healthy (so the zone is only partially disrupted and evictions proceed); n1
    // never renews a lease and goes NotReady after the (fast) grace period.
    let keeper = renew_lease(client.clone(), "n2");
    for n in ["n1", "n2"] {
        kubectl.ok(&["create", "-f", "-"], Some(&node(n).to_string()));
    }
    kubectl.ok(&["create", "-f", "-"], Some(&deployment(2).to_string()));

    let evs = wait_for(&client, "scale-up, creates and bindings", |e| {
        has(e, "Deployment/web", "ScalingReplicaSet")
            && e.iter()
                .filter(|(_, r, _, _)| r == "SuccessfulCreate")
                .count()
                >= 2
            && e.iter().filter(|(_, r, _, _)| r == "Scheduled").count() >= 2
            && has(e, "Node/n1", "RegisteredNode")
    })
    .await;
    let (_, _, msg, scaled) = evs
        .iter()
        .find(|(_, r, _, _)| r == "ScalingReplicaSet")
        .unwrap();
    let rs = msg
        .strip_prefix("Scaled up replica set ")
        .and_then(|m| m.strip_suffix(" from 0 to 2"))
        .unwrap_or_else(|| panic!("message {msg:?}"));
    assert_eq!(
        scaled.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("deployment-controller")
    );
    assert_eq!(
        scaled.involved_object.api_version.as_deref(),
        Some("apps/v1")
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
    let first_pods: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    for p in &first_pods {
        let (obj, _, _, e) = evs
            .iter()
            .find(|(_, r, m, _)| r == "SuccessfulCreate" && m == &format!("Created pod: {p}"))
            .unwrap_or_else(|| panic!("SuccessfulCreate for {p}"));
        assert_eq!(obj, &format!("ReplicaSet/{rs}"));
        assert_eq!(
            e.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("replicaset-controller")
        );
        let (obj, _, _, e) = evs
            .iter()
            .find(|(_, r, m, _)| {
                r == "Scheduled" && m == &format!("Successfully assigned default/{p} to n1")
            })
            .unwrap_or_else(|| panic!("Scheduled for {p}"));
        assert_eq!(obj, &format!("Pod/{p}"));
        assert!(e.involved_object.uid.is_some());
    }

    // n1 goes silent: NotReady, then its pods are evicted by the NoExecute taint, and their
    // replacements cannot be placed (n1 is tainted, n2 does not match the selector).
    let evs = wait_for(&client, "node failure events", |e| {
        has(e, "Node/n1", "NodeNotReady")
            && first_pods.iter().all(|p| {
                e.iter()
                    .any(|(o, r, _, _)| o == &format!("Pod/{p}") && r == "TaintManagerEviction")
            })
            && has(e, "Pod/", "FailedScheduling")
    })
    .await;
    let (_, _, msg, e) = evs
        .iter()
        .find(|(o, r, _, _)| o == "Node/n1" && r == "NodeNotReady")
        .unwrap();
    assert_eq!(msg, "Node n1 status is now: NodeNotReady");
    assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
    let p = &first_pods[0];
    let (_, _, msg, _) = evs
        .iter()
        .find(|(o, r, _, _)| o == &format!("Pod/{p}") && r == "TaintManagerEviction")
        .unwrap();
    assert_eq!(msg, &format!("Marking for deletion Pod default/{p}"));
    let (_, _, msg, e) = evs
        .iter()
        .find(|(_, r, _, _)| r == "FailedScheduling")
        .unwrap();
    assert!(msg.starts_with("0/2 nodes are available: "), "{msg}");
    assert_eq!(e.type_.as_deref(), Some("Warning"));

    // What kubectl shows.
    let table = kubectl.ok(&["get", "events"], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(table.contains("deployment/web"), "{table}");
    let listed = kubectl.ok(&["events", "--for", "deployment/web"], None);
    assert!(listed.contains("ScalingReplicaSet"), "{listed}");
    let described = kubectl.ok(&["describe", "deployment", "web"], None);
    assert!(
        described.contains("ScalingReplicaSet") && described.contains("deployment-controller"),
        "{described}"
    );
    let described = kubectl.ok(&["describe", "node", "n1"], None);
    assert!(
        described.contains("RegisteredNode") && described.contains("NodeNotReady"),
        "{described}"
    );
    let described = kubectl.ok(&["describe", "pod", p], None);
    assert!(
        described.contains("Scheduled") && described.contains("TaintManagerEviction"),
        "{described}"
    );
    keeper.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_expire_after_the_event_ttl_unless_they_recur() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--controllers", "", "--event-ttl", "5s"]);
    let client = client(&server);
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let stamp = || {
        k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let event = |name: &str| -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started", "message": "m", "type": "Normal",
            "firstTimestamp": stamp(), "lastTimestamp": stamp(), "count": 1
        }))
        .unwrap()
    };
    let pp = PostParams::default();
    api.create(&pp, &event("once")).await.unwrap();
    api.create(&pp, &event("recurring")).await.unwrap();
    // "recurring" keeps happening (as the recorder's count updates do); "once" does not. The
    // sweep runs every min(ttl / 10, 60 s): a bounded wait for "once" to go.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut count = 1;
    while api.get_opt("once").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the expired Event is still there"
        );
        count += 1;
        let patch = json!({"count": count, "lastTimestamp": stamp()});
        api.patch(
            "recurring",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let kept = api.get_opt("recurring").await.unwrap();
    assert!(kept.is_some(), "an Event that recurs within the TTL stays");
}
