//! Scenario files of the resilience lab: typed model, parsing and validation with
//! `file:line:column` errors. Start at [`Scenario::parse`]; the model is in [`model`], the
//! field reference in docs/scenarios.md.

pub mod duration;
pub mod locate;
pub mod memory;
pub mod model;
pub mod node_groups;
pub mod sim;
pub mod sim_manifests;
pub mod stamp;
pub mod validate;
pub mod zonal_shift;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use duration::{DurationError, format_duration, parse_duration};
pub use model::{
    Client, ClientFrom, ClientVia, ControlPlane, DEFAULT_CAP, ETCD_LEADER, Fault, FaultTarget,
    FaultType, NodeCapacity, Profile, ProxyMode, Run, Scenario, ServiceRef, Slo, Store, Topology,
    Until, Workload,
};
pub use node_groups::NodeGroup;
pub use validate::{MAX_NODES_PER_ZONE, MAX_ZONES};
pub use zonal_shift::{ShiftAt, ZonalAutoshift, ZonalShift};

/// Why a scenario file was rejected. Every variant names the file; `Syntax` and `Invalid`
/// also carry the 1-based line and column of the offending node.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: cannot read the scenario file")]
    Read {
        /// File name as given.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid YAML, or a field of the wrong type, unknown, or missing.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// File name as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, prefixed by the field path when there is one.
        message: String,
    },
    /// Well-formed but inconsistent (unknown zone, fault after the end, ...).
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// File name as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Path of the offending field, e.g. `faults[1].target`.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
}

impl ScenarioError {
    /// 1-based (line, column) of the problem; `None` for read errors.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            ScenarioError::Read { .. } => None,
            ScenarioError::Syntax { line, column, .. }
            | ScenarioError::Invalid { line, column, .. } => Some((*line, *column)),
        }
    }
}

impl Scenario {
    /// Parses and validates a scenario for the live lab. `file_name` is only used in error
    /// messages.
    pub fn parse(text: &str, file_name: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse_for(text, file_name, sim::Mode::Live)
    }

    /// Parses and validates a scenario for the live lab or the simulator.
    pub fn parse_for(
        text: &str,
        file_name: &str,
        mode: sim::Mode,
    ) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario =
            serde_yaml::from_str(text).map_err(|e| syntax_error(&e, file_name))?;
        validate::validate_for(&scenario, mode).map_err(|p| {
            let (line, column) = locate::locate(text, &p.path).unwrap_or((1, 1));
            ScenarioError::Invalid {
                file: file_name.to_string(),
                line,
                column,
                field: locate::render(&p.path),
                message: p.message,
            }
        })?;
        Ok(scenario)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::parse(&read_text(path)?, &path.display().to_string())
    }

    /// Resolves a fault's target against the topology (always `Some` after `parse`).
    pub fn fault_target(&self, fault: &Fault) -> Option<FaultTarget> {
        validate::resolve_target(&self.topology, &fault.target)
    }

    /// Faults sorted by time (stable: equal times keep file order).
    pub fn faults_by_time(&self) -> Vec<&Fault> {
        let mut faults: Vec<&Fault> = self.faults.iter().collect();
        faults.sort_by_key(|f| f.at);
        faults
    }

    /// Zones a client runs in: its own list, or every zone.
    pub fn client_zones<'a>(&'a self, client: &'a Client) -> &'a [String] {
        client.zones.as_deref().unwrap_or(&self.topology.zones)
    }
}

/// Reads a scenario file's text (the only I/O of this crate).
pub fn read_text(path: &Path) -> Result<String, ScenarioError> {
    std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        file: path.display().to_string(),
        source,
    })
}

/// Reads and parses a scenario file; same as [`Scenario::load`].
pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
    Scenario::load(path.as_ref())
}

/// Turns a serde_yaml error into `file:line:column: message`, dropping serde_yaml's own
/// " at line L column C" so the position is written once. Public for other files of the lab
/// that share these errors (`zonelab compare`'s compare file).
pub fn syntax_error(err: &serde_yaml::Error, file: &str) -> ScenarioError {
    let mut message = err.to_string();
    let (line, column) = match err.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(pos) = message.find(&suffix) {
                message.replace_range(pos..pos + suffix.len(), "");
            }
            (loc.line(), loc.column())
        }
        None => (1, 1),
    };
    ScenarioError::Syntax {
        file: file.to_string(),
        line,
        column,
        message,
    }
}
