//! The simulated API: `controllers::fake::FakeApi`, i.e. the registry's write rules (admission
//! defaults with the run's default toleration seconds, ClusterIP allocation from the run's
//! seed, status strategies, garbage collection) over an in-memory store, plus the loading of the
//! scenario's workload manifests.
//!
//! Start at [`SimApi::execute`].

use std::sync::Arc;

use controllers::fake::FakeApi;
use controllers::{Action, Change, Moment, Object, WriteError};
use serde_json::Value;

/// The in-memory API of a run.
pub struct SimApi {
    pub fake: FakeApi,
}

/// A manifest the simulator cannot take.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{kind} {name}: kind {api_version}/{kind} is not modelled by the simulator")]
    UnknownKind {
        api_version: String,
        kind: String,
        name: String,
    },
    #[error("{kind} {name}: {message}")]
    Invalid {
        kind: String,
        name: String,
        message: String,
    },
    #[error("{kind} {name}: already exists")]
    AlreadyExists { kind: String, name: String },
}

/// Kinds a scenario may carry that change nothing the simulator models (no controller reads
/// them): accepted and left out.
const INERT_KINDS: [&str; 2] = ["ConfigMap", "Secret"];

impl SimApi {
    /// The API of a run: the server's default toleration seconds, randomness from `seed`.
    pub fn new(
        not_ready_toleration_seconds: i64,
        unreachable_toleration_seconds: i64,
        seed: u64,
    ) -> SimApi {
        let cfg = registry::MemConfig {
            admission: registry::admission::Admission {
                default_not_ready_toleration_seconds: not_ready_toleration_seconds,
                default_unreachable_toleration_seconds: unreachable_toleration_seconds,
            },
            ..registry::MemConfig::default()
        };
        SimApi {
            fake: FakeApi::with_config(cfg, seed).expect("the default Service ranges parse"),
        }
    }

    /// Execute a write with the API's rules.
    pub fn execute(&mut self, action: &Action, now: Moment) -> Result<Vec<Change>, WriteError> {
        self.fake.execute(action, now)
    }

    /// An external write (a kubelet registering its node goes through [`SimApi::execute`];
    /// this is for objects stored as given).
    pub fn put(&mut self, obj: Object, now: Moment) -> Change {
        self.fake.put(obj, now)
    }

    /// Create one workload manifest; inert kinds return no change.
    pub fn create_manifest(
        &mut self,
        v: &Value,
        now: Moment,
    ) -> Result<Vec<Change>, ManifestError> {
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let api_version = v["apiVersion"].as_str().unwrap_or_default().to_string();
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if INERT_KINDS.contains(&kind.as_str()) {
            return Ok(Vec::new());
        }
        let unknown = || ManifestError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
            name: name.clone(),
        };
        let res = api::resources::by_kind(&api_version, &kind).ok_or_else(unknown)?;
        let mut obj = v.clone();
        if obj["metadata"]["namespace"].is_null() && res.namespaced {
            obj["metadata"]["namespace"] = "default".into();
        }
        let typed = object_from_json(obj)
            .map_err(|message| ManifestError::Invalid {
                kind: kind.clone(),
                name: name.clone(),
                message,
            })?
            .ok_or_else(unknown)?;
        self.execute(&Action::Create(typed), now)
            .map_err(|e| match e {
                WriteError::AlreadyExists => ManifestError::AlreadyExists {
                    kind: kind.clone(),
                    name: name.clone(),
                },
                other => ManifestError::Invalid {
                    kind: kind.clone(),
                    name: name.clone(),
                    message: format!("{other:?}"),
                },
            })
    }
}

/// A typed object from JSON by its `kind`; `None` for kinds the controllers do not read.
pub fn object_from_json(v: Value) -> Result<Option<Object>, String> {
    fn de<T: serde::de::DeserializeOwned>(v: Value) -> Result<Arc<T>, String> {
        serde_json::from_value(v)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
    let kind = v["kind"].as_str().unwrap_or_default().to_string();
    Ok(Some(match kind.as_str() {
        "Pod" => Object::Pod(de(v)?),
        "Node" => Object::Node(de(v)?),
        "Service" => Object::Service(de(v)?),
        "EndpointSlice" => Object::EndpointSlice(de(v)?),
        "Lease" => Object::Lease(de(v)?),
        "Deployment" => Object::Deployment(de(v)?),
        "ReplicaSet" => Object::ReplicaSet(de(v)?),
        "PodDisruptionBudget" => Object::PodDisruptionBudget(de(v)?),
        "Namespace" => Object::Namespace(de(v)?),
        "ServiceAccount" => Object::ServiceAccount(de(v)?),
        "StatefulSet" => Object::StatefulSet(de(v)?),
        "ControllerRevision" => Object::ControllerRevision(de(v)?),
        "DaemonSet" => Object::DaemonSet(de(v)?),
        _ => return Ok(None),
    }))
}
