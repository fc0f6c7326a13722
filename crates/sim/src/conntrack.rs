//! The client side of the modelled data plane's connection tracking: how Linux picks a
//! `connect()`'s ephemeral source port ([`PortPicker`]), and a node's conntrack entries of
//! unanswered SYNs ([`Table`]): a new connection whose tuple matches a `SYN_SENT` entry younger
//! than `nf_conntrack_tcp_timeout_syn_sent` follows that entry's DNAT, not the current rules
//! (kubernetes/kubernetes#101607), which is what the report's `stale_conntrack` counts.
//!
//! Start at [`PortPicker::pick`] and [`Table::syn`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use controllers::Moment;
use lab::Outcome;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The first and last ephemeral source port (Linux `net.ipv4.ip_local_port_range` default,
/// also this machine's).
pub const EPHEMERAL_PORTS: (u16, u16) = (32768, 60999);

/// Linux `EPHEMERAL_PORT_SHUFFLE_PERIOD` (10 * HZ, net/core/secure_seq.c): the hash that
/// places a destination's connect scan includes `jiffies / period`, so every 10 s the scan
/// starts at a new random point of the range. Measured here (kernel 6.18): the source
/// ports of one client jump every 10.00 s and step by 2..16 in between.
pub const SHUFFLE_PERIOD_MS: i64 = 10_000;

/// Linux's first SYN retransmission timeout (`TCP_TIMEOUT_INIT`, 1 s), doubled per retry.
const SYN_RTO_MS: Duration = Duration::from_millis(1_000);

/// How `__inet_hash_connect` (net/ipv4/inet_hashtables.c) chooses source ports for one
/// client socket's connections to one destination: the scan starts at
/// `table_perturb[index] + (port_offset >> 32)`, takes the first free port of the range's low
/// parity from there, and moves the bucket on by the ports it walked, at least
/// `2 * rand(0..8)`, plus 2. `port_offset` changes every [`SHUFFLE_PERIOD_MS`] (the start moves
/// to a random point).
#[derive(Clone, Debug, Default)]
pub struct PortPicker {
    /// The shuffle period the walk below belongs to, with its random start.
    period: Option<(i64, u32)>,
    /// How far the bucket moved within the period (`table_perturb[index]` growth).
    walked: u32,
    /// Phase of the shuffle periods against the run's clock (the kernel's jiffies).
    phase: Option<i64>,
}

impl PortPicker {
    /// The source port of a connection made at `now`; `busy(port)` says a socket of this
    /// client still holds `port` towards the same destination (Linux skips it).
    pub fn pick(&mut self, now: Moment, busy: impl Fn(u16) -> bool, rng: &mut ChaCha8Rng) -> u16 {
        let (low, high) = (
            u32::from(EPHEMERAL_PORTS.0),
            u32::from(EPHEMERAL_PORTS.1) + 1,
        );
        let remaining = (high - low) & !1;
        let phase = *self
            .phase
            .get_or_insert_with(|| rng.random_range(0..SHUFFLE_PERIOD_MS));
        let period = (now.as_millis() + phase).div_euclid(SHUFFLE_PERIOD_MS);
        let start = match self.period {
            Some((p, start)) if p == period => start,
            _ => {
                let start = rng.random_range(0..remaining);
                self.period = Some((period, start));
                self.walked = 0;
                start
            }
        };
        let first = (start.wrapping_add(self.walked) % remaining) & !1;
        let mut chosen = None;
        // The low parity first; the other only when every port of it is taken.
        'parity: for offset in [first, first + 1] {
            let mut port = low + offset;
            let mut i = 0;
            while i < remaining {
                if port >= high {
                    port -= remaining;
                }
                let p = u16::try_from(port).unwrap_or(EPHEMERAL_PORTS.0);
                if !busy(p) {
                    chosen = Some((p, i));
                    break 'parity;
                }
                i += 2;
                port += 2;
            }
        }
        // Every port busy cannot happen with the clients' few sockets; take the start.
        let (port, i) = chosen.unwrap_or((EPHEMERAL_PORTS.0, 0));
        let jitter = rng.random_range(0..8u32) * 2;
        self.walked = self.walked.wrapping_add(i.max(jitter) + 2);
        port
    }
}

