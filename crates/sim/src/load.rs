//! The clients and the modelled data plane: open-loop requests at the scenario's rate from a
//! client on its zone's last node, each new connection DNATed by the node's applied
//! kube-proxy rules to one endpoint picked uniformly (unless an unanswered SYN's conntrack
//! entry on the same source port still holds its old DNAT: [`crate::conntrack`]); a dead or
//! cut-off backend times out, a ClusterIP without endpoints refuses, keep-alive connections
//! and retries as `zonelab load`.
//!
//! Start at [`World::send`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use controllers::Moment;
use controllers::time::{duration_ms, span_ms};
use lab::{ConnKind, Outcome};
use rand::Rng;

use crate::conntrack::{PortPicker, Tuple};
use crate::nodes::Power;
use crate::proxy::Route;
use crate::world::{Ev, World};

/// An open keep-alive connection.
#[derive(Clone, Debug)]
struct Conn {
    backend: Ipv4Addr,
    opened: Moment,
    local_port: u16,
}

/// One client instance (a client pod in one zone).
#[derive(Clone, Debug)]
pub struct ClientInst {
    pub client: String,
    pub zone: String,
    pub node: usize,
    /// `namespace/name`.
    pub service: String,
    pub rate: f64,
    pub timeout: Duration,
    pub keepalive: bool,
    pub retries: u32,
    /// ClusterIP and port, resolved once the Service exists.
    pub target: Option<(Ipv4Addr, u16)>,
    /// Requests started so far.
    pub sent: u64,
    /// When its first request starts (its pod started; the run's t0 is its creation).
    pub first: Moment,
    idle: Vec<Conn>,
    ports: PortPicker,
    /// Source ports of this client's open sockets and until when they are held.
    held: BTreeMap<u16, Moment>,
}

impl ClientInst {
    pub fn new(c: &scenario::Client, zone: &str, node: usize, service: String) -> ClientInst {
        ClientInst {
            client: c.name.clone(),
            zone: zone.to_string(),
            node,
            service,
            rate: c.rate,
            timeout: span_ms(duration_ms(c.timeout)),
            keepalive: c.keepalive,
            retries: c.retries,
            target: None,
            sent: 0,
            first: Moment::EPOCH,
            idle: Vec::new(),
            ports: PortPicker::default(),
            held: BTreeMap::new(),
        }
    }

    /// The longest one request can take: every attempt times out.
    pub fn longest_request(&self) -> Duration {
        self.timeout * (self.retries + 1)
    }

    /// The kernel's source port for a new connection at `now` (skipping ports this client's
    /// open sockets hold).
    fn port(&mut self, now: Moment, rng: &mut rand_chacha::ChaCha8Rng) -> u16 {
        self.held.retain(|_, until| *until > now);
        let (held, idle) = (&self.held, &self.idle);
        self.ports.pick(
            now,
            |p| held.contains_key(&p) || idle.iter().any(|c| c.local_port == p),
            rng,
        )
    }
}

/// A request between attempts.
#[derive(Clone, Debug)]
pub struct PendingRequest {
    start: Moment,
    attempts: u32,
    /// The first attempt's connection and when it was opened.
    first: Option<(ConnKind, Moment)>,
}

/// How one attempt went.
struct Attempt {
    outcome: Outcome,
    duration: Duration,
    connected: bool,
    conn: ConnKind,
    opened: Moment,
    local_port: u16,
    backend: Option<(String, usize)>,
}

impl World {
    /// When request `k` of client `c` starts (the open-loop schedule).
    fn send_time(&self, c: usize, k: u64) -> Moment {
        let period_ms = 1000.0 / self.clients[c].rate;
        self.clients[c].first + Duration::from_millis((k as f64 * period_ms).round() as u64)
    }

    /// The shared start rule's pairs: each client's node and Service.
    pub fn load_gate(&self) -> lab::load_start::LoadGate {
        lab::load_start::LoadGate::new(
            self.clients
                .iter()
                .map(|c| (self.nodes[c.node].name.clone(), c.service.clone())),
        )
    }

