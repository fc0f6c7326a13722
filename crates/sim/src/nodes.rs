//! The simulated nodes: one `kubelet::core::Kubelet` each with a modelled pod runtime (network
//! and container start after delays, probes that succeed while the container runs), and one
//! kube-proxy ([`crate::proxy::ProxyNode`]); their informer feeds, power and restarts.
//!
//! Start at [`World::add_node`] and [`World::handle_node`].

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use controllers::{Action, Change, Moment, Object};
use kubelet::core::{Kubelet, KubeletConfig, ProbeOutcome, RuntimeCommand, RuntimeEvent, Signal};

use crate::proxy::ProxyNode;
use crate::world::{Backend, Ev, World, Writer};
use proxy::shared_model::ModelChange;

/// Whether a node's machine and agent run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    On,
    /// Graceful stop under way: the kubelet drains its pods.
    Stopping,
    /// The agent exited after a graceful stop (the machine is up, nothing runs).
    Stopped,
    Off,
}

/// A pod as the node's runtime holds it.
#[derive(Clone, Debug, Default)]
pub struct PodRt {
    pub ip: Option<Ipv4Addr>,
    pub running: Running,
}

/// The names of a pod's running containers: a set kept as a sorted `Vec` (a pod runs one
/// or a few; a `BTreeSet`'s first node alone is about 300 bytes, for every pod of the run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Running(Vec<String>);

impl Running {
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|c| c == name)
    }

    /// Add `name`; false when it was there already.
    pub fn insert(&mut self, name: String) -> bool {
        match self.0.binary_search(&name) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, name);
                true
            }
        }
    }

    /// Remove `name`; false when it was not there.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.0.iter().position(|c| c == name) {
            Some(at) => {
                self.0.remove(at);
                true
            }
            None => false,
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One simulated node.
pub struct SimNode {
    pub name: String,
    pub zone: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
    /// Bumped at every power change: events of an earlier life are dropped.
    pub inc: u32,
    pub power: Power,
    pub kubelet: Option<Kubelet>,
    pub proxy: Option<ProxyNode>,
    /// Runtime state by pod UID.
    pub pods: BTreeMap<String, PodRt>,
    kubelet_wake: Option<Moment>,
    proxy_wake: Option<Moment>,
    /// When the rule sync in flight is in the kernel.
    proxy_applied_at: Option<Moment>,
    /// Latest delivery scheduled to this node (its watches deliver in order).
    last_delivery: Moment,
    /// Changes held while the node is cut off from the API (delivered when it heals, as a
    /// watch resumes).
    pub backlog: Vec<Change>,
    /// Model changes held for the kube-proxy's watches while cut off.
    pub proxy_backlog: Vec<Arc<ModelChange>>,
    /// Model changes on their way to the kube-proxy's watches, by `(time, queue seq)`: only
    /// the head is in the event queue (every model change goes to every node, so the queue
    /// would otherwise hold nodes x changes in flight).
    proxy_inbox: VecDeque<(Moment, u64, Arc<ModelChange>)>,
    /// The node's own Lease changes on their way to its kubelet's watch, by `(time, queue
    /// seq)`: the kubelet only caches them (a renewal starts from the cached copy), so each
    /// is applied before the node's next event instead of as an event of its own.
    lease_inbox: VecDeque<(Moment, u64, Change)>,
    next_pid: u32,
}

/// Entries a drained proxy inbox keeps room for (see [`World::proxy_deliver`]).
const INBOX_KEPT: usize = 64;

/// Whether a probe of `container` in pod `uid` on `node` succeeds now: its network is up and
/// the container runs.
fn probe_succeeds(node: &SimNode, uid: &str, container: &str) -> bool {
    node.pods
        .get(uid)
        .is_some_and(|rt| rt.ip.is_some() && rt.running.contains(container))
}

/// Pod CIDRs are `/24`s of 100.64.0.0/10 (room for 16,384 nodes).
const POD_NETWORK_BASE: u32 = u32::from_be_bytes([100, 64, 0, 0]);
/// Node addresses count up from 172.16.0.11 (inside 172.16.0.0/12).
const NODE_IP_BASE: u32 = u32::from_be_bytes([172, 16, 0, 11]);

