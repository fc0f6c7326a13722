//! A [`Report`] as one self-contained HTML page (inline CSS, SVG, no JS); start at [`render`].

mod autoscaler;
mod chart;
mod control_plane;
mod events;
mod load_balancer;
mod services;

use std::collections::{BTreeMap, BTreeSet};

use crate::report::{FaultRecord, Phases, Report, ZoneReport};
use crate::timeline::Outcome;

/// Shown for a value that does not exist (a phase that did not happen, a non-finite number).
const DASH: &str = "—";

const STYLE: &str = "
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #222;
       margin: 0 auto; padding: 1em 2em 3em; max-width: 1100px; }
h1 { margin: .2em 0; font-size: 1.6em; } h2 { margin-top: 1.6em; } h3 { margin: 1.2em 0 .3em; }
.meta { color: #555; margin: .2em 0; }
.verdict { font-size: 2em; font-weight: 700; margin: .4em 0 .1em; }
.verdict.met, .good { color: #1e7d32; } .verdict.missed, .bad { color: #c62828; }
.kpi { font-size: 1.1em; margin: .2em 0; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { padding: .25em .8em; border-bottom: 1px solid #e3e3e3; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { font-weight: 600; color: #444; }
.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .3em 1.4em;
          font-size: .9em; }
.sw { display: inline-block; width: 14px; height: 12px; margin-right: .4em;
      vertical-align: -1px; }
svg { display: block; margin: .3em 0 1em; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg text.title { font-weight: 600; font-size: 12px; }
svg text.empty { fill: #999; font-size: 14px; }
svg .grid { stroke: #eee; } svg .axis { stroke: #888; }
";

/// The report as one self-contained HTML page.
pub fn render(r: &Report) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>zonelab: {title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         {header}{summary}{phases}{charts}{load_balancer}{control_plane}{autoscaler}{events}</body>
</html>
",
        title = escape(&r.scenario),
        header = header(r),
        summary = summary(r),
        phases = phases_table(&r.phases),
        charts = chart::section(r),
        load_balancer = load_balancer::section(r),
        control_plane = control_plane::section(r),
        autoscaler = autoscaler::section(r),
        events = events::section(r),
    )
}

/// A self-contained page (the report's style, no scripts) with `title` and `body` (HTML):
/// for other pages built from reports, such as `zonelab compare`'s.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>zonelab: {title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        title = escape(title),
    )
}

/// The recovery bands the timeline chart draws, in order: (label, colour, from phase, to
/// phase), the phases as indices into [`Phases::steps`].
pub fn phase_bands() -> Vec<(&'static str, &'static str, usize, usize)> {
    chart::bands()
}

/// `s` with the characters that mean something in HTML (text and attribute values) escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `x` with `decimals` decimals, or [`DASH`] when it is not a finite number.
fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        DASH.to_owned()
    }
}

/// Seconds, e.g. `12.34 s`.
fn secs(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2} s")
    } else {
        DASH.to_owned()
    }
}

/// A share (0..1) as a percentage.
fn pct(share: f64) -> String {
    if share.is_finite() {
        format!("{:.2} %", share * 100.0)
    } else {
        DASH.to_owned()
    }
}

/// The phases in order, with the names the page shows.
fn phase_list(p: &Phases) -> [(&'static str, Option<f64>); 7] {
    p.steps()
}

fn good(ok: bool) -> &'static str {
    if ok { "good" } else { "bad" }
}

