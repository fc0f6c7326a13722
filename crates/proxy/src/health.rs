//! kube-proxy's `/healthz` state, sans-IO (time passed in), with upstream's semantics
//! (pkg/proxy/healthcheck/proxier_health.go): healthy while nothing is queued or the oldest
//! queued update is younger than the health timeout (2 x `--sync-period`, as
//! cmd/kube-proxy sets it); a successful sync clears the queue. Beyond upstream it remembers
//! whether any sync ever succeeded and the last sync error, so a lab can wait for a proxy that
//! really programmed its rules and say why one did not.
//!
//! Start at [`ProxyHealth::check`].

use std::time::Duration;

use crate::model::Moment;

/// Tracks queued updates and sync outcomes.
#[derive(Debug, Clone)]
pub struct ProxyHealth {
    timeout_ms: Duration,
    last_updated: Option<Moment>,
    oldest_pending_queued: Option<Moment>,
    last_error: Option<String>,
}

/// What `/healthz` answers at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// 200 when true, 503 otherwise.
    pub healthy: bool,
    /// Upstream's `lastUpdated`: `current_time` when healthy (upstream's compatibility rule),
    /// else the last successful sync (None: never).
    pub last_updated: Option<Moment>,
    pub current_time: Moment,
    /// A sync has succeeded since start (rules are programmed).
    pub synced: bool,
    /// The error of the latest sync attempt, if it failed.
    pub last_error: Option<String>,
}

impl ProxyHealth {
    /// Health timeout = 2 x `sync_period_ms` (cmd/kube-proxy/app/server.go passes
    /// `2*config.SyncPeriod.Duration` to NewProxierHealthServer).
    pub fn new(sync_period_ms: Duration) -> ProxyHealth {
        ProxyHealth {
            timeout_ms: 2 * sync_period_ms,
            last_updated: None,
            oldest_pending_queued: None,
            last_error: None,
        }
    }

    /// A Service or EndpointSlice change (or the initial sync) awaits programming
    /// (upstream `QueuedUpdate`: keeps the oldest).
    pub fn queued_update(&mut self, now: Moment) {
        self.oldest_pending_queued.get_or_insert(now);
    }

    /// The rules reflect the current state (upstream `Updated`).
    pub fn updated(&mut self, now: Moment) {
        self.oldest_pending_queued = None;
        self.last_updated = Some(now);
        self.last_error = None;
    }

    /// A sync attempt failed: what was queued stays queued.
    pub fn sync_failed(&mut self, now: Moment, error: impl Into<String>) {
        self.queued_update(now);
        self.last_error = Some(error.into());
    }

    /// The answer of `/healthz` at `now`.
    pub fn check(&self, now: Moment) -> HealthReport {
        let healthy = self
            .oldest_pending_queued
            .is_none_or(|q| now < q + self.timeout_ms);
        HealthReport {
            healthy,
            last_updated: if healthy {
                Some(now)
            } else {
                self.last_updated
            },
            current_time: now,
            synced: self.last_updated.is_some(),
            last_error: self.last_error.clone(),
        }
    }
}

impl HealthReport {
    /// HTTP status of `/healthz`.
    pub fn status_code(&self) -> u16 {
        if self.healthy { 200 } else { 503 }
    }

    /// The JSON body: upstream's `lastUpdated`/`currentTime` (RFC 3339), plus `synced` and
    /// `lastError`.
    pub fn body(&self) -> String {
        let time = |ms: Moment| {
            k8s_openapi::jiff::Timestamp::from_millisecond(ms.as_millis())
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        serde_json::json!({
            "lastUpdated": self.last_updated.map(time).unwrap_or_else(|| time(Moment::EPOCH)),
            "currentTime": time(self.current_time),
            "synced": self.synced,
            "lastError": self.last_error,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_until_a_queued_update_is_late() {
        let mut h = ProxyHealth::new(Duration::from_millis(3_000));
        // Starting up with nothing queued: healthy, but nothing programmed yet.
        let r = h.check(Moment::from_millis(1_000));
        assert!(r.healthy && !r.synced);
        h.queued_update(Moment::from_millis(1_000));
        h.queued_update(Moment::from_millis(2_000)); // the oldest counts
        assert!(h.check(Moment::from_millis(6_999)).healthy);
        let late = h.check(Moment::from_millis(7_000));
        assert!(!late.healthy);
        assert_eq!(late.status_code(), 503);
        assert_eq!(late.last_updated, None);
        h.updated(Moment::from_millis(7_100));
        let r = h.check(Moment::from_millis(50_000));
        assert!(r.healthy && r.synced);
        assert_eq!(r.last_updated, Some(Moment::from_millis(50_000)));
    }

    #[test]
    fn failing_syncs_turn_unhealthy_and_say_why() {
        let mut h = ProxyHealth::new(Duration::from_millis(1_000));
        h.updated(Moment::from_millis(500));
        h.queued_update(Moment::from_millis(1_000));
        h.sync_failed(
            Moment::from_millis(1_100),
            "could not run nft: No such file or directory",
        );
        h.sync_failed(
            Moment::from_millis(2_500),
            "could not run nft: No such file or directory",
        );
        let r = h.check(Moment::from_millis(3_000));
        assert!(!r.healthy);
        assert_eq!(r.last_updated, Some(Moment::from_millis(500)));
        assert_eq!(
            r.last_error.as_deref(),
            Some("could not run nft: No such file or directory")
        );
        let body: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(body["lastUpdated"], "1970-01-01T00:00:00.5Z");
        assert_eq!(body["synced"], true);
        assert!(
            body["lastError"]
                .as_str()
                .unwrap()
                .contains("could not run nft")
        );
        // A success clears the queue and the error.
        h.updated(Moment::from_millis(3_100));
        let r = h.check(Moment::from_millis(3_200));
        assert!(r.healthy && r.last_error.is_none());
    }
}
