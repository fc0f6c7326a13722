//! Watches on etcd: one gRPC Watch stream per [`Watcher`], created from `after + 1` with
//! `prev_kv` and `progress_notify`, pumped into the watcher's bounded channel by a task. Start
//! at [`start`].
//!
//! Progress requests (`request_progress`) reach every live watch task, which sends etcd a
//! progress request on its stream and reports progress as [`ProgressRounds`] says.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::progress::ProgressRounds;
use super::proto::{
    self, EventType, RangeRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchRequestUnion, WatchResponse, header_rev,
};
use super::transport::{CallError, MessageReader, frame};
use super::{Shared, kv_from, rev_i64, rev_u64, store_error};
use crate::{Event, EventKind, KeyValue, Revision, StoreError, WatchError, WatchMessage, Watcher};

type Tx = mpsc::Sender<Result<WatchMessage, WatchError>>;

/// Opens a watch on store keys under `prefix` for revisions after `after`.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    prefix: &str,
    after: Revision,
    revision_error: impl Fn(CallError, Revision) -> StoreError,
) -> Result<Watcher, StoreError> {
    let (start, end) = shared.keys.range(prefix).ok_or_else(|| {
        StoreError::Invalid(format!("prefix {prefix:?} lies outside the store's keys"))
    })?;
    check_after(shared, &start, &end, after, revision_error).await?;
    let create = WatchRequest {
        request_union: Some(WatchRequestUnion::CreateRequest(WatchCreateRequest {
            key: start,
            range_end: end,
            start_revision: rev_i64(after + 1),
            progress_notify: true,
            prev_kv: true,
        })),
    };
    let (req_tx, mut reader) = shared
        .transport
        .open_stream(proto::WATCH, frame(&create))
        .await
        .map_err(store_error)?;
    await_created(shared, &mut reader, after).await?;
    let capacity = shared.watcher_capacity;
    // + 1: the reserve slot for the TooSlow error.
    let (tx, rx) = mpsc::channel(capacity + 1);
    let pump = Pump {
        shared: Arc::clone(shared),
        reader,
        req_tx,
        tx,
        capacity,
        progress: ProgressRounds::default(),
    };
    tokio::spawn(pump.run());
    Ok(Watcher::new(rx))
}

/// `after` must not be compacted nor in the future (etcd itself would wait for a future
/// revision and report a compacted one only after creating the watch).
async fn check_after(
    shared: &Shared,
    start: &[u8],
    end: &[u8],
    after: Revision,
    revision_error: impl Fn(CallError, Revision) -> StoreError,
) -> Result<(), StoreError> {
    let compacted = shared.compacted();
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let mut current = shared.current();
    if after > current {
        current = shared.refresh().await?;
        if after > current {
            return Err(StoreError::FutureRevision {
                requested: after,
                current,
            });
        }
    }
    if after > 0 && after < current {
        // Another API server may have compacted past `after`: a read at `after` tells.
        let probe = RangeRequest {
            key: start.to_vec(),
            range_end: end.to_vec(),
            revision: rev_i64(after),
            count_only: true,
            ..Default::default()
        };
        let out: Result<proto::RangeResponse, _> =
            shared.transport.unary(proto::RANGE, &probe).await;
        out.map_err(|e| revision_error(e, after))?;
    }
    Ok(())
}

