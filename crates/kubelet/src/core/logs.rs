//! Which container instance `kubectl logs` reads: upstream's `validateContainerLogStatus`
//! (k/k `pkg/kubelet/kubelet_pods.go`) over the kubelet's own container statuses, with its
//! error texts. Start at [`Kubelet::container_log_target`].

use k8s_openapi::api::core::v1::ContainerStatus;
use runtime::Key;

use super::Kubelet;
use super::standin::{ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF};

/// One container instance's logs: files `<uid>/<container>/<attempt>.log*` in the runtime's
/// log directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    pub uid: String,
    pub container: String,
    pub attempt: i32,
    /// The instance still runs (a follow keeps reading).
    pub running: bool,
}

/// Why a log request has no instance to read, with the kubelet server's status code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogTargetError {
    /// 404: upstream's `pod "p" does not exist` / `container "c" not found in pod "p"`.
    #[error("{0}")]
    NotFound(String),
    /// 400: upstream `validateContainerLogStatus`'s texts.
    #[error("{0}")]
    Unavailable(String),
}

impl LogTargetError {
    /// The HTTP status the kubelet answers with.
    pub fn code(&self) -> u16 {
        match self {
            LogTargetError::NotFound(_) => 404,
            LogTargetError::Unavailable(_) => 400,
        }
    }
}

/// Split a `zonelab://<uid>/<container>/<attempt>` container ID.
pub fn parse_container_id(id: &str) -> Option<(String, String, i32)> {
    let rest = id.strip_prefix("zonelab://")?;
    let mut parts = rest.split('/');
    let (uid, container, attempt) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || uid.is_empty() || container.is_empty() {
        return None;
    }
    Some((uid.into(), container.into(), attempt.parse().ok()?))
}

/// Upstream's choice of the instance to read, or its error text: the previous instance with
/// `previous`, else the running one, else the last terminated one; a waiting container that
/// never ran has no logs.
pub fn validate_container_log_status(
    pod_name: &str,
    statuses: &[ContainerStatus],
    container: &str,
    previous: bool,
) -> Result<(String, bool), String> {
    let Some(cs) = statuses.iter().find(|c| c.name == container) else {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        ));
    };
    let state = cs.state.clone().unwrap_or_default();
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.container_id.clone())
        .filter(|id| !id.is_empty());
    let terminated = || format!("container {container:?} in pod {pod_name:?} is terminated");
    if previous {
        return last.map(|id| (id, false)).ok_or_else(|| {
            format!("previous terminated container {container:?} in pod {pod_name:?} not found")
        });
    }
    if state.running.is_some() {
        let id = cs.container_id.clone().unwrap_or_default();
        return Ok((id, true));
    }
    if let Some(t) = &state.terminated {
        return match t.container_id.clone().filter(|id| !id.is_empty()) {
            Some(id) => Ok((id, false)),
            None => last.map(|id| (id, false)).ok_or_else(terminated),
        };
    }
    if let Some(id) = last {
        return Ok((id, false));
    }
    let reason = state.waiting.and_then(|w| w.reason).unwrap_or_default();
    let why = match reason.as_str() {
        ERR_IMAGE_PULL => "image can't be pulled".to_string(),
        IMAGE_PULL_BACK_OFF => "trying and failing to pull image".to_string(),
        other => other.to_string(),
    };
    Err(format!(
        "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
    ))
}

impl Kubelet {
    /// The container instance `kubectl logs` of `namespace/name`, container `container`
    /// addresses, or upstream's error (the kubelet server's checks, then
    /// `validateContainerLogStatus` over the kubelet's own statuses, or the API's for a pod
    /// it no longer runs).
    pub fn container_log_target(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogTarget, LogTargetError> {
        let key = Key::new(namespace, name);
        let pod =
            self.cache.pods.get(&key).ok_or_else(|| {
                LogTargetError::NotFound(format!("pod {name:?} does not exist\n"))
            })?;
        let spec = pod.spec.clone().unwrap_or_default();
        let in_spec = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == container);
        if !in_spec {
            return Err(LogTargetError::NotFound(format!(
                "container {container:?} not found in pod {name:?}\n"
            )));
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let statuses = match self.pods.get(&uid) {
            Some(st) => super::status::container_statuses(st),
            None => pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default(),
        };
        let (id, running) = validate_container_log_status(name, &statuses, container, previous)
            .map_err(LogTargetError::Unavailable)?;
        let (uid, container, attempt) = parse_container_id(&id).ok_or_else(|| {
            LogTargetError::Unavailable(format!(
                "container {container:?} in pod {name:?} is not available"
            ))
        })?;
        Ok(LogTarget {
            uid,
            container,
            attempt,
            running,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(v: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(v).expect("status")
    }

    #[test]
    fn ids_round_trip() {
        let id = super::super::status::container_id("u-1", "web", 3);
        assert_eq!(
            parse_container_id(&id),
            Some(("u-1".into(), "web".into(), 3))
        );
        assert_eq!(parse_container_id("docker://abc"), None);
    }

    #[test]
    fn upstream_choices_and_texts() {
        let base = serde_json::json!({"name": "web", "image": "x", "imageID": "", "ready": false,
            "restartCount": 1});
        let with = |extra: serde_json::Value| {
            let mut v = base.clone();
            for (k, x) in extra.as_object().cloned().unwrap_or_default() {
                v[k] = x;
            }
            vec![status(v)]
        };
        let running = with(serde_json::json!({"containerID": "zonelab://u/web/1",
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "zonelab://u/web/0"}}}));
        assert_eq!(
            validate_container_log_status("p", &running, "web", false),
            Ok(("zonelab://u/web/1".into(), true))
        );
        assert_eq!(
            validate_container_log_status("p", &running, "web", true),
            Ok(("zonelab://u/web/0".into(), false))
        );
        assert_eq!(
            validate_container_log_status("p", &running, "db", false),
            Err("container \"db\" in pod \"p\" is not available".into())
        );
        let waiting =
            with(serde_json::json!({"state": {"waiting": {"reason": "ContainerCreating"}}}));
        assert_eq!(
            validate_container_log_status("p", &waiting, "web", false),
            Err("container \"web\" in pod \"p\" is waiting to start: ContainerCreating".into())
        );
        assert_eq!(
            validate_container_log_status("p", &waiting, "web", true),
            Err("previous terminated container \"web\" in pod \"p\" not found".into())
        );
        let pull = with(serde_json::json!({"state": {"waiting": {"reason": "ImagePullBackOff"}}}));
        assert_eq!(
            validate_container_log_status("p", &pull, "web", false),
            Err("container \"web\" in pod \"p\" is waiting to start: trying and failing to pull image".into())
        );
        // Crash-looping: waiting, but the last instance's logs are shown.
        let looping = with(
            serde_json::json!({"state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "zonelab://u/web/0"}}}),
        );
        assert_eq!(
            validate_container_log_status("p", &looping, "web", false),
            Ok(("zonelab://u/web/0".into(), false))
        );
    }
}
