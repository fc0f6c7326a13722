//! The ReplicaSet status write that loses a race is retried once on the object as stored now
//! (upstream `updateReplicaSetStatus`'s GET/PUT), not from the informer's stale copy. Start at
//! [`a_conflicting_status_write_is_retried_once_on_the_stored_object`].

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use serde_json::json;

use super::{ReplicaSetConfig, ReplicaSetController};
use crate::fake::{FakeApi, T0, object};
use crate::{Action, Cache, Change, Controller, Key, Kind, Object, WriteError};

fn key() -> Key {
    Key {
        namespace: "default".into(),
        name: "rs".into(),
    }
}

fn stored(api: &FakeApi) -> Arc<ReplicaSet> {
    match api.get(Kind::ReplicaSet, &key()) {
        Some(Object::ReplicaSet(rs)) => rs,
        other => panic!("no ReplicaSet: {other:?}"),
    }
}

/// Execute every queued write, feeding the results back (a prompt watch).
fn settle(api: &mut FakeApi, rsc: &mut ReplicaSetController) {
    while let Some(a) = rsc.poll_action() {
        match api.execute(&a, T0) {
            Ok(changes) => {
                for c in changes {
                    let cache = api.cache.clone();
                    rsc.handle_change(&cache, &c, T0);
                }
            }
            Err(e) => rsc.handle_write_failed(&a, &e, T0),
        }
    }
}

#[test]
fn a_conflicting_status_write_is_retried_once_on_the_stored_object() {
    let mut api = FakeApi::new();
    api.put(
        object(json!({
            "kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        })),
        T0,
    );
    let mut rsc = ReplicaSetController::new(ReplicaSetConfig::default());
    let cache = api.cache.clone();
    rsc.handle_synced(&cache, T0);
    settle(&mut api, &mut rsc);
    assert_eq!(stored(&api).status.as_ref().map(|s| s.replicas), Some(1));

    // The informer lags: its copy has an old resourceVersion (someone else wrote the object
    // since) and an old status, so the controller writes status from that copy.
    let mut stale: Cache = api.cache.clone();
    let mut newer = (*stored(&api)).clone();
    newer
        .metadata
        .labels
        .get_or_insert_default()
        .insert("tier".into(), "web".into());
    api.put(Object::ReplicaSet(Arc::new(newer)), T0);
    let mut old = (*stored(&api)).clone();
    old.metadata.resource_version = stale.replica_sets[&key()].metadata.resource_version.clone();
    old.status = Some(ReplicaSetStatus::default());
    let old = Arc::new(old);
    stale.replica_sets.insert(key(), old.clone());
    let change = Change::Applied {
        new: Object::ReplicaSet(old.clone()),
        old: Some(Object::ReplicaSet(old)),
    };
    rsc.handle_change(&stale, &change, T0);
    let first = rsc.poll_action().expect("a status write");
    assert!(matches!(first, Action::UpdateStatus(_)));
    assert_eq!(api.execute(&first, T0).err(), Some(WriteError::Conflict));

    // The retry: same status, no precondition; it lands and keeps the other writer's label.
    rsc.handle_write_failed(&first, &WriteError::Conflict, T0);
    let retry = rsc.poll_action().expect("one retry");
    let Action::UpdateStatus(Object::ReplicaSet(r)) = &retry else {
        panic!("not a status write: {retry:?}")
    };
    assert_eq!(r.metadata.resource_version, None);
    assert!(rsc.poll_action().is_none());
    api.execute(&retry, T0).expect("the retry lands");
    let now = stored(&api);
    assert_eq!(now.status.as_ref().map(|s| s.replicas), Some(1));
    assert_eq!(
        now.metadata.labels.as_ref().and_then(|l| l.get("tier")),
        Some(&"web".to_string())
    );

    // A retry that fails in turn is not retried at once again: the key is requeued with
    // backoff (upstream returns the error to its work queue).
    rsc.handle_write_failed(&retry, &WriteError::Conflict, T0);
    assert!(rsc.poll_action().is_none());
    assert!(rsc.poll_timeout().is_some_and(|t| t > T0));
}
