//! The compare file: one base scenario and named variants, each a list of overrides, parsed
//! with the scenario crate's `file:line:column` errors. Start at [`CompareFile::parse`]; the
//! syntax is documented in docs/compare.md.

use std::collections::BTreeSet;

use scenario::ScenarioError;
use scenario::locate::{Seg, locate, render};
use serde::{Deserialize, Serialize};

/// The name the base scenario runs under (a variant may not take it).
pub const BASELINE: &str = "baseline";

/// A parsed compare file: the base and its variants, includes expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareFile {
    /// The file name as given (errors name it).
    pub file: String,
    /// Its text (errors are located in it).
    pub text: String,
    /// The base scenario.
    pub base: Base,
    /// The variants in file order; each one's overrides are its includes' (in order) then its
    /// own.
    pub variants: Vec<Variant>,
}

/// Where the base scenario is.
#[derive(Debug, Clone, PartialEq)]
pub enum Base {
    /// A scenario file, relative to the compare file.
    Path(String),
    /// The scenario written in place (its workload paths are relative to the compare file).
    Inline(serde_yaml::Value),
}

/// One named variant of the base.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    /// What it is, in words (optional).
    pub about: Option<String>,
    /// Its cost in words, replacing the one derived from its overrides (optional).
    pub cost: Option<String>,
    pub overrides: Vec<Override>,
    /// Path of the variant in the compare file (`variants[3]`).
    pub at: Vec<Seg>,
}

/// One override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub kind: Kind,
    /// The flag name (without dashes), the field path, the client option, or the workload
    /// (`Service default/web`).
    pub target: String,
    /// The value set, the items added, or the patch.
    pub value: serde_json::Value,
    /// Where it is written in the compare file.
    pub at: Vec<Seg>,
    /// The variant that writes it (differs from the running variant for an `include`).
    pub from: String,
}

/// What an override changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A component flag of the scenario's `flags:` section.
    Flag,
    /// A scenario field by path (`clients[0].timeout`, `clients[*].retries`).
    Field,
    /// Items appended to a list field (`faults`).
    Add,
    /// An option of every client (`timeout`, `retries`, `keepalive`, ...).
    Client,
    /// A patch of one workload object, as `kubectl patch --type TYPE`.
    Workload(WorkloadRef),
}

/// The object a workload patch changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRef {
    pub kind: String,
    pub name: String,
    /// `None`: `default` (for namespaced kinds).
    pub namespace: Option<String>,
    pub patch_type: PatchKind,
}

/// `kubectl patch --type`: strategic (kubectl's default), merge or json.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchKind {
    #[default]
    Strategic,
    Merge,
    Json,
}

impl PatchKind {
    /// The API crate's patch type.
    pub fn api(self) -> api::patch::PatchType {
        match self {
            PatchKind::Strategic => api::patch::PatchType::StrategicMerge,
            PatchKind::Merge => api::patch::PatchType::Merge,
            PatchKind::Json => api::patch::PatchType::Json,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            PatchKind::Strategic => "strategic",
            PatchKind::Merge => "merge",
            PatchKind::Json => "json",
        }
    }
}

impl Kind {
    /// The kind's name in compare.json (`flag`, `field`, `add`, `client`, `workload`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Flag => "flag",
            Kind::Field => "field",
            Kind::Add => "add",
            Kind::Client => "client",
            Kind::Workload(_) => "workload",
        }
    }
}

