//! Reading `--audit-log-path` files: the successful writes of elected components, and the
//! check that no deposed leader's write landed. Start at [`check_no_deposed_writes`].

use std::path::Path;

use chrono::{DateTime, Utc};
use controllers::live::fence::identity_of_user_agent;
use serde_json::Value;

/// One successful write from the audit log.
#[derive(Debug)]
pub struct Write {
    pub at: DateTime<Utc>,
    pub identity: String,
    pub what: String,
    /// A Lease request of the elector (`…/leader-election` User-Agent).
    pub election: bool,
}

/// The successful writes made by elected `component` (`kube-controller-manager`: its
/// User-Agent starts with it and names an identity), from one or more audit logs, in time
/// order.
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
            let at = e["stageTimestamp"].as_str().expect("stageTimestamp");
            out.push(Write {
                at: DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .with_timezone(&Utc),
                identity: identity.to_string(),
                what: format!("{} {}", e["verb"], e["requestURI"]),
                election: ua.contains("/leader-election "),
            });
        }
    }
    out.sort_by_key(|w| w.at);
    out
}

/// Every write of an elected component must come from the current holder of its Lease (the
/// identity of the last successful write to it: only the holder's election writes succeed)
/// and land before that holder's lease expired (its last successful renew + the lease
/// duration). Returns the number of controller writes checked and the holders in order.
pub fn check_no_deposed_writes(writes: &[Write], lease_ms: i64) -> (usize, Vec<String>) {
    let mut holder: Option<(&str, DateTime<Utc>)> = None;
    let mut holders: Vec<String> = Vec::new();
    let mut checked = 0;
    for w in writes {
        if w.election {
            holder = Some((&w.identity, w.at));
            if holders.last() != Some(&w.identity) {
                holders.push(w.identity.clone());
            }
            continue;
        }
        let (id, renewed) = holder.unwrap_or_else(|| panic!("write before any leader: {}", w.what));
        assert_eq!(
            w.identity, id,
            "a write by {} landed at {} while {id} held the lease: {}",
            w.identity, w.at, w.what
        );
        let expiry = renewed + chrono::Duration::milliseconds(lease_ms);
        assert!(
            w.at < expiry,
            "a write by {id} landed at {} after its lease expired ({expiry}): {}",
            w.at,
            w.what
        );
        checked += 1;
    }
    (checked, holders)
}
