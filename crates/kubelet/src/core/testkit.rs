//! Test rig: a [`Kubelet`] wired to a `FakeApi`, a scripted runtime and a scripted prober, in
//! virtual time. Start at [`Rig::new`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use controllers::fake::{FakeApi, T0};
use k8s_openapi::api::core::v1::Pod;
use runtime::{Action, Change, Key, Kind, Moment, Object, WriteError};
use serde_json::json;

use super::*;

/// Everything the kubelet handed out, in order.
#[derive(Clone, Debug)]
pub enum Entry {
    Action(Action, Result<(), WriteError>),
    Command(RuntimeCommand),
    Probe(ProbeRequest, ProbeOutcome),
}

type ProbeScript = Box<dyn FnMut(&ProbeRequest, Moment) -> ProbeOutcome>;
type WriteScript = Box<dyn FnMut(&Action, Moment) -> Option<WriteError>>;

pub struct Rig {
    pub kubelet: Kubelet,
    pub api: FakeApi,
    pub now: Moment,
    pub log: Vec<(Moment, Entry)>,
    pub probes: ProbeScript,
    pub writes: WriteScript,
    /// Containers exit on SIGTERM (else only on SIGKILL).
    pub exit_on_term: bool,
    /// Running containers: (uid, container) -> pid.
    pub running: BTreeMap<(String, String), u32>,
    next_pid: u32,
    events: VecDeque<RuntimeEvent>,
    /// Kubernetes Events the kubelet recorded, in order.
    pub recorded: Vec<runtime::events::EventRecord>,
    /// The Lease watch delivers changes (false: it lags, the kubelet's copy goes stale).
    pub lease_watch: bool,
    /// Times the kubelet read its Lease (answered from the API).
    pub lease_reads: Vec<Moment>,
    /// The driver hands the server's answer to a Lease write back to the kubelet.
    pub lease_answers: bool,
    /// [`Kubelet::probe_settled`] of each probe when it was handed out, in order.
    pub settled: Vec<bool>,
}

pub fn cfg() -> KubeletConfig {
    KubeletConfig {
        node_name: "n1".into(),
        zone: "a".into(),
        pod_cidr: "10.244.0.0/24".into(),
        ..KubeletConfig::default()
    }
}

/// A pod bound to `n1` with one container `c` on port 8080; `container` is merged into the
/// container (probes etc.), `spec` into the pod spec.
pub fn pod(name: &str, container: serde_json::Value, spec: serde_json::Value) -> Object {
    let mut c = json!({"name": "c", "image": "zonelab/echo",
        "ports": [{"containerPort": 8080, "name": "http"}]});
    merge(&mut c, container);
    let mut s = json!({"nodeName": "n1", "containers": [c]});
    merge(&mut s, spec);
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": s,
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True",
             "lastTransitionTime": "2027-01-15T08:00:00Z"}
        ]}
    }))
    .expect("pod json");
    Object::Pod(Arc::new(p))
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

impl Rig {
    pub fn new(cfg: KubeletConfig) -> Rig {
        Rig {
            kubelet: Kubelet::new(cfg).expect("kubelet"),
            api: FakeApi::new(),
            now: T0,
            log: Vec::new(),
            probes: Box::new(|_, _| ProbeOutcome::Success),
            writes: Box::new(|_, _| None),
            exit_on_term: true,
            running: BTreeMap::new(),
            next_pid: 1000,
            events: VecDeque::new(),
            recorded: Vec::new(),
            lease_watch: true,
            settled: Vec::new(),
            lease_reads: Vec::new(),
            lease_answers: true,
        }
    }

    pub fn start(&mut self) {
        let cache = self.api.cache.clone();
        let mut changes = Vec::new();
        for n in cache.nodes.values() {
            changes.push(Change::Applied {
                new: Object::Node(n.clone()),
                old: None,
            });
        }
        for p in cache.pods.values() {
            changes.push(Change::Applied {
                new: Object::Pod(p.clone()),
                old: None,
            });
        }
        self.deliver(changes);
        self.kubelet.handle_synced(self.now);
        self.settle();
    }

    pub fn deliver(&mut self, changes: Vec<Change>) {
        for c in changes {
            if !self.lease_watch && c.object().kind() == Kind::Lease {
                continue;
            }
            self.kubelet.handle_change(&c, self.now);
        }
    }

    /// An external write (a user, the scheduler).
    pub fn put(&mut self, obj: Object) {
        let change = self.api.put(obj, self.now);
        self.deliver(vec![change]);
        self.settle();
    }

    /// A user deletes the pod (graceful, the pod's own grace).
    pub fn delete_pod(&mut self, name: &str) {
        let action = Action::Delete {
            kind: Kind::Pod,
            key: Key::new("default", name),
            uid: None,
            grace_period_seconds: None,
        };
        let changes = self.api.execute(&action, self.now).expect("delete");
        self.api.log.pop();
        self.deliver(changes);
        self.settle();
    }

    pub fn pod(&self, name: &str) -> Option<Arc<Pod>> {
        self.api.cache.pods.get(&Key::new("default", name)).cloned()
    }

