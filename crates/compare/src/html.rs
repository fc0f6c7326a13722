//! `compare.html`: one self-contained page (the report's style, SVG, no scripts) with the
//! ranked table, a bar chart of the error windows with each seed's value and their spread,
//! and one timeline strip per variant (its median-seed run's recovery phases and error window
//! after the fault). Start at [`render`].

use std::collections::BTreeMap;

use lab::html::{escape, page, phase_bands};

use crate::results::{Comparison, SeedFigures, VariantFigures};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 200.0;
const RIGHT: f64 = 90.0;
const ROW: f64 = 26.0;
const TOP: f64 = 10.0;
const AXIS: f64 = 30.0;
const BAR_COLOUR: &str = "#e57373";
const SEED_COLOUR: &str = "#8b0000";
const ERROR_COLOUR: &str = "#e53935";

/// The page.
pub fn render(c: &Comparison) -> String {
    let ranked: Vec<&VariantFigures> = c
        .ranking
        .iter()
        .filter_map(|n| c.variants.iter().find(|v| &v.name == n))
        .collect();
    let body = format!(
        "<header>\n<h1>{title}</h1>\n<p class=\"meta\">mode <b>{mode}</b> · seeds <b>{seeds}</b> \
         · {n} variants</p>\n<p class=\"kpi\">{verdict}</p>\n</header>\n\
         <section>\n<h2>Ranked by error window</h2>\n{table}</section>\n\
         <section>\n<h2>Error window, seconds (bar: mean; line: min to max over the seeds; dots: each seed)</h2>\n{bars}</section>\n\
         <section>\n<h2>After the fault (median-seed run of each variant)</h2>\n{strips}</section>\n",
        title = escape(&format!("compare: {}", c.scenario)),
        mode = escape(&c.mode),
        seeds = escape(
            &c.seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        n = c.variants.len(),
        verdict = escape(&c.verdict),
        table = table(&ranked),
        bars = bars(&ranked),
        strips = strips(&ranked),
    );
    page(&format!("compare {}", c.scenario), &body)
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{v:.1}"))
}

fn table(ranked: &[&VariantFigures]) -> String {
    let mut rows = String::new();
    for (i, v) in ranked.iter().enumerate() {
        let overrides: Vec<String> = v
            .overrides
            .iter()
            .map(|o| format!("{} {} = {}", o.kind, o.target, o.value))
            .collect();
        rows.push_str(&format!(
            "<tr><td class=\"n\">{}</td><td><b>{}</b><br><small>{}</small></td><td class=\"n\">{:.1}</td>\
             <td class=\"n\">{:.1} / {:.1}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.3}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td><small>{}</small></td></tr>\n",
            i + 1,
            escape(&v.name),
            escape(&overrides.join("; ")),
            v.error_window_s,
            v.error_window_p50_s,
            v.error_window_p95_s,
            v.failed,
            v.availability,
            opt(v.detection_s),
            opt(v.capacity_restored_s),
            v.stale_conntrack,
            escape(&v.cost),
        ));
    }
    format!(
        "<table>\n<tr><th class=\"n\">rank</th><th>variant (overrides)</th><th class=\"n\">error window s</th>\
         <th class=\"n\">p50 / p95 s</th><th class=\"n\">failed</th><th class=\"n\">availability %</th>\
         <th class=\"n\">detection s</th><th class=\"n\">capacity restored s</th><th class=\"n\">stale conntrack</th>\
         <th>cost</th></tr>\n{rows}</table>\n"
    )
}

/// x of `v` on an axis of 0..`span`.
fn x(v: f64, span: f64) -> f64 {
    let v = if v.is_finite() { v } else { 0.0 };
    LEFT + v.clamp(0.0, span) / span * (WIDTH - LEFT - RIGHT)
}

/// A round axis end at or above `max` (at least 1).
fn nice(max: f64) -> f64 {
    let max = if max.is_finite() { max.max(1.0) } else { 1.0 };
    let step = 10f64.powf(max.log10().floor());
    (max / step).ceil() * step
}

fn axis(span: f64, y: f64, label: &str) -> String {
    let mut out = format!(
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{y}\"/>\n",
        WIDTH - RIGHT
    );
    for k in 0..=5 {
        let v = span * f64::from(k) / 5.0;
        let px = x(v, span);
        out.push_str(&format!(
            "<line class=\"grid\" x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{y}\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            y + 14.0,
            trim(v)
        ));
    }
    out.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>\n",
        WIDTH - RIGHT,
        y + 28.0
    ));
    out
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

fn svg(height: f64, inner: &str) -> String {
    format!(
        "<svg viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"100%\" role=\"img\">\n{inner}</svg>\n"
    )
}