/// Scenario, run parameters and the verdict.
fn header(r: &Report) -> String {
    let slo = &r.slo;
    let (class, verdict) = if slo.met {
        ("met", "SLO met")
    } else {
        ("missed", "SLO not met")
    };
    let max_window = slo
        .target
        .max_error_window_s
        .map_or_else(|| "no limit".to_owned(), |m| format!("max {}", secs(m)));
    let t = &r.timers;
    format!(
        "<header>\n<h1>{scenario}</h1>\n<p class=\"meta\">mode <b>{mode}</b> · profile \
         <b>{profile}</b> · proxy mode <b>{proxy}</b> · seed <b>{seed}</b> · duration \
         <b>{duration}</b> · ended by <b>{ended}</b></p>\n<p class=\"meta\">timers: node \
         monitor grace {grace} · node monitor period {period} · lease renew {lease} · \
         unreachable toleration {toleration}</p>\n<div class=\"verdict {class}\">{verdict}</div>\n\
         <p class=\"kpi\"><span class=\"{avail_class}\">availability {avail} %</span> vs target \
         ≥ {target} % · <span class=\"{window_class}\">error window {window}</span> vs \
         {max_window}</p>\n</header>\n",
        scenario = escape(&r.scenario),
        mode = escape(&r.mode),
        profile = escape(&r.profile),
        proxy = escape(&r.proxy_mode),
        seed = r.seed,
        duration = secs(r.duration_s),
        ended = escape(&r.ended_by),
        grace = secs(t.node_monitor_grace_period_s),
        period = secs(t.node_monitor_period_s),
        lease = secs(t.lease_renew_interval_s),
        toleration = secs(t.unreachable_toleration_s),
        avail_class = good(slo.availability_met),
        avail = num(r.availability, 3),
        target = num(slo.target.availability, 3),
        window_class = good(slo.error_window_met),
        window = secs(r.error_window_s),
    )
}

/// Request counts, shares, the per-zone breakdown and the faults.
fn summary(r: &Report) -> String {
    let q = &r.requests;
    let window = r.error_window.map_or_else(String::new, |w| {
        format!(" ({} → {})", secs(w.start_s), secs(w.end_s))
    });
    let rows = [
        ("requests total", q.total.to_string()),
        ("ok", q.ok.to_string()),
        ("failed", q.failed.to_string()),
        ("by outcome", outcomes(&q.by_outcome)),
        (
            "new connections (total / failed)",
            counts(q.new_connections.total, q.new_connections.failed),
        ),
        (
            "reused connections (total / failed)",
            counts(q.reused_connections.total, q.reused_connections.failed),
        ),
        (
            "on connections opened before the fault (total / failed)",
            counts(
                q.pre_fault_connections.total,
                q.pre_fault_connections.failed,
            ),
        ),
        (
            "error window",
            format!("{}{window}", secs(r.error_window_s)),
        ),
        (
            "error window without stale-conntrack hits",
            secs(r.error_window_without_stale_conntrack_s),
        ),
        ("dead endpoint share", pct(r.dead_endpoint_share)),
        ("window failure share", pct(r.window_failure_share)),
        (
            "failed after converged",
            format!(
                "{} ({} on a stale conntrack entry)",
                r.failed_after_converged, r.failed_after_converged_stale_conntrack
            ),
        ),
        (
            "stale conntrack hits",
            r.requests.stale_conntrack.to_string(),
        ),
    ];
    let body: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>\n"))
        .collect();
    format!(
        "<section>\n<h2>Summary</h2>\n<table class=\"kv\">\n{body}</table>\n{}{}{}</section>\n",
        zones_table(r),
        services::table(r),
        faults_table(&r.faults),
    )
}

fn counts(total: u64, failed: u64) -> String {
    format!("{total} / {failed}")
}

/// `ok 120 · timeout 3`, or [`DASH`] when there is none.
fn outcomes(by: &BTreeMap<Outcome, u64>) -> String {
    if by.is_empty() {
        return DASH.to_owned();
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(k, n)| format!("{} {n}", escape(k.as_str())))
        .collect();
    parts.join(" · ")
}

/// One row per zone that sent or answered requests.
fn zones_table(r: &Report) -> String {
    let zones: BTreeSet<&String> = r.per_zone.keys().chain(r.answered_by_zone.keys()).collect();
    if zones.is_empty() {
        return String::new();
    }
    let rows: String = zones
        .into_iter()
        .map(|zone| {
            let z = r.per_zone.get(zone).cloned().unwrap_or_default();
            let answered = r.answered_by_zone.get(zone).copied().unwrap_or(0);
            format!(
                "<tr>{}<td class=\"n\">{answered}</td></tr>\n",
                stats_cells(zone, &z)
            )
        })
        .collect();
    format!(
        "<h3>By zone</h3>\n<table>\n<tr><th>zone</th>{STATS_HEADER}\
         <th class=\"n\">answered by its pods</th></tr>\n{rows}</table>\n"
    )
}

