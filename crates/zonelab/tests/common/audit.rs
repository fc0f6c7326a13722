//! Reading `--audit-log-path` files: the successful writes of elected components, and the
//! check that no deposed leader's write landed. Start at [`check_no_deposed_writes`].

use std::path::Path;

use chrono::{DateTime, Utc};
use live::controllers::fence::identity_of_user_agent;
use serde_json::Value;

/// One successful write from the audit log. The write took effect (its store commit) at some
/// time in `[received, at]`: a request caught in a process frozen by SIGSTOP can commit
/// before the freeze and be stamped after it.
#[derive(Debug)]
pub struct Write {
    /// `requestReceivedTimestamp`.
    pub received: DateTime<Utc>,
    /// `stageTimestamp` (ResponseComplete).
    pub at: DateTime<Utc>,
    pub identity: String,
    pub what: String,
    /// A Lease request of the elector (`…/leader-election` User-Agent).
    pub election: bool,
}

fn timestamp(e: &Value, field: &str) -> DateTime<Utc> {
    let s = e[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|err| panic!("{field} {s:?}: {err}"))
        .with_timezone(&Utc)
}

/// The successful writes made by elected `component` (`kube-controller-manager`: its
/// User-Agent starts with it and names an identity), from one or more audit logs, in order of
/// arrival.
pub fn elected_writes(logs: &[&Path], component: &str) -> Vec<Write> {
    let mut out = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let e: Value = serde_json::from_str(line).expect("audit line is JSON");
            let code = e["responseStatus"]["code"].as_u64().unwrap_or(0);
            let ua = e["userAgent"].as_str().unwrap_or("");
            let Some(identity) = identity_of_user_agent(ua) else {
                continue;
            };
            if !(200..300).contains(&code) || !ua.starts_with(&format!("{component}/")) {
                continue;
            }
            out.push(Write {
                received: timestamp(&e, "requestReceivedTimestamp"),
                at: timestamp(&e, "stageTimestamp"),
                identity: identity.to_string(),
                what: format!("{} {}", e["verb"], e["requestURI"]),
                election: ua.contains("/leader-election "),
            });
        }
    }
    out.sort_by_key(|w| w.received);
    out
}

/// No write of a deposed leader landed after its lease expired: every controller write by X
/// follows a successful Lease write by X (one that arrived before the write completed), and
/// did not arrive after that renew's latest possible commit (`at`) + the lease duration, by
/// which time a follower may have taken over. Writes whose interval straddles the expiry are
/// not counted as violations (nothing in the log can tell). Returns the number of controller
/// writes checked and the Lease holders in order of their writes' arrival.
pub fn check_no_deposed_writes(writes: &[Write], lease_ms: i64) -> (usize, Vec<String>) {
    let leases: Vec<&Write> = writes.iter().filter(|w| w.election).collect();
    let mut holders: Vec<String> = Vec::new();
    for l in &leases {
        if holders.last() != Some(&l.identity) {
            holders.push(l.identity.clone());
        }
    }
    let mut checked = 0;
    for w in writes.iter().filter(|w| !w.election) {
        let renew = leases
            .iter()
            .filter(|l| l.identity == w.identity && l.received <= w.at)
            .map(|l| l.at)
            .max()
            .unwrap_or_else(|| {
                panic!("{} wrote without holding the lease: {}", w.identity, w.what)
            });
        let expiry = renew + chrono::Duration::milliseconds(lease_ms);
        assert!(
            w.received < expiry,
            "a write by {} arrived at {} after its lease expired (last renew {renew}, expiry \
             {expiry}): {}",
            w.identity,
            w.received,
            w.what
        );
        checked += 1;
    }
    (checked, holders)
}
