//! Overrides applied: flags, fields, added items and client options to the base scenario's
//! YAML ([`apply_scenario`]), workload patches to its manifests ([`apply_patches`]), each
//! failure as a [`Problem`] at the override's path in the compare file. Start at
//! [`apply_scenario`].

use scenario::locate::Seg;
use scenario::validate::Problem;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::spec::{Kind, Override, WorkloadRef, key};

/// One step of a field path: a key, an index, or `[*]` (every item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
    All,
}

/// Parses `clients[0].timeout`, `clients[*].retries`, `slo.maxErrorWindow`.
pub fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| {
        format!(
            "invalid field path {path:?}: {why} (expected e.g. `clients[0].timeout` or `clients[*].retries`)"
        )
    };
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if name.is_empty() {
            return Err(bad("empty field name"));
        }
        steps.push(Step::Key(name.to_string()));
        while !rest.is_empty() {
            let Some(close) = rest.find(']') else {
                return Err(bad("unclosed `[`"));
            };
            let inner = &rest[1..close];
            steps.push(if inner == "*" {
                Step::All
            } else {
                Step::Index(inner.parse().map_err(|_| bad("expected an index or `*`"))?)
            });
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad("expected `.` or `[` after `]`"));
            }
        }
    }
    Ok(steps)
}

/// The path's steps as locate segments (`[*]` as the first item).
pub fn segs(steps: &[Step]) -> Vec<Seg> {
    steps
        .iter()
        .map(|s| match s {
            Step::Key(k) => Seg::Key(k.clone()),
            Step::Index(i) => Seg::Index(*i),
            Step::All => Seg::Index(0),
        })
        .collect()
}

