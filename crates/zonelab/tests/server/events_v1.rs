//! `events.k8s.io/v1` Events over the core Event storage through a real `zonelab server`: a core
//! Event read, listed and watched as `events.k8s.io/v1` (`note`, `regarding`,
//! `reportingController`); an `events.k8s.io/v1` Event read back as core (`message`,
//! `involvedObject`); `kubectl get events.v1.events.k8s.io`; and a bad new-style Event refused
//! with 422 and the store revision unchanged.

use crate::common;

use common::{Kubectl, ServerProc, http};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::events::v1 as events;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn client(server: &ServerProc) -> kube::Client {
    let cfg = kube::Config::new(server.url().parse().expect("url"));
    kube::Client::try_from(cfg).expect("client")
}

async fn revision(client: &kube::Client) -> u64 {
    let api: Api<core::Event> = Api::all(client.clone());
    let list = api.list(&ListParams::default().limit(1)).await.unwrap();
    list.metadata.resource_version.unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_event_versions_share_one_storage() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let client = client(&server);
    let core_api: Api<core::Event> = Api::namespaced(client.clone(), "default");
    let v1_api: Api<events::Event> = Api::namespaced(client.clone(), "default");

    // A watch through events.k8s.io opened before anything exists.
    let start = revision(&client).await.to_string();
    let mut watch = v1_api
        .watch(&WatchParams::default().timeout(30), &start)
        .await
        .unwrap()
        .boxed();

    // Created through core/v1 ...
    let core_ev: core::Event = serde_json::from_value(json!({
        "metadata": {"name": "web.1", "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Started", "message": "Started container web", "type": "Normal",
        "source": {"component": "kubelet", "host": "n1"},
        "reportingComponent": "kubelet", "reportingInstance": "n1",
        "count": 2, "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
    }))
    .unwrap();
    core_api
        .create(&PostParams::default(), &core_ev)
        .await
        .unwrap();

    // ... read through events.k8s.io/v1.
    let addr = server.url().trim_start_matches("http://").to_string();
    let (code, got) = http(
        &addr,
        "GET",
        "/apis/events.k8s.io/v1/namespaces/default/events/web.1",
        "application/json",
        b"",
    );
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["apiVersion"], "events.k8s.io/v1");
    assert_eq!(got["note"], "Started container web");
    assert_eq!(got["regarding"]["name"], "web");
    assert_eq!(got["reportingController"], "kubelet");
    assert_eq!(got["deprecatedCount"], 2);
    assert_eq!(got["deprecatedSource"]["host"], "n1");
    assert!(got.get("message").is_none() && got.get("involvedObject").is_none());

    let list = v1_api.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .map(|e| e.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["web.1".to_string()]);
    assert_eq!(list.items[0].note.as_deref(), Some("Started container web"));

    // Bookmarks (converted too) may come first; the first object event is the core create.
    let added = loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), watch.try_next())
            .await
            .expect("a watch event in time")
            .unwrap()
            .expect("stream open");
        match next {
            WatchEvent::Bookmark(b) => assert_eq!(b.types.api_version, "events.k8s.io/v1"),
            WatchEvent::Added(ev) => break ev,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(added.metadata.name.as_deref(), Some("web.1"));
    assert_eq!(added.note.as_deref(), Some("Started container web"));
    assert_eq!(added.regarding.unwrap().name.as_deref(), Some("web"));

    // Created through events.k8s.io/v1, read back through core/v1.
    let new_style: events::Event = serde_json::from_value(json!({
        "metadata": {"name": "lab.1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "regarding": {"apiVersion": "v1", "kind": "Node", "name": "n2"},
        "note": "node n2 cordoned by the lab", "reason": "Cordoned", "action": "Cordon",
        "type": "Warning", "reportingController": "zonelab.io/lab", "reportingInstance": "lab-1",
    }))
    .unwrap();
    let created = v1_api
        .create(&PostParams::default(), &new_style)
        .await
        .unwrap();
    assert_eq!(created.note.as_deref(), Some("node n2 cordoned by the lab"));
    let back = core_api.get("lab.1").await.unwrap();
    assert_eq!(back.message.as_deref(), Some("node n2 cordoned by the lab"));
    assert_eq!(back.involved_object.name.as_deref(), Some("n2"));
    assert_eq!(back.reporting_component.as_deref(), Some("zonelab.io/lab"));

    // A series update through events.k8s.io/v1 lands in core; a changed note is refused.
    let series = json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:02:00.000000Z"}});
    v1_api
        .patch("lab.1", &PatchParams::default(), &Patch::Merge(&series))
        .await
        .unwrap();
    assert_eq!(
        core_api.get("lab.1").await.unwrap().series.unwrap().count,
        Some(2)
    );
    let err = v1_api
        .patch(
            "lab.1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"note": "rewritten"})),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("note") || s.message.contains("message"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // kubectl prints both through the events.k8s.io resource.
    let k = Kubectl::new(&server);
    let out = k.ok(&["get", "events.v1.events.k8s.io", "-n", "default"], None);
    assert!(out.contains("Started container web"), "{out}");
    assert!(out.contains("node n2 cordoned by the lab"), "{out}");

    // A new-style Event without eventTime or reporter is refused; nothing is written.
    let before = revision(&client).await;
    let bad = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "bad.1", "namespace": "default"},
        "regarding": {"kind": "Pod", "name": "web"}, "type": "Normal", "reason": "X", "action": "Y",
    });
    let (code, status) = http(
        &addr,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "application/json",
        bad.to_string().as_bytes(),
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["group"], "events.k8s.io");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("eventTime: Required value"), "{message}");
    assert!(
        message.contains("reportingController: Required value"),
        "{message}"
    );
    assert_eq!(revision(&client).await, before);

    // Field labels of core Events are not events.k8s.io's.
    let (code, status) = http(
        &addr,
        "GET",
        "/apis/events.k8s.io/v1/events?fieldSelector=involvedObject.name%3Dweb",
        "application/json",
        b"",
    );
    assert_eq!(code, 400, "{status}");

    // A delete through one version removes the object from both.
    v1_api.delete("web.1", &Default::default()).await.unwrap();
    let gone = core_api.get_opt("web.1").await.unwrap();
    assert!(gone.is_none());
    let (code, status) = http(
        &addr,
        "GET",
        "/apis/events.k8s.io/v1/namespaces/default/events/web.1",
        "application/json",
        b"",
    );
    assert_eq!(code, 404);
    assert_eq!(
        status["message"],
        "events.events.k8s.io \"web.1\" not found"
    );
}
