//! [`EtcdStore`]: the store on a real etcd v3 cluster over its gRPC API; start at
//! [`EtcdStore::connect`].
//!
//! The mapping is one to one, as upstream's apiserver does it: a store revision is etcd's
//! revision (`resourceVersion` = `mod_revision`); `Create` is a transaction comparing
//! `create_revision == 0`, `Update`/`Delete` compare `create_revision > 0` and, with `expected`,
//! `mod_revision == expected`; the failure branch reads every key so the error names the first
//! failing op with the revision etcd holds. Lists read at one revision with etcd's limit and
//! count (`remaining` = count − returned). Watches are etcd watches from `after + 1` with
//! `prev_kv`; a compacted revision is [`StoreError::Compacted`]. A compactor compacts every
//! interval as upstream's (see [`compact`]).
//!
//! Unavailability: every call is bounded by a per-request timeout ([`StoreError::Timeout`]); an
//! unreachable cluster is [`StoreError::Unavailable`]. Nothing is retried behind the caller's
//! back once it may have reached etcd. A watch whose stream breaks ends with
//! [`WatchError::Unavailable`]; the caller re-watches (or relists) once etcd answers again.
//!
//! Modules: `transport` (gRPC over HTTP/2, failover, timeouts), `proto` (the messages), `keys`
//! (store keys ↔ etcd keys under `--etcd-prefix`), `txn` (transactions), `watch` (watch
//! streams), `progress` (when a watch may report progress), `compact` (the compactor).
//!
//! [`WatchError::Unavailable`]: crate::WatchError::Unavailable

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    DEFAULT_WATCHER_CAPACITY, KeyValue, ListOptions, ListResult, Op, Revision, Store, StoreError,
    Watcher,
};

mod compact;
mod keys;
mod progress;
mod proto;
mod transport;
mod txn;
mod watch;

use keys::Keys;
use proto::{RangeRequest, RangeResponse, TxnResponse, header_rev};
use transport::{
    CODE_DEADLINE_EXCEEDED, CODE_OUT_OF_RANGE, CODE_UNAVAILABLE, CallError, Transport,
};

pub use compact::COMPACT_REV_KEY;

/// Upstream's `--etcd-prefix` default.
pub const DEFAULT_ETCD_PREFIX: &str = "/registry";
/// Upstream's `--etcd-compaction-interval` default.
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(300);
/// Bound on one etcd request (failover included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on connecting to one endpoint.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstream's `--etcd-healthcheck-timeout` default.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// How to reach and use an etcd cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs (`http://host:port`), tried in order with failover.
    pub endpoints: Vec<String>,
    /// Every store key starts with this; it is replaced by `prefix` in etcd. The API server's
    /// keys start with `/registry`; `""` stores keys under `prefix` unchanged.
    pub root: String,
    /// What `root` becomes in etcd (upstream's `--etcd-prefix`).
    pub prefix: String,
    pub request_timeout: Duration,
    pub dial_timeout: Duration,
    /// Bound on [`Store::health`].
    pub health_timeout: Duration,
    /// Upstream's `--etcd-compaction-interval`; zero disables compaction.
    pub compaction_interval: Duration,
    /// Messages a watcher may fall behind before it is dropped with `TooSlow`.
    pub watcher_capacity: usize,
}

impl EtcdOptions {
    /// Defaults for the API server's keys (`/registry/...` stored under `/registry`).
    pub fn new(endpoints: Vec<String>) -> EtcdOptions {
        EtcdOptions {
            endpoints,
            root: DEFAULT_ETCD_PREFIX.to_string(),
            prefix: DEFAULT_ETCD_PREFIX.to_string(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            compaction_interval: DEFAULT_COMPACTION_INTERVAL,
            watcher_capacity: DEFAULT_WATCHER_CAPACITY,
        }
    }

    /// Parses upstream's `--etcd-servers` value (comma-separated URLs).
    pub fn parse_servers(servers: &str) -> Result<Vec<String>, StoreError> {
        let urls: Vec<String> = servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if urls.is_empty() {
            return Err(StoreError::Invalid(
                "--etcd-servers must name at least one URL".into(),
            ));
        }
        for url in &urls {
            transport::parse_endpoint(url).map_err(StoreError::Invalid)?;
        }
        Ok(urls)
    }
}

/// One member's answer to a Maintenance Status call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The endpoint asked (`host:port`).
    pub endpoint: String,
    pub member_id: u64,
    /// The member id of the leader this member knows (0: none).
    pub leader: u64,
    pub raft_term: u64,
    pub version: String,
}

/// State shared by the store, its watch tasks and its compactor.
pub(crate) struct Shared {
    pub(crate) transport: Transport,
    pub(crate) keys: Keys,
    /// The highest revision seen in any response header.
    revision: tokio::sync::watch::Sender<Revision>,
    /// The highest revision known to be compacted.
    compacted: AtomicU64,
    /// Bumped by every `request_progress`; each watch task sends a progress request on change.
    pub(crate) progress: tokio::sync::watch::Sender<u64>,
    pub(crate) watcher_capacity: usize,
}

