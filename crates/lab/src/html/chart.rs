//! The page's two SVG charts, drawn server-side on one time axis (0..duration): requests per
//! second per client zone (small multiples) and ready endpoints per zone, both under the
//! recovery-phase bands, the error window and the fault lines. Start at [`section`].

use super::{escape, num, phase_list};
use crate::report::{RatePoint, Report};

/// Width of both charts (SVG user units; the page scales them to its width).
const WIDTH: f64 = 960.0;
/// Room left of the plots (y tick labels) and right of them.
const LEFT: f64 = 60.0;
const RIGHT: f64 = 24.0;
/// Room above a plot (its title) and below it (x tick labels).
const ABOVE: f64 = 24.0;
const BELOW: f64 = 34.0;
/// Plot height of one client zone's request chart and of the endpoints chart.
const PANEL_H: f64 = 110.0;
const ENDPOINTS_H: f64 = 200.0;

const OK_COLOUR: &str = "#2e9d4a";
const FAILED_COLOUR: &str = "#d93a3a";
const ERROR_COLOUR: &str = "#e53935";
const FAULT_COLOUR: &str = "#8b0000";
const PHASE_COLOUR: &str = "#555";
/// Step-line colours of the zones, in zone order (no red: red means failure here).
const ZONE_COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];

/// One kind of recovery band: it spans from one phase to the next.
struct BandKind {
    label: &'static str,
    spans: &'static str,
    colour: &'static str,
    /// Indices into [`phase_list`].
    from: usize,
    to: usize,
}

static BANDS: [BandKind; 6] = [
    band("detection", "fault → nodes not ready", "#f2b134", 0, 1),
    band(
        "endpoint removal",
        "nodes not ready → endpoints removed",
        "#5b9bd5",
        1,
        2,
    ),
    band(
        "proxy convergence",
        "endpoints removed → proxies converged",
        "#9b72cf",
        2,
        3,
    ),
    band(
        "eviction wait",
        "proxies converged → pods evicted",
        "#bdbdbd",
        3,
        4,
    ),
    band(
        "rescheduling",
        "pods evicted → replacements ready",
        "#4bb3a4",
        4,
        5,
    ),
    band(
        "capacity restore",
        "replacements ready → capacity restored",
        "#7fbf5f",
        5,
        6,
    ),
];

/// [`BANDS`] as (label, colour, from, to).
pub(super) fn bands() -> Vec<(&'static str, &'static str, usize, usize)> {
    BANDS
        .iter()
        .map(|b| (b.label, b.colour, b.from, b.to))
        .collect()
}

const fn band(
    label: &'static str,
    spans: &'static str,
    colour: &'static str,
    from: usize,
    to: usize,
) -> BandKind {
    BandKind {
        label,
        spans,
        colour,
        from,
        to,
    }
}

/// The charts section: the legend of the bands, then chart A and chart B.
pub(super) fn section(r: &Report) -> String {
    let span = time_span(r);
    let marks = Marks::new(r);
    format!(
        "<section>\n<h2>Timeline</h2>\n{legend}\
         <h3>Requests per second, by client zone</h3>\n{requests}\
         <h3>Ready endpoints, by zone of the endpoint</h3>\n{endpoints}</section>\n",
        legend = legend(),
        requests = requests_chart(r, span, &marks),
        endpoints = endpoints_chart(r, span, &marks),
    )
}

/// The x axis' length: the run's duration, or (when that is zero or not a number) the latest
/// time anything happened, or 1 s.
fn time_span(r: &Report) -> f64 {
    if r.duration_s.is_finite() && r.duration_s > 0.0 {
        return r.duration_s;
    }
    let bucket = finite(r.series.bucket_s).max(0.0);
    let latest = r.series.requests.values().flatten().map(|p| p.t + bucket);
    let latest = latest
        .chain(r.series.ready_endpoints.values().flatten().map(|p| p.0))
        .chain(phase_list(&r.phases).into_iter().filter_map(|p| p.1))
        .chain(r.faults.iter().map(|f| f.at_s))
        .filter(|t| t.is_finite())
        .fold(0.0, f64::max);
    if latest > 0.0 { latest } else { 1.0 }
}

