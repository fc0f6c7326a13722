//! Pod lifecycle, probes, restarts, deletion and graceful shutdown, in virtual time.

use std::cell::Cell;
use std::rc::Rc;

use controllers::fake::T0;
use runtime::{Action, Kind, Object, WriteError};
use serde_json::json;

use super::testkit::*;
use super::*;

fn started_rig() -> Rig {
    let mut rig = Rig::new(cfg());
    rig.start();
    rig
}

fn signals(rig: &Rig, want: Signal) -> Vec<i64> {
    rig.commands_where(|c| matches!(c, RuntimeCommand::Signal { signal, .. } if *signal == want))
        .into_iter()
        .map(|(t, _)| t.as_millis() - T0.as_millis())
        .collect()
}

fn status_writes(rig: &Rig) -> usize {
    rig.writes_where(is_pod_status).len()
}

#[test]
fn no_timer_is_due_while_the_pod_network_is_being_set_up() {
    let mut rig = started_rig();
    let change = rig.api.put(pod("web", json!({}), json!({})), rig.now);
    rig.kubelet.handle_change(&change, rig.now);
    let setup = rig.kubelet.poll_command();
    assert!(
        matches!(setup, Some(RuntimeCommand::SetupNetwork { .. })),
        "{setup:?}"
    );
    // The runtime has not answered yet: a driver woken now would find nothing to do.
    let wake = rig.kubelet.poll_timeout();
    assert!(
        wake.is_none_or(|w| w > rig.now),
        "due at {wake:?}, now {}",
        rig.now
    );
}

#[test]
fn new_pod_runs_and_is_ready_with_its_ip() {
    let mut rig = started_rig();
    rig.put(pod("web", json!({}), json!({})));
    let p = rig.pod("web").expect("pod");
    let st = p.status.as_ref().expect("status");
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.pod_ip.as_deref(), Some("10.244.0.2"));
    assert_eq!(st.pod_ips.as_ref().expect("ips")[0].ip, "10.244.0.2");
    assert_eq!(st.host_ip.as_deref(), Some("172.20.0.11"));
    assert!(st.start_time.is_some());
    assert_eq!(ready(&p).as_deref(), Some("True"));
    let types: Vec<&str> = st
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.status == "True")
        .map(|c| c.type_.as_str())
        .collect();
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    let cs = &st.container_statuses.as_ref().expect("cs")[0];
    assert!(cs.ready && cs.started == Some(true) && cs.restart_count == 0);
    assert!(cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
    // The environment carries the pod's identity.
    let env = rig
        .commands_where(|c| matches!(c, RuntimeCommand::StartContainer { .. }))
        .into_iter()
        .find_map(|(_, c)| match c {
            RuntimeCommand::StartContainer { env, .. } => Some(env),
            _ => None,
        })
        .expect("start");
    for (k, v) in [
        ("POD_NAME", "web"),
        ("POD_NAMESPACE", "default"),
        ("NODE_NAME", "n1"),
        ("ZONE", "a"),
    ] {
        assert!(env.contains(&(k.to_string(), v.to_string())), "{k}");
    }
    // A second pod gets the next address.
    rig.put(pod("web2", json!({}), json!({})));
    let p2 = rig.pod("web2").expect("pod");
    assert_eq!(
        p2.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
        Some("10.244.0.3")
    );
}

#[test]
fn readiness_follows_failure_and_success_thresholds() {
    let mut rig = started_rig();
    let healthy = Rc::new(Cell::new(true));
    let h = healthy.clone();
    rig.probes = Box::new(move |p, _| {
        assert!(
            matches!(&p.action, ProbeAction::HttpGet { host, port: 8080, path, .. }
            if host == "10.244.0.2" && path == "/healthz")
        );
        if h.get() {
            ProbeOutcome::Success
        } else {
            ProbeOutcome::Failure("503".into())
        }
    });
    let probe = json!({"readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
        "initialDelaySeconds": 5, "periodSeconds": 10, "successThreshold": 2, "failureThreshold": 3}});
    rig.put(pod("web", probe, json!({})));
    let is_ready = |rig: &Rig| ready(&rig.pod("web").expect("pod")).as_deref() == Some("True");
    assert!(!is_ready(&rig), "not ready before the first probe");
    rig.advance(Duration::from_millis(5_000));
    assert!(!is_ready(&rig), "one success of two");
    rig.advance(Duration::from_millis(10_000));
    assert!(is_ready(&rig), "two successes");
    healthy.set(false);
    rig.advance(Duration::from_millis(20_000));
    assert!(is_ready(&rig), "two failures of three");
    rig.advance(Duration::from_millis(10_000));
    assert!(!is_ready(&rig), "three failures");
    let p = rig.pod("web").expect("pod");
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    healthy.set(true);
    rig.advance(Duration::from_millis(10_000));
    assert!(!is_ready(&rig), "one success of two");
    rig.advance(Duration::from_millis(10_000));
    assert!(is_ready(&rig), "ready again");
}

