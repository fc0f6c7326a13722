//! A request's authorization attributes, as upstream's `RequestInfoFactory` derives them:
//! the verb from the method (get/list/watch/create/update/patch/delete/deletecollection), the
//! resource, subresource, namespace and name from the path, or the path itself for a
//! non-resource URL. Start at [`attributes`].

use std::collections::BTreeMap;

use http::Method;

use super::Attributes;
use crate::authn::UserInfo;
use crate::path::Target;

/// The attributes of `method` on `path` (parsed as `target`) with `query`, for `user`.
pub fn attributes(
    user: &UserInfo,
    method: &Method,
    path: &str,
    target: Option<&Target>,
    query: &BTreeMap<String, String>,
) -> Attributes {
    let base = Attributes {
        user: user.name.clone(),
        groups: user.groups.clone(),
        ..Attributes::default()
    };
    let Some(Target::Resource(t)) = target else {
        return Attributes {
            verb: method.as_str().to_ascii_lowercase(),
            path: Some(path.to_string()),
            ..base
        };
    };
    let watch = t.watch_path || query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let verb = match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if t.name.is_some() => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if t.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    };
    let mut name = t.name.clone().unwrap_or_default();
    if name.is_empty() && matches!(verb, "list" | "watch") {
        // A list or watch of one object by field selector is authorized for that name.
        if let Some(n) = query
            .get("fieldSelector")
            .and_then(|s| s.strip_prefix("metadata.name="))
            .filter(|n| !n.contains(','))
        {
            name = n.to_string();
        }
    }
    let mut namespace = t.namespace.clone().unwrap_or_default();
    if t.res.group.is_empty() && t.res.plural == "namespaces" && !name.is_empty() {
        // `/api/v1/namespaces/NAME` is a request in that namespace.
        namespace = name.clone();
    }
    Attributes {
        verb: verb.to_string(),
        namespace,
        api_group: t.res.group.to_string(),
        resource: t.res.plural.to_string(),
        subresource: t.subresource.clone().unwrap_or_default(),
        name,
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, path: &str, query: &[(&str, &str)]) -> Attributes {
        let q = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let t = crate::path::parse(path).ok();
        attributes(&UserInfo::default(), &method, path, t.as_ref(), &q)
    }

    #[test]
    fn verbs_come_from_method_and_path() {
        let a = attrs(Method::GET, "/api/v1/namespaces/default/pods", &[]);
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("list", "default"));
        let a = attrs(Method::GET, "/api/v1/pods", &[("watch", "true")]);
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("watch", ""));
        let a = attrs(Method::PATCH, "/api/v1/nodes/n1/status", &[]);
        assert_eq!(
            (
                a.verb.as_str(),
                a.resource.as_str(),
                a.subresource.as_str(),
                a.name.as_str()
            ),
            ("patch", "nodes", "status", "n1")
        );
        let a = attrs(
            Method::DELETE,
            "/apis/apps/v1/namespaces/x/deployments",
            &[],
        );
        assert_eq!(
            (a.verb.as_str(), a.api_group.as_str()),
            ("deletecollection", "apps")
        );
        let a = attrs(Method::GET, "/api/v1/namespaces/team", &[]);
        assert_eq!((a.namespace.as_str(), a.name.as_str()), ("team", "team"));
        let a = attrs(
            Method::GET,
            "/api/v1/namespaces/x/secrets",
            &[("fieldSelector", "metadata.name=s"), ("watch", "1")],
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "s"));
        let a = attrs(Method::GET, "/healthz", &[]);
        assert_eq!(
            (a.verb.as_str(), a.path.as_deref()),
            ("get", Some("/healthz"))
        );
    }
}
