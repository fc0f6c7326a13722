//! Zonal shifts in the simulator: the scenario's `zonalShifts` actions at their times and the
//! `zonalAutoshift` rule evaluated every second on the clients' finished requests. Both write
//! the shift onto the zone's Node objects through the API, as the live runner does; the
//! controllers (`controllers::zonalshift`, the EndpointSlice controller) do the rest.
//!
//! Start at [`World::zonal_shift`] and [`World::autoshift_tick`].

use std::sync::Arc;
use std::time::Duration;

use controllers::zonalshift::{self, autoshift};
use controllers::{Action, Moment, Object};

use crate::world::{Ev, World};

/// The simulator's zonal-shift state.
#[derive(Default)]
pub struct ZonalShifts {
    /// The scenario's actions: (offset from t0, action), in time order.
    pub actions: Vec<(Duration, scenario::ZonalShift)>,
    pub autoshift: Option<autoshift::Autoshift>,
    /// Requests already handed to the rule (index into `World::requests`).
    cursor: usize,
}

/// The scenario's `zonalAutoshift` rule as the sans-IO [`autoshift::Autoshift`] (shared with
/// the live runner).
pub fn autoshift_of(s: &scenario::Scenario) -> Option<autoshift::Autoshift> {
    s.zonal_autoshift.as_ref().map(|a| {
        autoshift::Autoshift::new(autoshift::AutoshiftConfig {
            threshold_percent: a.threshold,
            period_ms: a.period,
            delay_ms: a.delay,
            expires_in_ms: a.expires_in,
        })
    })
}

impl ZonalShifts {
    pub fn new(s: &scenario::Scenario) -> ZonalShifts {
        ZonalShifts {
            actions: s
                .zonal_shifts_by_time()
                .into_iter()
                .map(|(at, z)| (at, z.clone()))
                .collect(),
            autoshift: autoshift_of(s),
            cursor: 0,
        }
    }
}

impl World {
    /// Queue the scenario's zonal-shift actions and the autoshift rule's first evaluation.
    pub fn schedule_zonal_shifts(&mut self) {
        for (i, (at, _)) in self.zonal.actions.iter().enumerate() {
            self.queue.push(self.t0 + *at, Ev::ZonalShift(i));
        }
        if self.zonal.autoshift.is_some() {
            let first = self.t0 + autoshift::EVALUATION_INTERVAL_MS;
            self.queue.push(first, Ev::AutoshiftTick);
        }
    }

    /// Run the `i`-th zonal-shift action.
    pub fn zonal_shift(&mut self, i: usize) {
        let Some((_, z)) = self.zonal.actions.get(i).cloned() else {
            return;
        };
        let expires = z.expires_in.map(|d| self.now + d);
        self.write_shift(&z.away_from, expires);
    }

    /// Start (or extend) the zone's shift until `expires_at`, or cancel it (`None`): the
    /// annotation written on every node of the zone through the API.
    pub fn write_shift(&mut self, zone: &str, expires_at: Option<Moment>) {
        let now = self.now;
        let nodes: Vec<_> = zonalshift::zone_nodes(&self.api.fake.cache, zone)
            .filter_map(|n| match expires_at {
                Some(at) => zonalshift::start_node(n, at, now),
                None => zonalshift::cancel_node(n),
            })
            .collect();
        for n in nodes {
            let action = Action::Update(Object::Node(Arc::new(n)));
            if let Ok(changes) = self.api.execute(&action, now) {
                for change in changes {
                    self.broadcast(change);
                }
            }
        }
    }

    /// Hand the finished requests to the autoshift rule and evaluate it.
    pub fn autoshift_tick(&mut self) {
        let now = self.now;
        let fresh = self.requests[self.zonal.cursor..]
            .iter()
            .filter(|r| r.client_kind == lab::timeline::CLUSTERIP);
        self.zonal.cursor = self.requests.len();
        let Some(rule) = self.zonal.autoshift.as_mut() else {
            return;
        };
        for r in fresh {
            rule.handle_finished(
                Moment::from_millis(r.end as i64),
                r.client_zone.clone(),
                r.outcome == lab::Outcome::Ok,
            );
        }
        let decision = rule.handle_timeout(now);
        let next = rule
            .poll_timeout()
            .unwrap_or(now + autoshift::EVALUATION_INTERVAL_MS)
            .max(now + Duration::from_millis(1));
        if let Some(d) = decision {
            self.write_shift(&d.zone, Some(d.expires_at));
        }
        if self.end.is_none() {
            self.queue.push(next, Ev::AutoshiftTick);
        }
    }
}
