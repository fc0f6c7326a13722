//! The report's Kubernetes Events: one entry per Event object, and their timeline records.

use crate::timeline::{Event, EventKind};

#[test]
fn kube_events_are_one_entry_per_event_object_at_its_latest_count() {
    use crate::timeline::KubeEvent;
    let ke = |name: &str, reason: &str, count: i32, message: &str| KubeEvent {
        name: name.into(),
        type_: "Warning".into(),
        reason: reason.into(),
        object: "pod/web-1".into(),
        message: message.into(),
        source: "kubelet, n1".into(),
        count,
    };
    let events = vec![
        Event {
            at: 1_000.0,
            kind: EventKind::KubeEvent(ke("default/a", "Unhealthy", 1, "m1")),
        },
        Event {
            at: 2_000.0,
            kind: EventKind::KubeEvent(ke("default/b", "NodeNotReady", 1, "n")),
        },
        Event {
            at: 3_500.0,
            kind: EventKind::KubeEvent(ke("default/a", "Unhealthy", 7, "m2")),
        },
    ];
    let (out, left) = super::kube_events(&events, |ms| (ms - 0.0) / 1e3);
    assert_eq!(left, 0);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].first_s, out[0].last_s, out[0].count), (1.0, 3.5, 7));
    assert_eq!(out[0].message, "m2");
    assert_eq!(out[1].reason, "NodeNotReady");
}

#[test]
fn kube_events_round_trip_through_timeline_json() {
    let e = Event {
        at: 5.0,
        kind: EventKind::KubeEvent(crate::timeline::KubeEvent {
            name: "default/web-1.1".into(),
            type_: "Normal".into(),
            reason: "Killing".into(),
            object: "pod/web-1".into(),
            message: "Stopping container c".into(),
            source: "kubelet, n1".into(),
            count: 1,
        }),
    };
    let line = serde_json::to_string(&e).unwrap();
    assert!(
        line.contains("\"event\":\"kube-event\"") && line.contains("\"type\":\"Normal\""),
        "{line}"
    );
    assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
}
