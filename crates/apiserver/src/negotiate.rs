//! Content negotiation: which representation the client asked for (`Accept`) and how its body
//! is encoded (`Content-Type`).
//!
//! Start at [`output_format`] and [`decode_body`].

use api::status::StatusError;
use serde_json::Value;

/// The representation a response is rendered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The objects themselves.
    Json,
    /// A `meta.k8s.io/v1` Table (what `kubectl get` prints).
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList` (metadata only).
    Metadata,
}

/// Pick the first representation in `Accept` that we serve. Unknown media types are skipped;
/// if none is acceptable the answer is 406.
pub fn output_format(accept: Option<&str>) -> Result<Output, StatusError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for clause in accept.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut as_ = None;
        let mut group = None;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = Some(v.trim().to_string()),
                    "g" => group = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        if !matches!(media.as_str(), "application/json" | "*/*" | "application/*") {
            continue;
        }
        match (as_.as_deref(), group.as_deref()) {
            (None, _) => return Ok(Output::Json),
            (Some("Table"), Some("meta.k8s.io")) => return Ok(Output::Table),
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                return Ok(Output::Metadata);
            }
            _ => continue,
        }
    }
    Err(StatusError {
        code: 406,
        reason: "NotAcceptable",
        message: concat!(
            "only the following media types are accepted: application/json, ",
            "application/json;as=Table;v=v1;g=meta.k8s.io, ",
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io, ",
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        )
        .into(),
        details: None,
    })
}

/// The encodings `GET /openapi/v2` is served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenApiV2Format {
    Json,
    /// gnostic's `openapi.v2.Document` ([`api::proto::openapi_v2`]).
    Protobuf,
}

/// Pick the `/openapi/v2` encoding as upstream kube-openapi's handler does: the clauses by
/// falling `q` (0 excluded), the first that names JSON, either protobuf subtype or a wildcard.
/// Nothing acceptable is 406.
pub fn openapi_v2_format(accept: Option<&str>) -> Result<OpenApiV2Format, StatusError> {
    let accept = accept.filter(|a| !a.trim().is_empty()).unwrap_or("*/*");
    let mut clauses: Vec<(f64, String)> = accept
        .split(',')
        .map(|clause| {
            let mut parts = clause.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim() == "q")
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            (q, media)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    let protobuf = [
        api::proto::openapi_v2::MEDIA_TYPE_REQUESTED,
        api::proto::openapi_v2::MEDIA_TYPE,
    ];
    for (_, media) in &clauses {
        match media.as_str() {
            "application/json" | "application/*" | "*/*" => return Ok(OpenApiV2Format::Json),
            m if protobuf.contains(&m) => return Ok(OpenApiV2Format::Protobuf),
            _ => {}
        }
    }
    Err(StatusError {
        code: 406,
        reason: "NotAcceptable",
        message: format!(
            "only the following media types are accepted: application/json, {}, {}",
            protobuf[0], protobuf[1]
        ),
        details: None,
    })
}

/// Body encodings a write may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    MergePatch,
    JsonPatch,
    StrategicMergePatch,
    ApplyPatch,
    /// `application/vnd.kubernetes.protobuf`: the `k8s\0` envelope (see [`api::proto`]).
    Protobuf,
}

/// Classify `Content-Type`.
pub fn body_type(content_type: Option<&str>) -> Result<BodyType, StatusError> {
    let media = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(match media.as_str() {
        "" | "application/json" | "*/*" => BodyType::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyType::Yaml,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        "application/apply-patch+yaml" => BodyType::ApplyPatch,
        api::proto::MEDIA_TYPE => BodyType::Protobuf,
        other => return Err(StatusError::unsupported_media_type(other)),
    })
}

/// Decode a request body as JSON or YAML into a JSON value.
pub fn decode_body(body: &[u8], ty: BodyType) -> Result<Value, StatusError> {
    decode_body_as(body, ty, None)
}

/// Decode a request body (JSON, YAML or protobuf) into a JSON value. `target` is the
/// `(apiVersion, kind)` the URL expects: a protobuf envelope without a kind gets it, and decode
/// errors name it as upstream's transformDecodeError does.
pub fn decode_body_as(
    body: &[u8],
    ty: BodyType,
    target: Option<(&str, &str)>,
) -> Result<Value, StatusError> {
    if ty == BodyType::Protobuf {
        return api::proto::decode_object(body, target).map_err(|e| {
            let into = target.map_or("", |t| t.1);
            protobuf_error(e, into, body)
        });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(StatusError::bad_request(
            "the body of the request was empty",
        ));
    }
    let parsed = match ty {
        BodyType::Yaml | BodyType::ApplyPatch => serde_yaml::from_slice::<Value>(body)
            .map_err(|e| format!("error converting YAML to JSON: {e}")),
        _ => serde_json::from_slice::<Value>(body)
            .map_err(|e| format!("couldn't get version/kind; json parse error: {e}")),
    };
    parsed.map_err(StatusError::bad_request)
}

/// A protobuf decode failure as upstream's transformDecodeError words it (400 BadRequest).
fn protobuf_error(e: api::proto::DecodeError, into: &str, body: &[u8]) -> StatusError {
    match e.body_kind {
        Some((kind, version)) => StatusError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {into}: {}",
            e.error
        )),
        None => StatusError::bad_request(format!(
            "the object provided is unrecognized (must be of type {into}): {} ({})",
            e.error,
            summarize(body, 30)
        )),
    }
}

/// Upstream's summarizeData: JSON text or hex, cut at `max` bytes.
fn summarize(body: &[u8], max: usize) -> String {
    let cut = &body[..body.len().min(max)];
    let more = if body.len() > max { " ..." } else { "" };
    match body.first() {
        None => "<empty>".into(),
        Some(b'{') => format!("{}{more}", String::from_utf8_lossy(cut)),
        Some(_) => {
            let hex: String = cut.iter().map(|b| format!("{b:02x}")).collect();
            format!("{hex}{more}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_tables() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(output_format(Some(a)).unwrap(), Output::Table);
        assert_eq!(output_format(None).unwrap(), Output::Json);
        assert_eq!(
            output_format(Some(
                "application/vnd.kubernetes.protobuf, application/json"
            ))
            .unwrap(),
            Output::Json
        );
        assert_eq!(
            output_format(Some(
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
            ))
            .unwrap(),
            Output::Metadata
        );
        assert_eq!(
            output_format(Some("application/vnd.kubernetes.protobuf"))
                .unwrap_err()
                .code,
            406
        );
    }

    #[test]
    fn openapi_v2_is_json_or_gnostic_protobuf() {
        use OpenApiV2Format::{Json, Protobuf};
        let pb = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
        assert_eq!(openapi_v2_format(Some(pb)).unwrap(), Protobuf);
        let dotted = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
        assert_eq!(openapi_v2_format(Some(dotted)).unwrap(), Protobuf);
        assert_eq!(openapi_v2_format(None).unwrap(), Json);
        assert_eq!(
            openapi_v2_format(Some("application/json, */*")).unwrap(),
            Json
        );
        let ranked = format!("application/json;q=0.5, {pb}");
        assert_eq!(openapi_v2_format(Some(&ranked)).unwrap(), Protobuf);
        let refused = format!("{pb};q=0, application/json;q=0.1");
        assert_eq!(openapi_v2_format(Some(&refused)).unwrap(), Json);
        let e = openapi_v2_format(Some("application/vnd.kubernetes.protobuf")).unwrap_err();
        assert_eq!((e.code, e.reason), (406, "NotAcceptable"));
    }

    #[test]
    fn bodies() {
        assert_eq!(
            body_type(Some("application/json; charset=utf-8")).unwrap(),
            BodyType::Json
        );
        assert_eq!(body_type(Some("text/plain")).unwrap_err().code, 415);
        let y = decode_body(b"a: 1\nb: [x]\n", BodyType::Yaml).unwrap();
        assert_eq!(y["b"][0], "x");
        assert_eq!(decode_body(b"{bad", BodyType::Json).unwrap_err().code, 400);
        assert_eq!(decode_body(b"  ", BodyType::Json).unwrap_err().code, 400);
    }

    #[test]
    fn protobuf_errors_read_as_upstream_transform_decode_error() {
        assert_eq!(
            body_type(Some("application/vnd.kubernetes.protobuf")).unwrap(),
            BodyType::Protobuf
        );
        let ns = Some(("v1", "Namespace"));
        let e = decode_body_as(b"{\"kind\":\"Namespace\"}", BodyType::Protobuf, ns).unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "the object provided is unrecognized (must be of type Namespace): provided data does not appear to be a protobuf message, expected prefix [107 56 115 0] ({\"kind\":\"Namespace\"})"
        );
        // Envelope claims 16 bytes of raw, has 2: the envelope itself is cut.
        let cut = b"k8s\0\x12\x10\x0a\x00";
        let e = decode_body_as(cut, BodyType::Protobuf, ns).unwrap_err();
        assert_eq!(
            e.message,
            "the object provided is unrecognized (must be of type Namespace): unexpected EOF (6b38730012100a00)"
        );
        // typeMeta {v1, Widget}.
        let widget = b"k8s\0\x0a\x0c\x0a\x02v1\x12\x06Widget\x12\x00";
        let e = decode_body_as(widget, BodyType::Protobuf, ns).unwrap_err();
        assert_eq!(
            e.message,
            "Widget in version \"v1\" cannot be handled as a Namespace: no kind \"Widget\" is registered for version \"v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        );
        assert_eq!(
            summarize(&[0xab; 40], 30),
            format!("{} ...", "ab".repeat(30))
        );
    }
}
