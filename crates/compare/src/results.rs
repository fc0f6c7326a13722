//! The runs' reports summarised per variant (means, p50/p95 of the error window over seeds),
//! ranked by error window, with the cost of each variant in words, and the terminal table
//! ending in one sentence. Pure functions of the reports; start at [`summarise`].

use std::collections::BTreeMap;

use lab::Report;
use lab::report::{Phases, Window};
use serde::{Deserialize, Serialize};

use crate::spec::{Kind, Override, OverrideRecord};

/// What `compare.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The base scenario's name.
    pub scenario: String,
    /// `sim` or `live`.
    pub mode: String,
    /// The seeds every variant ran with.
    pub seeds: Vec<u64>,
    /// The baseline first, then the variants in file order.
    pub variants: Vec<VariantFigures>,
    /// Variant names, best (shortest error window) first.
    pub ranking: Vec<String>,
    /// One sentence: what helps most and at what cost.
    pub verdict: String,
}

/// One variant over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantFigures {
    pub name: String,
    pub baseline: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    pub overrides: Vec<OverrideRecord>,
    pub seeds: Vec<u64>,
    /// Mean error window over the seeds, seconds.
    pub error_window_s: f64,
    /// Median and 95th percentile (nearest rank) of the error window over the seeds.
    pub error_window_p50_s: f64,
    pub error_window_p95_s: f64,
    /// Mean availability, percent.
    pub availability: f64,
    /// Mean failed requests per run.
    pub failed: f64,
    /// Mean time from the fault until every failed node was not Ready (`null`: in no run).
    pub detection_s: Option<f64>,
    /// Mean time from the fault until capacity was restored (`null`: in no run).
    pub capacity_restored_s: Option<f64>,
    /// Mean stale-conntrack failures per run.
    pub stale_conntrack: f64,
    /// Its cost in words.
    pub cost: String,
    /// Each seed's figures.
    pub runs: Vec<SeedFigures>,
}

/// One run's figures, from its report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedFigures {
    pub seed: u64,
    pub error_window_s: f64,
    pub availability: f64,
    pub requests: u64,
    pub failed: u64,
    /// Seconds after the fault.
    pub detection_s: Option<f64>,
    /// Seconds after the fault.
    pub capacity_restored_s: Option<f64>,
    pub stale_conntrack: u64,
    /// The first fault (t, seconds), the phases and the error window (t), for the timeline.
    pub fault_s: Option<f64>,
    pub phases: Phases,
    pub error_window: Option<Window>,
}

/// Rounded to the millisecond (the reports' resolution), so compare.json reads plainly.
fn ms(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl SeedFigures {
    /// The figures of one run's report.
    pub fn of(r: &Report) -> SeedFigures {
        let fault = r.phases.fault_s;
        let after = |t: Option<f64>| Some(ms(t? - fault?));
        SeedFigures {
            seed: r.seed,
            error_window_s: r.error_window_s,
            availability: r.availability,
            requests: r.requests.total,
            failed: r.requests.failed,
            detection_s: after(r.phases.nodes_not_ready_s),
            capacity_restored_s: after(r.phases.capacity_restored_s),
            stale_conntrack: r.requests.stale_conntrack,
            fault_s: fault,
            phases: r.phases.clone(),
            error_window: r.error_window,
        }
    }
}

/// The nearest-rank percentile `p` (0..=100) of `xs`; 0 for none.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| ms(sum / n as f64))
}

/// What a variant runs and its runs' reports, for [`summarise`].
pub struct VariantRuns<'a> {
    pub name: &'a str,
    pub baseline: bool,
    pub about: Option<&'a str>,
    /// Its own `cost:` (replaces the derived one).
    pub cost: Option<&'a str>,
    pub overrides: &'a [Override],
    pub reports: &'a [Report],
}

impl<'a> VariantRuns<'a> {
    /// Planned variant `p` with its runs' `reports`.
    pub fn of<T>(p: &'a crate::plan::Planned<T>, reports: &'a [Report]) -> Self {
        VariantRuns {
            name: &p.name,
            baseline: p.baseline,
            about: p.about.as_deref(),
            cost: p.cost.as_deref(),
            overrides: &p.overrides,
            reports,
        }
    }
}

/// One variant's figures over its runs.
pub fn figures(v: &VariantRuns<'_>) -> VariantFigures {
    let runs: Vec<SeedFigures> = v.reports.iter().map(SeedFigures::of).collect();
    let windows: Vec<f64> = runs.iter().map(|r| r.error_window_s).collect();
    VariantFigures {
        name: v.name.to_string(),
        baseline: v.baseline,
        about: v.about.map(str::to_string),
        overrides: v.overrides.iter().map(|o| o.record(v.name)).collect(),
        seeds: runs.iter().map(|r| r.seed).collect(),
        error_window_s: mean(windows.iter().copied()).unwrap_or(0.0),
        error_window_p50_s: ms(percentile(&windows, 50.0)),
        error_window_p95_s: ms(percentile(&windows, 95.0)),
        availability: mean(runs.iter().map(|r| r.availability)).unwrap_or(100.0),
        failed: mean(runs.iter().map(|r| r.failed as f64)).unwrap_or(0.0),
        detection_s: mean(runs.iter().filter_map(|r| r.detection_s)),
        capacity_restored_s: mean(runs.iter().filter_map(|r| r.capacity_restored_s)),
        stale_conntrack: mean(runs.iter().map(|r| r.stale_conntrack as f64)).unwrap_or(0.0),
        cost: v.cost.map_or_else(|| cost_of(v.overrides), str::to_string),
        runs,
    }
}

