//! A kube-rs client against a real `zonelab server`: create, list, watch with bookmarks, resume
//! from a resourceVersion, 410 on a compacted one, and kube-runtime's watcher relisting.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::ServerProc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

fn client(server: &ServerProc) -> kube::Client {
    let cfg = kube::Config::new(server.url().parse().expect("url"));
    kube::Client::try_from(cfg).expect("client")
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"suite": "kube"}},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }))
    .expect("service")
}

fn name_of(ev: &WatchEvent<Service>) -> Option<(String, String)> {
    match ev {
        WatchEvent::Added(s) => Some(("ADDED".into(), s.metadata.name.clone().unwrap_or_default())),
        WatchEvent::Modified(s) => Some((
            "MODIFIED".into(),
            s.metadata.name.clone().unwrap_or_default(),
        )),
        WatchEvent::Deleted(s) => Some((
            "DELETED".into(),
            s.metadata.name.clone().unwrap_or_default(),
        )),
        _ => None,
    }
}

fn rv_of(ev: &WatchEvent<Service>) -> Option<String> {
    match ev {
        WatchEvent::Added(s) | WatchEvent::Modified(s) | WatchEvent::Deleted(s) => {
            s.metadata.resource_version.clone()
        }
        WatchEvent::Bookmark(b) => Some(b.metadata.resource_version.clone()),
        WatchEvent::Error(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_watch_bookmarks_resume_and_expired() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(
        dir.path(),
        &["--bookmark-interval", "200ms", "--watch-history", "40"],
    );
    let api: Api<Service> = Api::namespaced(client(&server), "default");
    let pp = PostParams::default();
    for i in 0..3 {
        api.create(&pp, &service(&format!("s{i}"))).await.unwrap();
    }
    let lp = ListParams::default().labels("suite=kube");
    let list = api.list(&lp).await.unwrap();
    assert_eq!(list.items.len(), 3);
    let list_rv = list.metadata.resource_version.clone().unwrap();
    assert!(
        list.items
            .iter()
            .all(|s| s.spec.as_ref().and_then(|x| x.cluster_ip.clone()).is_some())
    );

    // Watch from the list's revision with bookmarks.
    let wp = WatchParams::default().labels("suite=kube").timeout(60);
    let mut stream = api.watch(&wp, &list_rv).await.unwrap().boxed();
    api.create(&pp, &service("s3")).await.unwrap();
    let mut last_rv = list_rv.clone();
    let mut seen = Vec::new();
    let mut bookmarks = 0;
    while seen.is_empty() || bookmarks == 0 {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("watch event")
            .unwrap()
            .unwrap();
        if matches!(ev, WatchEvent::Bookmark(_)) {
            bookmarks += 1;
        }
        if let Some(rv) = rv_of(&ev) {
            last_rv = rv;
        }
        seen.extend(name_of(&ev));
    }
    assert_eq!(seen, vec![("ADDED".to_string(), "s3".to_string())]);
    drop(stream);

    // While nobody watches: a create, an update, a delete. A resumed watch sees each once.
    api.create(&pp, &service("s4")).await.unwrap();
    let mut s0 = api.get("s0").await.unwrap();
    s0.metadata
        .labels
        .get_or_insert_default()
        .insert("x".into(), "y".into());
    api.replace("s0", &pp, &s0).await.unwrap();
    api.delete("s1", &DeleteParams::default()).await.unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default().labels("suite=kube").timeout(60),
            &last_rv,
        )
        .await
        .unwrap()
        .boxed();
    let mut got = Vec::new();
    while got.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("resumed event")
            .unwrap()
            .unwrap();
        got.extend(name_of(&ev));
    }
    assert_eq!(
        got,
        vec![
            ("ADDED".into(), "s4".into()),
            ("MODIFIED".into(), "s0".into()),
            ("DELETED".into(), "s1".into())
        ]
    );
    drop(stream);

    // Push the history past its bound: watching from the first revision is 410 Gone.
    for i in 0..60 {
        let name = format!("churn{i}");
        api.create(&pp, &service(&name)).await.unwrap();
        api.delete(&name, &DeleteParams::default()).await.unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &list_rv)
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("410 event")
        .unwrap();
    match first {
        Ok(WatchEvent::Error(e)) => assert_eq!(e.code, 410, "{e:?}"),
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected 410, got {other:?}"),
    }

    // kube-runtime's watcher relists and ends up with exactly the live set.
    let names: BTreeSet<String> = api
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    let mut w = watcher(api.clone(), watcher::Config::default().labels("suite=kube")).boxed();
    let mut init = BTreeSet::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), w.try_next())
            .await
            .expect("watcher")
            .unwrap()
            .unwrap()
        {
            watcher::Event::InitApply(s) => {
                init.insert(s.metadata.name.unwrap_or_default());
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(init, names);
}
