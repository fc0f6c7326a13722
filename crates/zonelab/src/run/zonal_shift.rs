//! The live run's zonal shifts: the scenario's `zonalShifts` at their times and the
//! `zonalAutoshift` rule fed with the client pods' records as they are written, the same
//! sans-IO rule the simulator runs (`controllers::zonalshift::autoshift`). Start at
//! [`LiveShifts::step`].

use std::time::Duration;

use controllers::Moment;
use controllers::zonalshift::autoshift::Autoshift;

use super::clients::{ClientPod, NewLines};

/// The shifts still to start and the autoshift rule of a live run.
pub struct LiveShifts {
    client: kube::Client,
    /// (offset from t0, zone, expiresIn or `None` to cancel), in time order.
    actions: Vec<(Duration, String, Option<Duration>)>,
    next: usize,
    rule: Option<Autoshift>,
    lines: NewLines,
}

#[derive(serde::Deserialize)]
struct Line {
    end: f64,
    outcome: lab::Outcome,
}

impl LiveShifts {
    /// The run's shifts, with a client of the lab's API server (its admin kubeconfig); `None` (and no client)
    /// when the scenario has neither `zonalShifts` nor `zonalAutoshift`.
    pub fn of(
        s: &scenario::Scenario,
        lab: &crate::lab::LabConfig,
    ) -> anyhow::Result<Option<LiveShifts>> {
        if s.zonal_shifts.is_empty() && s.zonal_autoshift.is_none() {
            return Ok(None);
        }
        Ok(Some(LiveShifts::new(s, lab.client()?)))
    }

    fn new(s: &scenario::Scenario, client: kube::Client) -> LiveShifts {
        LiveShifts {
            client,
            actions: s
                .zonal_shifts_by_time()
                .into_iter()
                .map(|(at, z)| (at, z.away_from.clone(), z.expires_in))
                .collect(),
            next: 0,
            rule: sim::zonal_shift::autoshift_of(s),
            lines: NewLines::default(),
        }
    }

    /// Runs the actions due at `now` (epoch ms; the run started at `t0`) and evaluates the
    /// autoshift rule; returns progress lines.
    pub async fn step(
        &mut self,
        t0: Moment,
        now: Moment,
        pods: &[ClientPod],
    ) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        while let Some((at, zone, expires_in)) = self.actions.get(self.next).cloned() {
            if t0 + at > now {
                break;
            }
            self.next += 1;
            notes.push(self.write(&zone, expires_in.map(|e| now + e), now).await?);
        }
        if let Some(d) = self.evaluate(now, pods) {
            let line = self.write(&d.zone, Some(d.expires_at), now).await?;
            notes.push(format!("autoshift: {line}: {}", d.reason));
        }
        Ok(notes)
    }

    fn evaluate(
        &mut self,
        now: Moment,
        pods: &[ClientPod],
    ) -> Option<controllers::zonalshift::autoshift::AutoshiftDecision> {
        let rule = self.rule.as_mut()?;
        for cp in pods.iter().filter(|c| c.kind == lab::timeline::CLUSTERIP) {
            for line in self.lines.read(&cp.out) {
                if let Ok(l) = serde_json::from_str::<Line>(&line) {
                    let ok = l.outcome == lab::Outcome::Ok;
                    rule.handle_finished(Moment::from_millis(l.end as i64), cp.zone.clone(), ok);
                }
            }
        }
        rule.handle_timeout(now)
    }

    async fn write(
        &self,
        zone: &str,
        expires_at: Option<Moment>,
        now: Moment,
    ) -> anyhow::Result<String> {
        let nodes = crate::zonal_shift::write_shift(&self.client, zone, expires_at, now).await?;
        Ok(match expires_at {
            Some(at) => format!(
                "zonal shift away from zone {zone} until {} ({} node(s))",
                controllers::zonalshift::format_time(at),
                nodes.len()
            ),
            None => format!("zonal shift away from zone {zone} cancelled"),
        })
    }
}
