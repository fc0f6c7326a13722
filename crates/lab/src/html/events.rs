//! The page's "Kubernetes events" table: Warning events and the reasons that tell a failure's
//! story (node not ready, evictions, kills, scheduling), like `kubectl get events` would list
//! them. Start at [`section`].

use super::{escape, secs};
use crate::report::{EventRecord, Report};

/// Rows shown at most (the full list is in report.json).
pub const MAX_ROWS: usize = 60;

/// Normal-type reasons worth a row besides every Warning.
const KEY_REASONS: &[&str] = &[
    "NodeNotReady",
    "NodeReady",
    "TaintManagerEviction",
    "Killing",
    "ScalingReplicaSet",
    "SuccessfulCreate",
    "SuccessfulDelete",
    "RemovingNode",
];

fn shown(e: &EventRecord) -> bool {
    e.type_ == "Warning" || KEY_REASONS.contains(&e.reason.as_str())
}

/// The section, or nothing when the run recorded no events (older reports).
pub fn section(r: &Report) -> String {
    if r.events.is_empty() {
        return String::new();
    }
    let picked: Vec<&EventRecord> = r.events.iter().filter(|e| shown(e)).collect();
    let rows: String = picked
        .iter()
        .take(MAX_ROWS)
        .map(|e| {
            format!(
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"n\">{}</td><td>{}</td></tr>\n",
                secs(e.first_s),
                escape(&e.type_),
                escape(&e.reason),
                escape(&e.object),
                escape(&e.message),
                e.count,
                escape(&e.source),
            )
        })
        .collect();
    let more = picked.len().saturating_sub(MAX_ROWS);
    let note = format!(
        "<p class=\"meta\">{} of {} events (Warnings and key reasons){}; all in report.json.</p>\n",
        picked.len().min(MAX_ROWS),
        r.events.len() as u64 + r.events_left_out,
        if more > 0 {
            format!(", {more} more not shown")
        } else {
            String::new()
        },
    );
    format!(
        "<h2>Kubernetes events</h2>\n{note}<table>\n<tr><th class=\"n\">first seen</th>\
         <th>type</th><th>reason</th><th>object</th><th>message</th><th class=\"n\">count</th>\
         <th>from</th></tr>\n{rows}</table>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(reason: &str, type_: &str, message: &str) -> EventRecord {
        EventRecord {
            first_s: 12.5,
            last_s: 13.0,
            type_: type_.into(),
            reason: reason.into(),
            object: "pod/web-1".into(),
            message: message.into(),
            source: "node-controller".into(),
            count: 2,
        }
    }

    #[test]
    fn lists_warnings_and_key_reasons_escaped() {
        let mut r = crate::html::tests::sample();
        r.events = vec![
            ev("NodeNotReady", "Warning", "Node is <not> ready"),
            ev("Pulled", "Normal", "Container image \"x\" already present"),
            ev(
                "TaintManagerEviction",
                "Normal",
                "Marking for deletion Pod default/web-1",
            ),
        ];
        let html = section(&r);
        assert!(html.contains("Node is &lt;not&gt; ready"));
        assert!(html.contains("Marking for deletion Pod default/web-1"));
        assert!(
            !html.contains("Pulled"),
            "routine Normal events are left to report.json"
        );
        assert!(html.contains("2 of 3 events"));
        r.events.clear();
        assert_eq!(section(&r), "");
    }
}
