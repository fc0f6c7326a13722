//! Start-up work: read the stored Services (to rebuild the allocators) and create the built-in
//! namespaces and the `kubernetes` Service when they are missing.
//!
//! Start at [`ensure_builtins`].

use api::resources::by_plural;
use api::status::StatusError;
use serde_json::{Value, json};
use store::{ListOptions, Store, StoreError};

use crate::handlers::FieldValidation;
use crate::handlers::{WriteOptions, create_object};
use crate::objects;
use crate::server::Server;

/// Namespaces every cluster has.
pub const BUILTIN_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Every stored Service, decoded.
pub async fn stored_services(store: &dyn Store) -> Result<Vec<Value>, StoreError> {
    let svc = by_plural("", "services")
        .ok_or_else(|| StoreError::Invalid("services not served".into()))?;
    let page = store
        .list(&objects::prefix(svc, None), ListOptions::default())
        .await?;
    Ok(page
        .items
        .iter()
        .filter_map(|kv| objects::decode(kv).ok())
        .collect())
}

fn ignore_exists(r: Result<crate::handlers::Written, StatusError>) -> Result<(), StatusError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create the built-in namespaces and the `kubernetes` Service (first IP of the range) if missing.
pub async fn ensure_builtins(server: &Server) -> Result<(), StatusError> {
    let opts = WriteOptions {
        dry_run: false,
        field_validation: FieldValidation::Ignore,
    };
    let nsres = by_plural("", "namespaces").ok_or_else(StatusError::path_not_found)?;
    for ns in BUILTIN_NAMESPACES {
        let exists = server
            .store
            .get(&objects::key(nsres, None, ns))
            .await
            .map_err(crate::handlers::store_failure)?;
        if exists.is_none() {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            ignore_exists(create_object(server, nsres, None, obj, opts).await)?;
        }
    }
    let svc = by_plural("", "services").ok_or_else(StatusError::path_not_found)?;
    let exists = server
        .store
        .get(&objects::key(svc, Some("default"), "kubernetes"))
        .await
        .map_err(crate::handlers::store_failure)?;
    if exists.is_none() {
        let ip = crate::svcalloc::first_ip(server)?;
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "clusterIP": ip,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": server.cfg.advertise_address.port()}],
                "sessionAffinity": "None",
                "type": "ClusterIP",
            },
        });
        ignore_exists(create_object(server, svc, Some("default"), obj, opts).await)?;
    }
    Ok(())
}
