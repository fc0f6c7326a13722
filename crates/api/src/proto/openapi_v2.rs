//! A swagger 2.0 JSON document encoded as gnostic's `openapi.v2.Document` protobuf (what
//! client-go's `OpenAPISchema()` asks `/openapi/v2` for and kubectl 1.27/1.28 validate with).
//!
//! Start at [`encode_document`]. Each gnostic message is a [`Spec`]: JSON key → field number
//! and [`Ty`]; `x-…` keys go to the message's `vendor_extension` as `NamedAny` whose `yaml` holds
//! the value (JSON text, which YAML parsers read); the messages that are a `oneof` in gnostic
//! (parameter kinds, `$ref` or inline, bool or schema) are chosen in [`oneof`]. Field numbers
//! follow github.com/google/gnostic-models `openapiv2/OpenAPIv2.proto`.

use serde_json::{Map, Value};

use super::wire::{FIXED64, put_len_field, put_varint, put_varint_field};

/// The media type client-go asks for (`@` is not legal in a returned Content-Type).
pub const MEDIA_TYPE_REQUESTED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The media type the document is served as (upstream kube-openapi's `subTypeProtobuf`).
pub const MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// How a JSON value becomes one field.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Int,
    Double,
    /// A repeated string.
    Strs,
    /// `Any{yaml}`.
    Any,
    Anys,
    Msg(M),
    Msgs(M),
    /// A JSON object as a wrapper message of `repeated Named… additional_properties = 1`.
    Named(&'static Ty),
}

/// The gnostic messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum M {
    Document,
    Info,
    Contact,
    License,
    ExternalDocs,
    Tag,
    Xml,
    Paths,
    PathItem,
    Operation,
    Responses,
    Response,
    FileSchema,
    Header,
    PrimitivesItems,
    Schema,
    JsonReference,
    BodyParameter,
    /// Header and path parameters share a layout.
    SimpleParameter,
    /// Query and formData parameters share a layout (with `allowEmptyValue`).
    QueryParameter,
    BasicAuth,
    ApiKey,
    Oauth2Implicit,
    Oauth2Password,
    Oauth2AccessCode,
    StringArray,
    SecurityRequirement,
    // The oneof wrappers, chosen by the JSON's shape in [`oneof`].
    AdditionalPropertiesItem,
    TypeItem,
    ItemsItem,
    ParametersItem,
    Parameter,
    NonBodyParameter,
    ResponseValue,
    SchemaItem,
    SecurityDefinitionsItem,
}

