//! The Service ClusterIP range (`--service-cluster-ip-range`) and its bitmap allocator.
//!
//! Start at [`IpRange::parse`], then [`IpAllocator::new`]. Behaviour follows upstream
//! `pkg/registry/core/service/ipallocator/bitmap.go` with KEP-3070 static/dynamic bands.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use rand::Rng;

use super::bitmap::BandedBitmap;

/// Largest number of host bits accepted for an IPv4 range (`/12`); upstream
/// `cmd/kube-apiserver/app/options/validation.go` (`maxCIDRBits = 20`).
pub const MAX_HOST_BITS_V4: u32 = 20;

/// Smallest number of addresses in a range; upstream `ServiceIPRange` (controlplane options).
pub const MIN_RANGE_ADDRESSES: u64 = 8;

/// Upstream default when the flag is unset (`DefaultServiceIPCIDR`, `pkg/controlplane/services.go`).
pub const DEFAULT_SERVICE_CIDR: &str = "10.0.0.0/24";

/// Why a `--service-cluster-ip-range` value was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("invalid CIDR address: {0}")]
    InvalidCidr(String),
    #[error(
        "specified --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= {}",
        32 - MAX_HOST_BITS_V4
    )]
    TooLarge,
    #[error("the service cluster IP range must be at least 8 IP addresses")]
    TooSmall,
    #[error("IPv6 service cluster IP ranges are not supported yet: {0}")]
    Ipv6Unsupported(String),
}

/// Why an IP could not be allocated; texts from upstream `ipallocator/interfaces.go`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpAllocError {
    #[error("range is full")]
    Full,
    #[error("provided IP is already allocated")]
    Allocated,
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    NotInRange { ip: IpAddr, range: IpRange },
}

/// An IPv4 CIDR, stored as its (masked) network address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    network: u32,
    prefix: u32,
}

impl IpRange {
    /// Parses `a.b.c.d/n`, masking host bits as Go's `net.ParseCIDR` does, and applies
    /// upstream's size limits (mask >= 12, at least 8 addresses).
    pub fn parse(s: &str) -> Result<IpRange, RangeError> {
        let invalid = || RangeError::InvalidCidr(s.to_string());
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(invalid)?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let ip: IpAddr = addr.parse().map_err(|_| invalid())?;
        let prefix: u32 = prefix.parse().map_err(|_| invalid())?;
        let v4 = match ip {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) if prefix <= 128 => {
                return Err(RangeError::Ipv6Unsupported(s.to_string()));
            }
            IpAddr::V6(_) => return Err(invalid()),
        };
        if prefix > 32 {
            return Err(invalid());
        }
        let host_bits = 32 - prefix;
        if host_bits > MAX_HOST_BITS_V4 {
            return Err(RangeError::TooLarge);
        }
        if (1u64 << host_bits) < MIN_RANGE_ADDRESSES {
            return Err(RangeError::TooSmall);
        }
        let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
        Ok(IpRange {
            network: u32::from(v4) & mask,
            prefix,
        })
    }

    /// The network address (`10.96.0.0` for `10.96.0.0/12`).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u32 {
        self.prefix
    }

    /// Number of addresses in the CIDR, network and broadcast included (`2^hostbits`).
    pub fn cidr_size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// Number of allocatable addresses (network and broadcast excluded).
    pub fn usable(&self) -> u32 {
        self.cidr_size() - 2
    }

    /// Size of the KEP-3070 static (lower) band: `min(max(16, size/16), 256)`, or 0 when the
    /// CIDR has at most 16 addresses (upstream `calculateRangeOffset`).
    pub fn band_offset(&self) -> u32 {
        let size = self.cidr_size();
        if size <= 16 {
            0
        } else {
            (size / 16).clamp(16, 256)
        }
    }

    /// Whether `ip` is inside the CIDR (network and broadcast included).
    pub fn contains_cidr(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.network) < self.cidr_size()
    }

    /// Bitmap offset of an allocatable `ip` (offset 0 is network+1), `None` when `ip` is not
    /// allocatable (outside, network or broadcast address).
    fn offset_of(&self, ip: IpAddr) -> Option<u32> {
        let IpAddr::V4(v4) = ip else { return None };
        let delta = u32::from(v4).wrapping_sub(self.network);
        (delta >= 1 && delta <= self.usable()).then(|| delta - 1)
    }

    fn ip_at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1 + offset)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// The first usable address of `range`: the `kubernetes` Service's ClusterIP
