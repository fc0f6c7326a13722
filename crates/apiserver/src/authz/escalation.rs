//! RBAC escalation prevention (upstream `pkg/registry/rbac/validation` and the policy-based
//! role and binding storage): a Role or ClusterRole may only grant what its writer holds
//! (unless they may `escalate` it), a binding may only bind a role whose rules its writer holds
//! (unless they may `bind` it).
//!
//! Start at [`check`]: pure, given the authorizer, the writer's RBAC rules and the rules of the
//! role a binding references. [`covers`] is upstream's `Covers` (each rule broken down to one
//! verb × group × resource × name), [`compact_string`] its rule text in the error message.

use api::resources::ResourceInfo;
use api::status::StatusError;
use serde_json::Value;

use super::rbac::{Rule, rules_of};
use super::{Attributes, Authorizer, Decision};
use crate::authn::{MASTERS_GROUP, UserInfo};

/// What the writer holds and what a binding's role grants, resolved by the caller.
pub struct Resolved {
    /// The writer's RBAC rules in the object's namespace (cluster-wide ones included).
    pub owner_rules: Vec<Rule>,
    /// A binding's referenced role: its rules, or upstream's text for why there are none
    /// (`roles.rbac.authorization.k8s.io "x" not found`). Unused for roles.
    pub role_ref_rules: Result<Vec<Rule>, String>,
}

/// One rule split into rules of one verb and one group, resource, name or URL each (upstream
/// `BreakdownRule`).
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    let one = |s: &String| vec![s.clone()];
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let base = Rule {
                    verbs: one(verb),
                    api_groups: one(group),
                    resources: one(resource),
                    ..Rule::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    for name in &rule.resource_names {
                        out.push(Rule {
                            resource_names: one(name),
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(Rule {
                verbs: one(verb),
                non_resource_urls: one(url),
                ..Rule::default()
            });
        }
    }
    out
}

fn has(set: &[String], want: &str) -> bool {
    set.iter().any(|s| s == want)
}

fn has_all(set: &[String], wants: &[String]) -> bool {
    wants.iter().all(|w| has(set, w))
}

/// Upstream `resourceCoversAll`: `*`, the resource itself, or `*/SUB` for a subresource.
fn resources_cover(owner: &[String], wants: &[String]) -> bool {
    has(owner, "*")
        || wants.iter().all(|w| {
            has(owner, w)
                || w.split_once('/')
                    .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
        })
}

fn url_covers(owner: &str, path: &str) -> bool {
    owner == path
        || owner
            .strip_suffix('*')
            .is_some_and(|p| path.starts_with(p.trim_end_matches('*')))
}

/// Upstream `ruleCovers`: whether `owner` grants everything `sub` (one broken-down rule) does.
fn rule_covers(owner: &Rule, sub: &Rule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resources_cover(&owner.resources, &sub.resources);
    let urls = sub
        .non_resource_urls
        .iter()
        .all(|p| owner.non_resource_urls.iter().any(|o| url_covers(o, p)));
    let names = match (
        sub.resource_names.is_empty(),
        owner.resource_names.is_empty(),
    ) {
        (_, true) => true,
        (true, false) => false,
        (false, false) => has_all(&owner.resource_names, &sub.resource_names),
    };
    verbs && groups && resources && names && urls
}

/// Upstream `Covers`: the broken-down parts of `servant` no rule of `owner` covers.
pub fn covers(owner: &[Rule], servant: &[Rule]) -> Vec<Rule> {
    servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect()
}

/// Upstream `CompactRules`: rules of one group, one resource and at most one name merge
/// their verbs; the rest stay as they are.
fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut simple: Vec<Rule> = Vec::new();
    for r in rules {
        let is_simple = r.resource_names.len() <= 1
            && r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        let same = simple.iter_mut().find(|s| {
            s.api_groups == r.api_groups
                && s.resources == r.resources
                && s.resource_names == r.resource_names
        });
        match same {
            Some(s) => {
                for v in r.verbs {
                    if !s.verbs.contains(&v) {
                        s.verbs.push(v);
                    }
                }
            }
            None => simple.push(r),
        }
    }
    out.extend(simple);
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let parts: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", parts.join(" "))
}

