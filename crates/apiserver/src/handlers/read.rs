//! Read verbs: get and list (consistent paging with continue tokens); watch is in
//! [`super::watch`].
//!
//! Start at [`list`].

use std::time::Duration;

use api::status::StatusError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::Utc;
use http::{Response, StatusCode, header};
use store::{ListOptions, StoreError};

use super::Ctx;
pub use super::watch::watch;
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
