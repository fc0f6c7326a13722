//! Virtual-time tests of the elector: several candidates against an in-memory Lease with
//! compare-and-swap on resourceVersion. Start at [`Cluster`].

use std::time::Duration;

use super::*;

const LEASE: Duration = Duration::from_millis(15_000);
const DEADLINE: Duration = Duration::from_millis(10_000);
const RETRY: Duration = Duration::from_millis(2_000);

fn cfg(identity: &str) -> ElectionConfig {
    ElectionConfig {
        namespace: DEFAULT_NAMESPACE.into(),
        name: CONTROLLER_MANAGER_LEASE.into(),
        identity: identity.into(),
        lease_duration_ms: LEASE,
        renew_deadline_ms: DEADLINE,
        retry_period_ms: RETRY,
        seed: identity.len() as u64,
    }
}

/// The API server's side: one Lease, CAS on resourceVersion.
#[derive(Default)]
struct Server {
    lease: Option<Lease>,
    rv: u64,
    writes: Vec<(Moment, String)>,
}

impl Server {
    fn serve(&mut self, req: LeaseRequest, now: Moment) -> LeaseResponse {
        match req {
            LeaseRequest::Get => match &self.lease {
                Some(l) => LeaseResponse::Ok(Box::new(l.clone())),
                None => LeaseResponse::NotFound,
            },
            LeaseRequest::Create(l) => {
                if self.lease.is_some() {
                    return LeaseResponse::Conflict;
                }
                self.store(*l, now)
            }
            LeaseRequest::Update(l) => {
                let current = self
                    .lease
                    .as_ref()
                    .and_then(|c| c.metadata.resource_version.clone());
                if current.is_none() || l.metadata.resource_version != current {
                    return LeaseResponse::Conflict;
                }
                self.store(*l, now)
            }
        }
    }

    fn store(&mut self, mut l: Lease, now: Moment) -> LeaseResponse {
        self.rv += 1;
        l.metadata.resource_version = Some(self.rv.to_string());
        let holder = Record::from_lease(&l).holder_identity;
        self.writes.push((now, holder));
        self.lease = Some(l.clone());
        LeaseResponse::Ok(Box::new(l))
    }

    fn record(&self) -> Record {
        self.lease
            .as_ref()
            .map(Record::from_lease)
            .unwrap_or_default()
    }
}

/// The largest jitter a candidate adds to its retry period, truncated to ms as the elector does.
fn jitter() -> Duration {
    Duration::from_millis((JITTER_FACTOR * RETRY.as_millis() as f64) as u64)
}

struct Member {
    e: LeaderElector,
    /// Stopped (killed / frozen): never polls.
    stopped: bool,
    /// Its requests fail (cut off from the API server).
    cut_off: bool,
    /// Added to `now` for the wall stamps it writes (clock skew).
    wall_skew: i64,
    events: Vec<(Moment, ElectionEvent)>,
}

/// Candidates driven to their next wake-up, with zero-latency requests.
struct Cluster {
    server: Server,
    members: Vec<Member>,
    now: Moment,
}

impl Cluster {
    fn new(ids: &[&str]) -> Cluster {
        Cluster {
            server: Server::default(),
            members: ids
                .iter()
                .map(|id| Member {
                    e: LeaderElector::new(cfg(id)).unwrap(),
                    stopped: false,
                    cut_off: false,
                    wall_skew: 0,
                    events: Vec::new(),
                })
                .collect(),
            now: Moment::from_millis(1_000_000),
        }
    }

    fn step_member(&mut self, i: usize) {
        let now = self.now;
        let m = &mut self.members[i];
        if m.stopped {
            return;
        }
        while let Some(req) =
            m.e.poll_request(now, Moment::from_millis(now.as_millis() + m.wall_skew))
        {
            let resp = if m.cut_off {
                LeaseResponse::Failed("connection refused".into())
            } else {
                self.server.serve(req, now)
            };
            m.e.handle_response(resp, now);
        }
        while let Some(ev) = m.e.poll_event() {
            m.events.push((now, ev));
        }
    }

    /// Run until `until`, asserting at every step that at most one member may write.
    fn run_until(&mut self, until: Moment) {
        loop {
            for i in 0..self.members.len() {
                self.step_member(i);
            }
            let writers: Vec<usize> = (0..self.members.len())
                .filter(|&i| self.may_write(i))
                .collect();
            assert!(
                writers.len() <= 1,
                "two members may write at {}: {writers:?}",
                self.now
            );
            let next = self
                .members
                .iter()
                .filter(|m| !m.stopped)
                .filter_map(|m| m.e.poll_timeout())
                .min()
                .unwrap_or(until)
                .max(self.now + Duration::from_millis(1));
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
        }
    }

