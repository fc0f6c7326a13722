use serde_json::json;

use super::*;
use crate::authz::{NonResourceRule, ResourceRule, Rules};

fn rule(v: Value) -> Rule {
    Rule::from_json(&v)
}

fn alice() -> UserInfo {
    UserInfo {
        name: "alice".into(),
        groups: vec!["system:authenticated".into()],
        ..UserInfo::default()
    }
}

/// An authorizer allowing exactly the `(verb, resource, name)` triples given.
struct Grants(Vec<(&'static str, &'static str, &'static str)>);

impl Authorizer for Grants {
    fn authorize(&self, a: &Attributes) -> (Decision, String) {
        let hit = self
            .0
            .iter()
            .any(|(v, r, n)| *v == a.verb && *r == a.resource && *n == a.name);
        match hit {
            true => (Decision::Allow, String::new()),
            false => (Decision::NoOpinion, String::new()),
        }
    }

    fn rules_for(&self, _: &str, _: &[String], _: &str) -> Rules {
        Rules {
            resource: Vec::<ResourceRule>::new(),
            non_resource: Vec::<NonResourceRule>::new(),
            incomplete: false,
        }
    }
}

fn res(plural: &str) -> &'static ResourceInfo {
    api::resources::by_plural(api::admit::rbac::GROUP, plural).unwrap()
}

#[test]
fn covers_breaks_rules_down_and_honours_wildcards() {
    let owner = vec![
        rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]})),
        rule(json!({"verbs": ["*"], "apiGroups": ["apps"], "resources": ["*/scale"]})),
        rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]}),
        ),
        rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/*"]})),
    ];
    let ok = |v: Value| covers(&owner, &[rule(v)]).is_empty();
    assert!(ok(
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})
    ));
    assert!(ok(
        json!({"verbs": ["update"], "apiGroups": ["apps"], "resources": ["deployments/scale"]})
    ));
    assert!(ok(
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]})
    ));
    assert!(ok(
        json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/etcd"]})
    ));
    assert!(!ok(
        json!({"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]})
    ));
    assert!(!ok(
        json!({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments"]})
    ));
    // A name-restricted grant does not cover every name.
    assert!(!ok(
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]})
    ));
    assert!(!ok(
        json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]})
    ));
    // Only the uncovered parts are reported.
    let missing = covers(
        &owner,
        &[rule(
            json!({"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]}),
        )],
    );
    assert_eq!(
        missing,
        vec![rule(
            json!({"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]})
        )]
    );
}

#[test]
fn error_text_is_upstreams_compacted_and_sorted() {
    let owner = vec![rule(
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
    )];
    let wanted = vec![
        rule(
            json!({"verbs": ["list", "watch"], "apiGroups": [""], "resources": ["pods", "nodes"]}),
        ),
        rule(json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]})),
    ];
    let err = confirm_no_escalation(&alice(), &owner, &wanted).unwrap_err();
    assert_eq!(
        err,
        "user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"list\" \"watch\"]}\n\
         {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"list\" \"watch\"]}\n\
         {NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"
    );
    assert_eq!(confirm_no_escalation(&alice(), &owner, &owner[..1]), Ok(()));
}

#[test]
fn roles_need_the_rules_or_escalate() {
    let role = json!({"metadata": {"name": "r", "namespace": "ns"},
        "rules": [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]});
    let holds = |rules: Vec<Rule>| Resolved {
        owner_rules: rules,
        role_ref_rules: Ok(Vec::new()),
    };
    let none = Grants(vec![]);
    let err = check(
        &none,
        &alice(),
        res("roles"),
        "ns",
        "",
        &role,
        &holds(vec![]),
    )
    .unwrap_err();
    assert_eq!(err.code, 403);
    assert!(
        err.message.starts_with(
            "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        ),
        "{}",
        err.message
    );
    let held = vec![rule(
        json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}),
    )];
    check(
        &none,
        &alice(),
        res("roles"),
        "ns",
        "",
        &role,
        &holds(held.clone()),
    )
    .unwrap();
    let escalate = Grants(vec![("escalate", "roles", "")]);
    check(
        &escalate,
        &alice(),
        res("roles"),
        "ns",
        "",
        &role,
        &holds(vec![]),
    )
    .unwrap();
    // An aggregationRule can gather anything: it needs full authority.
    let agg = json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": []}});
    let err = check(
        &none,
        &alice(),
        res("clusterroles"),
        "",
        "",
        &agg,
        &holds(held),
    )
    .unwrap_err();
    assert!(
        err.message.ends_with(
            "is forbidden: must have cluster-admin privileges to use the aggregationRule"
        )
    );
    let mut admin = alice();
    admin.groups.push(MASTERS_GROUP.into());
    check(
        &none,
        &admin,
        res("clusterroles"),
        "",
        "",
        &agg,
        &holds(vec![]),
    )
    .unwrap();
}

#[test]
fn bindings_need_the_roles_rules_or_bind() {
    let binding = json!({"metadata": {"name": "b", "namespace": "ns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "bob"}]});
    let granted = vec![rule(
        json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
    )];
    let resolved = |owner: Vec<Rule>| Resolved {
        owner_rules: owner,
        role_ref_rules: Ok(granted.clone()),
    };
    let none = Grants(vec![]);
    let rb = res("rolebindings");
    let err = check(&none, &alice(), rb, "ns", "", &binding, &resolved(vec![])).unwrap_err();
    assert!(
        err.message.starts_with(
            "rolebindings.rbac.authorization.k8s.io \"b\" is forbidden: user \"alice\""
        ),
        "{}",
        err.message
    );
    check(
        &none,
        &alice(),
        rb,
        "ns",
        "",
        &binding,
        &resolved(granted.clone()),
    )
    .unwrap();
    let bind = Grants(vec![("bind", "clusterroles", "admin")]);
    check(&bind, &alice(), rb, "ns", "", &binding, &resolved(vec![])).unwrap();
    // A missing role is refused with the resolver's text.
    let missing = Resolved {
        owner_rules: granted.clone(),
        role_ref_rules: Err("clusterroles.rbac.authorization.k8s.io \"admin\" not found".into()),
    };
    let err = check(&none, &alice(), rb, "ns", "", &binding, &missing).unwrap_err();
    assert_eq!(
        err.message,
        "rolebindings.rbac.authorization.k8s.io \"b\" is forbidden: clusterroles.rbac.authorization.k8s.io \"admin\" not found"
    );
}
