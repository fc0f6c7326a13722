//! The discrete-event driver: one thread, one queue of `(virtual time, seq) -> event`, time
//! jumping to the next event. It owns the API, the controller-manager, every node's kubelet,
//! runtime and kube-proxy, the clients and the timeline, and moves changes and writes between
//! them after the modelled delays.
//!
//! Start at [`World::step`]; nodes are in [`crate::nodes`], load in [`crate::load`], faults in
//! [`crate::faults`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use controllers::{Action, Cache, Change, Kind, Moment, Object, WriteError};
use kubelet::core::{PodRef, RuntimeEvent};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::adapter::Controllers;
use crate::api::SimApi;
use crate::config::SimConfig;
use crate::latency::{Latency, LatencyModel};
use crate::load::{ClientInst, PendingRequest};
use crate::nodes::SimNode;
use crate::queue::Queue;

/// Who issued a write.
#[derive(Clone, Debug)]
pub enum Writer {
    Controller(usize),
    Kubelet { node: usize, inc: u32 },
}

/// Everything that can happen.
pub enum Ev {
    /// An informer change reaches the controller-manager.
    CmDeliver(Change),
    CmWake,
    /// A write reaches the API.
    ApiWrite {
        from: Writer,
        action: Action,
    },
    /// A controller's write failed (its answer arrives).
    CmWriteFailed {
        ctl: usize,
        action: Action,
        error: WriteError,
    },
    /// An informer change reaches a node's kubelet and kube-proxy.
    NodeDeliver {
        node: usize,
        inc: u32,
        change: Change,
    },
    KubeletWake {
        node: usize,
        inc: u32,
    },
    KubeletWriteResult {
        node: usize,
        inc: u32,
        action: Action,
        result: Result<(), WriteError>,
    },
    Runtime {
        node: usize,
        inc: u32,
        event: RuntimeEvent,
    },
    ProbeAnswer {
        node: usize,
        inc: u32,
        id: u64,
        pod: PodRef,
        container: String,
    },
    /// A node's agent starts (first boot, or a restart after a recovery).
    Boot {
        node: usize,
    },
    /// A graceful stop ran out of time: the agent exits anyway.
    AgentExit {
        node: usize,
        inc: u32,
    },
    /// The first model version in node `node`'s proxy inbox reaches its kube-proxy watches
    /// (`crate::nodes`: one such event per node is queued at a time, at the head's
    /// `(time, seq)`).
    ProxyDeliver {
        node: usize,
        inc: u32,
    },
    ProxyWake {
        node: usize,
        inc: u32,
    },
    ProxyApplied {
        node: usize,
        inc: u32,
    },
    /// A change reaches the run's own timeline watches.
    Observe(Change),
    /// A client's next request is due.
    Send {
        client: usize,
    },
    /// A retry of a failed request.
    Attempt {
        client: usize,
        req: PendingRequest,
    },
    Fault(usize),
    /// The scenario's `i`-th zonal-shift action.
    ZonalShift(usize),
    /// The autoshift rule's evaluation.
    AutoshiftTick,
    CheckEnd,
    /// A Kubernetes Event write reaches the API (`crate::events`).
    EventWrite {
        src: crate::events::Source,
        write: controllers::events::EventWrite,
    },
    /// An event recorder's wake-up.
    EventWake {
        src: crate::events::Source,
    },
}

/// Independent random streams, so a change in one model does not shift the others.
pub struct Rngs {
    /// API and watch latencies.
    pub api: ChaCha8Rng,
    /// Runtime, probes, rule application.
    pub node: ChaCha8Rng,
    /// Endpoint choice and request round trips.
    pub data: ChaCha8Rng,
    /// Start-up jitter.
    pub setup: ChaCha8Rng,
}

impl Rngs {
    pub fn new(seed: u64) -> Rngs {
        let stream = |n: u64| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream(n);
            r
        };
        Rngs {
            api: stream(1),
            node: stream(2),
            data: stream(3),
            setup: stream(4),
        }
    }
}

/// Who owns a pod IP now (the modelled network's address table).
#[derive(Clone, Debug)]
pub struct Backend {
    pub node: usize,
    pub uid: String,
    pub pod: String,
}

