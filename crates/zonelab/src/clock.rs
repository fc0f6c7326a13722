//! The wall clock of the lab's records: milliseconds since the Unix epoch as `f64`, the one
//! clock requests, faults, watch events and proxy syncs are all stamped with.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (sub-millisecond precision).
pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}
