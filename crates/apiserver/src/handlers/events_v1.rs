//! `events.k8s.io/v1` Events served over the core `v1` Event storage, as upstream does: each
//! request is converted to core `v1` before admission and storage (so both versions share one
//! prefix, one revision stream and one validation), each answer back to `events.k8s.io/v1`.
//! Reads go through the core handlers and their JSON is converted, so the raw-bytes hot paths
//! (which splice stored core bytes) never reach an `events.k8s.io` client unconverted.
//!
//! Start at [`handle`].

use std::sync::Arc;

use api::events_v1;
use api::resources::ResourceInfo;
use api::status::StatusError;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde_json::Value;

use super::write::{self, WriteOptions};
use super::{Ctx, read};
use crate::negotiate::BodyType;
use crate::objects::{self, UpdateScope};
use crate::path::ResourceTarget;
use crate::server::{Body, Server};

/// Serve one `events.k8s.io/v1` request (`t.res` is the alias, `core` its storage resource).
pub async fn handle(
    server: &Arc<Server>,
    t: ResourceTarget,
    core: &'static ResourceInfo,
    ctx: Ctx,
) -> Result<Response<Body>, StatusError> {
    let alias = t.res;
    if t.subresource.is_some() {
        return Err(StatusError::path_not_found());
    }
    check_field_selector(&ctx)?;
    let ct = ResourceTarget {
        res: core,
        ..t.clone()
    };
    let watch = ctx.method == Method::GET && (t.watch_path || ctx.is_watch());
    let result = match (&ctx.method, t.name.clone()) {
        _ if watch => read::watch(server, &ct, &ctx).await,
        (&Method::GET, Some(name)) => read::get(server, &ct, &ctx, &name).await,
        (&Method::GET, None) => read::list(server, &ct, &ctx).await,
        (&Method::POST, None) => create(server, alias, &ct, &ctx).await,
        (&Method::PUT, Some(name)) => update(server, alias, &ct, &ctx, &name).await,
        (&Method::PATCH, Some(name)) => patch(server, alias, &ct, &ctx, &name).await,
        (&Method::DELETE, Some(name)) => super::delete::delete(server, &ct, &ctx, &name).await,
        (&Method::DELETE, None) => super::delete::delete_collection(server, &ct, &ctx).await,
        _ => Err(StatusError::method_not_allowed(
            ctx.method.as_str(),
            alias.kind,
        )),
    };
    let resp = result.map_err(|e| as_alias_error(e, alias))?;
    Ok(if watch {
        convert_stream(resp)
    } else {
        convert_whole(resp).await
    })
}

/// Upstream serves no field labels of its own for `events.k8s.io/v1` (no conversion function
/// is registered), so only the generic metadata fields select.
fn check_field_selector(ctx: &Ctx) -> Result<(), StatusError> {
    let Some(s) = ctx
        .query
        .get("fieldSelector")
        .filter(|s| !s.trim().is_empty())
    else {
        return Ok(());
    };
    let f = api::selector::FieldSelector::parse(s)
        .map_err(|e| StatusError::bad_request(e.to_string()))?;
    for name in f.fields() {
        if !matches!(name, "metadata.name" | "metadata.namespace") {
            return Err(StatusError::bad_request(format!(
                "\"{name}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            )));
        }
    }
    Ok(())
}

/// The request with its body decoded as `events.k8s.io/v1`, checked for unknown fields against
/// that schema, and re-encoded as a core `v1` JSON body; also the v1 body and the warnings.
fn converted(alias: &ResourceInfo, ctx: &Ctx) -> Result<(Ctx, Value, Vec<String>), StatusError> {
    let v1 = ctx.body_for(alias)?;
    write::check_identity(alias, &v1, None)?;
    let opts = WriteOptions::from_ctx(ctx)?;
    let warnings = write::check_fields(alias, &v1, opts.field_validation)?;
    let core = events_v1::to_core(&v1);
    let core_ctx = Ctx {
        method: ctx.method.clone(),
        query: ctx.query.clone(),
        accept: ctx.accept.clone(),
        content_type: Some("application/json".into()),
        body: Bytes::from(serde_json::to_vec(&core).unwrap_or_default()),
        user: ctx.user.clone(),
    };
    Ok((core_ctx, v1, warnings))
}

/// POST: the strict `events.k8s.io/v1` rules first, then the core create.
async fn create(
    server: &Arc<Server>,
    alias: &'static ResourceInfo,
    ct: &ResourceTarget,
    ctx: &Ctx,
) -> Result<Response<Body>, StatusError> {
    let (core_ctx, v1, warnings) = converted(alias, ctx)?;
    let causes = events_v1::validate_create(&v1);
    if !causes.is_empty() {
        return Err(StatusError::invalid(alias, objects::name_of(&v1), causes));
    }
    let mut resp = write::create(server, ct, &core_ctx).await?;
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(&w).unwrap_or_default());
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    Ok(resp)
}

/// The upstream update rules for `events.k8s.io/v1` as a `Status`.
fn check_update(
    alias: &ResourceInfo,
    name: &str,
    new: &Value,
    old: &Value,
) -> Result<(), StatusError> {
    let causes = events_v1::validate_update(new, old);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid(alias, name, causes))
    }
}

