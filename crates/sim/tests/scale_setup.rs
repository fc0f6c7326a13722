//! Setting up a large scenario: the kinds `scenario::sim_manifests` lets through are the ones
//! the simulated API takes, and a scenario stamped with `count` (300 Services, each in its own
//! namespace, over 150 nodes: small enough for a debug build) starts every pod and serves its clients.

mod common;

use controllers::Moment;
use serde_json::json;

#[test]
fn every_kind_the_scenario_check_lets_through_is_taken_by_the_simulated_api() {
    let mut api = sim::api::SimApi::new(300, 300, 1);
    for (api_version, kind) in scenario::sim_manifests::SIM_KINDS {
        // The kind is known; the empty object may still be refused by the API's validation.
        let obj = json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": format!("x-{}", kind.to_lowercase())}});
        if let Err(e @ sim::api::ManifestError::UnknownKind { .. }) =
            api.create_manifest(&obj, Moment::EPOCH)
        {
            panic!("{e}");
        }
    }
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}});
    assert!(matches!(
        api.create_manifest(&job, Moment::EPOCH),
        Err(sim::api::ManifestError::UnknownKind { .. })
    ));
}

#[test]
fn a_stamped_scenario_of_300_services_in_their_namespaces_starts_and_serves() {
    let text = "name: stamped
topology: {zones: [a, b, c], nodesPerZone: 50}
profile: fast
workloads:
  - count: 300
    inline:
      - {apiVersion: v1, kind: Namespace, metadata: {name: 's-{{.Index}}'}}
      - {apiVersion: v1, kind: Service, metadata: {name: web, namespace: 's-{{.Index}}'}, spec: {selector: {app: 's-{{.Index}}'}, ports: [{port: 80, targetPort: 8080}]}}
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: 's-{{.Index}}'}
        spec:
          replicas: 3
          selector: {matchLabels: {app: 's-{{.Index}}'}}
          template:
            metadata: {labels: {app: 's-{{.Index}}'}}
            spec: {containers: [{name: app, image: zonelab/echo, ports: [{containerPort: 8080}]}]}
clients:
  - {name: s-7, service: s-7/web, rate: 10, timeout: 1s}
run: {duration: 10s}
";
    let (s, m) = common::load_text(text);
    assert_eq!(m.len(), 900);
    let out = sim::run(&s, &m, 5).expect("simulated run");
    let bound = out
        .events
        .iter()
        .filter(|e| matches!(e.kind, lab::EventKind::PodBound { .. }))
        .count();
    assert_eq!(bound, 900, "every pod placed");
    let r = &out.report.requests;
    assert!(r.total > 0 && r.failed == 0, "{r:?}");
}