impl Shared {
    pub(crate) fn observe(&self, revision: Revision) {
        self.revision.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    pub(crate) fn observe_compacted(&self, revision: Revision) {
        self.compacted.fetch_max(revision, Ordering::Relaxed);
    }

    pub(crate) fn current(&self) -> Revision {
        *self.revision.borrow()
    }

    pub(crate) fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Relaxed)
    }

    /// A linearizable read of nothing: refreshes the current revision.
    pub(crate) async fn refresh(&self) -> Result<Revision, StoreError> {
        let req = RangeRequest {
            key: COMPACT_REV_KEY.as_bytes().to_vec(),
            count_only: true,
            ..Default::default()
        };
        let resp: RangeResponse = self
            .transport
            .unary(proto::RANGE, &req)
            .await
            .map_err(store_error)?;
        let rev = header_rev(&resp.header);
        self.observe(rev);
        Ok(rev)
    }
}

/// A store on an etcd cluster. Cheap to share behind an `Arc`; dropping it stops the compactor
/// (watchers end when their stream does).
pub struct EtcdStore {
    shared: Arc<Shared>,
    health_timeout: Duration,
    compactor: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(task) = self.compactor.take() {
            task.abort();
        }
    }
}

impl EtcdStore {
    /// Connects to the cluster and reads its current and compacted revisions; fails within the
    /// request timeout if no endpoint answers. Starts the compactor (if enabled).
    pub async fn connect(opts: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let mut authorities = Vec::new();
        for url in &opts.endpoints {
            authorities.push(transport::parse_endpoint(url).map_err(StoreError::Invalid)?);
        }
        if authorities.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints given".into()));
        }
        let timeouts = transport::Timeouts {
            dial: opts.dial_timeout,
            request: opts.request_timeout,
        };
        let shared = Arc::new(Shared {
            transport: Transport::new(authorities, timeouts),
            keys: Keys::new(&opts.root, &opts.prefix),
            revision: tokio::sync::watch::Sender::new(0),
            compacted: AtomicU64::new(0),
            progress: tokio::sync::watch::Sender::new(0),
            watcher_capacity: opts.watcher_capacity.max(1),
        });
        let compacted = compact::read_compacted(&shared).await?;
        shared.observe_compacted(compacted);
        let compactor = (!opts.compaction_interval.is_zero()).then(|| {
            tokio::spawn(compact::run(
                Arc::downgrade(&shared),
                opts.compaction_interval,
            ))
        });
        Ok(EtcdStore {
            shared,
            health_timeout: opts.health_timeout,
            compactor,
        })
    }

    /// Compacts etcd's history up to `revision` (what the compactor does every interval).
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        compact::compact_to(&self.shared, revision).await
    }

    /// Every endpoint's view of the cluster (member id, leader, term), asked one by one.
    pub async fn member_status(&self) -> Vec<Result<MemberStatus, StoreError>> {
        let t = &self.shared.transport;
        let mut out = Vec::new();
        for idx in 0..t.endpoint_count() {
            let resp: Result<proto::StatusResponse, _> = t
                .unary_at(idx, proto::STATUS, &proto::StatusRequest {})
                .await;
            out.push(
                resp.map(|r| MemberStatus {
                    endpoint: t.authority(idx).to_string(),
                    member_id: r.header.as_ref().map_or(0, |h| h.member_id),
                    leader: r.leader,
                    raft_term: r.raft_term,
                    version: r.version,
                })
                .map_err(store_error),
            );
        }
        out
    }

    /// The endpoint (`host:port`) of the member that is the leader, as the members that answer
    /// agree on it; `None` when none answers or none knows a leader.
    pub async fn leader_endpoint(&self) -> Option<String> {
        let answers: Vec<MemberStatus> = self
            .member_status()
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let leader = answers.iter().map(|m| m.leader).find(|l| *l != 0)?;
        answers
            .into_iter()
            .find(|m| m.member_id == leader)
            .map(|m| m.endpoint)
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, CallError> {
        let resp: RangeResponse = self.shared.transport.unary(proto::RANGE, &req).await?;
        self.shared.observe(header_rev(&resp.header));
        Ok(resp)
    }

    /// Maps a range error at `requested` to the store's revision errors.
    fn revision_error(&self, e: CallError, requested: Revision) -> StoreError {
        match &e {
            CallError::Grpc { code, message } if *code == CODE_OUT_OF_RANGE => {
                if message.contains("compacted") {
                    let compacted = self.shared.compacted().max(requested + 1);
                    self.shared.observe_compacted(compacted);
                    StoreError::Compacted {
                        requested,
                        compacted,
                    }
                } else {
                    StoreError::FutureRevision {
                        requested,
                        current: self.shared.current(),
                    }
                }
            }
            _ => store_error(e),
        }
    }
}

