//! The balancer's sans-IO core: registers targets, schedules their health checks, counts the
//! results into ELBv2 target states, drains deregistered targets, and reports every state
//! change of a target or an LB node as an [`Event`]. Time is passed in; nothing here does I/O.
//!
//! Start at [`Balancer::new`], then the calling convention every zonelab component shares:
//! [`Balancer::handle_timeout`] at [`Balancer::poll_timeout`], [`Balancer::poll_probe`] for the
//! checks to run, [`Balancer::handle_probe_result`] with their outcome, [`Balancer::poll_event`]
//! for what changed, and [`Balancer::routes`] for the data path.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{
    BalancerConfig, ConfigError, HealthPort, HealthProtocol, TargetConfig, TargetGroupConfig,
};
use crate::routing::{self, NodeState, Routes, TargetView};
use crate::target::{ProbeOutcome, Reason, TargetHealth, TargetKey, TargetState};
use crate::time::Time;

/// A health check to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    pub id: u64,
    pub group: String,
    pub target: TargetKey,
    /// Where to connect: the target's IP and the health-check port.
    pub addr: SocketAddrV4,
    /// `None`: TCP connect; `Some(path)`: HTTP GET of `path`.
    pub http_path: Option<String>,
    /// The GET goes over TLS (an HTTPS check; the certificate is not verified).
    pub tls: bool,
    /// Give up after this long (the core counts a missing answer as a timeout at the same time).
    pub timeout: Duration,
}

/// What the driver saw when it ran a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeReport {
    /// The TCP connection was established (and, for HTTP, closed before a response).
    Connected,
    /// An HTTP response arrived with this status code.
    HttpStatus(u16),
    /// Refused, reset, unreachable, malformed: the detail.
    Failed(String),
    /// No answer within the timeout.
    TimedOut,
}

/// What happened, for the status file: a target's or a node's state changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: Time,
    #[serde(flatten)]
    pub record: Record,
}

/// A state change. `from` is absent for a target or node seen for the first time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Record {
    Target {
        group: String,
        target: String,
        zone: String,
        #[serde(default)]
        from: Option<TargetState>,
        to: TargetState,
        #[serde(default)]
        reason: Option<Reason>,
        #[serde(default)]
        description: Option<String>,
    },
    Node {
        address: Ipv4Addr,
        #[serde(default)]
        zone: Option<String>,
        #[serde(default)]
        from: Option<NodeState>,
        to: NodeState,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// One target's entry in a status snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    pub group: String,
    pub target: TargetKey,
    pub health: TargetHealth,
}

#[derive(Debug, Clone)]
struct Slot {
    health: TargetHealth,
    next_probe: Option<Time>,
    probing: Option<u64>,
    drain_until: Option<Time>,
}

#[derive(Debug, Clone)]
struct Inflight {
    group: String,
    target: TargetKey,
    deadline: Time,
}

/// Bound on probes handed out and not yet taken by the driver (each target has at most one
/// outstanding check, so this only guards a driver that stops polling).
const MAX_PENDING_PROBES: usize = 100_000;

/// The balancer core.
#[derive(Debug, Clone)]
pub struct Balancer {
    config: BalancerConfig,
    groups: BTreeMap<String, BTreeMap<TargetKey, Slot>>,
    inflight: BTreeMap<u64, Inflight>,
    next_id: u64,
    pending: VecDeque<ProbeRequest>,
    events: VecDeque<Event>,
    nodes: BTreeMap<Ipv4Addr, NodeState>,
    /// Bumped by every change that can move routes (a target's state, the configuration).
    generation: u64,
    /// `generation` when the nodes' states were last derived.
    nodes_generation: u64,
}

impl Balancer {
    /// A balancer for a validated `config`; every target starts `initial` (or `unused`).
    pub fn new(config: BalancerConfig, now: Time) -> Result<Balancer, ConfigError> {
        config.validate()?;
        let mut b = Balancer {
            config: BalancerConfig {
                target_groups: Vec::new(),
                ..config.clone()
            },
            groups: BTreeMap::new(),
            inflight: BTreeMap::new(),
            next_id: 1,
            pending: VecDeque::new(),
            events: VecDeque::new(),
            nodes: BTreeMap::new(),
            generation: 1,
            nodes_generation: 0,
        };
        b.apply_config(config, now);
        Ok(b)
    }

