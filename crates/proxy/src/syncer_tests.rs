//! Syncer behaviour in virtual time: pacing, full/partial choice, failures, stale deletes,
//! metrics.

use super::*;
use crate::apply::ApplyError;
use crate::fixtures::{ep, service, slice};
use crate::nft_state::NftState;

const P80: &[(&str, u16, &str)] = &[("p80", 80, "TCP")];
const T0: Moment = Moment::from_millis(1_700_000_000_000);

fn syncer(mode: ProxyMode) -> Syncer {
    let mut s = Syncer::new(SyncerConfig {
        mode,
        ..SyncerConfig::default()
    });
    s.handle_service(Change::Applied(&service("ns1", "svc1", "172.30.0.41", P80)));
    set_endpoint(&mut s, "10.0.1.1");
    s
}

/// `ns1/svc1`'s slice `a` now holds the one endpoint `ip`.
fn set_endpoint(s: &mut Syncer, ip: &str) {
    s.handle_slice(Change::Applied(&slice(
        "ns1",
        "svc1",
        "a",
        P80,
        vec![ep(ip)],
    )));
}

/// Polls, applies to `state` and reports success; returns the kind.
fn run(s: &mut Syncer, state: &mut NftState, now: Moment) -> Option<SyncKind> {
    let tx = s.poll_transaction(now)?;
    state.apply(&tx.text).expect("transaction applies");
    s.handle_applied(Ok(()), now);
    Some(tx.kind)
}

#[test]
fn waits_for_informers_then_full_syncs() {
    let mut s = syncer(ProxyMode::Nftables);
    assert!(s.poll_transaction(T0).is_none());
    assert_eq!(s.poll_timeout(), None);
    s.handle_initial_sync_done(T0);
    assert_eq!(s.poll_timeout(), Some(T0));
    let tx = s.poll_transaction(T0).expect("full sync");
    assert_eq!(tx.kind, SyncKind::Full);
    assert!(
        tx.text
            .starts_with("add table ip kube-proxy\ndelete table ip kube-proxy\n")
    );
    // One transaction in flight at a time.
    assert!(s.poll_transaction(T0).is_none());
    s.handle_applied(Ok(()), T0 + Duration::from_millis(20));
    assert_eq!(s.metrics().full_sync_duration.count(), 1);
    // No periodic sync at --sync-period: the runner's max interval is FullSyncPeriod (1 h).
    assert_eq!(
        s.poll_timeout(),
        Some(T0 + Duration::from_millis(20) + FULL_SYNC_PERIOD_MS)
    );
}

#[test]
fn min_sync_period_counts_from_the_end_of_the_previous_sync_without_burst() {
    let mut s = syncer(ProxyMode::Nftables);
    let mut st = NftState::default();
    s.handle_initial_sync_done(T0);
    let tx = s.poll_transaction(T0).expect("first sync at once");
    st.apply(&tx.text).expect("applies");
    s.handle_applied(Ok(()), T0 + Duration::from_millis(300));
    // A change 100 ms after the sync ended waits for min-sync-period from the END (T0+1300),
    // not from the start (T0+1000), and there is no second token to spend at once.
    set_endpoint(&mut s, "10.0.1.2");
    assert!(
        s.poll_transaction(T0 + Duration::from_millis(400))
            .is_none()
    );
    assert!(
        s.poll_transaction(T0 + Duration::from_millis(1_000))
            .is_none()
    );
    assert_eq!(s.poll_timeout(), Some(T0 + Duration::from_millis(1_300)));
    assert_eq!(
        run(&mut s, &mut st, T0 + Duration::from_millis(1_300)),
        Some(SyncKind::Partial)
    );
    // Again: a change right after waits one full period.
    set_endpoint(&mut s, "10.0.1.3");
    assert!(
        s.poll_transaction(T0 + Duration::from_millis(1_400))
            .is_none()
    );
    assert_eq!(s.poll_timeout(), Some(T0 + Duration::from_millis(2_300)));
}

