//! The sans-IO event recorder: upstream client-go `EventCorrelator` (aggregator, dedup logger,
//! per source+object spam filter) with the writes coalesced: the first occurrence of an event is
//! created at once, repeats only bump an in-memory count that is written as one update at most
//! every `flush_interval_ms`. Memory is bounded by LRU caches of `lru_entries` each.
//!
//! Start at [`EventRecorder::record`], then [`EventRecorder::poll_write`] /
//! [`EventRecorder::handle_write_result`] / [`EventRecorder::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;

use super::{EventRecord, event_name, to_event};
use crate::Moment;

/// Upstream `maxLruCacheEntries` (client-go tools/record/events_cache.go).
pub const LRU_ENTRIES: usize = 4096;
/// Upstream `defaultAggregateMaxEvents`: similar events (varying only by message) before they
/// are combined.
pub const AGGREGATE_MAX_EVENTS: usize = 10;
/// Upstream `defaultAggregateIntervalInSeconds` (600 s), in milliseconds.
pub const AGGREGATE_INTERVAL_MS: Duration = Duration::from_millis(600_000);
/// Upstream `defaultSpamBurst`: writes a source may make about one object at once.
pub const SPAM_BURST: i64 = 25;
/// Upstream `defaultSpamQPS` = 1/300: one more write per 5 minutes, in milliseconds per token.
pub const SPAM_REFILL_MS: Duration = Duration::from_millis(300_000);
/// Ours: repeats of an existing event are written as one update at most this often (upstream
/// writes every occurrence, throttled only by the spam filter).
pub const FLUSH_INTERVAL_MS: Duration = Duration::from_millis(1_000);
/// Upstream `sleepDuration` between retries of a write the server did not answer (10 s).
pub const RETRY_DELAY_MS: Duration = Duration::from_millis(10_000);
/// Upstream `maxTriesPerEvent`.
pub const MAX_TRIES: u32 = 12;
/// Upstream `EventAggregatorByReasonMessageFunc`'s prefix.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// The recorder's limits; [`Default`] is upstream's (plus our flush interval).
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    pub lru_entries: usize,
    pub aggregate_max_events: usize,
    pub aggregate_interval_ms: Duration,
    pub spam_burst: i64,
    pub spam_refill_ms: Duration,
    pub flush_interval_ms: Duration,
    pub retry_delay_ms: Duration,
    pub max_tries: u32,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            lru_entries: LRU_ENTRIES,
            aggregate_max_events: AGGREGATE_MAX_EVENTS,
            aggregate_interval_ms: AGGREGATE_INTERVAL_MS,
            spam_burst: SPAM_BURST,
            spam_refill_ms: SPAM_REFILL_MS,
            flush_interval_ms: FLUSH_INTERVAL_MS,
            retry_delay_ms: RETRY_DELAY_MS,
            max_tries: MAX_TRIES,
        }
    }
}

/// One API write the driver should make, then report with [`EventRecorder::handle_write_result`].
#[derive(Clone, Debug, PartialEq)]
pub enum EventWrite {
    /// POST the Event (first occurrence, or a recreate after the stored one vanished).
    Create { id: WriteId, event: Box<Event> },
    /// Merge-patch `count`, `lastTimestamp` and `message` of the stored Event.
    Patch {
        id: WriteId,
        namespace: String,
        name: String,
        patch: serde_json::Value,
    },
}

impl EventWrite {
    pub fn id(&self) -> &WriteId {
        match self {
            EventWrite::Create { id, .. } | EventWrite::Patch { id, .. } => id,
        }
    }
}

/// Which cached event a write belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteId {
    key: String,
    generation: u64,
}

/// How a write ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Ok,
    /// The Event to patch is gone (TTL, deleted): create it again.
    NotFound,
    /// The Event to create exists already (an earlier attempt went through).
    AlreadyExists,
    /// The server refused it for good (invalid, forbidden, namespace terminating): drop it.
    Rejected(String),
    /// No answer (transport error, 5xx): retry later, up to `max_tries`.
    Unavailable(String),
}

