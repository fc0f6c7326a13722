//! Conversion between `events.k8s.io/v1` and core `v1` Events (upstream
//! `pkg/apis/events/v1/conversion.go`), and the strict create rules upstream applies to Events
//! created through `events.k8s.io/v1` (`ValidateEventCreate` for new-style events).
//!
//! Start at [`to_core`] and [`from_core`]; both are pure and total.

use serde_json::{Map, Value, json};

use crate::status::Cause;

/// `events.k8s.io/v1` field name → core `v1` field name, for the fields whose names differ.
pub const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
];

/// Fields both versions spell the same way.
pub const SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "action",
    "reason",
    "type",
    "related",
    "reportingInstance",
];

pub const API_VERSION: &str = "events.k8s.io/v1";

/// One Event (or a bare watch bookmark) in `events.k8s.io/v1` form as core `v1`. Only fields of
/// the `events.k8s.io/v1` schema carry over (a core-only name like `message` is unknown there and
/// is dropped, as upstream's decoder drops unknown fields).
pub fn to_core(v1: &Value) -> Value {
    convert(v1, "v1", |name| {
        RENAMED
            .iter()
            .find(|(v1, _)| *v1 == name)
            .map(|(_, core)| *core)
            .or_else(|| SHARED.contains(&name).then_some(name))
    })
}

/// One core `v1` Event (or bookmark) in `events.k8s.io/v1` form.
pub fn from_core(core: &Value) -> Value {
    convert(core, API_VERSION, |name| {
        RENAMED
            .iter()
            .find(|(_, c)| *c == name)
            .map(|(v1, _)| *v1)
            .or_else(|| SHARED.contains(&name).then_some(name))
    })
}

