//! The controllers' live loop drains a burst of writes far beyond its in-flight bound and
//! its channel bound (issue 14: more than ~4,160 actions at once deadlocked the loop, as
//! when a dense zone fails). The API seam is a test double (`live::fake_client`): lists
//! are empty, watches stay open, every write fails with a 500 and so comes back to the
//! controller through `handle_write_failed`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use controllers::{Action, Cache, Change, Controller, Moment, Object, WriteError};
use k8s_openapi::api::core::v1::Pod;
use live::fake_client::fake_client;

const ACTIONS: usize = 6_000;

/// Asks for `ACTIONS` pod creates at once when the informers have synced; counts failures.
struct Burst {
    out: runtime::Outbox,
    failed: Arc<AtomicUsize>,
}

impl Controller for Burst {
    fn name(&self) -> &'static str {
        "burst"
    }

    fn handle_synced(&mut self, _cache: &Cache, _now: Moment) {
        for i in 0..ACTIONS {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("p-{i}"), "namespace": "default"},
            }))
            .expect("pod");
            self.out
                .push_action(Action::Create(Object::Pod(Arc::new(pod))));
        }
    }

    fn handle_change(&mut self, _cache: &Cache, _change: &Change, _now: Moment) {}

    fn outbox(&mut self) -> &mut runtime::Outbox {
        &mut self.out
    }

    fn handle_write_failed(&mut self, _action: &Action, _error: &WriteError, _now: Moment) {
        self.failed.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_six_thousand_writes_completes() {
    let writes = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let client = fake_client(BTreeMap::new(), Arc::clone(&writes));
    let burst = Burst {
        out: runtime::Outbox::new(),
        failed: Arc::clone(&failed),
    };
    let run = tokio::spawn(live::controllers::run(client, vec![Box::new(burst)]));
    // A bound against hanging forever, not a timing assertion: a deadlock stops the count.
    let deadline = Instant::now() + Duration::from_secs(120);
    while failed.load(Ordering::SeqCst) < ACTIONS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.abort();
    assert_eq!(writes.load(Ordering::SeqCst), ACTIONS, "writes the API saw");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        ACTIONS,
        "outcomes the controller saw"
    );
}
