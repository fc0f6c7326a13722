//! Leader election on a coordination.k8s.io/v1 Lease with client-go's semantics
//! (`tools/leaderelection/leaderelection.go` + `resourcelock/leaselock.go`), as a sans-IO
//! state machine: the driver passes the time in, sends the Lease requests it hands out and
//! feeds back the answers.
//!
//! Start at [`LeaderElector::poll_request`], [`LeaderElector::handle_response`] and
//! [`LeaderElector::poll_timeout`]; [`LeaderElector::write_deadline`] is the fence the live
//! driver puts in front of the leader's writes.
//!
//! Upstream rules kept: a candidate takes over only when the record did not change for the
//! record's `leaseDurationSeconds` as measured on ITS OWN clock since it last saw the record
//! change (`observedTime`; the `renewTime` stamp is never compared with the local clock); the
//! leader first tries an optimistic update of the Lease it holds, else gets and updates it;
//! it renews every `retryPeriod` and gives up when a renew round has not succeeded within
//! `renewDeadline`; every update is a compare-and-swap on `resourceVersion`;
//! `leaseTransitions` grows by one on each change of holder. Candidates retry every
//! `retryPeriod` jittered by up to 1.2× (`wait.JitterUntil`).
//!
//! Deliberate differences: `leaseDurationSeconds` is an integer, written truncated as upstream
//! does (the fast profile's 1.5 s is written as 1), and a candidate waits the longer of the
//! record's duration and its own configured one (upstream uses the record's alone), so the
//! fast profile's candidates wait 1.5 s, not 1 s, which would equal its 1 s renew deadline and
//! leave the write fence no margin; after losing the lease the elector goes back to candidate
//! instead of ending the process (kube-controller-manager exits, but here the API server
//! shares the process).

#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Moment;

/// Upstream `leaderelection.JitterFactor`: a candidate waits `retryPeriod × (1 + 1.2 × rand)`.
pub const JITTER_FACTOR: f64 = 1.2;

/// Namespace of the control plane's election Leases (`--leader-elect-resource-namespace`).
pub const DEFAULT_NAMESPACE: &str = "kube-system";
/// Lease of kube-controller-manager (`--leader-elect-resource-name` default).
pub const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";
/// Lease of kube-scheduler.
pub const SCHEDULER_LEASE: &str = "kube-scheduler";
/// `--leader-elect-lease-duration` default (component-base `RecommendedDefaultLeaderElectionConfiguration`).
pub const DEFAULT_LEASE_DURATION_MS: Duration = Duration::from_millis(15_000);
/// `--leader-elect-renew-deadline` default.
pub const DEFAULT_RENEW_DEADLINE_MS: Duration = Duration::from_millis(10_000);
/// `--leader-elect-retry-period` default.
pub const DEFAULT_RETRY_PERIOD_MS: Duration = Duration::from_millis(2_000);

/// One election: which Lease, who we are, and the three timers.
#[derive(Clone, Debug, PartialEq)]
pub struct ElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's `holderIdentity` (upstream `<hostname>_<uuid>`).
    pub identity: String,
    pub lease_duration_ms: Duration,
    pub renew_deadline_ms: Duration,
    pub retry_period_ms: Duration,
    /// Seed of the retry jitter.
    pub seed: u64,
}

/// An invalid [`ElectionConfig`] (upstream `NewLeaderElector`'s checks and texts).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("leaseDuration must be greater than renewDeadline")]
    LeaseNotAboveDeadline,
    #[error("renewDeadline must be greater than retryPeriod*JitterFactor")]
    DeadlineNotAboveRetry,
    #[error("retryPeriod must be greater than zero")]
    RetryNotPositive,
    #[error("Lock identity is empty")]
    EmptyIdentity,
}

impl ElectionConfig {
    /// Upstream's validation, in upstream's order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease_duration_ms <= self.renew_deadline_ms {
            return Err(ConfigError::LeaseNotAboveDeadline);
        }
        if self.retry_period_ms < Duration::from_millis(1) {
            return Err(ConfigError::RetryNotPositive);
        }
        if self.renew_deadline_ms.as_millis() as f64
            <= JITTER_FACTOR * self.retry_period_ms.as_millis() as f64
        {
            return Err(ConfigError::DeadlineNotAboveRetry);
        }
        if self.identity.is_empty() {
            return Err(ConfigError::EmptyIdentity);
        }
        Ok(())
    }

    /// `namespace/name`, as upstream's `Describe`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The `leaseDurationSeconds` this candidate writes: whole seconds, truncated as upstream's
    /// `int(LeaseDuration / time.Second)` (at least 1).
    pub fn lease_duration_seconds(&self) -> i32 {
        self.lease_duration_ms.as_secs().max(1) as i32
    }
}