    pub fn config(&self) -> &BalancerConfig {
        &self.config
    }

    /// Take a new configuration (e.g. the file was rewritten): new targets are registered,
    /// missing ones deregistered (they drain), kept ones keep their state; new health-check
    /// settings apply from the next check. A bad configuration changes nothing.
    pub fn reconfigure(&mut self, config: BalancerConfig, now: Time) -> Result<(), ConfigError> {
        config.validate()?;
        self.apply_config(config, now);
        Ok(())
    }

    /// Register `target` in `group` (as ELBv2 `RegisterTargets`).
    pub fn register(
        &mut self,
        group: &str,
        target: TargetConfig,
        now: Time,
    ) -> Result<(), ConfigError> {
        let mut config = self.config.clone();
        let Some(g) = config.target_groups.iter_mut().find(|g| g.name == group) else {
            return Err(ConfigError::Invalid {
                field: "targetGroup".into(),
                reason: format!("no target group named {group:?}"),
            });
        };
        g.targets
            .retain(|t| (t.ip, t.port) != (target.ip, target.port));
        g.targets.push(target);
        self.reconfigure(config, now)
    }

    /// Deregister `target` from `group` (as ELBv2 `DeregisterTargets`): it drains.
    pub fn deregister(&mut self, group: &str, target: TargetKey, now: Time) {
        let mut config = self.config.clone();
        if let Some(g) = config.target_groups.iter_mut().find(|g| g.name == group) {
            g.targets
                .retain(|t| (t.ip, t.port) != (target.ip, target.port));
        }
        self.apply_config(config, now);
    }

    fn apply_config(&mut self, config: BalancerConfig, now: Time) {
        let old_groups = std::mem::take(&mut self.config.target_groups);
        // Groups that disappear: their targets are gone at once (no listener can use them).
        for g in &old_groups {
            if config.group(&g.name).is_none()
                && let Some(slots) = self.groups.remove(&g.name)
            {
                for (key, slot) in slots {
                    self.cancel_probe(slot.probing);
                    self.push_removed(&g.name, key, &slot.health, now);
                }
            }
        }
        for g in &config.target_groups {
            self.apply_group(&config, g, now);
        }
        self.config = config;
        self.generation += 1;
        self.update_nodes(now);
    }

    /// One group's targets: register new ones (or re-register draining ones), switch between
    /// in use and `unused`, drain the ones no longer listed.
    fn apply_group(&mut self, config: &BalancerConfig, g: &TargetGroupConfig, now: Time) {
        let used = config.listeners.iter().any(|l| l.target_group == g.name);
        let slots = self.groups.entry(g.name.clone()).or_default();
        let wanted: BTreeMap<TargetKey, &TargetConfig> = g
            .targets
            .iter()
            .map(|t| {
                (
                    TargetKey {
                        ip: t.ip,
                        port: t.port,
                    },
                    t,
                )
            })
            .collect();
        let mut changes = Vec::new();
        for (key, t) in &wanted {
            let in_use = used && zone_enabled(config, &t.zone);
            let fresh = match slots.get_mut(key) {
                None => true,
                Some(s) => {
                    s.health.zone.clone_from(&t.zone);
                    let unused = s.health.state == TargetState::Unused;
                    s.health.state == TargetState::Draining || unused == in_use
                }
            };
            if !fresh {
                continue;
            }
            let health = if in_use {
                TargetHealth::registered(&t.zone, now)
            } else {
                TargetHealth::not_in_use(&t.zone, now)
            };
            let slot = Slot {
                next_probe: in_use.then_some(now),
                probing: None,
                drain_until: None,
                health: health.clone(),
            };
            let old = slots
                .insert(*key, slot)
                .map(|s| (s.health.state, s.probing));
            changes.push((*key, old.map(|o| o.0), old.and_then(|o| o.1), health));
        }
        for (key, slot) in slots.iter_mut() {
            if !wanted.contains_key(key)
                && let Some(c) = slot.health.drain(now)
            {
                let probing = slot.probing.take();
                changes.push((*key, Some(c.from), probing, slot.health.clone()));
                slot.next_probe = None;
                slot.drain_until = Some(now + g.deregistration_delay);
            }
        }
        for (key, from, probing, health) in changes {
            self.cancel_probe(probing);
            self.push_target(&g.name, key, from, &health, now);
        }
    }

