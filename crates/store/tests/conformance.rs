//! Behaviour every backend must share, written once against the `Store` trait and run against
//! `MemStore`, `DurableStore` and `EtcdStore` on a real etcd (see the `suite!` invocation at the
//! bottom). Revisions are relative to the store's revision when a case starts (`base`): a fresh
//! etcd starts at revision 1, the embedded stores at 0.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{Backend, b, next_event, next_msg, snapshot};
use store::{EventKind, ListOptions, Op, StoreError, StoreOptions, WatchError, WatchMessage};

mod cases {
    use super::*;

    pub async fn crud_and_cas<S: Backend>(s: Arc<S>) {
        let base = s.current_revision();
        let r = |n: u64| base + n;
        let a = s.create("a", b("1")).await.expect("create");
        assert_eq!((a.create_revision, a.mod_revision), (r(1), r(1)));
        assert_eq!(
            s.create("a", b("x")).await,
            Err(StoreError::AlreadyExists { key: "a".into() })
        );
        assert_eq!(s.get("a").await.expect("get"), Some(a.clone()));
        let a2 = s.update("a", b("2"), Some(r(1))).await.expect("cas update");
        assert_eq!(
            (a2.create_revision, a2.mod_revision, a2.value),
            (r(1), r(2), b("2"))
        );
        let stale = s.update("a", b("3"), Some(r(1))).await;
        assert_eq!(
            stale,
            Err(StoreError::Conflict {
                key: "a".into(),
                expected: r(1),
                actual: r(2)
            })
        );
        let a3 = s.update("a", b("3"), None).await.expect("blind update");
        assert_eq!(a3.mod_revision, r(3));
        assert_eq!(
            s.update("nope", b("x"), None).await,
            Err(StoreError::NotFound { key: "nope".into() })
        );
        let stale_del = s.delete("a", Some(r(2))).await;
        assert_eq!(
            stale_del,
            Err(StoreError::Conflict {
                key: "a".into(),
                expected: r(2),
                actual: r(3)
            })
        );
        let gone = s.delete("a", Some(r(3))).await.expect("delete");
        assert_eq!(
            (gone.create_revision, gone.mod_revision, gone.value),
            (r(1), r(4), b("3"))
        );
        assert_eq!(s.get("a").await.expect("get"), None);
        assert_eq!(
            s.delete("a", None).await,
            Err(StoreError::NotFound { key: "a".into() })
        );
        assert_eq!(
            s.current_revision(),
            r(4),
            "failed writes do not advance the revision"
        );
        let again = s.create("a", b("new")).await.expect("recreate");
        assert_eq!((again.create_revision, again.mod_revision), (r(5), r(5)));
    }

    pub async fn txn_is_atomic<S: Backend>(s: Arc<S>) {
        let base = s.current_revision();
        let r = |n: u64| base + n;
        s.create("a", b("1")).await.expect("create");
        let ops = vec![
            Op::Create {
                key: "b".into(),
                value: b("1"),
            },
            Op::Create {
                key: "a".into(),
                value: b("2"),
            },
            Op::Update {
                key: "zzz".into(),
                value: b("2"),
                expected: None,
            },
        ];
        assert_eq!(
            s.txn(ops).await,
            Err(StoreError::AlreadyExists { key: "a".into() })
        );
        assert_eq!(s.get("b").await.expect("get"), None);
        assert_eq!(s.current_revision(), r(1));
        let dup = vec![
            Op::Create {
                key: "c".into(),
                value: b("1"),
            },
            Op::Delete {
                key: "c".into(),
                expected: None,
            },
        ];
        assert!(matches!(s.txn(dup).await, Err(StoreError::Invalid(_))));
        assert!(matches!(s.txn(vec![]).await, Err(StoreError::Invalid(_))));
        assert_eq!(s.current_revision(), r(1));

        let mut w = s.watch("", r(1)).await.expect("watch");
        let ops = vec![
            Op::Create {
                key: "b".into(),
                value: b("1"),
            },
            Op::Update {
                key: "a".into(),
                value: b("2"),
                expected: Some(r(1)),
            },
        ];
        let out = s.txn(ops).await.expect("txn");
        assert!(out.iter().all(|kv| kv.mod_revision == r(2)));
        assert_eq!(s.current_revision(), r(2));
        let (e1, e2) = (next_event(&mut w).await, next_event(&mut w).await);
        assert_eq!((e1.kind, e1.kv.key.as_str()), (EventKind::Added, "b"));
        assert_eq!(
            (e2.kind, e2.kv.key.as_str(), e2.kv.mod_revision),
            (EventKind::Modified, "a", r(2))
        );
        assert_eq!(e2.prev.map(|p| p.mod_revision), Some(r(1)));
    }

