//! Expanders: pick one scale-up option among those that help — upstream's `random` (the
//! default), `least-waste` and `priority` (with the `cluster-autoscaler-priority-expander`
//! ConfigMap), each falling back to `random` among ties, as upstream's chain does.
//!
//! Start at [`choose`].

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use regex::Regex;

use super::config::ExpanderKind;
use crate::Key;
use crate::scheduler::Resources;

/// Name of the priority expander's ConfigMap in kube-system (upstream
/// `PriorityConfigMapName`).
pub const PRIORITY_CONFIG_MAP: &str = "cluster-autoscaler-priority-expander";

/// One way to scale up (upstream `expander.Option`).
#[derive(Clone, Debug)]
pub struct ScaleUpOption {
    pub group: String,
    /// New nodes needed.
    pub node_count: usize,
    /// The pods these nodes would take.
    pub pods: Vec<Key>,
    /// Allocatable of one template node.
    pub node_allocatable: Resources,
    /// Sum of the requests of `pods`.
    pub pod_requests: Resources,
}

/// A bad priority ConfigMap.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PriorityConfigError {
    #[error("priority configmap does not have the 'priorities' key")]
    MissingKey,
    #[error("can't parse YAML with priorities in the configmap: {0}")]
    Yaml(String),
    #[error("can't compile regexp rule for priority {priority} and rule {rule}: {error}")]
    Regex {
        priority: i64,
        rule: String,
        error: String,
    },
}

/// Parsed priorities: priority → name patterns (unanchored, as upstream `MatchString`).
#[derive(Clone, Debug, Default)]
pub struct Priorities {
    rules: BTreeMap<i64, Vec<Regex>>,
}

impl Priorities {
    /// Parse the ConfigMap's `data` (key `priorities`: a YAML map of integer priority to a
    /// list of node group name regexps).
    pub fn parse(data: &BTreeMap<String, String>) -> Result<Priorities, PriorityConfigError> {
        let text = data
            .get("priorities")
            .ok_or(PriorityConfigError::MissingKey)?;
        let raw: BTreeMap<i64, Vec<String>> =
            serde_yaml::from_str(text).map_err(|e| PriorityConfigError::Yaml(e.to_string()))?;
        let mut rules = BTreeMap::new();
        for (priority, patterns) in raw {
            let compiled = patterns
                .iter()
                .map(|p| {
                    Regex::new(p).map_err(|e| PriorityConfigError::Regex {
                        priority,
                        rule: p.clone(),
                        error: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.insert(priority, compiled);
        }
        Ok(Priorities { rules })
    }

    /// The highest priority whose patterns match `group`, if any.
    pub fn of(&self, group: &str) -> Option<i64> {
        self.rules
            .iter()
            .rev()
            .find(|(_, res)| res.iter().any(|r| r.is_match(group)))
            .map(|(p, _)| *p)
    }
}

/// Upstream `leastwaste`: the fraction of the new nodes' CPU and memory left idle, summed.
fn wasted_score(o: &ScaleUpOption) -> f64 {
    let frac = |alloc: i64, req: i64| {
        let available = alloc as f64 * o.node_count as f64;
        if available <= 0.0 {
            0.0
        } else {
            (available - req as f64) / available
        }
    };
    frac(o.node_allocatable.milli_cpu, o.pod_requests.milli_cpu)
        + frac(o.node_allocatable.memory, o.pod_requests.memory)
}

/// The options the expander keeps (before the random fallback).
fn best_options<'o>(
    kind: ExpanderKind,
    options: &'o [ScaleUpOption],
    priorities: Option<&Priorities>,
) -> Vec<&'o ScaleUpOption> {
    match kind {
        ExpanderKind::Random => options.iter().collect(),
        ExpanderKind::LeastWaste => {
            let scores: Vec<f64> = options.iter().map(wasted_score).collect();
            let best = scores.iter().copied().fold(f64::INFINITY, f64::min);
            options
                .iter()
                .zip(&scores)
                .filter(|(_, s)| (**s - best).abs() < 1e-9)
                .map(|(o, _)| o)
                .collect()
        }
        ExpanderKind::Priority => {
            // Without a valid ConfigMap upstream passes every option on; with one, options
            // whose group matches no rule are not used ("The group won't be used."), unless
            // no option matches at all: then every option goes to the random fallback
            // ("no priorities info found for any of the expansion options").
            let Some(p) = priorities else {
                return options.iter().collect();
            };
            let prio: Vec<Option<i64>> = options.iter().map(|o| p.of(&o.group)).collect();
            let Some(max) = prio.iter().flatten().copied().max() else {
                return options.iter().collect();
            };
            options
                .iter()
                .zip(&prio)
                .filter(|(_, p)| **p == Some(max))
                .map(|(o, _)| o)
                .collect()
        }
    }
}

/// Pick the option to execute: the expander's best, ties broken at random with the
/// autoscaler's seeded RNG. `None` when no option is acceptable.
pub fn choose<'o>(
    kind: ExpanderKind,
    options: &'o [ScaleUpOption],
    priorities: Option<&Priorities>,
    rng: &mut ChaCha8Rng,
) -> Option<&'o ScaleUpOption> {
    let best = best_options(kind, options, priorities);
    match best.len() {
        0 => None,
        1 => Some(best[0]),
        n => Some(best[rng.random_range(0..n)]),
    }
}