impl World {
    /// Add node `index` (0-based over the cluster) named `name` in `zone`; it boots at `at`.
    pub fn add_node(&mut self, name: String, zone: &str, at: Moment) {
        let n = self.nodes.len();
        let cidr_base = std::net::Ipv4Addr::from(POD_NETWORK_BASE + (n as u32) * 256);
        self.nodes.push(SimNode {
            name: name.clone(),
            zone: zone.to_string(),
            ip: Ipv4Addr::from(NODE_IP_BASE + n as u32),
            pod_cidr: format!("{cidr_base}/24"),
            inc: 0,
            power: Power::Off,
            kubelet: None,
            proxy: None,
            pods: BTreeMap::new(),
            kubelet_wake: None,
            proxy_wake: None,
            proxy_applied_at: None,
            last_delivery: Moment::from_millis(0),
            backlog: Vec::new(),
            proxy_backlog: Vec::new(),
            proxy_inbox: VecDeque::new(),
            lease_inbox: VecDeque::new(),
            next_pid: 1000,
        });
        self.node_by_name.insert(name, n);
        self.queue.push(at, Ev::Boot { node: n });
    }

    fn kubelet_config(&self, n: usize) -> KubeletConfig {
        let node = &self.nodes[n];
        KubeletConfig {
            node_name: node.name.clone(),
            zone: node.zone.clone(),
            node_ip: node.ip,
            pod_cidr: node.pod_cidr.clone(),
            ..self.cfg.kubelet.clone()
        }
    }

    /// Start node `n`'s agent: a fresh kubelet and kube-proxy whose informers list what the
    /// API holds now.
    pub fn boot(&mut self, n: usize) {
        let cfg = self.kubelet_config(n);
        let Ok(mut k) = Kubelet::new(cfg) else {
            return;
        };
        let mut proxy = ProxyNode::new(
            self.cfg.syncer.pacing(),
            &self.nodes[n].name,
            self.nodes[n].ip,
            Some(&self.nodes[n].zone),
            self.proxy_model.version(),
        );
        let now = self.now;
        let name = self.nodes[n].name.clone();
        let truth = &self.api.fake.cache;
        let mut listed: Vec<Object> = Vec::new();
        listed.extend(truth.nodes.get(&name).map(|o| Object::Node(o.clone())));
        listed.extend(
            truth
                .leases
                .get(&controllers::Key::new(
                    kubelet::core::LEASE_NAMESPACE,
                    &name,
                ))
                .map(|o| Object::Lease(o.clone())),
        );
        listed.extend(truth.pods_on_node(&name).map(|p| Object::Pod(p.clone())));
        for obj in listed {
            k.handle_change(
                &Change::Applied {
                    new: obj,
                    old: None,
                },
                now,
            );
        }
        k.handle_synced(now);
        proxy.synced(now);
        let node = &mut self.nodes[n];
        node.inc += 1;
        node.power = Power::On;
        node.kubelet = Some(k);
        node.proxy = Some(proxy);
        node.kubelet_wake = None;
        node.proxy_wake = None;
        node.proxy_applied_at = None;
        node.backlog.clear();
        node.proxy_backlog.clear();
        node.proxy_inbox.clear();
        node.lease_inbox.clear();
        node.last_delivery = now;
        self.kubelet_after(n);
        self.proxy_after(n);
    }

    /// The machine loses power: processes and pods gone, packets dropped.
    pub fn power_off(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.inc += 1;
        node.power = Power::Off;
        self.stop_processes(n);
    }

    /// The agent's processes and every pod on the node end.
    fn stop_processes(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.kubelet = None;
        node.proxy = None;
        node.kubelet_wake = None;
        node.proxy_wake = None;
        node.proxy_applied_at = None;
        node.backlog.clear();
        node.proxy_backlog.clear();
        node.proxy_inbox.clear();
        node.lease_inbox.clear();
        let pods = std::mem::take(&mut node.pods);
        for rt in pods.values() {
            if let Some(ip) = rt.ip {
                self.ips.remove(&ip);
            }
        }
    }

