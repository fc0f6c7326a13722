//! The load-balancer controller, with the AWS Load Balancer Controller's service semantics
//! (controllers/service/service_controller.go): for every `type: LoadBalancer` Service it owns,
//! it adds the finalizer `service.k8s.aws/resources`, builds the balancer from the Service's
//! annotations, nodes and endpoints, asks the cloud seam to apply it, writes
//! `status.loadBalancer.ingress` and records LBC's Events; on deletion it tears the balancer
//! down, then clears the status and removes the finalizer.
//!
//! Start at [`LoadBalancerController`]; the cloud seam is [`CloudAction`] out and
//! [`LoadBalancerController::on_cloud_result`] back. The model is built in [`model::build`]
//! from [`annotations::Template`]; addresses come from [`addresses::Allocator`].

pub mod addresses;
pub mod annotations;
pub mod cloud;
pub mod model;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Node, Service};
use lb::BalancerConfig;

use crate::events::{EventRecord, EventType, object_ref};
use crate::workloads::util::WorkQueue;
use crate::{Action, Cache, Change, Controller, Key, Moment, Object, WriteError};
use runtime::Outbox;

use addresses::Allocator;
use annotations::Template;

/// LBC's Service finalizer (`serviceFinalizer`).
pub const FINALIZER: &str = "service.k8s.aws/resources";
/// LBC's `--load-balancer-class` default. Services with this class are ours, and so are
/// Services without a class: LBC's service mutator webhook (Helm value
/// `enableServiceMutatorWebhook`, on by default) gives new LoadBalancer Services this class,
/// and the lab has no in-tree cloud provider to leave them to. Any other class belongs to someone else.
pub const LOAD_BALANCER_CLASS: &str = "service.k8s.aws/nlb";
/// The Events' source component: LBC records with `mgr.GetEventRecorderFor("service")`.
pub const COMPONENT: &str = "service";
/// `ipMode` written on every ingress point: traffic to the address really goes through the
/// balancer (kube-proxy does not short-circuit it, KEP-1860), as with LBC's DNS-name ingress.
pub const IP_MODE: &str = "Proxy";

/// LBC's Service Event reasons (pkg/k8s/events.go).
pub mod reason {
    pub const SUCCESSFULLY_RECONCILED: &str = "SuccessfullyReconciled";
    pub const FAILED_BUILD_MODEL: &str = "FailedBuildModel";
    pub const FAILED_DEPLOY_MODEL: &str = "FailedDeployModel";
    pub const FAILED_ADD_FINALIZER: &str = "FailedAddFinalizer";
    pub const FAILED_REMOVE_FINALIZER: &str = "FailedRemoveFinalizer";
    pub const FAILED_UPDATE_STATUS: &str = "FailedUpdateStatus";
    pub const FAILED_CLEANUP_STATUS: &str = "FailedCleanupStatus";
}

/// What the controller asks of the cloud (the balancer's driver): both are idempotent. The
/// driver answers every action with [`LoadBalancerController::on_cloud_result`].
#[derive(Clone, Debug, PartialEq)]
pub enum CloudAction {
    /// Create the balancer `config.name` or bring it to `config` (a validated configuration).
    EnsureLoadBalancer {
        service: Key,
        config: BalancerConfig,
    },
    /// Remove the balancer `name` if it exists.
    DeleteLoadBalancer { service: Key, name: String },
}

impl CloudAction {
    pub fn service(&self) -> &Key {
        match self {
            CloudAction::EnsureLoadBalancer { service, .. }
            | CloudAction::DeleteLoadBalancer { service, .. } => service,
        }
    }
}

/// The load-balancer controller.
pub struct LoadBalancerController {
    queue: WorkQueue,
    /// What the cloud confirmed, per Service.
    applied: BTreeMap<Key, BalancerConfig>,
    /// One unanswered cloud action per Service at most; its answer requeues the Service.
    in_flight: BTreeMap<Key, CloudAction>,
    /// Services whose balancer the cloud confirmed gone (status and finalizer still to clean).
    torn_down: BTreeSet<Key>,
    /// Services whose new configuration was applied and not yet announced.
    announce: BTreeSet<Key>,
    allocator: Allocator,
    /// Health-check intervals and timeouts and deregistration delays are divided by this
    /// (the lab's `fast` profile: 10; annotations included, as every other timer).
    time_divisor: u32,
    /// Writes and Events for the driver to poll.
    out: Outbox,
    cloud: Vec<CloudAction>,
}

