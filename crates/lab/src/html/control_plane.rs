//! The page's control-plane section: a table (store, members, etcd leader before and after,
//! failover times, the API probe) and one SVG strip per role over the run's time axis, coloured
//! by the zone that held it, with the API's longest unavailable stretch and the faults. Start
//! at [`section`].

use super::{DASH, escape, num, secs};
use crate::analyze::holder_zone;
use crate::report::{ControlPlane, Report};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 24.0;
const ROW_H: f64 = 22.0;
const GAP: f64 = 8.0;
const NONE_COLOUR: &str = "#ddd";
const UP_COLOUR: &str = "#2e9d4a";
const DOWN_COLOUR: &str = "#d93a3a";
const FAULT_COLOUR: &str = "#8b0000";
/// Zone colours, in member-zone order (the endpoints chart's palette).
const ZONE_COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];

/// The section, or nothing when the report has no control-plane record.
pub(super) fn section(r: &Report) -> String {
    let Some(cp) = &r.control_plane else {
        return String::new();
    };
    format!(
        "<section>\n<h2>Control plane</h2>\n<p class=\"kpi\">{}</p>\n{}{}</section>\n",
        escape(&crate::summary::api_sentence(cp)),
        table(cp),
        strip(r, cp)
    )
}

fn opt_secs(x: Option<f64>) -> String {
    x.map_or_else(|| DASH.to_owned(), secs)
}

fn opt_text(x: Option<&str>) -> String {
    x.map_or_else(|| DASH.to_owned(), escape)
}

fn table(cp: &ControlPlane) -> String {
    let zones = if cp.member_zones.is_empty() {
        "outside the zones".to_owned()
    } else {
        escape(&cp.member_zones.join(", "))
    };
    let pair = |a: Option<&String>, b: Option<&String>| {
        format!(
            "{} → {}",
            opt_text(a.map(String::as_str)),
            opt_text(b.map(String::as_str))
        )
    };
    let rows = [
        ("store", escape(&cp.store)),
        ("members", format!("{} ({zones})", cp.members)),
        (
            "etcd leader zone (before → after)",
            pair(
                cp.etcd_leader_zone_before.as_ref(),
                cp.etcd_leader_zone_after.as_ref(),
            ),
        ),
        (
            "etcd leader elected after",
            opt_secs(cp.etcd_leader_elected_s),
        ),
        (
            "controller-manager (before → after)",
            pair(
                cp.controller_manager_holder_before.as_ref(),
                cp.controller_manager_holder_after.as_ref(),
            ),
        ),
        (
            "controller-manager failover",
            opt_secs(cp.controller_manager_failover_s),
        ),
        (
            "scheduler (before → after)",
            pair(
                cp.scheduler_holder_before.as_ref(),
                cp.scheduler_holder_after.as_ref(),
            ),
        ),
        ("scheduler failover", opt_secs(cp.scheduler_failover_s)),
        (
            "API unavailable (longest probe gap)",
            opt_secs(cp.api_unavailable_s),
        ),
        (
            "probe writes (sent / acknowledged / lost)",
            format!(
                "{} / {} / {}",
                cp.writes_attempted,
                cp.writes_acknowledged,
                cp.writes_lost
                    .map_or_else(|| DASH.to_owned(), |n| n.to_string())
            ),
        ),
    ];
    let body: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>\n"))
        .collect();
    format!("<table class=\"kv\">\n{body}</table>\n")
}

/// A step series: (t, who) at every change.
type Steps = Vec<(f64, Option<String>)>;

/// Step series -> segments (from, to, label) up to `end`.
fn segments(points: &[(f64, Option<String>)], end: f64) -> Vec<(f64, f64, Option<String>)> {
    let mut out = Vec::new();
    for (i, (t, who)) in points.iter().enumerate() {
        let to = points.get(i + 1).map_or(end, |p| p.0);
        if t.is_finite() && to.is_finite() && to > *t {
            out.push((*t, to, who.clone()));
        }
    }
    out
}