type F = (&'static str, u32, Ty);

/// One message's layout.
struct Spec {
    fields: &'static [F],
    /// Where [`VALIDATIONS`] start (0: not in this message).
    tail: u32,
    /// The `vendor_extension` field (0: none).
    ext: u32,
    /// Where the other (non `x-`) keys go as `Named…` entries: Paths' paths, Responses' codes.
    rest: Option<(u32, Ty)>,
}

const fn spec(fields: &'static [F], ext: u32) -> Spec {
    Spec {
        fields,
        tail: 0,
        ext,
        rest: None,
    }
}

/// The simple-type keywords Header, PrimitivesItems and the non-body parameters share, in
/// field order.
const VALIDATIONS: &[(&str, Ty)] = &[
    ("type", Ty::Str),
    ("format", Ty::Str),
    ("items", Ty::Msg(M::PrimitivesItems)),
    ("collectionFormat", Ty::Str),
    ("default", Ty::Any),
    ("maximum", Ty::Double),
    ("exclusiveMaximum", Ty::Bool),
    ("minimum", Ty::Double),
    ("exclusiveMinimum", Ty::Bool),
    ("maxLength", Ty::Int),
    ("minLength", Ty::Int),
    ("pattern", Ty::Str),
    ("maxItems", Ty::Int),
    ("minItems", Ty::Int),
    ("uniqueItems", Ty::Bool),
    ("enum", Ty::Anys),
    ("multipleOf", Ty::Double),
];

const PARAM_HEAD: &[F] = &[
    ("required", 1, Ty::Bool),
    ("in", 2, Ty::Str),
    ("description", 3, Ty::Str),
    ("name", 4, Ty::Str),
    ("allowEmptyValue", 5, Ty::Bool),
];

const SCHEMA: &[F] = &[
    ("$ref", 1, Ty::Str),
    ("format", 2, Ty::Str),
    ("title", 3, Ty::Str),
    ("description", 4, Ty::Str),
    ("default", 5, Ty::Any),
    ("multipleOf", 6, Ty::Double),
    ("maximum", 7, Ty::Double),
    ("exclusiveMaximum", 8, Ty::Bool),
    ("minimum", 9, Ty::Double),
    ("exclusiveMinimum", 10, Ty::Bool),
    ("maxLength", 11, Ty::Int),
    ("minLength", 12, Ty::Int),
    ("pattern", 13, Ty::Str),
    ("maxItems", 14, Ty::Int),
    ("minItems", 15, Ty::Int),
    ("uniqueItems", 16, Ty::Bool),
    ("maxProperties", 17, Ty::Int),
    ("minProperties", 18, Ty::Int),
    ("required", 19, Ty::Strs),
    ("enum", 20, Ty::Anys),
    (
        "additionalProperties",
        21,
        Ty::Msg(M::AdditionalPropertiesItem),
    ),
    ("type", 22, Ty::Msg(M::TypeItem)),
    ("items", 23, Ty::Msg(M::ItemsItem)),
    ("allOf", 24, Ty::Msgs(M::Schema)),
    ("properties", 25, Ty::Named(&Ty::Msg(M::Schema))),
    ("discriminator", 26, Ty::Str),
    ("readOnly", 27, Ty::Bool),
    ("xml", 28, Ty::Msg(M::Xml)),
    ("externalDocs", 29, Ty::Msg(M::ExternalDocs)),
    ("example", 30, Ty::Any),
];

const OPERATION: &[F] = &[
    ("tags", 1, Ty::Strs),
    ("summary", 2, Ty::Str),
    ("description", 3, Ty::Str),
    ("externalDocs", 4, Ty::Msg(M::ExternalDocs)),
    ("operationId", 5, Ty::Str),
    ("produces", 6, Ty::Strs),
    ("consumes", 7, Ty::Strs),
    ("parameters", 8, Ty::Msgs(M::ParametersItem)),
    ("responses", 9, Ty::Msg(M::Responses)),
    ("schemes", 10, Ty::Strs),
    ("deprecated", 11, Ty::Bool),
    ("security", 12, Ty::Msgs(M::SecurityRequirement)),
];

const DOCUMENT: &[F] = &[
    ("swagger", 1, Ty::Str),
    ("info", 2, Ty::Msg(M::Info)),
    ("host", 3, Ty::Str),
    ("basePath", 4, Ty::Str),
    ("schemes", 5, Ty::Strs),
    ("consumes", 6, Ty::Strs),
    ("produces", 7, Ty::Strs),
    ("paths", 8, Ty::Msg(M::Paths)),
    ("definitions", 9, Ty::Named(&Ty::Msg(M::Schema))),
    ("parameters", 10, Ty::Named(&Ty::Msg(M::Parameter))),
    ("responses", 11, Ty::Named(&Ty::Msg(M::Response))),
    ("security", 12, Ty::Msgs(M::SecurityRequirement)),
    (
        "securityDefinitions",
        13,
        Ty::Named(&Ty::Msg(M::SecurityDefinitionsItem)),
    ),
    ("tags", 14, Ty::Msgs(M::Tag)),
    ("externalDocs", 15, Ty::Msg(M::ExternalDocs)),
];

const PATH_ITEM: &[F] = &[
    ("$ref", 1, Ty::Str),
    ("get", 2, Ty::Msg(M::Operation)),
    ("put", 3, Ty::Msg(M::Operation)),
    ("post", 4, Ty::Msg(M::Operation)),
    ("delete", 5, Ty::Msg(M::Operation)),
    ("options", 6, Ty::Msg(M::Operation)),
    ("head", 7, Ty::Msg(M::Operation)),
    ("patch", 8, Ty::Msg(M::Operation)),
    ("parameters", 9, Ty::Msgs(M::ParametersItem)),
];

const FILE_SCHEMA: &[F] = &[
    ("format", 1, Ty::Str),
    ("title", 2, Ty::Str),
    ("description", 3, Ty::Str),
    ("default", 4, Ty::Any),
    ("required", 5, Ty::Strs),
    ("type", 6, Ty::Str),
    ("readOnly", 7, Ty::Bool),
    ("externalDocs", 8, Ty::Msg(M::ExternalDocs)),
    ("example", 9, Ty::Any),
];

/// The smaller messages' fields (the vendor_extension numbers are in [`M::spec`]).
const INFO: &[F] = &[
    ("title", 1, Ty::Str),
    ("version", 2, Ty::Str),
    ("description", 3, Ty::Str),
    ("termsOfService", 4, Ty::Str),
    ("contact", 5, Ty::Msg(M::Contact)),
    ("license", 6, Ty::Msg(M::License)),
];
const CONTACT: &[F] = &[
    ("name", 1, Ty::Str),
    ("url", 2, Ty::Str),
    ("email", 3, Ty::Str),
];
const LICENSE: &[F] = &[("name", 1, Ty::Str), ("url", 2, Ty::Str)];
const EXTERNAL_DOCS: &[F] = &[("description", 1, Ty::Str), ("url", 2, Ty::Str)];
const TAG: &[F] = &[
    ("name", 1, Ty::Str),
    ("description", 2, Ty::Str),
    ("externalDocs", 3, Ty::Msg(M::ExternalDocs)),
];
const XML: &[F] = &[
    ("name", 1, Ty::Str),
    ("namespace", 2, Ty::Str),
    ("prefix", 3, Ty::Str),
    ("attribute", 4, Ty::Bool),
    ("wrapped", 5, Ty::Bool),
];
const RESPONSE: &[F] = &[
    ("description", 1, Ty::Str),
    ("schema", 2, Ty::Msg(M::SchemaItem)),
    ("headers", 3, Ty::Named(&Ty::Msg(M::Header))),
    ("examples", 4, Ty::Named(&Ty::Any)),
];
const JSON_REFERENCE: &[F] = &[("$ref", 1, Ty::Str), ("description", 2, Ty::Str)];
const BODY_PARAMETER: &[F] = &[
    ("description", 1, Ty::Str),
    ("name", 2, Ty::Str),
    ("in", 3, Ty::Str),
    ("required", 4, Ty::Bool),
    ("schema", 5, Ty::Msg(M::Schema)),
];
const BASIC_AUTH: &[F] = &[("type", 1, Ty::Str), ("description", 2, Ty::Str)];
const API_KEY: &[F] = &[
    ("type", 1, Ty::Str),
    ("name", 2, Ty::Str),
    ("in", 3, Ty::Str),
    ("description", 4, Ty::Str),
];
const OAUTH2_IMPLICIT: &[F] = &[
    ("type", 1, Ty::Str),
    ("flow", 2, Ty::Str),
    ("scopes", 3, Ty::Named(&Ty::Str)),
    ("authorizationUrl", 4, Ty::Str),
    ("description", 5, Ty::Str),
];
const OAUTH2_PASSWORD: &[F] = &[
    ("type", 1, Ty::Str),
    ("flow", 2, Ty::Str),
    ("scopes", 3, Ty::Named(&Ty::Str)),
    ("tokenUrl", 4, Ty::Str),
    ("description", 5, Ty::Str),
];
const OAUTH2_ACCESS_CODE: &[F] = &[
    ("type", 1, Ty::Str),
    ("flow", 2, Ty::Str),
    ("scopes", 3, Ty::Named(&Ty::Str)),
    ("authorizationUrl", 4, Ty::Str),
    ("tokenUrl", 5, Ty::Str),
    ("description", 6, Ty::Str),
];
const HEADER: &[F] = &[("description", 18, Ty::Str)];

impl M {
    /// The layout of a plain (non-oneof) message.
    fn spec(self) -> Spec {
        use Ty::*;
        match self {
            M::Document => spec(DOCUMENT, 16),
            M::Info => spec(INFO, 7),
            M::Contact => spec(CONTACT, 4),
            M::License => spec(LICENSE, 3),
            M::ExternalDocs => spec(EXTERNAL_DOCS, 3),
            M::Tag => spec(TAG, 4),
            M::Xml => spec(XML, 6),
            M::Paths => Spec {
                rest: Some((2, Msg(M::PathItem))),
                ..spec(&[], 1)
            },
            M::PathItem => spec(PATH_ITEM, 10),
            M::Operation => spec(OPERATION, 13),
            M::Responses => Spec {
                rest: Some((1, Msg(M::ResponseValue))),
                ..spec(&[], 2)
            },
            M::Response => spec(RESPONSE, 5),
            M::FileSchema => spec(FILE_SCHEMA, 10),
            M::Header => Spec {
                tail: 1,
                ..spec(HEADER, 19)
            },
            M::PrimitivesItems => Spec {
                tail: 1,
                ..spec(&[], 18)
            },
            M::Schema => spec(SCHEMA, 31),
            M::JsonReference => spec(JSON_REFERENCE, 0),
            M::BodyParameter => spec(BODY_PARAMETER, 6),
            M::SimpleParameter => Spec {
                tail: 5,
                ..spec(&PARAM_HEAD[..4], 22)
            },
            M::QueryParameter => Spec {
                tail: 6,
                ..spec(PARAM_HEAD, 23)
            },
            M::BasicAuth => spec(BASIC_AUTH, 3),
            M::ApiKey => spec(API_KEY, 5),
            // Implicit: authorizationUrl 4; password and application: tokenUrl 4.
            M::Oauth2Implicit => spec(OAUTH2_IMPLICIT, 6),
            M::Oauth2Password => spec(OAUTH2_PASSWORD, 6),
            M::Oauth2AccessCode => spec(OAUTH2_ACCESS_CODE, 7),
            M::SecurityRequirement => Spec {
                rest: Some((1, Msg(M::StringArray))),
                ..spec(&[], 0)
            },
            _ => spec(&[], 0),
        }
    }
}

/// Encode a swagger 2.0 document. Keys gnostic has no field for are left out.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    message(M::Document, doc)
}

