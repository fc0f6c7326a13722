//! The kubelet's live loop drains a burst of writes far beyond its in-flight bound and its
//! channel bound (issue 14: past ~1,040 actions at once the loop deadlocked in
//! `acquire_owned()` while the only reader of the outcomes was itself). 6,000 pods on this
//! node are already terminated and marked for deletion, so the kubelet asks the API for one
//! final delete each; the API seam is `live::fake_client` (every write fails with a
//! 500, and the kubelet retries).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kubelet::KubeletConfig;
use live::fake_client::fake_client;
use live::kubelet::{FakeRuntime, NetProber};

const PODS: usize = 6_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_six_thousand_writes_completes() {
    let pods: Vec<serde_json::Value> = (0..PODS)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p-{i}"), "namespace": "default", "uid": format!("u-{i}"),
                    "deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 0},
                "spec": {"nodeName": "node", "containers": [{"name": "c", "image": "zonelab/echo"}]},
                "status": {"phase": "Succeeded"},
            })
        })
        .collect();
    let writes = Arc::new(AtomicUsize::new(0));
    let client = fake_client(
        BTreeMap::from([("pods".to_string(), pods)]),
        Arc::clone(&writes),
    );
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(live::kubelet::run(
        client,
        KubeletConfig::default(),
        Arc::new(FakeRuntime::new()),
        Arc::new(NetProber {
            netns_prefix: "zl-test".into(),
        }),
        stop_rx,
    ));
    // A bound against hanging forever, not a timing assertion: a deadlock stops the count.
    let deadline = Instant::now() + Duration::from_secs(120);
    while writes.load(Ordering::SeqCst) < PODS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.abort();
    assert!(
        writes.load(Ordering::SeqCst) >= PODS,
        "writes the API saw: {}",
        writes.load(Ordering::SeqCst)
    );
}
