//! The balancer's rules in virtual time: a harness answers every health check from a table of
//! per-target behaviours and steps the core from wake-up to wake-up.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::balancer::{Balancer, ProbeReport, Record};
use crate::config::{BalancerConfig, TargetConfig};
use crate::routing::NodeState;
use crate::target::{Reason, TargetKey, TargetState};
use crate::time::Time;

/// How a target answers health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Up,
    /// Connection refused (server stopped).
    Refused,
    /// No answer (packets dropped): the check times out.
    Silent,
    /// HTTP status code.
    Http(u16),
}

struct Harness {
    b: Balancer,
    now: Time,
    behaviour: BTreeMap<SocketAddrV4, Behaviour>,
    /// (time, group, target, to) of every target change; (time, address, to) of node changes.
    target_log: Vec<(u64, String, String, TargetState)>,
    node_log: Vec<(u64, Ipv4Addr, NodeState)>,
    probes: usize,
}

fn ip(z: u8, h: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 20, z, h)
}

fn addr(z: u8, h: u8) -> SocketAddrV4 {
    SocketAddrV4::new(ip(z, h), 8080)
}

fn key(z: u8, h: u8) -> TargetKey {
    TargetKey {
        ip: ip(z, h),
        port: 8080,
    }
}

fn lb(a: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 20, 251, a)
}

/// Zones a, b, c with a node each; targets 172.20.<z>.11 and .12 in each zone, port 8080.
fn config(extra: &str) -> BalancerConfig {
    let text = format!(
        "
name: web
{extra}
nodes:
  - {{zone: a, address: 172.20.251.1}}
  - {{zone: b, address: 172.20.251.2}}
  - {{zone: c, address: 172.20.251.3}}
listeners:
  - {{port: 80, targetGroup: web}}
targetGroups:
  - name: web
    deregistrationDelay: 30s
    targets:
      - {{ip: 172.20.0.11, port: 8080, zone: a}}
      - {{ip: 172.20.0.12, port: 8080, zone: a}}
      - {{ip: 172.20.1.11, port: 8080, zone: b}}
      - {{ip: 172.20.1.12, port: 8080, zone: b}}
      - {{ip: 172.20.2.11, port: 8080, zone: c}}
      - {{ip: 172.20.2.12, port: 8080, zone: c}}
"
    );
    BalancerConfig::parse(&text).expect("valid config")
}

impl Harness {
    fn new(config: BalancerConfig) -> Harness {
        let mut h = Harness {
            b: Balancer::new(config, Time::ZERO).expect("valid"),
            now: Time::ZERO,
            behaviour: BTreeMap::new(),
            target_log: Vec::new(),
            node_log: Vec::new(),
            probes: 0,
        };
        h.drain_events();
        h
    }

    fn set(&mut self, a: SocketAddrV4, b: Behaviour) {
        self.behaviour.insert(a, b);
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.b.poll_event() {
            let at = e.at.as_millis() / 1000;
            match e.record {
                Record::Target {
                    group, target, to, ..
                } => self.target_log.push((at, group, target, to)),
                Record::Node { address, to, .. } => self.node_log.push((at, address, to)),
            }
        }
    }

    /// Runs every wake-up up to and including `until_s`, answering checks at once.
    fn run_until(&mut self, until_s: u64) {
        let until = Time::from_millis(until_s * 1000);
        loop {
            self.b.handle_timeout(self.now);
            while let Some(p) = self.b.poll_probe() {
                self.probes += 1;
                let report = match self
                    .behaviour
                    .get(&p.addr)
                    .copied()
                    .unwrap_or(Behaviour::Up)
                {
                    Behaviour::Up => Some(if p.http_path.is_some() {
                        ProbeReport::HttpStatus(200)
                    } else {
                        ProbeReport::Connected
                    }),
                    Behaviour::Refused => Some(ProbeReport::Failed("connection refused".into())),
                    Behaviour::Silent => None,
                    Behaviour::Http(code) => Some(ProbeReport::HttpStatus(code)),
                };
                if let Some(r) = report {
                    self.b.handle_probe_result(p.id, r, self.now);
                }
            }
            self.drain_events();
            match self.b.poll_timeout() {
                Some(t) if t <= until => self.now = t.max(self.now),
                _ => break,
            }
        }
        self.now = until;
    }

