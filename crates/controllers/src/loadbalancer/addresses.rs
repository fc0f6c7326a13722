//! LB node addresses: a deterministic allocator over a pool it is given (the lab's is
//! `netlab::topology::load_balancer_service_addresses`, `172.20.251.16`-`.254`), one address
//! per (Service, zone).
//!
//! Start at [`Allocator::ensure`]. The lowest free address wins, Services in key order, zones
//! in name order, so a run is reproducible. After a restart the controller adopts what the
//! Services' `status.loadBalancer.ingress` already says ([`Allocator::adopt`]): the ingress list
//! is written in zone order, so it maps back onto the zones as long as the zone set did not
//! change meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::Key;

/// No address left in the range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no free load-balancer address in {first}-{last} for zone {zone}")]
pub struct Exhausted {
    pub zone: String,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

/// Addresses by Service and zone.
#[derive(Debug, Clone)]
pub struct Allocator {
    pool: Vec<Ipv4Addr>,
    used: BTreeSet<Ipv4Addr>,
    by_service: BTreeMap<Key, BTreeMap<String, Ipv4Addr>>,
}

impl Allocator {
    /// An allocator over `pool` (in the order given).
    pub fn new(pool: impl IntoIterator<Item = Ipv4Addr>) -> Allocator {
        Allocator {
            pool: pool.into_iter().collect(),
            used: BTreeSet::new(),
            by_service: BTreeMap::new(),
        }
    }

    /// Take over `ips` for `key`'s `zones` (both in order) where they are in the pool and free.
    pub fn adopt(&mut self, key: &Key, zones: &BTreeSet<String>, ips: &[Ipv4Addr]) {
        let entry = self.by_service.entry(key.clone()).or_default();
        for (zone, ip) in zones.iter().zip(ips) {
            if self.pool.contains(ip) && !self.used.contains(ip) && !entry.contains_key(zone) {
                self.used.insert(*ip);
                entry.insert(zone.clone(), *ip);
            }
        }
    }

    /// `key`'s address per zone for exactly `zones`: kept ones stay, zones that left give
    /// theirs back, new zones get the lowest free address. On exhaustion nothing changes.
    pub fn ensure(
        &mut self,
        key: &Key,
        zones: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Ipv4Addr>, Exhausted> {
        let current = self.by_service.get(key).cloned().unwrap_or_default();
        let mut used = self.used.clone();
        let mut next = current.clone();
        for (zone, ip) in &current {
            if !zones.contains(zone) {
                used.remove(ip);
                next.remove(zone);
            }
        }
        for zone in zones {
            if next.contains_key(zone) {
                continue;
            }
            let ip = self
                .pool
                .iter()
                .find(|ip| !used.contains(ip))
                .copied()
                .ok_or_else(|| Exhausted {
                    zone: zone.clone(),
                    first: self.pool.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
                    last: self.pool.last().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
                })?;
            used.insert(ip);
            next.insert(zone.clone(), ip);
        }
        self.used = used;
        self.by_service.insert(key.clone(), next.clone());
        Ok(next)
    }

    /// Give back every address of `key`.
    pub fn release(&mut self, key: &Key) {
        for ip in self.by_service.remove(key).unwrap_or_default().values() {
            self.used.remove(ip);
        }
    }
}

/// The tests' pool: the lab's (`172.20.251.16`-`.254`), written out so the logic's tests do
/// not link the lab's network crate; the server passes netlab's own list in.
#[cfg(test)]
pub(crate) fn test_pool() -> impl Iterator<Item = Ipv4Addr> {
    (16..=254).map(|host| Ipv4Addr::new(172, 20, 251, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(z: &[&str]) -> BTreeSet<String> {
        z.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lowest_free_address_per_zone_and_release() {
        let mut a = Allocator::new(test_pool());
        let (x, y) = (Key::new("default", "x"), Key::new("default", "y"));
        let got = a.ensure(&x, &zones(&["a", "b"])).expect("free");
        assert_eq!(got["a"], Ipv4Addr::new(172, 20, 251, 16));
        assert_eq!(got["b"], Ipv4Addr::new(172, 20, 251, 17));
        let got = a.ensure(&y, &zones(&["a"])).expect("free");
        assert_eq!(got["a"], Ipv4Addr::new(172, 20, 251, 18));
        // Zone b leaves x: its address is reused by the next new zone.
        let got = a.ensure(&x, &zones(&["a"])).expect("free");
        assert_eq!(got.len(), 1);
        let got = a.ensure(&y, &zones(&["a", "c"])).expect("free");
        assert_eq!(got["c"], Ipv4Addr::new(172, 20, 251, 17));
        a.release(&x);
        let got = a.ensure(&x, &zones(&["b"])).expect("free");
        assert_eq!(got["b"], Ipv4Addr::new(172, 20, 251, 16));
    }

    #[test]
    fn exhaustion_changes_nothing_and_adoption_keeps_addresses() {
        let pool = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
        let mut a = Allocator::new(pool);
        let (x, y) = (Key::new("n", "x"), Key::new("n", "y"));
        a.adopt(&x, &zones(&["a"]), &[pool[1]]);
        let e = a
            .ensure(&y, &zones(&["a", "b"]))
            .expect_err("one free address");
        assert_eq!(
            e.to_string(),
            "no free load-balancer address in 10.0.0.1-10.0.0.2 for zone b"
        );
        assert_eq!(a.ensure(&x, &zones(&["a"])).expect("kept")["a"], pool[1]);
        assert_eq!(a.ensure(&y, &zones(&["a"])).expect("free")["a"], pool[0]);
    }
}
