//! Pod address allocation inside the node's pod CIDR: lowest free address, the network
//! address and `.1` (the node side) reserved, the broadcast address never handed out.
//! Start at [`Ipam::new`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The pod CIDR could not be parsed or has no room.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("pod CIDR {0:?} is not an IPv4 network a.b.c.d/n with n in 8..=30")]
    BadCidr(String),
    #[error("pod CIDR {0} has no free address")]
    Full(String),
}

/// Allocates pod addresses; owner strings (pod UIDs) identify allocations.
#[derive(Clone, Debug)]
pub struct Ipam {
    cidr: String,
    first: u32,
    last: u32,
    used: BTreeMap<u32, String>,
}

impl Ipam {
    /// Parse `cidr` (`a.b.c.d/n`, host bits ignored).
    pub fn new(cidr: &str) -> Result<Ipam, IpamError> {
        let bad = || IpamError::BadCidr(cidr.to_string());
        let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.trim().parse().map_err(|_| bad())?;
        let len: u32 = len.trim().parse().map_err(|_| bad())?;
        if !(8..=30).contains(&len) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - len);
        let net = u32::from(addr) & mask;
        let broadcast = net | !mask;
        Ok(Ipam {
            cidr: cidr.to_string(),
            first: net + 2,
            last: broadcast - 1,
            used: BTreeMap::new(),
        })
    }

    /// The address held by `owner`, or the lowest free one (recorded for `owner`).
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some((ip, _)) = self.used.iter().find(|(_, o)| o.as_str() == owner) {
            return Ok(Ipv4Addr::from(*ip));
        }
        let free = (self.first..=self.last).find(|ip| !self.used.contains_key(ip));
        let ip = free.ok_or_else(|| IpamError::Full(self.cidr.clone()))?;
        self.used.insert(ip, owner.to_string());
        Ok(Ipv4Addr::from(ip))
    }

    /// Free whatever `owner` holds.
    pub fn release(&mut self, owner: &str) {
        self.used.retain(|_, o| o != owner);
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_and_reuse() {
        let mut ipam = Ipam::new("10.244.3.0/24").expect("cidr");
        assert_eq!(ipam.allocate("a"), Ok(Ipv4Addr::new(10, 244, 3, 2)));
        assert_eq!(ipam.allocate("b"), Ok(Ipv4Addr::new(10, 244, 3, 3)));
        assert_eq!(ipam.allocate("a"), Ok(Ipv4Addr::new(10, 244, 3, 2)));
        ipam.release("a");
        assert_eq!(ipam.allocate("c"), Ok(Ipv4Addr::new(10, 244, 3, 2)));
        assert_eq!(ipam.in_use(), 2);
    }

    #[test]
    fn full_and_bad() {
        let mut ipam = Ipam::new("10.0.0.0/30").expect("cidr");
        assert_eq!(ipam.allocate("a"), Ok(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(matches!(ipam.allocate("b"), Err(IpamError::Full(_))));
        assert!(Ipam::new("10.0.0.0").is_err());
        assert!(Ipam::new("10.0.0.0/31").is_err());
        assert!(Ipam::new("x/24").is_err());
    }
}
