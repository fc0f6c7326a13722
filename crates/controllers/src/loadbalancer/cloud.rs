//! The cloud seam as the live loop sees it: an [`Apply`] that applies one [`CloudAction`], a
//! [`Cloud`] that takes actions and hands their results back later (the live fleet applies
//! them on its own thread, so a slow balancer stop never blocks the controller loop;
//! [`Inline`] applies them at once), and [`CloudDriven`], which runs the load-balancer
//! controller with such a cloud as one more [`Controller`], so the live driver and the
//! virtual-time harness need no change.
//!
//! Start at [`CloudDriven`].

use std::time::Duration;

use super::{CloudAction, LoadBalancerController};
use crate::{Action, Cache, Change, Controller, Moment, WriteError};
use runtime::Outbox;

/// Applies one balancer action. `Err` carries the cloud's message (it becomes LBC's
/// `FailedDeployModel` Event and a retry with backoff).
pub trait Apply: Send {
    fn apply(&mut self, action: &CloudAction) -> Result<(), String>;
}

/// One finished action and how it ended.
pub type CloudResult = (CloudAction, Result<(), String>);

/// Takes actions and reports their results when they are done (possibly later, in order).
pub trait Cloud: Send {
    /// Start `action`. A cloud that cannot take it reports an `Err` result for it instead.
    fn submit(&mut self, action: CloudAction);
    /// Results finished since the last call, in submission order.
    fn poll_results(&mut self, out: &mut Vec<CloudResult>);
    /// Actions submitted and not yet reported.
    fn in_flight(&self) -> usize;
}

/// A [`Cloud`] that applies each action at submission (the virtual-time harness, tests).
pub struct Inline<A: Apply> {
    pub apply: A,
    done: Vec<CloudResult>,
}

impl<A: Apply> Inline<A> {
    pub fn new(apply: A) -> Inline<A> {
        Inline {
            apply,
            done: Vec::new(),
        }
    }
}

impl<A: Apply> Cloud for Inline<A> {
    fn submit(&mut self, action: CloudAction) {
        let result = self.apply.apply(&action);
        self.done.push((action, result));
    }
    fn poll_results(&mut self, out: &mut Vec<CloudResult>) {
        out.append(&mut self.done);
    }
    fn in_flight(&self) -> usize {
        self.done.len()
    }
}

/// How often the controller looks for results while actions are in flight, ms.
pub const POLL_INTERVAL_MS: Duration = Duration::from_millis(50);

/// The controller plus its cloud: cloud actions are submitted as the driver drains the
/// controller's writes; their results go back to the controller at a later turn (it needs the
/// cache for its Events): [`Controller::poll_timeout`] asks for one every
/// [`POLL_INTERVAL_MS`] while actions are in flight.
pub struct CloudDriven<C: Cloud> {
    pub controller: LoadBalancerController,
    pub cloud: C,
    results: Vec<CloudResult>,
    last_now: Moment,
}

impl<C: Cloud> CloudDriven<C> {
    pub fn new(controller: LoadBalancerController, cloud: C) -> CloudDriven<C> {
        CloudDriven {
            controller,
            cloud,
            results: Vec::new(),
            last_now: Moment::EPOCH,
        }
    }

    fn deliver(&mut self, cache: &Cache, now: Moment) {
        self.last_now = now;
        self.cloud.poll_results(&mut self.results);
        for (action, result) in std::mem::take(&mut self.results) {
            if let Err(e) = &result {
                tracing::warn!(service = %action.service(), "load balancer action failed: {e}");
            }
            self.controller.on_cloud_result(cache, &action, result, now);
        }
    }
}

impl<C: Cloud> CloudDriven<C> {
    /// Hand the cloud what the controller asked for (after every input).
    fn submit_cloud_actions(&mut self) {
        let mut cloud = Vec::new();
        self.controller.drain_cloud_actions(&mut cloud);
        for action in cloud {
            self.cloud.submit(action);
        }
        // A cloud that finished at once (Inline) is answered at the next turn.
        self.cloud.poll_results(&mut self.results);
    }
}

impl<C: Cloud> Controller for CloudDriven<C> {
    fn name(&self) -> &'static str {
        self.controller.name()
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        self.deliver(cache, now);
        self.controller.handle_synced(cache, now);
        self.submit_cloud_actions();
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        self.deliver(cache, now);
        self.controller.handle_change(cache, change, now);
        self.submit_cloud_actions();
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        self.deliver(cache, now);
        self.controller.handle_timeout(cache, now);
        self.submit_cloud_actions();
    }

    fn poll_timeout(&self) -> Option<Moment> {
        if !self.results.is_empty() {
            return Some(self.last_now);
        }
        let own = self.controller.poll_timeout();
        let poll = (self.cloud.in_flight() > 0).then_some(self.last_now + POLL_INTERVAL_MS);
        own.into_iter().chain(poll).min()
    }

    fn outbox(&mut self) -> &mut Outbox {
        self.controller.outbox()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        self.controller.handle_write_failed(action, error, now);
        self.submit_cloud_actions();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::fake::{Harness, object};
    use crate::{Key, Kind, Object};

    /// A cloud whose balancers the test can see after the harness took ownership.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<BTreeMap<String, lb::BalancerConfig>>>);

    impl Apply for Shared {
        fn apply(&mut self, action: &CloudAction) -> Result<(), String> {
            let mut m = self.0.lock().map_err(|e| e.to_string())?;
            match action {
                CloudAction::EnsureLoadBalancer { config, .. } => {
                    m.insert(config.name.clone(), config.clone())
                }
                CloudAction::DeleteLoadBalancer { name, .. } => m.remove(name),
            };
            Ok(())
        }
    }

    #[test]
    fn the_shared_harness_drives_controller_and_cloud() {
        let cloud = Shared::default();
        let pool = super::super::addresses::test_pool();
        let ctl = LoadBalancerController::new(super::super::addresses::Allocator::new(pool));
        let ctl = CloudDriven::new(ctl, Inline::new(cloud.clone()));
        let mut h = Harness::new(vec![Box::new(ctl)]);
        h.put(object(json!({"kind": "Node", "metadata": {"name": "a-1",
            "labels": {"topology.kubernetes.io/zone": "a"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.20.0.11"}]}})));
        h.start();
        h.put(object(
            json!({"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]}}),
        ));
        h.advance(Duration::ZERO);
        let balancers = cloud.0.lock().expect("lock").clone();
        assert_eq!(balancers.len(), 1);
        let b = balancers.values().next().expect("one");
        assert_eq!(b.target_groups[0].targets[0].port, 30080);
        let Some(Object::Service(s)) = h.api.get(Kind::Service, &Key::new("default", "web")) else {
            panic!("service gone");
        };
        let ingress = s.status.as_ref().and_then(|s| s.load_balancer.as_ref());
        let ip = ingress
            .and_then(|l| l.ingress.as_ref())
            .and_then(|i| i[0].ip.clone());
        assert_eq!(ip.as_deref(), Some("172.20.251.16"));
        assert_eq!(
            h.events.last().map(|e| e.reason),
            Some("SuccessfullyReconciled")
        );
    }
}