fn has_finalizer(svc: &Service) -> bool {
    svc.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// LBC `IsServiceSupported`: not being deleted, `type: LoadBalancer`, and our class (or none).
pub fn is_supported(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    svc.metadata.deletion_timestamp.is_none()
        && spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec
            .and_then(|s| s.load_balancer_class.as_deref())
            .is_none_or(|c| c == LOAD_BALANCER_CLASS)
}

fn ingress_ips(svc: &Service) -> Vec<std::net::Ipv4Addr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

fn ingress_of(config: &BalancerConfig) -> Vec<LoadBalancerIngress> {
    config
        .nodes
        .iter()
        .map(|n| LoadBalancerIngress {
            ip: Some(n.address.to_string()),
            ip_mode: Some(IP_MODE.to_string()),
            ..LoadBalancerIngress::default()
        })
        .collect()
}

fn current_ingress(svc: &Service) -> Vec<LoadBalancerIngress> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.clone())
        .unwrap_or_default()
}

fn with_ingress(svc: &Service, ingress: Vec<LoadBalancerIngress>) -> Object {
    let mut s = svc.clone();
    s.status.get_or_insert_with(Default::default).load_balancer = Some(LoadBalancerStatus {
        ingress: (!ingress.is_empty()).then_some(ingress),
    });
    Object::Service(Arc::new(s))
}

fn with_finalizer(svc: &Service, present: bool) -> Object {
    let mut s = svc.clone();
    let f = s.metadata.finalizers.get_or_insert_with(Vec::new);
    f.retain(|x| x != FINALIZER);
    if present {
        f.push(FINALIZER.to_string());
    }
    Object::Service(Arc::new(s))
}

/// What of a node the balancers depend on: eligibility, address, zone, zonal shift.
fn node_view(n: &Node) -> (bool, Option<std::net::Ipv4Addr>, Option<String>, bool) {
    let zone = runtime::labels::node_zone(n).map(str::to_string);
    let shifted = crate::zonalshift::is_shifted(n);
    (
        model::node_is_eligible(n),
        model::internal_ip(n),
        zone,
        shifted,
    )
}

impl LoadBalancerController {
    /// A controller handing out LB node addresses from `allocator`.
    pub fn new(allocator: Allocator) -> LoadBalancerController {
        LoadBalancerController {
            // controller-runtime's default rate limiter: 5 ms doubling to 1000 s.
            queue: WorkQueue::new(Duration::from_millis(5), Duration::from_secs(1_000)),
            applied: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            torn_down: BTreeSet::new(),
            announce: BTreeSet::new(),
            allocator,
            time_divisor: 1,
            out: Outbox::new(),
            cloud: Vec::new(),
        }
    }

    /// Divide every balancer timer by `divisor` (at least 1): the lab's timer profile.
    pub fn with_time_divisor(mut self, divisor: u32) -> LoadBalancerController {
        self.time_divisor = divisor.max(1);
        self
    }

    /// Move the cloud actions asked for since the last call into `out`.
    pub fn drain_cloud_actions(&mut self, out: &mut Vec<CloudAction>) {
        out.append(&mut self.cloud);
    }

    /// What the cloud confirmed for `svc` (tests, status pages).
    pub fn applied(&self, svc: &Key) -> Option<&BalancerConfig> {
        self.applied.get(svc)
    }

    /// The driver's answer to a [`CloudAction`]: `Err` is the cloud's message, reported as
    /// LBC's `FailedDeployModel` and retried with backoff.
    pub fn on_cloud_result(
        &mut self,
        cache: &Cache,
        action: &CloudAction,
        result: Result<(), String>,
        now: Moment,
    ) {
        let key = action.service().clone();
        self.in_flight.remove(&key);
        match (action, result) {
            (CloudAction::EnsureLoadBalancer { config, .. }, Ok(())) => {
                self.applied.insert(key.clone(), config.clone());
                self.announce.insert(key.clone());
                self.queue.add_at(key, now);
            }
            (CloudAction::DeleteLoadBalancer { .. }, Ok(())) => {
                self.applied.remove(&key);
                self.allocator.release(&key);
                self.torn_down.insert(key.clone());
                self.queue.add_at(key, now);
            }
            (_, Err(e)) => {
                let msg = format!("Failed deploy model due to {e}");
                self.warn(cache, &key, reason::FAILED_DEPLOY_MODEL, msg, now);
                self.queue.retry(key, now);
            }
        }
    }