fn kind_of(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// Sets (or with `append`, extends the list at) `steps` of `v` to `new`; `done` is the path
/// walked so far, for messages.
fn put(v: &mut Yaml, steps: &[Step], new: &Yaml, append: bool, done: &str) -> Result<(), String> {
    let Some((first, rest)) = steps.split_first() else {
        if !append {
            *v = new.clone();
            return Ok(());
        }
        if v.is_null() {
            *v = Yaml::Sequence(Vec::new());
        }
        let (Yaml::Sequence(items), Yaml::Sequence(more)) = (v, new) else {
            return Err(format!("{done} is not a list: cannot add items to it"));
        };
        items.extend(more.iter().cloned());
        return Ok(());
    };
    match first {
        Step::Key(k) => {
            if v.is_null() {
                *v = Yaml::Mapping(serde_yaml::Mapping::new());
            }
            let here = if done.is_empty() {
                k.clone()
            } else {
                format!("{done}.{k}")
            };
            let found = kind_of(v);
            let Yaml::Mapping(m) = v else {
                return Err(format!("{done} is {found}, not a mapping: no field `{k}`"));
            };
            let slot = m.entry(Yaml::String(k.clone())).or_insert(Yaml::Null);
            put(slot, rest, new, append, &here)
        }
        Step::Index(i) => {
            let found = kind_of(v);
            let Yaml::Sequence(items) = v else {
                return Err(format!("{done} is {found}, not a list"));
            };
            let len = items.len();
            let item = items
                .get_mut(*i)
                .ok_or_else(|| format!("{done}[{i}]: the base has {len} item(s)"))?;
            put(item, rest, new, append, &format!("{done}[{i}]"))
        }
        Step::All => {
            let found = kind_of(v);
            let Yaml::Sequence(items) = v else {
                return Err(format!("{done} is {found}, not a list"));
            };
            if items.is_empty() {
                return Err(format!("{done}: the base has no items"));
            }
            for (i, item) in items.iter_mut().enumerate() {
                put(item, rest, new, append, &format!("{done}[{i}]"))?;
            }
            Ok(())
        }
    }
}

/// The base scenario (`base`, parsed YAML) with every override but the workload patches
/// applied, in order. Flags replace a base flag of the same name (with or without dashes).
pub fn apply_scenario(base: &Yaml, overrides: &[Override]) -> Result<Yaml, Problem> {
    let mut doc = base.clone();
    for o in overrides {
        let fail = |message: String| Problem {
            path: o.at.clone(),
            message,
        };
        let value: Yaml = serde_yaml::to_value(&o.value).map_err(|e| fail(e.to_string()))?;
        match &o.kind {
            Kind::Flag => set_flag(&mut doc, &o.target, value).map_err(fail)?,
            Kind::Field | Kind::Add => {
                let steps = parse_path(&o.target).map_err(fail)?;
                put(&mut doc, &steps, &value, o.kind == Kind::Add, "").map_err(fail)?;
            }
            Kind::Client => {
                let steps = [
                    Step::Key("clients".into()),
                    Step::All,
                    Step::Key(o.target.clone()),
                ];
                put(&mut doc, &steps, &value, false, "").map_err(fail)?;
            }
            Kind::Workload(_) => {}
        }
    }
    Ok(doc)
}

fn set_flag(doc: &mut Yaml, name: &str, value: Yaml) -> Result<(), String> {
    let Yaml::Mapping(root) = doc else {
        return Err("the base scenario is not a mapping".into());
    };
    let flags = root
        .entry(Yaml::String("flags".into()))
        .or_insert(Yaml::Mapping(serde_yaml::Mapping::new()));
    if flags.is_null() {
        *flags = Yaml::Mapping(serde_yaml::Mapping::new());
    }
    let Yaml::Mapping(flags) = flags else {
        return Err("the base scenario's `flags` is not a mapping".into());
    };
    flags.retain(|k, _| k.as_str().map(|k| k.trim_start_matches('-')) != Some(name));
    flags.insert(Yaml::String(name.to_string()), value);
    Ok(())
}

/// Applies the workload patches of `overrides` to `manifests` (the base's objects in apply
/// order), as `kubectl patch` would, and refuses a patch that adds a field the object's schema
/// does not know (upstream's strict field validation).
pub fn apply_patches(manifests: &mut [Json], overrides: &[Override]) -> Result<(), Problem> {
    for o in overrides {
        let Kind::Workload(w) = &o.kind else { continue };
        let at = |sub: &[Seg]| [o.at.clone(), sub.to_vec()].concat();
        let Some(obj) = manifests.iter_mut().find(|m| matches(m, w)) else {
            let found: Vec<String> = manifests.iter().map(describe).collect();
            return Err(Problem {
                path: at(&[key("name")]),
                message: format!(
                    "no {} among the base's workloads (found: {})",
                    o.target,
                    found.join(", ")
                ),
            });
        };
        let patched =
            api::patch::apply(w.patch_type.api(), obj, &o.value, &w.kind).map_err(|e| Problem {
                path: at(&[key("patch")]),
                message: e.to_string(),
            })?;
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        if let Some(res) = api::resources::by_kind(api_version, &w.kind) {
            let before = api::schema::unknown_fields(res, obj);
            let new: Vec<String> = api::schema::unknown_fields(res, &patched)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if let Some(first) = new.first() {
                let field = first.trim_start_matches('.');
                let mut path = at(&[key("patch")]);
                if let Ok(steps) = parse_path(field) {
                    path.extend(segs(&steps));
                }
                let list: Vec<String> = new
                    .iter()
                    .map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.')))
                    .collect();
                return Err(Problem {
                    path,
                    message: format!("strict decoding error: {}", list.join(", ")),
                });
            }
        }
        *obj = patched;
    }
    Ok(())
}

fn matches(m: &Json, w: &WorkloadRef) -> bool {
    m["kind"] == w.kind.as_str()
        && m["metadata"]["name"] == w.name.as_str()
        && m["metadata"]["namespace"].as_str().unwrap_or("default")
            == w.namespace.as_deref().unwrap_or("default")
}

fn describe(m: &Json) -> String {
    format!(
        "{} {}/{}",
        m["kind"].as_str().unwrap_or("?"),
        m["metadata"]["namespace"].as_str().unwrap_or("default"),
        m["metadata"]["name"].as_str().unwrap_or("?")
    )
}
