//! NodeProxy in virtual time: it paces exactly like the live Syncer, programs the shared
//! model's version only once a sync is applied, keeps its old rules on a failed apply, and
//! nodes at different versions or with different names answer differently.

use std::net::Ipv4Addr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::apply::ApplyError;
use crate::fixtures::{ep, ep_cond, service, service_with, slice};
use crate::plan::PlanConfig;
use crate::syncer::{Change, ProxyMode, Syncer, SyncerConfig};

const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];
const T0: Moment = Moment::from_millis(1_700_000_000_000);

fn cip() -> Ipv4Addr {
    "172.30.0.41".parse().expect("ip")
}

fn node(name: &str) -> NodeProxy {
    NodeProxy::new(
        NodeInputs {
            node_name: name.to_string(),
            node_ip: None,
            zone: None,
            service_cidrs: vec![Cidr::parse("172.30.0.0/16").expect("cidr")],
        },
        PacerConfig::default(),
    )
}

fn set_endpoints(model: &mut SharedModel, ips: &[&str]) -> ModelChange {
    let eps = ips.iter().map(|ip| ep(ip)).collect();
    model
        .handle_slice(Change::Applied(&slice("ns1", "svc1", "a", P80, eps)))
        .expect("the slice changes the model")
}

fn model_with_service() -> (SharedModel, ModelChange) {
    let mut model = SharedModel::new();
    model.handle_service(Change::Applied(&service("ns1", "svc1", "172.30.0.41", P80)));
    let change = set_endpoints(&mut model, &["10.0.1.1"]);
    (model, change)
}

fn ips(view: &NodeView<'_>) -> Vec<String> {
    match view.lookup(cip(), Protocol::Tcp, 80) {
        Candidates::Endpoints(eps) => eps.iter().map(|e| e.ip.to_string()).collect(),
        other => vec![format!("{other:?}")],
    }
}

/// Polls and applies every due sync at `now` with `result`.
fn drain(n: &mut NodeProxy, model: &SharedModel, now: Moment, ok: bool) -> Vec<SyncKind> {
    let mut kinds = Vec::new();
    while let Some(tx) = n.poll_transaction(now, model) {
        kinds.push(tx.kind);
        let result = if ok {
            Ok(())
        } else {
            Err(ApplyError::Injected("injected".into()))
        };
        n.handle_applied(result, now);
    }
    kinds
}

#[test]
fn programs_the_version_only_once_applied() {
    let (mut model, change) = model_with_service();
    let mut n = node("node-a");
    n.handle_change(&change);
    assert!(
        n.poll_transaction(T0, &model).is_none(),
        "informers not synced"
    );
    assert!(n.view().is_none());
    n.handle_initial_sync_done(T0);
    let tx = n.poll_transaction(T0, &model).expect("first sync");
    assert_eq!((tx.kind, tx.version()), (SyncKind::Full, model.version()));
    assert!(n.view().is_none(), "in flight is not programmed");
    n.handle_applied(Ok(()), T0 + Duration::from_millis(5));
    assert_eq!(n.programmed_version(), Some(model.version()));
    assert_eq!(ips(&n.view().expect("view")), ["10.0.1.1"]);
    // A change: due --min-sync-period after the last sync ended; a partial sync.
    let change = set_endpoints(&mut model, &["10.0.1.2"]);
    n.handle_change(&change);
    assert_eq!(
        n.poll_timeout(),
        Some(T0 + Duration::from_millis(5) + Duration::from_millis(1_000))
    );
    assert!(
        n.poll_transaction(T0 + Duration::from_millis(500), &model)
            .is_none()
    );
    let tx = n
        .poll_transaction(T0 + Duration::from_millis(1_005), &model)
        .expect("partial");
    assert_eq!(tx.kind, SyncKind::Partial);
    assert_eq!(ips(&n.view().expect("view")), ["10.0.1.1"]);
    n.handle_applied(Ok(()), T0 + Duration::from_millis(1_010));
    assert_eq!(ips(&n.view().expect("view")), ["10.0.1.2"]);
    assert_eq!(n.metrics().partial_sync_duration.count(), 1);
}