/// (upstream `GetIndexedIP(&serviceClusterIPRange, 1)`), e.g. 10.96.0.1 for 10.96.0.0/12.
pub fn first_ip(range: &IpRange) -> Ipv4Addr {
    range.ip_at(0)
}

/// Bitmap allocator over the usable addresses of one [`IpRange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpAllocator {
    range: IpRange,
    bits: BandedBitmap,
}

impl IpAllocator {
    /// An empty allocator for `range`.
    pub fn new(range: IpRange) -> IpAllocator {
        IpAllocator {
            range,
            bits: BandedBitmap::new(range.usable(), range.band_offset()),
        }
    }

    /// The range this allocator serves.
    pub fn range(&self) -> &IpRange {
        &self.range
    }

    /// Picks a free address, preferring the upper (dynamic) band.
    pub fn allocate_next(&mut self, rng: &mut impl Rng) -> Result<Ipv4Addr, IpAllocError> {
        let offset = self.bits.take_next(rng).ok_or(IpAllocError::Full)?;
        Ok(self.range.ip_at(offset))
    }

    /// Reserves a specific address (either band).
    pub fn allocate(&mut self, ip: IpAddr) -> Result<(), IpAllocError> {
        let offset = self.offset_or_err(ip)?;
        if self.bits.set(offset) {
            Ok(())
        } else {
            Err(IpAllocError::Allocated)
        }
    }

