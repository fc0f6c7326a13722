//! Delete verbs: delete (graceful pod deletion, finalizers, preconditions, cascading to
//! dependents) and deletecollection, and the `DeleteOptions` they take.
//!
//! Start at [`delete`]; [`delete_with`] is the one path every delete (and eviction) takes.

use std::sync::Arc;

use api::resources::ResourceInfo;
use api::status::StatusError;
use chrono::Utc;
use http::{Response, StatusCode};
use serde_json::Value;
use store::StoreError;

use super::write::{MAX_CAS_RETRIES, WriteOptions, await_readable};
use super::{Ctx, store_error};
use crate::objects;
use crate::path::ResourceTarget;
use crate::select::Filter;
use crate::server::{Body, Server, json_response};
use crate::svcalloc;

pub(crate) use registry::DeleteOptions;

fn delete_options(ctx: &Ctx) -> Result<DeleteOptions, StatusError> {
    let mut o = DeleteOptions::default();
    if !ctx.body.iter().all(u8::is_ascii_whitespace) {
        o = DeleteOptions::from_json(&ctx.body_as("v1", "DeleteOptions")?);
    }
    if let Some(g) = ctx.query.get("gracePeriodSeconds") {
        o.grace_seconds =
            Some(g.parse().map_err(|_| {
                StatusError::bad_request(format!("invalid gracePeriodSeconds: {g}"))
            })?);
    }
    if let Some(p) = ctx.query.get("propagationPolicy") {
        o.propagation = Some(p.clone());
    }
    o.validate()?;
    Ok(o)
}

/// DELETE one object.
pub async fn delete(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let opts = delete_options(ctx)?;
    registry::delete::check_deletable(t.res, name)?;
    let dry_run = WriteOptions::from_ctx(ctx)?.dry_run;
    let (obj, gone) = delete_internal(server, t, name, &opts, dry_run).await?;
    if gone && !dry_run {
        after_delete(server, t.res, &obj, opts.propagation.as_deref());
    }
    if !gone && !dry_run && t.res.kind == "Namespace" {
        start_namespace_cleanup(server, name);
    }
    Ok(json_response(StatusCode::OK, &obj))
}

/// Delete one object with default options (the garbage collector's delete).
pub async fn delete_now(
    server: &Arc<Server>,
    res: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), StatusError> {
    let t = ResourceTarget {
        res,
        namespace: namespace.map(str::to_string),
        name: Some(name.to_string()),
        subresource: None,
        watch_path: false,
    };
    let (obj, gone) = delete_internal(server, &t, name, &DeleteOptions::default(), false).await?;
    if gone {
        after_delete(server, res, &obj, None);
    }
    Ok(())
}

/// Delete one object with `opts` (what an approved eviction does). Returns the object and
/// whether it is gone from the store.
pub(crate) async fn delete_with(
    server: &Arc<Server>,
    t: &ResourceTarget,
    name: &str,
    opts: &DeleteOptions,
    dry_run: bool,
) -> Result<(Value, bool), StatusError> {
    let (obj, gone) = delete_internal(server, t, name, opts, dry_run).await?;
    if gone && !dry_run {
        after_delete(server, t.res, &obj, opts.propagation.as_deref());
    }
    Ok((obj, gone))
}

/// Delete or mark for deletion. Returns the object and whether it is gone from the store.
async fn delete_internal(
    server: &Server,
    t: &ResourceTarget,
    name: &str,
    opts: &DeleteOptions,
    dry_run: bool,
) -> Result<(Value, bool), StatusError> {
    let res = t.res;
    let key = objects::key(res, t.namespace.as_deref(), name);
    for _ in 0..MAX_CAS_RETRIES {
        let (kv, mut obj) = super::current(server, t, name).await?;
        registry::delete::check_preconditions(res, name, &obj, opts)?;
        let mark = registry::delete::deletion_mark(res, &obj, opts);
        if dry_run {
            return Ok((obj, false));
        }
        let result = match &mark {
            Some(grace) => {
                let now = registry::Moment::from_millis(Utc::now().timestamp_millis());
                registry::delete::mark_deleted(res, &mut obj, *grace, now);
                server
                    .store
                    .update(&key, objects::encode(&obj), Some(kv.mod_revision))
                    .await
            }
            None => {
                svcalloc::delete_stored(server, res, &key, Some(kv.mod_revision), &[&obj]).await
            }
        };
        match result {
            Ok(written) => {
                objects::set_resource_version(&mut obj, written.mod_revision);
                return Ok((obj, mark.is_none()));
            }
            Err(StoreError::Conflict { actual, .. }) => {
                await_readable(server, actual).await;
                continue;
            }
            Err(e) => return Err(store_error(t, name, e)),
        }
    }
    Err(StatusError::conflict_with(
        res,
        name,
        "too many concurrent updates; please try again",
    ))
}

/// Work that follows a completed delete: free a Service's IPs, cascade to dependents, empty a
/// namespace.
fn after_delete(
    server: &Arc<Server>,
    res: &'static ResourceInfo,
    obj: &Value,
    propagation: Option<&str>,
) {
    svcalloc::release_service(server, res, obj);
    let uid = objects::meta_str(obj, "uid").unwrap_or("").to_string();
    let ns = objects::meta_str(obj, "namespace").map(str::to_string);
    let orphan = propagation == Some("Orphan");
    let server = Arc::clone(server);
    // Boxed: the cascade deletes objects whose own deletes cascade again.
    let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(async move {
            if let Err(e) = crate::cascade::dependents(&server, &uid, ns.as_deref(), orphan).await {
                tracing::warn!("cascading delete of {uid} failed: {e}");
            }
        });
    tokio::spawn(task);
}

/// Called when a namespace is marked for deletion: delete everything in it, then it.
pub fn start_namespace_cleanup(server: &Arc<Server>, name: &str) {
    let server = Arc::clone(server);
    let name = name.to_string();
    tokio::spawn(async move {
        if let Err(e) = crate::cascade::namespace(&server, &name).await {
            tracing::warn!("deleting namespace {name} failed: {e}");
        }
    });
}

/// DELETE a collection: every object matching the selectors.
pub async fn delete_collection(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
) -> Result<Response<Body>, StatusError> {
    let opts = delete_options(ctx)?;
    let dry_run = WriteOptions::from_ctx(ctx)?.dry_run;
    let filter = Filter::from_query(t.res, &ctx.query)?;
    let page = server
        .store
        .list(
            &objects::prefix(t.res, t.namespace.as_deref()),
            store::ListOptions::default(),
        )
        .await
        .map_err(super::store_failure)?;
    let mut deleted = Vec::new();
    for kv in &page.items {
        let obj = objects::decode(kv)?;
        if !filter.matches(&obj) {
            continue;
        }
        let name = objects::name_of(&obj).to_string();
        let ns = objects::meta_str(&obj, "namespace").map(str::to_string);
        let target = ResourceTarget {
            namespace: ns,
            name: Some(name.clone()),
            ..t.clone()
        };
        match delete_internal(server, &target, &name, &opts, dry_run).await {
            Ok((obj, gone)) => {
                if gone && !dry_run {
                    after_delete(server, t.res, &obj, opts.propagation.as_deref());
                }
                deleted.push(obj);
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let meta = crate::render::ListMeta {
        resource_version: server.store.current_revision(),
        ..Default::default()
    };
    Ok(json_response(
        StatusCode::OK,
        &crate::render::list(
            t.res,
            deleted,
            &meta,
            crate::negotiate::Output::Json,
            Utc::now(),
            "",
        ),
    ))
}
