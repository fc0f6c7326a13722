//! Periodic compaction of etcd's history as upstream's apiserver does it (etcd3 `compact.go`);
//! start at [`Compactor`] (the sans-IO protocol) and [`run`] (its driver).
//!
//! Several API servers share one etcd; only one should compact per interval. The key
//! [`COMPACT_REV_KEY`]'s `version` is a logical clock: a server compares it to the clock it
//! knows and, if equal, bumps it (writing the revision it compacts to as the value) and compacts
//! to the revision it saw one interval earlier. A server whose compare fails adopts the remote
//! clock and tries again next interval, so a crashed compactor is replaced within two intervals.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::proto::{
    self, CompactionRequest, CompactionResponse, Compare, CompareResult, CompareTarget, PutRequest,
    RangeRequest, RangeResponse, Request, RequestOp, Response, TargetUnion, TxnRequest,
    TxnResponse, header_rev,
};
use super::transport::{CODE_OUT_OF_RANGE, CallError};
use super::{Shared, store_error};
use crate::{Revision, StoreError};

/// Upstream's compaction key (outside the prefix, shared by every API server on the cluster).
pub const COMPACT_REV_KEY: &str = "compact_rev_key";

/// The compactor's knowledge: the logical clock and the revision seen at the last round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Compactor {
    /// The version of [`COMPACT_REV_KEY`] this server last knew.
    time: i64,
    /// The cluster's revision at the last round: what the next successful round compacts to.
    rev: i64,
}

/// What to do after a round's compare-and-swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// This server won the round: compact to this revision.
    Compact(i64),
    /// Nothing to compact (another server won, or the first round).
    Wait,
}

impl Compactor {
    /// The clock to compare and the revision to write for this round.
    pub(crate) fn round(&self) -> (i64, i64) {
        (self.time, self.rev)
    }

    /// Feeds the round's outcome: whether the swap succeeded, the key's version if it did not,
    /// and the cluster revision of the answer.
    pub(crate) fn on_swap(&mut self, succeeded: bool, remote_time: i64, current: i64) -> Step {
        let to = self.rev;
        self.rev = current;
        if !succeeded {
            self.time = remote_time;
            return Step::Wait;
        }
        self.time += 1;
        if to == 0 {
            // Upstream does not compact on the first round.
            Step::Wait
        } else {
            Step::Compact(to)
        }
    }
}

/// The compacted revision recorded in [`COMPACT_REV_KEY`] (0 if none); also refreshes the
/// current revision.
pub(crate) async fn read_compacted(shared: &Shared) -> Result<Revision, StoreError> {
    let req = RangeRequest {
        key: COMPACT_REV_KEY.as_bytes().to_vec(),
        ..Default::default()
    };
    let resp: RangeResponse = shared
        .transport
        .unary(proto::RANGE, &req)
        .await
        .map_err(store_error)?;
    shared.observe(header_rev(&resp.header));
    Ok(resp.kvs.first().map_or(0, |kv| parse_rev(&kv.value)))
}

fn parse_rev(value: &[u8]) -> Revision {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Compacts etcd to `revision` and records it as known.
pub(crate) async fn compact_to(shared: &Shared, revision: Revision) -> Result<(), StoreError> {
    let req = CompactionRequest {
        revision: i64::try_from(revision).unwrap_or(i64::MAX),
        physical: false,
    };
    let out: Result<CompactionResponse, CallError> =
        shared.transport.unary(proto::COMPACT, &req).await;
    match out {
        Ok(resp) => shared.observe(header_rev(&resp.header)),
        // Already compacted past it (by another server): fine.
        Err(CallError::Grpc { code, .. }) if code == CODE_OUT_OF_RANGE => {}
        Err(e) => return Err(store_error(e)),
    }
    shared.observe_compacted(revision);
    Ok(())
}

/// One round: the compare-and-swap on the clock, then the compaction if this server won.
async fn round(shared: &Shared, c: &mut Compactor) -> Result<(), StoreError> {
    let (time, rev) = c.round();
    let key = COMPACT_REV_KEY.as_bytes().to_vec();
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            key: key.clone(),
            target_union: Some(TargetUnion::Version(time)),
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.clone(),
                value: rev.to_string().into(),
                prev_kv: false,
            })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key,
                ..Default::default()
            })),
        }],
    };
    let resp: TxnResponse = shared
        .transport
        .unary(proto::TXN, &txn)
        .await
        .map_err(store_error)?;
    let current = resp.header.as_ref().map_or(0, |h| h.revision);
    shared.observe(header_rev(&resp.header));
    let remote = match resp.responses.into_iter().next().and_then(|r| r.response) {
        Some(Response::ResponseRange(r)) => r.kvs.into_iter().next(),
        _ => None,
    };
    if let Some(kv) = &remote {
        // Another server's last compaction.
        shared.observe_compacted(parse_rev(&kv.value));
    }
    let remote_time = remote.map_or(0, |kv| kv.version);
    match c.on_swap(resp.succeeded, remote_time, current) {
        Step::Compact(to) => compact_to(shared, u64::try_from(to).unwrap_or(0)).await,
        Step::Wait => Ok(()),
    }
}

/// Runs a round every `interval` until the store is dropped.
pub(crate) async fn run(shared: Weak<Shared>, interval: Duration) {
    let mut c = Compactor::default();
    loop {
        tokio::time::sleep(interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(e) = round(&shared, &mut c).await {
            tracing::warn!("etcd: compact failed: {e}");
        }
        drop::<Arc<Shared>>(shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winner_compacts_to_the_previous_rounds_revision() {
        let mut c = Compactor::default();
        assert_eq!(c.round(), (0, 0));
        assert_eq!(
            c.on_swap(true, 0, 100),
            Step::Wait,
            "no compaction on the first round"
        );
        assert_eq!(c.round(), (1, 100));
        assert_eq!(c.on_swap(true, 0, 250), Step::Compact(100));
        assert_eq!(c.round(), (2, 250));
    }

    #[test]
    fn loser_adopts_the_remote_clock_and_takes_over_later() {
        let mut c = Compactor::default();
        assert_eq!(c.on_swap(false, 7, 100), Step::Wait);
        assert_eq!(c.round(), (7, 100));
        // The other server stopped: the next compare at clock 7 succeeds.
        assert_eq!(c.on_swap(true, 0, 300), Step::Compact(100));
    }
}