/// One message's bytes.
fn message(m: M, v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some((number, inner)) = oneof(m, v) {
        put_len_field(&mut out, number, &message(inner, v));
        return out;
    }
    match (m, v) {
        (M::TypeItem | M::StringArray, _) => {
            let single = std::slice::from_ref(v);
            let items = v.as_array().map_or(single, Vec::as_slice);
            field(&mut out, 1, Ty::Strs, &Value::Array(items.to_vec()));
        }
        (M::ItemsItem, _) => {
            let single = std::slice::from_ref(v);
            for s in v.as_array().map_or(single, Vec::as_slice) {
                field(&mut out, 1, Ty::Msg(M::Schema), s);
            }
        }
        (M::AdditionalPropertiesItem, Value::Bool(b)) => {
            put_varint_field(&mut out, 2, u64::from(*b))
        }
        (_, Value::Object(obj)) => object(&mut out, &m.spec(), obj),
        _ => {}
    }
    out
}

/// The member of a gnostic `oneof` message a JSON value is: `(field number, message)`.
fn oneof(m: M, v: &Value) -> Option<(u32, M)> {
    let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let reference = v.get("$ref").is_some();
    Some(match m {
        M::AdditionalPropertiesItem if v.is_object() => (1, M::Schema),
        M::ParametersItem if reference => (2, M::JsonReference),
        M::ParametersItem => (1, M::Parameter),
        M::Parameter if get("in") == "body" => (1, M::BodyParameter),
        M::Parameter => (2, M::NonBodyParameter),
        M::NonBodyParameter => match get("in") {
            "header" => (1, M::SimpleParameter),
            "formData" => (2, M::QueryParameter),
            "path" => (4, M::SimpleParameter),
            _ => (3, M::QueryParameter),
        },
        M::ResponseValue if reference => (2, M::JsonReference),
        M::ResponseValue => (1, M::Response),
        M::SchemaItem if get("type") == "file" => (2, M::FileSchema),
        M::SchemaItem => (1, M::Schema),
        M::SecurityDefinitionsItem => match (get("type"), get("flow")) {
            ("basic", _) => (1, M::BasicAuth),
            ("oauth2", "implicit") => (3, M::Oauth2Implicit),
            ("oauth2", "password") => (4, M::Oauth2Password),
            ("oauth2", "application") => (5, M::Oauth2Password),
            ("oauth2", _) => (6, M::Oauth2AccessCode),
            _ => (2, M::ApiKey),
        },
        _ => return None,
    })
}