/// An override as compare.json lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideRecord {
    pub kind: String,
    pub target: String,
    pub value: serde_json::Value,
    /// The variant it comes from, when included from another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl Override {
    /// The record of this override as run by `variant`.
    pub fn record(&self, variant: &str) -> OverrideRecord {
        let target = match &self.kind {
            Kind::Workload(w) => format!("{} ({} patch)", self.target, w.patch_type.as_str()),
            _ => self.target.clone(),
        };
        OverrideRecord {
            kind: self.kind.as_str().to_string(),
            target,
            value: self.value.clone(),
            from: (self.from != variant).then(|| self.from.clone()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    base: serde_yaml::Value,
    variants: Vec<RawVariant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    #[serde(default)]
    about: Option<String>,
    #[serde(default)]
    cost: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    flags: serde_yaml::Mapping,
    #[serde(default)]
    set: serde_yaml::Mapping,
    #[serde(default)]
    add: serde_yaml::Mapping,
    #[serde(default)]
    clients: serde_yaml::Mapping,
    #[serde(default)]
    workloads: Vec<RawPatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPatch {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default, rename = "type")]
    patch_type: PatchKind,
    patch: serde_json::Value,
}

pub(crate) fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// An error at `path` of the compare file.
pub(crate) fn invalid(file: &str, text: &str, path: &[Seg], message: String) -> ScenarioError {
    let (line, column) = locate(text, path).unwrap_or((1, 1));
    ScenarioError::Invalid {
        file: file.to_string(),
        line,
        column,
        field: render(path),
        message,
    }
}

impl CompareFile {
    /// Parses compare file `text` named `file`: the YAML and its types (unknown keys are
    /// errors), the variant names, the includes and the shape of each override. Whether an
    /// override names a real flag or field is checked by [`crate::plan`].
    pub fn parse(text: &str, file: &str) -> Result<CompareFile, ScenarioError> {
        let raw: RawFile =
            serde_yaml::from_str(text).map_err(|e| scenario::syntax_error(&e, file))?;
        let err = |path: &[Seg], message: String| invalid(file, text, path, message);
        let base = match raw.base {
            serde_yaml::Value::String(p) => Base::Path(p),
            v @ serde_yaml::Value::Mapping(_) => Base::Inline(v),
            _ => {
                return Err(err(
                    &[key("base")],
                    "expected a scenario file path or a scenario written in place (a mapping)"
                        .into(),
                ));
            }
        };
        if raw.variants.is_empty() {
            return Err(err(
                &[key("variants")],
                "expected at least one variant".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut own = Vec::new();
        for (i, v) in raw.variants.iter().enumerate() {
            let at = vec![key("variants"), Seg::Index(i)];
            let name_at = [at.clone(), vec![key("name")]].concat();
            check_name(&v.name).map_err(|m| err(&name_at, m))?;
            if !seen.insert(v.name.clone()) {
                return Err(err(
                    &name_at,
                    format!("variant {:?} is defined twice", v.name),
                ));
            }
            own.push(own_overrides(v, &at).map_err(|(p, m)| err(&p, m))?);
        }
        let variants = expand(&raw.variants, &own).map_err(|(p, m)| err(&p, m))?;
        Ok(CompareFile {
            file: file.to_string(),
            text: text.to_string(),
            base,
            variants,
        })
    }

    /// An error at `path` of this file.
    pub fn error_at(&self, path: &[Seg], message: String) -> ScenarioError {
        invalid(&self.file, &self.text, path, message)
    }
}

/// Names are directory names of the output: 1 to 40 lowercase letters, digits or `-`,
/// starting with a letter, and not [`BASELINE`].
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(format!(
            "invalid variant name {name:?}: expected 1 to 40 lowercase letters, digits or `-`, starting with a letter"
        ));
    }
    if name == BASELINE {
        return Err(format!(
            "{BASELINE:?} is the base scenario's own name: choose another"
        ));
    }
    Ok(())
}

type PathError = (Vec<Seg>, String);

/// A mapping's entries as (string key, JSON value, path of the entry).
fn entries(
    m: &serde_yaml::Mapping,
    at: &[Seg],
) -> Result<Vec<(String, serde_json::Value, Vec<Seg>)>, PathError> {
    let mut out = Vec::new();
    for (k, v) in m {
        let Some(name) = k.as_str() else {
            return Err((at.to_vec(), format!("expected string keys, found {k:?}")));
        };
        let path = [at.to_vec(), vec![key(name)]].concat();
        let value = serde_json::to_value(v).map_err(|e| (path.clone(), e.to_string()))?;
        out.push((name.to_string(), value, path));
    }
    Ok(out)
}

/// The overrides variant `v` (at `at`) writes itself, in file order.
fn own_overrides(v: &RawVariant, at: &[Seg]) -> Result<Vec<Override>, PathError> {
    let sub = |k: &str| [at.to_vec(), vec![key(k)]].concat();
    let mut out = Vec::new();
    let mut push = |kind: Kind, target: String, value, path| {
        out.push(Override {
            kind,
            target,
            value,
            at: path,
            from: v.name.clone(),
        });
    };
    for (name, value, path) in entries(&v.flags, &sub("flags"))? {
        if !(value.is_string() || value.is_number() || value.is_boolean()) {
            return Err((
                path,
                "expected a flag value: a string, number or boolean".into(),
            ));
        }
        push(
            Kind::Flag,
            name.trim_start_matches('-').to_string(),
            value,
            path,
        );
    }
    for (name, value, path) in entries(&v.set, &sub("set"))? {
        crate::apply::parse_path(&name).map_err(|m| (path.clone(), m))?;
        push(Kind::Field, name, value, path);
    }
    for (name, value, path) in entries(&v.add, &sub("add"))? {
        crate::apply::parse_path(&name).map_err(|m| (path.clone(), m))?;
        if !value.is_array() {
            return Err((path, "expected a list of items to append".into()));
        }
        push(Kind::Add, name, value, path);
    }
    for (name, value, path) in entries(&v.clients, &sub("clients"))? {
        push(Kind::Client, name, value, path);
    }
    for (j, p) in v.workloads.iter().enumerate() {
        let path = [sub("workloads"), vec![Seg::Index(j)]].concat();
        let ns = p.namespace.as_deref().unwrap_or("default");
        push(
            Kind::Workload(WorkloadRef {
                kind: p.kind.clone(),
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                patch_type: p.patch_type,
            }),
            format!("{} {ns}/{}", p.kind, p.name),
            p.patch.clone(),
            path,
        );
    }
    Ok(out)
}

/// Every variant with its includes' overrides first (depth first, in `include` order).
fn expand(raw: &[RawVariant], own: &[Vec<Override>]) -> Result<Vec<Variant>, PathError> {
    let index = |name: &str| raw.iter().position(|v| v.name == name);
    let mut out = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let at = vec![key("variants"), Seg::Index(i)];
        let mut overrides = Vec::new();
        let mut stack = vec![i];
        collect(raw, own, &index, i, &mut stack, &mut overrides)?;
        out.push(Variant {
            name: v.name.clone(),
            about: v.about.clone(),
            cost: v.cost.clone(),
            overrides,
            at,
        });
    }
    Ok(out)
}

fn collect(
    raw: &[RawVariant],
    own: &[Vec<Override>],
    index: &dyn Fn(&str) -> Option<usize>,
    i: usize,
    stack: &mut Vec<usize>,
    out: &mut Vec<Override>,
) -> Result<(), PathError> {
    for (k, name) in raw[i].include.iter().enumerate() {
        let path = vec![
            key("variants"),
            Seg::Index(i),
            key("include"),
            Seg::Index(k),
        ];
        let Some(j) = index(name) else {
            let names: Vec<&str> = raw.iter().map(|v| v.name.as_str()).collect();
            return Err((
                path,
                format!(
                    "unknown variant {name:?}: expected one of {}",
                    names.join(", ")
                ),
            ));
        };
        if stack.contains(&j) {
            return Err((path, format!("variant {name:?} includes itself")));
        }
        stack.push(j);
        collect(raw, own, index, j, stack, out)?;
        stack.pop();
    }
    out.extend(own[i].iter().cloned());
    Ok(())
}
