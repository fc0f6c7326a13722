//! Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) decoded into the same
//! JSON value a JSON body of the same object gives, so JSON stays the one stored form.
//!
//! Start at [`decode_object`]: the `k8s\0` envelope holding a `runtime.Unknown`, the kind →
//! message lookup ([`message_for`]), then [`decode::message_to_json`] walks the generated
//! [`schema`] table (regenerate with `tools/gen-proto-schema.py`).

pub mod decode;
pub mod openapi_v2;
#[rustfmt::skip]
pub mod schema;
pub mod table;
pub mod time;
pub mod wire;

use serde_json::{Map, Value};

pub use wire::ProtoError;
use wire::{LEN, Reader};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every protobuf body starts with these four bytes.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// The `runtime.Unknown` a body wraps its object in.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub api_version: String,
    pub kind: String,
    pub raw: &'a [u8],
    pub content_encoding: String,
    pub content_type: String,
}

/// A failed decode, with the kind the body named when it got that far (for upstream's
/// "X in version "v1" cannot be handled as a Y" message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct DecodeError {
    /// `(kind, version)` of the body, once known.
    pub body_kind: Option<(String, String)>,
    pub error: ProtoError,
}

/// Split the magic and the envelope off a body (upstream protobuf.Serializer.Decode).
pub fn envelope(body: &[u8]) -> Result<Envelope<'_>, ProtoError> {
    if body.is_empty() {
        return Err(ProtoError::Empty);
    }
    let Some(data) = body.strip_prefix(&MAGIC) else {
        return Err(ProtoError::NoPrefix);
    };
    if data.is_empty() {
        return Err(ProtoError::EmptyBody);
    }
    let mut env = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
        content_encoding: String::new(),
        content_type: String::new(),
    };
    let mut r = Reader::new(data);
    while !r.at_end() {
        match r.key()? {
            (1, LEN) => {
                let mut tm = Reader::new(r.bytes()?);
                while !tm.at_end() {
                    match tm.key()? {
                        (1, LEN) => env.api_version = wire::utf8(tm.bytes()?, "apiVersion")?.into(),
                        (2, LEN) => env.kind = wire::utf8(tm.bytes()?, "kind")?.into(),
                        (_, wt) => tm.skip(wt)?,
                    }
                }
            }
            (2, LEN) => env.raw = r.bytes()?,
            (3, LEN) => env.content_encoding = wire::utf8(r.bytes()?, "contentEncoding")?.into(),
            (4, LEN) => env.content_type = wire::utf8(r.bytes()?, "contentType")?.into(),
            (n @ 1..=4, wt) => {
                return Err(ProtoError::WrongWireType {
                    field: ["", "typeMeta", "raw", "contentEncoding", "contentType"][n as usize],
                    wire_type: wt,
                });
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(env)
}

/// A protobuf body: `k8s\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
pub fn wrap(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    wire::put_len_field(&mut type_meta, 1, api_version.as_bytes());
    wire::put_len_field(&mut type_meta, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    wire::put_len_field(&mut out, 1, &type_meta);
    wire::put_len_field(&mut out, 2, raw);
    out
}

/// `(group, version)` of an apiVersion (`v1` → core).
fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// The message of a registered kind: `apps/v1` `Deployment` → `k8s.io.api.apps.v1.Deployment`.
/// meta/v1 kinds registered in every group version (DeleteOptions, ...) are found too.
pub fn message_for(api_version: &str, kind: &str) -> Option<u16> {
    let (group, version) = split_api_version(api_version);
    let g = schema::GROUPS
        .iter()
        .find(|g| g.group == group && g.version == version)?;
    [g.package, "k8s.io.apimachinery.pkg.apis.meta.v1"]
        .iter()
        .find_map(|package| {
            let name = format!("{package}.{kind}");
            let i = schema::MESSAGES
                .binary_search_by(|m| m.name.cmp(name.as_str()))
                .ok()?;
            schema::MESSAGES[i].kind.then_some(i as u16)
        })
}

/// Decode a protobuf request body into the object's JSON, `apiVersion` and `kind` included.
/// `default` is the `(apiVersion, kind)` the URL implies, used where the envelope leaves them
/// empty (upstream's copyKindDefaults).
pub fn decode_object(body: &[u8], default: Option<(&str, &str)>) -> Result<Value, DecodeError> {
    let no_kind = |error| DecodeError {
        body_kind: None,
        error,
    };
    let env = envelope(body).map_err(no_kind)?;
    let (mut api_version, mut kind) = (env.api_version.clone(), env.kind.clone());
    if let Some((av, k)) = default {
        if kind.is_empty() {
            kind = k.to_string();
        }
        if split_api_version(&api_version).1.is_empty() {
            api_version = av.to_string();
        }
    }
    let type_meta = format!(
        "runtime.TypeMeta{{APIVersion:{:?}, Kind:{:?}}}",
        env.api_version, env.kind
    );
    if kind.is_empty() {
        return Err(no_kind(ProtoError::MissingKind(type_meta)));
    }
    let version = split_api_version(&api_version).1.to_string();
    let fail = |error| DecodeError {
        body_kind: Some((kind.clone(), version.clone())),
        error,
    };
    if version.is_empty() {
        return Err(fail(ProtoError::MissingVersion(type_meta)));
    }
    let index = message_for(&api_version, &kind).ok_or_else(|| {
        fail(ProtoError::NotRegistered {
            kind: kind.clone(),
            api_version: api_version.clone(),
        })
    })?;
    let mut obj = match decode::message_to_json(index, env.raw, 0).map_err(fail)? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    obj.insert("apiVersion".into(), Value::String(api_version.clone()));
    obj.insert("kind".into(), Value::String(kind.clone()));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests;
