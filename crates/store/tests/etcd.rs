//! `EtcdStore`-only behaviour against real etcd processes: a write burst with 16 writers while
//! etcd is killed with SIGKILL and restarted loses no acknowledged write, and writers get
//! errors (never hangs) while it is down; with three members, killing the one the store talks
//! to fails over and writes go on.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::etcd::{options, start_cluster};
use common::{HANG_GUARD, b};
use store::testing::EtcdCluster;
use store::{
    EtcdStore, ListOptions, Revision, Store, StoreError, StoreOptions, WatchError, WatchMessage,
};

const WRITERS: usize = 16;

/// What the writers saw.
#[derive(Default)]
struct Ledger {
    /// Acknowledged creates: key -> revision.
    acked: Mutex<BTreeMap<String, Revision>>,
    /// Failed writes (the write may or may not have landed).
    errors: AtomicU64,
    /// Per writer: errors seen since the last reset.
    recent_errors: Vec<AtomicU64>,
    /// Acknowledged writes since the last reset.
    recent_acks: AtomicU64,
    stop: AtomicBool,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            recent_errors: (0..WRITERS).map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        }
    }

    fn reset_recent(&self) {
        for e in &self.recent_errors {
            e.store(0, Ordering::SeqCst);
        }
        self.recent_acks.store(0, Ordering::SeqCst);
    }
}

/// Creates `w<id>/<seq>` keys until stopped. An error moves on to the next key (the failed one
/// is in doubt); a call that neither answers nor errors within the hang guard fails the test.
async fn writer(s: Arc<EtcdStore>, ledger: Arc<Ledger>, id: usize) {
    let mut seq = 0u64;
    while !ledger.stop.load(Ordering::SeqCst) {
        let key = format!("w{id:02}/{seq:06}");
        seq += 1;
        let out = tokio::time::timeout(HANG_GUARD, s.create(&key, b("v")))
            .await
            .unwrap_or_else(|_| panic!("writer {id}: create {key} hung"));
        match out {
            Ok(kv) => {
                ledger.acked.lock().unwrap().insert(key, kv.mod_revision);
                ledger.recent_acks.fetch_add(1, Ordering::SeqCst);
            }
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_)) => {
                ledger.errors.fetch_add(1, Ordering::SeqCst);
                ledger.recent_errors[id].fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("writer {id}: create {key}: unexpected {other:?}"),
        }
    }
}

/// Waits (bounded by the hang guard) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(HANG_GUARD * 3, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("gave up waiting until {what}"));
}

fn spawn_writers(s: &Arc<EtcdStore>, ledger: &Arc<Ledger>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|id| tokio::spawn(writer(Arc::clone(s), Arc::clone(ledger), id)))
        .collect()
}

/// Every acknowledged write is in etcd with the acknowledged revision.
async fn assert_all_acked_present(s: &EtcdStore, ledger: &Ledger) {
    let stored: BTreeMap<String, Revision> = s
        .list("w", ListOptions::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.mod_revision))
        .collect();
    let acked = ledger.acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    for (key, rev) in &acked {
        assert_eq!(stored.get(key), Some(rev), "acknowledged write {key} lost");
    }
}

async fn store_on(cluster: &EtcdCluster) -> Arc<EtcdStore> {
    let mut o = options(cluster, &StoreOptions::default());
    o.request_timeout = Duration::from_secs(5);
    Arc::new(EtcdStore::connect(o).await.expect("connect"))
}