/// The header cells after the label shared by the per-zone and per-Service tables.
const STATS_HEADER: &str = "<th class=\"n\">requests</th><th class=\"n\">ok</th>\
    <th class=\"n\">failed</th><th class=\"n\">availability</th>\
    <th class=\"n\">error window</th><th>by outcome</th>";

/// One row's cells (label, requests, ok, failed, availability, error window, outcomes) of the
/// per-zone and per-Service tables.
fn stats_cells(label: &str, z: &ZoneReport) -> String {
    format!(
        "<td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{} %</td><td class=\"n\">{}</td>\
         <td>{}</td>",
        escape(label),
        z.requests,
        z.ok,
        z.failed,
        num(z.availability, 3),
        secs(z.error_window_s),
        outcomes(&z.by_outcome),
    )
}

fn faults_table(faults: &[FaultRecord]) -> String {
    if faults.is_empty() {
        return "<h3>Faults</h3>\n<p>none</p>\n".to_owned();
    }
    let rows: String = faults
        .iter()
        .map(|f| {
            let nodes: Vec<String> = f.nodes.iter().map(|n| escape(n)).collect();
            format!(
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                secs(f.at_s),
                escape(&f.kind),
                escape(&f.target),
                nodes.join(", "),
            )
        })
        .collect();
    format!(
        "<h3>Faults</h3>\n<table>\n<tr><th class=\"n\">at</th><th>type</th><th>target</th>\
         <th>nodes</th></tr>\n{rows}</table>\n"
    )
}

