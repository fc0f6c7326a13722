//! `DurableStore`-only behaviour: data and revision survive a reopen, and a process killed with
//! SIGKILL mid-write loses no acknowledged write (the test re-runs this test binary as the
//! writer child, selected by the `STORE_CRASH_CHILD_DB` environment variable).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{b, next_event, snapshot};
use store::{DurableStore, KeyValue, ListOptions, Store, StoreError};

const CHILD_DB_ENV: &str = "STORE_CRASH_CHILD_DB";
const CHILD_ROUND_ENV: &str = "STORE_CRASH_CHILD_ROUND";
const CHILD_WRITERS: usize = 16;
const CRASH_ROUNDS: u64 = 12;

#[tokio::test]
async fn reopen_keeps_data_and_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let (before, rev) = {
        let s = DurableStore::open(&path).expect("open");
        for i in 0..20 {
            s.create(&format!("k/{i:02}"), b(&format!("v{i}")))
                .await
                .expect("create");
        }
        s.update("k/03", b("changed"), Some(4))
            .await
            .expect("update");
        s.delete("k/07", Some(8)).await.expect("delete");
        (snapshot(&s, "").await, s.current_revision())
    };
    assert_eq!(rev, 22);
    let s = DurableStore::open(&path).expect("reopen");
    assert_eq!(s.current_revision(), 22);
    assert_eq!(
        s.compacted_revision(),
        22,
        "history starts empty after a reopen"
    );
    assert_eq!(snapshot(&s, "").await, before);
    assert_eq!(s.get("k/07").await.expect("get"), None);
    let at_old = ListOptions {
        revision: Some(21),
        ..Default::default()
    };
    assert!(matches!(
        s.list("", at_old).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        s.watch("", 21).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut w = s
        .watch("k/", 22)
        .await
        .expect("watch from the loaded revision");
    let kv = s
        .update("k/03", b("again"), Some(21))
        .await
        .expect("cas after reopen");
    assert_eq!((kv.create_revision, kv.mod_revision), (4, 23));
    assert_eq!(next_event(&mut w).await.kv, kv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    {
        let s = Arc::new(DurableStore::open(&path).expect("open"));
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    for i in 0..40 {
                        s.create(&format!("t{t:02}/{i:02}"), b("v"))
                            .await
                            .expect("create");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    }
    let s = DurableStore::open(&path).expect("reopen");
    assert_eq!(s.current_revision(), 640);
    let all = snapshot(&s, "").await;
    assert_eq!(all.len(), 640);
    let mut revs: Vec<u64> = all.iter().map(|kv| kv.mod_revision).collect();
    revs.sort_unstable();
    assert_eq!(revs, (1..=640).collect::<Vec<u64>>());
}

/// The writer child. A no-op unless run by `acknowledged_writes_survive_sigkill`.
#[test]
fn crash_child_writer() {
    let Ok(db) = std::env::var(CHILD_DB_ENV) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND_ENV)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let s = Arc::new(DurableStore::open(Path::new(&db)).expect("open"));
        let tasks: Vec<_> = (0..CHILD_WRITERS)
            .map(|t| tokio::spawn(child_task(Arc::clone(&s), round, t)))
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
}

/// Writes until killed: creates (every 4th one deleted right after) and a CAS counter per task.
async fn child_task(s: Arc<DurableStore>, round: u64, t: usize) {
    let counter = format!("u/t{t:02}");
    for i in 0u64.. {
        let key = format!("r{round:02}/t{t:02}/{i:06}");
        let value = format!("{key}=v");
        let kv = s.create(&key, b(&value)).await.expect("create");
        ack(&format!("PUT {key} {} {value}", kv.mod_revision));
        if i % 4 == 3 {
            let kv = s.delete(&key, Some(kv.mod_revision)).await.expect("delete");
            ack(&format!("DEL {key} {}", kv.mod_revision));
        }
        let cur = s.get(&counter).await.expect("get");
        let kv = match cur {
            None => s.create(&counter, b("1")).await.expect("counter create"),
            Some(cur) => {
                let n: u64 = std::str::from_utf8(&cur.value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .expect("counter");
                let next = (n + 1).to_string();
                s.update(&counter, b(&next), Some(cur.mod_revision))
                    .await
                    .expect("counter cas")
            }
        };
        let value = String::from_utf8_lossy(&kv.value).into_owned();
        ack(&format!("PUT {counter} {} {value}", kv.mod_revision));
    }
}

fn ack(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ACK {line}");
    let _ = out.flush();
}

/// The last acknowledged operation on one key.
#[derive(Clone, Debug)]
enum Acked {
    Put { rev: u64, value: String },
    Del { rev: u64 },
}

fn parse_ack(line: &str) -> Option<(String, Acked)> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let (op, key, rev) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
    let acked = match op {
        "PUT" => Acked::Put {
            rev,
            value: parts.next()?.to_string(),
        },
        "DEL" => Acked::Del { rev },
        _ => return None,
    };
    Some((key.to_string(), acked))
}

/// A small deterministic generator for kill delays (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs one writer child, kills it after `delay`, returns the acknowledged lines.
fn run_child(db: &Path, round: u64, delay: Duration) -> Vec<String> {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([
            "crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB_ENV, db)
        .env(CHILD_ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    reader.join().expect("reader")
}

/// Every acknowledged write is on disk with its value; revisions are consistent.
fn verify(s_items: &[KeyValue], revision: u64, acked: &BTreeMap<String, Acked>) {
    let on_disk: BTreeMap<&str, &KeyValue> =
        s_items.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    let mut mod_revs: Vec<u64> = s_items.iter().map(|kv| kv.mod_revision).collect();
    mod_revs.sort_unstable();
    mod_revs.dedup();
    assert_eq!(
        mod_revs.len(),
        s_items.len(),
        "single-key txns: one key per revision"
    );
    for kv in s_items {
        assert!(
            kv.create_revision <= kv.mod_revision && kv.mod_revision <= revision,
            "{kv:?}"
        );
    }
    for (key, ack) in acked {
        let found = on_disk.get(key.as_str());
        match ack {
            Acked::Del { rev } => {
                assert!(*rev <= revision);
                assert!(found.is_none(), "acknowledged delete of {key} lost");
            }
            Acked::Put { rev, value } => {
                assert!(
                    *rev <= revision,
                    "revision went back below acknowledged {rev}"
                );
                if key.starts_with("u/") {
                    let kv = found.unwrap_or_else(|| panic!("counter {key} lost"));
                    let n: u64 = std::str::from_utf8(&kv.value)
                        .expect("utf8")
                        .parse()
                        .expect("n");
                    assert!(
                        n >= value.parse::<u64>().expect("acked n"),
                        "counter {key} went back"
                    );
                    assert!(kv.mod_revision >= *rev);
                    continue;
                }
                let index = key.rsplit('/').next().and_then(|i| i.parse::<u64>().ok());
                let deleted_next = index.is_some_and(|i| i % 4 == 3);
                match found {
                    Some(kv) => {
                        assert_eq!(kv.mod_revision, *rev, "{key}");
                        assert_eq!(kv.value, b(value), "{key}");
                    }
                    // Only an unacknowledged delete that made it to disk may remove it.
                    None => assert!(deleted_next, "acknowledged write of {key} lost"),
                }
            }
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_DB_ENV).is_ok() {
        return; // we are the child
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.redb");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut acked: BTreeMap<String, Acked> = BTreeMap::new();
    let mut last_revision = 0;
    let mut total_acks = 0;
    for round in 0..CRASH_ROUNDS {
        let delay = Duration::from_millis(100 + rng.below(500));
        let lines = run_child(&db, round, delay);
        let mut round_acks: Vec<(String, Acked)> =
            lines.iter().filter_map(|l| parse_ack(l)).collect();
        total_acks += round_acks.len();
        round_acks.sort_by_key(|(_, a)| match a {
            Acked::Put { rev, .. } | Acked::Del { rev } => *rev,
        });
        acked.extend(round_acks);
        rt.block_on(async {
            let s = DurableStore::open(&db).expect("reopen after kill");
            let revision = s.current_revision();
            assert!(revision >= last_revision, "revision went back");
            last_revision = revision;
            verify(&snapshot(&s, "").await, revision, &acked);
        });
    }
    assert!(total_acks > 0, "the children acknowledged no writes at all");
    eprintln!(
        "crash test: {CRASH_ROUNDS} rounds, {total_acks} acknowledged writes, revision {last_revision}"
    );
}