    fn cancel_probe(&mut self, probing: Option<u64>) {
        if let Some(id) = probing {
            self.inflight.remove(&id);
            self.pending.retain(|p| p.id != id);
        }
    }

    /// Expire checks past their timeout, end finished drains, start the checks that are due.
    pub fn handle_timeout(&mut self, now: Time) {
        let expired: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.finish_probe(id, ProbeOutcome::Timeout, now);
        }
        self.end_drains(now);
        self.start_due_probes(now);
        self.update_nodes(now);
    }

    fn end_drains(&mut self, now: Time) {
        let mut done = Vec::new();
        for (group, slots) in &self.groups {
            for (key, slot) in slots {
                if slot.drain_until.is_some_and(|t| t <= now) {
                    done.push((group.clone(), *key));
                }
            }
        }
        for (group, key) in done {
            if let Some(slot) = self.groups.get_mut(&group).and_then(|s| s.remove(&key)) {
                self.push_removed(&group, key, &slot.health, now);
            }
        }
    }

    fn start_due_probes(&mut self, now: Time) {
        let mut started = Vec::new();
        for g in &self.config.target_groups {
            let Some(slots) = self.groups.get_mut(&g.name) else {
                continue;
            };
            let hc = &g.health_check;
            for (key, slot) in slots.iter_mut() {
                let Some(due) = slot.next_probe else { continue };
                if due > now || !slot.health.is_checked() || slot.probing.is_some() {
                    continue;
                }
                // The next check one interval after this one; a driver that woke late does
                // not get a burst of catch-up checks.
                let next = due + hc.interval;
                slot.next_probe = Some(if next > now { next } else { now + hc.interval });
                if self.pending.len() >= MAX_PENDING_PROBES {
                    continue;
                }
                let id = self.next_id;
                self.next_id += 1;
                slot.probing = Some(id);
                let port = match hc.port {
                    HealthPort::TrafficPort => key.port,
                    HealthPort::Port(p) => p,
                };
                started.push((
                    ProbeRequest {
                        id,
                        group: g.name.clone(),
                        target: *key,
                        addr: SocketAddrV4::new(key.ip, port),
                        http_path: hc.protocol.is_http().then(|| hc.path.clone()),
                        tls: hc.protocol == HealthProtocol::Https,
                        timeout: hc.timeout,
                    },
                    now + hc.timeout,
                ));
            }
        }
        for (req, deadline) in started {
            self.inflight.insert(
                req.id,
                Inflight {
                    group: req.group.clone(),
                    target: req.target,
                    deadline,
                },
            );
            self.pending.push_back(req);
        }
    }

    /// The next check the driver should run.
    pub fn poll_probe(&mut self) -> Option<ProbeRequest> {
        self.pending.pop_front()
    }

    /// The outcome of check `id`. A result for a check that already timed out, or for a
    /// target since deregistered, is ignored.
    pub fn handle_probe_result(&mut self, id: u64, report: ProbeReport, now: Time) {
        let Some(f) = self.inflight.get(&id) else {
            return;
        };
        let Some(g) = self.config.group(&f.group) else {
            return;
        };
        let hc = &g.health_check;
        let outcome = match (hc.protocol, report) {
            (HealthProtocol::Tcp, ProbeReport::Connected) => ProbeOutcome::Success,
            (HealthProtocol::Http | HealthProtocol::Https, ProbeReport::Connected) => {
                ProbeOutcome::Failure("connection closed without a response".into())
            }
            (_, ProbeReport::HttpStatus(code)) if hc.matcher.matches(code) => ProbeOutcome::Success,
            (_, ProbeReport::HttpStatus(code)) => {
                ProbeOutcome::Failure(format!("Health checks failed with these codes: [{code}]"))
            }
            (_, ProbeReport::Failed(detail)) => ProbeOutcome::Failure(detail),
            (_, ProbeReport::TimedOut) => ProbeOutcome::Timeout,
        };
        self.finish_probe(id, outcome, now);
        self.update_nodes(now);
    }

    fn finish_probe(&mut self, id: u64, outcome: ProbeOutcome, now: Time) {
        let Some(f) = self.inflight.remove(&id) else {
            return;
        };
        let Some(g) = self.config.group(&f.group) else {
            return;
        };
        let (healthy, unhealthy) = (
            g.health_check.healthy_threshold,
            g.health_check.unhealthy_threshold,
        );
        let Some(slot) = self
            .groups
            .get_mut(&f.group)
            .and_then(|s| s.get_mut(&f.target))
        else {
            return;
        };
        if slot.probing != Some(id) {
            return;
        }
        slot.probing = None;
        if let Some(change) = slot.health.record(&outcome, healthy, unhealthy, now) {
            let health = slot.health.clone();
            self.push_target(&f.group, f.target, Some(change.from), &health, now);
        }
    }

    /// When [`Balancer::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let probes = self
            .groups
            .values()
            .flat_map(|s| s.values())
            .filter(|s| s.probing.is_none() && s.health.is_checked())
            .filter_map(|s| s.next_probe);
        let drains = self
            .groups
            .values()
            .flat_map(|s| s.values())
            .filter_map(|s| s.drain_until);
        let deadlines = self.inflight.values().map(|f| f.deadline);
        probes.chain(drains).chain(deadlines).min()
    }

    /// The next state change to report.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Where every node sends new connections now.
    pub fn routes(&self) -> Routes {
        let views: Vec<TargetView<'_>> = self
            .groups
            .iter()
            .flat_map(|(group, slots)| {
                slots.iter().map(move |(key, slot)| TargetView {
                    group,
                    key: *key,
                    zone: &slot.health.zone,
                    state: slot.health.state,
                })
            })
            .collect();
        routing::compute(&self.config, &views)
    }

    /// Every target's health, by group then address.
    pub fn targets(&self) -> Vec<TargetStatus> {
        self.groups
            .iter()
            .flat_map(|(group, slots)| {
                slots.iter().map(|(key, slot)| TargetStatus {
                    group: group.clone(),
                    target: *key,
                    health: slot.health.clone(),
                })
            })
            .collect()
    }

    /// Changes whenever [`Balancer::routes`] may have changed; a driver re-renders its table
    /// only then.
    pub fn routes_generation(&self) -> u64 {
        self.generation
    }

    fn update_nodes(&mut self, now: Time) {
        if self.nodes_generation == self.generation {
            return;
        }
        self.nodes_generation = self.generation;
        let routes = self.routes();
        let mut seen = BTreeMap::new();
        for n in &routes.nodes {
            let from = self.nodes.get(&n.address).copied();
            if from != Some(n.state) {
                self.events.push_back(Event {
                    at: now,
                    record: Record::Node {
                        address: n.address,
                        zone: n.zone.clone(),
                        from,
                        to: n.state,
                        reason: n.reason.clone(),
                    },
                });
            }
            seen.insert(n.address, n.state);
        }
        self.nodes = seen;
    }

    fn push_target(
        &mut self,
        group: &str,
        key: TargetKey,
        from: Option<TargetState>,
        h: &TargetHealth,
        now: Time,
    ) {
        self.generation += 1;
        self.events.push_back(Event {
            at: now,
            record: Record::Target {
                group: group.to_string(),
                target: key.to_string(),
                zone: h.zone.clone(),
                from,
                to: h.state,
                reason: h.reason,
                description: h.description.clone(),
            },
        });
    }

    /// A target left the group: reported as `unused`, `Target.NotRegistered`.
    fn push_removed(&mut self, group: &str, key: TargetKey, h: &TargetHealth, now: Time) {
        self.generation += 1;
        self.events.push_back(Event {
            at: now,
            record: Record::Target {
                group: group.to_string(),
                target: key.to_string(),
                zone: h.zone.clone(),
                from: Some(h.state),
                to: TargetState::Unused,
                reason: Some(Reason::NotRegistered),
                description: Some("Target is not registered to the target group".into()),
            },
        });
    }
}

/// Whether the load balancer has a node serving `zone` (a node without a zone serves all).
fn zone_enabled(config: &BalancerConfig, zone: &str) -> bool {
    config
        .nodes
        .iter()
        .any(|n| n.zone.as_deref().is_none_or(|z| z == zone))
}
