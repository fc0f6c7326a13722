//! `zonelab load` with several targets: which one each request uses, as a client of an NLB's
//! DNS name would pick — round-robin over the addresses the name resolves to, resolved again
//! once the answer's TTL has passed. The answer is what NLB's DNS gives: the LB nodes that are
//! healthy (every node when none is), read from the balancer's status file.
//!
//! Start at [`Resolver`]: sans-IO, `now` and the status file's text passed in.

use std::collections::BTreeSet;
use std::time::Duration;

use lb::status::Summary;
use lb::{NodeState, Record};

/// TTL of an ELB DNS name's records (60 s: "the DNS entry … has a TTL of 60 seconds", Elastic
/// Load Balancing docs, "DNS name"); the fast profile divides it by 10.
pub const NLB_DNS_TTL: Duration = Duration::from_secs(60);

/// One target: its address (`host:port`) and host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub hostport: String,
    pub host: String,
}

/// Picks the target of each request.
#[derive(Debug, Clone)]
pub struct Resolver {
    all: Vec<Candidate>,
    /// The current answer (indices into `all`).
    answer: Vec<usize>,
    ttl: Duration,
    /// When the answer expires; `None`: resolve at the next pick.
    expires: Option<Duration>,
    next: usize,
}

impl Resolver {
    /// Round-robin over `all`; with a TTL the answer is narrowed by the status file.
    pub fn new(all: Vec<Candidate>, ttl: Duration) -> Resolver {
        let answer = (0..all.len()).collect();
        Resolver {
            all,
            answer,
            ttl,
            expires: None,
            next: 0,
        }
    }

    /// Whether the answer has expired at `now` (the caller then reads the status file and
    /// calls [`Resolver::resolve`]).
    pub fn expired(&self, now: Duration) -> bool {
        self.expires.is_none_or(|e| now >= e)
    }

    /// A new answer from the balancer's status file at `now`: the targets whose LB node is
    /// not unhealthy (a node with no line yet counts as healthy); all of them when that
    /// leaves none (NLB's DNS answers with every node then). An unreadable file keeps the
    /// previous answer.
    pub fn resolve(&mut self, status: &str, now: Duration) {
        self.expires = Some(now + self.ttl);
        let Ok(summary) = Summary::from_lines(status) else {
            return;
        };
        let unhealthy: BTreeSet<String> = summary
            .nodes
            .values()
            .filter_map(|l| match &l.record {
                Record::Node { address, to, .. } if *to == NodeState::Unhealthy => {
                    Some(address.to_string())
                }
                _ => None,
            })
            .collect();
        let healthy: Vec<usize> = (0..self.all.len())
            .filter(|i| !unhealthy.contains(&self.all[*i].host))
            .collect();
        self.answer = if healthy.is_empty() {
            (0..self.all.len()).collect()
        } else {
            healthy
        };
    }

    /// The target of the next request.
    pub fn pick(&mut self) -> &Candidate {
        let i = self.answer[self.next % self.answer.len()];
        self.next = self.next.wrapping_add(1);
        &self.all[i]
    }

    /// The current answer's addresses.
    pub fn answer(&self) -> Vec<&str> {
        self.answer
            .iter()
            .map(|i| self.all[*i].hostport.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<Candidate> {
        ["172.20.251.16", "172.20.251.17", "172.20.251.18"]
            .iter()
            .map(|h| Candidate {
                hostport: format!("{h}:80"),
                host: h.to_string(),
            })
            .collect()
    }

    fn node(address: &str, zone: &str, to: &str) -> String {
        format!(
            r#"{{"at":1.0,"kind":"node","address":"{address}","zone":"{zone}","from":"healthy","to":"{to}"}}"#
        )
    }

    #[test]
    fn round_robin_over_every_target_without_a_status() {
        let mut r = Resolver::new(candidates(), Duration::from_secs(6));
        let picked: Vec<String> = (0..4).map(|_| r.pick().host.clone()).collect();
        assert_eq!(
            picked,
            [
                "172.20.251.16",
                "172.20.251.17",
                "172.20.251.18",
                "172.20.251.16"
            ]
        );
    }

    #[test]
    fn an_unhealthy_node_leaves_the_answer_after_the_ttl_and_all_return_when_none_is_healthy() {
        let ttl = Duration::from_secs(6);
        let mut r = Resolver::new(candidates(), ttl);
        assert!(r.expired(Duration::ZERO));
        r.resolve("", Duration::ZERO);
        assert!(!r.expired(Duration::from_secs(5)));
        assert_eq!(r.answer().len(), 3);
        let status = node("172.20.251.16", "a", "unhealthy");
        // Cached until the TTL passes, then resolved without zone a's node.
        assert!(r.expired(ttl));
        r.resolve(&status, ttl);
        assert_eq!(r.answer(), ["172.20.251.17:80", "172.20.251.18:80"]);
        assert!((0..4).all(|_| r.pick().host != "172.20.251.16"));
        // Back healthy: back in the answer.
        let back = format!("{status}\n{}", node("172.20.251.16", "a", "healthy"));
        r.resolve(&back, ttl * 2);
        assert_eq!(r.answer().len(), 3);
        // Every node unhealthy: DNS answers with all of them.
        let all_down = ["16", "17", "18"]
            .iter()
            .map(|h| node(&format!("172.20.251.{h}"), "a", "unhealthy"))
            .collect::<Vec<_>>()
            .join("\n");
        r.resolve(&all_down, ttl * 3);
        assert_eq!(r.answer().len(), 3);
        // A garbled file keeps the last answer.
        r.resolve(&status, ttl * 4);
        r.resolve("not json", ttl * 5);
        assert_eq!(r.answer().len(), 2);
    }
}