#[test]
fn a_probe_is_settled_only_when_a_success_would_change_nothing() {
    let mut rig = started_rig();
    let healthy = Rc::new(Cell::new(true));
    let h = healthy.clone();
    rig.probes = Box::new(move |_, _| {
        if h.get() {
            ProbeOutcome::Success
        } else {
            ProbeOutcome::Failure("503".into())
        }
    });
    let probe = json!({"readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 10, "successThreshold": 2, "failureThreshold": 1}});
    rig.put(pod("web", probe, json!({})));
    rig.advance(Duration::from_millis(25_000));
    // No result yet, one success of two, then ready with two in a row.
    assert_eq!(rig.settled, [false, false, true]);
    healthy.set(false);
    rig.advance(Duration::from_millis(10_000));
    healthy.set(true);
    rig.advance(Duration::from_millis(30_000));
    // The failure made the pod not ready: settled again only after two more successes.
    assert_eq!(rig.settled, [false, false, true, true, false, false, true]);
    assert_eq!(
        ready(&rig.pod("web").expect("pod")).as_deref(),
        Some("True")
    );
}

#[test]
fn liveness_failure_restarts_with_crash_loop_backoff() {
    let mut rig = started_rig();
    rig.probes = Box::new(|_, _| ProbeOutcome::Failure("refused".into()));
    let probe = json!({"livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1,
        "failureThreshold": 1}});
    rig.put(pod(
        "web",
        probe,
        json!({"terminationGracePeriodSeconds": 5}),
    ));
    // Failing at 0 s: killed, exits on SIGTERM, restarted at once (first restart has no wait).
    assert_eq!(restart_count(&rig.pod("web").expect("pod")), 1);
    // The second failure (at once again) must wait 10 s: CrashLoopBackOff.
    let p = rig.pod("web").expect("pod");
    let cs = &p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .expect("cs")[0];
    let waiting = cs
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .expect("waiting");
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        cs.last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code),
        Some(143)
    );
    let starts = |rig: &Rig| {
        rig.commands_where(|c| matches!(c, RuntimeCommand::StartContainer { .. }))
            .into_iter()
            .map(|(t, _)| (t.as_millis() - T0.as_millis()) / 1000)
            .collect::<Vec<_>>()
    };
    rig.advance(Duration::from_millis(200_000));
    // 0, 0, then 10, 20, 40, 80 s after each failure (each failing at once).
    assert_eq!(starts(&rig), [0, 0, 10, 30, 70, 150]);
    rig.advance(Duration::from_millis(1_000_000));
    let gaps: Vec<i64> = starts(&rig).windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps.last(), Some(&300), "capped at 5 min");
    assert_eq!(
        signals(&rig, Signal::Kill),
        Vec::<i64>::new(),
        "TERM sufficed"
    );
}

#[test]
fn liveness_kill_escalates_to_sigkill_after_the_grace() {
    let mut rig = started_rig();
    rig.exit_on_term = false;
    rig.probes = Box::new(|_, _| ProbeOutcome::Failure("timeout".into()));
    let probe = json!({"livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 10,
        "initialDelaySeconds": 3, "failureThreshold": 2}});
    rig.put(pod(
        "web",
        probe,
        json!({"terminationGracePeriodSeconds": 7}),
    ));
    rig.advance(Duration::from_millis(30_000));
    // Probes at 3 and 13 s fail; TERM at 13 s, KILL at 20 s, restart at once.
    assert_eq!(signals(&rig, Signal::Term), [13_000]);
    assert_eq!(signals(&rig, Signal::Kill), [20_000]);
    assert_eq!(restart_count(&rig.pod("web").expect("pod")), 1);
}

