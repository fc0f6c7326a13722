//! Read verbs: get, list (consistent paging with continue tokens) and watch (streamed JSON
//! events, bookmarks, 410 on compacted revisions).
//!
//! Start at [`list`] and [`watch`].

use std::sync::Arc;
use std::time::Duration;

use api::status::StatusError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use chrono::Utc;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use store::{Event, EventKind, ListOptions, StoreError, WatchMessage};
use tokio::sync::mpsc;

use super::Ctx;
use crate::negotiate::Output;
use crate::objects;
use crate::path::ResourceTarget;
use crate::render::{self, ListMeta};
use crate::select::Filter;
use crate::server::{Body, Server, json_response};

/// GET one object.
pub async fn get(
    server: &Server,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let out = ctx.output()?;
    let (_, obj) = super::current(server, t, name).await?;
    let include = ctx
        .query
        .get("includeObject")
        .map(String::as_str)
        .unwrap_or("");
    Ok(json_response(
        StatusCode::OK,
        &render::object(t.res, obj, out, Utc::now(), include),
    ))
}

/// Where a continue token resumes.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: u64,
    start: String,
}

fn encode_continue(rv: u64, start: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.to_string(),
    };
    B64.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<ContinueToken, StatusError> {
    let bad = |why: String| StatusError::bad_request(format!("continue key is not valid: {why}"));
    let raw = B64.decode(token).map_err(|e| bad(e.to_string()))?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad(format!("unsupported version {:?}", t.v)));
    }
    Ok(t)
}

fn parse_rv(s: &str) -> Result<u64, StatusError> {
    s.parse()
        .map_err(|_| StatusError::bad_request(format!("invalid resource version: {s}")))
}

/// How long a list at a resourceVersion newer than the store's waits for it before 504 (upstream's
/// watch cache blocks 3 s the same way). With several API servers on one etcd, a revision another
/// server wrote is known here a moment later.
const FRESH_WAIT: Duration = Duration::from_secs(3);

/// The revision a list must be served at (`None`: the current one).
async fn list_revision(
    server: &Server,
    ctx: &Ctx,
    limited: bool,
) -> Result<Option<u64>, StatusError> {
    let rv = ctx
        .query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let matching = ctx
        .query
        .get("resourceVersionMatch")
        .map(String::as_str)
        .unwrap_or("");
    if rv.is_empty() || rv == "0" {
        if !matching.is_empty() && matching != "NotOlderThan" {
            return Err(StatusError::bad_request(format!(
                "resourceVersionMatch \"{matching}\" is forbidden for resourceVersion \"{rv}\""
            )));
        }
        return Ok(None);
    }
    let n = parse_rv(rv)?;
    let exact = match matching {
        "Exact" => true,
        "NotOlderThan" => false,
        "" => limited,
        other => {
            return Err(StatusError::bad_request(format!(
                "unsupported resourceVersionMatch value: {other}"
            )));
        }
    };
    if n > server.store.current_revision() {
        let _ = tokio::time::timeout(FRESH_WAIT, server.store.wait_for_revision(n)).await;
    }
    let current = server.store.current_revision();
    if n > current {
        return Err(StatusError::too_large_resource_version(n, current));
    }
    Ok(if exact { Some(n) } else { None })
}

/// LIST a collection, with selectors, `limit` and `continue`.
pub async fn list(
    server: &Server,
    t: &ResourceTarget,
    ctx: &Ctx,
) -> Result<Response<Body>, StatusError> {
    let out = ctx.output()?;
    let filter = Filter::from_query(t.res, &ctx.query)?;
    let limit: usize = match ctx.query.get("limit") {
        Some(l) if !l.is_empty() => l
            .parse()
            .map_err(|_| StatusError::bad_request(format!("invalid limit: {l}")))?,
        _ => 0,
    };
    let prefix = objects::prefix(t.res, t.namespace.as_deref());
    let (mut revision, mut start_after, from_token) =
        match ctx.query.get("continue").filter(|c| !c.is_empty()) {
            Some(c) => {
                if ctx
                    .query
                    .get("resourceVersion")
                    .is_some_and(|r| !r.is_empty() && r != "0")
                {
                    return Err(StatusError::bad_request(
                        "specifying resource version is not allowed when using continue",
                    ));
                }
                let tok = decode_continue(c)?;
                (Some(tok.rv), Some(format!("{prefix}{}", tok.start)), true)
            }
            None => (list_revision(server, ctx, limit > 0).await?, None, false),
        };
    let mut items: Vec<store::KeyValue> = Vec::new();
    let mut meta = ListMeta::default();
    loop {
        let want = if limit == 0 {
            0
        } else if filter.is_empty() {
            limit - items.len()
        } else {
            (limit - items.len()).max(100)
        };
        let opts = ListOptions {
            revision,
            limit: (want > 0).then_some(want),
            start_after: start_after.clone(),
        };
        let page = server
            .store
            .list(&prefix, opts)
            .await
            .map_err(|e| list_error(e, from_token))?;
        revision = Some(page.revision);
        meta.resource_version = page.revision;
        let n = page.items.len();
        for (i, kv) in page.items.iter().enumerate() {
            if filter.is_empty() || filter.matches(&objects::decode(kv)?) {
                items.push(kv.clone());
            }
            if limit > 0 && items.len() == limit {
                let left = (n - i - 1) as u64 + page.remaining;
                if left > 0 {
                    let rest = kv.key.strip_prefix(&prefix).unwrap_or(&kv.key);
                    meta.continue_token = Some(encode_continue(page.revision, rest));
                    meta.remaining = filter.is_empty().then_some(left);
                }
                return list_response(t, ctx, items, &meta, out);
            }
        }
        if page.remaining == 0 || n == 0 {
            break;
        }
        start_after = page.items.last().map(|kv| kv.key.clone());
    }
    list_response(t, ctx, items, &meta, out)
}

