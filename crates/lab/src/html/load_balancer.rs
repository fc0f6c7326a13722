//! The page's load-balancer section: the health check and cross-zone setting, when the failed
//! nodes' targets left rotation, requests by client kind, and an SVG step chart of the healthy
//! targets per zone over the run. Start at [`section`].

use std::collections::BTreeMap;

use super::{DASH, escape, num, secs};
use crate::report::{LoadBalancer, Report};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 30.0;
/// Zone colours (the endpoints chart's palette).
const ZONE_COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];

/// The section, or nothing without a load balancer and without external clients.
pub(super) fn section(r: &Report) -> String {
    if r.load_balancer.is_none() && r.per_client_kind.len() < 2 {
        return String::new();
    }
    let lb = r.load_balancer.as_ref();
    format!(
        "<section>\n<h2>Load balancer</h2>\n<p class=\"kpi\">{}</p>\n{}{}{}</section>\n",
        escape(&crate::summary::lb_sentence(r)),
        lb.map(|lb| table(r, lb)).unwrap_or_default(),
        kinds_table(r),
        lb.map(|lb| chart(r, lb)).unwrap_or_default(),
    )
}

fn table(r: &Report, lb: &LoadBalancer) -> String {
    let hc = &lb.health_check;
    let nodes: Vec<String> = lb
        .nodes
        .iter()
        .map(|(z, a)| format!("{} ({})", escape(a), escape(z)))
        .collect();
    let rows = [
        ("Service", escape(&lb.service)),
        ("balancer", escape(&lb.name)),
        ("LB nodes", nodes.join(", ")),
        (
            "cross-zone",
            if lb.cross_zone { "on" } else { "off" }.to_owned(),
        ),
        (
            "health check",
            format!(
                "every {} s, timeout {} s, healthy after {}, unhealthy after {}",
                hc.interval_s, hc.timeout_s, hc.healthy_threshold, hc.unhealthy_threshold
            ),
        ),
        (
            "failed nodes' targets out of rotation",
            r.phases.lb_targets_unhealthy_s.map_or_else(
                || DASH.to_owned(),
                |t| match r.phases.fault_s {
                    Some(f) => format!("t = {} ({} after the fault)", secs(t), secs(t - f)),
                    None => secs(t),
                },
            ),
        ),
    ];
    let body: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>\n"))
        .collect();
    format!("<table class=\"kv\">\n{body}</table>\n")
}

fn kinds_table(r: &Report) -> String {
    if r.per_client_kind.is_empty() {
        return String::new();
    }
    let rows: String = r
        .per_client_kind
        .iter()
        .map(|(kind, z)| {
            format!(
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{} %</td><td class=\"n\">{}</td></tr>\n",
                escape(kind),
                z.requests,
                z.failed,
                num(z.availability, 3),
                secs(z.error_window_s),
            )
        })
        .collect();
    format!(
        "<h3>By client kind</h3>\n<table>\n<tr><th>client</th><th class=\"n\">requests</th>\
         <th class=\"n\">failed</th><th class=\"n\">availability</th>\
         <th class=\"n\">error window</th></tr>\n{rows}</table>\n"
    )
}

/// Healthy targets per zone as (t, count) steps from the transitions.
pub(crate) fn healthy_series(lb: &LoadBalancer) -> BTreeMap<String, Vec<(f64, u32)>> {
    let mut state: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<(f64, u32)>> = BTreeMap::new();
    for tr in &lb.transitions {
        state.insert(&tr.target, (&tr.zone, tr.to == "healthy"));
        let count = state
            .values()
            .filter(|(z, healthy)| *z == tr.zone && *healthy)
            .count() as u32;
        let points = out.entry(tr.zone.clone()).or_default();
        if points.last().map(|p| p.1) != Some(count) {
            points.push((tr.t_s, count));
        }
    }
    out
}

