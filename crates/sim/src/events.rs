//! Kubernetes Events in the simulator, as the live lab gets them: what the controllers and
//! each kubelet report (`poll_event`) goes through that process's own
//! `controllers::events::EventRecorder` (correlation, aggregation, spam filter, coalesced
//! count updates); each write commits after the modelled API write latency and reaches the
//! run's Event watch after a watch delivery delay, where a created Event and each count change
//! become a `kube-event` timeline entry (`lab::timeline::KubeEvent::of`, as live).
//!
//! Start at [`World::record_events`].

use std::collections::BTreeMap;

use controllers::Moment;
use controllers::events::{
    EventRecord, EventRecorder, EventWrite, Lru, RecorderConfig, WriteOutcome,
};
use lab::timeline::KubeEvent;

use crate::nodes::Power;
use crate::world::{Ev, World};

/// Created Events kept to apply later count updates to; an update of one evicted past this
/// bound (older than every recorder's cache can still patch) is not shown.
const KEPT_EVENTS: usize = 16_384;

/// Which process recorded an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The controller-manager (and the scheduler, which runs in it here).
    ControllerManager,
    /// Node `n`'s kubelet.
    Kubelet(usize),
}

/// The recorders and what the run's Event watch has seen.
pub struct SimEvents {
    pub(crate) recorders: BTreeMap<Source, EventRecorder>,
    wake: BTreeMap<Source, Moment>,
    /// Created Events by `namespace/name`, the least recently created evicted first.
    seen: Lru<KubeEvent>,
}

impl Default for SimEvents {
    fn default() -> SimEvents {
        SimEvents {
            recorders: BTreeMap::new(),
            wake: BTreeMap::new(),
            seen: Lru::new(KEPT_EVENTS),
        }
    }
}

impl SimEvents {
    /// The timeline record a committed write makes, if the watch can tell.
    fn committed(&mut self, w: &EventWrite) -> Option<KubeEvent> {
        match w {
            EventWrite::Create { event, .. } => {
                let rec = KubeEvent::of(event);
                self.seen.insert(rec.name.clone(), rec.clone());
                Some(rec)
            }
            EventWrite::Patch {
                namespace,
                name,
                patch,
                ..
            } => {
                // A count update does not make an Event recently created.
                let rec = self.seen.peek_mut(&format!("{namespace}/{name}"))?;
                if let Some(n) = patch["count"].as_i64() {
                    rec.count = i32::try_from(n).unwrap_or(i32::MAX);
                }
                if let Some(m) = patch["message"].as_str() {
                    rec.message = m.to_string();
                }
                Some(rec.clone())
            }
        }
    }
}

impl World {
    /// `src` reported `recs` now: into its recorder, and out as writes when due.
    pub fn record_events(&mut self, src: Source, recs: Vec<EventRecord>) {
        if recs.is_empty() {
            return;
        }
        let now = self.now;
        let r = self
            .events_model
            .recorders
            .entry(src)
            .or_insert_with(|| EventRecorder::new(RecorderConfig::default()));
        for rec in recs {
            r.record(rec, now);
        }
        self.flush_events(src);
    }

    /// Send `src`'s due writes and schedule its next wake-up.
    fn flush_events(&mut self, src: Source) {
        let now = self.now;
        let mut writes = Vec::new();
        let Some(r) = self.events_model.recorders.get_mut(&src) else {
            return;
        };
        while let Some(w) = r.poll_write(now) {
            writes.push(w);
        }
        let next = r.poll_timeout();
        for write in writes {
            let d = self.api_delay(self.lat.api_write);
            self.queue.push(now + d, Ev::EventWrite { src, write });
        }
        if let Some(t) = next.map(|t| t.max(now))
            && self.events_model.wake.get(&src) != Some(&t)
        {
            self.events_model.wake.insert(src, t);
            self.queue.push(t, Ev::EventWake { src });
        }
    }

    /// `src`'s recorder asked to be woken at `at`.
    pub fn event_wake(&mut self, src: Source, at: Moment) {
        if self.events_model.wake.get(&src) == Some(&at) {
            self.events_model.wake.remove(&src);
            self.flush_events(src);
        }
    }

    /// A write of `src`'s recorder reaches the API: committed (and on the timeline after the
    /// watch delay), or not answered when its node is cut off.
    pub fn event_write(&mut self, src: Source, write: EventWrite) {
        let now = self.now;
        let outcome = match src {
            Source::Kubelet(n) if self.nodes[n].power != Power::On => {
                // The kubelet died with its recorder.
                self.events_model.recorders.remove(&src);
                return;
            }
            Source::Kubelet(n) if self.cut_off(n) => {
                WriteOutcome::Unavailable("the API server is unreachable".into())
            }
            _ => {
                if let Some(rec) = self.events_model.committed(&write) {
                    let d = self.api_delay(self.lat.watch_delivery);
                    self.record(now + d, lab::EventKind::KubeEvent(rec));
                }
                WriteOutcome::Ok
            }
        };
        if let Some(r) = self.events_model.recorders.get_mut(&src) {
            r.handle_write_result(write.id(), outcome, now);
        }
        self.flush_events(src);
    }
}
