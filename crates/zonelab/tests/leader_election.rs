//! Leader election of the controllers, in process: three elected controller-managers
//! (identities `le-a`, `le-b`, `le-c`) against one API server with an audit log. Only the
//! leader's controllers write; after the leader is killed a follower takes over; and the
//! audit log shows no write by a deposed leader after its lease expired.
//!
//! Start at [`three_controller_managers_one_acts_and_a_follower_takes_over`]; the audit-log
//! check is [`check_no_deposed_writes`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use controllers::leaderelection::{CONTROLLER_MANAGER_LEASE, DEFAULT_NAMESPACE, ElectionConfig};
use controllers::live::elected::{Elected, run_elected};
use controllers::live::fence::identity_of_user_agent;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::Value;

const LEASE_MS: i64 = 3_000;
const DEADLINE_MS: i64 = 2_000;
const RETRY_MS: i64 = 200;

/// One successful write from the audit log.
#[derive(Debug)]
struct Write {
    at: DateTime<Utc>,
    identity: String,
    what: String,
    election: bool,
}

/// The successful writes made by elected `component` (`kube-controller-manager`: its
/// User-Agent starts with it and names an identity), from one or more audit logs, in time
/// order.
fn elected_writes(logs: &[&Path], component: &str) -> Vec<Write> {
    let mut out = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let e: Value = serde_json::from_str(line).expect("audit line is JSON");
            let code = e["responseStatus"]["code"].as_u64().unwrap_or(0);
            let ua = e["userAgent"].as_str().unwrap_or("");
            let Some(identity) = identity_of_user_agent(ua) else {
                continue;
            };
            if !(200..300).contains(&code) || !ua.starts_with(&format!("{component}/")) {
                continue;
            }
            let at = e["stageTimestamp"].as_str().expect("stageTimestamp");
            out.push(Write {
                at: DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .with_timezone(&Utc),
                identity: identity.to_string(),
                what: format!("{} {}", e["verb"], e["requestURI"]),
                election: ua.contains("/leader-election "),
            });
        }
    }
    out.sort_by_key(|w| w.at);
    out
}

/// Every write of an elected component must come from the current holder of its Lease (the
/// identity of the last successful write to it: only the holder's election writes succeed)
/// and land before that holder's lease expired (its last successful renew + the lease
/// duration). Returns the number of controller writes checked and the holders in order.
fn check_no_deposed_writes(writes: &[Write], lease_ms: i64) -> (usize, Vec<String>) {
    let mut holder: Option<(&str, DateTime<Utc>)> = None;
    let mut holders: Vec<String> = Vec::new();
    let mut checked = 0;
    for w in writes {
        if w.election {
            holder = Some((&w.identity, w.at));
            if holders.last() != Some(&w.identity) {
                holders.push(w.identity.clone());
            }
            continue;
        }
        let (id, renewed) = holder.unwrap_or_else(|| panic!("write before any leader: {}", w.what));
        assert_eq!(
            w.identity, id,
            "a write by {} landed at {} while {id} held the lease: {}",
            w.identity, w.at, w.what
        );
        let expiry = renewed + chrono::Duration::milliseconds(lease_ms);
        assert!(
            w.at < expiry,
            "a write by {id} landed at {} after its lease expired ({expiry}): {}",
            w.at,
            w.what
        );
        checked += 1;
    }
    (checked, holders)
}

fn election(identity: &str) -> ElectionConfig {
    ElectionConfig {
        namespace: DEFAULT_NAMESPACE.into(),
        name: CONTROLLER_MANAGER_LEASE.into(),
        identity: identity.into(),
        lease_duration_ms: LEASE_MS,
        renew_deadline_ms: DEADLINE_MS,
        retry_period_ms: RETRY_MS,
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
    assert_eq!(holders[..2], [first.clone(), second.clone()], "{holders:?}");
    assert!(
        !holders[1..].contains(&first),
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
