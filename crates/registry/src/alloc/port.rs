//! The NodePort range (`--service-node-port-range`) and its bitmap allocator.
//!
//! Start at [`PortRange::parse`], then [`PortAllocator::new`]. Behaviour follows upstream
//! `pkg/registry/core/service/portallocator/allocator.go` with the KEP-3668 static band.

use std::fmt;

use rand::Rng;

use super::bitmap::BandedBitmap;

/// Upstream default `--service-node-port-range` (`kubeoptions.DefaultServiceNodePortRange`).
pub const DEFAULT_NODE_PORT_RANGE: &str = "30000-32767";

/// Why a port range string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse port range: {0}")]
pub struct PortRangeError(pub String);

/// Why a port could not be allocated; texts from upstream `portallocator/allocator.go`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortAllocError {
    #[error("range is full")]
    Full,
    #[error("provided port is already allocated")]
    Allocated,
    #[error("provided port is not in the valid range. The range of valid ports is {0}")]
    NotInRange(PortRange),
}

/// An inclusive port range `base..=base+size-1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    base: u16,
    size: u32,
}

impl PortRange {
    /// Parses `30000-32767`, `30000+2767` or a single port, as upstream `ParsePortRange`.
    pub fn parse(s: &str) -> Result<PortRange, PortRangeError> {
        let bad = || PortRangeError(s.to_string());
        let num = |p: &str| -> Result<u16, PortRangeError> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse::<u16>().map_err(|_| bad())
        };
        let s_trim = s.trim();
        let (low, high) = if let Some((a, b)) = s_trim.split_once('-') {
            (num(a)?, num(b)?)
        } else if let Some((a, b)) = s_trim.split_once('+') {
            let low = num(a)?;
            (low, low.checked_add(num(b)?).ok_or_else(bad)?)
        } else {
            let p = num(s_trim)?;
            (p, p)
        };
        if high < low {
            return Err(bad());
        }
        Ok(PortRange {
            base: low,
            size: u32::from(high - low) + 1,
        })
    }

    /// First port.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// Number of ports.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u32) -> bool {
        port >= u32::from(self.base) && port - u32::from(self.base) < self.size
    }

    /// Size of the KEP-3668 static (lower) band: `min(max(16, size/32), 128)`, or 0 when the
    /// range has at most 16 ports (upstream `calculateRangeOffset`).
    pub fn band_offset(&self) -> u32 {
        if self.size <= 16 {
            0
        } else {
            (self.size / 32).clamp(16, 128)
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.base, u32::from(self.base) + self.size - 1)
    }
}

/// Bitmap allocator over one [`PortRange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortAllocator {
    range: PortRange,
    bits: BandedBitmap,
}

impl PortAllocator {
    /// An empty allocator for `range`.
    pub fn new(range: PortRange) -> PortAllocator {
        PortAllocator {
            range,
            bits: BandedBitmap::new(range.size, range.band_offset()),
        }
    }

    /// The range this allocator serves.
    pub fn range(&self) -> &PortRange {
        &self.range
    }

    /// Picks a free port, preferring the upper (dynamic) band.
    pub fn allocate_next(&mut self, rng: &mut impl Rng) -> Result<u16, PortAllocError> {
        let offset = self.bits.take_next(rng).ok_or(PortAllocError::Full)?;
        Ok(self.port_at(offset))
    }

    /// Reserves a specific port (either band).
    pub fn allocate(&mut self, port: u32) -> Result<(), PortAllocError> {
        if !self.range.contains(port) {
            return Err(PortAllocError::NotInRange(self.range));
        }
        let offset = port - u32::from(self.range.base);
        if self.bits.set(offset) {
            Ok(())
        } else {
            Err(PortAllocError::Allocated)
        }
    }

    /// Returns a port to the pool (no-op when free or outside). Returns whether it was taken.
    pub fn release(&mut self, port: u32) -> bool {
        self.range.contains(port) && self.bits.clear(port - u32::from(self.range.base))
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u32) -> bool {
        self.range.contains(port)
    }

    /// Whether `port` is currently allocated.
    pub fn is_allocated(&self, port: u32) -> bool {
        self.range.contains(port) && self.bits.is_set(port - u32::from(self.range.base))
    }

    /// Number of free ports.
    pub fn free_count(&self) -> u32 {
        self.bits.size() - self.bits.used()
    }

    /// Number of allocated ports.
    pub fn used_count(&self) -> u32 {
        self.bits.used()
    }

    fn port_at(&self, offset: u32) -> u16 {
        // offset < size and base + size - 1 <= 65535 by construction.
        (u32::from(self.range.base) + offset) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn parse_forms_and_display() {
        let r = PortRange::parse(DEFAULT_NODE_PORT_RANGE).expect("default");
        assert_eq!(
            (r.base(), r.size(), r.to_string()),
            (30000, 2768, "30000-32767".into())
        );
        assert_eq!(r.band_offset(), 86);
        assert_eq!(
            PortRange::parse("30000+99").expect("plus").to_string(),
            "30000-30099"
        );
        assert_eq!(PortRange::parse("8080").expect("single").size(), 1);
        for bad in ["", "a-b", "3-1", "1-70000", "-5", "65535+1"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            PortRange::parse("30000-30009")
                .expect("small")
                .band_offset(),
            0
        );
        assert_eq!(PortRange::parse("1-10000").expect("big").band_offset(), 128);
        assert_eq!(PortRange::parse("1-1000").expect("mid").band_offset(), 31);
    }

    #[test]
    fn errors_have_upstream_text() {
        let mut a = PortAllocator::new(PortRange::parse(DEFAULT_NODE_PORT_RANGE).expect("r"));
        assert_eq!(
            a.allocate(80).unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        a.allocate(30080).expect("free");
        assert_eq!(
            a.allocate(30080).unwrap_err().to_string(),
            "provided port is already allocated"
        );
        assert!(a.is_allocated(30080));
        assert!(a.release(30080));
        assert!(!a.is_allocated(30080));
    }

    #[test]
    fn fills_dynamic_band_first_then_static_then_full() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut a = PortAllocator::new(PortRange::parse("30000-30099").expect("r"));
        // size 100 -> offset 16: static band 30000..=30015.
        for _ in 0..84 {
            let p = a.allocate_next(&mut rng).expect("free");
            assert!(p >= 30016, "{p}");
        }
        for _ in 0..16 {
            let p = a.allocate_next(&mut rng).expect("free");
            assert!(p < 30016, "{p}");
        }
        assert_eq!(
            a.allocate_next(&mut rng).unwrap_err().to_string(),
            "range is full"
        );
        assert_eq!((a.used_count(), a.free_count()), (100, 0));
    }
}
