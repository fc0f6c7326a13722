//! RBAC escalation prevention on the request path: for a create, replace or patch of a Role,
//! ClusterRole or binding, resolve the writer's rules and the binding's role and ask
//! [`crate::authz::escalation::check`] about the object the write stores.
//!
//! Start at [`admit`] (creates) and [`UpdateGuard`] (replace and patch, checked inside the
//! read-modify-write). Bodies that do not decode pass through: the write itself answers them.

use api::resources::{ResourceInfo, by_plural};
use api::status::StatusError;
use http::Method;
use serde_json::Value;

use super::Ctx;
use crate::authn::MASTERS_GROUP;
use crate::authz::escalation::{self, Resolved};
use crate::authz::rbac::Rule;
use crate::path::ResourceTarget;
use crate::server::Server;

/// Refuse a create of an RBAC object that grants more than its writer holds (403, upstream's
/// text); everything else passes. Replace and patch are checked by [`UpdateGuard`] inside the
/// read-modify-write, on the very object stored.
pub async fn admit(server: &Server, t: &ResourceTarget, ctx: &Ctx) -> Result<(), StatusError> {
    if ctx.method != Method::POST || t.name.is_some() || !guarded(t, ctx) {
        return Ok(());
    }
    let Ok(obj) = ctx.body_for(t.res) else {
        return Ok(());
    };
    let guard = UpdateGuard::resolve(server, t, ctx, &obj).await;
    guard.check_new(server, &obj)
}

/// Whether a write of `t` by `ctx`'s user is checked at all: RBAC objects (not their
/// subresources), and never for `system:masters`, whom the check lets through anyway (so no
/// rules are resolved and no role is read for them).
fn guarded(t: &ResourceTarget, ctx: &Ctx) -> bool {
    escalation::guards(t.res)
        && t.subresource.is_none()
        && !ctx.user.groups.iter().any(|g| g == MASTERS_GROUP)
}

/// The escalation check of a replace or patch of an RBAC object, resolved before the
/// read-modify-write (the writer's rules; a binding's role, whose reference cannot change on
/// update) and run inside it on each candidate, so what is checked is what is stored.
pub struct UpdateGuard {
    user: crate::authn::UserInfo,
    res: &'static ResourceInfo,
    namespace: String,
    url_name: String,
    resolved: Resolved,
}

impl UpdateGuard {
    /// The guard for a PUT or PATCH of `t`, or `None` when the object is not an RBAC object
    /// (or a subresource of one).
    pub async fn for_update(
        server: &Server,
        t: &ResourceTarget,
        ctx: &Ctx,
    ) -> Result<Option<UpdateGuard>, StatusError> {
        if !guarded(t, ctx) {
            return Ok(None);
        }
        let name = t.name.as_deref().unwrap_or_default();
        // A binding's role reference: the replacing body's, or the stored object's for a patch
        // (a changed reference is refused by validation either way).
        let binding = match t.res.kind {
            "RoleBinding" | "ClusterRoleBinding" if ctx.method == Method::PUT => {
                ctx.body_for(t.res).unwrap_or_default()
            }
            "RoleBinding" | "ClusterRoleBinding" => super::current(server, t, name).await?.1,
            _ => Value::Null,
        };
        Ok(Some(UpdateGuard::resolve(server, t, ctx, &binding).await))
    }

    async fn resolve(server: &Server, t: &ResourceTarget, ctx: &Ctx, obj: &Value) -> UpdateGuard {
        let user = &ctx.user;
        let namespace = t.namespace.clone().unwrap_or_default();
        let role_ref_rules = match t.res.kind {
            "RoleBinding" | "ClusterRoleBinding" => role_ref_rules(server, &namespace, obj).await,
            _ => Ok(Vec::new()),
        };
        let resolved = Resolved {
            owner_rules: server
                .authorizer
                .rbac_rules(&user.name, &user.groups, &namespace),
            role_ref_rules,
        };
        UpdateGuard {
            user: user.clone(),
            res: t.res,
            namespace,
            url_name: t.name.clone().unwrap_or_default(),
            resolved,
        }
    }

    /// Check `new` replacing `old` (upstream lets an update of only garbage-collection fields
    /// through unchecked).
    pub fn check(&self, server: &Server, old: &Value, new: &Value) -> Result<(), StatusError> {
        if only_gc_fields(old, new) {
            return Ok(());
        }
        self.check_new(server, new)
    }

    /// Check `obj` as a new object (a create, or a replace that creates).
    pub fn check_new(&self, server: &Server, obj: &Value) -> Result<(), StatusError> {
        escalation::check(
            &server.authorizer,
            &self.user,
            self.res,
            &self.namespace,
            &self.url_name,
            obj,
            &self.resolved,
        )
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
    let text = |p: &str| escalation::text(binding, p);
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
    if kind == "ClusterRole" && role.get("aggregationRule").is_some_and(|v| !v.is_null()) {
        // Only the RBAC cache knows an aggregated role's rules; until it has seen the role,
        // refuse rather than compare against the stored (usually empty) rules.
        return server
            .authorizer
            .cluster_role_rules(name)
            .ok_or_else(|| StatusError::not_found(res, name).message);
    }
    Ok(crate::authz::rbac::rules_of(&role))
}
