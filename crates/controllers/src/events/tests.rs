//! The recorder in virtual time: dedup counts, coalescing, aggregation, spam filter, bounds.

use std::time::Duration;

use super::recorder::*;
use super::*;
use crate::Moment;
use k8s_openapi::api::core::v1::ObjectReference;

const T0: Moment = Moment::from_millis(1_700_000_000_000);

fn rec(name: &str, reason: &'static str, message: &str) -> EventRecord {
    let involved = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some("default".into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        ..ObjectReference::default()
    };
    EventRecord::new(
        source::KUBELET,
        involved,
        EventType::Warning,
        reason,
        message.into(),
        T0,
    )
    .on_host("n1")
}

/// Drain every due write at `now`, answering each `Ok`; returns them.
fn drain(r: &mut EventRecorder, now: Moment) -> Vec<EventWrite> {
    let mut out = Vec::new();
    while let Some(w) = r.poll_write(now) {
        r.handle_write_result(w.id(), WriteOutcome::Ok, now);
        out.push(w);
    }
    out
}

fn count_of(w: &EventWrite) -> i64 {
    match w {
        EventWrite::Create { event, .. } => i64::from(event.count.unwrap_or(0)),
        EventWrite::Patch { patch, .. } => patch["count"].as_i64().unwrap_or(0),
    }
}

fn message_of(w: &EventWrite) -> String {
    match w {
        EventWrite::Create { event, .. } => event.message.clone().unwrap_or_default(),
        EventWrite::Patch { patch, .. } => patch["message"].as_str().unwrap_or("").to_string(),
    }
}

#[test]
fn first_occurrence_is_created_at_once_with_upstream_fields() {
    let mut r = EventRecorder::new(RecorderConfig::default());
    r.record(rec("web-1", "Unhealthy", "Readiness probe failed: x"), T0);
    let w = r.poll_write(T0).expect("a create");
    let EventWrite::Create { event, .. } = &w else {
        panic!("{w:?}")
    };
    assert!(
        event
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("web-1.")
    );
    assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(event.count, Some(1));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reporting_component.as_deref(), Some("kubelet"));
    assert_eq!(event.reporting_instance.as_deref(), Some("n1"));
    let src = event.source.as_ref().unwrap();
    assert_eq!(
        (src.component.as_deref(), src.host.as_deref()),
        (Some("kubelet"), Some("n1"))
    );
    assert_eq!(event.first_timestamp, event.last_timestamp);
    assert_eq!(r.poll_write(T0), None);
}

#[test]
fn repeats_coalesce_into_one_update_per_flush_interval() {
    let mut r = EventRecorder::new(RecorderConfig::default());
    r.record(rec("p", "Unhealthy", "m"), T0);
    assert_eq!(drain(&mut r, T0).len(), 1);
    for i in 1..10_000 {
        r.record(
            rec("p", "Unhealthy", "m"),
            T0 + Duration::from_millis(i / 100),
        );
    }
    // Nothing before the flush interval; then one patch carrying every occurrence.
    assert_eq!(
        r.poll_write(T0 + FLUSH_INTERVAL_MS - Duration::from_millis(1)),
        None
    );
    let writes = drain(&mut r, T0 + FLUSH_INTERVAL_MS);
    assert_eq!(writes.len(), 1);
    assert!(matches!(writes[0], EventWrite::Patch { .. }));
    assert_eq!(count_of(&writes[0]), 10_000);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.len(), 1);
}

#[test]
fn repeats_while_a_write_is_in_flight_follow_it() {
    let mut r = EventRecorder::new(RecorderConfig::default());
    r.record(rec("p", "Killing", "Stopping container c"), T0);
    let w = r.poll_write(T0).unwrap();
    r.record(
        rec("p", "Killing", "Stopping container c"),
        T0 + Duration::from_millis(5),
    );
    assert_eq!(
        r.poll_write(T0 + Duration::from_millis(10)),
        None,
        "one write per event in flight"
    );
    r.handle_write_result(w.id(), WriteOutcome::Ok, T0 + Duration::from_millis(20));
    let next = drain(&mut r, T0 + Duration::from_millis(20) + FLUSH_INTERVAL_MS);
    assert_eq!(next.len(), 1);
    assert_eq!(count_of(&next[0]), 2);
}

#[test]
fn a_vanished_event_is_created_again_with_its_count() {
    let mut r = EventRecorder::new(RecorderConfig::default());
    r.record(rec("p", "Started", "Started container c"), T0);
    drain(&mut r, T0);
    r.record(
        rec("p", "Started", "Started container c"),
        T0 + Duration::from_millis(1),
    );
    let t = T0 + FLUSH_INTERVAL_MS + Duration::from_millis(1);
    let patch = r.poll_write(t).unwrap();
    r.handle_write_result(patch.id(), WriteOutcome::NotFound, t);
    let again = r.poll_write(t).unwrap();
    assert!(matches!(again, EventWrite::Create { .. }));
    assert_eq!(count_of(&again), 2);
}

