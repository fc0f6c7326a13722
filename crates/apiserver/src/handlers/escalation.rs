//! RBAC escalation prevention on the request path: for a create, replace or patch of a Role,
//! ClusterRole or binding, build the object the write would store, resolve the writer's rules
//! and the binding's role, and ask [`crate::authz::escalation::check`].
//!
//! Start at [`admit`]. Bodies that do not decode pass through: the write itself answers them.

use api::resources::{ResourceInfo, by_plural};
use api::status::StatusError;
use http::Method;
use serde_json::Value;

use super::Ctx;
use crate::authn::MASTERS_GROUP;
use crate::authz::escalation::{self, Resolved};
use crate::authz::rbac::Rule;
use crate::negotiate::BodyType;
use crate::path::ResourceTarget;
use crate::server::Server;

/// Refuse a write of an RBAC object that grants more than its writer holds (403, upstream's
/// text); everything else passes.
pub async fn admit(server: &Server, t: &ResourceTarget, ctx: &Ctx) -> Result<(), StatusError> {
    let user = &ctx.user;
    if !escalation::guards(t.res)
        || t.subresource.is_some()
        || user.groups.iter().any(|g| g == MASTERS_GROUP)
    {
        return Ok(());
    }
    let Some(obj) = candidate(server, t, ctx).await else {
        return Ok(());
    };
    let namespace = t.namespace.as_deref().unwrap_or_default();
    let role_ref_rules = match t.res.kind {
        "RoleBinding" | "ClusterRoleBinding" => role_ref_rules(server, namespace, &obj).await,
        _ => Ok(Vec::new()),
    };
    let resolved = Resolved {
        owner_rules: server
            .authorizer
            .rbac_rules(&user.name, &user.groups, namespace),
        role_ref_rules,
    };
    let url_name = t.name.as_deref().unwrap_or_default();
    escalation::check(
        &server.authorizer,
        user,
        t.res,
        namespace,
        url_name,
        &obj,
        &resolved,
    )
}

/// The object the request would store; `None` when there is nothing to check (another verb,
/// an undecodable body, or an update touching only garbage-collection fields, which upstream
/// lets through unchecked).
async fn candidate(server: &Server, t: &ResourceTarget, ctx: &Ctx) -> Option<Value> {
    let name = t.name.as_deref();
    match (&ctx.method, name) {
        (&Method::POST, None) => ctx.body_for(t.res).ok(),
        (&Method::PUT, Some(name)) => {
            let new = ctx.body_for(t.res).ok()?;
            match super::current(server, t, name).await {
                Ok((_, old)) if only_gc_fields(&old, &new) => None,
                _ => Some(new),
            }
        }
        (&Method::PATCH, Some(name)) => {
            let ty = ctx.body_type().ok()?;
            let patch_ty = match ty {
                BodyType::ApplyPatch => BodyType::Yaml,
                other => other,
            };
            let patch = crate::negotiate::decode_body(&ctx.body, patch_ty).ok()?;
            let (_, old) = super::current(server, t, name).await.ok()?;
            let new = super::apply_patch(t.res, &old, &patch, ty).ok()?;
            (!only_gc_fields(&old, &new)).then_some(new)
        }
        _ => None,
    }
}

/// Upstream `IsOnlyMutatingGCFields`: `new` equals `old` but for owner references and
/// finalizers (the stored resourceVersion aside).
fn only_gc_fields(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in ["ownerReferences", "finalizers", "resourceVersion"] {
                m.remove(key);
            }
        }
        v
    };
    strip(old) == strip(new)
}

fn rbac_resource(plural: &str) -> &'static ResourceInfo {
    by_plural(api::admit::rbac::GROUP, plural).expect("RBAC resources are served")
}

/// The rules of the role a binding references, read from the store (as upstream's rule
/// resolver reads its registry), aggregated ClusterRoles as RBAC computes them; upstream's
/// not-found text when there is no such role.
async fn role_ref_rules(
    server: &Server,
    namespace: &str,
    binding: &Value,
) -> Result<Vec<Rule>, String> {
    let text = |p: &str| {
        binding
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (kind, name) = (text("/roleRef/kind"), text("/roleRef/name"));
    let (res, ns) = match kind {
        "Role" => (rbac_resource("roles"), Some(namespace)),
        "ClusterRole" => (rbac_resource("clusterroles"), None),
        other => return Err(format!("unsupported role reference kind: {other:?}")),
    };
    let key = crate::objects::key(res, ns, name);
    let stored = server.store.get(&key).await.map_err(|e| e.to_string())?;
    let Some(kv) = stored else {
        return Err(StatusError::not_found(res, name).message);
    };
    let role = crate::objects::decode(&kv).map_err(|e| e.message)?;
    if kind == "ClusterRole"
        && role.get("aggregationRule").is_some_and(|v| !v.is_null())
        && let Some(rules) = server.authorizer.cluster_role_rules(name)
    {
        return Ok(rules);
    }
    Ok(role
        .get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Rule::from_json).collect())
        .unwrap_or_default())
}
