//! Schema definitions for the served kinds, generated from k8s-openapi's `JsonSchema` impls and
//! decorated the way upstream's OpenAPI documents are (GVK and patch-strategy extensions, List
//! kinds).
//!
//! Start at [`definitions`].

use k8s_openapi::api::{
    apps, authentication, authorization, autoscaling, coordination, core, discovery, events,
    policy, rbac,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::resources::{RESOURCES, ResourceInfo};

/// Which OpenAPI flavour a set of definitions is for: it decides where `$ref`s point and
/// whether a `$ref` may carry sibling keys (v2 yes, as upstream writes it; v3 wraps in `allOf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    V2,
    V3,
}

impl Flavor {
    /// The `$ref` prefix of this flavour.
    pub fn ref_prefix(self) -> &'static str {
        match self {
            Flavor::V2 => "#/definitions/",
            Flavor::V3 => "#/components/schemas/",
        }
    }
}

/// Upstream's definition name for a served kind: `io.k8s.api.core.v1.Service`.
pub fn definition_name(res: &ResourceInfo) -> String {
    format!("{}.{}", group_package(res.group, res.version), res.kind)
}

/// `io.k8s.api.<pkg>.<version>` for an API group.
fn group_package(group: &str, version: &str) -> String {
    let pkg = match group {
        "" => "core",
        other => other.split('.').next().unwrap_or(other),
    };
    format!("io.k8s.api.{pkg}.{version}")
}

/// The `ObjectMeta`-less helper definitions every document references.
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
pub const BINDING: &str = "io.k8s.api.core.v1.Binding";
pub const EVICTION: &str = "io.k8s.api.policy.v1.Eviction";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

fn add_kind(g: &mut SchemaGenerator, res: &ResourceInfo) {
    match (res.group, res.kind) {
        ("", "Namespace") => drop(g.subschema_for::<core::v1::Namespace>()),
        ("", "Service") => drop(g.subschema_for::<core::v1::Service>()),
        ("", "Pod") => drop(g.subschema_for::<core::v1::Pod>()),
        ("", "Node") => drop(g.subschema_for::<core::v1::Node>()),
        ("", "Event") => drop(g.subschema_for::<core::v1::Event>()),
        ("", "ConfigMap") => drop(g.subschema_for::<core::v1::ConfigMap>()),
        ("", "Secret") => drop(g.subschema_for::<core::v1::Secret>()),
        ("", "ServiceAccount") => drop(g.subschema_for::<core::v1::ServiceAccount>()),
        ("policy", "PodDisruptionBudget") => {
            drop(g.subschema_for::<policy::v1::PodDisruptionBudget>())
        }
        ("apps", "Deployment") => drop(g.subschema_for::<apps::v1::Deployment>()),
        ("apps", "ReplicaSet") => drop(g.subschema_for::<apps::v1::ReplicaSet>()),
        ("apps", "StatefulSet") => drop(g.subschema_for::<apps::v1::StatefulSet>()),
        ("apps", "ControllerRevision") => drop(g.subschema_for::<apps::v1::ControllerRevision>()),
        ("apps", "DaemonSet") => drop(g.subschema_for::<apps::v1::DaemonSet>()),
        ("discovery.k8s.io", "EndpointSlice") => {
            drop(g.subschema_for::<discovery::v1::EndpointSlice>())
        }
        ("coordination.k8s.io", "Lease") => drop(g.subschema_for::<coordination::v1::Lease>()),
        ("events.k8s.io", "Event") => drop(g.subschema_for::<events::v1::Event>()),
        ("authorization.k8s.io", "SelfSubjectAccessReview") => {
            drop(g.subschema_for::<authorization::v1::SelfSubjectAccessReview>())
        }
        ("authorization.k8s.io", "SelfSubjectRulesReview") => {
            drop(g.subschema_for::<authorization::v1::SelfSubjectRulesReview>())
        }
        ("authorization.k8s.io", "SubjectAccessReview") => {
            drop(g.subschema_for::<authorization::v1::SubjectAccessReview>())
        }
        ("authorization.k8s.io", "LocalSubjectAccessReview") => {
            drop(g.subschema_for::<authorization::v1::LocalSubjectAccessReview>())
        }
        ("authentication.k8s.io", "SelfSubjectReview") => {
            drop(g.subschema_for::<authentication::v1::SelfSubjectReview>())
        }
        ("rbac.authorization.k8s.io", "Role") => drop(g.subschema_for::<rbac::v1::Role>()),
        ("rbac.authorization.k8s.io", "ClusterRole") => {
            drop(g.subschema_for::<rbac::v1::ClusterRole>())
        }
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            drop(g.subschema_for::<rbac::v1::RoleBinding>())
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            drop(g.subschema_for::<rbac::v1::ClusterRoleBinding>())
        }
        _ => {}
    }
}