    /// Begin a graceful stop of node `n`'s agent.
    pub fn graceful_stop(&mut self, n: usize) {
        let now = self.now;
        let bound = self.cfg.kubelet.shutdown_grace_period + Duration::from_millis(5_000);
        let node = &mut self.nodes[n];
        if node.power != Power::On {
            return;
        }
        self.lease_catch_up(n);
        let node = &mut self.nodes[n];
        let Some(k) = node.kubelet.as_mut() else {
            return;
        };
        k.begin_shutdown(now);
        node.power = Power::Stopping;
        let inc = node.inc;
        self.queue.push(now + bound, Ev::AgentExit { node: n, inc });
        self.kubelet_after(n);
    }

    /// Schedule `change` to node `n`'s informers (held while it is cut off).
    pub fn deliver_to_node(&mut self, n: usize, change: Change) {
        if !matches!(self.nodes[n].power, Power::On | Power::Stopping) {
            return;
        }
        if self.cut_off(n) {
            self.nodes[n].backlog.push(change);
            return;
        }
        let (at, inc) = self.delivery_slot(n);
        if matches!(crate::world::split(&change).0, Object::Lease(_)) {
            let seq = self.queue.reserve();
            self.nodes[n].lease_inbox.push_back((at, seq, change));
            return;
        }
        self.queue.push(
            at,
            Ev::NodeDeliver {
                node: n,
                inc,
                change,
            },
        );
    }

    /// Hand node `n`'s kubelet the Lease changes that reached it before the running event.
    fn lease_catch_up(&mut self, n: usize) {
        let current = self.current;
        let node = &mut self.nodes[n];
        while let Some((at, change)) = crate::queue::pop_before(&mut node.lease_inbox, current) {
            self.stats.by_kind[Ev::DEFERRED_LEASE] += 1;
            if let Some(k) = node.kubelet.as_mut() {
                k.handle_change(&change, at);
            }
        }
    }

    /// Schedule a shared-model change to node `n`'s kube-proxy watches (held while it is
    /// cut off).
    pub fn deliver_model_change(&mut self, n: usize, change: Arc<ModelChange>) {
        if !matches!(self.nodes[n].power, Power::On | Power::Stopping) {
            return;
        }
        if self.cut_off(n) {
            self.nodes[n].proxy_backlog.push(change);
            return;
        }
        let (at, inc) = self.delivery_slot(n);
        let seq = self.queue.reserve();
        let inbox = &mut self.nodes[n].proxy_inbox;
        inbox.push_back((at, seq, change));
        if inbox.len() == 1 {
            self.queue
                .push_at(at, seq, Ev::ProxyDeliver { node: n, inc });
        }
    }

    /// The head of node `n`'s proxy inbox is delivered now. The changes after it that arrive
    /// while the proxy could do nothing but note their version (a change pending, no sync
    /// able to start before they all arrived) are taken at once: the same outcome as one
    /// event each. Then the next head is queued.
    fn proxy_deliver(&mut self, n: usize) {
        let Some((_, _, change)) = self.nodes[n].proxy_inbox.pop_front() else {
            return;
        };
        if let Some(p) = self.nodes[n].proxy.as_mut() {
            p.change(&change);
        }
        self.proxy_after(n);
        let node = &mut self.nodes[n];
        if let Some(p) = node.proxy.as_mut()
            && let Some(until) = p.absorbs_until(node.proxy_applied_at)
        {
            while let Some((at, _, change)) = node.proxy_inbox.front()
                && *at < until
            {
                p.change(change);
                node.proxy_inbox.pop_front();
            }
        }
        // A burst (a run's Services, created at one instant, reach every node) leaves the
        // buffer at its peak, per node: give most of it back as it drains.
        let inbox = &mut node.proxy_inbox;
        if inbox.capacity() > INBOX_KEPT && inbox.len() <= inbox.capacity() / 4 {
            inbox.shrink_to(INBOX_KEPT.max(inbox.len() * 2));
        }
        if let Some(&(at, seq, _)) = node.proxy_inbox.front() {
            let inc = node.inc;
            self.queue
                .push_at(at, seq, Ev::ProxyDeliver { node: n, inc });
        }
    }

    /// When the next change to node `n` arrives (its watches deliver in order).
    fn delivery_slot(&mut self, n: usize) -> (Moment, u32) {
        let d = self.api_delay(self.lat.watch_delivery);
        let node = &mut self.nodes[n];
        node.last_delivery = node.last_delivery.max(self.now + d);
        (node.last_delivery, node.inc)
    }