/// Reads the stream's first answer, which must confirm the watch.
async fn await_created(
    shared: &Shared,
    reader: &mut MessageReader,
    after: Revision,
) -> Result<(), StoreError> {
    let first = tokio::time::timeout(shared.transport.request_timeout(), reader.next())
        .await
        .unwrap_or(Err(CallError::TimedOut))
        .map_err(store_error)?;
    let first: WatchResponse = first.ok_or_else(|| {
        StoreError::Unavailable("etcd closed the watch stream before creating the watch".into())
    })?;
    shared.observe(header_rev(&first.header));
    if first.compact_revision > 0 {
        let compacted = rev_u64(first.compact_revision);
        shared.observe_compacted(compacted);
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    if !first.created || first.canceled {
        return Err(StoreError::Unavailable(format!(
            "etcd refused the watch: {}",
            first.cancel_reason
        )));
    }
    Ok(())
}

/// One watch stream's task.
struct Pump {
    shared: Arc<Shared>,
    reader: MessageReader,
    req_tx: mpsc::Sender<Bytes>,
    tx: Tx,
    capacity: usize,
    progress: ProgressRounds,
}

impl Pump {
    async fn run(mut self) {
        let mut requests = self.shared.progress.subscribe();
        requests.mark_unchanged();
        loop {
            tokio::select! {
                _ = self.tx.closed() => return,
                changed = requests.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.on_request();
                }
                msg = self.reader.next::<WatchResponse>() => {
                    let open = match msg {
                        Ok(Some(resp)) => self.on_response(resp),
                        Ok(None) => self.end(WatchError::Unavailable(
                            "etcd closed the watch stream".into(),
                        )),
                        Err(e) => self.end(WatchError::Unavailable(store_error(e).to_string())),
                    };
                    if !open {
                        return;
                    }
                }
            }
        }
    }

    fn send_progress_request(&self) {
        let req = WatchRequest {
            request_union: Some(WatchRequestUnion::ProgressRequest(WatchProgressRequest {})),
        };
        // A full request queue means the stream is stuck; the watch ends on its own then.
        let _ = self.req_tx.try_send(frame(&req));
    }

    fn on_request(&mut self) {
        let step = self.progress.requested();
        if step.send_request {
            self.send_progress_request();
        }
    }

    /// Handles one response; returns whether the watch stays open.
    fn on_response(&mut self, resp: WatchResponse) -> bool {
        let revision = header_rev(&resp.header);
        self.shared.observe(revision);
        if resp.canceled {
            if resp.compact_revision > 0 {
                let compacted = rev_u64(resp.compact_revision);
                self.shared.observe_compacted(compacted);
                return self.end(WatchError::Compacted { compacted });
            }
            return self.end(WatchError::Unavailable(format!(
                "etcd canceled the watch: {}",
                resp.cancel_reason
            )));
        }
        if !resp.events.is_empty() {
            for e in resp.events {
                let Some(event) = translate(&self.shared, e) else {
                    continue;
                };
                if !self.deliver(WatchMessage::Event(event)) {
                    return false;
                }
            }
            return true;
        }
        if resp.created {
            return true;
        }
        // A header-only answer: a progress notification.
        let step = self.progress.header_only(revision);
        if step.send_request {
            self.send_progress_request();
        }
        match step.report {
            Some(safe) => self.deliver(WatchMessage::Progress(safe)),
            None => true,
        }
    }

    /// Queues `msg` without blocking; a watcher that fell behind gets `TooSlow` and is ended.
    fn deliver(&self, msg: WatchMessage) -> bool {
        if self.tx.capacity() <= 1 {
            let _ = self.tx.try_send(Err(WatchError::TooSlow {
                capacity: self.capacity,
            }));
            return false;
        }
        self.tx.try_send(Ok(msg)).is_ok()
    }

    /// Ends the watch with `err` (best effort); returns `false` (the watch is closed).
    fn end(&self, err: WatchError) -> bool {
        let _ = self.tx.try_send(Err(err));
        false
    }
}

/// The store event of an etcd event (with `prev_kv`).
fn translate(shared: &Shared, e: proto::Event) -> Option<Event> {
    let kv = e.kv?;
    let prev = e.prev_kv.map(|p| kv_from(&shared.keys, p));
    if e.r#type == EventType::Delete as i32 {
        let mod_revision = rev_u64(kv.mod_revision);
        let last = match &prev {
            Some(p) => KeyValue {
                mod_revision,
                ..p.clone()
            },
            None => KeyValue {
                key: shared.keys.store_key(&kv.key),
                value: Bytes::new(),
                create_revision: mod_revision,
                mod_revision,
            },
        };
        return Some(Event {
            kind: EventKind::Deleted,
            kv: last,
            prev,
        });
    }
    let added = kv.create_revision == kv.mod_revision;
    Some(Event {
        kind: if added {
            EventKind::Added
        } else {
            EventKind::Modified
        },
        kv: kv_from(&shared.keys, kv),
        prev: if added { None } else { prev },
    })
}
