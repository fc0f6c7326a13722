//! The REST paths and operations of the OpenAPI documents, in v2 (swagger) or v3 form, with
//! the query parameters upstream lists (kubectl looks for `fieldValidation` on PATCH).
//!
//! Start at [`paths_for`].

use serde_json::{Map, Value, json};

use super::defs::{
    BINDING, DELETE_OPTIONS, EVICTION, Flavor, PATCH, SCALE, STATUS, definition_name, gvk,
};
use crate::resources::ResourceInfo;

const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_PARAMS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

/// `(name, type, description)` of a query parameter.
fn param_info(name: &str) -> (&'static str, &'static str) {
    match name {
        "allowWatchBookmarks" => (
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
        ),
        "continue" => (
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        "dryRun" => (
            "string",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
        ),
        "fieldManager" => (
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        "fieldSelector" => (
            "string",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        "fieldValidation" => (
            "string",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn (the default) - Strict",
        ),
        "force" => (
            "boolean",
            "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
        ),
        "gracePeriodSeconds" => (
            "integer",
            "The duration in seconds before the object should be deleted.",
        ),
        "labelSelector" => (
            "string",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        "limit" => (
            "integer",
            "limit is a maximum number of responses to return for a list call.",
        ),
        "orphanDependents" => (
            "boolean",
            "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7.",
        ),
        "propagationPolicy" => (
            "string",
            "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'.",
        ),
        "resourceVersion" => (
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        "resourceVersionMatch" => (
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        ),
        "sendInitialEvents" => (
            "boolean",
            "`sendInitialEvents=true` may be set together with `watch=true`.",
        ),
        "timeoutSeconds" => ("integer", "Timeout for the list/watch call."),
        "watch" => (
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        ),
        "pretty" => ("string", "If 'true', then the output is pretty printed."),
        _ => ("string", ""),
    }
}

fn query_param(flavor: Flavor, name: &str) -> Value {
    let (ty, desc) = param_info(name);
    match flavor {
        Flavor::V2 => {
            json!({"name": name, "in": "query", "type": ty, "uniqueItems": true, "description": desc})
        }
        Flavor::V3 => {
            json!({"name": name, "in": "query", "description": desc, "schema": {"type": ty, "uniqueItems": true}})
        }
    }
}

fn path_param(flavor: Flavor, name: &str, desc: &str) -> Value {
    match flavor {
        Flavor::V2 => {
            json!({"name": name, "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": desc})
        }
        Flavor::V3 => {
            json!({"name": name, "in": "path", "required": true, "description": desc, "schema": {"type": "string", "uniqueItems": true}})
        }
    }
}

/// One operation to render.
struct Op<'a> {
    method: &'static str,
    action: &'static str,
    id: String,
    query: &'static [&'static str],
    body: Option<&'a str>,
    /// `(code, definition)` pairs.
    responses: Vec<(u16, &'a str)>,
    kind: &'a str,
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "Unauthorized",
    }
}

fn render(flavor: Flavor, res: &ResourceInfo, tag: &str, op: &Op<'_>) -> Value {
    let p = flavor.ref_prefix();
    let mut m = Map::new();
    m.insert(
        "description".into(),
        json!(format!("{} {}", op.action, op.kind)),
    );
    m.insert("operationId".into(), json!(op.id));
    m.insert("tags".into(), json!([tag]));
    let mut params: Vec<Value> = op.query.iter().map(|q| query_param(flavor, q)).collect();
    let mut responses = Map::new();
    for (code, def) in &op.responses {
        let schema = json!({"$ref": format!("{p}{def}")});
        let r = match flavor {
            Flavor::V2 => json!({"description": reason(*code), "schema": schema}),
            Flavor::V3 => {
                let content: Map<String, Value> = PRODUCES
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": schema.clone()})))
                    .collect();
                json!({"description": reason(*code), "content": content})
            }
        };
        responses.insert(code.to_string(), r);
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    match flavor {
        Flavor::V2 => {
            if let Some(body) = op.body {
                params.insert(0, json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": format!("{p}{body}")}}));
            }
            let consumes: &[&str] = if op.method == "patch" {
                PATCH_TYPES
            } else {
                &["*/*"]
            };
            m.insert("consumes".into(), json!(consumes));
            m.insert("produces".into(), json!(PRODUCES));
            m.insert("schemes".into(), json!(["https"]));
        }
        Flavor::V3 => {
            if let Some(body) = op.body {
                let types: &[&str] = if op.method == "patch" {
                    PATCH_TYPES
                } else {
                    &["*/*"]
                };
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| {
                        (
                            t.to_string(),
                            json!({"schema": {"$ref": format!("{p}{body}")}}),
                        )
                    })
                    .collect();
                m.insert(
                    "requestBody".into(),
                    json!({"content": content, "required": op.method != "delete"}),
                );
            }
        }
    }
    m.insert("parameters".into(), Value::Array(params));
    m.insert("responses".into(), Value::Object(responses));
    m.insert("x-kubernetes-action".into(), json!(op.action));
    let op_gvk = match op.kind {
        "Scale" => gvk("autoscaling", "Scale", "v1"),
        "Binding" => gvk("", "Binding", "v1"),
        "Eviction" => gvk("policy", "Eviction", "v1"),
        kind => gvk(res.group, kind, res.version),
    };
    m.insert("x-kubernetes-group-version-kind".into(), op_gvk);
    Value::Object(m)
}

/// `CoreV1`, `AppsV1`, `DiscoveryV1`, `CoordinationV1`.
fn op_group(res: &ResourceInfo) -> String {
    let g = if res.group.is_empty() {
        "core"
    } else {
        res.group.split('.').next().unwrap_or(res.group)
    };
    let mut cs = g.chars();
    let cap: String = cs
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(cs)
        .collect();
    let mut vs = res.version.chars();
    let ver: String = vs
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(vs)
        .collect();
    format!("{cap}{ver}")
}

/// The URL prefix of a group version: `/api/v1` or `/apis/apps/v1`.
pub fn gv_prefix(res: &ResourceInfo) -> String {
    if res.group.is_empty() {
        format!("/api/{}", res.version)
    } else {
        format!("/apis/{}/{}", res.group, res.version)
    }
}

/// The names one resource's operations are built from.
struct Names {
    /// `io.k8s.api.core.v1.Service`.
    def: String,
    /// `io.k8s.api.core.v1.ServiceList`.
    list_def: String,
    /// `CoreV1`.
    g: String,
    /// `CoreV1NamespacedService`: the operation-id stem.
    stem: String,
    kind: &'static str,
}

fn collection_ops(n: &Names) -> Vec<Op<'_>> {
    let (def, stem, g, kind) = (n.def.as_str(), &n.stem, &n.g, n.kind);
    let scoped_kind = stem.strip_prefix(g.as_str()).unwrap_or(stem);
    vec![
        op(
            "get",
            "list",
            format!("list{stem}"),
            LIST_PARAMS,
            None,
            vec![(200, &n.list_def)],
            kind,
        ),
        op(
            "post",
            "post",
            format!("create{stem}"),
            WRITE_PARAMS,
            Some(def),
            vec![(200, def), (201, def), (202, def)],
            kind,
        ),
        op(
            "delete",
            "deletecollection",
            format!("delete{g}Collection{scoped_kind}"),
            DELETE_COLLECTION_PARAMS,
            Some(DELETE_OPTIONS),
            vec![(200, STATUS)],
            kind,
        ),
    ]
}

fn item_ops(n: &Names) -> Vec<Op<'_>> {
    let (def, stem, kind) = (n.def.as_str(), &n.stem, n.kind);
    vec![
        op(
            "get",
            "get",
            format!("read{stem}"),
            &[],
            None,
            vec![(200, def)],
            kind,
        ),
        op(
            "put",
            "put",
            format!("replace{stem}"),
            WRITE_PARAMS,
            Some(def),
            vec![(200, def), (201, def)],
            kind,
        ),
        op(
            "patch",
            "patch",
            format!("patch{stem}"),
            PATCH_PARAMS,
            Some(PATCH),
            vec![(200, def), (201, def)],
            kind,
        ),
        op(
            "delete",
            "delete",
            format!("delete{stem}"),
            DELETE_PARAMS,
            Some(DELETE_OPTIONS),
            vec![(200, STATUS), (202, STATUS)],
            kind,
        ),
    ]
}

/// The operations of `<item>/<sub>`: status and scale are read/replace/patch, binding is create.
fn subresource_ops<'a>(n: &'a Names, sub: &str) -> Vec<Op<'a>> {
    let stem = format!("{}{}", n.stem, capitalize(sub));
    let (body, kind) = match sub {
        "status" => (n.def.as_str(), n.kind),
        "scale" => (SCALE, "Scale"),
        "binding" | "eviction" => {
            let (def, kind) = if sub == "binding" {
                (BINDING, "Binding")
            } else {
                (EVICTION, "Eviction")
            };
            let responses = vec![(200, def), (201, def), (202, def)];
            return vec![op(
                "post",
                "post",
                format!("create{stem}"),
                WRITE_PARAMS,
                Some(def),
                responses,
                kind,
            )];
        }
        _ => return Vec::new(),
    };
    vec![
        op(
            "get",
            "get",
            format!("read{stem}"),
            &[],
            None,
            vec![(200, body)],
            kind,
        ),
        op(
            "put",
            "put",
            format!("replace{stem}"),
            WRITE_PARAMS,
            Some(body),
            vec![(200, body), (201, body)],
            kind,
        ),
        op(
            "patch",
            "patch",
            format!("patch{stem}"),
            PATCH_PARAMS,
            Some(PATCH),
            vec![(200, body), (201, body)],
            kind,
        ),
    ]
}