/// `x`, or 0 when it is not a finite number.
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// A plot area and its scales; `span` and `y_max` are positive and finite.
struct Frame {
    top: f64,
    height: f64,
    span: f64,
    y_max: f64,
}

impl Frame {
    const WIDTH: f64 = WIDTH - LEFT - RIGHT;

    fn x(&self, t: f64) -> f64 {
        LEFT + finite(t).clamp(0.0, self.span) / self.span * Self::WIDTH
    }

    fn y(&self, v: f64) -> f64 {
        self.bottom() - finite(v).clamp(0.0, self.y_max) / self.y_max * self.height
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }

    /// A full-height rectangle from `from` to `to` (at least 1 unit wide, so instants show).
    fn band(&self, from: f64, to: f64, attrs: &str, title: &str) -> String {
        let (x0, x1) = (self.x(from), self.x(to));
        format!(
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" {attrs}>\
             <title>{title}</title></rect>\n",
            self.top,
            (x1 - x0).max(1.0),
            self.height,
        )
    }

    /// A full-height vertical line at `t`.
    fn vline(&self, t: f64, attrs: &str, title: &str) -> String {
        let x = self.x(t);
        format!(
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" {attrs}>\
             <title>{title}</title></line>\n",
            self.top,
            self.bottom(),
        )
    }
}

/// Round tick values 0, step, 2·step, ... up to `top` (the first tick at or above the data).
struct Ticks {
    step: f64,
    top: f64,
    decimals: usize,
}

impl Ticks {
    /// About `count` ticks covering 0..=`max`; steps are 1, 2 or 5 × 10^k and at least `min_step`.
    fn new(max: f64, count: f64, min_step: f64) -> Self {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let raw = (max / count).max(min_step).max(1e-9);
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw * (1.0 - 1e-9))
            .unwrap_or(10.0 * magnitude);
        let decimals = (-step.log10().floor()).clamp(0.0, 9.0) as usize;
        Self {
            step,
            top: (max / step - 1e-9).ceil().max(1.0) * step,
            decimals,
        }
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let n = (self.top / self.step).round() as u32;
        (0..=n).map(|i| f64::from(i) * self.step)
    }

    fn label(&self, v: f64) -> String {
        format!("{v:.*}", self.decimals)
    }
}

/// Both axes of a frame: horizontal grid lines with y labels, x ticks with labels in seconds.
fn axes(f: &Frame, x: &Ticks, y: &Ticks, y_label: &str) -> String {
    let bottom = f.bottom();
    let right = WIDTH - RIGHT;
    let grid: String = y
        .values()
        .map(|v| {
            let py = f.y(v);
            format!(
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{right}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                LEFT - 6.0,
                py + 4.0,
                y.label(v),
            )
        })
        .collect();
    let x_ticks: String = x
        .values()
        .map(|t| {
            let px = f.x(t);
            format!(
                "<line class=\"axis\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{bottom:.1}\" \
                 y2=\"{:.1}\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                bottom + 4.0,
                bottom + 16.0,
                x.label(t),
            )
        })
        .collect();
    format!(
        "{grid}{x_ticks}<line class=\"axis\" x1=\"{LEFT}\" x2=\"{right}\" y1=\"{bottom:.1}\" \
         y2=\"{bottom:.1}\"/>\n<text x=\"{right}\" y=\"{:.1}\" text-anchor=\"end\">t (s)</text>\n\
         <text x=\"4\" y=\"{:.1}\" class=\"unit\">{y_label}</text>\n",
        bottom + 30.0,
        f.top - 6.0,
    )
}

