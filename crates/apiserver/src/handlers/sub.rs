//! Subresources: `status` (writes that change only status), `scale` (autoscaling/v1 Scale over
//! a Deployment's or ReplicaSet's replicas), pod `binding` (what the scheduler posts) and pod
//! `eviction` (in [`super::evict`]), serviceaccount `token` (in [`super::token`]).
//!
//! Start at [`handle`].

use std::sync::Arc;

use api::status::StatusError;
use chrono::Utc;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};
use store::StoreError;

use super::write::{self, WriteOptions, guaranteed_update, patch_with_scope};
use super::{Ctx, read, store_error};
use crate::negotiate::BodyType;
use crate::objects::{self, UpdateScope};
use crate::path::ResourceTarget;
use crate::server::{Body, Server, json_response};

pub async fn handle(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
    sub: &str,
) -> Result<Response<Body>, StatusError> {
    let not_allowed =
        || StatusError::method_not_allowed(ctx.method.as_str(), &format!("{}/{sub}", t.res.plural));
    match (sub, &ctx.method) {
        ("status", &Method::GET) => read::get(server, t, ctx, name).await,
        ("status", &Method::PUT) => {
            let opts = WriteOptions::from_ctx(ctx)?;
            let body = ctx.body_for(t.res)?;
            let w = guaranteed_update(server, t, name, UpdateScope::Status, opts, |_| {
                Ok(body.clone())
            })
            .await?;
            Ok(json_response(StatusCode::OK, &w.object))
        }
        ("status", &Method::PATCH) => {
            let w = patch_with_scope(server, t, ctx, name, UpdateScope::Status).await?;
            Ok(json_response(StatusCode::OK, &w.object))
        }
        ("scale", &Method::GET) => {
            let (_, obj) = super::current(server, t, name).await?;
            Ok(json_response(StatusCode::OK, &scale_of(&obj)))
        }
        ("scale", &Method::PUT | &Method::PATCH) => scale_write(server, t, ctx, name).await,
        ("binding", &Method::POST) => bind(server, t, ctx, name).await,
        ("eviction", &Method::POST) => super::evict::evict(server, t, ctx, name).await,
        ("log", &Method::GET) => super::pod_log::log(server, t, ctx, name).await,
        ("token", &Method::POST) => super::token::create(server, t, ctx, name).await,
        _ => Err(not_allowed()),
    }
}

/// The selector of a Deployment/ReplicaSet in the string form Scale carries.
fn selector_string(obj: &Value) -> String {
    let sel = &obj["spec"]["selector"];
    match serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>(
        sel.clone(),
    ) {
        Ok(ls) => api::selector::LabelSelector::from_label_selector(&ls, "spec.selector")
            .map(|s| s.to_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The autoscaling/v1 Scale view of a scalable object.
fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(obj),
        },
    })
}

async fn scale_write(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let opts = WriteOptions::from_ctx(ctx)?;
    let is_patch = ctx.method == Method::PATCH;
    let ty = ctx.body_type()?;
    let body = if is_patch {
        ctx.body_json()?
    } else {
        ctx.body_as("autoscaling/v1", "Scale")?
    };
    let res = t.res;
    let w = guaranteed_update(server, t, name, UpdateScope::Main, opts, |old| {
        let current = scale_of(old);
        let desired = if is_patch {
            let ty = if ty == BodyType::StrategicMergePatch {
                BodyType::MergePatch
            } else {
                ty
            };
            write::apply_patch(res, &current, &body, ty)?
        } else {
            body.clone()
        };
        let replicas = desired["spec"]["replicas"].as_i64().unwrap_or(0);
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        // The Scale's resourceVersion is a precondition on the object.
        match objects::resource_version(&desired)? {
            Some(rv)
                if !is_patch
                    || desired["metadata"].get("resourceVersion")
                        != current["metadata"].get("resourceVersion") =>
            {
                objects::set_resource_version(&mut new, rv);
            }
            _ => {
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
            }
        }
        Ok(new)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &scale_of(&w.object)))
}

/// POST pods/<name>/binding: assign the pod to a node, once.
async fn bind(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let body = ctx.body_as("v1", "Binding")?;
    let node = registry::bind::binding_target(t.res, name, &body)?;
    let key = objects::key(t.res, t.namespace.as_deref(), name);
    for _ in 0..16 {
        let (kv, mut pod) = super::current(server, t, name).await?;
        registry::bind::bind(
            t.res,
            name,
            &mut pod,
            &node,
            registry::Moment::from_millis(Utc::now().timestamp_millis()),
        )?;
        match server
            .store
            .update(&key, objects::encode(&pod), Some(kv.mod_revision))
            .await
        {
            Ok(_) => {
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
                return Ok(json_response(StatusCode::CREATED, &status));
            }
            Err(StoreError::Conflict { actual, .. }) => {
                write::await_readable(server, actual).await;
                continue;
            }
            Err(e) => return Err(store_error(t, name, e)),
        }
    }
    Err(StatusError::conflict(t.res, name))
}