    fn state(&self, k: TargetKey) -> Option<TargetState> {
        self.b
            .targets()
            .into_iter()
            .find(|t| t.target == k)
            .map(|t| t.health.state)
    }

    /// When `target` (e.g. "172.20.0.11:8080") last went to `to`, in seconds.
    fn went(&self, target: &str, to: TargetState) -> Option<u64> {
        self.target_log
            .iter()
            .rev()
            .find(|(_, _, t, s)| t == target && *s == to)
            .map(|(at, ..)| *at)
    }

    fn routed(&self, node: u8) -> Vec<SocketAddrV4> {
        let r = self.b.routes();
        r.node(lb(node)).expect("node").listeners[0].targets.clone()
    }
}

#[test]
fn new_targets_are_initial_then_healthy_after_the_healthy_threshold() {
    let mut h = Harness::new(config(""));
    assert_eq!(h.state(key(0, 11)), Some(TargetState::Initial));
    // All initial: no healthy target anywhere, the group fails open within each zone.
    assert_eq!(h.routed(1), vec![addr(0, 11), addr(0, 12)]);
    assert!(h.b.routes().nodes[0].listeners[0].fail_open);
    // Checks at 0, 10, 20 s (LBC defaults): the third success makes it healthy.
    h.run_until(19);
    assert_eq!(h.state(key(0, 11)), Some(TargetState::Initial));
    h.run_until(20);
    assert_eq!(h.went("172.20.0.11:8080", TargetState::Healthy), Some(20));
    assert!(!h.b.routes().nodes[0].listeners[0].fail_open);
    let reasons: Vec<Option<Reason>> = h.b.targets().iter().map(|t| t.health.reason).collect();
    assert!(reasons.iter().all(Option::is_none));
}

#[test]
fn a_stopped_server_is_unhealthy_after_unhealthy_threshold_checks() {
    let mut h = Harness::new(config(""));
    h.run_until(35);
    h.set(addr(0, 11), Behaviour::Refused);
    // Failed checks at 40, 50, 60 s.
    h.run_until(59);
    assert_eq!(h.state(key(0, 11)), Some(TargetState::Healthy));
    h.run_until(60);
    assert_eq!(h.went("172.20.0.11:8080", TargetState::Unhealthy), Some(60));
    assert_eq!(h.routed(1), vec![addr(0, 12)]);
    let t =
        h.b.targets()
            .into_iter()
            .find(|t| t.target == key(0, 11))
            .expect("t");
    assert_eq!(t.health.reason, Some(Reason::FailedHealthChecks));
    assert_eq!(
        t.health.description.as_deref(),
        Some("Health checks failed: connection refused")
    );
}

#[test]
fn silent_targets_time_out_one_timeout_after_each_check() {
    let mut h = Harness::new(config(""));
    h.run_until(35);
    h.set(addr(1, 11), Behaviour::Silent);
    // Checks at 40, 50, 60 s time out at 50, 60, 70 s (timeout 10 s = interval).
    h.run_until(69);
    assert_eq!(h.state(key(1, 11)), Some(TargetState::Healthy));
    h.run_until(70);
    assert_eq!(h.went("172.20.1.11:8080", TargetState::Unhealthy), Some(70));
    // A late answer to a timed-out check is ignored.
    assert_eq!(h.routed(2), vec![addr(1, 12)]);
}

#[test]
fn recovery_after_the_healthy_threshold() {
    let mut h = Harness::new(config(""));
    h.set(addr(0, 11), Behaviour::Refused);
    h.run_until(20);
    assert_eq!(h.went("172.20.0.11:8080", TargetState::Unhealthy), Some(20));
    h.set(addr(0, 11), Behaviour::Up);
    h.run_until(45);
    assert_eq!(h.state(key(0, 11)), Some(TargetState::Unhealthy));
    // Successes at 30, 40, 50 s.
    h.run_until(50);
    assert_eq!(h.went("172.20.0.11:8080", TargetState::Healthy), Some(50));
    assert_eq!(h.routed(1), vec![addr(0, 11), addr(0, 12)]);
}