/// Upstream `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`.
pub fn compact_string(r: &Rule) -> String {
    let fields = [
        ("APIGroups", &r.api_groups),
        ("Resources", &r.resources),
        ("NonResourceURLs", &r.non_resource_urls),
        ("ResourceNames", &r.resource_names),
        ("Verbs", &r.verbs),
    ];
    let parts: Vec<String> = fields
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}:{}", go_quoted(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Upstream `ConfirmNoEscalation`: `Err` with upstream's text when `rules` grant anything
/// `owner` does not hold.
pub fn confirm_no_escalation(
    user: &UserInfo,
    owner: &[Rule],
    rules: &[Rule],
) -> Result<(), String> {
    let missing = covers(owner, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = compact(missing).iter().map(compact_string).collect();
    lines.sort();
    lines.dedup();
    Err(format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted(&user.groups),
        lines.join("\n")
    ))
}

/// Full authority (`*` on everything): what setting an `aggregationRule` needs.
fn full_authority() -> Vec<Rule> {
    let all = vec!["*".to_string()];
    vec![
        Rule {
            verbs: all.clone(),
            api_groups: all.clone(),
            resources: all.clone(),
            ..Rule::default()
        },
        Rule {
            verbs: all.clone(),
            non_resource_urls: all,
            ..Rule::default()
        },
    ]
}

/// The string at JSON `pointer` in `v` (empty when absent).
pub(crate) fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether `user` may `verb` the RBAC resource `resource` named `name` in `namespace`.
fn allowed(
    authz: &dyn Authorizer,
    user: &UserInfo,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> bool {
    let a = Attributes {
        user: user.name.clone(),
        groups: user.groups.clone(),
        verb: verb.to_string(),
        namespace: namespace.to_string(),
        api_group: api::admit::rbac::GROUP.to_string(),
        resource: resource.to_string(),
        name: name.to_string(),
        ..Attributes::default()
    };
    authz.authorize(&a).0 == Decision::Allow
}

/// Whether `res` is one of the four RBAC kinds this check guards.
pub fn guards(res: &ResourceInfo) -> bool {
    res.group == api::admit::rbac::GROUP
}

/// Check a create or update of the RBAC object `obj` (`res` in `namespace`) by `user`, as
/// upstream's policy-based storage does; `url_name` is the name on the URL (empty for a
/// create), the one upstream's `escalate` check asks about.
pub fn check(
    authz: &dyn Authorizer,
    user: &UserInfo,
    res: &ResourceInfo,
    namespace: &str,
    url_name: &str,
    obj: &Value,
    resolved: &Resolved,
) -> Result<(), StatusError> {
    if user.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Ok(());
    }
    let name = text(obj, "/metadata/name");
    let forbid = |why: String| StatusError::forbidden(res, name, &why);
    match res.kind {
        "Role" | "ClusterRole" => {
            if allowed(authz, user, "escalate", res.plural, namespace, url_name) {
                return Ok(());
            }
            confirm_no_escalation(user, &resolved.owner_rules, &rules_of(obj)).map_err(forbid)?;
            let aggregates = obj.get("aggregationRule").is_some_and(|v| !v.is_null());
            if aggregates
                && confirm_no_escalation(user, &resolved.owner_rules, &full_authority()).is_err()
            {
                return Err(forbid(
                    "must have cluster-admin privileges to use the aggregationRule".into(),
                ));
            }
            Ok(())
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let ref_kind = text(obj, "/roleRef/kind");
            let ref_name = text(obj, "/roleRef/name");
            let ref_resource = match ref_kind {
                "Role" => "roles",
                "ClusterRole" => "clusterroles",
                other => {
                    return Err(forbid(format!(
                        "unsupported role reference kind: {other:?}"
                    )));
                }
            };
            if allowed(authz, user, "bind", ref_resource, namespace, ref_name) {
                return Ok(());
            }
            let rules = resolved
                .role_ref_rules
                .as_ref()
                .map_err(|e| forbid(e.clone()))?;
            confirm_no_escalation(user, &resolved.owner_rules, rules).map_err(forbid)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "escalation_tests.rs"]
mod tests;
