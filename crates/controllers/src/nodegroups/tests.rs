//! The node-group cloud in virtual time: launches, boots, capacity faults, min/max.

use std::time::Duration;

use super::*;
use crate::autoscaler::testworld::template;
use crate::fake::T0;

fn cloud() -> Cloud {
    let spec = |name: &str, zone: &str| NodeGroupSpec {
        name: name.into(),
        zone: zone.into(),
        min: 1,
        max: 3,
        desired: 1,
        boot_delay: Duration::from_secs(60),
        template: template(zone, "4", "16Gi"),
    };
    Cloud::new(
        vec![spec("ng-a", "zone-a"), spec("ng-b", "zone-b")],
        CloudConfig::default(),
    )
}

fn drain(c: &mut Cloud) -> Vec<CloudEvent> {
    let mut out = Vec::new();
    out.extend(std::iter::from_fn(|| c.poll_event()));
    out
}

#[test]
fn initial_instances_run_and_a_launch_boots_after_the_boot_delay() {
    let mut c = cloud();
    assert_eq!(c.running().len(), 2);
    c.increase_size("ng-a", 1).expect("increase");
    assert!(c.launches_owed());
    c.handle_timeout(T0);
    assert_eq!(
        drain(&mut c),
        vec![CloudEvent::Launched {
            group: "ng-a".into(),
            name: "ng-a-2".into(),
            zone: "zone-a".into()
        }]
    );
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_millis(60_000)));
    c.handle_timeout(T0 + Duration::from_millis(59_999));
    assert!(drain(&mut c).is_empty());
    let view = &c.views()[0];
    assert_eq!(view.target_size, 2);
    assert_eq!(view.instances[1].state, InstanceState::Creating);
    c.handle_timeout(T0 + Duration::from_millis(60_000));
    assert_eq!(
        drain(&mut c),
        vec![CloudEvent::Running {
            group: "ng-a".into(),
            name: "ng-a-2".into(),
            zone: "zone-a".into()
        }]
    );
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_launch_in_a_faulted_zone_fails_after_the_timeout_with_insufficient_capacity() {
    let mut c = cloud();
    c.set_zone_fault("zone-a", true);
    c.increase_size("ng-a", 1).expect("increase");
    c.handle_timeout(T0);
    drain(&mut c);
    c.handle_timeout(T0 + Duration::from_millis(29_999));
    assert!(drain(&mut c).is_empty());
    c.handle_timeout(T0 + Duration::from_millis(30_000));
    assert!(matches!(
        drain(&mut c)[..],
        [CloudEvent::LaunchFailed { .. }]
    ));
    let failed = &c.views()[0].instances[1];
    let err = failed.error.as_ref().expect("error");
    assert_eq!(err.class, InstanceErrorClass::OutOfResources);
    assert_eq!(err.code, INSUFFICIENT_CAPACITY);
    // The failed instance stays (desired stays 2) until deleted, which may go below min.
    assert_eq!(c.views()[0].target_size, 2);
    c.delete_nodes("ng-a", &["ng-a-2".to_string()])
        .expect("delete");
    assert_eq!(c.views()[0].target_size, 1);
    // Other zones are unaffected; the fault lifted, launches boot again.
    c.set_zone_fault("zone-a", false);
    c.increase_size("ng-a", 1).expect("increase");
    c.handle_timeout(T0 + Duration::from_millis(40_000));
    c.handle_timeout(T0 + Duration::from_millis(100_000));
    assert!(
        drain(&mut c)
            .iter()
            .any(|e| matches!(e, CloudEvent::Running { name, .. } if name == "ng-a-3"))
    );
}

#[test]
fn calls_outside_min_and_max_are_rejected_and_change_nothing() {
    let mut c = cloud();
    assert_eq!(
        c.increase_size("ng-a", 3),
        Err(CloudError::TooLarge { desired: 4, max: 3 })
    );
    assert_eq!(
        c.increase_size("ng-a", 3).unwrap_err().to_string(),
        "size increase too large - desired:4 max:3"
    );
    assert_eq!(
        c.delete_nodes("ng-a", &["ng-a-1".to_string()]),
        Err(CloudError::MinSizeReached)
    );
    assert_eq!(
        c.delete_nodes("ng-a", &["ng-b-1".to_string()]),
        Err(CloudError::NotInGroup {
            node: "ng-b-1".into(),
            group: "ng-a".into()
        })
    );
    assert_eq!(
        c.increase_size("nope", 1),
        Err(CloudError::NoSuchGroup("nope".into()))
    );
    assert_eq!(c.views()[0].target_size, 1);
    assert_eq!(c.views()[0].instances.len(), 1);
}

#[test]
fn the_fast_profile_divides_the_launch_failure_timeout() {
    let c = CloudConfig::default().scaled(10);
    assert_eq!(c.launch_failure_timeout, Duration::from_secs(3));
}

#[test]
fn with_a_zone_node_prefix_instances_are_numbered_per_zone_across_groups() {
    let spec = |name: &str, zone: &str, desired: usize| NodeGroupSpec {
        name: name.into(),
        zone: zone.into(),
        min: 0,
        max: 4,
        desired,
        boot_delay: Duration::from_secs(6),
        template: template(zone, "4", "16Gi"),
    };
    let config = CloudConfig {
        zone_node_prefix: Some("zl".into()),
        ..CloudConfig::default()
    };
    let mut c = Cloud::new(
        vec![spec("a1", "a", 2), spec("a2", "a", 1), spec("b1", "b", 1)],
        config,
    );
    let names: Vec<String> = c.running().into_iter().map(|(_, n, _)| n).collect();
    assert_eq!(names, ["zl-a-1", "zl-a-2", "zl-a-3", "zl-b-1"]);
    c.increase_size("a2", 1).expect("increase");
    c.handle_timeout(T0);
    assert_eq!(
        drain(&mut c),
        vec![CloudEvent::Launched {
            group: "a2".into(),
            name: "zl-a-4".into(),
            zone: "a".into()
        }]
    );
    // Names are never reused: a deleted instance's number stays taken.
    c.delete_nodes("a1", &["zl-a-1".to_string()])
        .expect("delete");
    c.increase_size("a1", 1).expect("increase");
    c.handle_timeout(T0 + Duration::from_millis(1));
    let launched: Vec<CloudEvent> = drain(&mut c)
        .into_iter()
        .filter(|e| matches!(e, CloudEvent::Launched { .. }))
        .collect();
    assert_eq!(
        launched,
        vec![CloudEvent::Launched {
            group: "a1".into(),
            name: "zl-a-5".into(),
            zone: "a".into()
        }]
    );
}
