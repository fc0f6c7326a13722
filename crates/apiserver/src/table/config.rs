//! Printers for ConfigMap, Secret, ServiceAccount and PodDisruptionBudget rows (upstream
//! `printConfigMap`, `printSecret`, `printServiceAccount`, `printPodDisruptionBudget`).
//!
//! Start at [`columns`] and [`cells`].

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::format::{age, at, s};
use super::{Col, age_col, name_col};

fn count(obj: &Value, field: &str) -> usize {
    match at(obj, &[field]) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// Upstream's int-or-string `String()`, or `N/A` when unset.
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(p)) => p.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".to_string(),
    }
}

/// The column definitions of `kind`, if this module prints it.
pub fn columns(kind: &str) -> Option<Vec<Col>> {
    let cols = match kind {
        "ConfigMap" => vec![
            name_col(),
            Col(
                "Data",
                "string",
                0,
                "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
            ),
            age_col(),
        ],
        "Secret" => vec![
            name_col(),
            Col(
                "Type",
                "string",
                0,
                "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
            ),
            Col(
                "Data",
                "string",
                0,
                "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
            ),
            age_col(),
        ],
        "ServiceAccount" => vec![
            name_col(),
            Col(
                "Secrets",
                "string",
                0,
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            age_col(),
        ],
        "PodDisruptionBudget" => vec![
            name_col(),
            Col(
                "Min Available",
                "string",
                0,
                "The minimum number of pods that must be available.",
            ),
            Col(
                "Max Unavailable",
                "string",
                0,
                "The maximum number of pods that may be unavailable.",
            ),
            Col(
                "Allowed Disruptions",
                "integer",
                0,
                "Calculated number of pods that may be disrupted at this time.",
            ),
            age_col(),
        ],
        _ => return None,
    };
    Some(cols)
}

/// The row cells of `obj` (a `kind` this module prints).
pub fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Option<Vec<Value>> {
    let name = json!(s(obj, &["metadata", "name"]));
    let row = match kind {
        "ConfigMap" => vec![
            name,
            json!(count(obj, "data") + count(obj, "binaryData")),
            json!(age(obj, now)),
        ],
        "Secret" => vec![
            name,
            json!(s(obj, &["type"])),
            json!(count(obj, "data")),
            json!(age(obj, now)),
        ],
        "ServiceAccount" => vec![name, json!(count(obj, "secrets")), json!(age(obj, now))],
        "PodDisruptionBudget" => vec![
            name,
            json!(int_or_string(at(obj, &["spec", "minAvailable"]))),
            json!(int_or_string(at(obj, &["spec", "maxUnavailable"]))),
            json!(
                at(obj, &["status", "disruptionsAllowed"])
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            ),
            json!(age(obj, now)),
        ],
        _ => return None,
    };
    Some(row)
}

#[cfg(test)]
mod tests {
    use api::resources::by_kind;
    use chrono::DateTime;

    use super::super::{column_definitions, row_cells};
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .expect("now")
            .with_timezone(&Utc)
    }

    fn header_and_row(api_version: &str, kind: &str, obj: Value) -> (Vec<String>, Vec<Value>) {
        let res = by_kind(api_version, kind).expect("served kind");
        let names = column_definitions(res)
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect();
        (names, row_cells(res, &obj, now()))
    }

    #[test]
    fn rows_match_upstream_printers() {
        let meta = json!({"name": "x", "creationTimestamp": "2026-01-10T11:00:00Z"});
        let (h, r) = header_and_row(
            "v1",
            "ConfigMap",
            json!({"metadata": meta, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "Mw=="}}),
        );
        assert_eq!(h, ["Name", "Data", "Age"]);
        assert_eq!(r, [json!("x"), json!(3), json!("60m")]);
        let (h, r) = header_and_row(
            "v1",
            "Secret",
            json!({"metadata": meta, "type": "Opaque", "data": {"a": "MQ=="}}),
        );
        assert_eq!(h, ["Name", "Type", "Data", "Age"]);
        assert_eq!(r, [json!("x"), json!("Opaque"), json!(1), json!("60m")]);
        let (h, r) = header_and_row("v1", "ServiceAccount", json!({"metadata": meta}));
        assert_eq!(h, ["Name", "Secrets", "Age"]);
        assert_eq!(r, [json!("x"), json!(0), json!("60m")]);
        let (h, r) = header_and_row(
            "policy/v1",
            "PodDisruptionBudget",
            json!({"metadata": meta, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 2}}),
        );
        assert_eq!(
            h,
            [
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age"
            ]
        );
        assert_eq!(
            r,
            [
                json!("x"),
                json!("50%"),
                json!("N/A"),
                json!(2),
                json!("60m")
            ]
        );
    }
}