#[test]
fn similar_events_are_combined_after_ten_distinct_messages() {
    let mut r = EventRecorder::new(RecorderConfig::default());
    let mut writes = Vec::new();
    for i in 0..12 {
        r.record(
            rec("p", "FailedScheduling", &format!("try {i}")),
            T0 + Duration::from_millis(i),
        );
        writes.extend(drain(&mut r, T0 + Duration::from_millis(i)));
    }
    // Nine distinct events, then the tenth and later go to one combined event.
    let creates: Vec<_> = writes
        .iter()
        .filter(|w| matches!(w, EventWrite::Create { .. }))
        .collect();
    assert_eq!(creates.len(), 10, "{writes:#?}");
    assert_eq!(message_of(creates[9]), format!("{COMBINED_PREFIX}try 9"));
    let later = drain(&mut r, T0 + Duration::from_millis(12) + FLUSH_INTERVAL_MS);
    assert_eq!(later.len(), 1);
    assert_eq!(count_of(&later[0]), 3);
    assert_eq!(message_of(&later[0]), format!("{COMBINED_PREFIX}try 11"));
}

#[test]
fn aggregation_resets_after_the_interval() {
    let mut r = EventRecorder::new(RecorderConfig::default());
    for i in 0..9 {
        r.record(rec("p", "FailedScheduling", &format!("m{i}")), T0);
    }
    assert_eq!(drain(&mut r, T0).len(), 9);
    // The tenth distinct message comes after the window closed: written as itself.
    let later = T0 + AGGREGATE_INTERVAL_MS + Duration::from_millis(1);
    r.record(rec("p", "FailedScheduling", "m9"), later);
    let w = drain(&mut r, later);
    assert_eq!(w.len(), 1);
    assert_eq!(message_of(&w[0]), "m9");
}

#[test]
fn spam_filter_allows_a_burst_of_25_writes_per_object_then_one_per_five_minutes() {
    let mut r = EventRecorder::new(RecorderConfig::default());
    // Thirty distinct reasons about one object (reasons differ, so no aggregation).
    const REASONS: [&str; 30] = [
        "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R11", "R12", "R13",
        "R14", "R15", "R16", "R17", "R18", "R19", "R20", "R21", "R22", "R23", "R24", "R25", "R26",
        "R27", "R28", "R29",
    ];
    for reason in REASONS {
        r.record(rec("p", reason, "m"), T0);
    }
    assert_eq!(drain(&mut r, T0).len(), 25);
    // The rest wait for tokens: one every 5 minutes, none lost.
    assert_eq!(r.poll_timeout(), Some(T0 + SPAM_REFILL_MS));
    assert_eq!(
        drain(&mut r, T0 + SPAM_REFILL_MS - Duration::from_millis(1)).len(),
        0
    );
    assert_eq!(drain(&mut r, T0 + SPAM_REFILL_MS).len(), 1);
    assert_eq!(drain(&mut r, T0 + 5 * SPAM_REFILL_MS).len(), 4);
    // Another object has its own bucket.
    r.record(rec("q", "R0", "m"), T0 + 5 * SPAM_REFILL_MS);
    assert_eq!(drain(&mut r, T0 + 5 * SPAM_REFILL_MS).len(), 1);
}

#[test]
fn memory_is_bounded_by_the_lru_caches() {
    let cfg = RecorderConfig {
        lru_entries: 64,
        ..RecorderConfig::default()
    };
    let mut r = EventRecorder::new(cfg);
    for i in 0..1_000 {
        r.record(
            rec(&format!("p{i}"), "Scheduled", "m"),
            T0 + Duration::from_millis(i),
        );
        drain(&mut r, T0 + Duration::from_millis(i));
    }
    let (aggs, logged, buckets) = r.cache_sizes();
    assert!(
        aggs <= 64 && logged <= 64 && buckets <= 64,
        "{:?}",
        r.cache_sizes()
    );
    // Unwritten occurrences evicted from a full cache are counted as dropped.
    let mut r = EventRecorder::new(RecorderConfig {
        lru_entries: 4,
        ..RecorderConfig::default()
    });
    for i in 0..10 {
        r.record(rec(&format!("p{i}"), "Scheduled", "m"), T0);
    }
    assert_eq!(r.len(), 4);
    assert_eq!(r.dropped(), 6);
    assert_eq!(drain(&mut r, T0).len(), 4);
}

#[test]
fn unanswered_writes_retry_then_give_up_and_rejected_ones_are_dropped() {
    let mut r = EventRecorder::new(RecorderConfig::default());
    r.record(rec("p", "Started", "m"), T0);
    let mut now = T0;
    for _ in 0..MAX_TRIES {
        let w = r.poll_write(now).expect("retried");
        r.handle_write_result(w.id(), WriteOutcome::Unavailable("down".into()), now);
        now += RETRY_DELAY_MS;
    }
    assert_eq!(r.poll_write(now + 10 * RETRY_DELAY_MS), None);
    assert!(r.is_empty());
    r.record(rec("p", "Started", "m2"), now);
    let w = r.poll_write(now).unwrap();
    r.handle_write_result(w.id(), WriteOutcome::Rejected("invalid".into()), now);
    assert!(r.is_empty());
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn names_are_unique_within_a_millisecond() {
    let mut r = EventRecorder::new(RecorderConfig::default());
    r.record(rec("rs", "SuccessfulCreate", "Created pod: a"), T0);
    r.record(rec("rs", "SuccessfulCreate", "Created pod: b"), T0);
    let names: Vec<String> = drain(&mut r, T0)
        .iter()
        .map(|w| match w {
            EventWrite::Create { event, .. } => event.metadata.name.clone().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names.len(), 2);
    assert_ne!(names[0], names[1]);
}
