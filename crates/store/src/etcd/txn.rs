//! Store transactions as etcd transactions: the compares (`create_revision == 0` for a create,
//! `create_revision > 0` and optionally `mod_revision == expected` otherwise), the success ops
//! (puts and deletes with `prev_kv`), and a failure branch that reads every key so the error
//! names the first failing op with the revision etcd holds. Start at [`build_txn`].

use super::proto::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, Request,
    RequestOp, Response, TargetUnion, TxnRequest, TxnResponse,
};
use super::{rev_i64, rev_u64};
use crate::{KeyValue, Op, Revision, StoreError};

/// Same validation as the embedded backends: non-empty, distinct, non-empty keys.
pub(crate) fn validate(ops: &[Op]) -> Result<(), StoreError> {
    crate::core::validate_shape(ops)
}

fn compare(key: &[u8], target: CompareTarget, result: CompareResult, v: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.to_vec(),
        target_union: Some(v),
    }
}

/// The etcd transaction for `ops` (keys already mapped).
pub(crate) fn build_txn(ops: &[Op], keys: &[Vec<u8>]) -> TxnRequest {
    let mut txn = TxnRequest::default();
    for (op, key) in ops.iter().zip(keys) {
        let expected = match op {
            Op::Create { value, .. } => {
                txn.compare.push(compare(
                    key,
                    CompareTarget::Create,
                    CompareResult::Equal,
                    TargetUnion::CreateRevision(0),
                ));
                txn.success.push(put(key, value.clone()));
                None
            }
            Op::Update {
                value, expected, ..
            } => {
                txn.success.push(put(key, value.clone()));
                *expected
            }
            Op::Delete { expected, .. } => {
                txn.success.push(RequestOp {
                    request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                        key: key.clone(),
                        prev_kv: true,
                        ..Default::default()
                    })),
                });
                *expected
            }
        };
        if !matches!(op, Op::Create { .. }) {
            txn.compare.push(compare(
                key,
                CompareTarget::Create,
                CompareResult::Greater,
                TargetUnion::CreateRevision(0),
            ));
        }
        if let Some(expected) = expected {
            txn.compare.push(compare(
                key,
                CompareTarget::Mod,
                CompareResult::Equal,
                TargetUnion::ModRevision(rev_i64(expected)),
            ));
        }
        txn.failure.push(RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })),
        });
    }
    txn
}

fn put(key: &[u8], value: bytes::Bytes) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value,
            prev_kv: true,
        })),
    }
}

/// Results of a committed transaction at `revision`.
pub(crate) fn committed(ops: Vec<Op>, resp: TxnResponse, revision: Revision) -> Vec<KeyValue> {
    ops.into_iter()
        .zip(resp.responses)
        .map(|(op, r)| {
            let prev = match r.response {
                Some(Response::ResponsePut(p)) => p.prev_kv,
                Some(Response::ResponseDeleteRange(mut d)) => d.prev_kvs.pop(),
                _ => None,
            };
            let create_revision = prev
                .as_ref()
                .map_or(revision, |p| rev_u64(p.create_revision));
            let (key, value) = match op {
                Op::Create { key, value } | Op::Update { key, value, .. } => (key, value),
                Op::Delete { key, .. } => (key, prev.map(|p| p.value).unwrap_or_default()),
            };
            KeyValue {
                key,
                value,
                create_revision,
                mod_revision: revision,
            }
        })
        .collect()
}

/// The error naming the first op whose precondition failed, from the failure branch's reads.
pub(crate) fn failed(ops: &[Op], resp: TxnResponse) -> StoreError {
    for (op, r) in ops.iter().zip(resp.responses) {
        let found = match r.response {
            Some(Response::ResponseRange(mut range)) => range.kvs.pop(),
            _ => None,
        };
        let key = op.key().to_string();
        match (op, found) {
            (Op::Create { .. }, Some(_)) => return StoreError::AlreadyExists { key },
            (Op::Create { .. }, None) => {}
            (_, None) => return StoreError::NotFound { key },
            (Op::Update { expected, .. } | Op::Delete { expected, .. }, Some(kv)) => {
                if let Some(expected) = *expected
                    && rev_i64(expected) != kv.mod_revision
                {
                    let actual = rev_u64(kv.mod_revision);
                    return StoreError::Conflict {
                        key,
                        expected,
                        actual,
                    };
                }
            }
        }
    }
    StoreError::Io("etcd transaction failed with every precondition holding".into())
}
