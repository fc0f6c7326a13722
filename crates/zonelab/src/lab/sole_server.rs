//! Flags of the lab's sole API server (the embedded store, outside the zones): its
//! leader-election timers stay upstream's under every profile. Start at [`election_flags`].
//!
//! Why: with one server there is no other candidate, so the fast profile's 1.5 s / 1 s / 200 ms
//! (meant to make a zonal control plane fail over in seconds) buys nothing and only makes the
//! sole leader give up on itself when its own API answers a renewal late. At 150 nodes and
//! 1,500 pods on a shared 2-core machine (load average 50 - 100) that happened every few
//! seconds: `failed to renew lease kube-system/kube-controller-manager: stopping
//! kube-controller-manager controllers`, 14 times in 4 minutes, each restart dropping the
//! ReplicaSet controller's pod creations (`this instance is not the leader`) and the
//! scheduler's bindings, and re-running every controller's start-up (docs/performance.md,
//! "The 150-node lab").

/// Upstream's kube-controller-manager / kube-scheduler defaults (`--leader-elect-*`).
const UPSTREAM_TIMERS: [(&str, &str); 3] = [
    ("--leader-elect-lease-duration", "15s"),
    ("--leader-elect-renew-deadline", "10s"),
    ("--leader-elect-retry-period", "2s"),
];

/// The `--leader-elect-*` timer flags the sole server gets: upstream's values for each timer
/// that `flags` (the run's own server flags, `--name=value`) does not set already.
pub fn election_flags(flags: &[String]) -> Vec<String> {
    UPSTREAM_TIMERS
        .iter()
        .filter(|(name, _)| {
            !flags
                .iter()
                .any(|f| f == name || f.starts_with(&format!("{name}=")))
        })
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_timers_unless_the_run_sets_them() {
        assert_eq!(
            election_flags(&[]),
            [
                "--leader-elect-lease-duration=15s",
                "--leader-elect-renew-deadline=10s",
                "--leader-elect-retry-period=2s"
            ]
        );
        let own = ["--leader-elect-renew-deadline=3s".to_string()];
        assert_eq!(
            election_flags(&own),
            [
                "--leader-elect-lease-duration=15s",
                "--leader-elect-retry-period=2s"
            ]
        );
        // A flag with a similar prefix is not the timer.
        let other = ["--leader-elect-retry-period-x=1s".to_string()];
        assert_eq!(election_flags(&other).len(), 3);
    }
}
