//! The simulated API: `controllers::fake::FakeApi` (the in-memory store with the API's write
//! rules) plus the create-time admission the live apiserver adds on top today: upstream
//! defaulting (`api::admit::default`), the DefaultTolerationSeconds tolerations and ClusterIP
//! allocation. Once the registry's write rules run inside `FakeApi`, [`SimApi::admit`] goes.
//!
//! Start at [`SimApi::execute`].

use std::net::Ipv4Addr;
use std::sync::Arc;

use controllers::fake::FakeApi;
use controllers::{Action, Change, Kind, Millis, Object, WriteError};
use serde_json::Value;

/// The first address handed out of the service range 10.96.0.0/12 (`.1` is the
/// `kubernetes` Service's in a real cluster).
const FIRST_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Last address of 10.96.0.0/12 usable for a Service.
const LAST_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 111, 255, 254);

/// The in-memory API of a run.
pub struct SimApi {
    pub fake: FakeApi,
    next_cluster_ip: u32,
    not_ready_toleration_seconds: i64,
    unreachable_toleration_seconds: i64,
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
    pub fn new(not_ready_toleration_seconds: i64, unreachable_toleration_seconds: i64) -> SimApi {
        SimApi {
            fake: FakeApi::new(),
            next_cluster_ip: u32::from(FIRST_CLUSTER_IP),
            not_ready_toleration_seconds,
            unreachable_toleration_seconds,
        }
    }

    /// Execute a write with the API's rules (creates are admitted first).
    pub fn execute(&mut self, action: &Action, now: Millis) -> Result<Vec<Change>, WriteError> {
        match action {
            Action::Create(obj) => {
                let admitted = self.admit(obj)?;
                self.fake.execute(&Action::Create(admitted), now)
            }
            other => self.fake.execute(other, now),
        }
    }

    /// An external write (a kubelet registering its node goes through [`SimApi::execute`];
    /// this is for objects stored as given).
    pub fn put(&mut self, obj: Object, now: Millis) -> Change {
        self.fake.put(obj, now)
    }

    /// Create one workload manifest; inert kinds return no change.
    pub fn create_manifest(
        &mut self,
        v: &Value,
        now: Millis,
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
        api::admit::default(res, &mut obj);
        let causes = api::admit::validate_create(res, &obj);
        if let Some(c) = causes.first() {
            return Err(ManifestError::Invalid {
                kind,
                name,
                message: format!("{}: {}", c.field, c.message),
            });
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

    /// Create-time admission: defaults, pod tolerations, ClusterIP.
    fn admit(&mut self, obj: &Object) -> Result<Object, WriteError> {
        let mut v = object_to_json(obj).map_err(WriteError::Invalid)?;
        let api_version = v["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        if let Some(res) = api::resources::by_kind(&api_version, &kind) {
            api::admit::default(res, &mut v);
        }
        match obj.kind() {
            Kind::Pod => api::admit::pod::default_tolerations(
                &mut v,
                self.not_ready_toleration_seconds,
                self.unreachable_toleration_seconds,
            ),
            Kind::Service => self.allocate_cluster_ip(&mut v)?,
            _ => {}
        }
        object_from_json(v)
            .map_err(WriteError::Invalid)?
            .ok_or_else(|| WriteError::Invalid(format!("kind {kind} is not modelled")))
    }

    /// Upstream allocates a free address at random; the simulator hands them out in order,
    /// which is as good for the data plane and stays reproducible.
    fn allocate_cluster_ip(&mut self, v: &mut Value) -> Result<(), WriteError> {
        let spec = &mut v["spec"];
        let ty = spec["type"].as_str().unwrap_or("ClusterIP");
        let given = spec["clusterIP"].as_str().unwrap_or("");
        if ty == "ExternalName" || !given.is_empty() {
            return Ok(());
        }
        if self.next_cluster_ip > u32::from(LAST_CLUSTER_IP) {
            return Err(WriteError::Other(
                "Internal error occurred: failed to allocate a serviceIP: range is full".into(),
            ));
        }
        let ip = Ipv4Addr::from(self.next_cluster_ip).to_string();
        self.next_cluster_ip += 1;
        spec["clusterIP"] = ip.clone().into();
        spec["clusterIPs"] = serde_json::json!([ip]);
        spec["ipFamilies"] = serde_json::json!(["IPv4"]);
        Ok(())
    }
}

/// The object as the API serves it (with `apiVersion` and `kind`).
fn object_to_json(obj: &Object) -> Result<Value, String> {
    let r = match obj {
        Object::Pod(o) => serde_json::to_value(o.as_ref()),
        Object::Node(o) => serde_json::to_value(o.as_ref()),
        Object::Service(o) => serde_json::to_value(o.as_ref()),
        Object::EndpointSlice(o) => serde_json::to_value(o.as_ref()),
        Object::Lease(o) => serde_json::to_value(o.as_ref()),
        Object::Deployment(o) => serde_json::to_value(o.as_ref()),
        Object::ReplicaSet(o) => serde_json::to_value(o.as_ref()),
        Object::PodDisruptionBudget(o) => serde_json::to_value(o.as_ref()),
        Object::Namespace(o) => serde_json::to_value(o.as_ref()),
        Object::ServiceAccount(o) => serde_json::to_value(o.as_ref()),
        Object::StatefulSet(o) => serde_json::to_value(o.as_ref()),
        Object::ControllerRevision(o) => serde_json::to_value(o.as_ref()),
        Object::DaemonSet(o) => serde_json::to_value(o.as_ref()),
    };
    r.map_err(|e| e.to_string())
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
