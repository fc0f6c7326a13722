//! The page's "By Service" table: each client target Service's requests, failures,
//! availability and error window (report.json `per_service`). Start at [`table`].

use super::{STATS_HEADER, stats_cells};
use crate::report::Report;

/// One row per target Service; empty when the report has none.
pub(super) fn table(r: &Report) -> String {
    if r.per_service.is_empty() {
        return String::new();
    }
    let rows: String = r
        .per_service
        .iter()
        .map(|(svc, z)| format!("<tr>{}</tr>\n", stats_cells(svc, z)))
        .collect();
    format!(
        "<h3>By Service</h3>\n<table>\n<tr><th>Service</th>{STATS_HEADER}</tr>\n{rows}</table>\n"
    )
}
