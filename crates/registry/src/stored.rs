//! What [`crate::MemApi`] stores: any object type that converts to and from JSON, with an
//! optional typed fast path for the hot writes (status updates, Lease renewals).
//!
//! Start at [`Stored`]; `serde_json::Value` implements it (the plain JSON API).

use api::resources::ResourceInfo;
use api::status::StatusError;
use serde_json::Value;

use crate::meta::{self, Moment};
use crate::strategy::UpdateScope;

/// The outcome of a typed fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastPath {
    /// The rules were applied to the typed object: store it (after the precondition check).
    Applied,
    /// Not covered (another kind, a metadata change that needs validation, …): take the JSON path.
    Fallback,
}

/// An object type [`crate::MemApi`] can store. The rules run on JSON; a type may apply them
/// directly in [`Stored::fast_update`] for writes where that gives equal results (tested in
/// `typed`).
pub trait Stored: Clone {
    /// The object as JSON (as it would be sent over the API).
    fn to_value(&self) -> Value;
    /// The object names `uid` among its owners (the garbage collector's question; a typed
    /// store answers without building JSON).
    fn owned_by(&self, uid: &str) -> bool {
        crate::gc::owned_by(&self.to_value(), uid)
    }
    /// The object from JSON of `res`'s kind (after the rules ran).
    fn from_value(res: &'static ResourceInfo, v: Value) -> Result<Self, StatusError>;
    fn name(&self) -> &str;
    fn namespace(&self) -> Option<&str>;
    fn generate_name(&self) -> Option<&str>;
    fn resource_version(&self) -> Option<&str>;
    fn set_resource_version(&mut self, rv: u64);
    /// Equal content (both carry the same resourceVersion when this is asked).
    fn same(&self, other: &Self) -> bool;
    /// A raw write's identity: `name` when given (generated); `uid` and `creationTimestamp`
    /// from `old` when it exists, else the object's own, else `fresh_uid` and `now`.
    fn raw_identity(
        &mut self,
        old: Option<&Self>,
        name: Option<String>,
        fresh_uid: String,
        now: Moment,
    );
    /// A create's identity on a copy of an object the create rules made of an equal body (a
    /// memoized create, [`crate::MemApi::create`]): `name`, `uid` and `creationTimestamp`
    /// replaced by what the rules would have set.
    fn set_created_identity(&mut self, name: String, uid: String, now: Moment);
    /// Apply the update rules of `scope` to `self` (the client's object) against the stored
    /// `old`, without JSON; [`FastPath::Fallback`] leaves `self` unchanged.
    fn fast_update(&mut self, _res: &ResourceInfo, _scope: UpdateScope, _old: &Self) -> FastPath {
        FastPath::Fallback
    }
    /// Apply upstream's defaults for `res` to `self` (a raw write; `old` the stored object)
    /// without JSON; [`FastPath::Fallback`] leaves `self` unchanged.
    fn fast_defaults(&mut self, _res: &ResourceInfo, _old: Option<&Self>) -> FastPath {
        FastPath::Fallback
    }
    /// Apply the binding rule to `self` (a stored pod) without JSON: `None` when not covered.
    fn fast_bind(
        &mut self,
        _res: &ResourceInfo,
        _node: &str,
        _now: Moment,
    ) -> Option<Result<(), StatusError>> {
        None
    }
}

impl Stored for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }

    fn from_value(_res: &'static ResourceInfo, v: Value) -> Result<Value, StatusError> {
        Ok(v)
    }

    fn name(&self) -> &str {
        meta::name_of(self)
    }

    fn namespace(&self) -> Option<&str> {
        meta::meta_str(self, "namespace").filter(|n| !n.is_empty())
    }

    fn generate_name(&self) -> Option<&str> {
        meta::meta_str(self, "generateName")
    }

    fn resource_version(&self) -> Option<&str> {
        meta::meta_str(self, "resourceVersion")
    }

    fn set_resource_version(&mut self, rv: u64) {
        meta::set_resource_version(self, rv);
    }

    fn same(&self, other: &Value) -> bool {
        self == other
    }

    fn set_created_identity(&mut self, name: String, uid: String, now: Moment) {
        if let Some(m) = meta::metadata_mut(self) {
            m.insert("name".into(), Value::from(name));
            m.insert("uid".into(), Value::from(uid));
            m.insert(
                "creationTimestamp".into(),
                Value::from(meta::timestamp(now)),
            );
        }
    }

    fn raw_identity(
        &mut self,
        old: Option<&Value>,
        name: Option<String>,
        fresh_uid: String,
        now: Moment,
    ) {
        let Some(m) = meta::metadata_mut(self) else {
            return;
        };
        if let Some(n) = name {
            m.insert("name".into(), Value::from(n));
        }
        for (field, fresh) in [
            ("uid", fresh_uid),
            ("creationTimestamp", meta::timestamp(now)),
        ] {
            let kept = old.and_then(|o| o["metadata"].get(field)).cloned();
            let own = m
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            match kept {
                Some(k) => {
                    m.insert(field.into(), k);
                }
                None if old.is_some() => {
                    m.remove(field);
                }
                None if !own => {
                    m.insert(field.into(), Value::from(fresh));
                }
                None => {}
            }
        }
    }
}
