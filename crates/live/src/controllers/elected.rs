//! The live driver of an elected component (kube-controller-manager, kube-scheduler): runs the
//! sans-IO [`LeaderElector`] against the API server and, only while it leads, a fresh set of
//! controllers with fresh informers (as a freshly started process would), behind the write
//! [`Fence`]. On losing the lease the controllers are stopped and the elector goes back to
//! candidate (upstream exits the process; here the API server shares it).
//!
//! Start at [`run_elected`].

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use tokio::task::JoinHandle;

use super::fence::{self, Fence, mono_clock, user_agent};
use super::{event_writer, wall_clock};
use controllers::Controller;
use controllers::events::{EventRecord, EventType, object_ref};
use controllers::leaderelection::{
    ElectionConfig, ElectionEvent, LeaderElector, LeaseRequest, LeaseResponse,
};

/// Builds the controllers a new term starts with.
pub type Build = Box<dyn FnMut() -> Vec<Box<dyn Controller>> + Send>;

/// One elected component.
pub struct Elected {
    pub election: ElectionConfig,
    /// `kube-controller-manager` or `kube-scheduler`: the User-Agent's first word.
    pub component: &'static str,
    /// `source.component` of its LeaderElection Events (upstream: `kube-controller-manager`,
    /// the scheduler's profile name `default-scheduler`).
    pub event_source: &'static str,
    pub build: Build,
}

/// Why an elected component could not start.
#[derive(Debug, thiserror::Error)]
pub enum ElectedError {
    #[error("invalid leader election configuration: {0}")]
    Config(#[from] controllers::leaderelection::ConfigError),
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
}

/// Run `elected` against the API server `config` points at, until the process ends.
pub async fn run_elected(config: kube::Config, mut elected: Elected) -> Result<(), ElectedError> {
    let cfg = elected.election.clone();
    let mut elector = LeaderElector::new(cfg.clone())?;
    let lease_client = fence::client(
        &config,
        &user_agent(elected.component, &cfg.identity, Some("leader-election")),
        Fence::open(),
    )?;
    let fence = Fence::closed();
    let client = fence::client(
        &config,
        &user_agent(elected.component, &cfg.identity, None),
        fence.clone(),
    )?;
    let leases: Api<Lease> = Api::namespaced(lease_client, &cfg.namespace);
    let timeout = cfg.renew_deadline_ms;
    let mut term: Option<Term> = None;
    tracing::info!(
        lease = cfg.describe(),
        identity = cfg.identity,
        "attempting to acquire leader lease {}...",
        cfg.describe()
    );
    loop {
        while let Some(req) = elector.poll_request(mono_clock(), wall_clock()) {
            let resp = send(&leases, &cfg.name, req, timeout).await;
            if let LeaseResponse::Failed(why) = &resp {
                tracing::warn!(
                    lease = cfg.describe(),
                    "leader election request failed: {why}"
                );
            }
            elector.handle_response(resp, mono_clock());
        }
        fence.set(elector.write_deadline());
        while let Some(ev) = elector.poll_event() {
            match ev {
                ElectionEvent::StartedLeading => {
                    tracing::info!("successfully acquired lease {}", cfg.describe());
                    term = Some(Term::start(&client, &mut elected, &elector));
                }
                ElectionEvent::StoppedLeading => {
                    tracing::warn!(
                        "failed to renew lease {}: stopping {} controllers",
                        cfg.describe(),
                        elected.component
                    );
                    term = None;
                }
                ElectionEvent::NewLeader(id) => {
                    tracing::info!(lease = cfg.describe(), "new leader elected: {id}");
                }
            }
        }
        let wake = elector
            .poll_timeout()
            .unwrap_or(mono_clock() + Duration::from_millis(1_000));
        let sleep_for = wake
            .saturating_since(mono_clock())
            .min(Duration::from_secs(60));
        tokio::time::sleep(sleep_for).await;
        // The term may have ended on its own (it never should): start afresh.
        if term.as_ref().is_some_and(|t| t.task.is_finished()) {
            tracing::warn!("{} controllers ended while leading", elected.component);
            term = None;
        }
    }
}

/// The controllers of one term as leader; dropping it stops them (and their informers).
struct Term {
    task: JoinHandle<()>,
}

impl Term {
    fn start(client: &kube::Client, elected: &mut Elected, elector: &LeaderElector) -> Term {
        let controllers = (elected.build)();
        let events = event_writer::spawn(client.clone(), Default::default());
        if let Some(lease) = elector.lease() {
            let id = &elector.config().identity;
            events.record(EventRecord::new(
                elected.event_source,
                object_ref("coordination.k8s.io/v1", "Lease", &lease.metadata),
                EventType::Normal,
                "LeaderElection",
                format!("{id} became leader"),
                wall_clock(),
            ));
        }
        let task = tokio::spawn(super::run(client.clone(), controllers));
        Term { task }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn send(api: &Api<Lease>, name: &str, req: LeaseRequest, timeout: Duration) -> LeaseResponse {
    let pp = PostParams::default();
    let call = async {
        match req {
            LeaseRequest::Get => api.get(name).await,
            LeaseRequest::Create(l) => api.create(&pp, &l).await,
            LeaseRequest::Update(l) => api.replace(name, &pp, &l).await,
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(lease)) => LeaseResponse::Ok(Box::new(lease)),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => LeaseResponse::NotFound,
        Ok(Err(kube::Error::Api(s))) if s.code == 409 => LeaseResponse::Conflict,
        Ok(Err(e)) => LeaseResponse::Failed(e.to_string()),
        Err(_) => LeaseResponse::Failed(format!("no answer within {timeout:?}")),
    }
}
