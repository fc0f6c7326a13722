//! Bench for the Deployment and ReplicaSet controllers: wall time to create a Deployment of N
//! replicas and roll out a new template (fake kubelet readies every pod each step), in the
//! virtual-time harness. Prints figures; run with `cargo bench -p controllers --bench workloads`.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use controllers::fake::{Harness, object};
use controllers::workloads::{
    DeploymentConfig, DeploymentController, ReplicaSetConfig, ReplicaSetController,
};
use controllers::{Key, Kind, Object};
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use serde_json::json;

fn kubelet(h: &mut Harness) -> usize {
    let pods: Vec<_> = h.api.cache.pods.values().cloned().collect();
    let mut touched = 0;
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            h.remove(Kind::Pod, &Key::of(&p.metadata));
            touched += 1;
        } else if !controllers::pod_is_ready(&p) {
            let mut p = (*p).clone();
            p.spec.get_or_insert_with(Default::default).node_name = Some("node-a".into());
            p.status = Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(controllers::time::to_time(h.now)),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            h.put(Object::Pod(Arc::new(p)));
            touched += 1;
        }
    }
    touched
}

fn run(n: i32) {
    let mut h = Harness::new(vec![
        Box::new(DeploymentController::new(DeploymentConfig::default())),
        Box::new(ReplicaSetController::new(ReplicaSetConfig::default())),
    ]);
    h.start();
    let d = |image: &str| {
        object(json!({
            "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}
        }))
    };
    let t = Instant::now();
    h.put(d("img:1"));
    while kubelet(&mut h) > 0 {
        h.advance(Duration::from_millis(1000));
    }
    let create = t.elapsed();
    let writes_before: usize = h.write_counts().values().sum();
    let t = Instant::now();
    let mut cur = (*h.api.cache.deployments[&Key::new("default", "web")]).clone();
    let Object::Deployment(new) = d("img:2") else {
        return;
    };
    cur.spec = new.spec.clone();
    h.put(Object::Deployment(Arc::new(cur)));
    let mut steps = 0;
    while kubelet(&mut h) > 0 {
        h.advance(Duration::from_millis(1000));
        steps += 1;
    }
    let rollout = t.elapsed();
    let writes: usize = h.write_counts().values().sum::<usize>() - writes_before;
    println!(
        "replicas {n:>5}: create+ready {:>8.1} ms, rolling update {:>8.1} ms ({steps} kubelet steps, {writes} writes, {:.1} us/write)",
        create.as_secs_f64() * 1e3,
        rollout.as_secs_f64() * 1e3,
        rollout.as_secs_f64() * 1e6 / writes.max(1) as f64
    );
    println!(
        "    writes by kind: {:?}; failed writes: {}",
        h.write_counts(),
        h.failures.len()
    );
}

fn main() {
    for n in [10, 100, 1000] {
        run(n);
    }
}
