//! The health check node ports kube-proxy serves for `type: LoadBalancer` Services with
//! `externalTrafficPolicy: Local`, sans-IO, with upstream's semantics
//! (pkg/proxy/healthcheck/service_health.go): after each successful sync the proxy learns
//! which ports to serve (`SyncServices`) and how many ready endpoints each Service has on this
//! node, counted by distinct IP over all its ports (`SyncEndpoints` of `LocalReadyEndpoints`);
//! a request on the port answers 200 when that count is non-zero and the proxy itself is
//! healthy, else 503, with upstream's JSON body and headers. The driver only binds the ports
//! and writes the answers.
//!
//! Start at [`ServiceHealth::sync`] and [`ServiceHealth::answer`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::model::ServiceKey;
use crate::tracker::Tracker;

/// `Content-Type` of every health check answer.
pub const CONTENT_TYPE: &str = "application/json";

/// Health check ports and local endpoint counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceHealth {
    /// Service -> (health check node port, local ready endpoints).
    services: BTreeMap<ServiceKey, (u16, usize)>,
}

/// What one health check request is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckAnswer {
    pub service: ServiceKey,
    pub local_endpoints: usize,
    pub service_proxy_healthy: bool,
}

impl ServiceHealth {
    pub fn new() -> ServiceHealth {
        ServiceHealth::default()
    }

    /// Re-reads the tracked Services and endpoints (call after a successful sync): every
    /// Service with a `healthCheckNodePort` (LoadBalancer + Local) and its number of distinct
    /// ready endpoint IPs whose `nodeName` is `node`.
    pub fn sync(&mut self, tracker: &Tracker, node: Option<&str>) {
        let mut next = BTreeMap::new();
        for (key, ports) in tracker.services() {
            let Some(hc) = ports.iter().find_map(|p| p.health_check_node_port) else {
                continue;
            };
            let mut ips: BTreeSet<Ipv4Addr> = BTreeSet::new();
            for port in ports {
                ips.extend(
                    tracker
                        .endpoints_of(&port.name)
                        .iter()
                        .filter(|e| {
                            e.ready && e.node_name.is_some() && e.node_name.as_deref() == node
                        })
                        .map(|e| e.ip),
                );
            }
            next.insert(key.clone(), (hc, ips.len()));
        }
        self.services = next;
    }

    /// The ports to listen on and the Service each one answers for. Two Services claiming
    /// one port (the API server prevents it) keep the first in name order.
    pub fn ports(&self) -> BTreeMap<u16, ServiceKey> {
        let mut out = BTreeMap::new();
        for (key, (port, _)) in &self.services {
            out.entry(*port).or_insert_with(|| key.clone());
        }
        out
    }

    /// The answer for a request to `service`'s port; `None` when the Service no longer has a
    /// health check (upstream logs "Received request for closed healthcheck" and writes
    /// nothing).
    pub fn answer(&self, service: &ServiceKey, proxy_healthy: bool) -> Option<HealthCheckAnswer> {
        let (_, count) = self.services.get(service)?;
        Some(HealthCheckAnswer {
            service: service.clone(),
            local_endpoints: *count,
            service_proxy_healthy: proxy_healthy,
        })
    }
}

impl HealthCheckAnswer {
    /// 200 with local endpoints and a healthy proxy, else 503.
    pub fn status_code(&self) -> u16 {
        if self.local_endpoints != 0 && self.service_proxy_healthy {
            200
        } else {
            503
        }
    }

    /// Upstream's headers: `Content-Type`, `X-Content-Type-Options: nosniff` and
    /// `X-Load-Balancing-Endpoint-Weight` (the local endpoint count).
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("Content-Type", CONTENT_TYPE.to_string()),
            ("X-Content-Type-Options", "nosniff".to_string()),
            (
                "X-Load-Balancing-Endpoint-Weight",
                self.local_endpoints.to_string(),
            ),
        ]
    }

    /// Upstream's body, byte for byte: tab-indented JSON without a trailing newline.
    pub fn body(&self) -> String {
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        format!(
            "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
            q(&self.service.namespace),
            q(&self.service.name),
            self.local_endpoints,
            self.service_proxy_healthy
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ep_cond, service, service_json, slice};
    use serde_json::json;

    const PORTS: &[(&str, u16, &str)] = &[("http", 80, "TCP"), ("https", 443, "TCP")];

    fn lb(name: &str, policy: &str, hc: u16) -> k8s_openapi::api::core::v1::Service {
        service_json(
            "ns1",
            name,
            json!({"type": "LoadBalancer", "clusterIP": "172.30.0.41", "externalTrafficPolicy": policy,
                   "healthCheckNodePort": hc,
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080},
                             {"name": "https", "port": 443, "nodePort": 30443}]}),
            json!({}),
        )
    }

    #[test]
    fn counts_distinct_local_ready_ips_per_service() {
        let mut t = Tracker::new();
        t.apply_service(&lb("web", "Local", 31000));
        // A Cluster-policy LoadBalancer and a ClusterIP Service: no health check port.
        t.apply_service(&lb("cluster", "Cluster", 31001));
        t.apply_service(&service("ns1", "plain", "172.30.0.42", PORTS));
        t.apply_slice(&slice(
            "ns1",
            "web",
            "web-1",
            PORTS,
            vec![
                ep_cond("10.0.1.1", true, true, false, Some("node-a")),
                ep_cond("10.0.1.2", false, true, true, Some("node-a")),
                ep_cond("10.0.2.1", true, true, false, Some("node-b")),
            ],
        ));
        let mut h = ServiceHealth::new();
        h.sync(&t, Some("node-a"));
        let web = ServiceKey::new("ns1", "web");
        assert_eq!(h.ports(), BTreeMap::from([(31000, web.clone())]));
        // Two ports, one ready local IP: 1 (the terminating one does not count, as upstream).
        let a = h.answer(&web, true).expect("answer");
        assert_eq!((a.local_endpoints, a.status_code()), (1, 200));
        assert_eq!(h.answer(&web, false).expect("answer").status_code(), 503);
        h.sync(&t, Some("node-c"));
        let a = h.answer(&web, true).expect("answer");
        assert_eq!((a.local_endpoints, a.status_code()), (0, 503));
        assert_eq!(a.headers()[2].1, "0");
        // The Service goes back to Cluster policy: the port closes.
        t.apply_service(&lb("web", "Cluster", 31000));
        h.sync(&t, Some("node-a"));
        assert!(h.ports().is_empty());
        assert!(h.answer(&web, true).is_none());
    }

    #[test]
    fn body_and_headers_are_upstreams() {
        let a = HealthCheckAnswer {
            service: ServiceKey::new("ns1", "web"),
            local_endpoints: 2,
            service_proxy_healthy: true,
        };
        assert_eq!(
            a.body(),
            "{\n\t\"service\": {\n\t\t\"namespace\": \"ns1\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        );
        let v: serde_json::Value = serde_json::from_str(&a.body()).expect("json");
        assert_eq!(v["service"]["name"], "web");
        assert_eq!(
            a.headers(),
            [
                ("Content-Type", "application/json".to_string()),
                ("X-Content-Type-Options", "nosniff".to_string()),
                ("X-Load-Balancing-Endpoint-Weight", "2".to_string()),
            ]
        );
    }
}