/// Render a list. Plain JSON is spliced from the stored bytes (no decode/encode per item): the
/// hot path of every informer's relist and of `kubectl get -o json`; a Table (`kubectl get`)
/// is written from them too, decoding only what its rows' cells read.
fn list_response(
    t: &ResourceTarget,
    ctx: &Ctx,
    items: Vec<store::KeyValue>,
    meta: &ListMeta,
    out: Output,
) -> Result<Response<Body>, StatusError> {
    if out == Output::Json {
        let body = render::raw_list(t.res, &items, meta);
        let mut resp = Response::new(crate::server::full(body));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }
    let include = ctx
        .query
        .get("includeObject")
        .map(String::as_str)
        .unwrap_or("");
    if out == Output::Table {
        let body = crate::table::raw::list_bytes(t.res, &items, meta, Utc::now(), include)?;
        let mut resp = Response::new(crate::server::full(body));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }
    let values = items
        .iter()
        .map(objects::decode)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(
        StatusCode::OK,
        &render::list(t.res, values, meta, out, Utc::now(), include),
    ))
}

fn list_error(e: StoreError, from_token: bool) -> StatusError {
    match e {
        StoreError::Compacted { .. } if from_token => StatusError::expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        ),
        StoreError::Compacted { .. } => {
            StatusError::expired("The resourceVersion for the provided list is too old.")
        }
        StoreError::FutureRevision { requested, current } => {
            StatusError::too_large_resource_version(requested, current)
        }
        other => super::store_failure(other),
    }
}

/// Settings of one watch stream.
struct WatchSpec {
    filter: Filter,
    out: Output,
    include: String,
    bookmarks: bool,
    res: &'static api::resources::ResourceInfo,
    metrics: Arc<crate::metrics::Metrics>,
}

/// WATCH a collection (or one object via `fieldSelector=metadata.name=`): a chunked stream of
/// JSON lines `{"type": ..., "object": ...}`.
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
    let rv = ctx
        .query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let send_initial = ctx
        .query
        .get("sendInitialEvents")
        .is_some_and(|v| v == "true");
    let timeout = ctx
        .query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let prefix = objects::prefix(t.res, t.namespace.as_deref());
    let spec = WatchSpec {
        filter,
        out,
        include: ctx.query.get("includeObject").cloned().unwrap_or_default(),
        bookmarks: ctx
            .query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true" || v == "1"),
        res: t.res,
        metrics: Arc::clone(&server.metrics),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    // Initial state: synthetic ADDED events for "" / "0" and for sendInitialEvents.
    let (initial, after) = if rv.is_empty() || rv == "0" || send_initial {
        let page = server
            .store
            .list(&prefix, ListOptions::default())
            .await
            .map_err(super::store_failure)?;
        let objs: Vec<Value> = page
            .items
            .iter()
            .filter_map(|kv| objects::decode(kv).ok())
            .collect();
        (Some(objs), page.revision)
    } else {
        (None, parse_rv(rv)?)
    };
    let watcher = match server.store.watch(&prefix, after).await {
        Ok(w) => Some(w),
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let e = StatusError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            ));
            let _ = tx.try_send(line("ERROR", e.to_status()));
            None
        }
        Err(StoreError::FutureRevision { requested, current }) => {
            return Err(StatusError::too_large_resource_version(requested, current));
        }
        Err(e) => return Err(super::store_failure(e)),
    };
    if let Some(watcher) = watcher {
        tokio::spawn(pump(
            watcher,
            spec,
            initial,
            send_initial,
            after,
            tx,
            timeout,
        ));
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Forward store events to the client until it disconnects, the timeout passes or the store
/// ends the watch.
async fn pump(
    mut watcher: store::Watcher,
    spec: WatchSpec,
    initial: Option<Vec<Value>>,
    send_initial: bool,
    start_rev: u64,
    tx: mpsc::Sender<Bytes>,
    timeout: Duration,
) {
    let mut headers = true;
    let mut last_rev = start_rev;
    let emit = |kind: &str, obj: Value, headers: &mut bool| -> Bytes {
        let object = match spec.out {
            Output::Table => {
                let meta = ListMeta {
                    resource_version: objects::resource_version(&obj).ok().flatten().unwrap_or(0),
                    ..ListMeta::default()
                };
                let t = render::table(spec.res, &[obj], &meta, Utc::now(), &spec.include, *headers);
                *headers = false;
                t
            }
            other => render::object(spec.res, obj, other, Utc::now(), &spec.include),
        };
        line(kind, object)
    };
    for obj in initial.into_iter().flatten() {
        if spec.filter.matches(&obj) && tx.send(emit("ADDED", obj, &mut headers)).await.is_err() {
            return;
        }
    }
    if send_initial {
        let b = bookmark(spec.res, start_rev, true);
        if tx.send(b).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        let msg = tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            m = watcher.next() => m,
        };
        let bytes = match msg {
            None => return,
            Some(Err(e)) => {
                // A dropped watcher: the client re-watches from its last revision.
                tracing::debug!("watch ended: {e}");
                return;
            }
            Some(Ok(WatchMessage::Progress(rev))) => {
                if !spec.bookmarks || rev < last_rev {
                    continue;
                }
                last_rev = rev;
                bookmark(spec.res, rev, false)
            }
            Some(Ok(WatchMessage::Event(ev))) => {
                last_rev = ev.kv.mod_revision;
                let line = if spec.out == Output::Json && !spec.filter.needs_object() {
                    // Hot path: splice the stored bytes, no decode or encode per watcher.
                    match raw_event(&spec.filter, &ev) {
                        Some(line) => line,
                        None => continue,
                    }
                } else {
                    match classify(&spec.filter, &ev) {
                        Some((kind, obj)) => emit(kind, obj, &mut headers),
                        None => continue,
                    }
                };
                spec.metrics.watch_event(spec.res, line.len());
                line
            }
        };
        if tx.send(bytes).await.is_err() {
            return;
        }
    }
}