    pub async fn revisions_are_monotonic_under_concurrency<S: Backend>(s: Arc<S>) {
        let base = s.current_revision();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..25 {
                    let kv = s
                        .create(&format!("t{t}/{i}"), b("v"))
                        .await
                        .expect("create");
                    revs.push(kv.mod_revision);
                }
                revs
            }));
        }
        let mut all = BTreeSet::new();
        for task in tasks {
            let revs = task.await.expect("task");
            assert!(
                revs.windows(2).all(|w| w[0] < w[1]),
                "one writer's revisions increase"
            );
            all.extend(revs);
        }
        assert_eq!(all, (base + 1..=base + 200).collect::<BTreeSet<u64>>());
        assert_eq!(s.current_revision(), base + 200);
    }

    pub async fn list_at_older_revision<S: Backend>(s: Arc<S>) {
        for i in 0..10 {
            s.create(&format!("k/{i:02}"), b("v0"))
                .await
                .expect("create");
        }
        s.create("other", b("x")).await.expect("create");
        let rev = s.current_revision();
        let before = snapshot(s.as_ref(), "k/").await;
        assert_eq!(before.len(), 10);
        s.update("k/03", b("v1"), None).await.expect("update");
        s.delete("k/05", None).await.expect("delete");
        s.create("k/10", b("v0")).await.expect("create");
        s.create("k/", b("edge")).await.expect("create");
        let opts = ListOptions {
            revision: Some(rev),
            ..Default::default()
        };
        let old = s.list("k/", opts).await.expect("list at rev");
        assert_eq!((old.items, old.revision, old.remaining), (before, rev, 0));
        let now = s.list("k/", ListOptions::default()).await.expect("list");
        assert_eq!(now.revision, s.current_revision());
        let keys: Vec<&str> = now.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys.len(), 11);
        assert_eq!(keys[0], "k/");
        assert!(!keys.contains(&"k/05") && keys.contains(&"k/10"));
        assert!(
            now.items
                .iter()
                .any(|kv| kv.key == "k/03" && kv.value == b("v1"))
        );
    }

    pub async fn paging_is_consistent_while_writing<S: Backend>(s: Arc<S>) {
        for i in 0..50 {
            s.create(&format!("p/{i:03}"), b("v"))
                .await
                .expect("create");
        }
        let rev = s.current_revision();
        let expected = snapshot(s.as_ref(), "p/").await;
        let mut got = Vec::new();
        let mut start_after = None;
        let mut round = 0;
        loop {
            let opts = ListOptions {
                revision: Some(rev),
                limit: Some(7),
                start_after,
            };
            let page = s.list("p/", opts).await.expect("page");
            assert_eq!(page.revision, rev);
            got.extend(page.items.iter().cloned());
            assert_eq!(page.remaining as usize, expected.len() - got.len());
            // Churn between pages: delete, update, and create keys on both sides of the cursor.
            s.delete(&format!("p/{:03}", round * 3), None).await.ok();
            s.update(&format!("p/{:03}", 49 - round), b("changed"), None)
                .await
                .ok();
            s.create(&format!("p/{:03}x", round * 5), b("new"))
                .await
                .expect("create");
            round += 1;
            if page.remaining == 0 {
                break;
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
        assert_eq!(
            got, expected,
            "every key at the revision exactly once, with its old value"
        );
    }

    pub async fn compacted_and_future_revisions<S: Backend>(s: Arc<S>) {
        let base = s.current_revision();
        let r = |n: u64| base + n;
        for i in 0..20 {
            s.create(&format!("c/{i:02}"), b("v"))
                .await
                .expect("create");
        }
        s.compact_history(r(15)).await;
        let compacted = s.compacted_revision();
        assert!(
            compacted >= r(15),
            "history capacity 5 keeps at most 5 events; etcd was compacted to 15"
        );
        let at = |r| ListOptions {
            revision: Some(r),
            ..Default::default()
        };
        assert_eq!(
            s.list("c/", at(r(1))).await,
            Err(StoreError::Compacted {
                requested: r(1),
                compacted
            })
        );
        let oldest = s.list("c/", at(compacted)).await.expect("oldest kept");
        assert_eq!(oldest.items.len() as u64, compacted - r(0));
        assert_eq!(
            s.list("c/", at(r(21))).await,
            Err(StoreError::FutureRevision {
                requested: r(21),
                current: r(20)
            })
        );
        let requested = r(1);
        assert!(matches!(
            s.watch("c/", requested).await,
            Err(StoreError::Compacted { requested: got, .. }) if got == requested
        ));
        assert!(matches!(
            s.watch("c/", r(21)).await,
            Err(StoreError::FutureRevision { .. })
        ));
        let mut w = s
            .watch("c/", compacted)
            .await
            .expect("watch from compacted");
        assert_eq!(next_event(&mut w).await.kv.mod_revision, compacted + 1);
        let bad = ListOptions {
            start_after: Some("d".into()),
            ..Default::default()
        };
        assert!(matches!(
            s.list("c/", bad).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn watch_replay_then_live<S: Backend>(s: Arc<S>) {
        let base = s.current_revision();
        for i in 1..=10 {
            s.create(&format!("w/{i:02}"), b("v"))
                .await
                .expect("create");
        }
        let mut w = s.watch("w/", base + 5).await.expect("watch");
        let writer = {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for i in 11..=30 {
                    s.create(&format!("w/{i:02}"), b("v"))
                        .await
                        .expect("create");
                }
            })
        };
        let mut seen = Vec::new();
        while seen.last() != Some(&(base + 30)) {
            seen.push(next_event(&mut w).await.kv.mod_revision);
        }
        writer.await.expect("writer");
        assert_eq!(
            seen,
            (base + 6..=base + 30).collect::<Vec<u64>>(),
            "no gaps, no duplicates"
        );
    }

    pub async fn watch_resume_after_drop<S: Backend>(s: Arc<S>) {
        let base = s.current_revision();
        let writer = {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for i in 1..=60 {
                    s.create(&format!("r/{i:02}"), b("v"))
                        .await
                        .expect("create");
                    if i % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        let mut seen = Vec::new();
        let mut last = base;
        while last < base + 60 {
            let mut w = s.watch("r/", last).await.expect("watch");
            // Read a few, then drop the watcher and resume from the last seen revision.
            for _ in 0..4 {
                let e = next_event(&mut w).await;
                last = e.kv.mod_revision;
                seen.push(last);
                if last == base + 60 {
                    break;
                }
            }
        }
        writer.await.expect("writer");
        assert_eq!(seen, (base + 1..=base + 60).collect::<Vec<u64>>());
    }

    pub async fn watch_filters_by_prefix<S: Backend>(s: Arc<S>) {
        let base = s.current_revision();
        let r = |n: u64| base + n;
        let mut w = s.watch("a/", r(0)).await.expect("watch");
        s.create("a", b("no")).await.expect("create");
        s.create("b/1", b("no")).await.expect("create");
        s.create("a/1", b("yes")).await.expect("create");
        s.create("ab/1", b("no")).await.expect("create");
        s.update("a/1", b("yes2"), None).await.expect("update");
        s.delete("a/1", None).await.expect("delete");
        let e = next_event(&mut w).await;
        assert_eq!(
            (e.kind, e.kv.key.as_str(), e.kv.mod_revision),
            (EventKind::Added, "a/1", r(3))
        );
        let e = next_event(&mut w).await;
        assert_eq!((e.kind, e.kv.mod_revision), (EventKind::Modified, r(5)));
        let e = next_event(&mut w).await;
        assert_eq!(
            (e.kind, e.kv.mod_revision, e.kv.create_revision),
            (EventKind::Deleted, r(6), r(3))
        );
        assert_eq!(e.kv.value, b("yes2"));
        assert_eq!(e.prev.map(|p| p.mod_revision), Some(r(5)));
        s.request_progress();
        assert_eq!(
            next_msg(&mut w).await,
            Some(Ok(WatchMessage::Progress(r(6))))
        );
    }

    pub async fn slow_watcher_is_dropped<S: Backend>(s: Arc<S>) {
        let base = s.current_revision();
        let r = |n: u64| base + n;
        let mut slow = s.watch("", r(0)).await.expect("watch slow");
        let mut fast = s.watch("", r(0)).await.expect("watch fast");
        for i in 1..=10u64 {
            s.create(&format!("s/{i:02}"), b("v"))
                .await
                .expect("create");
            assert_eq!(next_event(&mut fast).await.kv.mod_revision, r(i));
        }
        for i in 1..=4u64 {
            assert_eq!(next_event(&mut slow).await.kv.mod_revision, r(i));
        }
        assert_eq!(
            next_msg(&mut slow).await,
            Some(Err(WatchError::TooSlow { capacity: 4 }))
        );
        assert_eq!(next_msg(&mut slow).await, None);
        s.request_progress();
        assert_eq!(
            next_msg(&mut fast).await,
            Some(Ok(WatchMessage::Progress(r(10))))
        );
    }

    pub async fn progress_reaches_every_watcher<S: Backend>(s: Arc<S>) {
        let base = s.current_revision();
        let r = |n: u64| base + n;
        let mut a = s.watch("x/", r(0)).await.expect("watch");
        let mut c = s.watch("y/", r(0)).await.expect("watch");
        s.create("x/1", b("v")).await.expect("create");
        s.request_progress();
        assert_eq!(next_event(&mut a).await.kv.key, "x/1");
        let one = Some(Ok(WatchMessage::Progress(r(1))));
        assert_eq!(next_msg(&mut a).await, one);
        assert_eq!(next_msg(&mut c).await, one);
    }

    pub async fn a_lost_revision_becomes_readable<S: Backend>(s: Arc<S>) {
        let limit = std::time::Duration::from_secs(10);
        let first = s.current_revision() + 1;
        s.create("k", b("1")).await.expect("create");
        s.update("k", b("2"), Some(first)).await.expect("update");
        let lost = s.update("k", b("3"), Some(first)).await;
        let Err(StoreError::Conflict { actual, .. }) = lost else {
            panic!("expected a conflict, got {lost:?}");
        };
        tokio::time::timeout(limit, s.wait_for_revision(actual))
            .await
            .expect("the winning revision becomes readable");
        assert_eq!(
            s.get("k").await.expect("get").expect("k").mod_revision,
            actual
        );
        // A revision not written yet is waited for until a write reaches it.
        let next = s.current_revision() + 1;
        let waiter = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.wait_for_revision(next).await })
        };
        s.create("j", b("x")).await.expect("create");
        tokio::time::timeout(limit, waiter)
            .await
            .expect("woken by the write")
            .expect("join");
        assert!(s.current_revision() >= next);
    }
}

fn small_history() -> StoreOptions {
    StoreOptions {
        history_capacity: 5,
        ..Default::default()
    }
}

fn small_watchers() -> StoreOptions {
    StoreOptions {
        watcher_capacity: 4,
        ..Default::default()
    }
}

/// Instantiates every case for every backend (etcd: one fresh member per case).
macro_rules! suite {
    ($($name:ident => $opts:expr;)*) => {
        mod mem {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    cases::$name(Arc::new(store::MemStore::with_options($opts))).await;
                }
            )*
        }
        mod durable {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let path = dir.path().join("store.redb");
                    let s = store::DurableStore::open_with_options(&path, $opts).expect("open");
                    cases::$name(Arc::new(s)).await;
                }
            )*
        }
        mod etcd {
            use super::*;
            $(
                #[cfg_attr(
                    not(zonelab_etcd),
                    ignore = "starts a real etcd: needs `etcd` on PATH (Debian etcd-server; scripts/setup.sh); CI runs it"
                )]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_cluster, s) = common::etcd::start_store(&$opts).await;
                    cases::$name(Arc::new(s)).await;
                }
            )*
        }
    };
}

suite! {
    crud_and_cas => StoreOptions::default();
    txn_is_atomic => StoreOptions::default();
    revisions_are_monotonic_under_concurrency => StoreOptions::default();
    list_at_older_revision => StoreOptions::default();
    paging_is_consistent_while_writing => StoreOptions::default();
    compacted_and_future_revisions => small_history();
    watch_replay_then_live => StoreOptions::default();
    watch_resume_after_drop => StoreOptions::default();
    watch_filters_by_prefix => StoreOptions::default();
    slow_watcher_is_dropped => small_watchers();
    progress_reaches_every_watcher => StoreOptions::default();
    a_lost_revision_becomes_readable => StoreOptions::default();
}
