//! The scenario's faults in the simulator: power-off (agent, pods and packets gone), partition
//! (processes run on; the API and other zones unreachable), graceful stop (the kubelet drains,
//! then the agent exits) and recovery; and the run's end condition.
//!
//! Start at [`World::inject`].

use std::time::Duration;

use scenario::{FaultTarget, FaultType};

use crate::nodes::Power;
use crate::world::{Ev, World};

/// How often `until: capacity-restored` is checked (the live run checks every second).
pub const END_CHECK_PERIOD_MS: Duration = Duration::from_secs(1);

impl World {
    /// The nodes a fault target names.
    fn fault_nodes(&self, target: &FaultTarget) -> Vec<usize> {
        match target {
            FaultTarget::Zone(z) => (0..self.nodes.len())
                .filter(|n| &self.nodes[*n].zone == z)
                .collect(),
            FaultTarget::Node { zone, index } => self
                .node_by_name
                .get(&crate::node_name(zone, *index))
                .copied()
                .into_iter()
                .collect(),
            FaultTarget::EtcdLeader => Vec::new(),
        }
    }

    /// Inject the `i`-th fault (in time order).
    pub fn inject(&mut self, i: usize) {
        let Some(f) = self.faults.get(i).cloned() else {
            return;
        };
        let target = self.scenario_target(&f);
        let nodes = target
            .as_ref()
            .map(|t| self.fault_nodes(t))
            .unwrap_or_default();
        match f.kind {
            FaultType::NodePowerOff | FaultType::ZonePowerOff => {
                nodes.iter().for_each(|n| self.power_off(*n));
            }
            FaultType::NodePartition => {
                self.partitioned_nodes.extend(nodes.iter().copied());
            }
            FaultType::ZonePartition => {
                if let Some(FaultTarget::Zone(z)) = &target {
                    self.partitioned_zones.insert(z.clone());
                }
            }
            FaultType::GracefulStop => nodes.iter().for_each(|n| self.graceful_stop(*n)),
            FaultType::Recover => self.recover(target.as_ref(), &nodes),
        }
        let names = nodes.iter().map(|n| self.nodes[*n].name.clone()).collect();
        let now = self.now;
        self.record(
            now,
            lab::EventKind::Fault {
                fault: f.kind.as_str().into(),
                target: f.target.clone(),
                nodes: names,
            },
        );
        if i + 1 == self.faults.len() && self.until_capacity_restored {
            self.queue.push(now + END_CHECK_PERIOD_MS, Ev::CheckEnd);
        }
    }

    /// Heal the network of `nodes` (and the zone) and restart agents that are not running.
    fn recover(&mut self, target: Option<&FaultTarget>, nodes: &[usize]) {
        if let Some(FaultTarget::Zone(z)) = target {
            self.partitioned_zones.remove(z);
        }
        for n in nodes {
            self.partitioned_nodes.remove(n);
        }
        for &n in nodes {
            match self.nodes[n].power {
                Power::Off | Power::Stopped => self.boot(n),
                Power::On | Power::Stopping if !self.cut_off(n) => self.heal(n),
                _ => {}
            }
        }
    }

    /// `until: capacity-restored`: ends the run once the analysis finds capacity restored.
    pub fn check_end(&mut self) {
        if self.end.is_some() {
            return;
        }
        let now = self.now;
        let meta = self.meta(now, "");
        let report = lab::analyze(&meta, &self.events, &[]);
        if report.phases.capacity_restored_s.is_some() {
            self.end = Some(now);
            self.ended_by = "capacity-restored".into();
            return;
        }
        self.queue.push(now + END_CHECK_PERIOD_MS, Ev::CheckEnd);
    }
}