    /// What node `node`'s applied rules show of client Service `service` to the load gate:
    /// the endpoints they use (0 before its proxy programmed it, or while the Service has
    /// none) and the ready endpoints of the client's target port they knew.
    pub fn proxy_seen(&self, node: &str, service: &str) -> lab::load_start::ProxySeen {
        let seen = self
            .clients
            .iter()
            .find(|c| c.service == service && self.nodes[c.node].name == node)
            .and_then(|c| {
                let (ip, port) = c.target?;
                let proxy = self.nodes[c.node].proxy.as_ref()?;
                let programmed = match proxy.route(ip, port) {
                    Route::Endpoints(eps) => eps.len(),
                    Route::Reject | Route::Drop => 0,
                };
                Some(lab::load_start::ProxySeen {
                    programmed,
                    known_ready: Some(proxy.known_ready(ip, port)),
                })
            });
        seen.unwrap_or_default()
    }

    /// The ready endpoints client Service `service` (`namespace/name`) will have: its Ready
    /// pods in the API ([`lab::load_start::ready_pods`]).
    pub fn ready_pods(&self, service: &str) -> usize {
        let cache = &self.api.fake.cache;
        let (ns, name) = service.split_once('/').unwrap_or(("default", service));
        cache
            .services
            .get(&controllers::Key::new(ns, name))
            .map_or(0, |svc| {
                lab::load_start::ready_pods(svc, cache.pods_in(ns).map(|p| &**p))
            })
    }

    /// The client pods are created at t0, as live: each sends its first request once its pod
    /// runs, a modelled client start-up later (`LatencyModel::client_start`).
    pub fn start_clients(&mut self) {
        for c in 0..self.clients.len() {
            let first = self.t0 + self.lat.client_start.sample(&mut self.rng.setup);
            self.clients[c].first = first;
            self.queue.push(first, Ev::Send { client: c });
        }
    }

    /// Client `c`'s next request starts now.
    pub fn send(&mut self, c: usize) {
        if self.end.is_some_and(|e| self.now > e) {
            return;
        }
        let node = self.clients[c].node;
        if !matches!(self.nodes[node].power, Power::On) {
            // The client pod died with its node (restartPolicy Never): no more requests.
            return;
        }
        self.clients[c].sent += 1;
        let next = self.send_time(c, self.clients[c].sent);
        self.queue.push(next, Ev::Send { client: c });
        let req = PendingRequest {
            start: self.now,
            attempts: 0,
            first: None,
        };
        self.attempt(c, req);
    }

    /// One attempt of a request; records it when it is the last.
    pub fn attempt(&mut self, c: usize, mut req: PendingRequest) {
        req.attempts += 1;
        let reuse = if self.clients[c].keepalive && req.attempts == 1 {
            self.clients[c].idle.pop()
        } else {
            None
        };
        let a = match reuse {
            Some(conn) => self.over(c, conn),
            None => self.connect(c),
        };
        let first = *req.first.get_or_insert((a.conn, a.opened));
        let end = self.now + a.duration;
        let cl = &self.clients[c];
        if a.outcome == Outcome::Ok || req.attempts > cl.retries {
            let (pod, node, zone) = match &a.backend {
                Some((pod, n)) if a.outcome == Outcome::Ok => {
                    let (node, zone) = self.node_ref(*n);
                    (
                        Some(pod.clone()),
                        Some(node.to_string()),
                        Some(zone.to_string()),
                    )
                }
                _ => (None, None, None),
            };
            let record = lab::Request {
                client: cl.client.clone(),
                client_zone: cl.zone.clone(),
                client_node: self.nodes[cl.node].name.clone(),
                client_kind: lab::timeline::CLUSTERIP.into(),
                service: cl.service.clone(),
                start: req.start.as_millis() as f64,
                end: end.as_millis() as f64,
                outcome: a.outcome,
                conn: first.0,
                conn_opened: first.1.as_millis() as f64,
                local_port: a.local_port,
                connected: a.connected,
                pod,
                node,
                zone,
            };
            self.requests.push(record);
            return;
        }
        self.queue.push(end, Ev::Attempt { client: c, req });
    }

    /// A request over an open keep-alive connection.
    fn over(&mut self, c: usize, conn: Conn) -> Attempt {
        let (outcome, backend) = self.reach(c, conn.backend);
        let ok = outcome == Outcome::Ok;
        let duration = self.answer_time(c, outcome);
        let a = Attempt {
            outcome,
            duration,
            connected: true,
            conn: ConnKind::Reused,
            opened: conn.opened,
            local_port: conn.local_port,
            backend,
        };
        if ok {
            self.clients[c].idle.push(conn);
        }
        a
    }

