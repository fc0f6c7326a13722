//! When a run's load may start, shared by the live runner and the simulator: once the
//! workloads are available, every client pod's node must have a kube-proxy that programmed at
//! least one endpoint of the client's Service (else the first connections are refused by the
//! `reject` rule of a Service without endpoints: start-up refusals that say nothing about the
//! fault). Checked every [`POLL_MS`], given up after [`CAP_MS`] (a Service that has no ready
//! endpoint at start; the run then starts anyway); t0 is [`SETTLE_MS`] after it opened.
//!
//! Start at [`LoadGate::pending`].

use std::collections::BTreeSet;

/// How often the gate is checked (ms).
pub const POLL_MS: i64 = 100;
/// The longest wait for the proxies after the workloads are available (ms).
pub const CAP_MS: i64 = 10_000;
/// Between the gate opening and t0, when the client pods are created: the live run's wait for
/// its watches (ms).
pub const SETTLE_MS: i64 = 500;

/// The `(node, Service)` pairs the load waits for: each client pod's node and its Service
/// (`namespace/name`).
#[derive(Clone, Debug, Default)]
pub struct LoadGate {
    pairs: BTreeSet<(String, String)>,
}

impl LoadGate {
    /// The gate of clients on `(node, service)` pairs (duplicates count once).
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> LoadGate {
        LoadGate {
            pairs: pairs.into_iter().collect(),
        }
    }

    /// The first pair (in order) whose node's proxy has programmed no endpoint of the Service,
    /// given `programmed(node, service)`: the count of endpoints the node's applied rules use
    /// for it. `None`: the load may start.
    pub fn pending(&self, programmed: impl Fn(&str, &str) -> usize) -> Option<(&str, &str)> {
        self.pairs
            .iter()
            .find(|(node, service)| programmed(node, service) == 0)
            .map(|(n, s)| (n.as_str(), s.as_str()))
    }

    /// No client waits (external clients only, or none).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_gate_opens_only_when_every_client_node_programmed_an_endpoint_of_its_service() {
        let gate = LoadGate::new([
            ("b-2".to_string(), "default/web".to_string()),
            ("a-2".to_string(), "default/web".to_string()),
            ("a-2".to_string(), "default/web".to_string()),
            ("a-2".to_string(), "shop/cart".to_string()),
        ]);
        let mut programmed: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        let count = |p: &BTreeMap<(&str, &str), usize>, n: &str, s: &str| {
            p.iter()
                .find(|((pn, ps), _)| *pn == n && *ps == s)
                .map_or(0, |(_, c)| *c)
        };
        assert_eq!(
            gate.pending(|n, s| count(&programmed, n, s)),
            Some(("a-2", "default/web"))
        );
        programmed.insert(("a-2", "default/web"), 3);
        programmed.insert(("b-2", "default/web"), 0);
        programmed.insert(("a-2", "shop/cart"), 1);
        assert_eq!(
            gate.pending(|n, s| count(&programmed, n, s)),
            Some(("b-2", "default/web")),
            "a node whose rules list the Service without endpoints still waits"
        );
        programmed.insert(("b-2", "default/web"), 1);
        assert_eq!(gate.pending(|n, s| count(&programmed, n, s)), None);
        assert!(!gate.is_empty());
        assert!(LoadGate::new([]).pending(|_, _| 0).is_none());
    }
}