/// Each phase with its time and its delay after the fault.
fn phases_table(p: &Phases) -> String {
    let rows: String = phase_list(p)
        .into_iter()
        .map(|(name, t)| {
            let delay = t.zip(p.fault_s).map(|(t, fault)| t - fault);
            format!(
                "<tr><td>{name}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
                t.map_or_else(|| DASH.to_owned(), secs),
                delay.map_or_else(|| DASH.to_owned(), secs),
            )
        })
        .collect();
    format!(
        "<section>\n<h2>Phases</h2>\n<table>\n<tr><th>phase</th><th class=\"n\">t</th>\
         <th class=\"n\">after fault</th></tr>\n{rows}</table>\n</section>\n"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::{
        Counts, RatePoint, Requests, Series, SloReport, SloTarget, Timers, Window, ZoneReport,
    };

    /// One client zone's requests per second: 20/s, 3 of them failing for 4 s from `fail_from`.
    fn rates(fail_from: f64) -> Vec<RatePoint> {
        let point = |i| {
            let t = f64::from(i);
            let failed = if (fail_from..fail_from + 4.0).contains(&t) {
                3.0
            } else {
                0.0
            };
            RatePoint {
                t,
                ok: 20.0 - failed,
                failed,
            }
        };
        (0..60).map(point).collect()
    }

    fn sample_series() -> Series {
        Series {
            bucket_s: 1.0,
            requests: [
                ("zone-b".to_owned(), rates(10.0)),
                ("zone-c".to_owned(), rates(11.0)),
            ]
            .into(),
            ready_endpoints: [
                ("zone-a".to_owned(), vec![(0.0, 2), (15.5, 0), (50.0, 2)]),
                ("zone-b".to_owned(), vec![(0.0, 2)]),
                ("zone-c".to_owned(), vec![(0.0, 2), (48.0, 3)]),
            ]
            .into(),
        }
    }

    fn sample_phases() -> Phases {
        Phases {
            fault_s: Some(10.0),
            nodes_not_ready_s: Some(15.0),
            lb_targets_unhealthy_s: None,
            endpoints_removed_s: Some(15.5),
            proxies_converged_s: Some(16.0),
            pods_evicted_s: Some(45.0),
            replacements_ready_s: Some(50.0),
            capacity_restored_s: None,
            ..Phases::default()
        }
    }

    fn sample_requests(by_outcome: &BTreeMap<Outcome, u64>) -> Requests {
        Requests {
            total: 2400,
            ok: 2376,
            failed: 24,
            by_outcome: by_outcome.clone(),
            new_connections: Counts {
                total: 1200,
                failed: 24,
            },
            reused_connections: Counts {
                total: 1200,
                failed: 0,
            },
            stale_conntrack: 0,
            no_endpoints: 0,
            pre_fault_connections: Counts::default(),
        }
    }

    /// A zone outage of zone-a (clients in zone-b and zone-c), SLO missed.
    pub(crate) fn sample() -> Report {
        let by_outcome: BTreeMap<Outcome, u64> =
            [(Outcome::Ok, 2376), (Outcome::Timeout, 24)].into();
        let zone = |n| ZoneReport {
            requests: n,
            ok: n - 12,
            failed: 12,
            availability: 99.0,
            by_outcome: by_outcome.clone(),
            error_window_s: 4.0,
        };
        let timers = Timers {
            node_monitor_grace_period_s: 5.0,
            node_monitor_period_s: 0.5,
            lease_renew_interval_s: 1.0,
            unreachable_toleration_s: 30.0,
            conntrack_tcp_timeout_syn_sent_s: 120.0,
        };
        let fault = FaultRecord {
            at_s: 10.0,
            kind: "zone-power-off".to_owned(),
            target: "zone-a".to_owned(),
            nodes: vec!["zl-a-0".to_owned(), "zl-a-1".to_owned()],
        };
        let target = SloTarget {
            availability: 99.9,
            max_error_window_s: Some(2.0),
        };
        Report {
            load_balancer: None,
            per_client_kind: BTreeMap::new(),
            per_service: BTreeMap::new(),
            scenario: "zone <b>& power".to_owned(),
            mode: "sim".to_owned(),
            seed: 7,
            profile: "fast".to_owned(),
            proxy_mode: "nftables".to_owned(),
            started_at_ms: 1.7e12,
            ended_at_ms: 1.7e12 + 60e3,
            duration_s: 60.0,
            ended_by: "duration".to_owned(),
            timers,
            services: vec!["default/web".to_owned()],
            nodes: BTreeMap::new(),
            faults: vec![fault],
            requests: sample_requests(&by_outcome),
            availability: 99.0,
            error_window_s: 4.0,
            error_window_without_stale_conntrack_s: 6.0,
            error_window: Some(Window {
                start_s: 10.0,
                end_s: 14.0,
            }),
            phases: sample_phases(),
            dead_endpoint_share: 1.0 / 3.0,
            window_failure_share: 0.25,
            failed_after_converged: 0,
            failed_after_converged_stale_conntrack: 0,
            per_zone: [
                ("zone-b".to_owned(), zone(1200)),
                ("zone-c".to_owned(), zone(1200)),
            ]
            .into(),
            answered_by_zone: [("zone-b".to_owned(), 1300), ("zone-c".to_owned(), 1100)].into(),
            slo: SloReport {
                target,
                met: false,
                availability_met: false,
                error_window_met: false,
            },
            series: sample_series(),
            events: Vec::new(),
            events_left_out: 0,
            control_plane: None,
            autoscaler: None,
        }
    }

    /// No `NaN` or `inf` word anywhere in the page.
    fn assert_finite(html: &str) {
        let bad = html
            .split(|c: char| !c.is_alphanumeric())
            .find(|w| *w == "NaN" || *w == "inf");
        assert_eq!(bad, None, "non-finite number in output");
    }

    #[test]
    fn node_groups_get_a_section_and_phase_markers() {
        let mut r = sample();
        assert!(!render(&r).contains("cluster autoscaler"));
        r.phases.scale_up_requested_s = Some(40.0);
        r.phases.nodes_provisioned_s = Some(48.5);
        r.autoscaler = Some(crate::report::AutoscalerReport {
            nodes_added: vec![crate::report::NodeAdded {
                name: "zl-b-2".into(),
                zone: "zone-b".into(),
                requested_s: 40.1,
                ready_s: Some(48.5),
            }],
            launches_failed: Vec::new(),
            halted_s: None,
        });
        let html = render(&r);
        assert!(
            html.contains("Node groups and cluster autoscaler"),
            "{html}"
        );
        assert!(html.contains("<td>zl-b-2</td><td>zone-b</td><td>added</td>"));
        assert!(
            html.contains("scale-up requested: 40 s")
                || html.contains("scale-up requested: 40.00 s")
        );
        assert!(html.contains("nodes provisioned: 48.5"));
        assert_finite(&html);
    }

    #[test]
    fn escape_replaces_html_specials() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
        assert_eq!(escape("zone-a"), "zone-a");
        assert_eq!(escape(""), "");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn page_has_one_svg_per_chart_and_the_zones() {
        let html = render(&sample());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 2);
        assert_eq!(html.matches("</svg>").count(), 2);
        for zone in ["zone-a", "zone-b", "zone-c"] {
            assert!(html.contains(zone), "{zone} missing");
        }
        assert!(html.contains("client zone zone-b") && html.contains("client zone zone-c"));
        assert!(!html.contains("<script") && !html.contains("http"));
        assert_finite(&html);
    }

    #[test]
    fn page_escapes_the_scenario_name() {
        let html = render(&sample());
        assert!(html.contains("zone &lt;b&gt;&amp; power"));
        assert!(!html.contains("<b>&"));
    }

    #[test]
    fn page_draws_bands_window_faults_and_verdict() {
        let html = render(&sample());
        assert!(html.contains("<title>detection: 10.00 s → 15.00 s</title>"));
        // Each of the two charts' three panels (two request zones, endpoints) draws the band.
        assert_eq!(html.matches("<title>detection:").count(), 3);
        assert_eq!(html.matches("class=\"error-window\"").count(), 3);
        assert_eq!(html.matches("class=\"fault\"").count(), 3);
        // capacity restored is None: no band to it.
        assert!(!html.contains("<title>capacity restore:"));
        assert!(html.contains("SLO not met") && html.contains("verdict missed"));
        assert!(html.contains("33.33 %") && html.contains("25.00 %"));
    }

    #[test]
    fn phases_table_shows_times_delays_and_dashes() {
        let html = phases_table(&sample().phases);
        let row = |name: &str, t: &str, delay: &str| {
            format!("<td>{name}</td><td class=\"n\">{t}</td><td class=\"n\">{delay}</td>")
        };
        assert!(html.contains(&row("fault", "10.00 s", "0.00 s")));
        assert!(html.contains(&row("nodes not ready", "15.00 s", "5.00 s")));
        assert!(html.contains(&row("capacity restored", DASH, DASH)));
    }

    #[test]
    fn empty_report_renders_without_panicking() {
        let mut r = sample();
        r.duration_s = 0.0;
        r.phases = Phases::default();
        r.series = Series::default();
        r.faults.clear();
        r.error_window = None;
        r.per_zone.clear();
        r.answered_by_zone.clear();
        r.requests = Requests::default();
        let html = render(&r);
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(html.contains("no request data") && html.contains("no endpoint data"));
        assert!(!html.contains("class=\"band\""));
        assert_finite(&html);
    }

    #[test]
    fn non_finite_numbers_never_reach_the_page() {
        let mut r = sample();
        r.duration_s = f64::NAN;
        r.availability = f64::NAN;
        r.series.bucket_s = f64::INFINITY;
        r.series.requests.get_mut("zone-b").unwrap()[3] = RatePoint {
            t: f64::NAN,
            ok: f64::INFINITY,
            failed: f64::NAN,
        };
        r.phases.nodes_not_ready_s = Some(f64::NEG_INFINITY);
        r.error_window = Some(Window {
            start_s: f64::NAN,
            end_s: 3.0,
        });
        let html = render(&r);
        assert_eq!(html.matches("<svg").count(), 2);
        assert_finite(&html);
    }
}
