//! Resource request handlers: maps (verb, target) to get/list/watch/create/update/patch/delete
//! and the status, scale and binding subresources.
//!
//! Start at [`handle`]; reads live in [`read`], writes in [`write`], subresources in [`sub`].

use std::collections::BTreeMap;
use std::sync::Arc;

use api::status::StatusError;
use bytes::Bytes;
use http::{Method, Response};
use serde_json::Value;
use store::StoreError;

use crate::negotiate::{self, BodyType, Output};
use crate::path::ResourceTarget;
use crate::server::{Body, Server};

mod delete;
mod escalation;
mod events_v1;
pub(crate) mod evict;
mod pod_log;
mod read;
mod sub;
mod token;
mod watch;
mod watch_shared;
mod write;

pub use delete::delete_now;
pub use pod_log::KubeletDialer;
pub(crate) use watch_shared::SharedEvents;
pub use write::{FieldValidation, WriteOptions, Written, apply_patch, create_object};

/// One request, parsed.
pub struct Ctx {
    pub method: Method,
    pub query: BTreeMap<String, String>,
    pub accept: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// Who sent the request, as authentication found it.
    pub user: crate::authn::UserInfo,
}

impl Ctx {
    pub fn output(&self) -> Result<Output, StatusError> {
        negotiate::output_format(self.accept.as_deref())
    }

    pub fn body_type(&self) -> Result<BodyType, StatusError> {
        negotiate::body_type(self.content_type.as_deref())
    }

    /// The body decoded as JSON (or YAML, or protobuf naming its own kind).
    pub fn body_json(&self) -> Result<Value, StatusError> {
        negotiate::decode_body(&self.body, self.body_type()?)
    }

    /// The body decoded as an object of `(apiVersion, kind)` (what the URL expects).
    pub fn body_as(&self, api_version: &str, kind: &str) -> Result<Value, StatusError> {
        negotiate::decode_body_as(&self.body, self.body_type()?, Some((api_version, kind)))
    }

    /// The body decoded as an object of the resource `res`.
    pub fn body_for(&self, res: &api::resources::ResourceInfo) -> Result<Value, StatusError> {
        self.body_as(&res.api_version(), res.kind)
    }

    fn flag(&self, name: &str) -> bool {
        self.query
            .get(name)
            .is_some_and(|v| v == "true" || v == "1")
    }

    pub fn is_watch(&self) -> bool {
        self.flag("watch")
    }

    pub fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }
}

/// Map a store failure on one object to its `Status`.
pub fn store_error(t: &ResourceTarget, name: &str, e: StoreError) -> StatusError {
    match e {
        StoreError::AlreadyExists { .. } => StatusError::already_exists(t.res, name),
        StoreError::NotFound { .. } => StatusError::not_found(t.res, name),
        StoreError::Conflict { .. } => StatusError::conflict(t.res, name),
        StoreError::Compacted {
            requested,
            compacted,
        } => StatusError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::FutureRevision { requested, current } => {
            StatusError::too_large_resource_version(requested, current)
        }
        other => store_failure(other),
    }
}

/// A store failure that is not about one object: 503 ServiceUnavailable when the store cannot
/// be reached (etcd down or without quorum), 504 Timeout when it did not answer in time (as
/// upstream's request timeout), 500 otherwise.
pub fn store_failure(e: StoreError) -> StatusError {
    match e {
        StoreError::Unavailable(why) => StatusError::service_unavailable(why),
        StoreError::Timeout(why) => StatusError::timeout(&why, 0),
        other => StatusError::internal(other),
    }
}

/// The stored object `t`/`name` addresses, raw and decoded; 404 if it does not exist.
pub async fn current(
    server: &Server,
    t: &ResourceTarget,
    name: &str,
) -> Result<(store::KeyValue, Value), StatusError> {
    let key = crate::objects::key(t.res, t.namespace.as_deref(), name);
    let kv = server
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(t, name, e))?
        .ok_or_else(|| StatusError::not_found(t.res, name))?;
    let obj = crate::objects::decode(&kv)?;
    Ok((kv, obj))
}

/// Serve one resource request.
pub async fn handle(
    server: &Arc<Server>,
    t: ResourceTarget,
    ctx: Ctx,
) -> Result<Response<Body>, StatusError> {
    if ctx.method != Method::GET {
        // Negotiate the answer before writing anything, as upstream does (406 up front).
        ctx.output()?;
    }
    if server.cfg.node_restriction {
        crate::noderestriction::admit(server, &t, &ctx).await?;
    }
    escalation::admit(server, &t, &ctx).await?;
    if let Some(core) = api::resources::storage_alias_of(t.res) {
        return events_v1::handle(server, t, core, ctx).await;
    }
    let verb_not_allowed = || StatusError::method_not_allowed(ctx.method.as_str(), t.res.kind);
    if api::resources::is_create_only(t.res) {
        if ctx.method != Method::POST || t.name.is_some() || t.subresource.is_some() {
            return Err(verb_not_allowed());
        }
        return review(server, &t, &ctx);
    }
    if let Some(sub) = t.subresource.clone() {
        let name = t.name.clone().ok_or_else(StatusError::path_not_found)?;
        return sub::handle(server, &t, &ctx, &name, &sub).await;
    }
    match (&ctx.method, t.name.clone()) {
        (&Method::GET, Some(_)) if t.watch_path || ctx.is_watch() => {
            read::watch(server, &t, &ctx).await
        }
        (&Method::GET, Some(name)) => read::get(server, &t, &ctx, &name).await,
        (&Method::GET, None) if t.watch_path || ctx.is_watch() => {
            read::watch(server, &t, &ctx).await
        }
        (&Method::GET, None) => read::list(server, &t, &ctx).await,
        (&Method::POST, None) => write::create(server, &t, &ctx).await,
        (&Method::PUT, Some(name)) => write::update(server, &t, &ctx, &name).await,
        (&Method::PATCH, Some(name)) => write::patch(server, &t, &ctx, &name).await,
        (&Method::DELETE, Some(name)) => delete::delete(server, &t, &ctx, &name).await,
        (&Method::DELETE, None) => delete::delete_collection(server, &t, &ctx).await,
        _ => Err(verb_not_allowed()),
    }
}

/// The cluster admin's user name (the plain listener's insecure superuser).
pub const USERNAME: &str = "system:admin";

/// Answer a review (never stored): 201 with the computed status.
fn review(server: &Server, t: &ResourceTarget, ctx: &Ctx) -> Result<Response<Body>, StatusError> {
    let body = ctx.body_json()?;
    let user = &ctx.user;
    let authz = &server.authorizer;
    let answer = match t.res.kind {
        "SelfSubjectAccessReview" => crate::authz::access_review(authz, user, &body)?,
        "SubjectAccessReview" => crate::authz::subject_access_review(authz, &body)?,
        "LocalSubjectAccessReview" => {
            let namespace = t.namespace.as_deref().unwrap_or_default();
            crate::authz::local_subject_access_review(authz, namespace, &body)?
        }
        "SelfSubjectReview" => crate::authz::self_subject_review(user, &body),
        _ => crate::authz::rules_review(authz, user, &body)?,
    };
    Ok(crate::server::json_response(
        http::StatusCode::CREATED,
        &answer,
    ))
}
