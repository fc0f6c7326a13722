//! WATCH: a chunked stream of JSON lines `{"type": ..., "object": ...}` with bookmarks,
//! `timeoutSeconds`, selectors (objects entering/leaving the selection as ADDED/DELETED) and 410
//! for compacted revisions.
//!
//! Start at [`watch`]. The response body is a [`WatchBody`] polled by the HTTP connection itself:
//! a store event wakes only that connection's task, which turns it into a line and writes it (no
//! task or channel per watch in between). JSON lines are built once per event and type and
//! shared by every watcher ([`super::watch_shared`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use api::status::StatusError;
use bytes::Bytes;
use chrono::Utc;
use http::{Response, header};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde_json::{Value, json};
use store::{Event, EventKind, KeyValue, ListOptions, StoreError, WatchMessage};

use super::Ctx;
use super::watch_shared::{EventType, SharedEvents, json_line};
use crate::negotiate::Output;
use crate::objects;
use crate::path::ResourceTarget;
use crate::render::{self, ListMeta};
use crate::select::Filter;
use crate::server::{Body, Server};

/// `timeoutSeconds` when the client gives none (upstream picks 30 – 60 min at random; a fixed
/// 30 min here).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Settings of one watch stream.
struct WatchSpec {
    filter: Filter,
    out: Output,
    include: String,
    bookmarks: bool,
    res: &'static api::resources::ResourceInfo,
    metrics: Arc<crate::metrics::Metrics>,
    shared: Arc<SharedEvents>,
}

/// WATCH a collection (or one object via `fieldSelector=metadata.name=`).
pub async fn watch(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
) -> Result<Response<Body>, StatusError> {
    let out = ctx.output()?;
    let mut filter = Filter::from_query(t.res, &ctx.query)?;
    if let Some(name) = &t.name {
        // `/watch/namespaces/x/pods/name` (legacy) watches one object.
        let mut q = ctx.query.clone();
        q.insert("fieldSelector".into(), format!("metadata.name={name}"));
        filter = Filter::from_query(t.res, &q)?;
    }
    let query = |k: &str| ctx.query.get(k).map(String::as_str).unwrap_or("");
    let rv = query("resourceVersion");
    let send_initial = query("sendInitialEvents") == "true";
    let timeout = query("timeoutSeconds")
        .parse::<u64>()
        .ok()
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let prefix = objects::prefix(t.res, t.namespace.as_deref());
    let spec = WatchSpec {
        filter,
        out,
        include: query("includeObject").to_string(),
        bookmarks: matches!(query("allowWatchBookmarks"), "true" | "1"),
        res: t.res,
        metrics: Arc::clone(&server.metrics),
        shared: Arc::clone(&server.watch_events),
    };
    // Initial state: synthetic ADDED events for "" / "0" and for sendInitialEvents.
    let (initial, after) = if rv.is_empty() || rv == "0" || send_initial {
        let page = server
            .store
            .list(&prefix, ListOptions::default())
            .await
            .map_err(super::store_failure)?;
        (page.items, page.revision)
    } else {
        (Vec::new(), parse_rv(rv)?)
    };
    let mut body = WatchBody::new(spec, initial, send_initial, after, timeout);
    match server.store.watch(&prefix, after).await {
        Ok(w) => body.watcher = Some(w),
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let e = StatusError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            ));
            body.ending = Some(line("ERROR", e.to_status()));
        }
        Err(StoreError::FutureRevision { requested, current }) => {
            return Err(StatusError::too_large_resource_version(requested, current));
        }
        Err(e) => return Err(super::store_failure(e)),
    }
    let mut resp = Response::new(body.boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn parse_rv(s: &str) -> Result<u64, StatusError> {
    s.parse()
        .map_err(|_| StatusError::bad_request(format!("invalid resource version: {s}")))
}

/// One watch response body. The connection polls it when it can write; while the client does
/// not read, it is not polled, the store's bounded queue for this watcher fills and the store
/// drops the watcher (`TooSlow`); the stream then ends and the client re-watches from its last
/// revision. Memory per watcher stays bounded by that queue and hyper's write buffer.
pub(crate) struct WatchBody {
    spec: WatchSpec,
    /// The initial list (ADDED events), turned into lines as the client reads them.
    initial: std::vec::IntoIter<KeyValue>,
    /// `sendInitialEvents`: the revision of the bookmark that ends the initial events.
    initial_end: Option<u64>,
    watcher: Option<store::Watcher>,
    /// A last line before the end (the 410 ERROR).
    ending: Option<Bytes>,
    /// `timeoutSeconds`, counted from the end of the initial events (started on first use).
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    last_rev: u64,
    /// A Table watch sends column definitions with its first row only.
    table_headers: bool,
    done: bool,
}

impl WatchBody {
    fn new(
        spec: WatchSpec,
        initial: Vec<KeyValue>,
        send_initial: bool,
        after: u64,
        timeout: Duration,
    ) -> Self {
        WatchBody {
            last_rev: after,
            spec,
            initial: initial.into_iter(),
            initial_end: send_initial.then_some(after),
            watcher: None,
            ending: None,
            timeout,
            deadline: None,
            table_headers: true,
            done: false,
        }
    }

    /// The next line, or `None` once the stream is over. `Pending` only from the store watcher.
    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        for kv in self.initial.by_ref() {
            if let Some(line) = self.spec.initial_line(&kv, &mut self.table_headers) {
                return Poll::Ready(Some(line));
            }
        }
        if let Some(rev) = self.initial_end.take() {
            return Poll::Ready(Some(bookmark(self.spec.res, rev, true)));
        }
        if let Some(last) = self.ending.take() {
            return Poll::Ready(Some(last));
        }
        let Some(watcher) = self.watcher.as_mut() else {
            return Poll::Ready(None);
        };
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        loop {
            let msg = match watcher.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => {
                    // A dropped watcher: the client re-watches from its last revision.
                    tracing::debug!("watch ended: {e}");
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(m))) => m,
            };
            match msg {
                WatchMessage::Progress(rev) => {
                    if self.spec.bookmarks && rev >= self.last_rev {
                        self.last_rev = rev;
                        return Poll::Ready(Some(bookmark(self.spec.res, rev, false)));
                    }
                }
                WatchMessage::Event(ev) => {
                    self.last_rev = ev.kv.mod_revision;
                    if let Some(line) = self.spec.event_line(&ev, &mut self.table_headers) {
                        self.spec.metrics.watch_event(self.spec.res, line.len());
                        return Poll::Ready(Some(line));
                    }
                }
            }
        }
    }
}