fn chart(r: &Report, lb: &LoadBalancer) -> String {
    let series = healthy_series(lb);
    let span = r.duration_s.max(1.0);
    let max = series
        .values()
        .flatten()
        .map(|p| p.1)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |t: f64| LEFT + (t.clamp(0.0, span) / span) * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / max) * (HEIGHT - TOP - BOTTOM);
    let mut body = format!(
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/>\
         <text x=\"{LEFT}\" y=\"{h}\">0 s</text><text x=\"{r}\" y=\"{h}\" text-anchor=\"end\">{end} s</text>\
         <text x=\"4\" y=\"{top}\">{max}</text><text x=\"4\" y=\"{b}\">0</text>\
         <text class=\"title\" x=\"{LEFT}\" y=\"12\">healthy targets per zone</text>",
        b = num(y(0.0), 1),
        r = num(WIDTH - RIGHT, 1),
        h = num(HEIGHT - 8.0, 1),
        end = num(span, 1),
        top = num(TOP + 4.0, 1),
        max = max as u32,
    );
    if let Some(f) = r.phases.fault_s {
        body.push_str(&format!(
            "<line x1=\"{0}\" y1=\"{TOP}\" x2=\"{0}\" y2=\"{1}\" stroke=\"#8b0000\" stroke-dasharray=\"4 3\"><title>fault</title></line>",
            num(x(f), 1),
            num(y(0.0), 1)
        ));
    }
    if let Some(t) = r.phases.lb_targets_unhealthy_s {
        body.push_str(&format!(
            "<line x1=\"{0}\" y1=\"{TOP}\" x2=\"{0}\" y2=\"{1}\" stroke=\"#555\" stroke-dasharray=\"2 2\"><title>failed nodes' targets unhealthy</title></line>",
            num(x(t), 1),
            num(y(0.0), 1)
        ));
    }
    for (i, (zone, points)) in series.iter().enumerate() {
        let colour = ZONE_COLOURS[i % ZONE_COLOURS.len()];
        let mut d = String::new();
        for (j, (t, v)) in points.iter().enumerate() {
            let next = points.get(j + 1).map_or(span, |p| p.0);
            let (x0, x1, yv) = (x(*t), x(next), y(*v as f64 + 0.04 * i as f64));
            if j == 0 {
                d.push_str(&format!("M{},{}", num(x0, 1), num(yv, 1)));
            } else {
                d.push_str(&format!(" V{}", num(yv, 1)));
            }
            d.push_str(&format!(" H{}", num(x1, 1)));
        }
        body.push_str(&format!(
            "<path d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"><title>zone {}</title></path>\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">zone {}</text>",
            escape(zone),
            num(WIDTH - RIGHT - 60.0, 1),
            num(TOP + 12.0 * (i as f64 + 1.0), 1),
            escape(zone)
        ));
    }
    format!(
        "<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"healthy load-balancer targets per zone\">{body}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{HealthCheck, LbTransition};

    fn lb() -> LoadBalancer {
        let tr = |t: f64, target: &str, zone: &str, to: &str| LbTransition {
            t_s: t,
            target: target.into(),
            zone: zone.into(),
            to: to.into(),
        };
        LoadBalancer {
            service: "default/web".into(),
            name: "k8s-abc1234".into(),
            health_check: HealthCheck {
                interval_s: 1.0,
                timeout_s: 1.0,
                healthy_threshold: 3,
                unhealthy_threshold: 3,
            },
            cross_zone: false,
            nodes: [("a".to_string(), "172.20.251.16".to_string())].into(),
            transitions: vec![
                tr(1.0, "x:1", "a", "healthy"),
                tr(1.0, "y:1", "a", "healthy"),
                tr(1.5, "z:1", "b", "healthy"),
                tr(13.0, "x:1", "a", "unhealthy"),
                tr(13.5, "y:1", "a", "unhealthy"),
            ],
            final_states: BTreeMap::new(),
        }
    }

    #[test]
    fn healthy_series_steps_per_zone() {
        let s = healthy_series(&lb());
        assert_eq!(s["a"], [(1.0, 1), (1.0, 2), (13.0, 1), (13.5, 0)]);
        assert_eq!(s["b"], [(1.5, 1)]);
    }

    #[test]
    fn the_section_shows_the_health_check_the_phase_and_the_chart() {
        let mut r = super::super::tests::sample();
        assert_eq!(
            section(&r),
            "",
            "no load balancer, one client kind: no section"
        );
        r.load_balancer = Some(lb());
        r.phases.lb_targets_unhealthy_s = Some(13.5);
        let html = section(&r);
        assert!(
            html.contains("every 1 s, timeout 1 s, healthy after 3, unhealthy after 3"),
            "{html}"
        );
        assert!(html.contains("t = 13.5"), "{html}");
        assert!(html.contains("<svg"), "{html}");
        assert!(html.contains("zone a"), "{html}");
    }
}