/// Maps a transport or etcd error to the store's (unavailability keeps upstream's texts).
pub(crate) fn store_error(e: CallError) -> StoreError {
    match e {
        CallError::TimedOut => StoreError::Timeout(e.to_string()),
        CallError::Grpc { code, message } if code == CODE_DEADLINE_EXCEEDED => {
            StoreError::Timeout(message)
        }
        CallError::Grpc { code, message } if code == CODE_UNAVAILABLE => {
            if message.contains("timed out") {
                StoreError::Timeout(message)
            } else {
                StoreError::Unavailable(message)
            }
        }
        CallError::Grpc { message, .. } => StoreError::Io(format!("etcd: {message}")),
        CallError::Unreachable(why) => StoreError::Unavailable(format!(
            "rpc error: code = Unavailable desc = connection error: {why}"
        )),
    }
}

pub(crate) fn rev_i64(r: Revision) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

pub(crate) fn rev_u64(r: i64) -> Revision {
    u64::try_from(r).unwrap_or(0)
}

/// The store key-value of an etcd one.
pub(crate) fn kv_from(keys: &Keys, kv: proto::KeyValue) -> KeyValue {
    KeyValue {
        key: keys.store_key(&kv.key),
        value: kv.value,
        create_revision: rev_u64(kv.create_revision),
        mod_revision: rev_u64(kv.mod_revision),
    }
}

impl EtcdStore {
    fn to_kv(&self, kv: proto::KeyValue) -> KeyValue {
        kv_from(&self.shared.keys, kv)
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn txn(&self, ops: Vec<Op>) -> Result<Vec<KeyValue>, StoreError> {
        txn::validate(&ops)?;
        let keys = ops
            .iter()
            .map(|op| self.shared.keys.to_etcd(op.key()))
            .collect::<Result<Vec<_>, _>>()?;
        let req = txn::build_txn(&ops, &keys);
        let resp: TxnResponse = self
            .shared
            .transport
            .unary(proto::TXN, &req)
            .await
            .map_err(store_error)?;
        let revision = header_rev(&resp.header);
        self.shared.observe(revision);
        if resp.succeeded {
            Ok(txn::committed(ops, resp, revision))
        } else {
            Err(txn::failed(&ops, resp))
        }
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let req = RangeRequest {
            key: self.shared.keys.to_etcd(key)?,
            ..Default::default()
        };
        let resp = self.range(req).await.map_err(store_error)?;
        Ok(resp.kvs.into_iter().next().map(|kv| self.to_kv(kv)))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        if let Some(after) = &opts.start_after
            && !after.starts_with(prefix)
        {
            return Err(StoreError::Invalid(format!(
                "start_after {after:?} does not lie under prefix {prefix:?}"
            )));
        }
        let Some((start, end)) = self.shared.keys.range(prefix) else {
            let revision = match opts.revision {
                Some(r) => r,
                None => self.shared.refresh().await?,
            };
            let (items, remaining) = (Vec::new(), 0);
            return Ok(ListResult {
                items,
                revision,
                remaining,
            });
        };
        let key = match &opts.start_after {
            Some(after) => self.shared.keys.after(after)?,
            None => start,
        };
        let req = RangeRequest {
            key,
            range_end: end,
            limit: opts
                .limit
                .map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX)),
            revision: opts.revision.map_or(0, rev_i64),
            ..Default::default()
        };
        let requested = opts.revision.unwrap_or(0);
        let resp = self
            .range(req)
            .await
            .map_err(|e| self.revision_error(e, requested))?;
        let revision = opts.revision.unwrap_or_else(|| header_rev(&resp.header));
        let returned = resp.kvs.len() as u64;
        let remaining = rev_u64(resp.count).saturating_sub(returned);
        let items = resp.kvs.into_iter().map(|kv| self.to_kv(kv)).collect();
        Ok(ListResult {
            items,
            revision,
            remaining,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError> {
        watch::start(&self.shared, prefix, after, |e, r| {
            self.revision_error(e, r)
        })
        .await
    }

    fn current_revision(&self) -> Revision {
        self.shared.current()
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted()
    }

    async fn wait_for_revision(&self, revision: Revision) {
        // etcd reads are linearizable: a revision named by etcd is readable at once. Refresh the
        // known revision until it reaches `revision` (a revision not written yet: until a write).
        let mut rx = self.shared.revision.subscribe();
        let mut backoff = Duration::from_millis(10);
        loop {
            if *rx.borrow_and_update() >= revision {
                return;
            }
            if let Ok(r) = self.shared.refresh().await
                && r >= revision
            {
                return;
            }
            let _ = tokio::time::timeout(backoff, rx.changed()).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    fn request_progress(&self) {
        self.shared.progress.send_modify(|n| *n += 1);
    }

    async fn health(&self) -> Result<(), StoreError> {
        let req = RangeRequest {
            key: COMPACT_REV_KEY.as_bytes().to_vec(),
            count_only: true,
            ..Default::default()
        };
        let resp: RangeResponse = self
            .shared
            .transport
            .unary_with_timeout(proto::RANGE, &req, self.health_timeout)
            .await
            .map_err(store_error)?;
        self.shared.observe(header_rev(&resp.header));
        Ok(())
    }
}
