//! Object helpers over k8s-openapi types: resources, Status errors, selectors, patches,
//! defaulting, validation and schemas.
//!
//! Start at [`resources::RESOURCES`] (what is served), then [`status::StatusError`] (how a
//! request fails), [`admit`] (defaulting + validation per kind).

pub mod admit;
pub mod events_v1;
pub mod names;
pub mod patch;
pub mod proto;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod status;