/// A connection's tuple as the client's node tracks it (the source is the client pod).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tuple {
    /// The client instance (one pod, one source address).
    pub client: usize,
    pub sport: u16,
    /// ClusterIP and port.
    pub dst: (Ipv4Addr, u16),
}

/// An unanswered SYN's entry: where its DNAT sent it (`None`: no rule matched) and when it
/// expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SynSent {
    to: Option<Ipv4Addr>,
    expires: Moment,
}

/// The client nodes' conntrack tables, as far as a new connection can meet them: the
/// `SYN_SENT` entries (an entry in any other state is replaced by a new SYN, so it never
/// redirects one). One table serves every node, as a [`Tuple`] names its client and each
/// client lives on one node.
#[derive(Clone, Debug, Default)]
pub struct Table {
    syn_sent: BTreeMap<Tuple, SynSent>,
}

impl Table {
    /// A new connection's SYN on `t` at `now`: `Some(to)` when a live `SYN_SENT` entry catches
    /// it (the packet follows that entry's DNAT to `to`, not the rules).
    pub fn syn(&mut self, t: &Tuple, now: Moment) -> Option<Option<Ipv4Addr>> {
        match self.syn_sent.get(t) {
            Some(e) if e.expires > now => Some(e.to),
            Some(_) => {
                self.syn_sent.remove(t);
                None
            }
            None => None,
        }
    }

    /// How the connection on `t`, DNATed to `to` at `now`, ended: a SYN nobody answered
    /// (timeout) leaves or refreshes a `SYN_SENT` entry until its last SYN plus `syn_sent_ms`;
    /// an answer (ok, or a reset) or a local reject leaves none.
    pub fn settle(
        &mut self,
        t: Tuple,
        to: Option<Ipv4Addr>,
        outcome: Outcome,
        now: Moment,
        client_timeout: Duration,
        syn_sent_ms: Duration,
    ) {
        if outcome == Outcome::Timeout {
            let expires = now + last_syn(client_timeout) + syn_sent_ms;
            self.syn_sent.insert(t, SynSent { to, expires });
            if self.syn_sent.len().is_multiple_of(4096) {
                self.syn_sent.retain(|_, e| e.expires > now);
            }
        } else {
            self.syn_sent.remove(&t);
        }
    }
}

