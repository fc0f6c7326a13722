//! Write verbs: create, update (PUT), patch (merge, JSON, strategic), delete (graceful pod
//! deletion, finalizers, cascading to dependents) and deletecollection.
//!
//! Start at [`create_object`] (admission for a new object) and [`guaranteed_update`] (the
//! read-modify-CAS loop every update, patch and subresource write goes through).

use std::sync::Arc;

use api::resources::{self, ResourceInfo};
use api::status::{Cause, StatusError};
use chrono::Utc;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use store::StoreError;

use super::{Ctx, store_error};
use crate::negotiate::BodyType;
use crate::objects::{self, UpdateScope};
use crate::path::ResourceTarget;
use crate::select::Filter;
use crate::server::{Body, Server, json_response};
use crate::svcalloc;

/// How many times a write retries after losing a compare-and-swap race.
const MAX_CAS_RETRIES: usize = 32;
/// Longest wait for the write a compare-and-swap lost to to become readable (a group commit's
/// fsync takes far less; a bound, so a stuck committer cannot hold a request).
const READABLE_WAIT_MS: u64 = 1_000;

/// After losing a compare-and-swap to revision `actual`, wait until reads see it. A durable
/// store's CAS sees writes that are applied but not yet durable while reads answer at the last
/// durable revision: a retry at once re-reads the old value and loses again, 32 times within
/// one fsync (issue 14: a taint eviction's delete racing its status write got 409 "too many
/// concurrent updates").
pub(crate) async fn await_readable(server: &Server, actual: store::Revision) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(READABLE_WAIT_MS);
    while server.store.current_revision() < actual && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// Options shared by every write.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

impl WriteOptions {
    pub fn from_ctx(ctx: &Ctx) -> Result<WriteOptions, StatusError> {
        let fv = match ctx.query.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(StatusError::bad_request(format!(
                    "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
                )));
            }
        };
        if let Some(d) = ctx.query.get("dryRun")
            && !d.is_empty()
            && d != "All"
        {
            return Err(StatusError::bad_request(format!(
                "unsupported dry run option: {d:?}"
            )));
        }
        Ok(WriteOptions {
            dry_run: ctx.dry_run(),
            field_validation: fv,
        })
    }
}

/// The result of a write: the object and any warnings for `Warning` headers.
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
}

pub(crate) fn respond(code: StatusCode, w: Written) -> Response<Body> {
    let mut resp = json_response(code, &w.object);
    for warning in w.warnings {
        let text = format!(
            "299 - {}",
            serde_json::to_string(&warning).unwrap_or_default()
        );
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    resp
}

/// Unknown fields per `fieldValidation`: an error (Strict) or warnings (Warn).
pub(crate) fn check_fields(
    res: &ResourceInfo,
    obj: &Value,
    fv: FieldValidation,
) -> Result<Vec<String>, StatusError> {
    if fv == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let unknown: Vec<String> = api::schema::unknown_fields(res, obj)
        .into_iter()
        .map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.')))
        .collect();
    if unknown.is_empty() || fv == FieldValidation::Warn {
        return Ok(unknown);
    }
    Err(StatusError::bad_request(format!(
        "strict decoding error: {}",
        unknown.join(", ")
    )))
}

/// A strict field error on a create or a replace, worded as upstream's decoder reports it
/// (`Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: …`);
/// patches keep the bare text, as upstream's patch handler does.
fn as_decode_error(res: &ResourceInfo, e: StatusError) -> StatusError {
    if e.code == 400 && e.message.starts_with("strict decoding error") {
        return StatusError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {}",
            res.kind, res.version, res.kind, e.message
        ));
    }
    e
}

