//! The page's node-group section: the nodes the cluster autoscaler added (zone, launch
//! requested, Ready), failed launches, and when autoscaling halted. Start at [`section`].

use super::{DASH, escape, secs};
use crate::report::{AutoscalerReport, Report};

/// The section, or nothing when the run had no node groups.
pub(super) fn section(r: &Report) -> String {
    let Some(a) = &r.autoscaler else {
        return String::new();
    };
    format!(
        "<section>\n<h2>Node groups and cluster autoscaler</h2>\n<p class=\"kpi\">{}</p>\n{}</section>\n",
        escape(&crate::summary::autoscaler_sentence(r, a)),
        table(a)
    )
}

fn table(a: &AutoscalerReport) -> String {
    let opt = |x: Option<f64>| x.map_or_else(|| DASH.to_owned(), secs);
    let mut rows = String::new();
    for n in &a.nodes_added {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>added</td><td>{}</td><td>{}</td></tr>\n",
            escape(&n.name),
            escape(&n.zone),
            secs(n.requested_s),
            opt(n.ready_s)
        ));
    }
    for f in &a.launches_failed {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>launch failed at {}</td><td>{}</td><td>{DASH}</td></tr>\n",
            escape(&f.name),
            escape(&f.zone),
            secs(f.failed_s),
            opt(f.requested_s)
        ));
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "<table>\n<tr><th>node</th><th>zone</th><th>outcome</th><th>launch requested</th><th>Ready</th></tr>\n{rows}</table>\n"
    )
}
