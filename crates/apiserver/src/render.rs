//! Renders objects and lists in the representation the client negotiated: plain JSON, a
//! `meta.k8s.io/v1` Table, or metadata only.
//!
//! Start at [`object`] and [`list`].

use api::resources::ResourceInfo;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::negotiate::Output;
use crate::table;

/// List metadata: the revision, and for a paged list the continue token and remaining count.
#[derive(Clone, Debug, Default)]
pub struct ListMeta {
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

pub(crate) fn list_meta_json(m: &ListMeta) -> Value {
    let mut meta = json!({"resourceVersion": m.resource_version.to_string()});
    if let Some(c) = &m.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = m.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    meta
}

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn table_row(res: &ResourceInfo, obj: &Value, now: DateTime<Utc>, include_object: &str) -> Value {
    let embedded = match include_object {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => partial_metadata(obj),
    };
    json!({"cells": table::row_cells(res, obj, now), "object": embedded})
}

/// A Table of `objs`; `headers` false leaves out the column definitions (later watch events).
pub fn table(
    res: &ResourceInfo,
    objs: &[Value],
    meta: &ListMeta,
    now: DateTime<Utc>,
    include_object: &str,
    headers: bool,
) -> Value {
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| table_row(res, o, now, include_object))
        .collect();
    let columns = if headers {
        table::column_definitions(res)
    } else {
        json!([])
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta_json(meta),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// One object in the negotiated representation.
pub fn object(
    res: &ResourceInfo,
    obj: Value,
    out: Output,
    now: DateTime<Utc>,
    include_object: &str,
) -> Value {
    match out {
        Output::Json => obj,
        Output::Metadata => partial_metadata(&obj),
        Output::Table => {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let meta = ListMeta {
                resource_version: rv,
                ..ListMeta::default()
            };
            table(res, &[obj], &meta, now, include_object, true)
        }
    }
}

/// A plain JSON list assembled from stored bytes (see [`crate::objects::splice_resource_version`]).
pub fn raw_list(res: &ResourceInfo, items: &[store::KeyValue], meta: &ListMeta) -> Vec<u8> {
    let total: usize = items.iter().map(|kv| kv.value.len() + 32).sum();
    let mut out = Vec::with_capacity(total + 256);
    out.extend_from_slice(b"{\"apiVersion\":");
    out.extend_from_slice(json!(res.api_version()).to_string().as_bytes());
    out.extend_from_slice(b",\"items\":[");
    for (i, kv) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::objects::splice_resource_version(kv, &mut out);
    }
    out.extend_from_slice(b"],\"kind\":");
    out.extend_from_slice(json!(format!("{}List", res.kind)).to_string().as_bytes());
    out.extend_from_slice(b",\"metadata\":");
    out.extend_from_slice(list_meta_json(meta).to_string().as_bytes());
    out.push(b'}');
    out
}

/// A list in the negotiated representation.
pub fn list(
    res: &ResourceInfo,
    items: Vec<Value>,
    meta: &ListMeta,
    out: Output,
    now: DateTime<Utc>,
    include_object: &str,
) -> Value {
    match out {
        Output::Table => table(res, &items, meta, now, include_object, true),
        Output::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta_json(meta),
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        Output::Json => json!({
            "kind": format!("{}List", res.kind),
            "apiVersion": res.api_version(),
            "metadata": list_meta_json(meta),
            "items": items,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;

    #[test]
    fn raw_list_equals_the_decoded_list() {
        let svc = by_plural("", "services").unwrap();
        let objs = [
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}}),
        ];
        let kvs: Vec<store::KeyValue> = objs
            .iter()
            .enumerate()
            .map(|(i, o)| store::KeyValue {
                key: format!("k{i}"),
                value: crate::objects::encode(o),
                create_revision: 1,
                mod_revision: 5 + i as u64,
            })
            .collect();
        let meta = ListMeta {
            resource_version: 9,
            continue_token: None,
            remaining: None,
        };
        let raw: Value = serde_json::from_slice(&raw_list(svc, &kvs, &meta)).unwrap();
        let decoded: Vec<Value> = kvs
            .iter()
            .map(|kv| crate::objects::decode(kv).unwrap())
            .collect();
        assert_eq!(raw, list(svc, decoded, &meta, Output::Json, Utc::now(), ""));
        assert_eq!(raw["items"][1]["metadata"]["resourceVersion"], "6");
    }

    #[test]
    fn list_json_and_metadata() {
        let svc = by_plural("", "services").unwrap();
        let items = vec![json!({"metadata": {"name": "a", "resourceVersion": "3"}, "spec": {}})];
        let meta = ListMeta {
            resource_version: 9,
            continue_token: Some("t".into()),
            remaining: Some(2),
        };
        let now = Utc::now();
        let l = list(svc, items.clone(), &meta, Output::Json, now, "");
        assert_eq!(l["kind"], "ServiceList");
        assert_eq!(l["metadata"]["resourceVersion"], "9");
        assert_eq!(l["metadata"]["continue"], "t");
        assert_eq!(l["metadata"]["remainingItemCount"], 2);
        let m = list(svc, items, &meta, Output::Metadata, now, "");
        assert_eq!(m["items"][0]["kind"], "PartialObjectMetadata");
        assert!(m["items"][0].get("spec").is_none());
    }
}