impl hyper::body::Body for WatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this.poll_line(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(None) => {
                this.done = true;
                // Drop the store registration now, not when the connection goes.
                this.watcher = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl WatchSpec {
    /// The line for one object of the initial list, if the filter selects it.
    fn initial_line(&self, kv: &KeyValue, headers: &mut bool) -> Option<Bytes> {
        if self.out == Output::Json && !self.filter.needs_object() {
            if !name_matches(&self.filter, kv) {
                return None;
            }
            return Some(json_line(kv, EventType::Added));
        }
        let obj = objects::decode(kv).ok()?;
        self.filter
            .matches(&obj)
            .then(|| self.emit(EventType::Added, obj, headers))
    }

    /// The line for one store event, if this watch sees it.
    fn event_line(&self, ev: &Event, headers: &mut bool) -> Option<Bytes> {
        let t = event_type(&self.filter, ev, &self.shared)?;
        if self.out == Output::Json {
            return Some(self.shared.line(&ev.kv, t));
        }
        let obj = Value::clone(&*self.shared.object(&ev.kv).ok()?);
        Some(self.emit(t, obj, headers))
    }

    /// A line for a Table or metadata-only watch (rendered per watcher: a Table's first row
    /// carries the column definitions and its cells read the time).
    fn emit(&self, t: EventType, obj: Value, headers: &mut bool) -> Bytes {
        let object = match self.out {
            Output::Table => {
                let meta = ListMeta {
                    resource_version: objects::resource_version(&obj).ok().flatten().unwrap_or(0),
                    ..ListMeta::default()
                };
                let table =
                    render::table(self.res, &[obj], &meta, Utc::now(), &self.include, *headers);
                *headers = false;
                table
            }
            other => render::object(self.res, obj, other, Utc::now(), &self.include),
        };
        line(t.as_str(), object)
    }
}

fn name_matches(filter: &Filter, kv: &KeyValue) -> bool {
    filter
        .exact_name()
        .is_none_or(|name| kv.key.rsplit('/').next() == Some(name))
}

/// The event type `filter`'s watcher sees for `ev` (`None`: not at all). With a selector,
/// objects that start or stop matching appear as ADDED / DELETED, as upstream's watch cache does.
fn event_type(filter: &Filter, ev: &Event, shared: &SharedEvents) -> Option<EventType> {
    if !name_matches(filter, &ev.kv) {
        return None;
    }
    let plain = match ev.kind {
        EventKind::Added => EventType::Added,
        EventKind::Modified => EventType::Modified,
        EventKind::Deleted => EventType::Deleted,
    };
    if !filter.needs_object() {
        return Some(plain);
    }
    let now_matches = |kv: &KeyValue| shared.object(kv).is_ok_and(|o| filter.matches(&o));
    let prev_matched = ev.prev.as_ref().is_some_and(now_matches);
    match ev.kind {
        EventKind::Added => now_matches(&ev.kv).then_some(EventType::Added),
        // The deleted object's last state is `prev` (the event's `kv` carries the same value).
        EventKind::Deleted => prev_matched.then_some(EventType::Deleted),
        EventKind::Modified => match (prev_matched, now_matches(&ev.kv)) {
            (true, true) => Some(EventType::Modified),
            (false, true) => Some(EventType::Added),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        },
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(res: &api::resources::ResourceInfo, rev: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta}),
    )
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
