//! The per-zone NoExecute tainting queue: a unique, time-ordered queue drained through a
//! token bucket (upstream `scheduler.RateLimitedTimedQueue` + `flowcontrol` token bucket,
//! burst 1), in virtual time.
//!
//! Start at [`RateLimitedTimedQueue::try_pass`] (upstream `Try`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::Moment;

/// A token bucket with burst 1 (upstream `scheduler.EvictionRateLimiterBurst` = 1,
/// `pkg/controller/nodelifecycle/scheduler/rate_limited_queue.go`), or the "never" limiter a zero rate selects (upstream
/// `flowcontrol.NewTokenBucketRateLimiter(qps, 1)` / `NewFakeNeverRateLimiter`).
///
/// With burst 1 the bucket is fully described by the time it next holds a token: accepting
/// at `t >= next_token` empties it until `t + 1/qps`. (Upstream keeps a float token count and
/// a float32 rate, e.g. 0.01 stored as 0.0099999998, microseconds per token; not reproduced.)
#[derive(Clone, Debug, PartialEq)]
pub enum Limiter {
    Never,
    Bucket {
        qps: f32,
        interval: Duration,
        next_token: Moment,
    },
}

impl Limiter {
    /// A full bucket at `qps` (`qps <= 0`: never).
    pub fn new(qps: f32, now: Moment) -> Limiter {
        if qps > 0.0 {
            let interval = Duration::from_millis(((1000.0 / f64::from(qps)).round() as u64).max(1));
            Limiter::Bucket {
                qps,
                interval,
                next_token: now,
            }
        } else {
            Limiter::Never
        }
    }

    /// The configured rate (0 for never), as upstream `QPS()`.
    pub fn qps(&self) -> f32 {
        match self {
            Limiter::Never => 0.0,
            Limiter::Bucket { qps, .. } => *qps,
        }
    }

