//! The cloud seam as the live loop sees it: a [`Cloud`] that applies a [`CloudAction`]
//! (quickly: write a file, send a signal) and [`CloudDriven`], which runs the
//! load-balancer controller with such a cloud as one more [`Controller`], so the live driver
//! and the virtual-time harness need no change.
//!
//! Start at [`CloudDriven`].

use super::{CloudAction, LoadBalancerController};
use crate::events::EventRecord;
use crate::{Action, Cache, Change, Controller, Millis, WriteError};

/// Applies balancer actions. `Err` carries the cloud's message (it becomes LBC's
/// `FailedDeployModel` Event and a retry with backoff).
pub trait Cloud: Send {
    fn apply(&mut self, action: &CloudAction) -> Result<(), String>;
}

/// The controller plus its cloud: cloud actions are applied as the driver drains the
/// controller's writes; their results go back to the controller at its next turn (it needs the
/// cache for its Events), which [`Controller::next_wakeup`] asks for right away.
pub struct CloudDriven<C: Cloud> {
    pub controller: LoadBalancerController,
    pub cloud: C,
    results: Vec<(CloudAction, Result<(), String>)>,
    last_now: Millis,
}

impl<C: Cloud> CloudDriven<C> {
    pub fn new(controller: LoadBalancerController, cloud: C) -> CloudDriven<C> {
        CloudDriven {
            controller,
            cloud,
            results: Vec::new(),
            last_now: 0,
        }
    }

    fn deliver(&mut self, cache: &Cache, now: Millis) {
        self.last_now = now;
        for (action, result) in std::mem::take(&mut self.results) {
            if let Err(e) = &result {
                tracing::warn!(service = %action.service(), "load balancer action failed: {e}");
            }
            self.controller.on_cloud_result(cache, &action, result, now);
        }
    }
}

impl<C: Cloud> Controller for CloudDriven<C> {
    fn name(&self) -> &'static str {
        self.controller.name()
    }

    fn on_synced(&mut self, cache: &Cache, now: Millis) {
        self.deliver(cache, now);
        self.controller.on_synced(cache, now);
    }

    fn on_change(&mut self, cache: &Cache, change: &Change, now: Millis) {
        self.deliver(cache, now);
        self.controller.on_change(cache, change, now);
    }

    fn on_tick(&mut self, cache: &Cache, now: Millis) {
        self.deliver(cache, now);
        self.controller.on_tick(cache, now);
    }

    fn next_wakeup(&self) -> Option<Millis> {
        if self.results.is_empty() {
            self.controller.next_wakeup()
        } else {
            Some(self.last_now)
        }
    }

    fn drain_actions(&mut self, out: &mut Vec<Action>) {
        self.controller.drain_actions(out);
        let mut cloud = Vec::new();
        self.controller.drain_cloud_actions(&mut cloud);
        for action in cloud {
            let result = self.cloud.apply(&action);
            self.results.push((action, result));
        }
    }

    fn drain_events(&mut self, out: &mut Vec<EventRecord>) {
        self.controller.drain_events(out);
    }

    fn on_write_failed(&mut self, action: &Action, error: &WriteError, now: Millis) {
        self.controller.on_write_failed(action, error, now);
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

    impl Cloud for Shared {
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
        let pool = netlab::topology::load_balancer_service_addresses();
        let ctl = LoadBalancerController::new(super::super::addresses::Allocator::new(pool));
        let ctl = CloudDriven::new(ctl, cloud.clone());
        let mut h = Harness::new(vec![Box::new(ctl)]);
        h.put(object(json!({"kind": "Node", "metadata": {"name": "a-1",
            "labels": {"topology.kubernetes.io/zone": "a"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.20.0.11"}]}})));
        h.start();
        h.put(object(
            json!({"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]}}),
        ));
        h.advance(0);
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