    fn record(
        &mut self,
        svc: &Service,
        type_: EventType,
        why: &'static str,
        msg: String,
        at: Moment,
    ) {
        let involved = object_ref("v1", "Service", &svc.metadata);
        self.out
            .push_event(EventRecord::new(COMPONENT, involved, type_, why, msg, at));
    }

    fn warn(&mut self, cache: &Cache, key: &Key, why: &'static str, msg: String, at: Moment) {
        if let Some(svc) = cache.services.get(key).cloned() {
            self.record(&svc, EventType::Warning, why, msg, at);
        }
    }

    fn send(&mut self, action: CloudAction) {
        self.in_flight
            .insert(action.service().clone(), action.clone());
        self.cloud.push(action);
    }

    /// One reconcile of `key` (LBC `reconcile`): ensure or clean up.
    fn sync(&mut self, cache: &Cache, key: &Key, now: Moment) {
        if self.in_flight.contains_key(key) {
            return;
        }
        let Some(svc) = cache.services.get(key).cloned() else {
            // Gone without our finalizer (or after it): make sure nothing is left behind.
            if let Some(config) = self.applied.get(key) {
                let name = config.name.clone();
                self.send(CloudAction::DeleteLoadBalancer {
                    service: key.clone(),
                    name,
                });
            } else {
                self.allocator.release(key);
                self.torn_down.remove(key);
                self.announce.remove(key);
                self.queue.remove(key);
            }
            return;
        };
        if is_supported(&svc) {
            self.torn_down.remove(key);
            self.reconcile(cache, key, &svc, now);
        } else if has_finalizer(&svc) || self.applied.contains_key(key) {
            self.cleanup(key, &svc);
        } else {
            // Never deployed (e.g. its type changed before the finalizer went on).
            self.allocator.release(key);
        }
    }

    /// LBC `reconcile`: build the model (a Service it cannot build gets no finalizer), then
    /// `reconcileLoadBalancerResources`: the finalizer, the balancer, the status.
    fn reconcile(&mut self, cache: &Cache, key: &Key, svc: &Service, now: Moment) {
        let config = match self.desired(cache, key, svc) {
            Ok(c) => c,
            Err((why, msg)) => {
                self.record(svc, EventType::Warning, why, msg, now);
                self.queue.retry(key.clone(), now);
                return;
            }
        };
        if !has_finalizer(svc) {
            self.out
                .push_action(Action::Update(with_finalizer(svc, true)));
            return;
        }
        if self.applied.get(key) != Some(&config) {
            self.send(CloudAction::EnsureLoadBalancer {
                service: key.clone(),
                config,
            });
            return;
        }
        let ingress = ingress_of(&config);
        if current_ingress(svc) != ingress {
            self.out
                .push_action(Action::UpdateStatus(with_ingress(svc, ingress)));
            return;
        }
        self.queue.forget(key);
        if self.announce.remove(key) {
            let msg = "Successfully reconciled".to_string();
            self.record(
                svc,
                EventType::Normal,
                reason::SUCCESSFULLY_RECONCILED,
                msg,
                now,
            );
        }
    }

    /// The validated configuration for `svc`, committing its addresses only on success.
    fn desired(
        &mut self,
        cache: &Cache,
        key: &Key,
        svc: &Service,
    ) -> Result<BalancerConfig, (&'static str, String)> {
        let build = |e: annotations::BuildError| {
            (
                reason::FAILED_BUILD_MODEL,
                format!("Failed build model due to {e}"),
            )
        };
        let tmpl = Template::from_service(svc).map_err(build)?;
        let mut allocator = self.allocator.clone();
        let deploy = |e: String| {
            (
                reason::FAILED_DEPLOY_MODEL,
                format!("Failed deploy model due to {e}"),
            )
        };
        let addresses = allocator
            .ensure(key, &model::zones(cache))
            .map_err(|e| deploy(e.to_string()))?;
        let mut config = model::build(cache, svc, &tmpl, &addresses).map_err(build)?;
        for g in &mut config.target_groups {
            g.health_check.interval /= self.time_divisor;
            g.health_check.timeout /= self.time_divisor;
            g.deregistration_delay /= self.time_divisor;
        }
        // Names are 28 bits of a hash: a second Service must not take over the first's balancer.
        let taken = self
            .applied
            .iter()
            .find(|(k, c)| *k != key && c.name == config.name);
        if let Some((other, _)) = taken {
            let msg = format!("balancer name {} is already used for {other}", config.name);
            return Err(deploy(format!("DuplicateLoadBalancerName: {msg}")));
        }
        // ELBv2 rejects what the balancer cannot run (CreateTargetGroup's ValidationError).
        config
            .validate()
            .map_err(|e| deploy(format!("ValidationError: {e}")))?;
        self.allocator = allocator;
        Ok(config)
    }

