//! The report's `per_service`: the `per_zone` fields for each client target Service
//! (`<namespace>/<name>`), so an app with several Services gets one error window each. Start at
//! [`per_service`].

use std::collections::BTreeMap;

use super::{PrimaryFault, traffic};
use crate::report::ZoneReport;
use crate::timeline::Request;

/// The `per_zone` fields per target Service; `requests` sorted by start. Records without a
/// Service (written before clients recorded it) are left out.
pub fn per_service(
    requests: &[&Request],
    fault: Option<&PrimaryFault>,
) -> BTreeMap<String, ZoneReport> {
    let mut services: BTreeMap<&str, Vec<&Request>> = BTreeMap::new();
    for r in requests.iter().filter(|r| !r.service.is_empty()) {
        services.entry(r.service.as_str()).or_default().push(r);
    }
    services
        .into_iter()
        .map(|(svc, rs)| (svc.to_string(), traffic::breakdown(&rs, fault)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::timeline::{ConnKind, Outcome};

    const T0: f64 = 1_000_000.0;

    fn at(s: f64) -> f64 {
        T0 + s * 1e3
    }

    fn req(service: &str, start_s: f64, ok: bool) -> Request {
        Request {
            client: "c".into(),
            client_zone: "b".into(),
            client_node: "b-2".into(),
            client_kind: "clusterip".into(),
            service: service.into(),
            start: at(start_s),
            end: at(start_s + if ok { 0.01 } else { 1.0 }),
            outcome: if ok { Outcome::Ok } else { Outcome::Timeout },
            conn: ConnKind::New,
            conn_opened: at(start_s),
            local_port: 0,
            connected: ok,
            pod: None,
            node: None,
            zone: None,
        }
    }

    fn fault_at(s: f64) -> PrimaryFault {
        PrimaryFault {
            at_ms: at(s),
            kind: "zone-power-off".into(),
            nodes: BTreeSet::from(["a-1".to_string(), "a-2".to_string()]),
            next_fault_ms: None,
        }
    }

    #[test]
    fn each_service_gets_its_own_error_window() {
        let reqs = [
            req("default/frontend", 5.0, true),
            req("default/frontend", 21.0, false),
            req("default/frontend", 24.0, false),
            req("default/frontend", 30.0, true),
            req("default/db", 21.0, false),
            req("default/db", 40.0, false),
            req("default/db", 41.0, true),
            req("shop/backend", 22.0, true),
        ];
        let refs: Vec<&Request> = reqs.iter().collect();
        let by = per_service(&refs, Some(&fault_at(20.0)));
        assert_eq!(
            by.keys().map(String::as_str).collect::<Vec<_>>(),
            ["default/db", "default/frontend", "shop/backend"]
        );
        assert_eq!(by["default/frontend"].requests, 4);
        assert_eq!(by["default/frontend"].failed, 2);
        assert_eq!(by["default/frontend"].error_window_s, 3.0);
        assert_eq!(by["default/db"].error_window_s, 19.0);
        assert_eq!(by["default/db"].by_outcome[&Outcome::Timeout], 2);
        assert_eq!(by["shop/backend"].failed, 0);
        assert_eq!(by["shop/backend"].availability, 100.0);
        assert_eq!(by["shop/backend"].error_window_s, 0.0);
    }

    #[test]
    fn records_without_a_service_are_left_out() {
        let reqs = [req("", 1.0, false), req("default/web", 2.0, true)];
        let refs: Vec<&Request> = reqs.iter().collect();
        let by = per_service(&refs, None);
        assert_eq!(by.len(), 1);
        assert_eq!(by["default/web"].requests, 1);
    }

    #[test]
    fn the_summary_has_a_line_per_service_only_with_several() {
        let mut r = crate::html::tests::sample();
        let reqs = [
            req("default/frontend", 21.0, false),
            req("default/db", 2.0, true),
        ];
        let refs: Vec<&Request> = reqs.iter().collect();
        r.per_service = per_service(&refs, None);
        let text = crate::summary::render(&r);
        assert!(
            text.contains("Service default/frontend: 1 requests, 1 failed, availability 0.00%"),
            "{text}"
        );
        assert!(
            text.contains("Service default/db: 1 requests, 0 failed"),
            "{text}"
        );
        r.per_service.remove("default/db");
        assert!(!crate::summary::render(&r).contains("Service default/"));
    }
}