/// The body's apiVersion/kind (if set) must be the resource's; its namespace the URL's.
pub(crate) fn check_identity(
    res: &ResourceInfo,
    obj: &Value,
    namespace: Option<&str>,
) -> Result<(), StatusError> {
    if !obj.is_object() {
        return Err(StatusError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): expected a JSON object",
            res.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && av != res.api_version()
    {
        return Err(StatusError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != res.kind
    {
        return Err(StatusError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): kind {kind:?} does not match",
            res.kind
        )));
    }
    if res.namespaced
        && let (Some(body_ns), Some(url_ns)) = (objects::meta_str(obj, "namespace"), namespace)
        && !body_ns.is_empty()
        && body_ns != url_ns
    {
        return Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

async fn ensure_namespace(server: &Server, ns: &str) -> Result<(), StatusError> {
    let nsres = resources::by_plural("", "namespaces").ok_or_else(StatusError::path_not_found)?;
    let kv = server
        .store
        .get(&objects::key(nsres, None, ns))
        .await
        .map_err(StatusError::internal)?
        .ok_or_else(|| StatusError::not_found(nsres, ns))?;
    let obj = objects::decode(&kv)?;
    if obj["metadata"].get("deletionTimestamp").is_some() {
        return Err(StatusError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
            details: None,
        });
    }
    Ok(())
}

/// Admit and store a new object. Used by POST and by the server's own bootstrap.
pub async fn create_object(
    server: &Server,
    res: &'static ResourceInfo,
    namespace: Option<&str>,
    mut obj: Value,
    opts: WriteOptions,
) -> Result<Written, StatusError> {
    check_identity(res, &obj, namespace)?;
    api::admit::convert(res, &mut obj)?;
    let warnings =
        check_fields(res, &obj, opts.field_validation).map_err(|e| as_decode_error(res, e))?;
    {
        let mut rng = server
            .rng
            .lock()
            .map_err(|_| StatusError::internal("rng lock poisoned"))?;
        objects::prepare_create(res, &mut obj, namespace, Utc::now(), &mut *rng);
    }
    api::admit::default(res, &mut obj);
    if res.kind == "Pod" {
        api::admit::pod::default_tolerations(
            &mut obj,
            server.cfg.default_not_ready_toleration_seconds,
            server.cfg.default_unreachable_toleration_seconds,
        );
    }
    let name = objects::name_of(&obj).to_string();
    if name.is_empty() {
        return Err(StatusError::invalid(
            res,
            "",
            vec![Cause::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    let causes = api::admit::validate_create(res, &obj);
    if !causes.is_empty() {
        return Err(StatusError::invalid(res, &name, causes));
    }
    if let Some(ns) = namespace.filter(|_| res.namespaced) {
        ensure_namespace(server, ns).await?;
    }
    let taken = svcalloc::for_create(server, res, &mut obj)?;
    if opts.dry_run {
        svcalloc::rollback(server, taken);
        return Ok(Written {
            object: obj,
            warnings,
        });
    }
    let key = objects::key(res, namespace, &name);
    match server.store.create(&key, objects::encode(&obj)).await {
        Ok(kv) => {
            objects::set_resource_version(&mut obj, kv.mod_revision);
            Ok(Written {
                object: obj,
                warnings,
            })
        }
        Err(e) => {
            svcalloc::rollback(server, taken);
            Err(match e {
                StoreError::AlreadyExists { .. } => StatusError::already_exists(res, &name),
                other => StatusError::internal(other),
            })
        }
    }
}

/// POST a new object into a collection.
pub async fn create(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
) -> Result<Response<Body>, StatusError> {
    let opts = WriteOptions::from_ctx(ctx)?;
    let obj = ctx.body_for(t.res)?;
    if t.res.namespaced && t.namespace.is_none() {
        return Err(StatusError::method_not_allowed("POST", t.res.kind));
    }
    let w = create_object(server, t.res, t.namespace.as_deref(), obj, opts).await?;
    Ok(respond(StatusCode::CREATED, w))
}

/// Kinds that PUT may create when the object does not exist (upstream AllowCreateOnUpdate).
fn creates_on_update(res: &ResourceInfo) -> bool {
    matches!(
        res.kind,
        "Service" | "Node" | "Lease" | "Event" | "EndpointSlice"
    )
}

/// Read-modify-write with compare-and-swap, retried on conflicts unless the caller gave a
/// `resourceVersion` precondition. `mutate` builds the desired object from the current one.
pub async fn guaranteed_update<F>(
    server: &Server,
    t: &ResourceTarget,
    name: &str,
    scope: UpdateScope,
    opts: WriteOptions,
    mut mutate: F,
) -> Result<Written, StatusError>
where
    F: FnMut(&Value) -> Result<Value, StatusError>,
{
    let res = t.res;
    let key = objects::key(res, t.namespace.as_deref(), name);
    for _ in 0..MAX_CAS_RETRIES {
        let (kv, old) = super::current(server, t, name).await?;
        let mut new = mutate(&old)?;
        check_identity(res, &new, t.namespace.as_deref())?;
        api::admit::convert(res, &mut new)?;
        if objects::name_of(&new) != name {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                objects::name_of(&new)
            )));
        }
        let warnings = check_fields(res, &new, opts.field_validation)?;
        let precondition = objects::resource_version(&new)?;
        if precondition.is_some_and(|rv| rv != kv.mod_revision) {
            return Err(StatusError::conflict(res, name));
        }
        objects::prepare_update(res, &mut new, &old, scope);
        api::admit::default(res, &mut new);
        // Allocation first: it carries over the ClusterIP an update left empty, as upstream's
        // REST layer does before validation.
        let change = if scope == UpdateScope::Main {
            svcalloc::for_update(server, res, &old, &mut new)?
        } else {
            svcalloc::Change::default()
        };
        let causes = api::admit::validate_update(res, &new, &old);
        if !causes.is_empty() {
            svcalloc::rollback_change(server, change);
            return Err(StatusError::invalid(res, name, causes));
        }
        let finalized =
            new["metadata"].get("deletionTimestamp").is_some() && finalizers(&new).is_empty();
        if opts.dry_run {
            svcalloc::rollback_change(server, change);
            return Ok(Written {
                object: new,
                warnings,
            });
        }
        let encoded = objects::encode(&new);
        if !finalized && encoded == kv.value {
            // Nothing changed: as upstream's GuaranteedUpdate, no write, no event, and the
            // resourceVersion stays.
            svcalloc::commit_change(server, change);
            objects::set_resource_version(&mut new, kv.mod_revision);
            return Ok(Written {
                object: new,
                warnings,
            });
        }
        let result = if finalized {
            server.store.delete(&key, Some(kv.mod_revision)).await
        } else {
            server
                .store
                .update(&key, encoded, Some(kv.mod_revision))
                .await
        };
        match result {
            Ok(written) => {
                svcalloc::commit_change(server, change);
                if finalized {
                    svcalloc::release_service(server, res, &new);
                }
                objects::set_resource_version(&mut new, written.mod_revision);
                return Ok(Written {
                    object: new,
                    warnings,
                });
            }
            Err(StoreError::Conflict { actual, .. }) if precondition.is_none() => {
                svcalloc::rollback_change(server, change);
                await_readable(server, actual).await;
                continue;
            }
            Err(e) => {
                svcalloc::rollback_change(server, change);
                return Err(store_error(t, name, e));
            }
        }
    }
    Err(StatusError::conflict_with(
        res,
        name,
        "too many concurrent updates; please try again",
    ))
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// PUT: replace an object (or create it where upstream allows).
pub async fn update(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let opts = WriteOptions::from_ctx(ctx)?;
    let body = ctx.body_for(t.res)?;
    let key = objects::key(t.res, t.namespace.as_deref(), name);
    let exists = server
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(t, name, e))?
        .is_some();
    if !exists && creates_on_update(t.res) {
        if objects::name_of(&body) != name {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                objects::name_of(&body)
            )));
        }
        let w = create_object(server, t.res, t.namespace.as_deref(), body, opts).await?;
        return Ok(respond(StatusCode::CREATED, w));
    }
    let w = guaranteed_update(server, t, name, UpdateScope::Main, opts, |_| {
        Ok(body.clone())
    })
    .await
    .map_err(|e| as_decode_error(t.res, e))?;
    Ok(respond(StatusCode::OK, w))
}