    /// No node programs a model version older than the oldest one delivered to a running
    /// proxy: forget the older snapshots (checked once 64 versions are kept).
    pub fn forget_old_versions(&mut self) {
        if self.proxy_model.kept() < 64 {
            return;
        }
        let oldest = self
            .nodes
            .iter()
            .filter_map(|n| n.proxy.as_ref().map(|p| p.delivered()))
            .min()
            .unwrap_or_else(|| self.proxy_model.version());
        self.proxy_model.forget_before(oldest);
        self.proxy_syncs.forget_before(oldest);
    }

    /// Node `n` reaches the API again: its watches resume with what they missed.
    pub fn heal(&mut self, n: usize) {
        let held = std::mem::take(&mut self.nodes[n].backlog);
        for change in held {
            self.deliver_to_node(n, change);
        }
        let held = std::mem::take(&mut self.nodes[n].proxy_backlog);
        for change in held {
            self.deliver_model_change(n, change);
        }
    }

    pub fn handle_node(&mut self, at: Moment, ev: Ev) {
        if let Ev::Boot { node } = ev {
            if matches!(self.nodes[node].power, Power::Off | Power::Stopped) {
                self.boot(node);
            }
            return;
        }
        let (n, inc) = match &ev {
            Ev::NodeDeliver { node, inc, .. }
            | Ev::ProxyDeliver { node, inc, .. }
            | Ev::KubeletWake { node, inc }
            | Ev::KubeletWriteResult { node, inc, .. }
            | Ev::Runtime { node, inc, .. }
            | Ev::ProbeAnswer { node, inc, .. }
            | Ev::AgentExit { node, inc }
            | Ev::ProxyWake { node, inc }
            | Ev::ProxyApplied { node, inc } => (*node, *inc),
            _ => return,
        };
        if inc != self.nodes[n].inc {
            return;
        }
        self.lease_catch_up(n);
        let now = self.now;
        match ev {
            Ev::NodeDeliver { change, .. } => self.node_change(n, &change),
            Ev::ProxyDeliver { .. } => self.proxy_deliver(n),
            Ev::KubeletWake { .. } if self.nodes[n].kubelet_wake == Some(at) => {
                self.nodes[n].kubelet_wake = None;
                if let Some(k) = self.nodes[n].kubelet.as_mut() {
                    k.handle_timeout(now);
                }
                self.kubelet_after(n);
            }
            Ev::KubeletWriteResult { action, result, .. } => {
                if let Some(k) = self.nodes[n].kubelet.as_mut() {
                    k.handle_write_result(&action, result, now);
                }
                self.kubelet_after(n);
            }
            Ev::Runtime { event, .. } => {
                self.runtime_applies(n, &event);
                if let Some(k) = self.nodes[n].kubelet.as_mut() {
                    k.handle_event(event, now);
                }
                self.kubelet_after(n);
            }
            Ev::ProbeAnswer {
                id, pod, container, ..
            } => self.probe_answer(n, id, &pod.uid, &container),
            Ev::AgentExit { .. } if self.nodes[n].power == Power::Stopping => self.agent_exit(n),
            Ev::ProxyWake { .. } if self.nodes[n].proxy_wake == Some(at) => {
                self.nodes[n].proxy_wake = None;
                self.proxy_after(n);
            }
            Ev::ProxyApplied { .. } => self.proxy_applied(n),
            _ => {}
        }
    }

    /// An informer change reaches node `n`: Services and slices feed its kube-proxy, the
    /// rest its kubelet.
    fn node_change(&mut self, n: usize, change: &Change) {
        let now = self.now;
        let node = &mut self.nodes[n];
        if let Some(k) = node.kubelet.as_mut() {
            k.handle_change(change, now);
            self.kubelet_after(n);
        }
    }

