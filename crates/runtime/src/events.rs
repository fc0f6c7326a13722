//! Kubernetes Events as components report them: [`EventRecord`] (upstream `recorder.Eventf`),
//! object references, and the core/v1 Event an occurrence becomes. The recorder that
//! correlates and rate-limits them into API writes is `controllers::events::EventRecorder`.
//!
//! Start at [`EventRecord`] (what a controller or the kubelet hands back).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::Moment;

/// Upstream `v1.EventTypeNormal` / `v1.EventTypeWarning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Upstream source components (`v1.EventSource.Component`) of the events we emit.
pub mod source {
    /// kube-controller-manager's deployment controller.
    pub const DEPLOYMENT: &str = "deployment-controller";
    /// kube-controller-manager's replicaset controller.
    pub const REPLICASET: &str = "replicaset-controller";
    /// kube-controller-manager's daemonset controller.
    pub const DAEMONSET: &str = "daemonset-controller";
    /// kube-scheduler (`v1.DefaultSchedulerName`).
    pub const SCHEDULER: &str = "default-scheduler";
    /// The node lifecycle controller (`nodelifecycle.NewNodeLifecycleController`).
    pub const NODE_CONTROLLER: &str = "node-controller";
    /// The taint eviction controller (`tainteviction.New`, 1.29+).
    pub const TAINT_EVICTION: &str = "taint-eviction-controller";
    /// The kubelet (`kubelet.NewMainKubelet`; host is the node name).
    pub const KUBELET: &str = "kubelet";
}

/// One occurrence a component reports: upstream `recorder.Eventf(object, type, reason, msg)`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// `source.component` (and `reportingController`).
    pub component: &'static str,
    /// `source.host` (and `reportingInstance`): the node name for the kubelet, else empty.
    pub host: String,
    /// `involvedObject`, as upstream `reference.GetReference` builds it.
    pub involved: ObjectReference,
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
    /// When the component recorded it (its `now`). The recorder stamps the Event with the
    /// time it takes the occurrence in (the queue between them is short and bounded).
    pub at: Moment,
}

impl EventRecord {
    pub fn new(
        component: &'static str,
        involved: ObjectReference,
        type_: EventType,
        reason: &'static str,
        message: String,
        at: Moment,
    ) -> EventRecord {
        EventRecord {
            component,
            host: String::new(),
            involved,
            type_,
            reason,
            message,
            at,
        }
    }

    /// The same event reported from `host` (the kubelet's node).
    pub fn on_host(mut self, host: &str) -> EventRecord {
        self.host = host.to_string();
        self
    }

    /// The namespace the Event object lives in: the involved object's, `default` for
    /// cluster-scoped objects (upstream `makeEvent`).
    pub fn namespace(&self) -> &str {
        match self.involved.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => "default",
        }
    }
}

/// Upstream `reference.GetReference` for an object of `kind` in `api_version`: kind, apiVersion,
/// namespace, name, uid and resourceVersion from its metadata.
pub fn object_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_string()),
        kind: Some(kind.to_string()),
        namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// The reference to a pod.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    object_ref("v1", "Pod", &pod.metadata)
}

/// The reference to a container of a pod (`fieldPath: spec.containers{name}`), as the kubelet's
/// `container.GenerateContainerRef` builds it.
pub fn container_ref(pod: &Pod, container: &str) -> ObjectReference {
    ObjectReference {
        field_path: Some(format!("spec.containers{{{container}}}")),
        ..pod_ref(pod)
    }
}

/// The reference node events use: upstream `nodeutil.RecordNodeEvent` and
/// `RecordNodeStatusChange` (apiVersion v1, kind Node, no namespace). The controllers pass the
/// node's uid; the kubelet passes the node name as uid (upstream `kubelet.nodeRef`), which is
/// why `kubectl describe node` searches both.
pub fn node_ref(name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Node".to_string()),
        name: Some(name.to_string()),
        uid: Some(uid.to_string()),
        ..ObjectReference::default()
    }
}

/// The core/v1 Event object upstream `makeEvent` + `generateEvent` build for a first
/// occurrence named `name` with `count` occurrences between `first` and `last`.
pub fn to_event(rec: &EventRecord, name: &str, count: i32, first: Moment, last: Moment) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(rec.namespace().to_string()),
            ..ObjectMeta::default()
        },
        involved_object: rec.involved.clone(),
        reason: Some(rec.reason.to_string()),
        message: Some(rec.message.clone()),
        type_: Some(rec.type_.as_str().to_string()),
        count: Some(count),
        first_timestamp: Some(crate::time::to_time(first)),
        last_timestamp: Some(crate::time::to_time(last)),
        source: Some(EventSource {
            component: Some(rec.component.to_string()),
            host: Some(rec.host.clone()).filter(|h| !h.is_empty()),
        }),
        reporting_component: Some(rec.component.to_string()),
        reporting_instance: Some(rec.host.clone()),
        ..Event::default()
    }
}

/// Upstream event names: `<involved object name>.<unix nanoseconds in hex>`. Our clock has
/// milliseconds, so the recorder's sequence number fills the sub-millisecond digits: two events
/// about one object in the same millisecond still get distinct names.
pub fn event_name(involved_name: &str, at: Moment, seq: u64) -> String {
    let nanos = at.as_millis().max(0) as u128 * 1_000_000 + u128::from(seq % 1_000_000);
    format!("{involved_name}.{nanos:x}")
}
