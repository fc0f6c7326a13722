//! The status file: one JSON line per state change of a target or an LB node, stamped with
//! wall-clock milliseconds since the Unix epoch (the lab's one clock), and the kubectl-like
//! table `zonelab balancer status` prints from it.
//!
//! Start at [`StatusLine`] (what the driver writes) and [`Summary::from_lines`] (what it reads).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::balancer::Record;

/// One line of the status file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusLine {
    /// Milliseconds since the Unix epoch.
    pub at: f64,
    #[serde(flatten)]
    pub record: Record,
}

/// A status file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("status line {line}: {source}")]
pub struct StatusError {
    pub line: usize,
    #[source]
    pub source: serde_json::Error,
}

/// Latest state of each target and node, from a status file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// (group, target) -> the last line about it.
    pub targets: BTreeMap<(String, String), StatusLine>,
    /// address -> the last line about it.
    pub nodes: BTreeMap<String, StatusLine>,
}

impl Summary {
    /// Fold the lines of a status file (empty lines are skipped) into the latest states.
    pub fn from_lines(text: &str) -> Result<Summary, StatusError> {
        let mut s = Summary::default();
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let line: StatusLine = serde_json::from_str(l).map_err(|source| StatusError {
                line: i + 1,
                source,
            })?;
            match &line.record {
                Record::Target { group, target, .. } => {
                    s.targets
                        .insert((group.clone(), target.clone()), line.clone());
                }
                Record::Node { address, .. } => {
                    s.nodes.insert(address.to_string(), line.clone());
                }
            }
        }
        Ok(s)
    }

    /// Two tables like kubectl's: the nodes (whether DNS returns them), then the targets;
    /// AGE is how long each has been in its state at `now_ms`, written by `age` (the driver
    /// passes kubectl's `HumanDuration`, `apiserver::table::human_duration`).
    pub fn render(&self, now_ms: f64, age: &dyn Fn(Duration) -> String) -> String {
        let age = |ms: f64| age(Duration::from_millis(ms.max(0.0) as u64));
        let mut nodes = vec![row(&["NODE", "ZONE", "STATE", "AGE", "REASON"])];
        for line in self.nodes.values() {
            if let Record::Node {
                address,
                zone,
                to,
                reason,
                ..
            } = &line.record
            {
                nodes.push(row(&[
                    &address.to_string(),
                    zone.as_deref().unwrap_or("<all>"),
                    to.as_str(),
                    &age(now_ms - line.at),
                    reason.as_deref().unwrap_or(""),
                ]));
            }
        }
        let mut targets = vec![row(&[
            "TARGET GROUP",
            "TARGET",
            "ZONE",
            "STATE",
            "AGE",
            "REASON",
            "DESCRIPTION",
        ])];
        for line in self.targets.values() {
            if let Record::Target {
                group,
                target,
                zone,
                to,
                reason,
                description,
                ..
            } = &line.record
            {
                targets.push(row(&[
                    group,
                    target,
                    zone,
                    to.as_str(),
                    &age(now_ms - line.at),
                    reason.map_or("", |r| r.as_str()),
                    description.as_deref().unwrap_or(""),
                ]));
            }
        }
        let mut out = table(&nodes);
        out.push('\n');
        out.push_str(&table(&targets));
        out
    }
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}   ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &str = r#"{"at":1000.0,"kind":"node","address":"172.20.251.1","zone":"a","from":null,"to":"healthy","reason":null}
{"at":1000.0,"kind":"target","group":"web","target":"172.20.0.11:30080","zone":"a","from":null,"to":"initial","reason":"Elb.RegistrationInProgress","description":"Target registration is in progress"}
{"at":31000.0,"kind":"target","group":"web","target":"172.20.0.11:30080","zone":"a","from":"healthy","to":"unhealthy","reason":"Target.FailedHealthChecks","description":"Health checks failed: request timed out"}

{"at":31000.0,"kind":"node","address":"172.20.251.1","zone":"a","from":"healthy","to":"unhealthy","reason":"target group web has no healthy target in zone a"}
"#;

    #[test]
    fn the_latest_line_wins_and_renders_as_a_table() {
        let s = Summary::from_lines(LINES).expect("valid");
        assert_eq!(s.targets.len(), 1);
        let out = s.render(76_000.0, &|d| format!("{}s", d.as_secs()));
        let want = "\
NODE           ZONE   STATE       AGE   REASON
172.20.251.1   a      unhealthy   45s   target group web has no healthy target in zone a

TARGET GROUP   TARGET              ZONE   STATE       AGE   REASON                      DESCRIPTION
web            172.20.0.11:30080   a      unhealthy   45s   Target.FailedHealthChecks   Health checks failed: request timed out
";
        assert_eq!(out, want);
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = Summary::from_lines("{\"at\":1}\nnot json").expect_err("bad");
        assert_eq!(e.line, 1);
    }
}
