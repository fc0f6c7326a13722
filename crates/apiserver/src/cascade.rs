//! Deletion that follows a delete: dependents named by `ownerReferences` (the garbage
//! collector's background and orphan propagation) and the content of a deleted namespace.
//!
//! Start at [`dependents`].

use std::sync::Arc;

use api::status::StatusError;

use crate::handlers::delete_now;
use crate::objects;
use crate::server::Server;

/// Delete (or, with `orphan`, release) every object owned by `owner_uid` in `namespace`.
pub async fn dependents(
    server: &Arc<Server>,
    owner_uid: &str,
    namespace: Option<&str>,
    orphan: bool,
) -> Result<(), StatusError> {
    if owner_uid.is_empty() {
        return Ok(());
    }
    for res in registry::gc::dependent_kinds() {
        let page = server
            .store
            .list(
                &objects::prefix(res, namespace),
                store::ListOptions::default(),
            )
            .await
            .map_err(crate::handlers::store_failure)?;
        for kv in &page.items {
            let obj = objects::decode(kv)?;
            let Some(step) = registry::gc::cascade(owner_uid, orphan, &obj) else {
                continue;
            };
            let name = objects::name_of(&obj).to_string();
            let ns = objects::meta_str(&obj, "namespace").map(str::to_string);
            if let registry::gc::GcStep::Orphan(freed) = step {
                let key = objects::key(res, ns.as_deref(), &name);
                // A concurrent change wins; the orphaning is best effort as upstream's GC retries.
                let _ = server
                    .store
                    .update(&key, objects::encode(&freed), Some(kv.mod_revision))
                    .await;
            } else {
                match delete_now(server, res, ns.as_deref(), &name).await {
                    Ok(()) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Empty a namespace that is being deleted, then remove it.
pub async fn namespace(server: &Arc<Server>, name: &str) -> Result<(), StatusError> {
    // A storage alias (events.k8s.io Events) shares its target's prefix: empty it once.
    for res in registry::gc::namespace_kinds() {
        let page = server
            .store
            .list(
                &objects::prefix(res, Some(name)),
                store::ListOptions::default(),
            )
            .await
            .map_err(crate::handlers::store_failure)?;
        for kv in &page.items {
            // Upstream's namespace controller waits for graceful pod termination; we delete at
            // once so an agent-less namespace never hangs in Terminating.
            if let Ok(obj) = objects::decode(kv) {
                let deleted =
                    crate::svcalloc::delete_stored(server, res, &kv.key, None, &[&obj]).await;
                if deleted.is_ok() {
                    crate::svcalloc::release_service(server, res, &obj);
                }
            } else {
                let _ = server.store.delete(&kv.key, None).await;
            }
        }
    }
    let nsres =
        api::resources::by_plural("", "namespaces").ok_or_else(StatusError::path_not_found)?;
    match server
        .store
        .delete(&objects::key(nsres, None, name), None)
        .await
    {
        Ok(_) | Err(store::StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(crate::handlers::store_failure(e)),
    }
}