#[test]
fn all_targets_unhealthy_fails_open_in_every_zone() {
    let mut h = Harness::new(config(""));
    h.run_until(25);
    for (z, n) in [(0, 11), (0, 12), (1, 11), (1, 12), (2, 11), (2, 12)] {
        h.set(addr(z, n), Behaviour::Refused);
    }
    h.run_until(60);
    assert!(
        h.b.targets()
            .iter()
            .all(|t| t.health.state == TargetState::Unhealthy)
    );
    let r = h.b.routes();
    for n in &r.nodes {
        assert_eq!(n.state, NodeState::Healthy, "{n:?}");
        assert!(n.listeners[0].fail_open);
        assert_eq!(n.listeners[0].targets.len(), 2);
    }
    assert_eq!(h.routed(2), vec![addr(1, 11), addr(1, 12)]);
    assert_eq!(r.dns().len(), 3);
}

#[test]
fn cross_zone_off_keeps_traffic_in_zone_and_a_zone_without_healthy_targets_leaves_dns() {
    let mut h = Harness::new(config(""));
    h.run_until(25);
    assert_eq!(h.routed(1), vec![addr(0, 11), addr(0, 12)]);
    assert_eq!(h.routed(3), vec![addr(2, 11), addr(2, 12)]);
    h.set(addr(0, 11), Behaviour::Silent);
    h.set(addr(0, 12), Behaviour::Silent);
    h.run_until(60);
    let r = h.b.routes();
    let a = r.node(lb(1)).expect("node a");
    assert_eq!(a.state, NodeState::Unhealthy);
    assert_eq!(
        a.reason.as_deref(),
        Some("target group web has no healthy target in zone a")
    );
    assert_eq!(r.dns(), vec![lb(2), lb(3)]);
    // Other zones' nodes never send to zone a, and never received from it.
    assert_eq!(h.routed(2), vec![addr(1, 11), addr(1, 12)]);
    let went_unhealthy: Vec<_> = h
        .node_log
        .iter()
        .filter(|(_, _, s)| *s == NodeState::Unhealthy)
        .collect();
    assert_eq!(went_unhealthy, vec![&(60, lb(1), NodeState::Unhealthy)]);
    // Zone a's node keeps its own zone's targets in its data path (nothing else to send to).
    assert_eq!(h.routed(1), vec![addr(0, 11), addr(0, 12)]);
    assert!(a.listeners[0].fail_open);
}

#[test]
fn cross_zone_on_spreads_over_every_zones_healthy_targets() {
    let mut h = Harness::new(config("crossZone: true"));
    h.set(addr(0, 11), Behaviour::Refused);
    h.set(addr(0, 12), Behaviour::Refused);
    h.run_until(25);
    let want = vec![addr(1, 11), addr(1, 12), addr(2, 11), addr(2, 12)];
    assert_eq!(h.routed(1), want);
    assert_eq!(
        h.b.routes().node(lb(1)).expect("a").state,
        NodeState::Healthy
    );
}

#[test]
fn deregistered_targets_drain_then_leave() {
    let mut h = Harness::new(config(""));
    h.run_until(25);
    h.b.deregister("web", key(1, 12), h.now);
    h.drain_events();
    assert_eq!(h.state(key(1, 12)), Some(TargetState::Draining));
    assert_eq!(h.routed(2), vec![addr(1, 11)]);
    // Deregistration delay 30 s: gone at 55 s, reported as unused / Target.NotRegistered.
    h.run_until(54);
    assert_eq!(h.state(key(1, 12)), Some(TargetState::Draining));
    h.run_until(55);
    assert_eq!(h.state(key(1, 12)), None);
    assert_eq!(h.went("172.20.1.12:8080", TargetState::Unused), Some(55));
    // Registered again: initial, checked again.
    let t = TargetConfig {
        ip: ip(1, 12),
        port: 8080,
        zone: "b".into(),
    };
    h.b.register("web", t, h.now).expect("known group");
    assert_eq!(h.state(key(1, 12)), Some(TargetState::Initial));
    h.run_until(75);
    assert_eq!(h.went("172.20.1.12:8080", TargetState::Healthy), Some(75));
    assert!(
        h.b.register(
            "nope",
            TargetConfig {
                ip: ip(1, 1),
                port: 1,
                zone: "b".into()
            },
            h.now
        )
        .is_err()
    );
}

