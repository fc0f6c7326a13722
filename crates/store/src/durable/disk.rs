//! The on-disk side of [`DurableStore`](crate::DurableStore): the redb schema, value encoding,
//! loading at open, and the group-commit thread. Start at [`run_committer`].
//!
//! Schema: table `kv` maps each live key to `create_revision (u64 LE) ++ mod_revision (u64 LE)
//! ++ value`; table `meta` maps `"revision"` to the last committed revision. A delete removes
//! the key. One redb write transaction holds a whole batch of store transactions, committed with
//! `Durability::Immediate` (one fsync for the batch).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::core::{Core, Entry};
use crate::{Event, EventKind, KeyValue, Revision, StoreError};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
/// Bytes before the value in an encoded entry.
const HEADER_LEN: usize = 16;
/// Most store transactions written in one redb transaction (bounds one commit's size).
const MAX_BATCH: usize = 4096;
/// Most the committer waits, after acknowledging a batch, for those writers' next writes. The
/// wait is also at most a quarter of the last commit's duration, so it stays small next to the
/// fsync it saves, on fast and slow disks alike. A lone writer never waits (nobody to wait for).
const MAX_LINGER: Duration = Duration::from_micros(500);

/// One key's change in a store transaction.
pub(crate) enum Write {
    Put(KeyValue),
    Delete(String),
}

impl Write {
    pub(crate) fn from_event(event: &Event) -> Write {
        match event.kind {
            EventKind::Deleted => Write::Delete(event.kv.key.clone()),
            EventKind::Added | EventKind::Modified => Write::Put(event.kv.clone()),
        }
    }
}

/// A store transaction applied in memory, waiting to be made durable.
pub(crate) struct Pending {
    pub(crate) revision: Revision,
    pub(crate) writes: Vec<Write>,
    pub(crate) ack: oneshot::Sender<Result<(), StoreError>>,
}

pub(crate) fn io_error(err: impl std::fmt::Display) -> StoreError {
    StoreError::Io(err.to_string())
}

/// Opens (or creates) the database at `path` and loads every key and the stored revision.
pub(crate) fn open(
    path: &Path,
) -> Result<(Database, BTreeMap<String, Entry>, Revision), StoreError> {
    let db = Database::create(path).map_err(io_error)?;
    // Make sure both tables exist, so the read below never meets a missing table.
    let tx = db.begin_write().map_err(io_error)?;
    tx.open_table(KV).map_err(io_error)?;
    tx.open_table(META).map_err(io_error)?;
    tx.commit().map_err(io_error)?;

    let read = db.begin_read().map_err(io_error)?;
    let meta = read.open_table(META).map_err(io_error)?;
    let revision = meta
        .get(REVISION_KEY)
        .map_err(io_error)?
        .map_or(0, |g| g.value());
    let table = read.open_table(KV).map_err(io_error)?;
    let mut kv = BTreeMap::new();
    for row in table.iter().map_err(io_error)? {
        let (key, value) = row.map_err(io_error)?;
        let key = key.value().to_string();
        let entry = decode(value.value())
            .filter(|e| e.create_revision <= e.mod_revision && e.mod_revision <= revision)
            .ok_or_else(|| StoreError::Io(format!("corrupt entry for key {key}")))?;
        kv.insert(key, entry);
    }
    drop(table);
    drop(meta);
    drop(read);
    Ok((db, kv, revision))
}

fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode(bytes: &[u8]) -> Option<Entry> {
    let create = bytes.get(..8)?.try_into().ok().map(u64::from_le_bytes)?;
    let modified = bytes
        .get(8..HEADER_LEN)?
        .try_into()
        .ok()
        .map(u64::from_le_bytes)?;
    let value = Bytes::copy_from_slice(bytes.get(HEADER_LEN..)?);
    Some(Entry {
        value,
        create_revision: create,
        mod_revision: modified,
    })
}

/// Gathers the next batch: what queued up during the last commit, at least one write (waiting
/// for it), and, until `deadline`, the `last_batch_len` writers just acknowledged, who usually
/// come straight back with their next write. Without that short wait a batch often closes while
/// half the writers are still resubmitting, and they pay a whole extra fsync. `None`: the queue
/// is closed and empty.
fn next_batch(
    rx: &Receiver<Pending>,
    last_batch_len: usize,
    deadline: Instant,
) -> Option<Vec<Pending>> {
    let mut batch = Vec::new();
    drain(rx, &mut batch);
    let target = (batch.len() + last_batch_len).clamp(1, MAX_BATCH);
    if batch.is_empty() {
        batch.push(rx.recv().ok()?);
    }
    while batch.len() < target {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok(pending) => batch.push(pending),
            Err(_) => break,
        }
    }
    drain(rx, &mut batch);
    Some(batch)
}

/// Moves everything queued into `batch`, up to [`MAX_BATCH`].
fn drain(rx: &Receiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(pending) => batch.push(pending),
            Err(_) => return,
        }
    }
}

/// Writes `batch` (in revision order) in one redb transaction and commits it durably.
fn write_batch(db: &Database, batch: &[Pending]) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut table = tx.open_table(KV)?;
        for pending in batch {
            for write in &pending.writes {
                match write {
                    Write::Put(kv) => {
                        table.insert(kv.key.as_str(), encode(kv).as_slice())?;
                    }
                    Write::Delete(key) => {
                        table.remove(key.as_str())?;
                    }
                }
            }
        }
        if let Some(last) = batch.last() {
            tx.open_table(META)?.insert(REVISION_KEY, last.revision)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The committer thread: takes everything queued, writes it in one durable commit, publishes
/// the batch's revisions to readers and watchers, then acknowledges the writers. Runs until every
/// sender is gone. After a failed commit it fails every batch and the core refuses writes.
pub(crate) fn run_committer(db: Database, rx: Receiver<Pending>, core: Arc<Core>) {
    let mut failed: Option<String> = None;
    let mut last_batch_len = 0;
    let mut linger = Duration::ZERO;
    loop {
        let acked_at = Instant::now();
        let Some(batch) = next_batch(&rx, last_batch_len, acked_at + linger) else {
            return;
        };
        last_batch_len = batch.len();
        let commit_started = Instant::now();
        if failed.is_none()
            && let Err(err) = write_batch(&db, &batch)
        {
            let why = format!("commit failed: {err}");
            tracing::error!(error = %err, "store commit failed; refusing further writes");
            core.poison(&why);
            failed = Some(why);
        }
        linger = (commit_started.elapsed() / 4).min(MAX_LINGER);
        match &failed {
            None => {
                if let Some(last) = batch.last() {
                    core.publish(last.revision);
                }
                for pending in batch {
                    let _ = pending.ack.send(Ok(()));
                }
            }
            Some(why) => {
                for pending in batch {
                    let _ = pending.ack.send(Err(StoreError::Io(why.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_rejects_short_input() {
        let kv = KeyValue {
            key: "k".into(),
            value: Bytes::from_static(b"hello"),
            create_revision: 3,
            mod_revision: 9,
        };
        let entry = decode(&encode(&kv)).expect("decodes");
        assert_eq!(entry.value, kv.value);
        assert_eq!((entry.create_revision, entry.mod_revision), (3, 9));
        assert!(decode(&[0; 15]).is_none());
        assert_eq!(decode(&[0; 16]).map(|e| e.value.len()), Some(0));
    }
}