    /// Returns an address to the pool; releasing a free or foreign address is a no-op
    /// (as upstream `Release`). Returns whether it was allocated.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        self.range.offset_of(ip).is_some_and(|o| self.bits.clear(o))
    }

    /// Whether `ip` is an allocatable address of this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range.offset_of(ip).is_some()
    }

    /// Whether `ip` is currently allocated.
    pub fn is_allocated(&self, ip: IpAddr) -> bool {
        self.range
            .offset_of(ip)
            .is_some_and(|o| self.bits.is_set(o))
    }

    /// Number of free addresses.
    pub fn free_count(&self) -> u32 {
        self.bits.size() - self.bits.used()
    }

    /// Number of allocated addresses.
    pub fn used_count(&self) -> u32 {
        self.bits.used()
    }

    fn offset_or_err(&self, ip: IpAddr) -> Result<u32, IpAllocError> {
        self.range.offset_of(ip).ok_or(IpAllocError::NotInRange {
            ip,
            range: self.range,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    fn v4(s: &str) -> IpAddr {
        s.parse().expect("test IP")
    }

    #[test]
    fn band_offsets_match_kep_3070() {
        for (cidr, offset, usable) in [
            ("10.96.0.0/12", 256, 1_048_574),
            ("10.96.0.0/16", 256, 65_534),
            ("10.96.0.0/22", 64, 1_022),
            ("10.96.0.0/24", 16, 254),
            ("10.96.0.0/26", 16, 62),
            ("10.96.0.0/27", 16, 30),
            ("10.96.0.0/28", 0, 14),
            ("10.96.0.0/29", 0, 6),
        ] {
            let r = IpRange::parse(cidr).expect(cidr);
            assert_eq!(r.band_offset(), offset, "{cidr}");
            assert_eq!(r.usable(), usable, "{cidr}");
        }
    }

    #[test]
    fn parse_errors_have_upstream_text() {
        assert_eq!(
            IpRange::parse("10.0.0.0/11").unwrap_err().to_string(),
            "specified --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12"
        );
        assert_eq!(
            IpRange::parse("10.0.0.0/30").unwrap_err().to_string(),
            "the service cluster IP range must be at least 8 IP addresses"
        );
        assert!(matches!(
            IpRange::parse("fd00::/112"),
            Err(RangeError::Ipv6Unsupported(_))
        ));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/24",
            "x/24",
            "10.0.0.0/+4",
        ] {
            assert!(
                matches!(IpRange::parse(bad), Err(RangeError::InvalidCidr(_))),
                "{bad}"
            );
        }
        let masked = IpRange::parse("10.96.3.7/12").expect("masked");
        assert_eq!(masked.to_string(), "10.96.0.0/12");
        assert_eq!(first_ip(&masked), Ipv4Addr::new(10, 96, 0, 1));
    }

    #[test]
    fn small_range_allocates_every_address_once_then_full() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut a = IpAllocator::new(IpRange::parse("10.96.0.0/28").expect("cidr"));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..14 {
            let ip = a.allocate_next(&mut rng).expect("free");
            assert!(seen.insert(ip), "{ip} handed out twice");
            assert_ne!(ip, Ipv4Addr::new(10, 96, 0, 0));
            assert_ne!(ip, Ipv4Addr::new(10, 96, 0, 15));
        }
        assert_eq!(seen.first(), Some(&Ipv4Addr::new(10, 96, 0, 1)));
        assert_eq!(seen.last(), Some(&Ipv4Addr::new(10, 96, 0, 14)));
        let err = a.allocate_next(&mut rng).unwrap_err();
        assert_eq!(err.to_string(), "range is full");
        assert_eq!((a.used_count(), a.free_count()), (14, 0));
        assert!(a.release(v4("10.96.0.9")));
        assert!(!a.release(v4("10.96.0.9")));
        assert_eq!(a.allocate_next(&mut rng), Ok(Ipv4Addr::new(10, 96, 0, 9)));
    }

    #[test]
    fn network_and_broadcast_are_rejected_with_upstream_text() {
        let mut a = IpAllocator::new(IpRange::parse("10.96.0.0/28").expect("cidr"));
        for ip in ["10.96.0.0", "10.96.0.15", "10.97.0.1", "192.168.0.1"] {
            assert!(!a.contains(v4(ip)));
            assert_eq!(
                a.allocate(v4(ip)).unwrap_err().to_string(),
                format!(
                    "the provided IP ({ip}) is not in the valid range. The range of valid IPs is 10.96.0.0/28"
                )
            );
        }
        assert_eq!(a.used_count(), 0);
        a.allocate(v4("10.96.0.3")).expect("free");
        assert!(a.is_allocated(v4("10.96.0.3")));
        assert_eq!(
            a.allocate(v4("10.96.0.3")).unwrap_err().to_string(),
            "provided IP is already allocated"
        );
    }

    #[test]
    fn dynamic_picks_stay_in_upper_band_until_full_and_lower_band_is_honoured() {
        let mut rng = StdRng::seed_from_u64(42);
        let range = IpRange::parse("10.96.0.0/24").expect("cidr");
        let mut a = IpAllocator::new(range);
        // Static band is 10.96.0.1..=10.96.0.16; a request there is honoured.
        a.allocate(v4("10.96.0.10")).expect("static band request");
        let upper = 254 - 16;
        for _ in 0..upper {
            let ip = a.allocate_next(&mut rng).expect("free");
            assert!(
                ip.octets()[3] > 16,
                "{ip} in the static band while the dynamic band has room"
            );
        }
        let ip = a.allocate_next(&mut rng).expect("lower band fallback");
        assert!(ip.octets()[3] <= 16 && ip.octets()[3] != 10, "{ip}");
        assert_eq!(a.used_count(), upper + 2);
    }

    #[test]
    fn random_allocate_release_keeps_counts_consistent() {
        let mut rng = StdRng::seed_from_u64(0xC0FFEE);
        let mut a = IpAllocator::new(IpRange::parse("10.96.0.0/26").expect("cidr"));
        let mut model = std::collections::BTreeSet::new();
        for step in 0..5_000 {
            match rng.random_range(0..3) {
                0 => match a.allocate_next(&mut rng) {
                    Ok(ip) => assert!(model.insert(ip), "step {step}: {ip} twice"),
                    Err(e) => assert_eq!((e, model.len()), (IpAllocError::Full, 62)),
                },
                1 => {
                    let ip = Ipv4Addr::new(10, 96, 0, rng.random_range(0..64));
                    let res = a.allocate(IpAddr::V4(ip));
                    match (res, ip.octets()[3]) {
                        (Err(IpAllocError::NotInRange { .. }), 0 | 63) => {}
                        (Ok(()), _) => assert!(model.insert(ip)),
                        (Err(IpAllocError::Allocated), _) => assert!(model.contains(&ip)),
                        (other, _) => panic!("step {step}: {other:?} for {ip}"),
                    }
                }
                _ => {
                    let ip = Ipv4Addr::new(10, 96, 0, rng.random_range(0..64));
                    assert_eq!(a.release(IpAddr::V4(ip)), model.remove(&ip));
                }
            }
            assert_eq!(a.used_count() as usize, model.len());
            assert_eq!((a.used_count() + a.free_count()), 62);
        }
    }
}
