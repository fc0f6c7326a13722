//! Workload templates stamped `count` times (`workloads[].count`), after clusterloader2's
//! object templates: in every copy each string holding `{{.Index}}` gets the copy's index
//! (0-based, as clusterloader2's `.Index`), so 10,000 Services are one YAML block. Start at
//! [`stamp`].

use serde_json::Value;

/// The placeholder replaced by a copy's index.
pub const INDEX: &str = "{{.Index}}";

/// Most copies one workload entry may stamp.
pub const MAX_COUNT: u32 = 1_000_000;

/// `count` copies of `objects` (each object's copies in index order, the objects in file
/// order within one index: copy 0 of every object, then copy 1, ...), `{{.Index}}` replaced
/// in every string, keys included. `count` 1 still replaces the placeholder (with `0`).
pub fn stamp(objects: &[Value], count: u32) -> Vec<Value> {
    let mut out = Vec::with_capacity(objects.len() * count as usize);
    for i in 0..count {
        let index = i.to_string();
        for obj in objects {
            out.push(substitute(obj, &index));
        }
    }
    out
}

fn substitute(v: &Value, index: &str) -> Value {
    match v {
        Value::String(s) if s.contains(INDEX) => Value::String(s.replace(INDEX, index)),
        Value::Array(items) => Value::Array(items.iter().map(|x| substitute(x, index)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, x)| {
                    let k = if k.contains(INDEX) {
                        k.replace(INDEX, index)
                    } else {
                        k.clone()
                    };
                    (k, substitute(x, index))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A template stamped more than once must give each copy its own name: `metadata.name` or
/// `metadata.namespace` must hold `{{.Index}}`. `Err` says what was expected.
pub fn check_template(obj: &Value, count: u32) -> Result<(), String> {
    let field = |f: &str| obj["metadata"][f].as_str().unwrap_or_default();
    let name = field("name");
    if count > 1 && !name.contains(INDEX) && !field("namespace").contains(INDEX) {
        let kind = obj["kind"].as_str().unwrap_or("object");
        return Err(format!(
            "count: {count} stamps {kind} {name:?} {count} times: expected `{INDEX}` in its metadata.name (e.g. \"{name}-{INDEX}\") or metadata.namespace so every copy has its own name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_string_gets_the_index_and_copies_come_in_index_order() {
        let svc = json!({"kind": "Service", "metadata": {"name": "s-{{.Index}}"},
            "spec": {"selector": {"app": "a{{.Index}}"}, "ports": [{"port": 80}]}});
        let dep = json!({"kind": "Deployment", "metadata": {"name": "d-{{.Index}}",
            "labels": {"{{.Index}}": "x"}}});
        let out = stamp(&[svc, dep], 3);
        let names: Vec<&str> = out
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["s-0", "d-0", "s-1", "d-1", "s-2", "d-2"]);
        assert_eq!(out[4]["spec"]["selector"]["app"], "a2");
        assert_eq!(out[5]["metadata"]["labels"]["2"], "x");
        assert_eq!(out[0]["spec"]["ports"][0]["port"], 80, "numbers untouched");
    }

    #[test]
    fn a_template_stamped_twice_needs_the_index_in_its_name() {
        let fixed = json!({"kind": "Service", "metadata": {"name": "web"}});
        assert!(check_template(&fixed, 1).is_ok());
        let e = check_template(&fixed, 2).unwrap_err();
        assert!(
            e.contains("expected `{{.Index}}` in its metadata.name"),
            "{e}"
        );
        let ok = json!({"kind": "Service", "metadata": {"name": "web-{{.Index}}"}});
        assert!(check_template(&ok, 10_000).is_ok());
        let own_namespace =
            json!({"kind": "Service", "metadata": {"name": "web", "namespace": "app-{{.Index}}"}});
        assert!(check_template(&own_namespace, 10_000).is_ok());
    }
}