/// Every definition the documents use, in `flavor`, keyed by upstream definition name.
pub fn definitions(flavor: Flavor) -> Map<String, Value> {
    let settings = match flavor {
        Flavor::V3 => SchemaSettings::openapi3().with(|s| s.meta_schema = None),
        Flavor::V2 => SchemaSettings::openapi3().with(|s| {
            s.meta_schema = None;
            s.definitions_path = "/definitions".into();
            s.transforms.clear();
        }),
    };
    let mut g = settings.into_generator();
    for res in RESOURCES {
        add_kind(&mut g, res);
    }
    drop(g.subschema_for::<meta::Status>());
    drop(g.subschema_for::<meta::DeleteOptions>());
    drop(g.subschema_for::<meta::Patch>());
    drop(g.subschema_for::<meta::WatchEvent<serde_json::Value>>());
    drop(g.subschema_for::<meta::ListMeta>());
    drop(g.subschema_for::<autoscaling::v1::Scale>());
    drop(g.subschema_for::<core::v1::Binding>());
    drop(g.subschema_for::<policy::v1::Eviction>());
    let mut defs = g.take_definitions(true);
    for res in RESOURCES {
        let name = definition_name(res);
        if let Some(d) = defs.get_mut(&name).and_then(Value::as_object_mut) {
            d.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk(res.group, res.kind, res.version)]),
            );
        }
        defs.insert(format!("{name}List"), list_definition(res, flavor));
    }
    add_meta_gvks(&mut defs);
    add_patch_extensions(&mut defs);
    defs
}

/// `{group, kind, version}` as upstream writes the GVK extension.
pub fn gvk(group: &str, kind: &str, version: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn list_definition(res: &ResourceInfo, flavor: Flavor) -> Value {
    let p = flavor.ref_prefix();
    let item_ref = format!("{p}{}", definition_name(res));
    let meta_ref = format!("{p}{LIST_META}");
    let meta_desc = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
    let metadata = match flavor {
        Flavor::V2 => json!({"$ref": meta_ref, "description": meta_desc}),
        Flavor::V3 => json!({"allOf": [{"$ref": meta_ref}], "description": meta_desc}),
    };
    json!({
        "description": format!("{}List is a list of {} objects.", res.kind, res.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
            "items": {"description": format!("List of {}.", res.plural), "type": "array", "items": {"$ref": item_ref}},
            "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
            "metadata": metadata,
        },
        "x-kubernetes-group-version-kind": [gvk(res.group, &format!("{}List", res.kind), res.version)],
    })
}

/// Upstream lists one GVK per group version for the shared meta kinds.
fn add_meta_gvks(defs: &mut Map<String, Value>) {
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    for (name, kind) in [
        (DELETE_OPTIONS, "DeleteOptions"),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
            "WatchEvent",
        ),
    ] {
        let list: Vec<Value> = gvs.iter().map(|(g, v)| gvk(g, kind, v)).collect();
        if let Some(d) = defs.get_mut(name).and_then(Value::as_object_mut) {
            d.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
        }
    }
    let singles = [
        (STATUS, "", "Status", "v1"),
        (SCALE, "autoscaling", "Scale", "v1"),
        (BINDING, "", "Binding", "v1"),
        (EVICTION, "policy", "Eviction", "v1"),
    ];
    for (name, group, kind, version) in singles {
        if let Some(d) = defs.get_mut(name).and_then(Value::as_object_mut) {
            d.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk(group, kind, version)]),
            );
        }
    }
}

/// `(definition, property, strategy, merge key, list-map keys)` as upstream marks them.
const PATCH_FIELDS: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "merge",
        "name",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        "name",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        "name",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        "name",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        "name",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        "containerPort",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "env",
        "merge",
        "name",
        &["name"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        "mountPath",
        &["mountPath"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "merge",
        "port",
        &["port", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        "type",
        &["type"],
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        "type",
        &["type"],
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        "type",
        &["type"],
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        "type",
        &["type"],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        "type",
        &["type"],
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        "type",
        &["type"],
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        "type",
        &["type"],
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        "type",
        &["type"],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        "uid",
        &["uid"],
    ),
];

fn add_patch_extensions(defs: &mut Map<String, Value>) {
    for (def, prop, strategy, key, map_keys) in PATCH_FIELDS {
        let Some(p) = defs
            .get_mut(*def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|ps| ps.get_mut(*prop))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        p.insert("x-kubernetes-list-type".into(), json!("map"));
        p.insert("x-kubernetes-list-map-keys".into(), json!(map_keys));
    }
    let finalizers = defs
        .get_mut("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        .and_then(|d| d.get_mut("properties"))
        .and_then(|ps| ps.get_mut("finalizers"))
        .and_then(Value::as_object_mut);
    if let Some(f) = finalizers {
        f.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
        f.insert("x-kubernetes-list-type".into(), json!("set"));
    }
}

/// Every definition name `v` refers to through `$ref` with `prefix`.
pub fn refs_in(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref"
                    && let Some(name) = x.as_str().and_then(|s| s.strip_prefix(prefix))
                {
                    out.push(name.to_string());
                } else {
                    refs_in(x, prefix, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs_in(x, prefix, out)),
        _ => {}
    }
}

/// The definitions reachable from `roots`, in name order.
pub fn closure(defs: &Map<String, Value>, roots: &[String], prefix: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(name) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let Some(d) = defs.get(&name) else { continue };
        refs_in(d, prefix, &mut todo);
        out.insert(name, d.clone());
    }
    out
}