/// The election record a Lease's spec carries (upstream `LeaderElectionRecord`); times are
/// wall-clock milliseconds as written by the holder, never compared with the local clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub holder_identity: String,
    pub lease_duration_seconds: i32,
    pub acquire_time: Option<Moment>,
    pub renew_time: Option<Moment>,
    pub lease_transitions: i32,
}

impl Record {
    /// Upstream `LeaseSpecToLeaderElectionRecord`.
    pub fn from_lease(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder_identity: spec.holder_identity.unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec
                .acquire_time
                .map(|t| Moment::from_millis(t.0.as_millisecond())),
            renew_time: spec
                .renew_time
                .map(|t| Moment::from_millis(t.0.as_millisecond())),
            lease_transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    /// Upstream `LeaderElectionRecordToLeaseSpec`.
    pub fn to_spec(&self) -> LeaseSpec {
        let micro = |ms: Moment| {
            MicroTime(Timestamp::from_millisecond(ms.as_millis()).unwrap_or(Timestamp::UNIX_EPOCH))
        };
        LeaseSpec {
            holder_identity: Some(self.holder_identity.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds),
            acquire_time: self.acquire_time.map(micro),
            renew_time: self.renew_time.map(micro),
            lease_transitions: Some(self.lease_transitions),
            ..LeaseSpec::default()
        }
    }
}

/// A request for the driver to send (one at a time).
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseRequest {
    /// GET the Lease.
    Get,
    /// POST this Lease.
    Create(Box<Lease>),
    /// PUT this Lease; its `resourceVersion` is the compare-and-swap precondition.
    Update(Box<Lease>),
}

/// What the server answered to the last [`LeaseRequest`].
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseResponse {
    /// The Lease as stored (GET, or a successful write).
    Ok(Box<Lease>),
    NotFound,
    /// 409: lost the compare-and-swap (or AlreadyExists on create).
    Conflict,
    /// Anything else, including a timeout (the driver bounds each request).
    Failed(String),
}

/// What happened, for the driver (start or stop the gated work, log, record Events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionEvent {
    /// This candidate became the leader ("successfully acquired lease").
    StartedLeading,
    /// A renew round did not succeed within the renew deadline ("failed to renew lease").
    StoppedLeading,
    /// The observed holder changed (upstream `OnNewLeader`); empty when the Lease has none.
    NewLeader(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Candidate,
    /// Leading; the current renew round started at `round_start`.
    Leader {
        round_start: Moment,
    },
}

/// Where an attempt (`tryAcquireOrRenew`) stands while a request is in flight.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// The leader's optimistic update of the Lease it last wrote.
    FastUpdate(Record),
    Get,
    Create(Record),
    /// The update after a GET.
    Update(Record),
}

#[derive(Clone, Debug)]
struct Inflight {
    step: Step,
    /// Handed out by `poll_request` (else waiting to be).
    sent: bool,
    /// Local time the request was handed out.
    sent_at: Moment,
    /// Wall time the attempt's record is stamped with.
    wall: Moment,
    /// The renew round was given up while this was in flight: its answer changes nothing
    /// but the cached Lease.
    abandoned: bool,
}

/// One candidate in one election (see the module docs).
#[derive(Debug)]
pub struct LeaderElector {
    cfg: ElectionConfig,
    phase: Phase,
    /// The Lease as last read or written (its resourceVersion is the next CAS precondition).
    lease: Option<Lease>,
    observed: Record,
    /// Local time the observed record last changed (upstream `observedTime`).
    observed_time: Moment,
    reported_leader: Option<String>,
    inflight: Option<Inflight>,
    next_attempt: Moment,
    /// Local send time of the last successful acquire/renew (the fence's base).
    renewed_at: Option<Moment>,
    events: Vec<ElectionEvent>,
    rng: ChaCha8Rng,
    acquisitions: u64,
}