    /// The fence: a member may write while now < its write deadline (a stopped member too:
    /// it is frozen with its fence open and checks it once resumed).
    fn may_write(&self, i: usize) -> bool {
        self.members[i]
            .e
            .write_deadline()
            .is_some_and(|d| self.now < d)
    }

    /// The running member that leads (a stopped one may still believe it does).
    fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| !self.members[i].stopped && self.members[i].e.is_leader())
    }

    fn started_at(&self, i: usize) -> Vec<Moment> {
        self.members[i]
            .events
            .iter()
            .filter(|(_, e)| *e == ElectionEvent::StartedLeading)
            .map(|(t, _)| *t)
            .collect()
    }
}

#[test]
fn config_validation_uses_upstream_texts() {
    let mut c = cfg("a");
    c.renew_deadline_ms = LEASE;
    assert_eq!(
        LeaderElector::new(c).unwrap_err().to_string(),
        "leaseDuration must be greater than renewDeadline"
    );
    let mut c = cfg("a");
    c.retry_period_ms = Duration::from_millis(9_000);
    assert_eq!(
        LeaderElector::new(c).unwrap_err(),
        ConfigError::DeadlineNotAboveRetry
    );
    assert_eq!(
        LeaderElector::new(cfg("")).unwrap_err().to_string(),
        "Lock identity is empty"
    );
    let mut c = cfg("a");
    c.lease_duration_ms = Duration::from_millis(1_500);
    assert_eq!(c.lease_duration_seconds(), 1, "truncated, as upstream");
    assert_eq!(cfg("a").lease_duration_seconds(), 15);
}

#[test]
fn first_candidate_creates_the_lease_and_renews_every_retry_period() {
    let mut c = Cluster::new(&["a"]);
    let t0 = c.now;
    c.run_until(t0 + Duration::from_millis(20_000));
    let m = &c.members[0];
    assert_eq!(m.events[0], (t0, ElectionEvent::NewLeader("a".into())));
    assert_eq!(m.events[1], (t0, ElectionEvent::StartedLeading));
    let r = c.server.record();
    assert_eq!(r.holder_identity, "a");
    assert_eq!(r.lease_duration_seconds, 15);
    assert_eq!(r.lease_transitions, 0);
    assert_eq!(r.acquire_time, Some(t0), "acquireTime kept across renewals");
    // Create, the immediate first renew, then one renew per retry period.
    let times: Vec<Moment> = c.server.writes.iter().map(|(t, _)| *t).collect();
    assert_eq!(times[..4], [t0, t0, t0 + RETRY, t0 + 2 * RETRY]);
    assert_eq!(
        m.e.write_deadline(),
        Some(*times.last().unwrap() + DEADLINE)
    );
}

#[test]
fn no_takeover_while_the_leader_renews_even_with_a_skewed_clock() {
    let mut c = Cluster::new(&["a", "b", "c"]);
    // The leader's wall clock is an hour behind: its renewTime stamps look expired to
    // anyone comparing them with their own clock. Candidates use observedTime instead.
    c.members[0].wall_skew = -3_600_000;
    c.run_until(c.now + Duration::from_millis(120_000));
    assert_eq!(c.leader(), Some(0));
    assert!(c.started_at(1).is_empty() && c.started_at(2).is_empty());
    assert_eq!(c.server.record().lease_transitions, 0);
    // Followers report the leader they observe.
    assert!(c.members[1].events.contains(&(
        Moment::from_millis(1_000_000),
        ElectionEvent::NewLeader("a".into())
    )));
}

#[test]
fn a_follower_takes_over_a_lease_duration_after_the_last_renew_it_observed() {
    let mut c = Cluster::new(&["a", "b", "c"]);
    c.run_until(c.now + Duration::from_millis(10_000));
    assert_eq!(c.leader(), Some(0));
    let killed = c.now;
    c.members[0].stopped = true;
    let last_renew = c.server.writes.last().unwrap().0;
    c.run_until(killed + Duration::from_millis(60_000));
    let new = c.leader().expect("a follower took over");
    assert_ne!(new, 0);
    let took = c.started_at(new)[0];
    // Never before a full lease duration after the last renew; within one more retry
    // period plus the candidates' jitter (and the retry that observed the last renew).
    assert!(
        took >= last_renew + LEASE,
        "took over at {took}, last renew {last_renew}"
    );
    let bound = last_renew + LEASE + (RETRY + jitter()) * 2;
    assert!(took <= bound, "took over at {took}, bound {bound}");
    let r = c.server.record();
    assert_eq!(r.lease_transitions, 1);
    assert_eq!(r.acquire_time, Some(took));
    // Exactly one follower took over.
    let others: Vec<usize> = (1..3).filter(|&i| !c.started_at(i).is_empty()).collect();
    assert_eq!(others, vec![new]);
}

