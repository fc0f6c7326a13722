//! A projecting JSON decode: builds a `Value` holding only the members a printer reads and
//! skips the rest without allocating, so a Table row costs less than a full decode.
//!
//! Start at [`for_kind`] and [`decode`].

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Which members of a JSON object to keep.
pub enum Keep {
    /// The whole value.
    All,
    /// The listed members (each with its own [`Keep`]); any other member whole when `rest`,
    /// else skipped.
    Fields {
        fields: &'static [(&'static str, Keep)],
        rest: bool,
    },
}

/// `metadata` as the printers read it: `name`, `creationTimestamp`, `deletionTimestamp`
/// (Pod status) and `labels` (Node roles).
const METADATA: Keep = Keep::Fields {
    fields: &[
        ("name", Keep::All),
        ("creationTimestamp", Keep::All),
        ("deletionTimestamp", Keep::All),
        ("labels", Keep::All),
    ],
    rest: false,
};

/// Any other kind: the whole object. Its printer may read any metadata (ControllerRevision's
/// reads `ownerReferences`); only Services, the kind listed by the thousand, are narrowed.
const ANY_KIND: Keep = Keep::All;

/// A Service as [`super::core::service_cells`] reads it (keep the two in step).
const SERVICE: Keep = Keep::Fields {
    fields: &[
        ("metadata", METADATA),
        (
            "spec",
            Keep::Fields {
                fields: &[
                    ("type", Keep::All),
                    ("clusterIPs", Keep::All),
                    ("ports", Keep::All),
                    ("externalIPs", Keep::All),
                    ("externalName", Keep::All),
                    ("selector", Keep::All),
                ],
                rest: false,
            },
        ),
        ("status", Keep::All),
    ],
    rest: false,
};

/// What the Table printer of `group`/`kind` reads of an object.
pub fn for_kind(group: &str, kind: &str) -> &'static Keep {
    match (group, kind) {
        ("", "Service") => &SERVICE,
        _ => &ANY_KIND,
    }
}

/// Decode the JSON object `bytes`, keeping what `keep` lists (skipped members are still
/// validated). A member `keep` descends into that is not an object is kept whole.
pub fn decode(bytes: &[u8], keep: &Keep) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = keep.deserialize(&mut de)?;
    de.end()?;
    if !v.is_object() {
        return Err(serde::de::Error::custom("not a JSON object"));
    }
    Ok(v)
}

impl<'de> DeserializeSeed<'de> for &Keep {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Keep::All => serde::Deserialize::deserialize(d),
            Keep::Fields { fields, rest } => d.deserialize_any(Project {
                fields,
                rest: *rest,
            }),
        }
    }
}

/// Visits one value: an object is projected, anything else kept whole.
struct Project {
    fields: &'static [(&'static str, Keep)],
    rest: bool,
}

macro_rules! keep_scalar {
    ($($f:ident: $t:ty),*) => {$(
        fn $f<E: serde::de::Error>(self, v: $t) -> Result<Value, E> {
            Ok(Value::from(v))
        }
    )*};
}

impl<'de> Visitor<'de> for Project {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    keep_scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str, visit_string: String);

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.fields.iter().find(|(name, _)| *name == key) {
                Some((_, keep)) => {
                    let v = map.next_value_seed(keep)?;
                    out.insert(key, v);
                }
                None if self.rest => {
                    let v = map.next_value::<Value>()?;
                    out.insert(key, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project(group: &str, kind: &str, v: &Value) -> Value {
        decode(&serde_json::to_vec(v).unwrap(), for_kind(group, kind)).unwrap()
    }

    #[test]
    fn a_service_keeps_what_its_printer_reads() {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "a", "uid": "u", "annotations": {"k": "v"}, "creationTimestamp": "t"},
            "spec": {"type": "NodePort", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                     "ipFamilies": ["IPv4"], "sessionAffinity": "None", "ports": [{"port": 80, "name": "h"}],
                     "selector": {"app": "a"}},
            "status": {"loadBalancer": {}}});
        assert_eq!(
            project("", "Service", &svc),
            json!({"metadata": {"name": "a", "creationTimestamp": "t"},
                   "spec": {"type": "NodePort", "clusterIPs": ["10.0.0.1"],
                            "ports": [{"port": 80, "name": "h"}], "selector": {"app": "a"}},
                   "status": {"loadBalancer": {}}})
        );
    }

    #[test]
    fn other_kinds_keep_everything() {
        let rev = json!({"kind": "ControllerRevision", "metadata": {"name": "db-1", "uid": "u",
                         "ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": true}]},
                         "revision": 1});
        assert_eq!(project("apps", "ControllerRevision", &rev), rev);
        // A member to descend into that is not an object is kept as it is.
        let odd = json!({"metadata": "x", "spec": [1, {"a": null}], "status": 2.5});
        assert_eq!(project("", "Service", &odd), odd);
    }

    #[test]
    fn skipped_members_are_still_validated() {
        let keep = for_kind("", "Service");
        assert!(decode(br#"{"spec":{"ipFamilies":[tru]}}"#, keep).is_err());
        assert!(decode(br#"{"metadata":{"uid":"u"}} x"#, keep).is_err());
        assert!(decode(b"[1]", keep).is_err());
        assert!(decode(br#"{"other":1}"#, keep).unwrap() == json!({}));
    }
}
