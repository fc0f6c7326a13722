//! Label and field selection of objects for list, watch and deletecollection.
//!
//! Start at [`Filter::from_query`].

use std::collections::BTreeMap;

use api::resources::ResourceInfo;
use api::selector::{FieldSelector, LabelSelector};
use api::status::StatusError;
use serde_json::Value;

/// The selectors of one request.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
}

/// Field selectors each kind supports (upstream registers these per resource).
fn supported_fields(res: &ResourceInfo) -> &'static [&'static str] {
    match res.kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Node" => &["spec.unschedulable"],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Namespace" => &["status.phase"],
        "Service" => &["spec.clusterIP", "spec.type"],
        _ => &[],
    }
}

/// The value of a selectable field of `obj` (`None` if absent).
fn field_value(obj: &Value, field: &str) -> Option<String> {
    let mut cur = obj;
    for part in field.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) if field == "source" => o
            .get("component")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

impl Filter {
    /// Parse `labelSelector` and `fieldSelector` query parameters.
    pub fn from_query(
        res: &ResourceInfo,
        q: &BTreeMap<String, String>,
    ) -> Result<Filter, StatusError> {
        let label = match q.get("labelSelector").filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(LabelSelector::parse(s).map_err(|e| {
                StatusError::bad_request(format!("unable to parse requirement: {e}"))
            })?),
            None => None,
        };
        let field = match q.get("fieldSelector").filter(|s| !s.trim().is_empty()) {
            Some(s) => {
                let f =
                    FieldSelector::parse(s).map_err(|e| StatusError::bad_request(e.to_string()))?;
                for name in f.fields() {
                    let generic = matches!(name, "metadata.name" | "metadata.namespace");
                    if !generic && !supported_fields(res).contains(&name) {
                        return Err(StatusError::bad_request(format!(
                            "field label not supported: {name}"
                        )));
                    }
                }
                Some(f)
            }
            None => None,
        };
        Ok(Filter { label, field })
    }

    /// The name every match must have (`fieldSelector=metadata.name=X`), if any: lets the
    /// watch path skip other objects without decoding them.
    pub fn exact_name(&self) -> Option<&str> {
        self.field.as_ref()?.requires_exact_match("metadata.name")
    }

    /// True when matching needs the decoded object (anything beyond an exact name).
    pub fn needs_object(&self) -> bool {
        let name_only = self.field.as_ref().is_none_or(|f| {
            f.terms().len() == 1 && f.requires_exact_match("metadata.name").is_some()
        });
        self.label.is_some() || !name_only
    }

    /// True when no selector was given.
    pub fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.label {
            let labels: BTreeMap<String, String> = obj
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            if !l.matches(&labels) {
                return false;
            }
        }
        if let Some(f) = &self.field {
            return f.matches(|name| field_value(obj, name));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pods_by_node_and_label() {
        let pods = by_plural("", "pods").unwrap();
        let f = Filter::from_query(
            pods,
            &q(&[
                ("fieldSelector", "spec.nodeName=n1"),
                ("labelSelector", "app=web"),
            ]),
        )
        .unwrap();
        let yes = json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}});
        let other_node = json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"nodeName": "n2"}});
        let other_label =
            json!({"metadata": {"name": "a", "labels": {"app": "db"}}, "spec": {"nodeName": "n1"}});
        assert!(f.matches(&yes));
        assert!(!f.matches(&other_node));
        assert!(!f.matches(&other_label));
    }

    #[test]
    fn unsupported_field_is_rejected() {
        let svc = by_plural("", "services").unwrap();
        let e = Filter::from_query(svc, &q(&[("fieldSelector", "spec.nodeName=x")])).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .contains("field label not supported: spec.nodeName")
        );
    }
}