    /// Take a token if one is available at `now` (upstream `TryAccept`).
    pub fn try_accept(&mut self, now: Moment) -> bool {
        match self {
            Limiter::Never => false,
            Limiter::Bucket {
                interval,
                next_token,
                ..
            } => {
                if now >= *next_token {
                    *next_token = now + *interval;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// When the next token is available (`None`: never).
    pub fn next_token(&self) -> Option<Moment> {
        match self {
            Limiter::Never => None,
            Limiter::Bucket { next_token, .. } => Some(*next_token),
        }
    }
}

/// One queued node (upstream `TimedValue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedValue {
    pub value: String,
    pub uid: String,
    pub added_at: Moment,
    pub process_at: Moment,
}

/// Upstream `RateLimitedTimedQueue`: a value can be added once until removed with
/// [`remove`](Self::remove) (processing keeps it in the dedupe set); items come out in
/// `process_at` order (ties: insertion order) as the limiter allows.
#[derive(Clone, Debug)]
pub struct RateLimitedTimedQueue {
    /// Upstream `UniqueQueue.set`: values added and not yet removed (processed ones stay).
    set: BTreeSet<String>,
    /// Values waiting in the heap, with their ordering key.
    queued: BTreeMap<String, (Moment, u64, TimedValue)>,
    order: BTreeSet<(Moment, u64, String)>,
    seq: u64,
    limiter: Limiter,
}

impl RateLimitedTimedQueue {
    pub fn new(limiter: Limiter) -> RateLimitedTimedQueue {
        RateLimitedTimedQueue {
            set: BTreeSet::new(),
            queued: BTreeMap::new(),
            order: BTreeSet::new(),
            seq: 0,
            limiter,
        }
    }

    fn push(&mut self, v: TimedValue) {
        self.seq += 1;
        self.order.insert((v.process_at, self.seq, v.value.clone()));
        self.queued
            .insert(v.value.clone(), (v.process_at, self.seq, v));
    }

    fn unqueue(&mut self, value: &str) -> Option<TimedValue> {
        let (at, seq, v) = self.queued.remove(value)?;
        self.order.remove(&(at, seq, value.to_string()));
        Some(v)
    }

    /// Queue `value` for processing now unless it was added and not removed (upstream `Add`).
    pub fn add(&mut self, value: &str, uid: &str, now: Moment) -> bool {
        if !self.set.insert(value.to_string()) {
            return false;
        }
        self.push(TimedValue {
            value: value.to_string(),
            uid: uid.to_string(),
            added_at: now,
            process_at: now,
        });
        true
    }

    /// Forget `value` so it is not processed and may be added again (upstream `Remove`).
    pub fn remove(&mut self, value: &str) -> bool {
        if !self.set.remove(value) {
            return false;
        }
        self.unqueue(value);
        true
    }

    /// The value due first, if any.
    pub fn head(&self) -> Option<&TimedValue> {
        let (_, _, value) = self.order.first()?;
        self.queued.get(value).map(|(_, _, v)| v)
    }

    /// True if `value` waits in the queue (not yet processed).
    #[cfg(test)]
    pub fn is_queued(&self, value: &str) -> bool {
        self.queued.contains_key(value)
    }

    /// Number of values waiting.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Process due values while the limiter gives tokens (upstream `Try`). `f` returns
    /// `Ok(())` when done with a value, or `Err(wait)` to retry it `wait` ms later. As
    /// upstream, a token is taken before looking at the head's `process_at`, so a head that
    /// is not yet due still uses up the token.
    pub fn try_pass(
        &mut self,
        now: Moment,
        mut f: impl FnMut(&TimedValue) -> Result<(), Duration>,
    ) {
        while let Some(head) = self.head().cloned() {
            if !self.limiter.try_accept(now) {
                break;
            }
            if now < head.process_at {
                break;
            }
            self.unqueue(&head.value);
            if let Err(wait) = f(&head) {
                self.push(TimedValue {
                    process_at: now + wait,
                    ..head
                });
            }
        }
    }

    /// When [`try_pass`](Self::try_pass) can next do anything: the next token, if a value
    /// waits and the limiter is not "never".
    pub fn next_attempt(&self) -> Option<Moment> {
        if self.is_empty() {
            return None;
        }
        self.limiter.next_token()
    }

    /// Current limiter rate.
    pub fn qps(&self) -> f32 {
        self.limiter.qps()
    }

    /// Upstream `SwapLimiter`: no-op for the same rate; rate <= 0 selects "never"; otherwise a
    /// new full bucket, drained at once if the old limiter has no token now.
    pub fn swap_limiter(&mut self, qps: f32, now: Moment) {
        if self.limiter.qps() == qps {
            return;
        }
        let mut new = Limiter::new(qps, now);
        if matches!(new, Limiter::Bucket { .. }) && !self.limiter.try_accept(now) {
            new.try_accept(now);
        }
        self.limiter = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut RateLimitedTimedQueue, now: Moment) -> Vec<String> {
        let mut out = Vec::new();
        q.try_pass(now, |v| {
            out.push(v.value.clone());
            Ok(())
        });
        out
    }

    #[test]
    fn token_bucket_paces_and_dedupes() {
        let mut q = RateLimitedTimedQueue::new(Limiter::new(0.1, Moment::EPOCH));
        assert!(q.add("a", "u", Moment::EPOCH));
        assert!(q.add("b", "u", Moment::EPOCH));
        assert!(!q.add("a", "u", Moment::EPOCH));
        assert_eq!(drain(&mut q, Moment::EPOCH), ["a"]);
        assert_eq!(
            drain(&mut q, Moment::from_millis(9_900)),
            Vec::<String>::new()
        );
        assert_eq!(drain(&mut q, Moment::from_millis(10_000)), ["b"]);
        // Processed values stay in the set until removed.
        assert!(!q.add("a", "u", Moment::from_millis(20_000)));
        assert!(q.remove("a"));
        assert!(q.add("a", "u", Moment::from_millis(20_000)));
        assert_eq!(drain(&mut q, Moment::from_millis(20_000)), ["a"]);
    }

    #[test]
    fn swap_limiter_drains_when_old_is_empty() {
        let mut q = RateLimitedTimedQueue::new(Limiter::new(0.1, Moment::EPOCH));
        q.swap_limiter(0.0, Moment::EPOCH);
        assert_eq!(q.qps(), 0.0);
        q.add("a", "u", Moment::EPOCH);
        assert_eq!(
            drain(&mut q, Moment::from_millis(50_000)),
            Vec::<String>::new()
        );
        assert_eq!(q.next_attempt(), None);
        // From "never" (no token) to 0.1/s: the new bucket starts empty.
        q.swap_limiter(0.1, Moment::from_millis(60_000));
        assert_eq!(q.next_attempt(), Some(Moment::from_millis(70_000)));
        // From a full bucket to 0.01/s: the new bucket starts full.
        let mut full = RateLimitedTimedQueue::new(Limiter::new(0.1, Moment::EPOCH));
        full.swap_limiter(0.01, Moment::from_millis(5_000));
        full.add("x", "u", Moment::from_millis(5_000));
        full.add("y", "u", Moment::from_millis(5_000));
        assert_eq!(drain(&mut full, Moment::from_millis(5_000)), ["x"]);
        assert_eq!(full.next_attempt(), Some(Moment::from_millis(105_000)));
    }

    #[test]
    fn retry_requeues_after_wait() {
        let mut q = RateLimitedTimedQueue::new(Limiter::new(10.0, Moment::EPOCH));
        q.add("a", "u", Moment::EPOCH);
        q.try_pass(Moment::EPOCH, |_| Err(Duration::from_millis(150)));
        assert!(q.is_queued("a"));
        assert_eq!(
            q.head().map(|v| v.process_at),
            Some(Moment::from_millis(150))
        );
        assert_eq!(drain(&mut q, Moment::from_millis(20)), Vec::<String>::new());
        // A token taken while the head is not due is used up.
        assert_eq!(
            drain(&mut q, Moment::from_millis(100)),
            Vec::<String>::new()
        );
        assert_eq!(q.next_attempt(), Some(Moment::from_millis(200)));
        assert_eq!(drain(&mut q, Moment::from_millis(200)), ["a"]);
        assert!(q.is_empty());
    }
}
