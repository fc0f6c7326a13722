//! Stand-in containers, refused images and the log target, in virtual time.

use runtime::{Action, Object};
use serde_json::json;

use super::standin::{ImagePolicy, Plan, STAND_IN_ANNOTATION};
use super::testkit::*;
use super::*;

fn rig(policy: ImagePolicy) -> Rig {
    let mut rig = Rig::new(KubeletConfig {
        image_policy: policy,
        ..cfg()
    });
    rig.start();
    rig.recorded.clear();
    rig
}

fn reasons(rig: &Rig) -> Vec<(String, String)> {
    rig.recorded
        .iter()
        .map(|e| (e.reason.to_string(), e.message.clone()))
        .collect()
}

fn waiting_reason(rig: &Rig, name: &str) -> Option<String> {
    let p = rig.pod(name)?;
    let cs = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .clone();
    cs.state?.waiting?.reason
}

#[test]
fn a_real_image_runs_as_the_stand_in_with_an_event_and_an_annotation() {
    let mut rig = rig(ImagePolicy::StandIn);
    let nginx = json!({"image": "nginx:1.25", "ports": [{"containerPort": 80, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}}});
    rig.put(pod("web", nginx, json!({})));
    let starts = rig.commands_where(|c| matches!(c, RuntimeCommand::StartContainer { .. }));
    let RuntimeCommand::StartContainer { plan, attempt, .. } = &starts[0].1 else {
        panic!("not a start");
    };
    assert_eq!(
        plan,
        &Plan::StandIn {
            image: "nginx:1.25".into(),
            ports: vec![80]
        }
    );
    assert_eq!(*attempt, 0);
    let ev = reasons(&rig);
    assert!(ev.contains(&(
        "StandIn".into(),
        "image nginx:1.25 runs as the zonelab/echo stand-in on ports 80".into()
    )));
    let p = rig.pod("web").expect("pod");
    let ann = p.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get(STAND_IN_ANNOTATION).map(String::as_str),
        Some("c=nginx:1.25")
    );
    assert_eq!(
        ready(&p).as_deref(),
        Some("True"),
        "readiness via its httpGet probe"
    );
    // The exec liveness probe never reached the prober: it succeeds on the stand-in.
    let sent: Vec<ProbeKind> = rig
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Entry::Probe(r, _) => Some(r.kind),
            _ => None,
        })
        .collect();
    assert!(sent.contains(&ProbeKind::Readiness));
    assert!(!sent.contains(&ProbeKind::Liveness));
    rig.advance(Duration::from_millis(60_000));
    assert_eq!(
        restart_count(&rig.pod("web").expect("pod")),
        0,
        "liveness keeps passing"
    );
    // Through pods/status (a node may not update its pods), in one write.
    assert!(
        rig.writes_where(|a| matches!(a, Action::Update(Object::Pod(_))))
            .is_empty()
    );
    let annotation_writes = rig.writes_where(|a| match a {
        Action::UpdateStatus(Object::Pod(p)) => p
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|m| m.contains_key(STAND_IN_ANNOTATION)),
        _ => false,
    });
    assert!(!annotation_writes.is_empty(), "written with the status");
}

#[test]
fn the_fail_policy_reports_err_image_pull_then_image_pull_backoff() {
    let mut rig = rig(ImagePolicy::Fail);
    rig.put(pod("web", json!({"image": "nginx:1.25"}), json!({})));
    assert_eq!(waiting_reason(&rig, "web").as_deref(), Some("ErrImagePull"));
    assert!(
        rig.commands_where(|c| matches!(c, RuntimeCommand::StartContainer { .. }))
            .is_empty()
    );
    rig.advance(Duration::from_millis(2_000));
    assert_eq!(
        waiting_reason(&rig, "web").as_deref(),
        Some("ImagePullBackOff")
    );
    let p = rig.pod("web").expect("pod");
    let w = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .expect("cs")[0]
        .state
        .clone()
        .and_then(|s| s.waiting)
        .expect("waiting");
    assert!(w
        .message
        .as_deref()
        .is_some_and(|m| m.starts_with("Back-off pulling image \"nginx:1.25\": ErrImagePull: ")));
    let ev = reasons(&rig);
    let names: Vec<&str> = ev.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        names,
        ["Pulling", "Failed", "Failed", "BackOff", "Failed"],
        "{ev:?}"
    );
    assert_eq!(ev[2].1, "Error: ErrImagePull");
    assert_eq!(ev[4].1, "Error: ImagePullBackOff");
    // After the backoff (10 s) it pulls again, and fails again.
    rig.advance(Duration::from_millis(9_000));
    assert_eq!(
        rig.recorded
            .iter()
            .filter(|e| e.reason == "Pulling")
            .count(),
        2
    );
    let target = rig
        .kubelet
        .container_log_target("default", "web", "c", false);
    assert!(
        target.is_err_and(|e| e.code() == 400 && e.to_string().contains("is waiting to start"))
    );
}