    /// LBC `cleanupLoadBalancerResources`: delete the balancer, then clear the status, then
    /// remove the finalizer (each step once the previous one is confirmed).
    fn cleanup(&mut self, key: &Key, svc: &Service) {
        if !self.torn_down.contains(key) {
            let name = self
                .applied
                .get(key)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| model::balancer_name(key));
            self.send(CloudAction::DeleteLoadBalancer {
                service: key.clone(),
                name,
            });
            return;
        }
        if !current_ingress(svc).is_empty() {
            self.out
                .push_action(Action::UpdateStatus(with_ingress(svc, Vec::new())));
            return;
        }
        if has_finalizer(svc) {
            self.out
                .push_action(Action::Update(with_finalizer(svc, false)));
        }
    }

    /// Every Service a node change can move: ours, or one with a balancer.
    fn enqueue_balanced(&mut self, cache: &Cache, now: Moment) {
        let keys: BTreeSet<Key> = cache
            .services
            .iter()
            .filter(|(_, s)| is_supported(s))
            .map(|(k, _)| k.clone())
            .chain(self.applied.keys().cloned())
            .collect();
        for k in keys {
            self.queue.add_at(k, now);
        }
    }
}

impl Controller for LoadBalancerController {
    fn name(&self) -> &'static str {
        "loadbalancer"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        let zones = model::zones(cache);
        for (key, svc) in &cache.services {
            // A Service being torn down keeps its addresses until its balancer is gone.
            if is_supported(svc) || has_finalizer(svc) {
                self.allocator.adopt(key, &zones, &ingress_ips(svc));
                self.queue.add_at(key.clone(), now);
            }
        }
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        match change {
            Change::Applied {
                new: Object::Service(s),
                ..
            }
            | Change::Deleted(Object::Service(s)) => {
                self.queue.add_at(Key::of(&s.metadata), now);
            }
            Change::Applied {
                new: Object::Node(n),
                old,
            } => {
                let moved = match old {
                    Some(Object::Node(o)) => node_view(o) != node_view(n),
                    _ => true,
                };
                if moved {
                    self.enqueue_balanced(cache, now);
                }
            }
            Change::Deleted(Object::Node(_)) => self.enqueue_balanced(cache, now),
            Change::Applied {
                new: Object::EndpointSlice(s),
                ..
            }
            | Change::Deleted(Object::EndpointSlice(s)) => {
                let svc = s
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(runtime::labels::SERVICE_NAME_LABEL));
                if let Some(name) = svc {
                    let ns = s.metadata.namespace.as_deref().unwrap_or("");
                    self.queue.add_at(Key::new(ns, name), now);
                }
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        for key in self.queue.pop_due(now) {
            self.sync(cache, &key, now);
        }
    }

    fn poll_timeout(&self) -> Option<Moment> {
        self.queue.next()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        let (obj, status) = match action {
            Action::Update(o @ Object::Service(_)) => (o, false),
            Action::UpdateStatus(o @ Object::Service(_)) => (o, true),
            _ => return,
        };
        let Object::Service(svc) = obj else { return };
        let key = Key::of(&svc.metadata);
        match error {
            WriteError::NotFound => {}
            WriteError::Conflict => self.queue.retry(key, now),
            other => {
                let why = match (status, has_finalizer(svc)) {
                    (true, _) if current_ingress(svc).is_empty() => reason::FAILED_CLEANUP_STATUS,
                    (true, _) => reason::FAILED_UPDATE_STATUS,
                    (false, true) => reason::FAILED_ADD_FINALIZER,
                    (false, false) => reason::FAILED_REMOVE_FINALIZER,
                };
                let what = match why {
                    reason::FAILED_CLEANUP_STATUS | reason::FAILED_UPDATE_STATUS => "update status",
                    reason::FAILED_ADD_FINALIZER => "add finalizer",
                    _ => "remove finalizer",
                };
                let msg = format!("Failed {what} due to {other:?}");
                self.record(svc, EventType::Warning, why, msg, now);
                self.queue.retry(key, now);
            }
        }
    }
}