    /// A probe's answer: success while the container runs in a pod with its network.
    fn probe_answer(&mut self, n: usize, id: u64, uid: &str, container: &str) {
        let now = self.now;
        let outcome = if probe_succeeds(&self.nodes[n], uid, container) {
            ProbeOutcome::Success
        } else {
            ProbeOutcome::Failure("connect: connection refused".into())
        };
        if let Some(k) = self.nodes[n].kubelet.as_mut() {
            k.handle_probe_result(id, outcome, now);
        }
        self.kubelet_after(n);
    }

    /// Node `n`'s rule transaction is in the kernel: record the sync, start the next.
    fn proxy_applied(&mut self, n: usize) {
        let now = self.now;
        let node = &mut self.nodes[n];
        node.proxy_applied_at = None;
        let record = node
            .proxy
            .as_mut()
            .and_then(|p| p.applied(now, &node.name, &self.targets, &mut self.proxy_syncs));
        if let Some(kind) = record {
            self.stats.proxy_syncs += 1;
            self.record(now, kind);
        }
        self.proxy_after(n);
    }

    /// The agent of a gracefully stopped node exits (its pods are gone by now, or killed).
    fn agent_exit(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.inc += 1;
        node.power = Power::Stopped;
        self.stop_processes(n);
    }

    /// A runtime report takes effect on the modelled machine before the kubelet hears it.
    fn runtime_applies(&mut self, n: usize, event: &RuntimeEvent) {
        match event {
            RuntimeEvent::PodNetworkReady { pod, ip } => {
                self.nodes[n].pods.entry(pod.uid.clone()).or_default().ip = Some(*ip);
                self.ips.insert(
                    *ip,
                    Backend {
                        node: n,
                        uid: pod.uid.clone(),
                        pod: pod.key.name.clone(),
                    },
                );
            }
            RuntimeEvent::ContainerStarted { pod, container, .. } => {
                if let Some(rt) = self.nodes[n].pods.get_mut(&pod.uid) {
                    rt.running.insert(container.clone());
                }
            }
            RuntimeEvent::PodNetworkTornDown { pod } => {
                if let Some(rt) = self.nodes[n].pods.remove(&pod.uid)
                    && let Some(ip) = rt.ip
                    && self.ips.get(&ip).is_some_and(|b| b.uid == pod.uid)
                {
                    self.ips.remove(&ip);
                }
            }
            _ => {}
        }
    }

    /// After the kubelet ran: its writes, runtime commands, probes; its next wake-up.
    fn kubelet_after(&mut self, n: usize) {
        let now = self.now;
        let inc = self.nodes[n].inc;
        let cut = self.cut_off(n);
        let Some(k) = self.nodes[n].kubelet.as_mut() else {
            return;
        };
        let mut actions = Vec::new();
        while let Some(a) = k.poll_action() {
            actions.push(a);
        }
        let mut commands = Vec::new();
        while let Some(c) = k.poll_command() {
            commands.push(c);
        }
        let mut probes = Vec::new();
        while let Some(p) = k.poll_probe() {
            probes.push(p);
        }
        let mut recorded = Vec::new();
        while let Some(e) = k.poll_event() {
            recorded.push(e);
        }
        self.record_events(crate::events::Source::Kubelet(n), recorded);
        for action in actions {
            self.kubelet_write(n, inc, action, cut);
        }
        for c in commands {
            self.run_command(n, inc, c);
        }
        for p in probes {
            let d = self.lat.probe.sample(&mut self.rng.node);
            // The answer is the container's state when the probe reaches it. When a success
            // changes nothing (the steady state), it is handed back now rather than after
            // the round trip `d`: nothing the kubelet reports depends on when it arrives.
            let node = &mut self.nodes[n];
            if probe_succeeds(node, &p.pod.uid, &p.container)
                && let Some(k) = node.kubelet.as_mut()
                && k.probe_settled(p.id)
            {
                k.handle_probe_result(p.id, ProbeOutcome::Success, now);
                self.stats.by_kind[Ev::INLINE_PROBE] += 1;
                continue;
            }
            self.queue.push(
                now + d,
                Ev::ProbeAnswer {
                    node: n,
                    inc,
                    id: p.id,
                    pod: p.pod,
                    container: p.container,
                },
            );
        }
        let Some(k) = self.nodes[n].kubelet.as_mut() else {
            return;
        };
        let wake = k.poll_timeout();
        let done = k.shutdown_complete();
        if done && self.nodes[n].power == Power::Stopping {
            self.agent_exit(n);
            return;
        }
        if let Some(w) = wake {
            let w = w.max(now);
            if self.nodes[n].kubelet_wake != Some(w) {
                self.nodes[n].kubelet_wake = Some(w);
                self.queue.push(w, Ev::KubeletWake { node: n, inc });
            }
        }
    }

