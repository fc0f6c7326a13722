//! Every variant built and checked before anything runs: its overrides applied one by one to
//! the base, the resulting scenario re-validated after each (by the caller's `prepare`, the
//! same checks as `zonelab run`), a failure reported at the override's line in the compare
//! file. Start at [`plan`].

use scenario::ScenarioError;
use scenario::locate::{Seg, locate, render};
use scenario::validate::Problem;
use serde_json::Value as Json;

use crate::apply::{apply_patches, apply_scenario, parse_path, segs};
use crate::spec::{BASELINE, Base, CompareFile, Kind, Override, key};

/// One variant ready to run.
#[derive(Debug, Clone)]
pub struct Planned<T> {
    pub name: String,
    /// The base scenario itself.
    pub baseline: bool,
    pub about: Option<String>,
    pub cost: Option<String>,
    pub overrides: Vec<Override>,
    /// The scenario it runs, as YAML (workload patches aside: they are in `prepared`).
    pub scenario_text: String,
    /// What `prepare` made of it, workload patches applied.
    pub prepared: T,
}

/// The text of a scenario error without its file position: `field: message`.
fn inner(e: &ScenarioError) -> String {
    match e {
        ScenarioError::Read { file, source } => format!("{file}: cannot read: {source}"),
        ScenarioError::Syntax { message, .. } => message.clone(),
        ScenarioError::Invalid { field, message, .. } => format!("{field}: {message}"),
    }
}

/// The field path an error names (`clients[0].timeout`), if any.
fn field_of(e: &ScenarioError) -> Option<Vec<Seg>> {
    let field = match e {
        ScenarioError::Invalid { field, .. } => field.as_str(),
        ScenarioError::Syntax { message, .. } => message.split_once(": ")?.0,
        ScenarioError::Read { .. } => return None,
    };
    parse_path(field).ok().map(|s| segs(&s))
}

/// Builds the baseline and every variant of `file`. `base_text` is the base scenario's text
/// (for an inline base, its YAML as written by `serde_yaml`) and `base_label` its name in
/// errors; `prepare(text, label)` checks a scenario text as `zonelab run` would and returns
/// what runs it; `manifests` gives that value's workload objects (patched in place).
pub fn plan<T>(
    file: &CompareFile,
    base_text: &str,
    base_label: &str,
    prepare: &mut dyn FnMut(&str, &str) -> Result<T, ScenarioError>,
    manifests: fn(&mut T) -> &mut Vec<Json>,
) -> Result<Vec<Planned<T>>, ScenarioError> {
    let inline = matches!(file.base, Base::Inline(_));
    let base_prepared = prepare(base_text, base_label).map_err(|e| {
        if !inline {
            return e;
        }
        let mut path = vec![key("base")];
        path.extend(field_of(&e).unwrap_or_default());
        relocate(file, &path, &e)
    })?;
    let base: serde_yaml::Value =
        serde_yaml::from_str(base_text).map_err(|e| scenario::syntax_error(&e, base_label))?;
    let mut out = vec![Planned {
        name: BASELINE.into(),
        baseline: true,
        about: Some("the base scenario, unchanged".into()),
        cost: None,
        overrides: Vec::new(),
        scenario_text: base_text.to_string(),
        prepared: base_prepared,
    }];
    for v in &file.variants {
        let label = format!("{} (variant {})", file.file, v.name);
        let mut last = None;
        for k in 0..v.overrides.len() {
            let o = &v.overrides[k];
            let prefix = &v.overrides[..=k];
            let at_override = |e: &ScenarioError| relocate_override(file, o, &v.name, e);
            let doc = apply_scenario(&base, prefix).map_err(|p| problem(file, p))?;
            let text = serde_yaml::to_string(&doc)
                .map_err(|e| file.error_at(&o.at, format!("cannot write the scenario: {e}")))?;
            let mut prepared = prepare(&text, &label).map_err(|e| at_override(&e))?;
            if matches!(o.kind, Kind::Workload(_)) || k + 1 == v.overrides.len() {
                apply_patches(manifests(&mut prepared), prefix).map_err(|p| problem(file, p))?;
            }
            last = Some((text, prepared));
        }
        let (scenario_text, prepared) = match last {
            Some(l) => l,
            None => (
                base_text.to_string(),
                prepare(base_text, &label).map_err(|e| relocate(file, &v.at, &e))?,
            ),
        };
        out.push(Planned {
            name: v.name.clone(),
            baseline: false,
            about: v.about.clone(),
            cost: v.cost.clone(),
            overrides: v.overrides.clone(),
            scenario_text,
            prepared,
        });
    }
    Ok(out)
}

fn problem(file: &CompareFile, p: Problem) -> ScenarioError {
    file.error_at(&p.path, p.message)
}

/// `e` (an error of a generated scenario) at `path` of the compare file.
fn relocate(file: &CompareFile, path: &[Seg], e: &ScenarioError) -> ScenarioError {
    file.error_at(path, inner(e))
}

/// `e`, which the scenario made with override `o` got, at `o`'s line.
fn relocate_override(
    file: &CompareFile,
    o: &Override,
    variant: &str,
    e: &ScenarioError,
) -> ScenarioError {
    let mut message = inner(e);
    if o.from != variant {
        message = format!("{message} (included in variant {variant:?})");
    }
    let (line, column) = locate(&file.text, &o.at).unwrap_or((1, 1));
    ScenarioError::Invalid {
        file: file.file.clone(),
        line,
        column,
        field: render(&o.at),
        message,
    }
}
