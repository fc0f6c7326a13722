//! Kubernetes `Status` errors with upstream reasons, codes and message texts.
//!
//! Start at [`StatusError`]: every failed API request becomes one, and [`StatusError::to_status`]
//! renders the `Status` object the client sees.

use serde_json::{Value, json};

use crate::resources::ResourceInfo;

/// One field-level cause of an `Invalid` error (upstream `field.Error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Upstream cause type, e.g. `FieldValueInvalid`.
    pub reason: &'static str,
    /// The field path, e.g. `spec.ports[0].port`.
    pub field: String,
    /// The message without the field, e.g. `Invalid value: 0: must be between 1 and 65535, inclusive`.
    pub message: String,
}

impl Cause {
    /// `Required value` (optionally `: detail`).
    pub fn required(field: impl Into<String>, detail: &str) -> Cause {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }

    /// `Invalid value: <value>: detail`; `value` is rendered as upstream does (strings quoted).
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", render_value(value)),
        }
    }

    /// `Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Cause {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                render_value(value),
                list.join(", ")
            ),
        }
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Cause {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", render_value(value)),
        }
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }

    /// `Too long: may not be more than N bytes` style.
    pub fn too_long(field: impl Into<String>, max: usize) -> Cause {
        Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// `field: message` as upstream joins them in the Status message.
    pub fn to_line(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// Upstream renders strings quoted and other values as JSON.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// A failed API request: HTTP code, upstream reason, message and optional details.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    pub code: u16,
    /// Upstream `StatusReason`, e.g. `NotFound`, `AlreadyExists`, `Invalid`.
    pub reason: &'static str,
    pub message: String,
    /// Boxed so `Result<_, StatusError>` stays small on the hot path.
    pub details: Option<Box<Details>>,
}

/// `Status.details`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub name: String,
    pub group: String,
    /// The resource's plural for NotFound/AlreadyExists/Conflict, the Kind for Invalid.
    pub kind: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

impl StatusError {
    fn with(code: u16, reason: &'static str, message: String) -> StatusError {
        StatusError {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn named(res: &ResourceInfo, name: &str) -> Option<Box<Details>> {
        Some(Box::new(Details {
            name: name.to_string(),
            group: res.group.to_string(),
            kind: res.plural.to_string(),
            ..Details::default()
        }))
    }

    /// 404 `services "foo" not found`.
    pub fn not_found(res: &ResourceInfo, name: &str) -> StatusError {
        StatusError {
            details: Self::named(res, name),
            ..Self::with(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", res.qualified_plural()),
            )
        }
    }

    /// 409 `services "foo" already exists`.
    pub fn already_exists(res: &ResourceInfo, name: &str) -> StatusError {
        StatusError {
            details: Self::named(res, name),
            ..Self::with(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", res.qualified_plural()),
            )
        }
    }

    /// 403 as upstream's `NewForbidden`: `roles.rbac.authorization.k8s.io "r" is forbidden: <why>`
    /// (without the name when there is none).
    pub fn forbidden(res: &ResourceInfo, name: &str, why: &str) -> StatusError {
        let message = match name {
            "" => format!("{} is forbidden: {why}", res.qualified_plural()),
            n => format!("{} \"{n}\" is forbidden: {why}", res.qualified_plural()),
        };
        StatusError {
            details: Self::named(res, name),
            ..Self::with(403, "Forbidden", message)
        }
    }

    /// 409 Conflict with upstream's optimistic-concurrency text.
    pub fn conflict(res: &ResourceInfo, name: &str) -> StatusError {
        Self::conflict_with(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 `Operation cannot be fulfilled on services "foo": <why>`.
    pub fn conflict_with(res: &ResourceInfo, name: &str, why: &str) -> StatusError {
        StatusError {
            details: Self::named(res, name),
            ..Self::with(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    res.qualified_plural()
                ),
            )
        }
    }

    /// 422 `Service "foo" is invalid: <causes>`.
    pub fn invalid(res: &ResourceInfo, name: &str, causes: Vec<Cause>) -> StatusError {
        let lines: Vec<String> = causes.iter().map(Cause::to_line).collect();
        let joined = match lines.len() {
            0 => "unknown".to_string(),
            1 => lines[0].clone(),
            _ => format!("[{}]", lines.join(", ")),
        };
        let kind_name = if res.group.is_empty() {
            res.kind.to_string()
        } else {
            format!("{}.{}", res.kind, res.group)
        };
        StatusError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind_name} \"{name}\" is invalid: {joined}"),
            details: Some(Box::new(Details {
                name: name.to_string(),
                group: res.group.to_string(),
                kind: res.kind.to_string(),
                causes,
                retry_after_seconds: None,
            })),
        }
    }

    /// 400 BadRequest.
    /// 401 `Unauthorized`: no credentials the server accepts (upstream's text, no details).
    pub fn unauthorized() -> StatusError {
        Self::with(401, "Unauthorized", "Unauthorized".to_string())
    }

    pub fn bad_request(message: impl Into<String>) -> StatusError {
        Self::with(400, "BadRequest", message.into())
    }

    /// 410 Expired (a compacted resourceVersion or continue token).
    pub fn expired(message: impl Into<String>) -> StatusError {
        Self::with(410, "Expired", message.into())
    }

    /// 410 Gone, as a watch reports a too-old resourceVersion.
    pub fn gone(message: impl Into<String>) -> StatusError {
        Self::with(410, "Gone", message.into())
    }

    /// 500 InternalError: `Internal error occurred: <message>`.
    pub fn internal(message: impl std::fmt::Display) -> StatusError {
        StatusError {
            details: Some(Box::new(Details {
                causes: vec![Cause {
                    reason: "UnexpectedServerResponse",
                    field: String::new(),
                    message: message.to_string(),
                }],
                ..Details::default()
            })),
            ..Self::with(
                500,
                "InternalError",
                format!("Internal error occurred: {message}"),
            )
        }
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(verb: &str, what: &str) -> StatusError {
        Self::with(
            405,
            "MethodNotAllowed",
            format!("{verb} is not supported on resources of kind \"{what}\""),
        )
    }

    /// 404 for an unknown URL.
    pub fn path_not_found() -> StatusError {
        Self::with(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        )
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit_bytes: usize) -> StatusError {
        Self::with(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit_bytes}"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> StatusError {
        Self::with(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type})"
            ),
        )
    }

    /// 503 ServiceUnavailable (upstream `NewServiceUnavailable`): the message is the reason,
    /// e.g. the storage error when etcd cannot be reached.
    pub fn service_unavailable(message: impl Into<String>) -> StatusError {
        Self::with(503, "ServiceUnavailable", message.into())
    }

    /// 504 Timeout (upstream `NewTimeoutError`): `Timeout: <message>`, retry after
    /// `retry_after_seconds` (omitted when 0).
    pub fn timeout(message: &str, retry_after_seconds: u32) -> StatusError {
        StatusError {
            details: (retry_after_seconds > 0).then(|| {
                Box::new(Details {
                    retry_after_seconds: Some(retry_after_seconds),
                    ..Details::default()
                })
            }),
            ..Self::with(504, "Timeout", format!("Timeout: {message}"))
        }
    }

    /// 504 Timeout for a resourceVersion newer than the store's.
    pub fn too_large_resource_version(requested: u64, current: u64) -> StatusError {
        StatusError {
            details: Some(Box::new(Details {
                causes: vec![Cause {
                    reason: "ResourceVersionTooLarge",
                    field: String::new(),
                    message: "Too large resource version".into(),
                }],
                retry_after_seconds: Some(1),
                ..Details::default()
            })),
            ..Self::with(
                504,
                "Timeout",
                format!("Too large resource version: {requested}, current: {current}"),
            )
        }
    }

    /// The `Status` object (`kind: Status`, `apiVersion: v1`) sent to the client.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            let mut details = serde_json::Map::new();
            if !d.name.is_empty() {
                details.insert("name".into(), json!(d.name));
            }
            if !d.group.is_empty() {
                details.insert("group".into(), json!(d.group));
            }
            if !d.kind.is_empty() {
                details.insert("kind".into(), json!(d.kind));
            }
            if !d.causes.is_empty() {
                let causes: Vec<Value> = d
                    .causes
                    .iter()
                    .map(|c| {
                        let mut m = serde_json::Map::new();
                        m.insert("reason".into(), json!(c.reason));
                        m.insert("message".into(), json!(c.message));
                        if !c.field.is_empty() {
                            m.insert("field".into(), json!(c.field));
                        }
                        Value::Object(m)
                    })
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            if let Some(s) = d.retry_after_seconds {
                details.insert("retryAfterSeconds".into(), json!(s));
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// A successful delete of a collection-less object answers with `status: Success`.
pub fn success_status(res: &ResourceInfo, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": res.group, "kind": res.plural, "uid": uid},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_plural;

    #[test]
    fn invalid_joins_causes_like_upstream() {
        let svc = by_plural("", "services").unwrap();
        let one = StatusError::invalid(
            svc,
            "web",
            vec![Cause::invalid(
                "spec.ports[0].port",
                &json!(0),
                "must be between 1 and 65535, inclusive",
            )],
        );
        assert_eq!(
            one.message,
            "Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        let two = StatusError::invalid(
            svc,
            "web",
            vec![
                Cause::required("spec.ports", ""),
                Cause::invalid("metadata.name", &json!("A"), "bad"),
            ],
        );
        assert!(
            two.message.ends_with(
                "[spec.ports: Required value, metadata.name: Invalid value: \"A\": bad]"
            )
        );
        assert_eq!(
            two.to_status()["details"]["causes"][1]["field"],
            "metadata.name"
        );
    }

    #[test]
    fn unavailable_and_timeout_as_upstream() {
        let u = StatusError::service_unavailable("etcdserver: no leader").to_status();
        assert_eq!(
            (
                u["code"].as_u64(),
                u["reason"].as_str(),
                u["message"].as_str()
            ),
            (
                Some(503),
                Some("ServiceUnavailable"),
                Some("etcdserver: no leader")
            )
        );
        let t = StatusError::timeout("etcdserver: request timed out", 1).to_status();
        assert_eq!(t["code"], 504);
        assert_eq!(t["reason"], "Timeout");
        assert_eq!(t["message"], "Timeout: etcdserver: request timed out");
        assert_eq!(t["details"]["retryAfterSeconds"], 1);
    }

    #[test]
    fn not_found_uses_qualified_plural() {
        let d = by_plural("apps", "deployments").unwrap();
        let e = StatusError::not_found(d, "x");
        assert_eq!(e.message, "deployments.apps \"x\" not found");
        assert_eq!(e.to_status()["code"], 404);
        assert_eq!(e.to_status()["details"]["group"], "apps");
    }
}
