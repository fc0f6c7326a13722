//! The request path's authorization step (upstream's `WithImpersonation` and
//! `WithAuthorization` filters): impersonation headers, then the decision, then 403.
//! Start at [`admit_request`].

use std::collections::BTreeMap;

use api::status::StatusError;
use http::request::Parts;

use super::{Attributes, request};
use crate::authn::{ANONYMOUS_USER, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP, UserInfo};
use crate::path::Target;
use crate::server::Server;

/// Create the bootstrap policy (when RBAC is on, as upstream's RBAC post-start hook) and fill
/// the authorizers' caches before the server answers.
pub async fn start(server: &Server) -> Result<(), StatusError> {
    if server.authorizer.has(super::Mode::Rbac) {
        super::bootstrap::ensure(server).await?;
    }
    if let Some(caches) = &server.authorizer.caches {
        caches
            .start(&server.store)
            .await
            .map_err(crate::handlers::store_failure)?;
    }
    Ok(())
}

/// The user a request acts as (the impersonated one, if it asked and may), authorized for
/// what it asks: `Err` with upstream's 403 otherwise.
pub fn admit_request(
    server: &Server,
    parts: &Parts,
    path: &str,
    target: Option<&Target>,
    query: &BTreeMap<String, String>,
    user: UserInfo,
) -> Result<UserInfo, StatusError> {
    let user = impersonate(server, &parts.headers, user)?;
    let a = request::attributes(&user, &parts.method, path, target, query);
    server.authorizer.check(&a)?;
    Ok(user)
}

fn header_values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// The `Impersonate-Extra-<key>` headers: key (percent-decoded, as upstream's
/// `unescapeExtraKey`) → values, in key order.
fn extra_headers(headers: &http::HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let Some(encoded) = name.as_str().strip_prefix("impersonate-extra-") else {
            continue;
        };
        let key = match percent_encoding::percent_decode_str(encoded).decode_utf8() {
            Ok(k) => k.into_owned(),
            Err(_) => encoded.to_string(),
        };
        if let Ok(v) = value.to_str() {
            out.entry(key).or_default().push(v.to_string());
        }
    }
    out
}

/// Upstream's impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`,
/// `Impersonate-Extra-<key>`): the requester needs `impersonate` on `users`/`serviceaccounts`,
/// `groups` and `uids` by name, and on `userextras/<key>` for each extra value.
fn impersonate(
    server: &Server,
    headers: &http::HeaderMap,
    requester: UserInfo,
) -> Result<UserInfo, StatusError> {
    let users = header_values(headers, "impersonate-user");
    let groups = header_values(headers, "impersonate-group");
    let uids = header_values(headers, "impersonate-uid");
    let extra = extra_headers(headers);
    if users.is_empty() {
        if !groups.is_empty() || !uids.is_empty() || !extra.is_empty() {
            let keys = extra.keys().map(|k| format!("userextras/{k}"));
            return Err(StatusError::internal(format!(
                "requested {:?} without impersonating a user",
                [groups, uids, keys.collect()].concat()
            )));
        }
        return Ok(requester);
    }
    let name = users[0].clone();
    let check_sub = |group: &str, resource: &str, sub: &str, namespace: &str, object: &str| {
        let a = Attributes {
            user: requester.name.clone(),
            groups: requester.groups.clone(),
            verb: "impersonate".into(),
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: object.into(),
            ..Attributes::default()
        };
        server.authorizer.check(&a)
    };
    let check = |group: &str, resource: &str, namespace: &str, object: &str| {
        check_sub(group, resource, "", namespace, object)
    };
    let sa = name
        .strip_prefix(crate::authz::rbac::SERVICE_ACCOUNT_USER_PREFIX)
        .and_then(|rest| rest.split_once(':'));
    match sa {
        Some((ns, sa_name)) => check("", "serviceaccounts", ns, sa_name)?,
        None => check("", "users", "", &name)?,
    }
    for g in &groups {
        check("", "groups", "", g)?;
    }
    for u in &uids {
        check("authentication.k8s.io", "uids", "", u)?;
    }
    for (key, values) in &extra {
        for v in values {
            check_sub("authentication.k8s.io", "userextras", key, "", v)?;
        }
    }
    let mut out_groups = groups;
    if let Some((ns, _)) = sa {
        for g in [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ] {
            if !out_groups.contains(&g) {
                out_groups.push(g);
            }
        }
    }
    let implied = match name.as_str() {
        ANONYMOUS_USER => UNAUTHENTICATED_GROUP,
        _ => AUTHENTICATED_GROUP,
    };
    if !out_groups.iter().any(|g| g == implied) {
        out_groups.push(implied.to_string());
    }
    Ok(UserInfo {
        name,
        uid: uids.into_iter().next().unwrap_or_default(),
        groups: out_groups,
        extra,
    })
}