/// Horizontal bars: the mean error window, the min-max line and each seed's dot.
fn bars(ranked: &[&VariantFigures]) -> String {
    let max = ranked
        .iter()
        .flat_map(|v| v.runs.iter().map(|r| r.error_window_s))
        .chain(ranked.iter().map(|v| v.error_window_s))
        .fold(0.0, f64::max);
    let span = nice(max);
    let mut inner = String::new();
    for (i, v) in ranked.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let mid = y + ROW / 2.0;
        inner.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{LEFT}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{BAR_COLOUR}\"/>\n",
            LEFT - 8.0,
            mid + 4.0,
            escape(&v.name),
            y + 5.0,
            x(v.error_window_s, span) - LEFT,
            ROW - 10.0,
        ));
        let windows: Vec<f64> = v.runs.iter().map(|r| r.error_window_s).collect();
        let lo = windows.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = windows.iter().copied().fold(0.0, f64::max);
        if lo.is_finite() {
            inner.push_str(&format!(
                "<line x1=\"{:.1}\" y1=\"{mid:.1}\" x2=\"{:.1}\" y2=\"{mid:.1}\" stroke=\"{SEED_COLOUR}\" stroke-width=\"1.5\"/>\n",
                x(lo, span),
                x(hi, span)
            ));
        }
        for w in &windows {
            inner.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{mid:.1}\" r=\"3\" fill=\"{SEED_COLOUR}\"/>\n",
                x(*w, span)
            ));
        }
        inner.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\">{:.1} s</text>\n",
            WIDTH - RIGHT + 6.0,
            mid + 4.0,
            v.error_window_s
        ));
    }
    let bottom = TOP + ROW * ranked.len() as f64;
    inner.push_str(&axis(span, bottom, "seconds"));
    svg(bottom + AXIS + 10.0, &inner)
}

/// The run whose error window is the median of the variant's.
fn median_run(v: &VariantFigures) -> Option<&SeedFigures> {
    let mut runs: Vec<&SeedFigures> = v.runs.iter().collect();
    runs.sort_by(|a, b| {
        a.error_window_s
            .total_cmp(&b.error_window_s)
            .then(a.seed.cmp(&b.seed))
    });
    runs.get(runs.len().saturating_sub(1) / 2).copied()
}

/// (start, end) after the fault of the first four recovery bands (detection, endpoint
/// removal, proxy convergence, eviction wait) that happened, with label and colour.
fn bands(r: &SeedFigures) -> Vec<(f64, f64, &'static str, &'static str)> {
    let Some(fault) = r.fault_s else {
        return Vec::new();
    };
    let steps = r.phases.steps();
    phase_bands()
        .into_iter()
        .take(3)
        .filter_map(|(label, colour, from, to)| {
            let a = steps.get(from)?.1?;
            let b = steps.get(to)?.1?;
            (b >= a).then_some((a - fault, b - fault, label, colour))
        })
        .collect()
}

/// One strip per variant: its recovery bands after the fault, the error window in red below.
fn strips(ranked: &[&VariantFigures]) -> String {
    let picked: Vec<(&VariantFigures, Option<&SeedFigures>)> =
        ranked.iter().map(|v| (*v, median_run(v))).collect();
    let ends = picked.iter().filter_map(|(_, r)| *r).flat_map(|r| {
        let fault = r.fault_s.unwrap_or(0.0);
        let window = r.error_window.map(|w| w.end_s - fault);
        bands(r).into_iter().map(|b| b.1).chain(window)
    });
    let span = nice(ends.fold(0.0, f64::max) * 1.05);
    let mut legend: BTreeMap<&str, &str> = BTreeMap::new();
    let mut inner = String::new();
    for (i, (v, run)) in picked.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        inner.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}{}</text>\n",
            LEFT - 8.0,
            y + ROW / 2.0 + 4.0,
            escape(&v.name),
            run.map_or(String::new(), |r| format!(" (seed {})", r.seed)),
        ));
        let Some(r) = run else { continue };
        for (a, b, label, colour) in bands(r) {
            legend.insert(label, colour);
            inner.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{label}: {a:.1} to {b:.1} s</title></rect>\n",
                x(a, span),
                y + 3.0,
                (x(b, span) - x(a, span)).max(1.0),
                ROW * 0.5,
            ));
        }
        if let (Some(w), Some(fault)) = (r.error_window, r.fault_s) {
            let (a, b) = (w.start_s - fault, w.end_s - fault);
            inner.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{ERROR_COLOUR}\"><title>error window: {a:.1} to {b:.1} s</title></rect>\n",
                x(a, span),
                y + 3.0 + ROW * 0.5 + 2.0,
                (x(b, span) - x(a, span)).max(1.0),
                ROW * 0.25,
            ));
        }
    }
    let bottom = TOP + ROW * picked.len() as f64;
    inner.push_str(&axis(span, bottom, "seconds after the fault"));
    let mut items: String = legend
        .iter()
        .map(|(label, colour)| {
            format!("<li><span class=\"sw\" style=\"background:{colour}\"></span>{label}</li>")
        })
        .collect();
    items.push_str(&format!(
        "<li><span class=\"sw\" style=\"background:{ERROR_COLOUR}\"></span>error window</li>"
    ));
    format!(
        "<ul class=\"legend\">{items}</ul>\n{}",
        svg(bottom + AXIS + 10.0, &inner)
    )
}