#[test]
fn draining_targets_are_not_checked_and_no_fail_open_includes_them() {
    let mut h = Harness::new(config(""));
    h.run_until(25);
    let mut c = h.b.config().clone();
    c.target_groups[0].targets.retain(|t| t.zone != "c");
    h.b.reconfigure(c, h.now).expect("valid");
    // Every remaining target fails from now on (checks at 30, 40, 50 s).
    for (z, n) in [(0, 11), (0, 12), (1, 11), (1, 12)] {
        h.set(addr(z, n), Behaviour::Refused);
    }
    let before = h.probes;
    h.run_until(34);
    // 4 targets left, one check each at 30 s.
    assert_eq!(h.probes - before, 4);
    let r = h.b.routes();
    let c_node = r.node(lb(3)).expect("c");
    assert!(c_node.listeners[0].targets.is_empty());
    assert_eq!(c_node.state, NodeState::Unhealthy);
    // All of them unhealthy at 50 s while zone c still drains (until 55 s): the group fails
    // open, and still sends nothing to the draining targets.
    h.run_until(50);
    assert_eq!(h.state(key(2, 11)), Some(TargetState::Draining));
    let r = h.b.routes();
    assert!(r.node(lb(1)).expect("a").listeners[0].fail_open);
    assert_eq!(h.routed(1), vec![addr(0, 11), addr(0, 12)]);
    assert!(h.routed(3).is_empty());
}

#[test]
fn targets_in_zones_without_a_node_and_groups_without_listeners_are_unused() {
    let text = "
name: web
nodes:
  - {zone: a, address: 172.20.251.1}
listeners:
  - {port: 80, targetGroup: web}
targetGroups:
  - name: web
    targets:
      - {ip: 172.20.0.11, port: 8080, zone: a}
      - {ip: 172.20.5.11, port: 8080, zone: e}
  - name: spare
    targets:
      - {ip: 172.20.0.12, port: 8080, zone: a}
";
    let mut h = Harness::new(BalancerConfig::parse(text).expect("valid"));
    h.run_until(25);
    assert_eq!(h.state(key(5, 11)), Some(TargetState::Unused));
    assert_eq!(h.state(key(0, 12)), Some(TargetState::Unused));
    assert_eq!(h.state(key(0, 11)), Some(TargetState::Healthy));
    // Only the used target was checked: at 0, 10, 20 s.
    assert_eq!(h.probes, 3);
    let t =
        h.b.targets()
            .into_iter()
            .find(|t| t.target == key(5, 11))
            .expect("t");
    assert_eq!(t.health.reason, Some(Reason::NotInUse));
}

#[test]
fn http_checks_use_the_matcher() {
    let text = "
name: api
nodes:
  - {address: 172.20.251.9}
listeners:
  - {port: 443, targetGroup: api}
targetGroups:
  - name: api
    targetType: ip
    healthCheck: {protocol: HTTP, path: /readyz, port: 6443, interval: 1s, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 2}
    targets:
      - {ip: 172.20.0.5, port: 8080, zone: a}
      - {ip: 172.20.1.5, port: 8080, zone: b}
      - {ip: 172.20.2.5, port: 8080, zone: c}
";
    let mut h = Harness::new(BalancerConfig::parse(text).expect("valid"));
    let hc = |z: u8| SocketAddrV4::new(ip(z, 5), 6443);
    h.set(hc(0), Behaviour::Http(302));
    h.set(hc(1), Behaviour::Http(503));
    h.run_until(1);
    assert_eq!(
        h.state(TargetKey {
            ip: ip(0, 5),
            port: 8080
        }),
        Some(TargetState::Healthy)
    );
    assert_eq!(
        h.state(TargetKey {
            ip: ip(1, 5),
            port: 8080
        }),
        Some(TargetState::Unhealthy)
    );
    let t =
        h.b.targets()
            .into_iter()
            .find(|t| t.target.ip == ip(1, 5))
            .expect("t");
    assert_eq!(
        t.health.description.as_deref(),
        Some("Health checks failed with these codes: [503]")
    );
    // The regional node (no zone) serves every zone's healthy targets, masqueraded (ip targets).
    let r = h.b.routes();
    let l = &r.nodes[0].listeners[0];
    assert_eq!(
        l.targets,
        vec![
            SocketAddrV4::new(ip(0, 5), 8080),
            SocketAddrV4::new(ip(2, 5), 8080)
        ]
    );
    assert!(l.masquerade);
}

