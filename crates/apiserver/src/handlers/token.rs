//! `POST serviceaccounts/<name>/token`: the TokenRequest subresource (upstream
//! pkg/registry/core/serviceaccount/storage/token.go): validates the request, looks up the
//! ServiceAccount and a bound Pod, and answers 201 with a signed token.
//! Start at [`create`].

use std::sync::Arc;

use api::status::{Cause, StatusError};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Ctx, current};
use crate::authn::jwt::Ref;
use crate::authn::serviceaccount::{Grant, unix_seconds};
use crate::path::ResourceTarget;
use crate::server::{Body, Server, json_response};

/// upstream's `authentication.k8s.io/v1` default `expirationSeconds` (one hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest token upstream issues (ValidateTokenRequest: 10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest (2^32 s).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

const API_VERSION: &str = "authentication.k8s.io/v1";

/// The `TokenRequest` kind for error messages (`TokenRequest.authentication.k8s.io "x" is
/// invalid: …`).
static TOKEN_REQUEST: api::resources::ResourceInfo = api::resources::ResourceInfo {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenRequest",
    plural: "tokenrequests",
    singular: "tokenrequest",
    namespaced: true,
    short_names: &[],
    subresources: &[],
    categories: &[],
};

/// The request's `spec.expirationSeconds` (defaulted) checked as upstream's
/// ValidateTokenRequest.
fn expiration_seconds(name: &str, spec: &Value) -> Result<i64, StatusError> {
    let v = &spec["expirationSeconds"];
    let secs = if v.is_null() {
        DEFAULT_EXPIRATION_SECONDS
    } else {
        v.as_i64().ok_or_else(|| {
            StatusError::bad_request("spec.expirationSeconds must be an integer".to_string())
        })?
    };
    let field = "spec.expirationSeconds";
    let cause = if secs < MIN_EXPIRATION_SECONDS {
        Cause::invalid(
            field,
            &json!(secs),
            "may not specify a duration less than 10 minutes",
        )
    } else if secs > MAX_EXPIRATION_SECONDS {
        Cause::invalid(
            field,
            &json!(secs),
            "may not specify a duration larger than 2^32 seconds",
        )
    } else {
        return Ok(secs);
    };
    Err(StatusError::invalid(&TOKEN_REQUEST, name, vec![cause]))
}

/// The Pod a `spec.boundObjectRef` names, as a claim ref (with its node).
async fn bound_pod(
    server: &Arc<Server>,
    ns: &str,
    sa_name: &str,
    bound: &Value,
) -> Result<Option<(Ref, Option<Ref>)>, StatusError> {
    if bound.is_null() {
        return Ok(None);
    }
    let kind = bound["kind"].as_str().unwrap_or_default();
    let api_version = bound["apiVersion"].as_str().unwrap_or("v1");
    if kind != "Pod" || api_version != "v1" {
        return Err(StatusError::bad_request(format!(
            "cannot bind token for serviceaccount {sa_name:?} to object of kind {:?} (only v1 Pod is supported)",
            format!("{api_version}, Kind={kind}")
        )));
    }
    let name = bound["name"].as_str().unwrap_or_default();
    let pods = api::resources::by_plural("", "pods")
        .ok_or_else(|| StatusError::internal("no pods resource"))?;
    let target = ResourceTarget {
        res: pods,
        namespace: Some(ns.to_string()),
        name: Some(name.to_string()),
        subresource: None,
        watch_path: false,
    };
    let (_, pod) = current(server, &target, name).await?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty())
        && want != uid
    {
        return Err(StatusError::conflict_with(
            pods,
            name,
            &format!(
                "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    let node = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(|n| Ref {
            name: n.to_string(),
            uid: String::new(),
        });
    let pod_ref = Ref {
        name: name.to_string(),
        uid: uid.to_string(),
    };
    Ok(Some((pod_ref, node)))
}

/// POST serviceaccounts/<name>/token.
pub async fn create(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let Some(issuer) = server.token_issuer.as_ref() else {
        // Upstream installs the subresource only with a signing key.
        return Err(StatusError::path_not_found());
    };
    let mut req = ctx.body_as(API_VERSION, "TokenRequest")?;
    let ns = t.namespace.clone().unwrap_or_default();
    let meta = &req["metadata"];
    if meta["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return Err(StatusError::bad_request(
            "name in URL does not match name in TokenRequest body",
        ));
    }
    if meta["namespace"]
        .as_str()
        .is_some_and(|n| !n.is_empty() && n != ns)
    {
        return Err(StatusError::bad_request(
            "namespace in URL does not match namespace in TokenRequest body",
        ));
    }
    let expiration = expiration_seconds(name, &req["spec"])?;
    let (_, sa) = current(server, t, name).await?;
    let bound = bound_pod(server, &ns, name, &req["spec"]["boundObjectRef"]).await?;
    let mut audiences: Vec<String> = req["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = issuer.audiences.clone();
    }
    let jti = {
        let mut rng = server.rng.lock().unwrap_or_else(|e| e.into_inner());
        crate::objects::new_uid(&mut *rng)
    };
    let (pod, node) = bound.unzip();
    let grant = Grant {
        namespace: ns.clone(),
        service_account: Ref {
            name: name.to_string(),
            uid: sa["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        },
        pod,
        node: node.flatten(),
        audiences: audiences.clone(),
        expiration_seconds: expiration,
        jti,
    };
    let now = std::time::SystemTime::now();
    let token = issuer
        .issue(&grant, unix_seconds(now))
        .map_err(StatusError::internal)?;
    let expires =
        chrono::DateTime::<chrono::Utc>::from(now) + chrono::Duration::seconds(expiration);
    req["kind"] = json!("TokenRequest");
    req["apiVersion"] = json!(API_VERSION);
    req["metadata"]["name"] = json!(name);
    req["metadata"]["namespace"] = json!(ns);
    req["metadata"]["creationTimestamp"] = Value::Null;
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(expiration);
    if req["spec"]["boundObjectRef"].is_null() {
        req["spec"]["boundObjectRef"] = Value::Null;
    }
    req["status"] = json!({
        "token": token,
        "expirationTimestamp": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    Ok(json_response(StatusCode::CREATED, &req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_is_defaulted_and_bounded_with_upstreams_texts() {
        assert_eq!(expiration_seconds("app", &json!({})), Ok(3600));
        assert_eq!(
            expiration_seconds("app", &json!({"expirationSeconds": 600})),
            Ok(600)
        );
        let e = expiration_seconds("app", &json!({"expirationSeconds": 599})).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "TokenRequest.authentication.k8s.io \"app\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        let e =
            expiration_seconds("app", &json!({"expirationSeconds": (1i64 << 32) + 1})).unwrap_err();
        assert_eq!(e.code, 422);
    }
}