/// Apply a patch body of type `ty` to `old`.
pub fn apply_patch(
    res: &ResourceInfo,
    old: &Value,
    patch: &Value,
    ty: BodyType,
) -> Result<Value, StatusError> {
    let patched = match ty {
        BodyType::MergePatch | BodyType::StrategicMergePatch if !patch.is_object() => {
            return Err(StatusError::bad_request(
                "a merge patch must be a JSON object",
            ));
        }
        BodyType::MergePatch => Ok(api::patch::merge_patch(old, patch)),
        BodyType::JsonPatch => api::patch::json_patch(old, patch),
        BodyType::StrategicMergePatch => api::patch::strategic_merge_patch(old, patch, res.kind),
        BodyType::ApplyPatch => {
            return Err(StatusError::unsupported_media_type(
                "application/apply-patch+yaml (server-side apply is not supported yet; use client-side kubectl apply)",
            ));
        }
        BodyType::Json | BodyType::Yaml | BodyType::Protobuf => {
            return Err(StatusError::unsupported_media_type(
                "application/json (PATCH needs a patch content type)",
            ));
        }
    };
    patched.map_err(|e| e.to_status_error())
}

/// PATCH an object (or its status, via `scope`).
pub async fn patch_with_scope(
    server: &Server,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
    scope: UpdateScope,
) -> Result<Written, StatusError> {
    let opts = WriteOptions::from_ctx(ctx)?;
    let ty = ctx.body_type()?;
    if ty == BodyType::Protobuf {
        return Err(StatusError::unsupported_media_type(api::proto::MEDIA_TYPE));
    }
    let patch = crate::negotiate::decode_body(
        &ctx.body,
        match ty {
            BodyType::ApplyPatch => BodyType::Yaml,
            other => other,
        },
    )?;
    let res = t.res;
    guaranteed_update(server, t, name, scope, opts, |old| {
        let mut current = old.clone();
        // The patch's own resourceVersion (if any) is a precondition; the stored one is not.
        if let Some(m) = current.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        apply_patch(res, &current, &patch, ty)
    })
    .await
}

pub async fn patch(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let w = patch_with_scope(server, t, ctx, name, UpdateScope::Main).await?;
    Ok(respond(StatusCode::OK, w))
}

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
        .map_err(StatusError::internal)?;
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