#[test]
fn a_bad_reconfiguration_changes_nothing() {
    let mut h = Harness::new(config(""));
    h.run_until(25);
    let before = h.b.targets();
    let mut c = h.b.config().clone();
    c.target_groups[0].health_check.healthy_threshold = 11;
    c.target_groups[0].targets.clear();
    assert!(h.b.reconfigure(c, h.now).is_err());
    assert_eq!(h.b.targets(), before);
    assert!(h.b.poll_event().is_none());
}

#[test]
fn poll_timeout_is_the_next_check() {
    let mut h = Harness::new(config(""));
    h.run_until(0);
    assert_eq!(h.b.poll_timeout(), Some(Time::from_millis(10_000)));
    h.set(addr(0, 11), Behaviour::Silent);
    h.run_until(10);
    // The silent check's deadline (20 s) and the others' next checks (20 s).
    assert_eq!(h.b.poll_timeout(), Some(Time::from_millis(20_000)));
    let _ = Duration::ZERO;
}

#[test]
fn routes_generation_moves_only_when_routes_may_change() {
    let mut h = Harness::new(config(""));
    h.run_until(25);
    let g = h.b.routes_generation();
    let routes = h.b.routes();
    h.run_until(55);
    assert_eq!(h.b.routes_generation(), g);
    assert_eq!(h.b.routes(), routes);
    h.set(addr(2, 12), Behaviour::Refused);
    h.run_until(80);
    assert_ne!(h.b.routes_generation(), g);
    assert_eq!(h.routed(3), vec![addr(2, 11)]);
}

#[test]
fn a_zonal_shift_takes_the_zones_node_out_of_dns_and_its_targets_out_of_cross_zone_routes() {
    let mut h = Harness::new(config("crossZone: true"));
    h.run_until(25);
    assert_eq!(h.b.routes().dns(), vec![lb(1), lb(2), lb(3)]);
    assert!(h.routed(2).contains(&addr(0, 11)));
    let mut shifted = config("crossZone: true");
    shifted.zonal_shift_away_from = vec!["a".into()];
    h.b.reconfigure(shifted, h.now).expect("valid");
    h.drain_events();
    let r = h.b.routes();
    // Zone a's LB node leaves DNS; the others stop routing to zone a's targets.
    assert_eq!(r.dns(), vec![lb(2), lb(3)]);
    let a = r.node(lb(1)).expect("node a");
    assert_eq!(a.state, NodeState::Unhealthy);
    assert!(
        a.reason
            .as_deref()
            .is_some_and(|r| r.contains("zonal shift away from zone a"))
    );
    for n in [2, 3] {
        assert!(
            h.routed(n).iter().all(|t| t.ip().octets()[2] != 0),
            "{:?}",
            h.routed(n)
        );
    }
    // No target was deregistered: the shift is a routing decision, not a deregistration.
    assert_eq!(h.state(key(0, 11)), Some(TargetState::Healthy));
    // Ending the shift puts everything back.
    h.b.reconfigure(config("crossZone: true"), h.now)
        .expect("valid");
    assert_eq!(h.b.routes().dns(), vec![lb(1), lb(2), lb(3)]);
    assert!(h.routed(2).contains(&addr(0, 11)));
}