#[cfg_attr(
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_write_burst_loses_no_acknowledged_write() {
    const ROUNDS: usize = 4;
    let mut cluster = start_cluster(1).await;
    let s = store_on(&cluster).await;
    let ledger = Arc::new(Ledger::new());
    let mut watcher = s.watch("w", s.current_revision()).await.expect("watch");
    let tasks = spawn_writers(&s, &ledger);
    for round in 0..ROUNDS {
        ledger.reset_recent();
        until("writes are acknowledged", || {
            ledger.recent_acks.load(Ordering::SeqCst) >= 50
        })
        .await;
        cluster.members[0].kill();
        if round == 0 {
            // The open watch ends with an error instead of hanging.
            let end = tokio::time::timeout(HANG_GUARD, async {
                loop {
                    match watcher.next().await {
                        Some(Ok(WatchMessage::Event(_) | WatchMessage::Progress(_))) => {}
                        other => return other,
                    }
                }
            })
            .await
            .expect("the watch ends when etcd dies");
            assert!(
                matches!(end, Some(Err(WatchError::Unavailable(_)))),
                "{end:?}"
            );
        }
        ledger.reset_recent();
        until("every writer got an error from the dead etcd", || {
            ledger
                .recent_errors
                .iter()
                .all(|e| e.load(Ordering::SeqCst) > 0)
        })
        .await;
        cluster.members[0].spawn().expect("restart etcd");
        let c = &cluster;
        tokio::task::block_in_place(|| c.wait_healthy(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    ledger.reset_recent();
    until("writes are acknowledged after the last restart", || {
        ledger.recent_acks.load(Ordering::SeqCst) >= 50
    })
    .await;
    ledger.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("writer");
    }
    assert!(ledger.errors.load(Ordering::SeqCst) >= (WRITERS * ROUNDS) as u64);
    assert_all_acked_present(&s, &ledger).await;
}

#[cfg_attr(
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_member_in_use_fails_over_to_the_others() {
    let mut cluster = start_cluster(3).await;
    let s = store_on(&cluster).await;
    let ledger = Arc::new(Ledger::new());
    let leaders = |statuses: Vec<Result<store::MemberStatus, StoreError>>| {
        statuses
            .into_iter()
            .filter_map(Result::ok)
            .map(|m| m.leader)
            .collect::<Vec<u64>>()
    };
    let before = leaders(s.member_status().await);
    assert_eq!(before.len(), 3, "every member answers Status");
    assert!(
        before[0] != 0 && before.iter().all(|l| *l == before[0]),
        "{before:?}"
    );
    let leader = s.leader_endpoint().await.expect("a leader");
    let ports: Vec<String> = cluster
        .members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client_port))
        .collect();
    assert!(ports.contains(&leader), "{leader} is one of {ports:?}");
    let tasks = spawn_writers(&s, &ledger);
    until("writes are acknowledged", || {
        ledger.recent_acks.load(Ordering::SeqCst) >= 50
    })
    .await;
    // The store prefers the first endpoint while it answers.
    cluster.members[0].kill();
    let statuses = s.member_status().await;
    assert!(
        matches!(statuses[0], Err(StoreError::Unavailable(_))),
        "{statuses:?}"
    );
    ledger.reset_recent();
    until("writes go on through the other members", || {
        ledger.recent_acks.load(Ordering::SeqCst) >= 200
    })
    .await;
    // The surviving members agree on a leader, which is not the dead member.
    let dead = ports[0].clone();
    tokio::time::timeout(HANG_GUARD, async {
        while s.leader_endpoint().await.is_none_or(|l| l == dead) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a leader among the surviving members");
    ledger.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("writer");
    }
    assert_all_acked_present(&s, &ledger).await;
    // The member rejoins and catches up.
    cluster.members[0].spawn().expect("restart");
    let c = &cluster;
    tokio::task::block_in_place(|| c.wait_healthy(Duration::from_secs(30))).expect("rejoins");
}

#[cfg_attr(
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_compact_through_one_shared_clock() {
    let cluster = start_cluster(1).await;
    let connect = || async {
        let mut o = options(&cluster, &StoreOptions::default());
        o.compaction_interval = Duration::from_millis(300);
        EtcdStore::connect(o).await.expect("connect")
    };
    let (one, two) = (connect().await, connect().await);
    let first = one.create("c/first", b("v")).await.expect("create");
    // Writes go on so that every round has a newer revision to compact to.
    let mut n = 0;
    tokio::time::timeout(HANG_GUARD, async {
        while one.compacted_revision() <= first.mod_revision
            || two.compacted_revision() <= first.mod_revision
        {
            one.create(&format!("c/{n:05}"), b("v"))
                .await
                .expect("create");
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both servers learn of a compaction past the first write");
    // Whichever server compacted, both refuse the compacted history with 410's error.
    for s in [&one, &two] {
        let at = ListOptions {
            revision: Some(first.mod_revision),
            ..Default::default()
        };
        assert!(
            matches!(
                s.list("c/", at).await,
                Err(StoreError::Compacted { requested, .. }) if requested == first.mod_revision
            ),
            "a list at a compacted revision"
        );
        assert!(matches!(
            s.watch("c/", first.mod_revision).await,
            Err(StoreError::Compacted { .. })
        ));
    }
}

#[cfg_attr(
    not(zonelab_etcd),
    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_loses_quorum_ends_its_watches_and_fails_writes() {
    let mut cluster = start_cluster(3).await;
    let s = store_on(&cluster).await;
    let mut w = s.watch("q/", s.current_revision()).await.expect("watch");
    s.create("q/1", b("v")).await.expect("create");
    assert_eq!(common::next_event(&mut w).await.kv.key, "q/1");
    // The store talks to the first member; the other two go away, so it has no leader.
    cluster.members[1].kill();
    cluster.members[2].kill();
    let end = tokio::time::timeout(HANG_GUARD, async {
        loop {
            match w.next().await {
                Some(Ok(WatchMessage::Progress(_))) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the watch ends instead of staying silent");
    assert!(
        matches!(&end, Some(Err(WatchError::Unavailable(why))) if why.contains("no leader")),
        "{end:?}"
    );
    let write = tokio::time::timeout(HANG_GUARD, s.create("q/2", b("v")))
        .await
        .expect("a write without quorum errors instead of hanging");
    assert!(
        matches!(
            write,
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_))
        ),
        "{write:?}"
    );
}