    /// Hand everything out and feed the answers back until nothing is pending.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            while let Some(a) = self.kubelet.poll_action() {
                progressed = true;
                self.execute(a);
            }
            while let Some(c) = self.kubelet.poll_command() {
                progressed = true;
                self.log.push((self.now, Entry::Command(c.clone())));
                self.run_command(c);
            }
            while let Some(ev) = self.events.pop_front() {
                progressed = true;
                self.kubelet.handle_event(ev, self.now);
            }
            while let Some(p) = self.kubelet.poll_probe() {
                progressed = true;
                self.settled.push(self.kubelet.probe_settled(p.id));
                let outcome = (self.probes)(&p, self.now);
                self.log
                    .push((self.now, Entry::Probe(p.clone(), outcome.clone())));
                self.kubelet.handle_probe_result(p.id, outcome, self.now);
            }
            while let Some(key) = self.kubelet.poll_lease_read() {
                progressed = true;
                self.lease_reads.push(self.now);
                let lease = self.api.cache.leases.get(&key).cloned();
                self.kubelet.handle_lease_read(Ok(lease), self.now);
            }
            while let Some(e) = self.kubelet.poll_event() {
                self.recorded.push(e);
            }
            if !progressed {
                return;
            }
        }
        panic!("kubelet did not settle");
    }

    fn execute(&mut self, a: Action) {
        let result = match (self.writes)(&a, self.now) {
            Some(e) => Err(e),
            None => self.api.execute(&a, self.now),
        };
        let short = result.clone().map(drop);
        self.log
            .push((self.now, Entry::Action(a.clone(), short.clone())));
        self.kubelet.handle_write_result(&a, short, self.now);
        if let Ok(changes) = &result
            && self.lease_answers
        {
            for c in changes {
                if let Object::Lease(l) = c.object() {
                    self.kubelet.handle_lease_written(l.clone());
                }
            }
        }
        if let Ok(changes) = result {
            self.deliver(changes);
        }
    }

    fn run_command(&mut self, c: RuntimeCommand) {
        match c {
            RuntimeCommand::SetupNetwork { pod, ip } => {
                self.events
                    .push_back(RuntimeEvent::PodNetworkReady { pod, ip });
            }
            RuntimeCommand::StartContainer { pod, container, .. } => {
                self.next_pid += 1;
                self.running
                    .insert((pod.uid.clone(), container.name.clone()), self.next_pid);
                self.events.push_back(RuntimeEvent::ContainerStarted {
                    pod,
                    container: container.name.clone(),
                    pid: self.next_pid,
                });
            }
            RuntimeCommand::Signal {
                pod,
                container,
                signal,
            } => {
                let exits = signal == Signal::Kill || self.exit_on_term;
                let key = (pod.uid.clone(), container.clone());
                if exits && self.running.remove(&key).is_some() {
                    let code = if signal == Signal::Kill { 137 } else { 143 };
                    self.events.push_back(RuntimeEvent::ContainerExited {
                        pod,
                        container,
                        code,
                    });
                }
            }
            RuntimeCommand::TeardownNetwork { pod } => {
                self.running.retain(|(uid, _), _| *uid != pod.uid);
                self.events
                    .push_back(RuntimeEvent::PodNetworkTornDown { pod });
            }
            RuntimeCommand::RemoveLogs { .. } => {}
        }
    }

    /// The container `c` of pod `name` exits by itself.
    pub fn exit(&mut self, name: &str, code: i32) {
        let pod = self.pod(name).expect("pod");
        let pod_ref = PodRef {
            key: Key::new("default", name),
            uid: pod.metadata.uid.clone().expect("uid"),
        };
        self.running.remove(&(pod_ref.uid.clone(), "c".to_string()));
        self.kubelet.handle_event(
            RuntimeEvent::ContainerExited {
                pod: pod_ref,
                container: "c".into(),
                code,
            },
            self.now,
        );
        self.settle();
    }

    /// Run every timer up to `until`.
    pub fn run_until(&mut self, until: Moment) {
        for _ in 0..100_000 {
            match self.kubelet.poll_timeout() {
                Some(w) if w <= until => {
                    self.now = self.now.max(w);
                    self.kubelet.handle_timeout(self.now);
                    self.settle();
                }
                _ => {
                    self.now = self.now.max(until);
                    return;
                }
            }
        }
        panic!("timers did not reach {until}");
    }

    pub fn advance(&mut self, ms: Duration) {
        self.run_until(self.now + ms);
    }

    /// Successful writes matching `f`, with their times.
    pub fn writes_where(&self, f: impl Fn(&Action) -> bool) -> Vec<(Moment, Action)> {
        self.log
            .iter()
            .filter_map(|(t, e)| match e {
                Entry::Action(a, Ok(())) if f(a) => Some((*t, a.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn commands_where(
        &self,
        f: impl Fn(&RuntimeCommand) -> bool,
    ) -> Vec<(Moment, RuntimeCommand)> {
        self.log
            .iter()
            .filter_map(|(t, e)| match e {
                Entry::Command(c) if f(c) => Some((*t, c.clone())),
                _ => None,
            })
            .collect()
    }
}

pub fn is_lease_write(a: &Action) -> bool {
    matches!(
        a,
        Action::Create(Object::Lease(_)) | Action::Update(Object::Lease(_))
    )
}

pub fn is_pod_status(a: &Action) -> bool {
    matches!(a, Action::UpdateStatus(Object::Pod(_)))
}

/// The pod's `Ready` condition status.
pub fn ready(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

pub fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}