/// Counts for the benchmark and the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub api_writes: u64,
    pub proxy_syncs: u64,
    /// Events run, by [`Ev::kind`] (index into [`Ev::KINDS`]).
    pub by_kind: [u64; Ev::KINDS.len()],
    /// API writes, by verb and kind ([`Action::verb_and_kind`]).
    pub writes_by_kind: BTreeMap<(&'static str, Kind), u64>,
}

impl Stats {
    /// The events of each kind that ran since `earlier` was taken, largest first, as
    /// `kind count` pairs (kinds that did not run are left out).
    pub fn kinds_since(&self, earlier: &Stats) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Ev::KINDS
            .iter()
            .zip(self.by_kind.iter().zip(earlier.by_kind.iter()))
            .map(|(k, (now, then))| (*k, now - then))
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }
}

impl Ev {
    /// The name of each kind of event, in [`Ev::kind`] order.
    pub const KINDS: [&'static str; 29] = [
        "CmDeliver",
        "CmWake",
        "ApiWrite",
        "CmWriteFailed",
        "NodeDeliver",
        "KubeletWake",
        "KubeletWriteResult",
        "Runtime",
        "ProbeAnswer",
        "Boot",
        "AgentExit",
        "ProxyDeliver",
        "ProxyWake",
        "ProxyApplied",
        "Observe",
        "Send",
        "Attempt",
        "Fault",
        "ZonalShift",
        "AutoshiftTick",
        "CheckEnd",
        "EventWrite",
        "EventWake",
        "ApiWrite:Lease",
        "CmDeliver:Lease",
        "NodeDeliver:Lease",
        "ApiWrite:NodeStatus",
        "deferred:Lease",
        "inline:ProbeAnswer",
    ];

    /// [`Ev::KINDS`] entries for work done without an event of its own (counted in
    /// [`Stats::by_kind`] but not in [`Stats::events`]): a Lease change applied when its
    /// watcher's next event runs, a settled probe answered at once.
    pub const DEFERRED_LEASE: usize = 27;
    pub const INLINE_PROBE: usize = 28;

    /// This event's index into [`Ev::KINDS`] (a Lease write counts apart from other writes).
    pub fn kind(&self) -> usize {
        match self {
            Ev::CmDeliver(c) if matches!(split(c).0, Object::Lease(_)) => 24,
            Ev::CmDeliver(_) => 0,
            Ev::CmWake => 1,
            Ev::ApiWrite { action, .. } if action_is_lease(action) => 23,
            Ev::ApiWrite {
                action: Action::UpdateStatus(Object::Node(_)),
                ..
            } => 26,
            Ev::ApiWrite { .. } => 2,
            Ev::CmWriteFailed { .. } => 3,
            Ev::NodeDeliver { change, .. } if matches!(split(change).0, Object::Lease(_)) => 25,
            Ev::NodeDeliver { .. } => 4,
            Ev::KubeletWake { .. } => 5,
            Ev::KubeletWriteResult { .. } => 6,
            Ev::Runtime { .. } => 7,
            Ev::ProbeAnswer { .. } => 8,
            Ev::Boot { .. } => 9,
            Ev::AgentExit { .. } => 10,
            Ev::ProxyDeliver { .. } => 11,
            Ev::ProxyWake { .. } => 12,
            Ev::ProxyApplied { .. } => 13,
            Ev::Observe(_) => 14,
            Ev::Send { .. } => 15,
            Ev::Attempt { .. } => 16,
            Ev::Fault(_) => 17,
            Ev::ZonalShift(_) => 18,
            Ev::AutoshiftTick => 19,
            Ev::CheckEnd => 20,
            Ev::EventWrite { .. } => 21,
            Ev::EventWake { .. } => 22,
        }
    }
}

/// Whether a write is a Lease's (the kubelets' renewals).
fn action_is_lease(action: &Action) -> bool {
    matches!(
        action,
        Action::Update(Object::Lease(_)) | Action::Create(Object::Lease(_))
    )
}