#[test]
fn a_failed_apply_keeps_the_old_rules_and_retries_full() {
    let (mut model, change) = model_with_service();
    let mut n = node("node-a");
    n.handle_change(&change);
    n.handle_initial_sync_done(T0);
    drain(&mut n, &model, T0, true);
    let v1 = n.programmed_version();
    let change = set_endpoints(&mut model, &["10.0.1.3"]);
    n.handle_change(&change);
    assert_eq!(
        drain(&mut n, &model, T0 + Duration::from_millis(1_000), false),
        [SyncKind::Partial]
    );
    assert_eq!(n.programmed_version(), v1, "old rules stay");
    assert_eq!(n.metrics().sync_failures_total, 1);
    // Retried --sync-period later, full.
    assert_eq!(
        n.poll_timeout(),
        Some(T0 + Duration::from_millis(1_000) + Duration::from_millis(30_000))
    );
    assert_eq!(
        drain(&mut n, &model, T0 + Duration::from_millis(31_000), true),
        [SyncKind::Full]
    );
    assert_eq!(ips(&n.view().expect("view")), ["10.0.1.3"]);
}

#[test]
fn a_sync_at_an_earlier_version_programs_that_version() {
    let (mut model, change) = model_with_service();
    let mut n = node("node-a");
    n.handle_change(&change);
    n.handle_initial_sync_done(T0);
    let delivered = model.snapshot();
    // The model moves on before this node hears of it: the node programs what it was told.
    set_endpoints(&mut model, &["10.0.1.9"]);
    let tx = n
        .poll_transaction_at(T0, &model, delivered.clone())
        .expect("first sync");
    assert_eq!(tx.version(), delivered.version());
    n.handle_applied(Ok(()), T0 + Duration::from_millis(5));
    assert_eq!(n.programmed_version(), Some(model.version() - 1));
    assert_eq!(ips(&n.view().expect("view")), ["10.0.1.1"]);
}

#[test]
fn nodes_at_different_versions_answer_from_their_own_snapshot() {
    let (mut model, change) = model_with_service();
    let (mut a, mut b) = (node("node-a"), node("node-b"));
    for n in [&mut a, &mut b] {
        n.handle_change(&change);
        n.handle_initial_sync_done(T0);
        drain(n, &model, T0, true);
    }
    let change = set_endpoints(&mut model, &[]);
    a.handle_change(&change);
    b.handle_change(&change);
    drain(&mut a, &model, T0 + Duration::from_millis(1_000), true);
    // b has not synced yet: it still DNATs to the old endpoint; a rejects.
    assert_eq!(ips(&b.view().expect("b")), ["10.0.1.1"]);
    assert_eq!(
        a.view().expect("a").lookup(cip(), Protocol::Tcp, 80),
        Candidates::NoEndpoints(NoEndpoints::Reject)
    );
    assert_eq!(a.seen_version(), model.version());
    assert_eq!(b.programmed_version(), Some(model.version() - 1));
}