/// A JSON object as message `s`: its known keys in field order, then vendor extensions, then
/// the named rest.
fn object(out: &mut Vec<u8>, s: &Spec, obj: &Map<String, Value>) {
    for (key, number, ty) in s.fields {
        if let Some(v) = obj.get(*key) {
            field(out, *number, *ty, v);
        }
    }
    if s.tail > 0 {
        for ((key, ty), number) in VALIDATIONS.iter().zip(s.tail..) {
            if let Some(v) = obj.get(*key) {
                field(out, number, *ty, v);
            }
        }
    }
    for (key, v) in obj {
        if key.starts_with("x-") {
            if s.ext > 0 {
                named(out, s.ext, key, Ty::Any, v);
            }
        } else if let Some((number, ty)) = s.rest {
            named(out, number, key, ty, v);
        }
    }
}

/// A `Named…{name = 1, value = 2}` entry.
fn named(out: &mut Vec<u8>, number: u32, name: &str, ty: Ty, v: &Value) {
    let mut entry = Vec::new();
    put_len_field(&mut entry, 1, name.as_bytes());
    field(&mut entry, 2, ty, v);
    put_len_field(out, number, &entry);
}

/// One field; values of the wrong JSON type are left out (gnostic would reject the document).
fn field(out: &mut Vec<u8>, number: u32, ty: Ty, v: &Value) {
    match ty {
        Ty::Str => {
            if let Some(s) = v.as_str() {
                put_len_field(out, number, s.as_bytes());
            }
        }
        Ty::Bool => {
            if let Some(b) = v.as_bool() {
                put_varint_field(out, number, u64::from(b));
            }
        }
        Ty::Int => {
            if let Some(i) = v.as_i64() {
                put_varint_field(out, number, i as u64);
            }
        }
        Ty::Double => {
            if let Some(d) = v.as_f64() {
                put_varint(out, u64::from(number) << 3 | u64::from(FIXED64));
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
        Ty::Strs => {
            for s in v.as_array().into_iter().flatten() {
                field(out, number, Ty::Str, s);
            }
        }
        Ty::Any => {
            let mut any = Vec::new();
            put_len_field(&mut any, 2, yaml(v).as_bytes());
            put_len_field(out, number, &any);
        }
        Ty::Anys => {
            for item in v.as_array().into_iter().flatten() {
                field(out, number, Ty::Any, item);
            }
        }
        Ty::Msg(m) => put_len_field(out, number, &message(m, v)),
        Ty::Msgs(m) => {
            for item in v.as_array().into_iter().flatten() {
                field(out, number, Ty::Msg(m), item);
            }
        }
        Ty::Named(inner) => {
            let mut wrapper = Vec::new();
            for (k, item) in v.as_object().into_iter().flatten() {
                named(&mut wrapper, 1, k, *inner, item);
            }
            put_len_field(out, number, &wrapper);
        }
    }
}

/// An `Any`'s `yaml`: indented JSON, which is YAML (flow style) that yaml.v2 reads back into
/// the same value.
fn yaml(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests;
