//! Crash safety: SIGKILL the server at random moments during concurrent writes; after each
//! restart every acknowledged write is there, no ClusterIP is held twice, and none leaked.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ServerProc;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const ROUNDS: usize = 22;
const WRITERS: usize = 8;
/// 10.0.0.0/24: 254 usable addresses, one held by the kubernetes Service.
const RANGE: &str = "10.0.0.0/24";
const USABLE: usize = 254;

#[derive(Default)]
struct Ledger {
    /// Acknowledged creates not (acknowledged) deleted: name -> clusterIP.
    alive: BTreeMap<String, String>,
    /// Acknowledged deletes.
    deleted: BTreeSet<String>,
    /// Requests sent but not (yet) answered, counted per name: two writers may race to
    /// delete the same Service.
    in_doubt: BTreeMap<String, usize>,
}

impl Ledger {
    fn start(&mut self, name: &str) {
        *self.in_doubt.entry(name.to_string()).or_default() += 1;
    }

    fn finish(&mut self, name: &str) {
        if let Some(n) = self.in_doubt.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                self.in_doubt.remove(name);
            }
        }
    }
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"suite": "crash"}},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}},
    }))
    .expect("service")
}

async fn writer(api: Api<Service>, ledger: Arc<Mutex<Ledger>>, round: usize, id: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for seq in 0.. {
        let victim = {
            let l = ledger.lock().unwrap();
            let busy = l.alive.len() > 120 || rng.random_bool(0.3);
            if busy && !l.alive.is_empty() {
                l.alive
                    .keys()
                    .nth(rng.random_range(0..l.alive.len()))
                    .cloned()
            } else {
                None
            }
        };
        match victim {
            Some(name) => {
                ledger.lock().unwrap().start(&name);
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        let mut l = ledger.lock().unwrap();
                        l.finish(&name);
                        l.alive.remove(&name);
                        l.deleted.insert(name);
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        // Another writer deleted it first.
                        ledger.lock().unwrap().finish(&name);
                    }
                    Err(_) => return,
                }
            }
            None => {
                let name = format!("r{round}-w{id}-{seq}");
                ledger.lock().unwrap().start(&name);
                match api.create(&PostParams::default(), &service(&name)).await {
                    Ok(svc) => {
                        let ip = svc.spec.and_then(|s| s.cluster_ip).expect("clusterIP");
                        let mut l = ledger.lock().unwrap();
                        l.finish(&name);
                        l.alive.insert(name, ip);
                    }
                    Err(_) => return,
                }
            }
        }
    }
}

/// Check the server's state against the ledger and fold in-doubt writes into it.
async fn verify(api: &Api<Service>, ledger: &Mutex<Ledger>) {
    let list = api
        .list(&ListParams::default().labels("suite=crash"))
        .await
        .expect("list after restart");
    let stored: BTreeMap<String, String> = list
        .items
        .into_iter()
        .map(|s| {
            (
                s.metadata.name.unwrap_or_default(),
                s.spec.and_then(|x| x.cluster_ip).unwrap_or_default(),
            )
        })
        .collect();
    let mut l = ledger.lock().unwrap();
    for (name, ip) in &l.alive {
        if l.in_doubt.contains_key(name) {
            continue; // a delete of it was in flight
        }
        assert_eq!(
            stored.get(name),
            Some(ip),
            "acknowledged create of {name} lost or changed"
        );
    }
    for name in &l.deleted {
        assert!(
            !stored.contains_key(name),
            "acknowledged delete of {name} undone"
        );
    }
    for name in std::mem::take(&mut l.in_doubt).into_keys() {
        match stored.get(&name) {
            Some(ip) => {
                l.alive.insert(name, ip.clone());
            }
            None => {
                l.alive.remove(&name);
                l.deleted.insert(name);
            }
        }
    }
    for name in stored.keys() {
        assert!(
            l.alive.contains_key(name),
            "{name} exists but was never acknowledged nor in flight"
        );
    }
    let ips: BTreeSet<&String> = stored.values().collect();
    assert_eq!(
        ips.len(),
        stored.len(),
        "a ClusterIP is held by two Services"
    );
    assert!(
        !ips.contains(&"10.0.0.1".to_string()),
        "the kubernetes Service's IP was handed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for round in 0..ROUNDS {
        let mut server = ServerProc::start(dir.path(), &["--service-cluster-ip-range", RANGE]);
        let api: Api<Service> = Api::namespaced(
            kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap(),
            "default",
        );
        verify(&api, &ledger).await;
        let tasks: Vec<_> = (0..WRITERS)
            .map(|id| {
                tokio::spawn(writer(
                    api.clone(),
                    Arc::clone(&ledger),
                    round,
                    id,
                    rng.random(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
        server.kill();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    }
    // Final restart: state checks, then fill the range to prove no address leaked.
    let _server = ServerProc::start(dir.path(), &["--service-cluster-ip-range", RANGE]);
    let api: Api<Service> = Api::namespaced(
        kube::Client::try_from(kube::Config::new(_server.url().parse().unwrap())).unwrap(),
        "default",
    );
    verify(&api, &ledger).await;
    let existing = ledger.lock().unwrap().alive.len();
    let mut created = 0;
    loop {
        match api
            .create(&PostParams::default(), &service(&format!("fill-{created}")))
            .await
        {
            Ok(_) => created += 1,
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 500, "{e:?}");
                assert!(e.message.contains("range is full"), "{e:?}");
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(created <= USABLE, "more addresses than the range holds");
    }
    assert_eq!(
        existing + created + 1,
        USABLE,
        "addresses leaked (existing {existing}, created {created})"
    );
    let deleted = ledger.lock().unwrap().deleted.len();
    assert!(
        existing + deleted > 100,
        "the rounds did too little work to mean anything"
    );
}