#[test]
fn a_cut_off_leader_stops_writing_before_anyone_can_take_over() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until(c.now + Duration::from_millis(10_000));
    assert_eq!(c.leader(), Some(0));
    let cut = c.now;
    let last_renew = c.server.writes.last().unwrap().0;
    let fence = c.members[0].e.write_deadline().unwrap();
    assert_eq!(fence, last_renew + DEADLINE);
    c.members[0].cut_off = true;
    c.run_until(cut + Duration::from_millis(60_000));
    let stopped: Vec<Moment> = c.members[0]
        .events
        .iter()
        .filter(|(_, e)| *e == ElectionEvent::StoppedLeading)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(stopped.len(), 1);
    // Upstream: the round after the last success starts a retry period later and is given
    // up a renew deadline after that.
    assert_eq!(stopped[0], last_renew + RETRY + DEADLINE);
    let took = c.started_at(1)[0];
    assert!(
        fence <= took - (LEASE - DEADLINE),
        "fence {fence}, takeover {took}"
    );
    assert_eq!(c.members[0].e.write_deadline(), None);
    assert!(!c.members[0].e.is_leader());
}

#[test]
fn a_frozen_leader_resumed_after_takeover_may_not_write_and_loses_the_cas() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until(c.now + Duration::from_millis(6_000));
    c.members[0].stopped = true; // SIGSTOP
    c.run_until(c.now + Duration::from_millis(40_000));
    assert_eq!(c.leader(), Some(1));
    let fence = c.members[0].e.write_deadline().unwrap();
    assert!(
        c.now >= fence,
        "the frozen leader's fence has closed on its own clock"
    );
    c.members[0].stopped = false; // SIGCONT
    let writes_before = c.server.writes.len();
    c.run_until(c.now + Duration::from_millis(30_000));
    assert!(!c.members[0].e.is_leader());
    assert_eq!(c.leader(), Some(1));
    assert!(
        c.server.writes[writes_before..]
            .iter()
            .all(|(_, h)| h == "b"),
        "the deposed leader wrote the Lease"
    );
    assert!(
        c.members[0]
            .events
            .iter()
            .any(|(_, e)| *e == ElectionEvent::StoppedLeading)
    );
    assert!(
        c.members[0]
            .events
            .iter()
            .any(|(_, e)| *e == ElectionEvent::NewLeader("b".into()))
    );
}

#[test]
fn losing_the_create_race_is_a_conflict_and_the_loser_follows() {
    let mut a = LeaderElector::new(cfg("a")).unwrap();
    let mut b = LeaderElector::new(cfg("b")).unwrap();
    let mut s = Server::default();
    let t = Moment::from_millis(5_000);
    assert_eq!(a.poll_request(t, t), Some(LeaseRequest::Get));
    assert_eq!(b.poll_request(t, t), Some(LeaseRequest::Get));
    a.handle_response(LeaseResponse::NotFound, t);
    b.handle_response(LeaseResponse::NotFound, t);
    let ca = a.poll_request(t, t).unwrap();
    let cb = b.poll_request(t, t).unwrap();
    assert!(matches!(ca, LeaseRequest::Create(_)));
    a.handle_response(s.serve(ca, t), t);
    let lost = s.serve(cb, t);
    assert_eq!(lost, LeaseResponse::Conflict);
    b.handle_response(lost, t);
    assert!(a.is_leader());
    assert!(!b.is_leader());
    assert_eq!(b.write_deadline(), None);
    // b retries after a jittered retry period and then sees a's valid lease.
    let wake = b.poll_timeout().unwrap();
    assert!(wake >= t + RETRY && wake <= t + RETRY + jitter());
    assert_eq!(b.poll_request(wake, wake), Some(LeaseRequest::Get));
    b.handle_response(s.serve(LeaseRequest::Get, wake), wake);
    assert_eq!(
        b.poll_request(wake, wake),
        None,
        "held and valid: no update"
    );
    assert_eq!(b.observed_leader(), "a");
}

