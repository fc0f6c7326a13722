//! Write verbs: create, update (PUT) and patch (merge, JSON, strategic); deletes live in
//! [`super::delete`].
//!
//! Start at [`create_object`] (admission for a new object) and [`guaranteed_update`] (the
//! read-modify-CAS loop every update, patch and subresource write goes through).

use std::sync::Arc;

use api::resources::{self, ResourceInfo};
use api::status::StatusError;
use chrono::Utc;
use http::{Response, StatusCode};
use serde_json::Value;
use store::StoreError;

use super::{Ctx, store_error};
use crate::negotiate::BodyType;
use crate::objects::{self, UpdateScope};
use crate::path::ResourceTarget;
use crate::server::{Body, Server, json_response};
use crate::svcalloc;

/// How many times a write retries after losing a compare-and-swap race.
pub(super) const MAX_CAS_RETRIES: usize = 32;
/// Longest wait for the write a compare-and-swap lost to to become readable (a group commit's
/// fsync takes far less; a bound, so a stuck committer cannot hold a request).
const READABLE_WAIT_MS: u64 = 1_000;

/// After losing a compare-and-swap to revision `actual`, wait until reads see it. A durable
/// store's CAS sees writes that are applied but not yet durable while reads answer at the last
/// durable revision: a retry at once re-reads the old value and loses again, 32 times within
/// one fsync (issue 14: a taint eviction's delete racing its status write got 409 "too many
/// concurrent updates").
pub(crate) async fn await_readable(server: &Server, actual: store::Revision) {
    let wait = std::time::Duration::from_millis(READABLE_WAIT_MS);
    let _ = tokio::time::timeout(wait, server.store.wait_for_revision(actual)).await;
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

pub(crate) use registry::admission::check_identity;

async fn ensure_namespace(server: &Server, ns: &str) -> Result<(), StatusError> {
    let nsres = resources::by_plural("", "namespaces").ok_or_else(StatusError::path_not_found)?;
    let kv = server
        .store
        .get(&objects::key(nsres, None, ns))
        .await
        .map_err(super::store_failure)?
        .ok_or_else(|| StatusError::not_found(nsres, ns))?;
    registry::admission::check_namespace_active(ns, &objects::decode(&kv)?)
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
        let adm = registry::Admission {
            default_not_ready_toleration_seconds: server.cfg.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: server
                .cfg
                .default_unreachable_toleration_seconds,
        };
        let now = registry::Moment::from_millis(Utc::now().timestamp_millis());
        registry::admission::admit_create(res, namespace, &mut obj, &adm, now, &mut *rng)?;
    }
    let name = objects::name_of(&obj).to_string();
    if let Some(ns) = namespace.filter(|_| res.namespaced) {
        ensure_namespace(server, ns).await?;
    }
    if opts.dry_run {
        let taken = svcalloc::for_create(server, res, &mut obj)?;
        svcalloc::rollback(server, taken);
        return Ok(Written {
            object: obj,
            warnings,
        });
    }
    let key = objects::key(res, namespace, &name);
    let kv = svcalloc::create_stored(server, res, &key, &mut obj, |e| match e {
        StoreError::AlreadyExists { .. } => StatusError::already_exists(res, &name),
        other => super::store_failure(other),
    })
    .await?;
    objects::set_resource_version(&mut obj, kv.mod_revision);
    Ok(Written {
        object: obj,
        warnings,
    })
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

use registry::strategy::creates_on_update;

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
        registry::admission::decode_update(res, t.namespace.as_deref(), name, &mut new)?;
        let warnings = check_fields(res, &new, opts.field_validation)?;
        let precondition =
            registry::admission::admit_update(res, name, &mut new, &old, scope, kv.mod_revision)?;
        // Allocation first: it carries over the ClusterIP an update left empty, as upstream's
        // REST layer does before validation.
        let change = if scope == UpdateScope::Main {
            svcalloc::for_update(server, res, &old, &mut new)?
        } else {
            svcalloc::Change::default()
        };
        if let Err(e) = registry::admission::validate_update(res, name, &new, &old) {
            svcalloc::rollback_change(server, change);
            return Err(e);
        }
        let finalized = registry::admission::deletes_on_update(&old, &new);
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
        let result = svcalloc::write_update(
            server,
            res,
            &key,
            kv.mod_revision,
            encoded,
            finalized,
            &old,
            &new,
            &change,
        )
        .await;
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
            Err(e) if svcalloc::reserved_elsewhere(&e).is_some() => {
                if let Some(r) = svcalloc::reserved_elsewhere(&e) {
                    svcalloc::reserved_elsewhere_on_update(server, change, r);
                }
                continue;
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
    let guard = super::escalation::UpdateGuard::for_update(server, t, ctx).await?;
    if !exists && creates_on_update(t.res) {
        if objects::name_of(&body) != name {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                objects::name_of(&body)
            )));
        }
        if let Some(g) = &guard {
            g.check_new(server, &body)?;
        }
        let w = create_object(server, t.res, t.namespace.as_deref(), body, opts).await?;
        return Ok(respond(StatusCode::CREATED, w));
    }
    let w = guaranteed_update(server, t, name, UpdateScope::Main, opts, |old| {
        if let Some(g) = &guard {
            g.check(server, old, &body)?;
        }
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
    let guard = match scope {
        UpdateScope::Main => super::escalation::UpdateGuard::for_update(server, t, ctx).await?,
        _ => None,
    };
    guaranteed_update(server, t, name, scope, opts, |old| {
        let mut current = old.clone();
        // The patch's own resourceVersion (if any) is a precondition; the stored one is not.
        if let Some(m) = current.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let new = apply_patch(res, &current, &patch, ty)?;
        if let Some(g) = &guard {
            g.check(server, &current, &new)?;
        }
        Ok(new)
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

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
