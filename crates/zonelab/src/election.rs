//! Leader election of `zonelab server`'s controllers, as upstream's two binaries do it: Lease
//! `kube-system/kube-controller-manager` gates every controller but the scheduler, Lease
//! `kube-system/kube-scheduler` gates the scheduler. Flags are kube-controller-manager's.
//!
//! Start at [`spawn`]; flag resolution is [`ElectionArgs::timers`].

use std::time::Duration;

use controllers::Controller;
use controllers::leaderelection::{
    CONTROLLER_MANAGER_LEASE, DEFAULT_LEASE_DURATION_MS, DEFAULT_RENEW_DEADLINE_MS,
    DEFAULT_RETRY_PERIOD_MS, ElectionConfig, SCHEDULER_LEASE,
};
use live::controllers::elected::{Elected, run_elected};
use live::controllers::fence::{self, Fence, user_agent};

use crate::flags::{Profile, parse_duration};

/// kube-controller-manager's leader election flags (component-base names and defaults).
#[derive(clap::Args, Clone, Debug)]
pub struct ElectionArgs {
    /// Elect a leader among the servers sharing a store before running the controllers and
    /// the scheduler (`--leader-elect=false` runs them at once) [upstream true].
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a candidate waits after the last observed renew before taking over [upstream
    /// 15s; fast 1.5s: the Lease says 1 (whole seconds, truncated), candidates wait 1.5s].
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_lease_duration: Option<Duration>,
    /// How long the leader keeps trying to renew before giving up [upstream 10s; fast 1s].
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Option<Duration>,
    /// How often candidates try to acquire and the leader renews [upstream 2s; fast 200ms].
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_retry_period: Option<Duration>,
    /// Namespace of the election Leases.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// zonelab's own flag: this server's holder identity (default upstream's
    /// `<hostname>_<uuid>`); the lab names the zone with it.
    #[arg(long)]
    pub leader_elect_identity: Option<String>,
}

/// The three election timers after the profile and explicit flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionTimers {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl ElectionArgs {
    /// Upstream defaults scaled by `profile`, overridden by explicit flags.
    pub fn timers(&self, profile: Profile) -> ElectionTimers {
        let ms = |v: i64| profile.duration(Duration::from_millis(v as u64));
        ElectionTimers {
            lease_duration: self
                .leader_elect_lease_duration
                .unwrap_or(ms(DEFAULT_LEASE_DURATION_MS)),
            renew_deadline: self
                .leader_elect_renew_deadline
                .unwrap_or(ms(DEFAULT_RENEW_DEADLINE_MS)),
            retry_period: self
                .leader_elect_retry_period
                .unwrap_or(ms(DEFAULT_RETRY_PERIOD_MS)),
        }
    }

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

    /// The election config of Lease `name`.
    fn election(&self, profile: Profile, identity: &str, name: &str) -> ElectionConfig {
        let t = self.timers(profile);
        ElectionConfig {
            namespace: self.leader_elect_resource_namespace.clone(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration_ms: t.lease_duration.as_millis() as i64,
            renew_deadline_ms: t.renew_deadline.as_millis() as i64,
            retry_period_ms: t.retry_period.as_millis() as i64,
            seed: rand::Rng::random(&mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng()),
        }
    }

    /// Check the timers before anything starts (upstream's texts).
    pub fn validate(&self, profile: Profile) -> anyhow::Result<()> {
        if self.leader_elect {
            let e = self.election(profile, "validate", CONTROLLER_MANAGER_LEASE);
            e.validate()
                .map_err(|err| anyhow::anyhow!("invalid --leader-elect-* flags: {err}"))?;
        }
        Ok(())
    }
}

/// Start the controllers against `config`: behind leader election (two elections, as
/// kube-controller-manager and kube-scheduler), or at once with `--leader-elect=false`.
/// `build` makes a fresh set of every enabled controller (called again on each new term).
pub fn spawn(
    args: &ElectionArgs,
    profile: Profile,
    config: kube::Config,
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
        let ua = user_agent("kube-controller-manager", &identity, None);
        let client = fence::client(&config, &ua, Fence::open())?;
        let all: Vec<Box<dyn Controller>> = managers().into_iter().chain(scheduler()).collect();
        if !all.is_empty() {
            tokio::spawn(live::controllers::run(client, all));
        }
        return Ok(());
    }
    tracing::info!(identity, "leader election: identity {identity}");
    let groups: [(
        &str,
        &'static str,
        &'static str,
        live::controllers::elected::Build,
    ); 2] = [
        (
            CONTROLLER_MANAGER_LEASE,
            "kube-controller-manager",
            "kube-controller-manager",
            Box::new(managers),
        ),
        (
            SCHEDULER_LEASE,
            "kube-scheduler",
            "default-scheduler",
            Box::new(scheduler),
        ),
    ];
    for (lease, component, event_source, mut build) in groups {
        // A component with nothing enabled does not stand for election.
        if build().is_empty() {
            continue;
        }
        let elected = Elected {
            election: args.election(profile, &identity, lease),
            component,
            event_source,
            build,
        };
        let config = config.clone();
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
    use clap::Parser;

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
        let up = a.timers(Profile::Upstream);
        assert_eq!(
            (up.lease_duration, up.renew_deadline, up.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        let fast = a.timers(Profile::Fast);
        assert_eq!(fast.lease_duration, Duration::from_millis(1500));
        assert_eq!(fast.renew_deadline, Duration::from_secs(1));
        assert_eq!(fast.retry_period, Duration::from_millis(200));
        assert!(!args(&["--leader-elect=false"]).leader_elect);
        assert!(args(&["--leader-elect"]).leader_elect);
        let bad = args(&["--leader-elect-renew-deadline", "20s"]);
        let err = bad.validate(Profile::Upstream).unwrap_err().to_string();
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
            .validate(Profile::Upstream)
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