    fn kubelet_write(&mut self, n: usize, inc: u32, action: Action, cut: bool) {
        if cut {
            let at = self.now + self.lat.unreachable_write_timeout;
            let result = Err(controllers::WriteError::Other(
                "dial tcp: i/o timeout (the API is unreachable from this node)".into(),
            ));
            self.queue.push(
                at,
                Ev::KubeletWriteResult {
                    node: n,
                    inc,
                    action,
                    result,
                },
            );
            return;
        }
        let d = self.api_delay(self.lat.api_write);
        self.queue.push(
            self.now + d,
            Ev::ApiWrite {
                from: Writer::Kubelet { node: n, inc },
                action,
            },
        );
    }

    /// The modelled runtime: every command answers after its delay.
    fn run_command(&mut self, n: usize, inc: u32, c: RuntimeCommand) {
        let lat = self.lat.clone();
        let rng = &mut self.rng.node;
        let (delay, event) = match c {
            RuntimeCommand::SetupNetwork { pod, ip } => (
                lat.pod_network_setup.sample(rng),
                RuntimeEvent::PodNetworkReady { pod, ip },
            ),
            RuntimeCommand::StartContainer { pod, container, .. } => {
                let node = &mut self.nodes[n];
                node.next_pid += 1;
                (
                    lat.container_start.sample(rng),
                    RuntimeEvent::ContainerStarted {
                        pod,
                        container: container.name.clone(),
                        pid: node.next_pid,
                    },
                )
            }
            RuntimeCommand::Signal {
                pod,
                container,
                signal,
            } => {
                let running = self.nodes[n]
                    .pods
                    .get_mut(&pod.uid)
                    .is_some_and(|rt| rt.running.remove(&container));
                if !running {
                    return;
                }
                let code = match signal {
                    Signal::Term => 143,
                    Signal::Kill => 137,
                };
                (
                    lat.container_stop.sample(rng),
                    RuntimeEvent::ContainerExited {
                        pod,
                        container,
                        code,
                    },
                )
            }
            RuntimeCommand::TeardownNetwork { pod } => {
                if let Some(rt) = self.nodes[n].pods.get_mut(&pod.uid) {
                    rt.running.clear();
                }
                (
                    lat.pod_network_teardown.sample(rng),
                    RuntimeEvent::PodNetworkTornDown { pod },
                )
            }
            RuntimeCommand::RemoveLogs { .. } => return,
        };
        self.queue.push(
            self.now + delay,
            Ev::Runtime {
                node: n,
                inc,
                event,
            },
        );
    }

    /// After the proxy was fed or woke: start a due sync, reschedule.
    fn proxy_after(&mut self, n: usize) {
        let now = self.now;
        let node = &mut self.nodes[n];
        let inc = node.inc;
        let Some(p) = node.proxy.as_mut() else {
            return;
        };
        if p.poll(now, &self.proxy_model) {
            let d = self.lat.rule_apply.sample(&mut self.rng.node);
            node.proxy_applied_at = Some(now + d);
            self.queue.push(now + d, Ev::ProxyApplied { node: n, inc });
        }
        if let Some(w) = p.next_wakeup() {
            let w = w.max(now);
            if self.nodes[n].proxy_wake != Some(w) {
                self.nodes[n].proxy_wake = Some(w);
                self.queue.push(w, Ev::ProxyWake { node: n, inc });
            }
        }
    }

    /// Whether pod `uid` on node `n` is answering (its network is up and a container runs).
    pub fn serving(&self, n: usize, uid: &str) -> Option<bool> {
        let rt = self.nodes[n].pods.get(uid)?;
        rt.ip?;
        Some(!rt.running.is_empty())
    }

    /// Node `n`'s name and zone.
    pub fn node_ref(&self, n: usize) -> (&str, &str) {
        (&self.nodes[n].name, &self.nodes[n].zone)
    }
}