#[test]
fn failure_forces_full_sync_after_sync_period_or_next_change() {
    let mut s = syncer(ProxyMode::Nftables);
    s.handle_initial_sync_done(T0);
    let _ = s.poll_transaction(T0).expect("full");
    s.handle_applied(
        Err(ApplyError::Injected("boom".into())),
        T0 + Duration::from_millis(10),
    );
    assert_eq!(s.metrics().sync_failures_total, 1);
    assert!(
        s.render_metrics()
            .contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1\n")
    );
    // Upstream: the retry timer fires syncPeriod after the failed run ended.
    assert!(
        s.poll_transaction(T0 + Duration::from_millis(1_010))
            .is_none()
    );
    assert_eq!(
        s.poll_timeout(),
        Some(T0 + Duration::from_millis(10) + DEFAULT_SYNC_PERIOD_MS)
    );
    let tx = s
        .poll_transaction(T0 + Duration::from_millis(10) + DEFAULT_SYNC_PERIOD_MS)
        .expect("retry");
    assert_eq!(tx.kind, SyncKind::Full);
    s.handle_applied(Ok(()), T0 + Duration::from_millis(40_000));
    set_endpoint(&mut s, "10.0.1.9");
    assert_eq!(
        s.poll_transaction(T0 + Duration::from_millis(41_000))
            .map(|t| t.kind),
        Some(SyncKind::Partial)
    );
    // ...but a change brings the (full) retry forward, once min-sync-period has passed.
    s.handle_applied(
        Err(ApplyError::Injected("boom".into())),
        T0 + Duration::from_millis(41_000),
    );
    set_endpoint(&mut s, "10.0.1.8");
    assert!(
        s.poll_transaction(T0 + Duration::from_millis(41_500))
            .is_none()
    );
    assert_eq!(
        s.poll_transaction(T0 + Duration::from_millis(42_000))
            .map(|t| t.kind),
        Some(SyncKind::Full)
    );
}

#[test]
fn stale_chains_deleted_in_a_separate_transaction_after_one_second() {
    let mut s = syncer(ProxyMode::Nftables);
    let mut st = NftState::default();
    s.handle_initial_sync_done(T0);
    run(&mut s, &mut st, T0);
    set_endpoint(&mut s, "10.0.1.2");
    run(&mut s, &mut st, T0 + Duration::from_millis(1_000));
    let old = "endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80";
    assert!(st.has_chain(old));
    assert_eq!(s.poll_timeout(), Some(T0 + Duration::from_millis(2_000)));
    let tx = s
        .poll_transaction(T0 + Duration::from_millis(2_000))
        .expect("stale delete");
    assert_eq!(tx.kind, SyncKind::StaleDelete);
    assert_eq!(tx.text, format!("delete chain ip kube-proxy {old}\n"));
    st.apply(&tx.text).expect("apply");
    s.handle_applied(Ok(()), T0 + Duration::from_millis(2_000));
    assert!(!st.has_chain(old));
}

#[test]
fn no_sync_at_sync_period_and_the_hourly_one_is_full() {
    for mode in [ProxyMode::Nftables, ProxyMode::Iptables] {
        let mut s = syncer(mode);
        s.handle_initial_sync_done(T0);
        let _ = s.poll_transaction(T0).expect("full");
        s.handle_applied(Ok(()), T0);
        assert!(
            s.poll_transaction(T0 + DEFAULT_SYNC_PERIOD_MS).is_none(),
            "{mode:?}"
        );
        assert_eq!(s.poll_timeout(), Some(T0 + FULL_SYNC_PERIOD_MS));
        let tx = s
            .poll_transaction(T0 + FULL_SYNC_PERIOD_MS)
            .expect("hourly sync");
        assert_eq!(tx.kind, SyncKind::Full, "{mode:?}");
    }
}

#[test]
fn network_programming_latency_from_trigger_annotation() {
    let mut s = syncer(ProxyMode::Nftables);
    s.handle_initial_sync_done(T0);
    let _ = s.poll_transaction(T0).expect("full");
    s.handle_applied(Ok(()), T0);
    let mut sl = slice("ns1", "svc1", "a", P80, vec![ep("10.0.1.2")]);
    let trigger = k8s_openapi::jiff::Timestamp::from_millisecond(T0.as_millis() + 500)
        .expect("ts")
        .to_string();
    sl.metadata.annotations =
        Some([(crate::tracker::TRIGGER_TIME_ANNOTATION.to_string(), trigger)].into());
    s.handle_slice(Change::Applied(&sl));
    let _ = s
        .poll_transaction(T0 + Duration::from_millis(2_000))
        .expect("partial");
    s.handle_applied(Ok(()), T0 + Duration::from_millis(2_500));
    let h = &s.metrics().network_programming;
    assert_eq!(h.count(), 1);
    assert!((h.sum() - 2.0).abs() < 1e-9);
    assert!(
        s.render_metrics()
            .contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"2\"} 1\n")
    );
}

