//! Loading a scenario and its workload manifests for the simulator's tests (the binary's
//! `zonelab run` does the same in `run/prepare.rs`, with full checks).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The repository's `examples/` directory.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The scenario `text` (workload paths relative to `examples/`) and its manifests.
pub fn load_text(text: &str) -> (scenario::Scenario, Vec<serde_json::Value>) {
    let s = scenario::Scenario::parse_for(text, "test.yaml", scenario::sim::Mode::Sim)
        .expect("scenario");
    let mut manifests = Vec::new();
    for w in &s.workloads {
        let mut objects = Vec::new();
        if let Some(p) = &w.path {
            let text = std::fs::read_to_string(examples().join(p)).expect("manifest file");
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let v = serde_json::Value::deserialize(doc).expect("yaml");
                if !v.is_null() {
                    objects.push(v);
                }
            }
        }
        objects.extend(w.inline_objects().into_iter().cloned());
        manifests.extend(w.stamp(&objects));
    }
    (s, manifests)
}

/// An example scenario by file name.
#[allow(dead_code)] // not every test binary loads an example
pub fn load(name: &str) -> (scenario::Scenario, Vec<serde_json::Value>) {
    load_text(&std::fs::read_to_string(examples().join(name)).expect("scenario file"))
}