#[test]
fn exits_follow_the_restart_policy() {
    let mut rig = started_rig();
    rig.put(pod("never", json!({}), json!({"restartPolicy": "Never"})));
    rig.exit("never", 1);
    let p = rig.pod("never").expect("pod");
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed")
    );
    assert_eq!(ready(&p).as_deref(), Some("False"));
    let teardowns = rig.commands_where(|c| matches!(c, RuntimeCommand::TeardownNetwork { .. }));
    assert_eq!(teardowns.len(), 1, "a finished pod gives its network back");

    rig.put(pod("job", json!({}), json!({"restartPolicy": "OnFailure"})));
    rig.exit("job", 2);
    assert_eq!(restart_count(&rig.pod("job").expect("pod")), 1);
    rig.exit("job", 0);
    let p = rig.pod("job").expect("pod");
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );

    rig.put(pod("svc", json!({}), json!({})));
    rig.exit("svc", 0);
    let p = rig.pod("svc").expect("pod");
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    assert_eq!(restart_count(&p), 1);
}

#[test]
fn deletion_terms_then_kills_after_grace_then_deletes_with_grace_zero() {
    let mut rig = started_rig();
    rig.exit_on_term = false;
    rig.put(pod(
        "web",
        json!({}),
        json!({"terminationGracePeriodSeconds": 20}),
    ));
    let uid = rig
        .pod("web")
        .and_then(|p| p.metadata.uid.clone())
        .expect("uid");
    rig.advance(Duration::from_millis(1_000));
    rig.delete_pod("web");
    let p = rig.pod("web").expect("still there, terminating");
    assert_eq!(ready(&p).as_deref(), Some("False"), "not ready at once");
    assert_eq!(signals(&rig, Signal::Term), [1_000]);
    rig.advance(Duration::from_millis(18_000));
    assert!(signals(&rig, Signal::Kill).is_empty());
    assert!(rig.pod("web").is_some());
    rig.advance(Duration::from_millis(2_000));
    assert_eq!(signals(&rig, Signal::Kill), [21_000]);
    assert!(
        rig.pod("web").is_none(),
        "deleted once the processes are gone"
    );
    let deletes = rig.writes_where(|a| {
        matches!(
            a,
            Action::Delete {
                kind: Kind::Pod,
                ..
            }
        )
    });
    assert_eq!(deletes.len(), 1);
    let (
        t,
        Action::Delete {
            uid: u,
            grace_period_seconds,
            ..
        },
    ) = &deletes[0]
    else {
        panic!("delete")
    };
    assert_eq!(
        (
            t.as_millis() - T0.as_millis(),
            u.as_deref(),
            *grace_period_seconds
        ),
        (21_000, Some(uid.as_str()), Some(0))
    );
    let teardown = rig.commands_where(|c| matches!(c, RuntimeCommand::TeardownNetwork { .. }));
    assert_eq!(teardown.len(), 1);
    assert!(rig.kubelet.pods.is_empty(), "state forgotten");
    assert_eq!(rig.kubelet.ipam.in_use(), 0);
}

#[test]
fn graceful_shutdown_marks_pods_not_ready_before_sigterm() {
    let mut rig = started_rig();
    rig.put(pod("a", json!({}), json!({})));
    rig.put(pod(
        "b",
        json!({}),
        json!({"terminationGracePeriodSeconds": 60}),
    ));
    rig.advance(Duration::from_millis(2_000));
    rig.exit_on_term = false;
    rig.kubelet.begin_shutdown(rig.now);
    rig.settle();
    // In the log, each pod's not-ready status write comes before its SIGTERM.
    for name in ["a", "b"] {
        let not_ready = rig.log.iter().position(|(_, e)| {
            matches!(e,
            Entry::Action(Action::UpdateStatus(Object::Pod(p)), Ok(()))
                if p.metadata.name.as_deref() == Some(name) && !runtime::pod_is_ready(p))
        });
        let term = rig.log.iter().position(|(_, e)| {
            matches!(e,
            Entry::Command(RuntimeCommand::Signal { pod, signal: Signal::Term, .. })
                if pod.key.name == name)
        });
        assert!(not_ready.is_some() && term.is_some());
        assert!(not_ready < term, "{name}: not ready before SIGTERM");
    }
    assert!(!rig.kubelet.shutdown_complete());
    // Grace is bounded by shutdownGracePeriod (30 s) even for the 60 s pod.
    rig.advance(Duration::from_millis(30_000));
    assert_eq!(signals(&rig, Signal::Kill), [32_000, 32_000]);
    assert!(rig.kubelet.shutdown_complete());
    for name in ["a", "b"] {
        let p = rig.pod(name).expect("pods stay, as upstream");
        let st = p.status.as_ref().expect("status");
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(st.reason.as_deref(), Some("Terminated"));
        let dt = st
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "DisruptionTarget");
        assert_eq!(dt.map(|c| c.status.as_str()), Some("True"));
    }
}