/// PUT: replace (with the update rules) or, for a missing Event, create as core PUT does.
async fn update(
    server: &Arc<Server>,
    alias: &'static ResourceInfo,
    ct: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let (core_ctx, _, _) = converted(alias, ctx)?;
    let key = objects::key(ct.res, ct.namespace.as_deref(), name);
    let exists = server
        .store
        .get(&key)
        .await
        .map_err(|e| super::store_error(ct, name, e))?
        .is_some();
    if !exists {
        return write::update(server, ct, &core_ctx, name).await;
    }
    let opts = WriteOptions::from_ctx(ctx)?;
    let core: Value = serde_json::from_slice(&core_ctx.body).unwrap_or_default();
    let w = write::guaranteed_update(server, ct, name, UpdateScope::Main, opts, |old| {
        check_update(alias, name, &core, old)?;
        Ok(core.clone())
    })
    .await?;
    Ok(write::respond(StatusCode::OK, w))
}

/// PATCH: the patch is written against the `events.k8s.io/v1` form of the stored object.
async fn patch(
    server: &Server,
    alias: &'static ResourceInfo,
    ct: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let opts = WriteOptions::from_ctx(ctx)?;
    let ty = ctx.body_type()?;
    if ty == BodyType::Protobuf {
        return Err(StatusError::unsupported_media_type(api::proto::MEDIA_TYPE));
    }
    let body_ty = if ty == BodyType::ApplyPatch {
        BodyType::Yaml
    } else {
        ty
    };
    let patch = crate::negotiate::decode_body(&ctx.body, body_ty)?;
    let w = write::guaranteed_update(server, ct, name, UpdateScope::Main, opts, |old| {
        let mut current = events_v1::from_core(old);
        if let Some(m) = current.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let patched = events_v1::to_core(&write::apply_patch(alias, &current, &patch, ty)?);
        check_update(alias, name, &patched, old)?;
        Ok(patched)
    })
    .await?;
    Ok(write::respond(StatusCode::OK, w))
}

/// A core error about Events, reworded for the `events.k8s.io` resource it was asked through.
fn as_alias_error(mut e: StatusError, alias: &ResourceInfo) -> StatusError {
    if let Some(d) = e.details.as_mut().filter(|d| d.group.is_empty()) {
        if d.kind == alias.plural {
            let core_prefix = format!("{} \"", alias.plural);
            if let Some(rest) = e.message.strip_prefix(&core_prefix) {
                e.message = format!("{} \"{rest}", alias.qualified_plural());
            }
            d.group = alias.group.to_string();
        } else if d.kind == alias.kind {
            d.group = alias.group.to_string();
        }
    }
    e
}

/// Rewrite core Events in an answer (object, list, table rows, watch event) as `events.k8s.io/v1`.
pub fn convert_value(v: &mut Value) {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let core_version = v.get("apiVersion").and_then(Value::as_str) == Some("v1");
    match kind {
        "Event" if core_version => *v = events_v1::from_core(v),
        "EventList" if core_version => {
            v["apiVersion"] = Value::from(events_v1::API_VERSION);
            if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
                items.iter_mut().for_each(convert_value);
            }
        }
        "Table" => {
            if let Some(rows) = v.get_mut("rows").and_then(Value::as_array_mut) {
                for row in rows {
                    if let Some(obj) = row.get_mut("object") {
                        convert_value(obj);
                    }
                }
            }
        }
        _ => {
            // A watch event: `{"type": ..., "object": ...}`.
            if v.get("type").is_some()
                && let Some(obj) = v.get_mut("object")
            {
                convert_value(obj);
            }
        }
    }
}

fn convert_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut v: Value = serde_json::from_slice(text).ok()?;
    convert_value(&mut v);
    let mut out = serde_json::to_vec(&v).ok()?;
    if text.len() < bytes.len() {
        out.push(b'\n');
    }
    Some(out)
}

/// Convert a whole JSON answer.
async fn convert_whole(resp: Response<Body>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(never) => match never {},
    };
    let out = convert_bytes(&bytes).map(Bytes::from).unwrap_or(bytes);
    Response::from_parts(parts, crate::server::full(out))
}

/// Convert a watch stream line by line (each frame is one JSON line).
fn convert_stream(resp: Response<Body>) -> Response<Body> {
    resp.map(|body| {
        body.map_frame(|frame: Frame<Bytes>| match frame.into_data() {
            Ok(data) => Frame::data(convert_bytes(&data).map(Bytes::from).unwrap_or(data)),
            Err(frame) => frame,
        })
        .boxed_unsync()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_tables_and_watch_lines_convert() {
        let ev =
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "a"}, "message": "m"});
        let mut list =
            json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [ev.clone()]});
        convert_value(&mut list);
        assert_eq!(list["apiVersion"], "events.k8s.io/v1");
        assert_eq!(list["items"][0]["note"], "m");
        let mut table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "rows": [{"cells": [], "object": ev.clone()}]});
        convert_value(&mut table);
        assert_eq!(table["rows"][0]["object"]["apiVersion"], "events.k8s.io/v1");
        let line = serde_json::to_vec(&json!({"type": "ADDED", "object": ev})).unwrap();
        let mut with_nl = line.clone();
        with_nl.push(b'\n');
        let out = convert_bytes(&with_nl).unwrap();
        assert!(out.ends_with(b"\n"));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["object"]["note"], "m");
        assert!(v["object"].get("message").is_none());
        // A Status passes through unchanged.
        let mut status = json!({"kind": "Status", "apiVersion": "v1", "code": 404});
        let before = status.clone();
        convert_value(&mut status);
        assert_eq!(status, before);
    }

    #[test]
    fn core_errors_name_the_alias() {
        let alias = api::resources::by_plural("events.k8s.io", "events").unwrap();
        let core = api::resources::by_plural("", "events").unwrap();
        let e = as_alias_error(StatusError::not_found(core, "x"), alias);
        assert_eq!(e.message, "events.events.k8s.io \"x\" not found");
        assert_eq!(e.details.unwrap().group, "events.k8s.io");
    }
}