#[test]
fn a_stale_fast_path_update_falls_back_to_get_and_update() {
    let mut c = Cluster::new(&["a"]);
    c.run_until(c.now + Duration::from_millis(3_000));
    // Someone else touched the Lease (e.g. kubectl label): the leader's cached
    // resourceVersion is stale.
    let mut l = c.server.lease.clone().unwrap();
    l.metadata.labels = Some([("touched".to_string(), "yes".to_string())].into());
    let now = c.now;
    c.server.store(l, now);
    let writes = c.server.writes.len();
    let e = &mut c.members[0].e;
    let at = e.poll_timeout().unwrap();
    assert!(matches!(
        e.poll_request(at, at),
        Some(LeaseRequest::Update(_))
    ));
    e.handle_response(LeaseResponse::Conflict, at);
    assert_eq!(e.poll_request(at, at), Some(LeaseRequest::Get));
    e.handle_response(c.server.serve(LeaseRequest::Get, at), at);
    let Some(update @ LeaseRequest::Update(_)) = e.poll_request(at, at) else {
        panic!("expected the slow-path update");
    };
    e.handle_response(c.server.serve(update, at), at);
    assert!(e.is_leader());
    assert_eq!(c.server.writes.len(), writes + 1);
    assert_eq!(
        c.server.record().lease_transitions,
        0,
        "same holder: no transition"
    );
    assert_eq!(e.write_deadline(), Some(at + DEADLINE));
}

#[test]
fn transitions_count_each_change_of_holder() {
    let mut c = Cluster::new(&["a", "b"]);
    c.run_until(c.now + Duration::from_millis(5_000));
    assert_eq!(c.leader(), Some(0));
    c.members[0].stopped = true;
    c.run_until(c.now + Duration::from_millis(40_000));
    assert_eq!(c.leader(), Some(1));
    assert_eq!(c.server.record().lease_transitions, 1);
    // a comes back as a fresh candidate (a restarted process); b dies.
    c.members[0] = Member {
        e: LeaderElector::new(cfg("a")).unwrap(),
        stopped: false,
        cut_off: false,
        wall_skew: 0,
        events: Vec::new(),
    };
    c.members[1].stopped = true;
    c.run_until(c.now + Duration::from_millis(40_000));
    assert!(c.members[0].e.is_leader());
    let r = c.server.record();
    assert_eq!((r.holder_identity.as_str(), r.lease_transitions), ("a", 2));
}

#[test]
fn a_request_in_flight_past_the_renew_deadline_is_abandoned() {
    let mut c = Cluster::new(&["a"]);
    c.run_until(c.now + Duration::from_millis(3_000));
    let e = &mut c.members[0].e;
    let at = e.poll_timeout().unwrap();
    let req = e.poll_request(at, at).expect("renew");
    // The answer never comes back in time: the round is given up at its deadline.
    assert_eq!(e.poll_timeout(), Some(at + DEADLINE));
    assert_eq!(e.poll_request(at + DEADLINE, at + DEADLINE), None);
    assert!(!e.is_leader());
    assert_eq!(e.write_deadline(), None);
    // A late success does not make it leader again by itself.
    let late = c
        .server
        .serve(req, at + DEADLINE + Duration::from_millis(1));
    e.handle_response(late, at + DEADLINE + Duration::from_millis(1));
    assert!(!e.is_leader());
    let events: Vec<ElectionEvent> = std::iter::from_fn(|| e.poll_event()).collect();
    assert!(events.contains(&ElectionEvent::StoppedLeading));
}

#[test]
fn fast_profile_candidates_wait_their_own_one_and_a_half_seconds() {
    // The record says 1 s (truncated); a candidate configured for 1.5 s waits 1.5 s after
    // the last change it observed, so the leader's 1 s fence closes first.
    let fast = |id: &str| ElectionConfig {
        lease_duration_ms: Duration::from_millis(1_500),
        renew_deadline_ms: Duration::from_millis(1_000),
        retry_period_ms: Duration::from_millis(200),
        ..cfg(id)
    };
    let mut c = Cluster::new(&["a", "b"]);
    c.members = ["a", "b"]
        .iter()
        .map(|id| Member {
            e: LeaderElector::new(fast(id)).unwrap(),
            stopped: false,
            cut_off: false,
            wall_skew: 0,
            events: Vec::new(),
        })
        .collect();
    c.run_until(c.now + Duration::from_millis(2_000));
    assert_eq!(c.server.record().lease_duration_seconds, 1);
    c.members[0].stopped = true;
    let last_renew = c.server.writes.last().unwrap().0;
    c.run_until(c.now + Duration::from_millis(10_000));
    let took = c.started_at(1)[0];
    assert!(
        took >= last_renew + Duration::from_millis(1_500),
        "took {took}, last renew {last_renew}"
    );
    assert!(
        took <= last_renew + Duration::from_millis(1_500) + Duration::from_millis(2 * 440),
        "took {took}, last renew {last_renew}"
    );
}