fn strip(r: &Report, cp: &ControlPlane) -> String {
    let span = if r.duration_s.is_finite() && r.duration_s > 0.0 {
        r.duration_s
    } else {
        1.0
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + t.clamp(0.0, span) / span * plot_w;
    let colour = |who: &Option<String>| match who {
        None => NONE_COLOUR,
        Some(h) => holder_zone(h, &cp.member_zones)
            .and_then(|z| cp.member_zones.iter().position(|m| m == z))
            .map_or("#777", |i| ZONE_COLOURS[i % ZONE_COLOURS.len()]),
    };
    let holders =
        |s: &[(f64, String)]| -> Steps { s.iter().map(|(t, h)| (*t, Some(h.clone()))).collect() };
    let rows: [(&str, Steps); 3] = [
        ("etcd leader", cp.etcd_leader.clone()),
        ("controller-manager", holders(&cp.controller_manager)),
        ("scheduler", holders(&cp.scheduler)),
    ];
    let mut svg = String::new();
    for (i, (label, points)) in rows.iter().enumerate() {
        let y = GAP + i as f64 * (ROW_H + GAP);
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>\n",
            LEFT - 8.0,
            y + ROW_H * 0.7
        ));
        for (from, to, who) in segments(points, span) {
            let name = who.as_deref().unwrap_or("none");
            svg.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{ROW_H}\" fill=\"{}\">\
                 <title>{label}: {} from {} s to {} s</title></rect>\n",
                x(from),
                (x(to) - x(from)).max(1.0),
                colour(&who),
                escape(name),
                num(from, 2),
                num(to, 2)
            ));
        }
    }
    let y = GAP + 3.0 * (ROW_H + GAP);
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">API (probe)</text>\n",
        LEFT - 8.0,
        y + ROW_H * 0.7
    ));
    if cp.api_unavailable_s.is_some() {
        svg.push_str(&format!(
            "<rect x=\"{LEFT:.1}\" y=\"{y:.1}\" width=\"{plot_w:.1}\" height=\"{ROW_H}\" \
             fill=\"{UP_COLOUR}\" fill-opacity=\"0.5\"/>\n"
        ));
    }
    if let Some(w) = cp.api_unavailable.filter(|w| w.end_s > w.start_s) {
        svg.push_str(&format!(
            "<rect class=\"api-down\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{ROW_H}\" \
             fill=\"{DOWN_COLOUR}\"><title>longest gap between acknowledged writes: {} s → {} s\
             </title></rect>\n",
            x(w.start_s),
            (x(w.end_s) - x(w.start_s)).max(1.0),
            num(w.start_s, 2),
            num(w.end_s, 2)
        ));
    }
    let height = GAP + 4.0 * (ROW_H + GAP) + 16.0;
    for f in r.faults.iter().filter(|f| f.at_s.is_finite()) {
        let fx = x(f.at_s);
        svg.push_str(&format!(
            "<line class=\"fault\" x1=\"{fx:.1}\" x2=\"{fx:.1}\" y1=\"0\" y2=\"{:.1}\" \
             stroke=\"{FAULT_COLOUR}\" stroke-width=\"2\" stroke-dasharray=\"6 3\">\
             <title>fault at {} s: {} {}</title></line>\n",
            height - 16.0,
            num(f.at_s, 2),
            escape(&f.kind),
            escape(&f.target)
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">t = {} s</text>\n",
        WIDTH - RIGHT,
        height - 2.0,
        num(span, 1)
    ));
    let legend: String = cp
        .member_zones
        .iter()
        .enumerate()
        .map(|(i, z)| {
            format!(
                "<li><span class=\"sw\" style=\"background:{}\"></span>zone {}</li>\n",
                ZONE_COLOURS[i % ZONE_COLOURS.len()],
                escape(z)
            )
        })
        .collect();
    format!(
        "<ul class=\"legend\">\n{legend}<li><span class=\"sw\" style=\"background:{DOWN_COLOUR}\">\
         </span>API unavailable</li>\n</ul>\n\
         <svg class=\"control-plane\" viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"100%\">\n{svg}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Window;

    #[test]
    fn strip_colours_each_role_by_zone_and_marks_the_gap() {
        let mut r = crate::html::tests::sample();
        r.control_plane = Some(ControlPlane {
            store: "etcd".into(),
            members: 3,
            member_zones: vec!["a".into(), "b".into(), "c".into()],
            etcd_leader: vec![
                (0.0, Some("a".into())),
                (10.5, None),
                (11.0, Some("c".into())),
            ],
            controller_manager: vec![(0.0, "a".into()), (12.0, "b_1".into())],
            api_unavailable_s: Some(2.5),
            api_unavailable: Some(Window {
                start_s: 10.0,
                end_s: 12.5,
            }),
            api_stayed_up: Some(false),
            ..ControlPlane::default()
        });
        let html = crate::html::render(&r);
        assert!(html.contains("<h2>Control plane</h2>"));
        assert!(
            html.contains("etcd leader: c from 11.00 s to 60.00 s"),
            "{html}"
        );
        assert!(html.contains("controller-manager: b_1 from 12.00 s"));
        // b is the second member zone: its colour.
        assert!(html.contains(&format!(
            "fill=\"{}\"><title>controller-manager: b_1",
            ZONE_COLOURS[1]
        )));
        assert!(html.contains("class=\"api-down\""));
        assert!(html.contains("unavailable"));
        r.control_plane = None;
        assert!(!crate::html::render(&r).contains("Control plane"));
    }
}