#[test]
fn status_is_written_only_when_it_changes() {
    let mut rig = started_rig();
    let probe = json!({"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}});
    rig.put(pod("web", probe, json!({})));
    let after_start = status_writes(&rig);
    // Pending, network ready, running, ready: each a real change.
    assert!(
        after_start <= 4,
        "{after_start} writes to get running and ready"
    );
    assert_eq!(
        ready(&rig.pod("web").expect("pod")).as_deref(),
        Some("True")
    );
    rig.advance(Duration::from_millis(600_000));
    let probes = rig
        .log
        .iter()
        .filter(|(_, e)| matches!(e, Entry::Probe(p, ProbeOutcome::Success) if p.container == "c"))
        .count();
    assert!(probes > 1000, "{probes} probes ran");
    assert_eq!(
        status_writes(&rig),
        after_start,
        "steady probes write nothing"
    );
}

#[test]
fn status_conflict_is_rebuilt_from_the_newer_pod() {
    let mut rig = started_rig();
    rig.put(pod("web", json!({}), json!({})));
    // Someone else adds a label; the kubelet's watch has not delivered it yet.
    let mut p = (*rig.pod("web").expect("pod")).clone();
    p.metadata.labels = Some([("team".to_string(), "x".to_string())].into());
    let late = rig.api.put(Object::Pod(std::sync::Arc::new(p)), rig.now);
    rig.exit("web", 1);
    let conflicts = rig
        .log
        .iter()
        .filter(
            |(_, e)| matches!(e, Entry::Action(a, Err(WriteError::Conflict)) if is_pod_status(a)),
        )
        .count();
    assert_eq!(conflicts, 1, "written against the stale pod");
    assert_eq!(restart_count(&rig.pod("web").expect("pod")), 0);
    rig.deliver(vec![late]);
    rig.settle();
    let p = rig.pod("web").expect("pod");
    assert_eq!(
        restart_count(&p),
        1,
        "rebuilt from the newer pod and written"
    );
    assert_eq!(
        p.metadata.labels.as_ref().map(|l| l["team"].as_str()),
        Some("x")
    );
}

/// (reason, fieldPath or kind, message) of every recorded event.
fn recorded(rig: &Rig) -> Vec<(String, String, String)> {
    rig.recorded
        .iter()
        .map(|e| {
            let i = &e.involved;
            let what = i.field_path.clone().or(i.kind.clone()).unwrap_or_default();
            (e.reason.to_string(), what, e.message.clone())
        })
        .collect()
}

#[test]
fn pod_lifecycle_records_upstream_kubelet_events() {
    let mut rig = started_rig();
    let node_events: Vec<_> = recorded(&rig).into_iter().map(|(r, w, _)| (r, w)).collect();
    assert_eq!(
        node_events,
        vec![
            ("Starting".to_string(), "Node".to_string()),
            ("NodeReady".to_string(), "Node".to_string())
        ]
    );
    let node_ref = &rig.recorded[0].involved;
    assert_eq!(
        node_ref.uid.as_deref(),
        Some("n1"),
        "kubelet node events use the name as uid"
    );
    rig.recorded.clear();
    let failing = Rc::new(Cell::new(false));
    let f = failing.clone();
    rig.probes = Box::new(move |_, _| {
        if f.get() {
            ProbeOutcome::Failure("HTTP probe failed with statuscode: 503".into())
        } else {
            ProbeOutcome::Success
        }
    });
    let probe = json!({"readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 10}});
    rig.put(pod("web", probe, json!({})));
    let c = "spec.containers{c}".to_string();
    let started: Vec<_> = recorded(&rig);
    assert_eq!(
        started
            .iter()
            .map(|(r, w, _)| (r.as_str(), w.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("Pulled", c.as_str()),
            ("Created", c.as_str()),
            ("Started", c.as_str())
        ]
    );
    assert_eq!(started[2].2, "Started container c");
    let e = &rig.recorded[2];
    assert_eq!((e.component, e.host.as_str()), ("kubelet", "n1"));
    let uid = rig.pod("web").unwrap().metadata.uid.clone();
    assert_eq!(e.involved.uid, uid);
    rig.recorded.clear();
    failing.set(true);
    rig.advance(Duration::from_millis(10_000));
    assert_eq!(
        recorded(&rig),
        vec![(
            "Unhealthy".to_string(),
            c.clone(),
            "Readiness probe failed: HTTP probe failed with statuscode: 503".to_string()
        )]
    );
    assert_eq!(rig.recorded[0].type_, runtime::events::EventType::Warning);
    rig.recorded.clear();
    rig.delete_pod("web");
    assert_eq!(
        recorded(&rig)[0],
        ("Killing".to_string(), c, "Stopping container c".to_string())
    );
}