/// The simulated cluster and its run.
pub struct World {
    pub now: Moment,
    pub queue: Queue<Ev>,
    pub rng: Rngs,
    pub lat: LatencyModel,
    pub cfg: SimConfig,
    pub api: SimApi,
    /// The controller-manager's informer cache and controllers.
    pub cm_cache: Cache,
    pub cm: Controllers,
    cm_wake: Option<Moment>,
    cm_last: Moment,
    /// Lease changes on their way to the controller-manager, by `(time, queue seq)`: no
    /// controller reacts to one (the node lifecycle controller reads renewals from the cache
    /// in its monitor pass), so each is applied when the next controller-manager event runs
    /// (before it, in the order the queue would have run it) instead of as an event of its
    /// own: 5,000 nodes renew 500 times a second.
    cm_leases: std::collections::VecDeque<(Moment, u64, Change)>,
    /// The running event's `(time, queue seq)`.
    pub current: (Moment, u64),
    pub nodes: Vec<SimNode>,
    /// The one endpoint model behind every node's kube-proxy.
    pub proxy_model: crate::proxy::Endpoints,
    /// Proxy syncs -> compact timeline records.
    pub proxy_syncs: crate::proxy::SyncRecorder,
    pub node_by_name: BTreeMap<String, usize>,
    /// Zones and nodes cut off from the API and from other zones.
    pub partitioned_zones: BTreeSet<String>,
    pub partitioned_nodes: BTreeSet<usize>,
    pub ips: BTreeMap<Ipv4Addr, Backend>,
    pub clients: Vec<ClientInst>,
    /// The client nodes' conntrack entries (`crate::conntrack`), one table for all: a tuple
    /// names its client, and each client lives on one node.
    pub conntrack: crate::conntrack::Table,
    /// The Event recorders and the run's Event watch (`crate::events`).
    pub events_model: crate::events::SimEvents,
    /// Target Services (`namespace/name`, sorted).
    pub targets: Vec<String>,
    /// The timeline so far and the requests recorded.
    pub events: Vec<lab::Event>,
    pub requests: Vec<lab::Request>,
    observe_last: Moment,
    obs_nodes: lab::observe::NodeObserver,
    obs_pods: lab::observe::PodObserver,
    obs_slices: lab::observe::SliceObserver,
    pub stats: Stats,
    /// When the run's load starts and, once known, ends (no requests start after it).
    pub t0: Moment,
    pub end: Option<Moment>,
    /// `duration`, `cap` or `capacity-restored`.
    pub ended_by: String,
    /// The scenario's faults in time order.
    pub faults: Vec<scenario::Fault>,
    pub until_capacity_restored: bool,
    /// Zonal-shift actions and the autoshift rule.
    pub zonal: crate::zonal_shift::ZonalShifts,
    scenario: scenario::Scenario,
    seed: u64,
}

impl World {
    pub fn new(s: &scenario::Scenario, seed: u64) -> Result<World, crate::SimError> {
        let cfg = SimConfig::from_scenario(s, seed)?;
        let cm = Controllers::new(cfg.controllers()?);
        let mut targets: Vec<String> = s
            .clients
            .iter()
            .filter_map(|c| c.service_ref())
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect();
        targets.sort();
        targets.dedup();
        Ok(World {
            now: controllers::fake::T0,
            queue: Queue::default(),
            rng: Rngs::new(seed),
            lat: LatencyModel::default(),
            api: SimApi::new(
                cfg.not_ready_toleration_seconds,
                cfg.unreachable_toleration_seconds,
                seed,
            ),
            cfg,
            cm_cache: Cache::new(),
            cm,
            cm_wake: None,
            cm_last: Moment::EPOCH,
            cm_leases: Default::default(),
            current: (Moment::EPOCH, 0),
            nodes: Vec::new(),
            proxy_model: crate::proxy::Endpoints::new(),
            proxy_syncs: Default::default(),
            node_by_name: BTreeMap::new(),
            partitioned_zones: BTreeSet::new(),
            partitioned_nodes: BTreeSet::new(),
            ips: BTreeMap::new(),
            clients: Vec::new(),
            conntrack: crate::conntrack::Table::default(),
            events_model: Default::default(),
            obs_slices: lab::observe::SliceObserver::new(targets.clone()),
            targets,
            events: Vec::new(),
            requests: Vec::new(),
            observe_last: Moment::EPOCH,
            obs_nodes: Default::default(),
            obs_pods: Default::default(),
            stats: Stats::default(),
            t0: Moment::EPOCH,
            end: None,
            ended_by: String::new(),
            faults: s.faults_by_time().into_iter().cloned().collect(),
            until_capacity_restored: s.run.until == Some(scenario::Until::CapacityRestored),
            zonal: crate::zonal_shift::ZonalShifts::new(s),
            scenario: s.clone(),
            seed,
        })
    }