/// What both charts draw over the time axis.
struct Marks {
    /// Recovery bands present in this run: kind, start, end.
    bands: Vec<(&'static BandKind, f64, f64)>,
    error_window: Option<(f64, f64)>,
    /// Fault times with their (escaped) descriptions.
    faults: Vec<(f64, String)>,
    /// Phases that happened: name, t.
    phases: Vec<(&'static str, f64)>,
}

impl Marks {
    fn new(r: &Report) -> Self {
        let all = phase_list(&r.phases);
        let at = |i: usize| all[i].1.filter(|t| t.is_finite());
        let bands = BANDS
            .iter()
            .filter_map(|b| Some((b, at(b.from)?, at(b.to)?)))
            .filter(|(_, from, to)| to >= from)
            .collect();
        let error_window = r
            .error_window
            .map(|w| (w.start_s, w.end_s))
            .filter(|(a, b)| a.is_finite() && b.is_finite() && b >= a);
        let faults = r.faults.iter().filter(|f| f.at_s.is_finite());
        let faults = faults
            .map(|f| {
                let what = format!("fault at {} s: {} {}", num(f.at_s, 2), f.kind, f.target);
                (f.at_s, escape(&what))
            })
            .collect();
        let mut phases: Vec<(&'static str, f64)> = (0..all.len())
            .filter_map(|i| Some((all[i].0, at(i)?)))
            .collect();
        // The node groups' phases (scale-up requested, nodes provisioned) as markers too.
        phases.extend(
            r.phases
                .capacity_steps()
                .into_iter()
                .chain(r.phases.lb_steps())
                .filter_map(|(name, t)| Some((name, t.filter(|t| t.is_finite())?))),
        );
        Self {
            bands,
            error_window,
            faults,
            phases,
        }
    }

    /// `under` (axes and data), then over it the translucent bands and error window, then the
    /// phase markers and fault lines.
    fn over(&self, f: &Frame, under: &str) -> String {
        format!("{under}{}{}", self.bands(f), self.lines(f))
    }

    /// The bands and the error window.
    fn bands(&self, f: &Frame) -> String {
        let bands = self.bands.iter().map(|(kind, from, to)| {
            let attrs = format!(
                "class=\"band\" fill=\"{}\" fill-opacity=\"0.3\"",
                kind.colour
            );
            let title = format!("{}: {} s → {} s", kind.label, num(*from, 2), num(*to, 2));
            f.band(*from, *to, &attrs, &title)
        });
        let window = self.error_window.map(|(from, to)| {
            let attrs = format!(
                "class=\"error-window\" fill=\"{ERROR_COLOUR}\" fill-opacity=\"0.15\" \
                 stroke=\"{ERROR_COLOUR}\" stroke-opacity=\"0.5\""
            );
            let title = format!("error window: {} s → {} s", num(from, 2), num(to, 2));
            f.band(from, to, &attrs, &title)
        });
        bands.chain(window).collect()
    }

    /// The phase markers and fault lines.
    fn lines(&self, f: &Frame) -> String {
        let phase_attrs =
            format!("stroke=\"{PHASE_COLOUR}\" stroke-width=\"1\" stroke-dasharray=\"2 3\"");
        let phases = self
            .phases
            .iter()
            .map(|(name, t)| f.vline(*t, &phase_attrs, &format!("{name}: {} s", num(*t, 2))));
        let fault_attrs = format!(
            "class=\"fault\" stroke=\"{FAULT_COLOUR}\" stroke-width=\"2\" stroke-dasharray=\"6 3\""
        );
        let faults = self
            .faults
            .iter()
            .map(|(t, what)| f.vline(*t, &fault_attrs, what));
        phases.chain(faults).collect()
    }
}

/// The legend of the bands and lines (HTML, shared by both charts).
fn legend() -> String {
    let item = |style: &str, label: &str, spans: &str| {
        format!("<li><span class=\"sw\" style=\"{style}\"></span><b>{label}</b> {spans}</li>\n")
    };
    let bands = BANDS.iter().map(|b| {
        let style = format!("background:{};opacity:.45", b.colour);
        item(&style, b.label, b.spans)
    });
    let rest = [
        item(
            &format!("background:{ERROR_COLOUR};opacity:.3"),
            "error window",
            "first → last failed new connection",
        ),
        item(
            &format!("border-left:2px dashed {FAULT_COLOUR}"),
            "fault",
            "injected",
        ),
        item(
            &format!("border-left:1px dotted {PHASE_COLOUR}"),
            "phase",
            "marker",
        ),
        item(&format!("background:{OK_COLOUR}"), "ok", "requests/s"),
        item(
            &format!("background:{FAILED_COLOUR}"),
            "failed",
            "requests/s",
        ),
    ];
    let items: String = bands.chain(rest).collect();
    format!("<ul class=\"legend\">\n{items}</ul>\n")
}

/// Chart A: one panel per client zone, stacked bars (ok green, failed red), one shared y scale.
fn requests_chart(r: &Report, span: f64, marks: &Marks) -> String {
    let zones = &r.series.requests;
    let rate = |p: &RatePoint| finite(p.ok).max(0.0) + finite(p.failed).max(0.0);
    let y_max = zones.values().flatten().map(rate).fold(0.0, f64::max);
    let (x, y) = (Ticks::new(span, 10.0, 0.0), Ticks::new(y_max, 4.0, 0.0));
    let bucket = bucket_width(r, span);
    let frame = |i: usize| Frame {
        top: ABOVE + i as f64 * (ABOVE + PANEL_H + BELOW),
        height: PANEL_H,
        span,
        y_max: y.top,
    };
    let mut panels: String = zones
        .iter()
        .enumerate()
        .map(|(i, (zone, points))| {
            let f = frame(i);
            let title = format!(
                "<text class=\"title\" x=\"{LEFT}\" y=\"{:.1}\">client zone {}</text>\n",
                f.top - 8.0,
                escape(zone)
            );
            let under = axes(&f, &x, &y, "req/s") + &bars(&f, points, bucket);
            format!("<g>\n{title}{}</g>\n", marks.over(&f, &under))
        })
        .collect();
    if zones.is_empty() {
        let f = frame(0);
        let under = axes(&f, &x, &y, "req/s") + &no_data(&f, "no request data");
        panels = marks.over(&f, &under);
    }
    let height = zones.len().max(1) as f64 * (ABOVE + PANEL_H + BELOW) + ABOVE;
    svg(height, "requests per second by client zone", &panels)
}

/// The bar width in seconds: the series' bucket, else the smallest gap between points, else
/// the span divided by the number of points.
fn bucket_width(r: &Report, span: f64) -> f64 {
    let b = r.series.bucket_s;
    if b.is_finite() && b > 0.0 {
        return b;
    }
    let gaps = r
        .series
        .requests
        .values()
        .flat_map(|ps| ps.windows(2).map(|w| w[1].t - w[0].t));
    let gap = gaps
        .filter(|g| g.is_finite() && *g > 0.0)
        .fold(f64::INFINITY, f64::min);
    if gap.is_finite() {
        return gap;
    }
    let n = r
        .series
        .requests
        .values()
        .map(Vec::len)
        .max()
        .unwrap_or(1)
        .max(1);
    span / n as f64
}

/// Stacked bars, one path per colour: ok from 0, failed on top of ok.
fn bars(f: &Frame, points: &[RatePoint], bucket: f64) -> String {
    let visible = points
        .iter()
        .filter(|p| p.t.is_finite() && p.t >= 0.0 && p.t < f.span);
    let (mut ok, mut failed) = (String::new(), String::new());
    for p in visible {
        let (x0, x1) = (f.x(p.t), f.x(p.t + bucket));
        let gap = if x1 - x0 > 3.0 { 1.0 } else { 0.0 };
        let w = (x1 - x0 - gap).max(0.5);
        let (o, e) = (finite(p.ok).max(0.0), finite(p.failed).max(0.0));
        let rect = |lo: f64, hi: f64| {
            let (y_lo, y_hi) = (f.y(lo), f.y(hi));
            format!("M{x0:.1},{y_hi:.1}h{w:.1}V{y_lo:.1}h{:.1}Z", -w)
        };
        if o > 0.0 {
            ok.push_str(&rect(0.0, o));
        }
        if e > 0.0 {
            failed.push_str(&rect(o, o + e));
        }
    }
    let path = |d: &str, colour: &str, class: &str| {
        if d.is_empty() {
            String::new()
        } else {
            format!("<path class=\"{class}\" d=\"{d}\" fill=\"{colour}\"/>\n")
        }
    };
    path(&ok, OK_COLOUR, "ok") + &path(&failed, FAILED_COLOUR, "failed")
}

/// Chart B: one step line per zone, held until the next point and extended to the end.
fn endpoints_chart(r: &Report, span: f64, marks: &Marks) -> String {
    let zones = &r.series.ready_endpoints;
    let y_max = zones
        .values()
        .flatten()
        .map(|p| f64::from(p.1))
        .fold(0.0, f64::max);
    let (x, y) = (Ticks::new(span, 10.0, 0.0), Ticks::new(y_max, 4.0, 1.0));
    let f = Frame {
        top: ABOVE,
        height: ENDPOINTS_H,
        span,
        y_max: y.top,
    };
    let n = zones.len() as f64;
    let lines: String = zones
        .values()
        .enumerate()
        .map(|(i, points)| {
            // Zones with equal counts would hide each other: shift each a little.
            let dy = (i as f64 - (n - 1.0) / 2.0) * 1.5;
            step_line(&f, points, zone_colour(i), dy)
        })
        .collect();
    let empty = if zones.is_empty() {
        no_data(&f, "no endpoint data")
    } else {
        String::new()
    };
    let under = axes(&f, &x, &y, "ready endpoints") + &lines + &empty;
    let body = marks.over(&f, &under) + &zone_legend(zones.keys(), f.top - 10.0);
    svg(
        ABOVE + ENDPOINTS_H + BELOW + 4.0,
        "ready endpoints by zone",
        &body,
    )
}

/// Colour swatches with the zone names, in a row at height `y`.
fn zone_legend<'a>(zones: impl Iterator<Item = &'a String>, y: f64) -> String {
    let items: String = zones
        .enumerate()
        .map(|(i, zone)| {
            let x = LEFT + 120.0 + i as f64 * 130.0;
            format!(
                "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" \
                 stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
                x + 18.0,
                zone_colour(i),
                x + 22.0,
                y + 4.0,
                escape(zone),
            )
        })
        .collect();
    format!("<g class=\"zones\">\n{items}</g>\n")
}

fn zone_colour(i: usize) -> &'static str {
    ZONE_COLOURS[i % ZONE_COLOURS.len()]
}

/// A step line through `points` (sorted by t here), from the first point to the end of the axis.
fn step_line(f: &Frame, points: &[(f64, u32)], colour: &str, dy: f64) -> String {
    let mut points: Vec<(f64, u32)> = points.iter().copied().filter(|p| p.0.is_finite()).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(&(t0, c0)) = points.first() else {
        return String::new();
    };
    let steps: String = points[1..]
        .iter()
        .map(|&(t, c)| format!("H{:.1}V{:.1}", f.x(t), f.y(f64::from(c)) + dy))
        .collect();
    format!(
        "<path class=\"step\" d=\"M{:.1},{:.1}{steps}H{:.1}\" fill=\"none\" stroke=\"{colour}\" \
         stroke-width=\"2\"/>\n",
        f.x(t0),
        f.y(f64::from(c0)) + dy,
        f.x(f.span),
    )
}

fn no_data(f: &Frame, what: &str) -> String {
    format!(
        "<text class=\"empty\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{what}</text>\n",
        LEFT + Frame::WIDTH / 2.0,
        f.top + f.height / 2.0,
    )
}

fn svg(height: f64, label: &str, body: &str) -> String {
    format!(
        "<svg viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"100%\" role=\"img\" \
         aria-label=\"{label}\">\n{body}</svg>\n"
    )
}