/// A watch line built from the stored bytes (for watches that need no decoded object).
fn raw_event(filter: &Filter, ev: &Event) -> Option<Bytes> {
    if let Some(name) = filter.exact_name()
        && ev.kv.key.rsplit('/').next() != Some(name)
    {
        return None;
    }
    let kind = match ev.kind {
        EventKind::Added => "ADDED",
        EventKind::Modified => "MODIFIED",
        EventKind::Deleted => "DELETED",
    };
    let mut out = Vec::with_capacity(ev.kv.value.len() + 64);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    objects::splice_resource_version(&ev.kv, &mut out);
    out.extend_from_slice(b"}\n");
    Some(Bytes::from(out))
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

/// The watch event type for `ev` under `filter`: objects that start or stop matching appear as
/// ADDED / DELETED, as upstream's watch cache does.
fn classify(filter: &Filter, ev: &Event) -> Option<(&'static str, Value)> {
    if let Some(name) = filter.exact_name()
        && ev.kv.key.rsplit('/').next() != Some(name)
    {
        return None;
    }
    let mut obj = objects::decode(&ev.kv).ok()?;
    let prev_matches = ev
        .prev
        .as_ref()
        .and_then(|p| objects::decode(p).ok())
        .is_some_and(|p| filter.matches(&p));
    match ev.kind {
        EventKind::Added => filter.matches(&obj).then_some(("ADDED", obj)),
        EventKind::Deleted => {
            objects::set_resource_version(&mut obj, ev.kv.mod_revision);
            prev_matches.then_some(("DELETED", obj))
        }
        EventKind::Modified => match (prev_matches, filter.matches(&obj)) {
            (true, true) => Some(("MODIFIED", obj)),
            (false, true) => Some(("ADDED", obj)),
            (true, false) => Some(("DELETED", obj)),
            (false, false) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;
    use serde_json::json;
    use store::KeyValue;

    fn kv(name: &str, rev: u64) -> KeyValue {
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "d"}, "spec": {}});
        KeyValue {
            key: format!("/registry/core/services/d/{name}"),
            value: objects::encode(&obj),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn raw_events_equal_decoded_events() {
        let svc = by_plural("", "services").unwrap();
        let q = |s: &str| {
            [("fieldSelector".to_string(), s.to_string())]
                .into_iter()
                .collect()
        };
        let all = Filter::from_query(svc, &Default::default()).unwrap();
        let named = Filter::from_query(svc, &q("metadata.name=a")).unwrap();
        assert!(!all.needs_object() && !named.needs_object());
        assert!(
            Filter::from_query(svc, &q("metadata.name!=a"))
                .unwrap()
                .needs_object()
        );
        for (kind, prev) in [
            (EventKind::Added, None),
            (EventKind::Modified, Some(kv("a", 2))),
            (EventKind::Deleted, Some(kv("a", 2))),
        ] {
            let ev = Event {
                kind,
                kv: kv("a", 3),
                prev,
            };
            for f in [&all, &named] {
                let line = raw_event(f, &ev).unwrap();
                let raw: Value = serde_json::from_slice(&line).unwrap();
                let (k, obj) = classify(f, &ev).unwrap();
                assert_eq!(raw, json!({"type": k, "object": obj}));
            }
        }
        let other = Event {
            kind: EventKind::Added,
            kv: kv("ab", 3),
            prev: None,
        };
        assert!(raw_event(&named, &other).is_none());
        assert!(classify(&named, &other).is_none());
    }
}