    /// A request on a new connection: its SYN follows a live `SYN_SENT` conntrack entry of
    /// the same tuple if there is one, else the node's kube-proxy rules.
    fn connect(&mut self, c: usize) -> Attempt {
        let now = self.now;
        let local_port = self.clients[c].port(now, &mut self.rng.data);
        let target = self.clients[c].target;
        let tuple = target.map(|dst| Tuple {
            client: c,
            sport: local_port,
            dst,
        });
        let stale = tuple.and_then(|t| self.conntrack.syn(&t, now));
        let (outcome, backend, dst) = match stale {
            Some(Some(ip)) => {
                let (o, b) = self.reach(c, ip);
                (o, b, Some(ip))
            }
            Some(None) => (Outcome::Timeout, None, None),
            None => self.by_rules(c),
        };
        let duration = self.answer_time(c, outcome);
        if let Some(t) = tuple {
            let timeout = self.clients[c].timeout;
            let syn_sent = self.syn_sent_ms();
            self.conntrack
                .settle(t, dst, outcome, now, timeout, syn_sent);
        }
        let cl = &mut self.clients[c];
        cl.held.insert(local_port, now + duration);
        if outcome == Outcome::Ok
            && cl.keepalive
            && let Some(backend) = dst
        {
            cl.idle.push(Conn {
                backend,
                opened: now,
                local_port,
            });
        }
        Attempt {
            outcome,
            duration,
            connected: outcome == Outcome::Ok,
            conn: ConnKind::New,
            opened: now,
            local_port,
            backend,
        }
    }

    /// A new connection's SYN through client `c`'s node's applied rules: (outcome, answering
    /// pod and node, the endpoint it was DNATed to).
    #[allow(clippy::type_complexity)]
    fn by_rules(&mut self, c: usize) -> (Outcome, Option<(String, usize)>, Option<Ipv4Addr>) {
        let node = self.clients[c].node;
        let route = match (self.clients[c].target, self.nodes[node].proxy.as_ref()) {
            (Some((ip, port)), Some(p)) => p.route(ip, port),
            _ => Route::Drop,
        };
        match route {
            Route::Endpoints(eps) if !eps.is_empty() => {
                let i = self.rng.data.random_range(0..eps.len());
                let ip = eps[i].0;
                let (o, b) = self.reach(c, ip);
                (o, b, Some(ip))
            }
            Route::Endpoints(_) | Route::Reject => (Outcome::Refused, None, None),
            Route::Drop => (Outcome::Timeout, None, None),
        }
    }

    /// The nodes' `nf_conntrack_tcp_timeout_syn_sent` (ms): whole seconds, at least 1, as the
    /// sysctl takes it (and as the report's timers show it).
    fn syn_sent_ms(&self) -> Duration {
        Duration::from_secs(self.cfg.syn_sent_timeout.as_secs().max(1))
    }

    /// What a packet from client `c` to pod IP `ip` meets: (`ok`|`refused`|`timeout`, the
    /// answering pod and node).
    fn reach(&self, c: usize, ip: Ipv4Addr) -> (Outcome, Option<(String, usize)>) {
        let from = self.clients[c].node;
        let Some(b) = self.ips.get(&ip) else {
            return (Outcome::Timeout, None);
        };
        if self.nodes[b.node].power == Power::Off || !self.connected(from, b.node) {
            return (Outcome::Timeout, None);
        }
        match self.serving(b.node, &b.uid) {
            Some(true) => (Outcome::Ok, Some((b.pod.clone(), b.node))),
            Some(false) => (Outcome::Refused, None),
            None => (Outcome::Timeout, None),
        }
    }

    /// How long an attempt with `outcome` takes.
    fn answer_time(&mut self, c: usize, outcome: Outcome) -> Duration {
        match outcome {
            Outcome::Timeout => self.clients[c].timeout,
            _ => self
                .lat
                .request
                .sample(&mut self.rng.data)
                .min(self.clients[c].timeout),
        }
    }
}