#[test]
fn local_internal_policy_depends_on_the_node() {
    let mut model = SharedModel::new();
    let svc = service_with(
        "ns1",
        "svc1",
        "172.30.0.41",
        P80,
        serde_json::json!({"internalTrafficPolicy": "Local"}),
    );
    model.handle_service(Change::Applied(&svc));
    let eps = vec![
        ep_cond("10.0.1.1", true, true, false, Some("node-a")),
        ep_cond("10.0.1.2", false, true, true, Some("node-b")),
    ];
    model.handle_slice(Change::Applied(&slice("ns1", "svc1", "a", P80, eps)));
    let snap = model.snapshot();
    let look = |name: &str| {
        let inputs = node(name).inputs().clone();
        let view = NodeView::new(&snap, &inputs);
        format!("{:?}", ips(&view))
    };
    assert_eq!(look("node-a"), r#"["10.0.1.1"]"#);
    // node-b has only a terminating, serving endpoint: the fallback uses it.
    assert_eq!(look("node-b"), r#"["10.0.1.2"]"#);
    assert_eq!(look("node-c"), r#"["NoEndpoints(Drop)"]"#);
}

/// The same events at the same times with the same apply results (rule syncs; stale-chain
/// deletes always succeed): the live Syncer
/// (nftables, its own tracker, rule text) and a NodeProxy over the shared model start their
/// rule syncs at the same times with the same kinds.
#[test]
fn paces_like_the_live_syncer() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let mut syncer = Syncer::new(SyncerConfig {
        mode: ProxyMode::Nftables,
        plan: PlanConfig {
            node_name: Some("node-a".into()),
            zone: None,
        },
        ..SyncerConfig::default()
    });
    let mut model = SharedModel::new();
    let mut n = node("node-a");
    let mut now = T0;
    let (mut live, mut sim) = (Vec::new(), Vec::new());
    for step in 0..400 {
        now += Duration::from_millis(rng.random_range(0..1_500));
        if rng.random_bool(0.5) {
            let i = rng.random_range(0..4);
            let name = format!("svc{i}");
            // svc3 keeps ClusterIP traffic on the node (Local): changes to node-b's
            // endpoints leave node-a's rules as they are.
            let policy = if i == 3 { "Local" } else { "Cluster" };
            let svc = service_with(
                "ns1",
                &name,
                &format!("172.30.0.{}", i + 1),
                P80,
                serde_json::json!({"internalTrafficPolicy": policy}),
            );
            let eps = (0..rng.random_range(0..3))
                .map(|k| {
                    let ip = format!("10.0.{i}.{}", k + rng.random_range(1..4));
                    let on = if rng.random_bool(0.7) {
                        "node-b"
                    } else {
                        "node-a"
                    };
                    ep_cond(&ip, rng.random_bool(0.8), true, false, Some(on))
                })
                .collect();
            let s = slice("ns1", &name, "a", P80, eps);
            syncer.handle_service(Change::Applied(&svc));
            syncer.handle_slice(Change::Applied(&s));
            for c in [
                model.handle_service(Change::Applied(&svc)),
                model.handle_slice(Change::Applied(&s)),
            ]
            .into_iter()
            .flatten()
            {
                n.handle_change(&c);
            }
        }
        if step == 3 {
            syncer.handle_initial_sync_done(now);
            n.handle_initial_sync_done(now);
        }
        let ok = rng.random_bool(0.85);
        let result = || {
            if ok {
                Ok(())
            } else {
                Err(ApplyError::Injected("injected".into()))
            }
        };
        while let Some(tx) = syncer.poll_transaction(now) {
            // Stale-chain deletes are nftables' own (the simulator has none): they succeed.
            if tx.kind == SyncKind::StaleDelete {
                syncer.handle_applied(Ok(()), now);
                continue;
            }
            live.push((now, tx.kind));
            syncer.handle_applied(result(), now);
        }
        while let Some(tx) = n.poll_transaction(now, &model) {
            sim.push((now, tx.kind));
            n.handle_applied(result(), now);
        }
    }
    assert!(live.len() > 50, "the run synced: {}", live.len());
    assert_eq!(live, sim);
    // Both finished the same syncs with nothing to apply (counted as partial syncs).
    let partials = |m: &ProxyMetrics| m.partial_sync_duration.count();
    assert_eq!(partials(syncer.metrics()), partials(n.metrics()));
    let applied = live.iter().filter(|(_, k)| *k == SyncKind::Partial).count() as u64;
    assert!(
        partials(n.metrics()) > applied,
        "some syncs had nothing to apply"
    );
    assert_eq!(n.programmed_version(), Some(model.version()));
}

/// A change that leaves this node's rules as they are (another node's endpoint of a Local
/// internal policy) finishes at once with nothing to apply, as the live syncer's empty
/// partial sync; the node is then at the new version.
#[test]
fn a_change_to_another_nodes_local_endpoints_applies_nothing() {
    let mut model = SharedModel::new();
    let svc = service_with(
        "ns1",
        "svc1",
        "172.30.0.41",
        P80,
        serde_json::json!({"internalTrafficPolicy": "Local"}),
    );
    let set = |model: &mut SharedModel, b_ip: &str| {
        let eps = vec![
            ep_cond("10.0.1.1", true, true, false, Some("node-a")),
            ep_cond(b_ip, true, true, false, Some("node-b")),
        ];
        model.handle_slice(Change::Applied(&slice("ns1", "svc1", "a", P80, eps)))
    };
    let mut changes: Vec<ModelChange> = model
        .handle_service(Change::Applied(&svc))
        .into_iter()
        .collect();
    changes.extend(set(&mut model, "10.0.2.1"));
    let (mut a, mut b) = (node("node-a"), node("node-b"));
    for n in [&mut a, &mut b] {
        for c in &changes {
            n.handle_change(c);
        }
        n.handle_initial_sync_done(T0);
        assert_eq!(drain(n, &model, T0, true), [SyncKind::Full]);
    }
    let change = set(&mut model, "10.0.2.2").expect("node-b's endpoint moved");
    a.handle_change(&change);
    b.handle_change(&change);
    assert!(
        a.poll_transaction(T0 + Duration::from_millis(1_000), &model)
            .is_none(),
        "nothing to apply"
    );
    assert_eq!(a.programmed_version(), Some(model.version()));
    assert_eq!(a.metrics().partial_sync_duration.count(), 1);
    assert_eq!(
        drain(&mut b, &model, T0 + Duration::from_millis(1_000), true),
        [SyncKind::Partial]
    );
    assert_eq!(ips(&b.view().expect("b")), ["10.0.2.2"]);
}
