//! FakeApi gives controllers the API server's write rules (registry::MemApi), not a subset.

use serde_json::json;

use super::*;

fn new_pod(name: &str) -> Object {
    pod(json!({"metadata": {"name": name, "namespace": "default"},
               "spec": {"containers": [{"name": "c", "image": "i"}]}}))
}

fn pod_of(o: &Object) -> &Pod {
    match o {
        Object::Pod(p) => p,
        other => panic!("not a pod: {other:?}"),
    }
}

#[test]
fn a_created_pod_is_admitted_as_the_server_would() {
    let mut api = FakeApi::new();
    let changes = api.execute(&Action::Create(new_pod("p")), T0).unwrap();
    let p = pod_of(changes[0].object()).clone();
    let spec = p.spec.as_ref().unwrap();
    let tolerated: Vec<_> = (spec.tolerations.iter().flatten())
        .map(|t| (t.key.clone().unwrap_or_default(), t.toleration_seconds))
        .collect();
    assert_eq!(
        tolerated,
        vec![
            ("node.kubernetes.io/not-ready".to_string(), Some(300)),
            ("node.kubernetes.io/unreachable".to_string(), Some(300))
        ]
    );
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(p.metadata.uid.unwrap().len(), 36);
    let key = Key::new("default", "p");
    assert!(api.get(Kind::Pod, &key).is_some());
}

#[test]
fn an_invalid_create_is_refused_and_changes_nothing() {
    let mut api = FakeApi::new();
    let bad = pod(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {}}));
    let e = api.execute(&Action::Create(bad), T0).unwrap_err();
    assert!(
        matches!(&e, WriteError::Invalid(m) if m.contains("spec.containers: Required value")),
        "{e:?}"
    );
    assert!(api.cache.pods.is_empty());
    api.execute(&Action::Create(new_pod("p")), T0).unwrap();
    let again = api.execute(&Action::Create(new_pod("p")), T0).unwrap_err();
    assert_eq!(again, WriteError::AlreadyExists);
}

#[test]
fn status_writes_keep_the_spec_and_stale_writes_conflict() {
    let mut api = FakeApi::new();
    api.execute(&Action::Create(new_pod("p")), T0).unwrap();
    api.execute(
        &Action::Bind {
            pod: Key::new("default", "p"),
            node: "n1".into(),
        },
        T0,
    )
    .unwrap();
    let key = Key::new("default", "p");
    let stored = api.get(Kind::Pod, &key).unwrap();
    let mut p = pod_of(&stored).clone();
    p.spec.as_mut().unwrap().node_name = Some("elsewhere".into());
    p.status.as_mut().unwrap().phase = Some("Running".into());
    let changes = api
        .execute(&Action::UpdateStatus(Object::Pod(Arc::new(p.clone()))), T0)
        .unwrap();
    let now = pod_of(changes[0].object());
    assert_eq!(now.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    assert_eq!(
        now.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    // `p` still carries the resourceVersion the status write replaced.
    p.status.as_mut().unwrap().phase = Some("Failed".into());
    let e = api
        .execute(&Action::UpdateStatus(Object::Pod(Arc::new(p))), T0)
        .unwrap_err();
    assert_eq!(e, WriteError::Conflict);
}

#[test]
fn deleting_a_bound_pod_waits_for_its_kubelet_an_unbound_one_goes() {
    let mut api = FakeApi::new();
    for name in ["bound", "pending"] {
        api.execute(&Action::Create(new_pod(name)), T0).unwrap();
    }
    let bind = Action::Bind {
        pod: Key::new("default", "bound"),
        node: "n1".into(),
    };
    api.execute(&bind, T0).unwrap();
    assert_eq!(api.execute(&bind, T0).unwrap_err(), WriteError::Conflict);
    let delete = |name: &str| Action::Delete {
        kind: Kind::Pod,
        key: Key::new("default", name),
        uid: None,
        grace_period_seconds: None,
    };
    let marked = api.execute(&delete("bound"), T0).unwrap();
    let meta = &pod_of(marked[0].object()).metadata;
    assert_eq!(meta.deletion_grace_period_seconds, Some(30));
    assert!(meta.deletion_timestamp.is_some());
    let gone = api.execute(&delete("pending"), T0).unwrap();
    assert!(matches!(gone[0], Change::Deleted(_)));
    assert!(
        api.get(Kind::Pod, &Key::new("default", "pending"))
            .is_none()
    );
}

#[test]
fn server_settings_and_seed_are_the_callers() {
    let cfg = registry::MemConfig {
        admission: registry::Admission {
            default_not_ready_toleration_seconds: 40,
            default_unreachable_toleration_seconds: 50,
        },
        check_namespaces: false,
        ..registry::MemConfig::default()
    };
    let uid = |seed| {
        let mut api = FakeApi::with_config(cfg.clone(), seed).unwrap();
        let changes = api.execute(&Action::Create(new_pod("p")), T0).unwrap();
        let p = pod_of(changes[0].object()).clone();
        let secs: Vec<_> = (p.spec.unwrap().tolerations.iter().flatten())
            .map(|t| t.toleration_seconds)
            .collect();
        assert_eq!(secs, vec![Some(40), Some(50)]);
        p.metadata.uid.unwrap()
    };
    assert_eq!(uid(7), uid(7));
    assert_ne!(uid(7), uid(8));
    let bad = registry::MemConfig {
        service_cluster_ip_range: "10.0.0.0/99".into(),
        ..registry::MemConfig::default()
    };
    assert!(FakeApi::with_config(bad, 1).is_err());
}
