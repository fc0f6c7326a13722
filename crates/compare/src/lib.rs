//! `zonelab compare`, sans-IO: the compare file (one base scenario and named variants of
//! overrides: flags, scenario fields, added items, client options, workload patches) parsed
//! with `file:line:column` errors, each variant built and re-validated before anything runs,
//! and the runs' reports summarised, ranked and rendered (compare.json, the terminal table
//! and its verdict, compare.html). The runs and the files are `zonelab compare`'s
//! (crates/zonelab/src/compare.rs).
//!
//! Start at [`CompareFile::parse`], then [`plan`], then [`summarise`]; the syntax is in
//! docs/compare.md.

pub mod apply;
pub mod html;
pub mod plan;
pub mod results;
pub mod spec;

#[cfg(test)]
mod tests;

pub use plan::{Planned, plan};
pub use results::{Comparison, SeedFigures, VariantFigures, VariantRuns, summarise, table};
pub use spec::{BASELINE, Base, CompareFile, Kind, Override, Variant};
