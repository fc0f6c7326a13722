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

#[cfg(test)]
mod tests {
    use crate::report::ZoneReport;

    #[test]
    fn one_row_per_service_and_none_without() {
        let mut r = crate::html::tests::sample();
        r.per_service.clear();
        assert_eq!(super::table(&r), "");
        r.per_service.insert(
            "default/db".into(),
            ZoneReport {
                requests: 10,
                ok: 7,
                failed: 3,
                availability: 70.0,
                error_window_s: 19.5,
                ..Default::default()
            },
        );
        let t = super::table(&r);
        assert!(t.contains("<td>default/db</td>"), "{t}");
        assert!(t.contains("70.000 %"), "{t}");
        assert_eq!(t.matches("<tr><td>").count(), 1);
    }
}
