//! Parses a request URL into what it addresses: a discovery document or a resource request.
//!
//! Start at [`parse`]; it is pure (no I/O) and tested below.

use std::collections::BTreeMap;

use api::resources::{self, ResourceInfo};
use api::status::StatusError;

use crate::health::Probe;

/// What a URL path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Version,
    /// `/healthz`, `/livez`, `/readyz`
    Healthz(crate::health::Probe),
    /// `/metrics` (Prometheus text)
    Metrics,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    ResourceList {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiV3Index,
    /// `/openapi/v3/<path>` e.g. `api/v1`, `apis/apps/v1`
    OpenApiV3(String),
    Resource(ResourceTarget),
}

/// A request for a collection, an object or one of its subresources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceTarget {
    pub res: &'static ResourceInfo,
    /// `None`: all namespaces (list/watch) or a cluster-scoped resource.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Legacy `/api/v1/watch/...` form.
    pub watch_path: bool,
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

/// Parse a URL path (without query).
pub fn parse(path: &str) -> Result<Target, StatusError> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Ok(Target::Version),
        ["healthz"] => Ok(Target::Healthz(Probe::Healthz)),
        ["livez"] => Ok(Target::Healthz(Probe::Livez)),
        ["readyz"] => Ok(Target::Healthz(Probe::Readyz)),
        ["metrics"] => Ok(Target::Metrics),
        ["api"] => Ok(Target::CoreVersions),
        ["apis"] => Ok(Target::Groups),
        ["openapi", "v2"] => Ok(Target::OpenApiV2),
        ["openapi", "v3"] => Ok(Target::OpenApiV3Index),
        ["openapi", "v3", rest @ ..] if !rest.is_empty() => Ok(Target::OpenApiV3(rest.join("/"))),
        ["apis", group] if resources::groups().contains(group) => {
            Ok(Target::Group(group.to_string()))
        }
        ["api", "v1"] => Ok(Target::ResourceList {
            group: String::new(),
            version: "v1".into(),
        }),
        ["apis", group, "v1"] if resources::groups().contains(group) => Ok(Target::ResourceList {
            group: group.to_string(),
            version: "v1".into(),
        }),
        ["api", "v1", rest @ ..] => resource_target("", rest),
        ["apis", group, "v1", rest @ ..] => resource_target(group, rest),
        _ => Err(StatusError::path_not_found()),
    }
}

fn resource_target(group: &str, rest: &[&str]) -> Result<Target, StatusError> {
    let (watch_path, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let lookup =
        |plural: &str| resources::by_plural(group, plural).ok_or_else(StatusError::path_not_found);
    let t = match rest {
        // /namespaces/<ns>/<plural>[/<name>[/<sub>]]
        ["namespaces", ns, plural, tail @ ..] if group_has_namespaced(group, plural) => {
            let res = lookup(plural)?;
            let (name, subresource) = name_and_sub(tail)?;
            ResourceTarget {
                res,
                namespace: Some(ns.to_string()),
                name,
                subresource,
                watch_path,
            }
        }
        // /<plural>[/<name>[/<sub>]]
        [plural, tail @ ..] => {
            let res = lookup(plural)?;
            let (name, subresource) = name_and_sub(tail)?;
            if res.namespaced && name.is_some() {
                // A namespaced object must be addressed inside its namespace.
                return Err(StatusError::path_not_found());
            }
            ResourceTarget {
                res,
                namespace: None,
                name,
                subresource,
                watch_path,
            }
        }
        [] => return Err(StatusError::path_not_found()),
    };
    if let Some(sub) = &t.subresource
        && !t.res.subresources.contains(&sub.as_str())
    {
        return Err(StatusError::path_not_found());
    }
    Ok(Target::Resource(t))
}

fn group_has_namespaced(group: &str, plural: &str) -> bool {
    resources::by_plural(group, plural).is_some_and(|r| r.namespaced)
}

type NameSub = (Option<String>, Option<String>);

fn name_and_sub(tail: &[&str]) -> Result<NameSub, StatusError> {
    match tail {
        [] => Ok((None, None)),
        [name] => Ok((Some(name.to_string()), None)),
        [name, sub] => Ok((Some(name.to_string()), Some(sub.to_string()))),
        _ => Err(StatusError::path_not_found()),
    }
}

/// Decoded query parameters (last value wins, as Go's `url.Values.Get` takes the first; kubectl
/// never repeats one).
pub fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(q) = query else { return out };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| decode(&s.replace('+', " "));
        out.entry(dec(k)).or_insert_with(|| dec(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceTarget {
        match parse(path).unwrap() {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let t = res("/api/v1/namespaces/default/services/web/status");
        assert_eq!(t.res.plural, "services");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.subresource.as_deref(), Some("status"));

        let all = res("/api/v1/pods");
        assert_eq!(all.namespace, None);
        assert_eq!(all.name, None);

        let ns = res("/api/v1/namespaces/kube-system");
        assert_eq!(ns.res.plural, "namespaces");
        assert_eq!(ns.name.as_deref(), Some("kube-system"));

        let d = res("/apis/apps/v1/namespaces/x/deployments/web/scale");
        assert_eq!(d.res.kind, "Deployment");
        assert_eq!(d.subresource.as_deref(), Some("scale"));

        let w = res("/api/v1/watch/namespaces/default/pods");
        assert!(w.watch_path);
        assert_eq!(w.res.plural, "pods");
    }

    #[test]
    fn unknown_paths_are_404() {
        for p in [
            "/api/v2/pods",
            "/api/v1/widgets",
            "/api/v1/namespaces/default/services/web/bogus",
            "/apis/apps/v1/deployments/web",
            "/apis/unknown.io/v1",
        ] {
            assert_eq!(parse(p).unwrap_err().code, 404, "{p}");
        }
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(parse("/api").unwrap(), Target::CoreVersions);
        assert_eq!(parse("/apis/apps").unwrap(), Target::Group("apps".into()));
        assert_eq!(
            parse("/openapi/v3/apis/apps/v1").unwrap(),
            Target::OpenApiV3("apis/apps/v1".into())
        );
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&x"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["x"], "");
    }
}
