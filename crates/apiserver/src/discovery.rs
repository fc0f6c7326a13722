//! Discovery documents (`/version`, `/api`, `/apis`, group and resource lists) that let kubectl
//! find what we serve.
//!
//! Start at [`resource_list`].

use api::resources::{RESOURCES, groups};
use serde_json::{Value, json};

/// The Kubernetes version we report (the API level of the k8s-openapi types we serve).
pub const KUBE_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-zonelab.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "none (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(name: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(group_entry).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Value {
    let mut g = group_entry(name);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

/// `APIResourceList` for one group (`""` = core) at v1.
pub fn resource_list(group: &str) -> Value {
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        let mut main = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": api::resources::verbs(r),
            "storageVersionHash": "",
        });
        if !r.short_names.is_empty() {
            main["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            main["categories"] = json!(r.categories);
        }
        resources.push(main);
        for sub in r.subresources {
            let mut s = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            });
            match *sub {
                "scale" => {
                    s["group"] = json!("autoscaling");
                    s["version"] = json!("v1");
                    s["kind"] = json!("Scale");
                }
                "log" => s["verbs"] = json!(["get"]),
                "binding" => {
                    s["kind"] = json!("Binding");
                    s["verbs"] = json!(["create"]);
                }
                "token" => {
                    s["group"] = json!("authentication.k8s.io");
                    s["version"] = json!("v1");
                    s["kind"] = json!("TokenRequest");
                    s["verbs"] = json!(["create"]);
                }
                "eviction" => {
                    // kubectl drain evicts only when it finds this entry with a group and
                    // version (`CheckEvictionSupport`); otherwise it deletes pods directly.
                    s["group"] = json!("policy");
                    s["version"] = json!("v1");
                    s["kind"] = json!("Eviction");
                    s["verbs"] = json!(["create"]);
                }
                _ => {}
            }
            resources.push(s);
        }
    }
    let gv = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_list_has_services_with_short_name_and_subresources() {
        let l = resource_list("");
        let names: Vec<&str> = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"services"));
        assert!(names.contains(&"services/status"));
        assert!(names.contains(&"pods/binding"));
        let eviction = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(
            (&eviction["group"], &eviction["version"], &eviction["kind"]),
            (&json!("policy"), &json!("v1"), &json!("Eviction"))
        );
        let svc = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "services")
            .unwrap();
        assert_eq!(svc["shortNames"][0], "svc");
        let apps = resource_list("apps");
        assert_eq!(apps["groupVersion"], "apps/v1");
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
    }

    #[test]
    fn group_list_names_every_group() {
        let g = group_list();
        let names: Vec<&str> = g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![
                "apps",
                "discovery.k8s.io",
                "events.k8s.io",
                "coordination.k8s.io",
                "authentication.k8s.io",
                "authorization.k8s.io",
                "policy",
                "rbac.authorization.k8s.io"
            ]
        );
    }
}
