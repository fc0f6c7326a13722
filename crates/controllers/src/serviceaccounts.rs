//! The serviceaccounts controller (upstream pkg/controller/serviceaccount
//! `ServiceAccountsController`): every active namespace has a `default` ServiceAccount;
//! created when the namespace appears and again when someone deletes it.
//!
//! Start at [`ServiceAccountsController`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::workloads::util::WorkQueue;
use crate::{Action, Cache, Change, Controller, Key, Moment, Object, WriteError};
use runtime::Outbox;

/// The accounts every namespace gets: upstream `DefaultServiceAccountsControllerOptions`
/// (`--service-account-names` is not a kube-controller-manager flag; the list is fixed).
pub const DEFAULT_SERVICE_ACCOUNTS: &[&str] = &["default"];

/// The serviceaccounts controller.
pub struct ServiceAccountsController {
    /// Namespaces due for a check (keyed by name, namespace field empty).
    queue: WorkQueue,
    /// Writes and Events for the driver to poll.
    out: Outbox,
}

impl Default for ServiceAccountsController {
    fn default() -> Self {
        ServiceAccountsController::new()
    }
}

fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Active")
}

impl ServiceAccountsController {
    pub fn new() -> ServiceAccountsController {
        // Upstream's queue uses the default controller rate limiter: 5 ms doubling to 1000 s.
        ServiceAccountsController {
            queue: WorkQueue::new(Duration::from_millis(5), Duration::from_secs(1_000)),
            out: Outbox::new(),
        }
    }

    /// Upstream `syncNamespace`: create the missing accounts of an active namespace.
    fn sync(&mut self, cache: &Cache, ns: &str) {
        let Some(namespace) = cache.namespaces.get(ns) else {
            self.queue.remove(&Key::new("", ns));
            return;
        };
        if !is_active(namespace) {
            return;
        }
        for name in DEFAULT_SERVICE_ACCOUNTS {
            if cache.service_accounts.contains_key(&Key::new(ns, name)) {
                continue;
            }
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some((*name).to_string()),
                    namespace: Some(ns.to_string()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            self.out
                .push_action(Action::Create(Object::ServiceAccount(Arc::new(sa))));
        }
    }
}

impl Controller for ServiceAccountsController {
    fn name(&self) -> &'static str {
        "serviceaccount"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        for ns in cache.namespaces.keys() {
            self.queue.add_at(Key::new("", ns), now);
        }
    }

    fn handle_change(&mut self, _cache: &Cache, change: &Change, now: Moment) {
        let ns = match change {
            Change::Applied {
                new: Object::Namespace(n),
                ..
            } => n.metadata.name.clone(),
            Change::Deleted(Object::ServiceAccount(sa))
                if DEFAULT_SERVICE_ACCOUNTS
                    .contains(&sa.metadata.name.as_deref().unwrap_or("")) =>
            {
                sa.metadata.namespace.clone()
            }
            _ => None,
        };
        if let Some(ns) = ns {
            self.queue.add_at(Key::new("", &ns), now);
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        for key in self.queue.pop_due(now) {
            self.sync(cache, &key.name);
        }
    }

    fn poll_timeout(&self) -> Option<Moment> {
        self.queue.next()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        let Action::Create(Object::ServiceAccount(sa)) = action else {
            return;
        };
        let ns = sa.metadata.namespace.clone().unwrap_or_default();
        match error {
            // Someone else made it, or the namespace is going away: nothing to do.
            WriteError::AlreadyExists | WriteError::NotFound => {}
            other => {
                tracing::warn!(
                    "serviceaccount: creating default ServiceAccount in {ns} failed: {other:?}; retrying"
                );
                self.queue.retry(Key::new("", &ns), now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Kind;
    use crate::fake::{Harness, object};

    fn namespace(name: &str, phase: &str) -> Object {
        object(json!({"kind": "Namespace", "metadata": {"name": name}, "status": {"phase": phase}}))
    }

    #[test]
    fn every_active_namespace_gets_a_default_account_again_after_a_delete() {
        let mut h = Harness::new(vec![Box::new(ServiceAccountsController::new())]);
        h.put(namespace("default", "Active"));
        h.start();
        h.advance(Duration::ZERO);
        let key = Key::new("default", "default");
        assert!(h.api.get(Kind::ServiceAccount, &key).is_some());
        h.put(namespace("team-a", "Active"));
        h.put(namespace("leaving", "Terminating"));
        h.advance(Duration::ZERO);
        assert!(
            h.api
                .get(Kind::ServiceAccount, &Key::new("team-a", "default"))
                .is_some()
        );
        assert!(
            h.api
                .get(Kind::ServiceAccount, &Key::new("leaving", "default"))
                .is_none()
        );
        h.remove(Kind::ServiceAccount, &key);
        assert!(h.api.get(Kind::ServiceAccount, &key).is_none());
        h.advance(Duration::ZERO);
        assert!(h.api.get(Kind::ServiceAccount, &key).is_some());
        assert_eq!(h.write_counts()["create ServiceAccount"], 3);
    }
}
