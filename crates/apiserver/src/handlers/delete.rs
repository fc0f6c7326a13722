//! Delete verbs: delete (graceful pod deletion, finalizers, preconditions, cascading to
//! dependents) and deletecollection, and the `DeleteOptions` they take.
//!
//! Start at [`delete`]; [`delete_with`] is the one path every delete (and eviction) takes.

use std::sync::Arc;

use api::resources::{self, ResourceInfo};
use api::status::{Cause, StatusError};
use chrono::Utc;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use store::StoreError;

use super::write::{MAX_CAS_RETRIES, WriteOptions, await_readable, finalizers};
use super::{Ctx, store_error};
use crate::objects;
use crate::path::ResourceTarget;
use crate::select::Filter;
use crate::server::{Body, Server, json_response};
use crate::svcalloc;

/// `DeleteOptions` from the body or the query.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub(crate) grace_seconds: Option<i64>,
    pub(crate) propagation: Option<String>,
    pub(crate) uid: Option<String>,
    pub(crate) resource_version: Option<String>,
}

impl DeleteOptions {
    /// The options a JSON `DeleteOptions` object carries (a DELETE body, an eviction's
    /// `deleteOptions`).
    pub(crate) fn from_json(body: &Value) -> DeleteOptions {
        let mut o = DeleteOptions {
            grace_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation: body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            ..DeleteOptions::default()
        };
        if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            o.propagation = Some("Orphan".into());
        }
        let pre = &body["preconditions"];
        o.uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
        o.resource_version = pre
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        o
    }
}

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
    if let Some(p) = &o.propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(StatusError::invalid(
            resources::by_plural("", "namespaces").ok_or_else(StatusError::path_not_found)?,
            "",
            vec![Cause::not_supported(
                "propagationPolicy",
                &json!(p),
                &["Foreground", "Background", "Orphan"],
            )],
        ));
    }
    Ok(o)
}

const UNDELETABLE_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// DELETE one object.
pub async fn delete(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let opts = delete_options(ctx)?;
    if t.res.kind == "Namespace" && UNDELETABLE_NAMESPACES.contains(&name) {
        return Err(StatusError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ),
            details: None,
        });
    }
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
        check_preconditions(res, name, &obj, opts)?;
        let mark = deletion_mark(res, &obj, opts);
        if dry_run {
            return Ok((obj, false));
        }
        let result = match &mark {
            Some(grace) => {
                let now = Utc::now();
                let meta = objects::metadata_mut(&mut obj)
                    .ok_or_else(|| StatusError::internal("object without metadata"))?;
                if !meta.contains_key("deletionTimestamp") || *grace == 0 {
                    let at = now + chrono::Duration::seconds(*grace);
                    meta.insert("deletionTimestamp".into(), json!(objects::timestamp(at)));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                if res.kind == "Namespace" {
                    obj["status"]["phase"] = json!("Terminating");
                }
                server
                    .store
                    .update(&key, objects::encode(&obj), Some(kv.mod_revision))
                    .await
            }
            None => server.store.delete(&key, Some(kv.mod_revision)).await,
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

fn check_preconditions(
    res: &ResourceInfo,
    name: &str,
    obj: &Value,
    o: &DeleteOptions,
) -> Result<(), StatusError> {
    let uid = objects::meta_str(obj, "uid").unwrap_or("");
    if let Some(want) = &o.uid
        && want != uid
    {
        return Err(StatusError::conflict_with(
            res,
            name,
            &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
        ));
    }
    let rv = objects::meta_str(obj, "resourceVersion").unwrap_or("");
    if let Some(want) = &o.resource_version
        && want != rv
    {
        return Err(StatusError::conflict_with(
            res,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
            ),
        ));
    }
    Ok(())
}

/// `Some(grace)`: mark the object deleted (and keep it) instead of removing it. Bound pods wait
/// for their kubelet; objects with finalizers wait for their finalizers; namespaces for their
/// content.
fn deletion_mark(res: &ResourceInfo, obj: &Value, o: &DeleteOptions) -> Option<i64> {
    if res.kind == "Namespace" {
        return obj["metadata"]
            .get("deletionTimestamp")
            .is_none()
            .then_some(0);
    }
    if !finalizers(obj).is_empty() {
        return Some(o.grace_seconds.unwrap_or(0));
    }
    if res.kind == "Pod" {
        let bound = obj["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let default = obj["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        let current = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
        let grace = o.grace_seconds.unwrap_or(current.unwrap_or(default)).max(0);
        let finished = matches!(
            obj["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if bound && grace > 0 && !finished {
            return Some(grace.min(current.unwrap_or(grace)));
        }
    }
    None
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
