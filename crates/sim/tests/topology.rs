//! Topology-aware routing in the simulator: a `trafficDistribution: PreferClose` Service keeps
//! a zone's traffic in the zone while the zone has ready endpoints, and falls back to every
//! zone once they are gone.

#[allow(dead_code)] // `load` serves the other test files.
mod common;

/// Zones a, b, c with two nodes each; the client runs on b-2 (a client's node is the last of
/// its zone). One web pod on b-1, two in zones a and c; b-1 loses power at 20 s.
const SCENARIO: &str = r#"
name: prefer-close
topology: {zones: [a, b, c], nodesPerZone: 2}
profile: fast
workloads:
  - inline:
      apiVersion: v1
      kind: Service
      metadata: {name: web}
      spec:
        selector: {app: web}
        ports: [{name: http, port: 80, targetPort: http}]
        trafficDistribution: PreferClose
  - inline:
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web-b}
      spec:
        replicas: 1
        selector: {matchLabels: {app: web, part: b}}
        template:
          metadata: {labels: {app: web, part: b}}
          spec:
            nodeSelector: {kubernetes.io/hostname: b-1}
            containers: [{name: echo, image: zonelab/echo, ports: [{name: http, containerPort: 8080}]}]
  - inline:
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web-ac}
      spec:
        replicas: 2
        selector: {matchLabels: {app: web, part: ac}}
        template:
          metadata: {labels: {app: web, part: ac}}
          spec:
            affinity:
              nodeAffinity:
                requiredDuringSchedulingIgnoredDuringExecution:
                  nodeSelectorTerms:
                  - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [a, c]}]
            topologySpreadConstraints:
            - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web, part: ac}}}
            containers: [{name: echo, image: zonelab/echo, ports: [{name: http, containerPort: 8080}]}]
clients:
  - name: web
    zones: [b]
    target: web
    rate: 20
    timeout: 1s
faults:
  - {at: 20s, type: node-power-off, target: b-1}
run: {duration: 90s}
"#;

#[test]
fn prefer_close_keeps_zone_b_in_b_then_falls_back_to_every_zone() {
    let (s, m) = common::load_text(SCENARIO);
    let out = sim::run(&s, &m, 5).expect("simulated run");
    let t0 = out.report.started_at_ms;
    let fault = t0 + 20_000.0;
    let served = |from: f64, to: f64| -> std::collections::BTreeMap<String, usize> {
        let mut zones = std::collections::BTreeMap::new();
        for q in out
            .requests
            .iter()
            .filter(|q| q.ok() && q.start >= from && q.start < to)
        {
            *zones.entry(q.zone.clone().unwrap_or_default()).or_default() += 1;
        }
        zones
    };
    // Before the fault: every answer from zone b, although two thirds of the endpoints are
    // elsewhere.
    let before = served(t0, fault);
    assert!(before.get("b").copied().unwrap_or(0) > 50, "{before:?}");
    assert_eq!(before.len(), 1, "only zone b answers: {before:?}");
    // Once b-1 is detected and its pod NotReady, no endpoint is hinted for zone b: the client's
    // proxy uses every endpoint, in zones a and c.
    let after = served(fault + 40_000.0, t0 + 90_000.0);
    assert!(after.get("a").copied().unwrap_or(0) > 20, "{after:?}");
    assert!(after.get("c").copied().unwrap_or(0) > 20, "{after:?}");
    assert!(!after.contains_key("b"), "{after:?}");
    let late_failures = out
        .requests
        .iter()
        .filter(|q| !q.ok() && q.start >= fault + 40_000.0)
        .count();
    assert_eq!(late_failures, 0, "the fallback serves every request");
}
