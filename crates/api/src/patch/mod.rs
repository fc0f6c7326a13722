//! The three patch types kubectl sends (JSON merge, JSON patch, strategic merge) over `serde_json::Value`.
//!
//! Start at [`PatchType`] (chosen from the request's `Content-Type`) and [`apply`]; the engines are
//! [`merge_patch`] (RFC 7386), [`json_patch`] (RFC 6902) and [`strategic_merge_patch`] (upstream
//! `k8s.io/apimachinery/pkg/util/strategicpatch`), whose per-kind table is [`merge_key_for`].

mod json;
mod merge;
mod meta;
mod strategic;

#[cfg(test)]
mod json_tests;
#[cfg(test)]
mod strategic_tests;

use serde_json::Value;

use crate::status::{Cause, StatusError};

pub use json::json_patch;
pub use merge::merge_patch;
pub use meta::{PATCH_KINDS, merge_key_for};
pub use strategic::strategic_merge_patch;

/// A patch that could not be decoded or applied; the target is never changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document has the wrong JSON shape (e.g. a merge patch that is not an object).
    #[error("{0}")]
    BadPatch(String),
    /// A JSON patch operation is malformed (missing `path`, unknown `op`, bad pointer).
    #[error("json patch operation {index}: {reason}")]
    BadOperation { index: usize, reason: String },
    /// A well-formed JSON patch operation does not apply to this object.
    #[error("json patch operation {index} ({op}) does not apply: {reason}")]
    OperationFailed {
        index: usize,
        op: String,
        reason: String,
    },
    /// The strategic merge patch is malformed (bad directive, missing merge key, ...).
    #[error("{0}")]
    Strategic(String),
    /// Strategic merge patch is only defined for built-in kinds.
    #[error("strategic merge patch is not supported for kind {0:?}")]
    UnsupportedKind(String),
}

impl PatchError {
    /// The `Status` upstream answers: 422 for a JSON patch that does not apply, 415 for a
    /// strategic patch of a kind without patch metadata, 400 otherwise.
    pub fn to_status_error(&self) -> StatusError {
        match self {
            PatchError::OperationFailed { .. } => StatusError {
                code: 422,
                reason: "Invalid",
                message: "the server rejected our request due to an error in our request"
                    .to_string(),
                details: Some(Box::new(crate::status::Details {
                    causes: vec![Cause {
                        reason: "FieldValueInvalid",
                        field: String::new(),
                        message: self.to_string(),
                    }],
                    ..Default::default()
                })),
            },
            PatchError::UnsupportedKind(_) => StatusError {
                code: 415,
                reason: "UnsupportedMediaType",
                message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_string(),
                details: None,
            },
            _ => StatusError::bad_request(self.to_string()),
        }
    }
}

/// The patch flavours of a PATCH request, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
}

impl PatchType {
    /// The patch type for a request `Content-Type` (parameters such as `; charset=utf-8` ignored);
    /// `None` for anything else, including server-side apply (`application/apply-patch+yaml`).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            _ => None,
        }
    }
}

/// Apply `patch` of type `ty` to `target` (an object of `kind`), returning the patched object.
pub fn apply(
    ty: PatchType,
    target: &Value,
    patch: &Value,
    kind: &str,
) -> Result<Value, PatchError> {
    match ty {
        PatchType::Json => json_patch(target, patch),
        PatchType::Merge => Ok(merge_patch(target, patch)),
        PatchType::StrategicMerge => strategic_merge_patch(target, patch, kind),
    }
}
