//! A fixed-size allocation bitmap split into a lower (static) and an upper (dynamic) band.
//!
//! Start at [`BandedBitmap`]: [`BandedBitmap::take_next`] mirrors upstream's
//! `randomScanStrategyWithOffset` (random start in the upper band, linear scan with wrap, then
//! the same in the lower band), but skips full 64-bit words instead of testing bit by bit.

use rand::Rng;

/// One bit per offset in `0..size`; offsets `0..offset` form the lower band.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandedBitmap {
    words: Vec<u64>,
    size: u32,
    offset: u32,
    used: u32,
}

impl BandedBitmap {
    /// An empty bitmap of `size` bits whose lower band is `offset` bits (clamped to `size`).
    pub fn new(size: u32, offset: u32) -> BandedBitmap {
        let words = vec![0u64; size.div_ceil(64) as usize];
        BandedBitmap {
            words,
            size,
            offset: offset.min(size),
            used: 0,
        }
    }

    /// Number of bits.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Number of set bits.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Whether bit `i` is set (`false` when out of range).
    pub fn is_set(&self, i: u32) -> bool {
        i < self.size && self.words[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }

    /// Sets bit `i`; returns `false` (and changes nothing) if it was already set or is out of range.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.size || self.is_set(i) {
            return false;
        }
        self.words[(i / 64) as usize] |= 1u64 << (i % 64);
        self.used += 1;
        true
    }

    /// Clears bit `i`; returns `false` if it was not set.
    pub fn clear(&mut self, i: u32) -> bool {
        if !self.is_set(i) {
            return false;
        }
        self.words[(i / 64) as usize] &= !(1u64 << (i % 64));
        self.used -= 1;
        true
    }

    /// Picks and sets a free bit: random start in the upper band, scanning with wrap; only when
    /// the upper band is full, the same in the lower band. `None` when every bit is set.
    pub fn take_next(&mut self, rng: &mut impl Rng) -> Option<u32> {
        if self.used >= self.size {
            return None;
        }
        let bit = self
            .scan_band(self.offset, self.size, rng)
            .or_else(|| self.scan_band(0, self.offset, rng))?;
        self.set(bit);
        Some(bit)
    }

    /// A free bit in `lo..hi`, scanning from a random start and wrapping around.
    fn scan_band(&self, lo: u32, hi: u32, rng: &mut impl Rng) -> Option<u32> {
        if lo >= hi {
            return None;
        }
        let start = rng.random_range(lo..hi);
        self.first_clear(start, hi)
            .or_else(|| self.first_clear(lo, start))
    }

    /// The lowest clear bit in `lo..hi`, skipping full words.
    fn first_clear(&self, lo: u32, hi: u32) -> Option<u32> {
        let mut i = lo;
        while i < hi {
            let word_index = i / 64;
            let bit = i % 64;
            // Free bits of this word at or above `bit`.
            let free = !self.words[word_index as usize] & (u64::MAX << bit);
            if free != 0 {
                let found = word_index * 64 + free.trailing_zeros();
                return (found < hi).then_some(found);
            }
            i = (word_index + 1) * 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn set_clear_and_counts() {
        let mut b = BandedBitmap::new(130, 16);
        assert!(b.set(0));
        assert!(!b.set(0));
        assert!(b.set(129));
        assert!(!b.set(130), "out of range");
        assert_eq!(b.used(), 2);
        assert!(b.clear(0));
        assert!(!b.clear(0));
        assert_eq!(b.used(), 1);
    }

    #[test]
    fn take_next_fills_upper_band_first_then_lower() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = BandedBitmap::new(200, 16);
        for _ in 0..184 {
            let bit = b.take_next(&mut rng).expect("free bit");
            assert!(
                bit >= 16,
                "dynamic pick {bit} landed in the lower band early"
            );
        }
        for _ in 0..16 {
            let bit = b.take_next(&mut rng).expect("free bit");
            assert!(bit < 16);
        }
        assert_eq!(b.take_next(&mut rng), None);
        assert_eq!(b.used(), 200);
    }

    #[test]
    fn first_clear_skips_full_words_and_respects_bounds() {
        let mut b = BandedBitmap::new(256, 0);
        for i in 0..200 {
            b.set(i);
        }
        assert_eq!(b.first_clear(0, 256), Some(200));
        assert_eq!(b.first_clear(0, 200), None);
        assert_eq!(b.first_clear(201, 256), Some(201));
    }
}