/// A bounded least-recently-used map with deterministic iteration (no HashMap): inserting a
/// key past `cap` evicts the least recently inserted or used one (`get_mut` and `insert`
/// refresh a key's recency, `peek_mut` does not). The recorder's caches, and the simulator's
/// record of created Events.
#[derive(Debug)]
pub struct Lru<V> {
    /// Each key is held once, shared by `map` and `order`.
    map: BTreeMap<Arc<str>, (u64, V)>,
    order: BTreeMap<u64, Arc<str>>,
    tick: u64,
    cap: usize,
}

impl<V> Lru<V> {
    /// An empty map holding at most `cap` entries (at least 1).
    pub fn new(cap: usize) -> Lru<V> {
        Lru {
            map: BTreeMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            cap: cap.max(1),
        }
    }

    fn touch(&mut self, key: &str) {
        if let Some((used, _)) = self.map.get_mut(key) {
            let shared = self.order.remove(used).expect("every key is in the order");
            self.tick += 1;
            *used = self.tick;
            self.order.insert(self.tick, shared);
        }
    }

    /// The value of `key`, which becomes the most recently used.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.touch(key);
        self.map.get_mut(key).map(|(_, v)| v)
    }

    /// The value of `key`, leaving its recency (and so the eviction order) as it is.
    pub fn peek_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.get_mut(key).map(|(_, v)| v)
    }

    /// Insert (as most recent); returns the evicted least recently used entry, if any.
    pub fn insert(&mut self, key: impl Into<Arc<str>>, value: V) -> Option<(String, V)> {
        let key: Arc<str> = key.into();
        self.remove(&key);
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.map.insert(key, (self.tick, value));
        if self.map.len() <= self.cap {
            return None;
        }
        let (_, oldest) = self.order.pop_first()?;
        self.map
            .remove(&*oldest)
            .map(|(_, v)| (oldest.to_string(), v))
    }

    /// `key` as held by the map when present (so a caller keeping it shares the one copy),
    /// else `key` itself.
    pub fn shared_key(&self, key: String) -> Arc<str> {
        match self.map.get_key_value(key.as_str()) {
            Some((held, _)) => held.clone(),
            None => key.into(),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let (used, v) = self.map.remove(key)?;
        self.order.remove(&used);
        Some(v)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Upstream `aggregateRecord`: the distinct messages seen for one aggregate key.
#[derive(Debug)]
struct Aggregate {
    /// Sorted, without repeats (at most `aggregate_max_events`: a set, kept in a `Vec` as a
    /// recorder holds thousands of these with one or two messages each).
    messages: Vec<String>,
    last: Moment,
}

/// A token bucket in milliseconds of refill (one token = `spam_refill_ms`).
#[derive(Debug)]
struct Bucket {
    units: Duration,
    at: Moment,
}

/// Upstream `eventLog` plus what coalescing needs.
#[derive(Debug)]
struct Logged {
    /// The latest occurrence (its message is the one written).
    latest: EventRecord,
    name: String,
    generation: u64,
    first: Moment,
    last: Moment,
    count: i32,
    /// The count the server has (0 until created).
    written: i32,
    /// The count the write in flight carries.
    sending: i32,
    created: bool,
    in_flight: bool,
    due: Option<Moment>,
    tries: u32,
    /// Shared with the spam bucket of the same source and object.
    spam_key: Arc<str>,
}

/// The recorder: feed it occurrences, drain writes, report their outcomes.
#[derive(Debug)]
pub struct EventRecorder {
    cfg: RecorderConfig,
    aggregates: Lru<Aggregate>,
    logged: Lru<Logged>,
    buckets: Lru<Bucket>,
    /// `(due, key)` of every logged event with a write to make.
    due: BTreeSet<(Moment, String)>,
    seq: u64,
    dropped: u64,
}

/// Upstream `getEventKey`: everything but the time, including the message.
fn event_key(r: &EventRecord) -> String {
    [aggregate_key(r).as_str(), r.message.as_str()].join("\u{0}")
}

/// Upstream `EventAggregatorByReasonFunc`'s aggregate key: source, object, type, reason.
fn aggregate_key(r: &EventRecord) -> String {
    let i = &r.involved;
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    [
        r.component.to_string(),
        r.host.clone(),
        s(&i.kind),
        s(&i.namespace),
        s(&i.name),
        s(&i.field_path),
        s(&i.uid),
        s(&i.api_version),
        r.type_.as_str().to_string(),
        r.reason.to_string(),
    ]
    .join("\u{0}")
}

/// Upstream `getSpamKey`: source and object.
fn spam_key(r: &EventRecord) -> String {
    let i = &r.involved;
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    [
        r.component.to_string(),
        r.host.clone(),
        s(&i.kind),
        s(&i.namespace),
        s(&i.name),
        s(&i.uid),
        s(&i.api_version),
    ]
    .join("\u{0}")
}

impl EventRecorder {
    pub fn new(cfg: RecorderConfig) -> EventRecorder {
        EventRecorder {
            aggregates: Lru::new(cfg.lru_entries),
            logged: Lru::new(cfg.lru_entries),
            buckets: Lru::new(cfg.lru_entries),
            cfg,
            due: BTreeSet::new(),
            seq: 0,
            dropped: 0,
        }
    }

    /// Record one occurrence at `now` (upstream `EventCorrelate` minus the write).
    pub fn record(&mut self, mut rec: EventRecord, now: Moment) {
        let (key, combined) = self.aggregate(&rec, now);
        if combined {
            rec.message = format!("{COMBINED_PREFIX}{}", rec.message);
        }
        if let Some(entry) = self.logged.get_mut(&key) {
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            entry.latest = rec;
            if entry.due.is_none() && !entry.in_flight {
                let at = if entry.created {
                    now + self.cfg.flush_interval_ms
                } else {
                    now
                };
                entry.due = Some(at);
                self.due.insert((at, key));
            }
            return;
        }
        self.seq += 1;
        let name = event_name(rec.involved.name.as_deref().unwrap_or(""), now, self.seq);
        let entry = Logged {
            spam_key: self.buckets.shared_key(spam_key(&rec)),
            latest: rec,
            name,
            generation: self.seq,
            first: now,
            last: now,
            count: 1,
            written: 0,
            sending: 0,
            created: false,
            in_flight: false,
            due: Some(now),
            tries: 0,
        };
        self.due.insert((now, key.clone()));
        if let Some((old_key, old)) = self.logged.insert(key, entry) {
            if let Some(at) = old.due {
                self.due.remove(&(at, old_key));
            }
            if old.count > old.written {
                self.dropped += 1;
            }
        }
    }

    /// Upstream `EventAggregate`: returns the cache key to log under and whether the event is
    /// combined with similar ones.
    fn aggregate(&mut self, rec: &EventRecord, now: Moment) -> (String, bool) {
        let akey = aggregate_key(rec);
        let interval = self.cfg.aggregate_interval_ms;
        let max = self.cfg.aggregate_max_events;
        let agg = match self.aggregates.get_mut(&akey) {
            Some(a) if now <= a.last + interval => a,
            _ => {
                let fresh = Aggregate {
                    messages: Vec::new(),
                    last: now,
                };
                self.aggregates.insert(akey.clone(), fresh);
                self.aggregates.peek_mut(&akey).expect("just inserted")
            }
        };
        if let Err(at) = agg.messages.binary_search(&rec.message) {
            agg.messages.insert(at, rec.message.clone());
        }
        agg.last = now;
        if agg.messages.len() < max {
            return (event_key(rec), false);
        }
        // Do not grow the set past the limit (upstream pops an arbitrary one; we pop the least).
        agg.messages.remove(0);
        (akey, true)
    }

    /// Take a spam-filter token for `key` at `now`; `Err(at)`: the next token comes at `at`.
    fn take_token(&mut self, key: &Arc<str>, now: Moment) -> Result<(), Moment> {
        let full = self.cfg.spam_refill_ms * u32::try_from(self.cfg.spam_burst).unwrap_or(u32::MAX);
        let refill = self.cfg.spam_refill_ms;
        if self.buckets.get_mut(key).is_none() {
            self.buckets.insert(
                key.clone(),
                Bucket {
                    units: full,
                    at: now,
                },
            );
        }
        let b = self.buckets.peek_mut(key).expect("present");
        b.units = (b.units + now.saturating_since(b.at)).min(full);
        b.at = now;
        if b.units >= refill {
            b.units -= refill;
            Ok(())
        } else {
            Err(now + (refill - b.units))
        }
    }

    /// The next write due at or before `now`, if any (each costs a spam-filter token; an event
    /// out of tokens waits for the next one, with its count still growing).
    pub fn poll_write(&mut self, now: Moment) -> Option<EventWrite> {
        while let Some((at, key)) = self.due.first().cloned() {
            if at > now {
                return None;
            }
            self.due.pop_first();
            let Some(spam) = self.logged.peek_mut(&key).map(|e| e.spam_key.clone()) else {
                continue;
            };
            if let Err(next) = self.take_token(&spam, now) {
                if let Some(e) = self.logged.peek_mut(&key) {
                    e.due = Some(next);
                }
                self.due.insert((next, key));
                continue;
            }
            let e = self.logged.peek_mut(&key).expect("present");
            e.due = None;
            e.in_flight = true;
            e.sending = e.count;
            let id = WriteId {
                key,
                generation: e.generation,
            };
            if e.created {
                let patch = serde_json::json!({
                    "count": e.count,
                    "lastTimestamp": crate::time::to_time(e.last),
                    "message": e.latest.message,
                });
                return Some(EventWrite::Patch {
                    id,
                    namespace: e.latest.namespace().to_string(),
                    name: e.name.clone(),
                    patch,
                });
            }
            let event = to_event(&e.latest, &e.name, e.count, e.first, e.last);
            return Some(EventWrite::Create {
                id,
                event: Box::new(event),
            });
        }
        None
    }

    /// Report how the write `id` ended.
    pub fn handle_write_result(&mut self, id: &WriteId, outcome: WriteOutcome, now: Moment) {
        let flush = self.cfg.flush_interval_ms;
        let (retry, max_tries) = (self.cfg.retry_delay_ms, self.cfg.max_tries);
        let Some(e) = self.logged.peek_mut(&id.key) else {
            return;
        };
        if e.generation != id.generation || !e.in_flight {
            return;
        }
        e.in_flight = false;
        let next = match outcome {
            WriteOutcome::Ok | WriteOutcome::AlreadyExists => {
                e.created = true;
                e.written = e.sending;
                e.tries = 0;
                (e.count > e.written).then_some(now + flush)
            }
            WriteOutcome::NotFound => {
                e.created = false;
                Some(now)
            }
            WriteOutcome::Rejected(_) => {
                self.logged.remove(&id.key);
                return;
            }
            WriteOutcome::Unavailable(_) => {
                e.tries += 1;
                if e.tries >= max_tries {
                    self.logged.remove(&id.key);
                    self.dropped += 1;
                    return;
                }
                Some(now + retry)
            }
        };
        e.due = next;
        if let Some(at) = next {
            self.due.insert((at, id.key.clone()));
        }
    }

    /// When [`poll_write`](Self::poll_write) next has something (`None`: nothing pending).
    pub fn poll_timeout(&self) -> Option<Moment> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Events tracked (bounded by `lru_entries`).
    pub fn len(&self) -> usize {
        self.logged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.logged.len() == 0
    }

    /// Events evicted or abandoned with occurrences never written.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sizes of the three caches (aggregates, logged events, spam buckets), for bound checks.
    pub fn cache_sizes(&self) -> (usize, usize, usize) {
        (self.aggregates.len(), self.logged.len(), self.buckets.len())
    }
}
