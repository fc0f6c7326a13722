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
        message: "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io".into(),
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
        other => return Err(StatusError::unsupported_media_type(other)),
    })
}

/// Decode a request body as JSON or YAML into a JSON value.
pub fn decode_body(body: &[u8], ty: BodyType) -> Result<Value, StatusError> {
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
}
