//! Leader election of `zonelab server`'s controllers, as upstream's two binaries do it: Lease
//! `kube-system/kube-controller-manager` gates every controller but the scheduler, Lease
//! `kube-system/kube-scheduler` gates the scheduler. Flags are kube-controller-manager's.
//!
//! Start at [`spawn`]; the timers are resolved by crate `profile` ([`profile::election`]).

use controllers::Controller;
use controllers::leaderelection::{CONTROLLER_MANAGER_LEASE, ElectionConfig, SCHEDULER_LEASE};
use live::controllers::elected::{Elected, run_elected};
use live::controllers::fence::{self, Fence, user_agent};

use profile::ElectionTimers;

/// kube-controller-manager's leader election flags (component-base names and defaults).
#[derive(clap::Args, Clone, Debug)]
pub struct ElectionArgs {
    /// Elect a leader among the servers sharing a store before running the controllers and
    /// the scheduler (`--leader-elect=false` runs them at once) [upstream true].
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// The three election timers (crate `profile`: unset = upstream's under `--profile`).
    #[command(flatten)]
    pub flags: profile::ElectionFlags,
    /// Namespace of the election Leases.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// zonelab's own flag: this server's holder identity (default upstream's
    /// `<hostname>_<uuid>`); the lab names the zone with it.
    #[arg(long)]
    pub leader_elect_identity: Option<String>,
}

impl ElectionArgs {
    /// The identity: the flag, else upstream's `<hostname>_<uuid>`.
    pub fn identity(&self) -> String {
        if let Some(id) = &self.leader_elect_identity {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        format!("{host}_{}", apiserver::objects::new_uid(&mut rng))
    }

    /// The election config of Lease `name` with `timers` (the profile's, or the flags').
    fn election(&self, timers: &ElectionTimers, identity: &str, name: &str) -> ElectionConfig {
        let seed = rand::Rng::random(&mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng());
        timers.config(&self.leader_elect_resource_namespace, name, identity, seed)
    }

    /// Check the timers before anything starts (upstream's texts).
    pub fn validate(&self, timers: &ElectionTimers) -> anyhow::Result<()> {
        if self.leader_elect {
            let e = self.election(timers, "validate", CONTROLLER_MANAGER_LEASE);
            e.validate()
                .map_err(|err| anyhow::anyhow!("invalid --leader-elect-* flags: {err}"))?;
        }
        Ok(())
    }
}

/// The controllers' API clients: kube-controller-manager's user for every controller, and
/// kube-scheduler's for the scheduler (upstream's two binaries, two kubeconfigs).
#[derive(Clone)]
pub struct Clients {
    pub manager: kube::Config,
    pub scheduler: kube::Config,
}

/// Start the controllers against `clients`: behind leader election (two elections, as
/// kube-controller-manager and kube-scheduler), or at once with `--leader-elect=false`.
/// `build` makes a fresh set of every enabled controller (called again on each new term).
pub fn spawn(
    args: &ElectionArgs,
    timers: ElectionTimers,
    clients: Clients,
    build: impl Fn() -> Vec<Box<dyn Controller>> + Send + Sync + Clone + 'static,
) -> anyhow::Result<()> {
    let identity = args.identity();
    let is_scheduler = |c: &dyn Controller| c.name() == "scheduler";
    let b = build.clone();
    let managers = move || -> Vec<Box<dyn Controller>> {
        b().into_iter()
            .filter(|c| !is_scheduler(c.as_ref()))
            .collect()
    };
    let scheduler = move || -> Vec<Box<dyn Controller>> {
        build()
            .into_iter()
            .filter(|c| is_scheduler(c.as_ref()))
            .collect()
    };
    if !args.leader_elect {
        let groups = [
            ("kube-controller-manager", &clients.manager, managers()),
            ("kube-scheduler", &clients.scheduler, scheduler()),
        ];
        for (component, config, set) in groups {
            if set.is_empty() {
                continue;
            }
            let ua = user_agent(component, &identity, None);
            let client = fence::client(config, &ua, Fence::open())?;
            tokio::spawn(live::controllers::run(client, set));
        }
        return Ok(());
    }
    tracing::info!(identity, "leader election: identity {identity}");
    let groups: [(
        &str,
        &'static str,
        &'static str,
        live::controllers::elected::Build,
        kube::Config,
    ); 2] = [
        (
            CONTROLLER_MANAGER_LEASE,
            "kube-controller-manager",
            "kube-controller-manager",
            Box::new(managers),
            clients.manager,
        ),
        (
            SCHEDULER_LEASE,
            "kube-scheduler",
            "default-scheduler",
            Box::new(scheduler),
            clients.scheduler,
        ),
    ];
    for (lease, component, event_source, mut build, config) in groups {
        // A component with nothing enabled does not stand for election.
        if build().is_empty() {
            continue;
        }
        let elected = Elected {
            election: args.election(&timers, &identity, lease),
            component,
            event_source,
            build,
        };
        tokio::spawn(async move {
            if let Err(e) = run_elected(config, elected).await {
                tracing::error!("{component} leader election ended: {e}");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Profile;
    use clap::Parser;
    use std::time::Duration;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        e: ElectionArgs,
    }

    fn args(extra: &[&str]) -> ElectionArgs {
        let mut v = vec!["t"];
        v.extend(extra);
        T::parse_from(v).e
    }

    #[test]
    fn upstream_defaults_fast_profile_and_flags() {
        let a = args(&[]);
        assert!(a.leader_elect);
        assert_eq!(a.leader_elect_resource_namespace, "kube-system");
        let timers = |p: Profile| profile::election(p, &a.flags);
        let up = timers(Profile::Upstream);
        assert_eq!(
            (up.lease_duration, up.renew_deadline, up.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        let fast = timers(Profile::Fast);
        assert_eq!(fast.lease_duration, Duration::from_millis(1500));
        assert_eq!(fast.renew_deadline, Duration::from_secs(1));
        assert_eq!(fast.retry_period, Duration::from_millis(200));
        assert!(!args(&["--leader-elect=false"]).leader_elect);
        assert!(args(&["--leader-elect"]).leader_elect);
        let bad = args(&["--leader-elect-renew-deadline", "20s"]);
        let bad_timers = profile::election(Profile::Upstream, &bad.flags);
        let err = bad.validate(&bad_timers).unwrap_err().to_string();
        assert!(
            err.contains("leaseDuration must be greater than renewDeadline"),
            "{err}"
        );
        assert!(
            args(&[
                "--leader-elect=false",
                "--leader-elect-renew-deadline",
                "20s"
            ])
            .validate(&bad_timers)
            .is_ok()
        );
    }

    #[test]
    fn identity_is_the_flag_or_hostname_and_uuid() {
        assert_eq!(
            args(&["--leader-elect-identity", "zone-a"]).identity(),
            "zone-a"
        );
        let id = args(&[]).identity();
        let (host, uuid) = id.rsplit_once('_').expect("host_uuid");
        assert!(!host.is_empty());
        assert_eq!(uuid.len(), 36, "{id}");
        assert_ne!(id, args(&[]).identity(), "a fresh uuid per process");
    }
}