/// When, after the first, a connect that gives up after `timeout` sends its last SYN: the
/// retransmissions come 1, 3, 7, 15 ... s after the first (initial RTO 1 s, doubled).
fn last_syn(timeout: Duration) -> Duration {
    let mut at = Duration::ZERO;
    let mut rto = SYN_RTO_MS;
    while at + rto < timeout {
        at += rto;
        rto *= 2;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn ports_step_by_two_to_sixteen_within_a_period_and_jump_between() {
        let mut p = PortPicker::default();
        let mut r = rng();
        let range = u32::from(EPHEMERAL_PORTS.1) + 1 - u32::from(EPHEMERAL_PORTS.0);
        let mut last: Option<(i64, u16)> = None;
        let (mut steps, mut jumps) = (Vec::new(), 0);
        for k in 0..2000 {
            let now = k * 50;
            let port = p.pick(Moment::from_millis(now), |_| false, &mut r);
            assert_eq!((port - EPHEMERAL_PORTS.0) % 2, 0, "low parity first");
            if let Some((t, prev)) = last {
                let d = (u32::from(port) + range - u32::from(prev)) % range;
                if (t + p.phase.unwrap()) / SHUFFLE_PERIOD_MS
                    == (now + p.phase.unwrap()) / SHUFFLE_PERIOD_MS
                {
                    steps.push(d);
                } else {
                    jumps += 1;
                }
            }
            last = Some((now, port));
        }
        assert!(steps.iter().all(|d| (2..=16).contains(d)), "{steps:?}");
        for d in (2..=16).step_by(2) {
            assert!(steps.contains(&d), "step {d} never taken");
        }
        // 100 s of requests every 50 ms: 9 or 10 period changes.
        assert!((9..=10).contains(&jumps), "{jumps}");
    }

    #[test]
    fn a_busy_port_is_skipped_and_the_walk_moves_past_it() {
        let mut p = PortPicker::default();
        let mut r = rng();
        let range = u32::from(EPHEMERAL_PORTS.1) + 1 - u32::from(EPHEMERAL_PORTS.0);
        let ahead = |a: u16, b: u16| (u32::from(b) + range - u32::from(a)) % range;
        let first = p.pick(Moment::EPOCH, |_| false, &mut r);
        // Same period: the 20 ports of its parity after it are taken.
        let second = p.pick(
            Moment::from_millis(1),
            |q| (1..=40).contains(&ahead(first, q)),
            &mut r,
        );
        assert_eq!(ahead(first, second), 42, "{first} -> {second}");
        // The bucket moved past the ports the scan walked.
        let third = p.pick(Moment::from_millis(2), |_| false, &mut r);
        assert!(
            (2..=16).contains(&ahead(second, third)),
            "{second} -> {third}"
        );
    }

    #[test]
    fn an_unanswered_syn_catches_the_next_syn_on_its_tuple_until_the_timeout() {
        let mut t = Table::default();
        let dead: Ipv4Addr = "100.64.0.5".parse().unwrap();
        let tuple = Tuple {
            client: 0,
            sport: 40000,
            dst: ("10.96.0.10".parse().unwrap(), 80),
        };
        assert_eq!(t.syn(&tuple, Moment::EPOCH), None);
        t.settle(
            tuple,
            Some(dead),
            Outcome::Timeout,
            Moment::EPOCH,
            Duration::from_millis(1000),
            Duration::from_millis(120_000),
        );
        assert_eq!(
            t.syn(&tuple, Moment::from_millis(119_999)),
            Some(Some(dead))
        );
        // That SYN timed out too: the entry lives another 120 s from it.
        t.settle(
            tuple,
            Some(dead),
            Outcome::Timeout,
            Moment::from_millis(119_999),
            Duration::from_millis(1000),
            Duration::from_millis(120_000),
        );
        assert_eq!(
            t.syn(&tuple, Moment::from_millis(239_000)),
            Some(Some(dead))
        );
        assert_eq!(t.syn(&tuple, Moment::from_millis(239_999)), None);
        // An answered or refused connection leaves nothing to catch the next SYN.
        t.settle(
            tuple,
            Some(dead),
            Outcome::Timeout,
            Moment::from_millis(300_000),
            Duration::from_millis(1000),
            Duration::from_millis(120_000),
        );
        t.settle(
            tuple,
            Some(dead),
            Outcome::Refused,
            Moment::from_millis(300_100),
            Duration::from_millis(1000),
            Duration::from_millis(120_000),
        );
        assert_eq!(t.syn(&tuple, Moment::from_millis(300_200)), None);
        // Other tuples are not caught.
        t.settle(
            tuple,
            Some(dead),
            Outcome::Timeout,
            Moment::from_millis(400_000),
            Duration::from_millis(1000),
            Duration::from_millis(120_000),
        );
        let other = Tuple {
            sport: 40002,
            ..tuple
        };
        assert_eq!(t.syn(&other, Moment::from_millis(400_001)), None);
    }

    #[test]
    fn retransmitted_syns_extend_the_entry() {
        assert_eq!(last_syn(Duration::from_millis(1000)), Duration::ZERO);
        assert_eq!(
            last_syn(Duration::from_millis(2000)),
            Duration::from_millis(1000)
        );
        assert_eq!(
            last_syn(Duration::from_millis(5000)),
            Duration::from_millis(3000)
        );
        assert_eq!(
            last_syn(Duration::from_millis(30_000)),
            Duration::from_millis(15_000)
        );
    }
}