    /// A fault's target in this cluster.
    pub fn scenario_target(&self, f: &scenario::Fault) -> Option<scenario::FaultTarget> {
        self.scenario.fault_target(f)
    }

    /// The run's meta, ending at `end`.
    pub fn meta(&self, end: Moment, ended_by: &str) -> lab::Meta {
        let s = &self.scenario;
        lab::Meta {
            scenario: s.name.clone(),
            mode: "sim".into(),
            seed: self.seed,
            profile: self.cfg.profile.into(),
            proxy_mode: match s.proxy_mode {
                scenario::ProxyMode::Nftables => "nftables".into(),
                scenario::ProxyMode::Iptables => "iptables".into(),
            },
            ended_by: ended_by.into(),
            timers: self.cfg.timers(),
            slo: lab::report::SloTarget {
                availability: s.slo.availability,
                max_error_window_s: s.slo.max_error_window.map(|d| d.as_secs_f64()),
            },
            node_zones: self
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.zone.clone()))
                .collect(),
            services: self.targets.clone(),
            t0_ms: self.t0.as_millis() as f64,
            end_ms: end.as_millis() as f64,
            control_plane: Some(lab::report::ControlPlaneSetup {
                store: "embedded".into(),
                members: 1,
                member_zones: Vec::new(),
            }),
        }
    }

    /// A draw from `l` on the API stream.
    pub fn api_delay(&mut self, l: Latency) -> Duration {
        l.sample(&mut self.rng.api)
    }

    /// Record a timeline event at `at`.
    pub fn record(&mut self, at: Moment, kind: lab::EventKind) {
        self.events.push(lab::Event {
            at: at.as_millis() as f64,
            kind,
        });
    }

    /// The controller-manager's informers have listed what the API holds now.
    pub fn start_control_plane(&mut self) {
        self.cm_cache = self.api.fake.cache.clone();
        let now = self.now;
        self.cm.synced(&self.cm_cache, now);
        self.cm_after();
    }

    /// Run the next event; false when none is left.
    pub fn step(&mut self) -> bool {
        let Some((at, seq, ev)) = self.queue.pop_keyed() else {
            return false;
        };
        self.current = (at, seq);
        self.now = self.now.max(at);
        self.stats.events += 1;
        self.stats.by_kind[ev.kind()] += 1;
        self.handle(at, ev);
        true
    }

    /// Run every event before `until`, then set the clock to it.
    pub fn run_until(&mut self, until: Moment) {
        while self.queue.peek_time().is_some_and(|t| t < until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    fn handle(&mut self, at: Moment, ev: Ev) {
        if matches!(ev, Ev::CmDeliver(_) | Ev::CmWake | Ev::CmWriteFailed { .. }) {
            self.cm_catch_up();
        }
        match ev {
            Ev::CmDeliver(change) => self.cm_deliver(change),
            Ev::CmWake => {
                if self.cm_wake == Some(at) {
                    self.cm_wake = None;
                    let now = self.now;
                    self.cm.timeout(&self.cm_cache, now);
                    self.cm_after();
                }
            }
            Ev::ApiWrite { from, action } => self.api_write(from, action),
            Ev::CmWriteFailed { ctl, action, error } => {
                let now = self.now;
                self.cm.write_failed(ctl, &action, &error, now);
                self.cm_after();
            }
            Ev::Observe(change) => self.observe(change),
            Ev::Send { client } => self.send(client),
            Ev::Attempt { client, req } => self.attempt(client, req),
            Ev::Fault(i) => self.inject(i),
            Ev::ZonalShift(i) => self.zonal_shift(i),
            Ev::AutoshiftTick => self.autoshift_tick(),
            Ev::CheckEnd => self.check_end(),
            Ev::EventWrite { src, write } => self.event_write(src, write),
            Ev::EventWake { src } => self.event_wake(src, at),
            other => self.handle_node(at, other),
        }
    }

    /// After the controllers ran: send their writes, reschedule their wake-up.
    fn cm_after(&mut self) {
        let mut actions = Vec::new();
        let mut recorded = Vec::new();
        self.cm.poll(&mut actions, &mut recorded);
        self.record_events(crate::events::Source::ControllerManager, recorded);
        for (i, action) in actions {
            let d = self.api_delay(self.lat.api_write);
            self.queue.push(
                self.now + d,
                Ev::ApiWrite {
                    from: Writer::Controller(i),
                    action,
                },
            );
        }
        if let Some(w) = self.cm.next_wakeup() {
            let w = w.max(self.now);
            if self.cm_wake != Some(w) {
                self.cm_wake = Some(w);
                self.queue.push(w, Ev::CmWake);
            }
        }
    }

    /// Apply the Lease changes that reached the controller-manager before the running event.
    fn cm_catch_up(&mut self) {
        while let Some((at, change)) = crate::queue::pop_before(&mut self.cm_leases, self.current) {
            self.stats.by_kind[Ev::DEFERRED_LEASE] += 1;
            self.cm_apply(&change, at);
        }
    }

    /// One change into the controller-manager's cache and controllers, at `at`.
    fn cm_apply(&mut self, change: &Change, at: Moment) {
        let (obj, deleted) = split(change);
        let applied = self.cm_cache.apply(obj.clone(), deleted);
        self.cm.change(&self.cm_cache, &applied, at);
    }

    fn cm_deliver(&mut self, change: Change) {
        self.cm_apply(&change, self.now);
        self.cm_after();
    }

    fn api_write(&mut self, from: Writer, action: Action) {
        let now = self.now;
        self.stats.api_writes += 1;
        *self
            .stats
            .writes_by_kind
            .entry(action.verb_and_kind())
            .or_default() += 1;
        let result = self.api.execute(&action, now);
        // The log is for tests of the fake; a long run would grow it without bound.
        self.api.fake.log.clear();
        let short = result.as_ref().map(|_| ()).map_err(Clone::clone);
        if let Ok(changes) = result {
            for change in changes {
                self.broadcast(change);
            }
        }
        match from {
            Writer::Controller(ctl) => {
                if let Err(error) = short {
                    self.queue
                        .push(now, Ev::CmWriteFailed { ctl, action, error });
                }
            }
            Writer::Kubelet { node, inc } => self.queue.push(
                now,
                Ev::KubeletWriteResult {
                    node,
                    inc,
                    action,
                    result: short,
                },
            ),
        }
    }

    /// A committed change goes to every watcher that lists its kind, in commit order per
    /// watcher, each after its own delivery delay.
    pub fn broadcast(&mut self, change: Change) {
        let kind = change.object().kind();
        let d = self.api_delay(self.lat.watch_delivery);
        self.cm_last = self.cm_last.max(self.now + d);
        if kind == Kind::Lease {
            let seq = self.queue.reserve();
            self.cm_leases
                .push_back((self.cm_last, seq, change.clone()));
        } else {
            self.queue.push(self.cm_last, Ev::CmDeliver(change.clone()));
        }
        if matches!(kind, Kind::Node | Kind::Pod | Kind::EndpointSlice) {
            let d = self.api_delay(self.lat.watch_delivery);
            self.observe_last = self.observe_last.max(self.now + d);
            self.queue
                .push(self.observe_last, Ev::Observe(change.clone()));
        }
        if matches!(kind, Kind::Service | Kind::EndpointSlice) {
            // Applied to the shared model once, at commit; each node hears of the new
            // version after its own watch delay.
            if let Some(mc) = self.proxy_model.change(&change) {
                for n in 0..self.nodes.len() {
                    self.deliver_model_change(n, mc.clone());
                }
                self.forget_old_versions();
            }
            return;
        }
        for n in self.watchers_of(&change) {
            self.deliver_to_node(n, change.clone());
        }
    }

    /// The nodes whose kubelet or kube-proxy watches this change.
    fn watchers_of(&self, change: &Change) -> Vec<usize> {
        let (obj, _) = split(change);
        let by_name = |name: Option<&str>| {
            name.and_then(|n| self.node_by_name.get(n).copied())
                .into_iter()
                .collect()
        };
        match obj {
            Object::Node(n) => by_name(n.metadata.name.as_deref()),
            Object::Lease(l)
                if l.metadata.namespace.as_deref() == Some(kubelet::core::LEASE_NAMESPACE) =>
            {
                by_name(l.metadata.name.as_deref())
            }
            Object::Pod(p) => {
                let bound = |p: &k8s_openapi::api::core::v1::Pod| {
                    p.spec.as_ref().and_then(|s| s.node_name.clone())
                };
                let mut name = bound(p);
                if name.is_none()
                    && let Change::Applied {
                        old: Some(Object::Pod(o)),
                        ..
                    } = change
                {
                    name = bound(o);
                }
                by_name(name.as_deref())
            }
            _ => Vec::new(),
        }
    }

    fn observe(&mut self, change: Change) {
        let (obj, deleted) = split(&change);
        let mut out = Vec::new();
        match obj {
            Object::Node(n) if !deleted => self.obs_nodes.changed(n, &mut out),
            Object::Node(n) => self.obs_nodes.gone(&lab::observe::key_of(&n.metadata)),
            Object::Pod(p) => self.obs_pods.changed(p, deleted, &mut out),
            Object::EndpointSlice(s) => self.obs_slices.changed(s, deleted, &mut out),
            _ => {}
        }
        let now = self.now;
        for kind in out {
            self.record(now, kind);
        }
    }

    /// The run's records and bookkeeping outside the components, taken out one part at a
    /// time in this order, each named (the start-up bench drops them one by one to attribute
    /// the heap). Leaves empty parts behind; the world is not to be run afterwards.
    pub fn take_records(&mut self) -> Vec<(&'static str, Box<dyn std::any::Any>)> {
        let mut events = std::mem::take(&mut self.events_model);
        let recorders = std::mem::take(&mut events.recorders);
        vec![
            ("Event recorders (one per process)", Box::new(recorders)),
            ("Event watch (created Events kept)", Box::new(events)),
            ("pod observer", Box::new(std::mem::take(&mut self.obs_pods))),
            (
                "node observer",
                Box::new(std::mem::take(&mut self.obs_nodes)),
            ),
            (
                "slice observer",
                Box::new(std::mem::replace(
                    &mut self.obs_slices,
                    lab::observe::SliceObserver::new(Vec::new()),
                )),
            ),
            (
                "proxy-sync recorder",
                Box::new(std::mem::take(&mut self.proxy_syncs)),
            ),
            ("address table", Box::new(std::mem::take(&mut self.ips))),
            ("requests", Box::new(std::mem::take(&mut self.requests))),
            ("conntrack", Box::new(std::mem::take(&mut self.conntrack))),
            (
                "node names",
                Box::new(std::mem::take(&mut self.node_by_name)),
            ),
        ]
    }

    /// Whether node `n` is cut off from the API (a partition of it or its zone).
    pub fn cut_off(&self, n: usize) -> bool {
        self.partitioned_nodes.contains(&n) || self.partitioned_zones.contains(&self.nodes[n].zone)
    }

    /// Whether packets pass between nodes `a` and `b` (both powered).
    pub fn connected(&self, a: usize, b: usize) -> bool {
        if a == b {
            return true;
        }
        if self.partitioned_nodes.contains(&a) || self.partitioned_nodes.contains(&b) {
            return false;
        }
        let (za, zb) = (&self.nodes[a].zone, &self.nodes[b].zone);
        za == zb || !(self.partitioned_zones.contains(za) || self.partitioned_zones.contains(zb))
    }
}

/// The object a change carries and whether it was deleted.
pub fn split(change: &Change) -> (&Object, bool) {
    match change {
        Change::Applied { new, .. } => (new, false),
        Change::Deleted(o) => (o, true),
    }
}