#[test]
fn log_targets_follow_restarts() {
    let mut rig = rig(ImagePolicy::StandIn);
    rig.put(pod("web", json!({}), json!({})));
    let t = rig
        .kubelet
        .container_log_target("default", "web", "c", false)
        .expect("target");
    assert_eq!((t.container.as_str(), t.attempt, t.running), ("c", 0, true));
    assert!(
        rig.kubelet
            .container_log_target("default", "web", "c", true)
            .is_err_and(|e| e.code() == 400
                && e.to_string() == "previous terminated container \"c\" in pod \"web\" not found")
    );
    rig.exit("web", 1);
    rig.advance(Duration::from_millis(11_000));
    let now = rig
        .kubelet
        .container_log_target("default", "web", "c", false)
        .expect("current");
    let prev = rig
        .kubelet
        .container_log_target("default", "web", "c", true)
        .expect("previous");
    assert_eq!((now.attempt, now.running), (1, true));
    assert_eq!((prev.attempt, prev.running), (0, false));
    assert!(
        rig.kubelet
            .container_log_target("default", "nope", "c", false)
            .is_err_and(
                |e| e == logs::LogTargetError::NotFound("pod \"nope\" does not exist\n".into())
            )
    );
    assert!(
        rig.kubelet
            .container_log_target("default", "web", "x", false)
            .is_err_and(|e| e.code() == 404
                && e.to_string() == "container \"x\" not found in pod \"web\"\n")
    );
    // A second exit within the backoff window waits: Warning BackOff.
    rig.exit("web", 1);
    let backoff = rig
        .recorded
        .iter()
        .find(|e| e.reason == "BackOff")
        .expect("BackOff");
    assert!(
        backoff
            .message
            .starts_with("Back-off restarting failed container c in pod web_default(")
    );
}

#[test]
fn the_annotation_is_retried_after_a_failed_write_and_logs_go_with_the_pod() {
    let mut rig = rig(ImagePolicy::StandIn);
    let failures = std::rc::Rc::new(std::cell::Cell::new(1));
    let f = failures.clone();
    rig.writes = Box::new(move |a, _| match a {
        Action::UpdateStatus(Object::Pod(_)) if f.get() > 0 => {
            f.set(f.get() - 1);
            Some(runtime::WriteError::Other("etcd unavailable".into()))
        }
        _ => None,
    });
    rig.put(pod(
        "web",
        json!({"image": "redis:7", "ports": [{"containerPort": 6379}]}),
        json!({}),
    ));
    let ann = |rig: &Rig| {
        rig.pod("web")
            .and_then(|p| p.metadata.annotations.clone())
            .and_then(|a| a.get(STAND_IN_ANNOTATION).cloned())
    };
    assert_eq!(ann(&rig), None, "the first write failed");
    rig.advance(config::STATUS_RETRY);
    assert_eq!(
        ann(&rig).as_deref(),
        Some("c=redis:7"),
        "retried after the delay"
    );
    rig.delete_pod("web");
    rig.advance(Duration::from_millis(1_000));
    let removed = rig.commands_where(|c| matches!(c, RuntimeCommand::RemoveLogs { .. }));
    assert_eq!(
        removed.len(),
        1,
        "the pod's logs are removed once it is gone"
    );
}