/// The comparison: every variant's figures, the ranking and the verdict.
pub fn summarise(
    scenario: &str,
    mode: &str,
    seeds: &[u64],
    runs: &[VariantRuns<'_>],
) -> Comparison {
    let variants: Vec<VariantFigures> = runs.iter().map(figures).collect();
    let order = rank(&variants);
    Comparison {
        scenario: scenario.to_string(),
        mode: mode.to_string(),
        seeds: seeds.to_vec(),
        ranking: order.iter().map(|&i| variants[i].name.clone()).collect(),
        verdict: verdict(&variants, &order),
        variants,
    }
}

/// Indices of `variants`, shortest mean error window first; ties by fewer failed requests,
/// then by name.
pub fn rank(variants: &[VariantFigures]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..variants.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&variants[a], &variants[b]);
        x.error_window_s
            .total_cmp(&y.error_window_s)
            .then(x.failed.total_cmp(&y.failed))
            .then(x.name.cmp(&y.name))
    });
    order
}

/// The cost table (costs.yaml): override key -> cost in words.
fn cost_table() -> BTreeMap<String, String> {
    serde_yaml::from_str(include_str!("costs.yaml")).expect("costs.yaml is a string map")
}

/// The cost keys of an override (see costs.yaml).
fn cost_keys(o: &Override) -> Vec<String> {
    let strip = |p: &str| -> String {
        let mut out = String::new();
        let mut depth = 0;
        for c in p.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    match &o.kind {
        Kind::Flag => vec![format!("flag:{}", o.target)],
        Kind::Client => vec![format!("client:{}", o.target)],
        Kind::Field => match strip(&o.target).strip_prefix("clients.") {
            Some(option) => vec![format!("client:{option}")],
            None => vec![format!("field:{}", strip(&o.target))],
        },
        Kind::Add if strip(&o.target) == "faults" => o
            .value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["type"].as_str())
            .map(|t| format!("fault:{t}"))
            .collect(),
        Kind::Add => vec![format!("field:{}", strip(&o.target))],
        Kind::Workload(w) => {
            let mut leaves = Vec::new();
            json_leaves(&o.value, String::new(), &mut leaves);
            leaves
                .into_iter()
                .map(|l| format!("workload:{}.{l}", w.kind))
                .collect()
        }
    }
}

fn json_leaves(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                json_leaves(x, p, out);
            }
        }
        _ => out.push(path),
    }
}

/// The cost in words of a set of overrides: each known cost once, in override order.
pub fn cost_of(overrides: &[Override]) -> String {
    let table = cost_table();
    let mut seen = Vec::new();
    for o in overrides {
        for k in cost_keys(o) {
            if let Some(c) = table.get(&k)
                && !seen.contains(c)
            {
                seen.push(c.clone());
            }
        }
    }
    if seen.is_empty() {
        "none recorded".into()
    } else {
        seen.join("; ")
    }
}

/// One plain sentence: the best variant against the baseline, and its cost.
pub fn verdict(variants: &[VariantFigures], order: &[usize]) -> String {
    let Some(base) = variants.iter().find(|v| v.baseline) else {
        return "No baseline to compare with.".into();
    };
    let best = order
        .iter()
        .map(|&i| &variants[i])
        .find(|v| !v.baseline && v.error_window_s < base.error_window_s);
    let Some(best) = best else {
        return format!(
            "No variant shortens the baseline's error window of {:.1} s.",
            base.error_window_s
        );
    };
    let fewer = if best.failed <= 0.0 {
        "no failed requests".to_string()
    } else {
        format!(
            "{:.0}x fewer failed requests ({:.0} against {:.0} a run)",
            base.failed / best.failed,
            best.failed,
            base.failed
        )
    };
    format!(
        "{} helps most: an error window of {:.1} s (p95 {:.1} s) against {:.1} s for the baseline and {fewer}, at a cost: {}.",
        best.name, best.error_window_s, best.error_window_p95_s, base.error_window_s, best.cost
    )
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// The terminal table, ranked, ending in the verdict.
pub fn table(c: &Comparison) -> String {
    let by_name: BTreeMap<&str, &VariantFigures> =
        c.variants.iter().map(|v| (v.name.as_str(), v)).collect();
    let w = c
        .variants
        .iter()
        .map(|v| v.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!(
        "{:>4}  {:<w$}  {:>9}  {:>13}  {:>8}  {:>8}  {:>8}  {:>10}  {:>6}\n",
        "rank",
        "variant",
        "window s",
        "p50 / p95 s",
        "failed",
        "avail %",
        "detect s",
        "capacity s",
        "stale",
    );
    for (i, name) in c.ranking.iter().enumerate() {
        let v = by_name[name.as_str()];
        out.push_str(&format!(
            "{:>4}  {:<w$}  {:>9.1}  {:>13}  {:>8.1}  {:>8.3}  {:>8}  {:>10}  {:>6.1}\n",
            i + 1,
            v.name,
            v.error_window_s,
            format!("{:.1} / {:.1}", v.error_window_p50_s, v.error_window_p95_s),
            v.failed,
            v.availability,
            opt(v.detection_s),
            opt(v.capacity_restored_s),
            v.stale_conntrack,
        ));
    }
    out.push_str(&c.verdict);
    out.push('\n');
    out
}
