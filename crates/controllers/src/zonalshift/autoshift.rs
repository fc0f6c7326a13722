//! The autoshift rule: ARC's "internal telemetry indicates an Availability Zone impairment",
//! modelled as a CloudWatch-style alarm on the run's clients — the failed-request percentage
//! over a sliding `period` at or above `threshold` for `delay` — that then names the impaired
//! zone and starts a zonal shift away from it. Until one whole period of outcomes has been
//! seen the alarm has insufficient data and cannot breach. Start at [`Autoshift`].
//!
//! The zone: the one whose clients fared worst since the breach began (the share of their
//! requests that succeeded; a zone whose clients went silent, as a powered-off zone's do,
//! counts as 0 %).
//! If no zone is strictly worse than every other, nothing is shifted (an outage everywhere is
//! not a zonal impairment).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::Moment;

/// How often the alarm is evaluated.
pub const EVALUATION_INTERVAL_MS: Duration = Duration::from_millis(1_000);
/// At most this many outcomes are kept (the oldest are dropped first).
pub const MAX_SAMPLES: usize = 200_000;

/// The rule (scenario `zonalAutoshift`).
#[derive(Clone, Debug, PartialEq)]
pub struct AutoshiftConfig {
    /// Failed requests, percent of all in the period, that breach: (0, 100].
    pub threshold_percent: f64,
    /// The sliding window the percentage is taken over.
    pub period_ms: Duration,
    /// How long the breach must last before the shift starts.
    pub delay_ms: Duration,
    /// The shift's `expiresIn`.
    pub expires_in_ms: Duration,
}

/// A decision to shift away from `zone` until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoshiftDecision {
    pub zone: String,
    pub expires_at: Moment,
    /// Why, for logs and Events.
    pub reason: String,
}

/// The alarm's state (sans-IO: outcomes and `now` come in, a decision comes out).
#[derive(Debug)]
pub struct Autoshift {
    config: AutoshiftConfig,
    /// `(completed at, zone index, ok)`, in arrival order.
    samples: VecDeque<(Moment, usize, bool)>,
    /// Zones that ever reported, indexed by the samples (a silent known zone counts as
    /// failing).
    zones: Vec<String>,
    /// Outcomes handed over by [`Autoshift::handle_finished`] but not applied yet:
    /// `(end, zone, ok)`, applied by [`Autoshift::handle_timeout`] once `end <= now`.
    pending: Vec<(Moment, String, bool)>,
    breach_since: Option<Moment>,
    /// When the first outcome arrived: until a whole period has passed since, the alarm has
    /// insufficient data (CloudWatch's `INSUFFICIENT_DATA`) and cannot breach.
    first_at: Option<Moment>,
    /// A shift this rule started is active until then; no new one before.
    active_until: Option<Moment>,
    next_eval: Option<Moment>,
}

impl Autoshift {
    pub fn new(config: AutoshiftConfig) -> Autoshift {
        Autoshift {
            config,
            samples: VecDeque::new(),
            zones: Vec::new(),
            pending: Vec::new(),
            breach_since: None,
            first_at: None,
            active_until: None,
            next_eval: None,
        }
    }

    /// A client in `zone` finished a request at `at`, failed or not.
    pub fn handle_outcome(&mut self, at: Moment, zone: &str, ok: bool) {
        let idx = match self.zones.iter().position(|z| z == zone) {
            Some(i) => i,
            None => {
                self.zones.push(zone.to_string());
                self.zones.len() - 1
            }
        };
        if self.samples.len() >= MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at, idx, ok));
        self.next_eval.get_or_insert(at);
        self.first_at.get_or_insert(at);
    }

    /// A client in `zone` finished a request at `end`, failed or not, possibly later than the
    /// caller's clock: buffered until [`Autoshift::handle_timeout`] reaches `end`.
    pub fn handle_finished(&mut self, end: Moment, zone: String, ok: bool) {
        self.pending.push((end, zone, ok));
    }

    /// When [`Autoshift::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Moment> {
        self.next_eval
    }

    /// Apply the buffered outcomes that ended by `now` (in order of their end), then evaluate
    /// the alarm if due; a decision when a shift should start.
    pub fn handle_timeout(&mut self, now: Moment) -> Option<AutoshiftDecision> {
        let (mut done, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(end, _, _)| *end <= now);
        self.pending = pending;
        done.sort_by_key(|d| d.0);
        for (end, zone, ok) in done {
            self.handle_outcome(end, &zone, ok);
        }
        if self.next_eval.is_none_or(|t| t > now) {
            return None;
        }
        self.next_eval = Some(now + EVALUATION_INTERVAL_MS);
        let from = now - self.config.period_ms;
        while self.samples.front().is_some_and(|s| s.0 < from) {
            self.samples.pop_front();
        }
        let window = self.samples.iter().filter(|s| s.0 <= now);
        let (total, failed) = window.fold((0u64, 0u64), |(t, f), s| (t + 1, f + u64::from(!s.2)));
        let percent = if total == 0 {
            0.0
        } else {
            100.0 * failed as f64 / total as f64
        };
        let insufficient = self
            .first_at
            .is_none_or(|t| now < t + self.config.period_ms);
        if insufficient || percent < self.config.threshold_percent {
            self.breach_since = None;
            return None;
        }
        let since = *self.breach_since.get_or_insert(now);
        if now < since + self.config.delay_ms || self.active_until.is_some_and(|t| t > now) {
            return None;
        }
        let zone = self.impaired_zone(since, now)?;
        let expires_at = now + self.config.expires_in_ms;
        self.active_until = Some(expires_at);
        Some(AutoshiftDecision {
            reason: format!(
                "{percent:.1}% of requests failed over the last {}s (threshold {}%) for {}s; \
                 zone {zone}'s clients fared worst",
                self.config.period_ms.as_secs(),
                self.config.threshold_percent,
                now.saturating_since(since).as_secs()
            ),
            zone,
            expires_at,
        })
    }

    /// The zone whose clients' success share since the breach began (within the period) is
    /// strictly the lowest.
    fn impaired_zone(&self, since: Moment, now: Moment) -> Option<String> {
        let from = (now - self.config.period_ms).max(since);
        let mut per_zone: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for zone in &self.zones {
            per_zone.insert(zone, (0, 0));
        }
        for (at, idx, ok) in &self.samples {
            if *at >= from && *at <= now {
                let e = per_zone.entry(&self.zones[*idx]).or_default();
                e.0 += 1;
                e.1 += u64::from(*ok);
            }
        }
        let share = |(total, ok): (u64, u64)| {
            if total == 0 {
                0.0
            } else {
                ok as f64 / total as f64
            }
        };
        let mut ranked: Vec<(f64, &str)> = per_zone.iter().map(|(z, c)| (share(*c), *z)).collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        match ranked.as_slice() {
            [(worst, zone), (next, _), ..] if worst < next => Some(zone.to_string()),
            _ => None,
        }
    }
}