impl LeaderElector {
    /// A candidate that makes its first attempt at once.
    pub fn new(cfg: ElectionConfig) -> Result<LeaderElector, ConfigError> {
        cfg.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Ok(LeaderElector {
            cfg,
            phase: Phase::Candidate,
            lease: None,
            observed: Record::default(),
            observed_time: Moment::EPOCH,
            reported_leader: None,
            inflight: None,
            next_attempt: Moment::MIN,
            renewed_at: None,
            events: Vec::new(),
            rng,
            acquisitions: 0,
        })
    }

    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    /// True while this candidate leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.phase, Phase::Leader { .. })
    }

    /// The holder of the last observed record (upstream `GetLeader`).
    pub fn observed_leader(&self) -> &str {
        &self.observed.holder_identity
    }

    /// The Lease as last read or written.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// The last observed record.
    pub fn observed_record(&self) -> &Record {
        &self.observed
    }

    /// The local time until which the leader may write: the send time of its last successful
    /// renew plus the renew deadline. `None` when not leading. A candidate can take over only
    /// a full lease duration after it observed that renew, later than this by
    /// `leaseDuration − renewDeadline`.
    pub fn write_deadline(&self) -> Option<Moment> {
        match self.phase {
            Phase::Leader { .. } => self.renewed_at.map(|r| r + self.cfg.renew_deadline_ms),
            Phase::Candidate => None,
        }
    }

    /// The next request to send, if one is due at `now` (local clock) and none is in flight;
    /// `wall` stamps the record. Call it after every [`LeaderElector::handle_response`] too
    /// (an attempt can take several requests). Also gives up a renew round past its deadline.
    pub fn poll_request(&mut self, now: Moment, wall: Moment) -> Option<LeaseRequest> {
        self.check_deadline(now);
        if self.inflight.is_none() && now >= self.next_attempt {
            self.start_attempt(now, wall);
        }
        let inflight = self.inflight.as_mut()?;
        if inflight.sent {
            return None;
        }
        inflight.sent = true;
        inflight.sent_at = now;
        let step = inflight.step.clone();
        Some(self.request_for(&step))
    }

    /// Upstream `tryAcquireOrRenew`, first request.
    fn start_attempt(&mut self, now: Moment, wall: Moment) {
        let mine = self.my_record(wall);
        // 1. The leader's fast path: update the Lease it last wrote, optimistically.
        if self.holds_observed() && self.lease_valid(now) && self.lease.is_some() {
            let record = Record {
                acquire_time: self.observed.acquire_time,
                lease_transitions: self.observed.lease_transitions,
                ..mine
            };
            self.send(Step::FastUpdate(record), now, wall);
        } else {
            // 2. The slow path starts with a GET.
            self.send(Step::Get, now, wall);
        }
    }

    /// Feed the answer to the request in flight (`now` on the local clock).
    pub fn handle_response(&mut self, resp: LeaseResponse, now: Moment) {
        let Some(inflight) = self.inflight.take_if(|i| i.sent) else {
            return;
        };
        if let LeaseResponse::Ok(lease) = &resp {
            self.lease = Some(Lease::clone(lease));
        }
        if inflight.abandoned {
            self.schedule_after_attempt(now);
            return;
        }
        let wall = inflight.wall;
        match (inflight.step, resp) {
            (
                Step::FastUpdate(record) | Step::Create(record) | Step::Update(record),
                LeaseResponse::Ok(_),
            ) => {
                self.set_observed(record, now);
                self.renewed_at = Some(inflight.sent_at);
                self.attempt_succeeded(now);
            }
            (Step::FastUpdate(_), _) => {
                // "Failed to update lock optimistically, falling back to slow path".
                self.send(Step::Get, now, wall);
            }
            (Step::Get, LeaseResponse::NotFound) => {
                self.send(Step::Create(self.my_record(wall)), now, wall);
            }
            (Step::Get, LeaseResponse::Ok(lease)) => {
                let old = Record::from_lease(&lease);
                if old != self.observed {
                    self.set_observed(old.clone(), now);
                }
                if !old.holder_identity.is_empty()
                    && self.lease_valid(now)
                    && !self.holds_observed()
                {
                    // "lock is held by X and has not yet expired".
                    self.attempt_failed(now);
                    return;
                }
                let mut record = self.my_record(wall);
                if self.holds_observed() {
                    record.acquire_time = old.acquire_time;
                    record.lease_transitions = old.lease_transitions;
                } else {
                    record.lease_transitions = old.lease_transitions + 1;
                }
                self.send(Step::Update(record), now, wall);
            }
            _ => self.attempt_failed(now),
        }
    }

    /// When the driver should call [`LeaderElector::poll_request`] again (`None` while a
    /// request is in flight and nothing else is due: wait for its answer).
    pub fn poll_timeout(&self) -> Option<Moment> {
        let deadline = match self.phase {
            Phase::Leader { round_start } => Some(round_start + self.cfg.renew_deadline_ms),
            Phase::Candidate => None,
        };
        match &self.inflight {
            // A follow-up request waits to be handed out: now.
            Some(i) if !i.sent => return Some(i.sent_at),
            Some(_) => return deadline,
            None => {}
        }
        Some(deadline.map_or(self.next_attempt, |d| d.min(self.next_attempt)))
    }

    /// The next thing that happened, oldest first.
    pub fn poll_event(&mut self) -> Option<ElectionEvent> {
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }

    /// The record this candidate writes at `wall` (upstream's fresh `leaderElectionRecord`).
    fn my_record(&self, wall: Moment) -> Record {
        Record {
            holder_identity: self.cfg.identity.clone(),
            lease_duration_seconds: self.cfg.lease_duration_seconds(),
            acquire_time: Some(wall),
            renew_time: Some(wall),
            lease_transitions: 0,
        }
    }

    /// Upstream `IsLeader`: the observed record names us.
    fn holds_observed(&self) -> bool {
        self.observed.holder_identity == self.cfg.identity
    }

    /// Upstream `isLeaseValid`: observedTime + the record's leaseDurationSeconds > now; here
    /// at least our own lease duration (see the module docs).
    fn lease_valid(&self, now: Moment) -> bool {
        let record = runtime::time::span_secs(i64::from(self.observed.lease_duration_seconds));
        self.observed_time + record.max(self.cfg.lease_duration_ms) > now
    }

    fn set_observed(&mut self, record: Record, now: Moment) {
        self.observed = record;
        self.observed_time = now;
    }

    fn send(&mut self, step: Step, now: Moment, wall: Moment) {
        self.inflight = Some(Inflight {
            step,
            sent: false,
            sent_at: now,
            wall,
            abandoned: false,
        });
    }

    fn attempt_succeeded(&mut self, now: Moment) {
        self.report_transition();
        match self.phase {
            Phase::Candidate => {
                self.acquisitions += 1;
                self.phase = Phase::Leader { round_start: now };
                self.events.push(ElectionEvent::StartedLeading);
                // wait.Until runs the first renew round at once.
                self.next_attempt = now;
            }
            Phase::Leader { .. } => {
                // The round succeeded; the next one starts a retry period later.
                self.next_attempt = now + self.cfg.retry_period_ms;
                self.phase = Phase::Leader {
                    round_start: self.next_attempt,
                };
            }
        }
    }

    fn attempt_failed(&mut self, now: Moment) {
        self.report_transition();
        self.schedule_after_attempt(now);
    }

    fn schedule_after_attempt(&mut self, now: Moment) {
        self.next_attempt = match self.phase {
            // PollImmediateUntil: try again a retry period later, within the round.
            Phase::Leader { .. } => now + self.cfg.retry_period_ms,
            // JitterUntil(retryPeriod, 1.2, sliding).
            Phase::Candidate => {
                let extra = self.rng.random::<f64>()
                    * JITTER_FACTOR
                    * self.cfg.retry_period_ms.as_millis() as f64;
                now + self.cfg.retry_period_ms + Duration::from_millis(extra as u64)
            }
        };
    }

    /// Give up a renew round that did not succeed within the renew deadline.
    fn check_deadline(&mut self, now: Moment) {
        let Phase::Leader { round_start } = self.phase else {
            return;
        };
        if now < round_start + self.cfg.renew_deadline_ms {
            return;
        }
        self.phase = Phase::Candidate;
        self.renewed_at = None;
        self.events.push(ElectionEvent::StoppedLeading);
        match &mut self.inflight {
            Some(i) => i.abandoned = true,
            // Back to the acquire loop, which tries at once.
            None => self.next_attempt = now,
        }
    }

    /// Upstream `maybeReportTransition`.
    fn report_transition(&mut self) {
        let holder = &self.observed.holder_identity;
        if self.reported_leader.as_ref() != Some(holder) {
            self.reported_leader = Some(holder.clone());
            self.events.push(ElectionEvent::NewLeader(holder.clone()));
        }
    }

    /// How many times this candidate became leader.
    pub fn times_acquired(&self) -> u64 {
        self.acquisitions
    }
}

/// `lease` with its spec replaced by `record` (metadata, hence resourceVersion, kept).
fn with_record(lease: &Lease, record: &Record) -> Lease {
    Lease {
        metadata: lease.metadata.clone(),
        spec: Some(record.to_spec()),
    }
}

impl LeaderElector {
    /// The Lease a create sends (upstream `LeaseLock.Create`).
    fn new_lease(&self, record: &Record) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(record.to_spec()),
        }
    }

    /// The request for the step just put in flight (driver-facing form of [`Step`]).
    fn request_for(&self, step: &Step) -> LeaseRequest {
        match step {
            Step::Get => LeaseRequest::Get,
            Step::Create(r) => LeaseRequest::Create(Box::new(self.new_lease(r))),
            Step::FastUpdate(r) | Step::Update(r) => match &self.lease {
                Some(l) => LeaseRequest::Update(Box::new(with_record(l, r))),
                None => LeaseRequest::Create(Box::new(self.new_lease(r))),
            },
        }
    }
}