fn convert<'a>(
    obj: &'a Value,
    api_version: &str,
    rename: impl Fn(&'a str) -> Option<&'a str>,
) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if let Some(to) = rename(k) {
                out.insert(to.to_string(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn text<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get(field).and_then(Value::as_str).unwrap_or("")
}

fn set(obj: &Value, field: &str) -> bool {
    obj.get(field)
        .is_some_and(|v| !v.is_null() && v != &json!("") && v != &json!(0) && v != &json!({}))
}

/// Upstream's limits on new-style Event fields.
const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// The rules upstream adds for Events created through `events.k8s.io/v1` (given in v1 form;
/// field paths are upstream's, which name the internal fields). Empty when acceptable.
pub fn validate_create(v1: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let empty = json!("");
    if !set(v1, "eventTime") {
        out.push(Cause::required("eventTime", ""));
    }
    let ty = text(v1, "type");
    if ty != "Normal" && ty != "Warning" {
        out.push(Cause::invalid(
            "type",
            &empty,
            &format!("has invalid value: {ty}"),
        ));
    }
    for (v1_name, core_name) in [
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("deprecatedSource", "source"),
    ] {
        if set(v1, v1_name) {
            out.push(Cause::invalid(core_name, &empty, "needs to be unset"));
        }
    }
    if let Some(series) = v1.get("series").filter(|s| !s.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            out.push(Cause::invalid(
                "series.count",
                &empty,
                "should be at least 2",
            ));
        }
        if !set(series, "lastObservedTime") {
            out.push(Cause::required("series.lastObservedTime", ""));
        }
    }
    for (field, limit) in [
        ("reportingController", 0),
        ("reportingInstance", REPORTING_INSTANCE_LIMIT),
        ("action", ACTION_LIMIT),
        ("reason", REASON_LIMIT),
    ] {
        let value = text(v1, field);
        if value.is_empty() {
            out.push(Cause::required(field, ""));
        } else if limit > 0 && value.len() > limit {
            out.push(Cause::invalid(
                field,
                &empty,
                &format!("can have at most {limit} characters"),
            ));
        }
    }
    if text(v1, "note").len() > NOTE_LIMIT {
        out.push(Cause::invalid(
            "message",
            &empty,
            &format!("can have at most {NOTE_LIMIT} characters"),
        ));
    }
    out
}

/// Fields an update through `events.k8s.io/v1` may not change (upstream `ValidateEventUpdate`),
/// as (core name, upstream field path).
const IMMUTABLE: &[(&str, &str)] = &[
    ("involvedObject", "involvedObject"),
    ("reason", "reason"),
    ("message", "message"),
    ("source", "source"),
    ("firstTimestamp", "firstTimestamp"),
    ("lastTimestamp", "lastTimestamp"),
    ("count", "count"),
    ("type", "type"),
    ("eventTime", "eventTime"),
    ("action", "action"),
    ("related", "related"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
];

/// The rules upstream adds for updates through `events.k8s.io/v1`, on the core forms of the new
/// and the stored Event: everything but metadata and `series` is immutable, and a changed
/// `series` must be valid. Empty when acceptable.
pub fn validate_update(new_core: &Value, old_core: &Value) -> Vec<Cause> {
    let null = Value::Null;
    let mut out = Vec::new();
    if new_core.get("series") != old_core.get("series")
        && let Some(series) = new_core.get("series").filter(|s| !s.is_null())
    {
        let empty = json!("");
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            out.push(Cause::invalid(
                "series.count",
                &empty,
                "should be at least 2",
            ));
        }
        if !set(series, "lastObservedTime") {
            out.push(Cause::required("series.lastObservedTime", ""));
        }
    }
    for (core_name, path) in IMMUTABLE {
        let new = new_core.get(*core_name).unwrap_or(&null);
        if new != old_core.get(*core_name).unwrap_or(&null) {
            out.push(Cause::invalid(*path, new, "field is immutable"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core_event() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default", "resourceVersion": "7"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
            "related": {"kind": "Node", "name": "n1"},
            "message": "Started container web",
            "reason": "Started", "type": "Normal", "action": "Start",
            "reportingComponent": "kubelet", "reportingInstance": "n1",
            "source": {"component": "kubelet", "host": "n1"},
            "count": 3,
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:05:00Z",
            "eventTime": "2026-01-01T00:00:00.000001Z",
            "series": {"count": 3, "lastObservedTime": "2026-01-01T00:05:00.000000Z"},
        })
    }

    #[test]
    fn core_fields_map_to_their_v1_names() {
        let v1 = from_core(&core_event());
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["kind"], "Event");
        assert_eq!(v1["regarding"]["name"], "web");
        assert_eq!(v1["note"], "Started container web");
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["reportingInstance"], "n1");
        assert_eq!(v1["deprecatedSource"]["host"], "n1");
        assert_eq!(v1["deprecatedCount"], 3);
        assert_eq!(v1["deprecatedFirstTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(v1["deprecatedLastTimestamp"], "2026-01-01T00:05:00Z");
        assert_eq!(v1["related"]["name"], "n1");
        assert_eq!(v1["series"]["count"], 3);
        assert_eq!(v1["metadata"]["resourceVersion"], "7");
        for core_only in [
            "involvedObject",
            "message",
            "reportingComponent",
            "source",
            "count",
        ] {
            assert!(v1.get(core_only).is_none(), "{core_only}");
        }
    }

    #[test]
    fn round_trips_both_ways() {
        let core = core_event();
        assert_eq!(to_core(&from_core(&core)), core);
        let v1 = from_core(&core);
        assert_eq!(from_core(&to_core(&v1)), v1);
    }

    #[test]
    fn core_only_names_in_a_v1_body_are_dropped() {
        let v1 = json!({"metadata": {"name": "a"}, "note": "n", "message": "sneaky", "bogus": 1});
        let core = to_core(&v1);
        assert_eq!(core["message"], "n");
        assert!(core.get("bogus").is_none());
        assert_eq!(core["apiVersion"], "v1");
    }

    #[test]
    fn bookmarks_convert_to_bare_metadata() {
        let b = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"resourceVersion": "9"}});
        assert_eq!(
            from_core(&b),
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"resourceVersion": "9"}})
        );
    }

    #[test]
    fn new_style_events_need_time_reporter_and_no_deprecated_fields() {
        let good = json!({
            "metadata": {"name": "a"}, "eventTime": "2026-01-01T00:00:00.000000Z",
            "type": "Normal", "reason": "Tested", "action": "Test",
            "reportingController": "zonelab.io/test", "reportingInstance": "t-1",
            "regarding": {"kind": "Pod", "name": "p"},
        });
        assert_eq!(validate_create(&good), Vec::<Cause>::new());
        let lines: Vec<String> = validate_create(&json!({
            "type": "Fatal", "deprecatedCount": 2, "series": {"count": 1},
        }))
        .iter()
        .map(Cause::to_line)
        .collect();
        assert_eq!(
            lines,
            vec![
                "eventTime: Required value",
                "type: Invalid value: \"\": has invalid value: Fatal",
                "count: Invalid value: \"\": needs to be unset",
                "series.count: Invalid value: \"\": should be at least 2",
                "series.lastObservedTime: Required value",
                "reportingController: Required value",
                "reportingInstance: Required value",
                "action: Required value",
                "reason: Required value",
            ]
        );
    }

    #[test]
    fn updates_may_change_series_and_metadata_only() {
        let old = to_core(&json!({"metadata": {"name": "a"}, "note": "n", "reason": "R"}));
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"x": "y"});
        new["series"] = json!({"count": 2, "lastObservedTime": "2026-01-01T00:00:00.000000Z"});
        assert_eq!(validate_update(&new, &old), Vec::<Cause>::new());
        new["message"] = json!("changed");
        new["series"] = json!({"count": 1});
        let lines: Vec<String> = validate_update(&new, &old)
            .iter()
            .map(Cause::to_line)
            .collect();
        assert_eq!(
            lines,
            vec![
                "series.count: Invalid value: \"\": should be at least 2",
                "series.lastObservedTime: Required value",
                "message: Invalid value: \"changed\": field is immutable",
            ]
        );
    }
}