#[test]
fn kernel_state_after_many_partial_syncs_equals_a_fresh_full_sync() {
    let mut s = syncer(ProxyMode::Nftables);
    let mut st = NftState::default();
    s.handle_initial_sync_done(T0);
    let mut now = T0;
    run(&mut s, &mut st, now);
    for i in 0..20u8 {
        now += Duration::from_millis(1_000);
        let name = format!("svc{}", i % 5);
        s.handle_service(Change::Applied(&service(
            "ns",
            &name,
            &format!("172.30.1.{}", i % 5 + 1),
            P80,
        )));
        let eps = (0..(i % 4)).map(|k| ep(&format!("10.1.{i}.{k}"))).collect();
        s.handle_slice(Change::Applied(&slice("ns", &name, "a", P80, eps)));
        if i % 7 == 6 {
            s.handle_service(Change::Deleted(&service("ns", "svc1", "172.30.1.2", P80)));
        }
        while run(&mut s, &mut st, now).is_some() {}
    }
    now += Duration::from_millis(5_000);
    while run(&mut s, &mut st, now).is_some() {}
    let mut fresh = NftState::default();
    let mut r = crate::nft::NftRenderer::new(NftConfig::default());
    fresh.apply(&r.render_full(s.plan())).expect("apply");
    assert_eq!(st.dump(), fresh.dump());
}

#[test]
fn shared_map_layout_through_the_syncer_never_deletes_the_table_after_start() {
    let mut s = Syncer::new(SyncerConfig {
        nft: crate::nft::NftConfig {
            layout: crate::nft::NftLayout::SharedMap,
            ..crate::nft::NftConfig::default()
        },
        ..SyncerConfig::default()
    });
    s.handle_service(Change::Applied(&service("ns1", "svc1", "172.30.0.41", P80)));
    set_endpoint(&mut s, "10.0.1.1");
    let mut state = NftState::default();
    s.handle_initial_sync_done(T0);
    assert_eq!(run(&mut s, &mut state, T0), Some(SyncKind::Full));
    assert!(state.has_chain("dispatch-tcp-1"));
    // An endpoint change: element updates only.
    set_endpoint(&mut s, "10.0.1.2");
    let tx = s
        .poll_transaction(T0 + Duration::from_millis(1_000))
        .expect("partial sync");
    assert_eq!(tx.kind, SyncKind::Partial);
    assert!(
        tx.text.lines().all(|l| l.contains(" element ")),
        "{}",
        tx.text
    );
    state.apply(&tx.text).expect("applies");
    s.handle_applied(Ok(()), T0 + Duration::from_millis(1_000));
    // A failed sync forces a full sync: over the kept table, no `delete table`.
    set_endpoint(&mut s, "10.0.1.3");
    let tx = s
        .poll_transaction(T0 + Duration::from_millis(2_000))
        .expect("partial sync");
    s.handle_applied(
        Err(ApplyError::Injected("test".into())),
        T0 + Duration::from_millis(2_000),
    );
    // Retried after --sync-period.
    let retry = T0 + Duration::from_millis(2_000) + DEFAULT_SYNC_PERIOD_MS;
    let full = s.poll_transaction(retry).expect("full resync");
    assert_eq!(full.kind, SyncKind::Full);
    assert!(!full.text.contains("delete table"), "{}", full.text);
    drop(tx);
    state.apply(&full.text).expect("applies");
    s.handle_applied(Ok(()), retry);
    let dump = state.dump().join("\n");
    assert!(
        dump.contains("endpoints-tcp { 172.30.0.41 . 80 . 0 : 10.0.1.3 . 80 }"),
        "{dump}"
    );
    assert!(!dump.contains("10.0.1.2"), "{dump}");
}