/// Every `(path, path item)` of `res`: the collection, the item, its subresources and (for
/// namespaced kinds) the all-namespaces list.
pub fn paths_for(flavor: Flavor, res: &ResourceInfo) -> Vec<(String, Value)> {
    let def = definition_name(res);
    let g = op_group(res);
    let scope = if res.namespaced { "Namespaced" } else { "" };
    let n = Names {
        list_def: format!("{def}List"),
        def,
        stem: format!("{g}{scope}{}", res.kind),
        g,
        kind: res.kind,
    };
    let group_tag = if res.group.is_empty() {
        "core"
    } else {
        res.group.split('.').next().unwrap_or(res.group)
    };
    let tag = format!("{group_tag}_{}", res.version);
    let base = if res.namespaced {
        format!("{}/namespaces/{{namespace}}/{}", gv_prefix(res), res.plural)
    } else {
        format!("{}/{}", gv_prefix(res), res.plural)
    };
    let pretty = query_param(flavor, "pretty");
    let ns_param = path_param(
        flavor,
        "namespace",
        "object name and auth scope, such as for teams and projects",
    );
    let name_param = path_param(flavor, "name", &format!("name of the {}", res.kind));
    let scoped = |named: bool| -> Vec<Value> {
        let mut v = Vec::new();
        if named {
            v.push(name_param.clone());
        }
        if res.namespaced {
            v.push(ns_param.clone());
        }
        v.push(pretty.clone());
        v
    };
    if crate::resources::is_create_only(res) {
        let create = collection_ops(&n)
            .into_iter()
            .filter(|o| o.action == "post")
            .collect();
        return vec![(base, path_item(flavor, res, &tag, create, scoped(false)))];
    }
    let item = |ops| path_item(flavor, res, &tag, ops, scoped(true));
    let mut out = vec![
        (
            base.clone(),
            path_item(flavor, res, &tag, collection_ops(&n), scoped(false)),
        ),
        (format!("{base}/{{name}}"), item(item_ops(&n))),
    ];
    for sub in res.subresources {
        let ops = subresource_ops(&n, sub);
        if !ops.is_empty() {
            out.push((format!("{base}/{{name}}/{sub}"), item(ops)));
        }
    }
    if res.namespaced {
        let all = op(
            "get",
            "list",
            format!("list{}{}ForAllNamespaces", n.g, n.kind),
            LIST_PARAMS,
            None,
            vec![(200, &n.list_def)],
            n.kind,
        );
        let path = format!("{}/{}", gv_prefix(res), res.plural);
        out.push((
            path,
            path_item(flavor, res, &tag, vec![all], vec![pretty.clone()]),
        ));
    }
    out
}

/// Builds an [`Op`] (request body types follow from the method).
fn op<'a>(
    method: &'static str,
    action: &'static str,
    id: String,
    query: &'static [&'static str],
    body: Option<&'a str>,
    responses: Vec<(u16, &'a str)>,
    kind: &'a str,
) -> Op<'a> {
    Op {
        method,
        action,
        id,
        query,
        body,
        responses,
        kind,
    }
}

fn capitalize(s: &str) -> String {
    let mut cs = s.chars();
    cs.next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(cs)
        .collect()
}

fn path_item(
    flavor: Flavor,
    res: &ResourceInfo,
    tag: &str,
    ops: Vec<Op<'_>>,
    params: Vec<Value>,
) -> Value {
    let mut m = Map::new();
    for op in ops {
        m.insert(op.method.to_string(), render(flavor, res, tag, &op));
    }
    m.insert("parameters".into(), Value::Array(params));
    Value::Object(m)
}
