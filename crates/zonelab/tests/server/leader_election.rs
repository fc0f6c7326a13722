//! Leader election of the controllers, in process: three elected controller-managers
//! (identities `le-a`, `le-b`, `le-c`) against one API server with an audit log. Only the
//! leader's controllers write; after the leader is killed a follower takes over; and the
//! audit log shows no write by a deposed leader after its lease expired.
//!
//! Start at [`three_controller_managers_one_acts_and_a_follower_takes_over`]; the audit-log
//! check is `common::audit::check_no_deposed_writes`.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::audit::{check_no_deposed_writes, elected_writes};
use controllers::leaderelection::{CONTROLLER_MANAGER_LEASE, DEFAULT_NAMESPACE, ElectionConfig};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use live::controllers::elected::{Elected, run_elected};

const LEASE_MS: i64 = 3_000;
const DEADLINE_MS: i64 = 2_000;
const RETRY_MS: i64 = 200;

fn election(identity: &str) -> ElectionConfig {
    ElectionConfig {
        namespace: DEFAULT_NAMESPACE.into(),
        name: CONTROLLER_MANAGER_LEASE.into(),
        identity: identity.into(),
        lease_duration_ms: Duration::from_millis(LEASE_MS as u64),
        renew_deadline_ms: Duration::from_millis(DEADLINE_MS as u64),
        retry_period_ms: Duration::from_millis(RETRY_MS as u64),
        seed: identity.len() as u64,
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(CONTROLLER_MANAGER_LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controller_managers_one_acts_and_a_follower_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = apiserver::Config {
        advertise_address: addr,
        audit_log_path: Some(audit.clone()),
        ..Default::default()
    };
    let store: store::SharedStore = Arc::new(store::MemStore::default());
    let server = apiserver::Server::new(store, cfg).await.unwrap();
    tokio::spawn(server.serve(listener));
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config.clone()).unwrap();

    let mut managers = BTreeMap::new();
    for id in ["le-a", "le-b", "le-c"] {
        let elected = Elected {
            election: election(id),
            component: "kube-controller-manager",
            event_source: "kube-controller-manager",
            build: Box::new(|| {
                vec![
                    Box::new(controllers::serviceaccounts::ServiceAccountsController::new())
                        as Box<dyn controllers::Controller>,
                ]
            }),
        };
        managers.insert(
            id.to_string(),
            tokio::spawn(run_elected(config.clone(), elected)),
        );
    }

    // Load: a namespace every 50 ms; the acting leader gives each its `default`
    // ServiceAccount (a controller write carrying its identity).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut created = Vec::new();
    let create_ns = |i: usize| {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": format!("le-ns-{i}")}}))
                .unwrap();
        let api = namespaces.clone();
        async move { api.create(&PostParams::default(), &ns).await.unwrap() }
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), DEFAULT_NAMESPACE);
    let started = Instant::now();
    let mut first = None;
    for i in 0..40 {
        create_ns(i).await;
        created.push(i);
        if first.is_none() {
            first = holder(&leases).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(30), "bounded");
    }
    let first = first.expect("a leader was elected");

    // Kill the leader (its elector, controllers and informers end with its task).
    managers.remove(&first).unwrap().abort();
    let killed = Instant::now();
    let mut second = None;
    for i in 40.. {
        create_ns(i).await;
        created.push(i);
        if second.is_none() {
            second = holder(&leases).await.filter(|h| *h != first);
            if second.is_some() {
                eprintln!("takeover {:?} after the kill", killed.elapsed());
            }
        }
        if (second.is_some() && i >= 100) || killed.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = second.expect("a follower took over within 30 s");
    assert_ne!(second, first);

    // The new leader's controllers act: every namespace gets its ServiceAccount.
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in &created {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &format!("le-ns-{i}"));
        while sas.get_opt("default").await.unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "le-ns-{i} never got its ServiceAccount"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let writes = elected_writes(&[&audit], "kube-controller-manager");
    let (checked, holders) = check_no_deposed_writes(&writes, LEASE_MS);
    // The holders include the two terms in order (a loaded machine may add a spurious change
    // of holder; the safety check above holds regardless), and the killed leader never
    // holds the lease after the follower took it.
    let i = holders
        .iter()
        .position(|h| *h == first)
        .expect("first term");
    let j = i
        + 1
        + holders[i + 1..]
            .iter()
            .position(|h| *h == second)
            .expect("{holders:?}");
    assert!(
        !holders[j..].contains(&first),
        "the killed leader came back: {holders:?}"
    );
    let by: BTreeMap<&str, usize> =
        writes
            .iter()
            .filter(|w| !w.election)
            .fold(BTreeMap::new(), |mut m, w| {
                *m.entry(w.identity.as_str()).or_default() += 1;
                m
            });
    assert!(by.get(first.as_str()).is_some_and(|n| *n > 0), "{by:?}");
    assert!(by.get(second.as_str()).is_some_and(|n| *n > 0), "{by:?}");
    assert!(
        by.keys().all(|id| holders.iter().any(|h| h == id)),
        "only leaders wrote: {by:?}"
    );
    assert!(checked >= created.len(), "{checked} writes checked");
    for (_, m) in managers {
        m.abort();
    }
}

/// The fence on the controllers' client: with the fence closed (not leading, or the last renew
/// older than the renew deadline) no write leaves the process, reads still do; opened, the
/// write lands and the audit log names the identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_fence_sends_no_write() {
    use live::controllers::fence::{self, Fence, mono_clock, user_agent};
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = apiserver::Config {
        advertise_address: addr,
        audit_log_path: Some(audit.clone()),
        ..Default::default()
    };
    let store: store::SharedStore = Arc::new(store::MemStore::default());
    tokio::spawn(
        apiserver::Server::new(store, cfg)
            .await
            .unwrap()
            .serve(listener),
    );
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let f = Fence::closed();
    let ua = user_agent("kube-controller-manager", "le-fenced", None);
    let client = fence::client(&config, &ua, f.clone()).unwrap();
    let ns = |name: &str| -> controllers::Action {
        let o: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        controllers::Action::Create(controllers::Object::Namespace(Arc::new(o)))
    };

    let refused = live::controllers::execute(&client, &ns("le-fenced-1")).await;
    assert!(
        matches!(&refused, Err(controllers::WriteError::Other(m)) if m.contains("not the leader")),
        "{refused:?}"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces.get_opt("le-fenced-1").await.unwrap().is_none(),
        "reads pass"
    );

    f.set(Some(mono_clock() + Duration::from_millis(60_000)));
    live::controllers::execute(&client, &ns("le-fenced-2"))
        .await
        .expect("open fence: the write is sent");
    f.set(Some(mono_clock()));
    assert!(
        live::controllers::execute(&client, &ns("le-fenced-3"))
            .await
            .is_err()
    );

    let writes = elected_writes(&[&audit], "kube-controller-manager");
    let what: Vec<(&str, &str)> = writes
        .iter()
        .map(|w| (w.identity.as_str(), w.what.as_str()))
        .collect();
    assert_eq!(what, [("le-fenced", "\"create\" \"/api/v1/namespaces?\"")]);
}
