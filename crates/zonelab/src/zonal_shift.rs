//! Zonal shifts on a running lab: the writes that start, extend or cancel one (the shift's
//! annotation on every node of the zone, `controllers::zonalshift`), used by `zonelab run` and
//! by `zonelab lab zonal-shift --zone a [--expires-in 30m] [--cancel]`.
//!
//! Start at [`write_shift`]; docs/zonal-shift.md.

use std::time::Duration;

use anyhow::{Context, bail};
use controllers::Moment;
use controllers::zonalshift;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use scenario::zonal_shift::{MAX_EXPIRES_IN, MIN_EXPIRES_IN};

/// `zonelab lab zonal-shift`.
#[derive(clap::Args, Debug, Clone)]
pub struct ZonalShiftArgs {
    /// The zone to shift traffic away from (ARC `awayFrom`).
    #[arg(long)]
    pub zone: String,
    /// How long the shift lasts from now, 1m to 72h (ARC `expiresIn`); on a shifted zone it
    /// extends the shift (ARC `UpdateZonalShift`).
    #[arg(long, default_value = "30m", value_parser = crate::flags::parse_duration)]
    pub expires_in: Duration,
    /// Cancel the zone's shift instead (ARC `CancelZonalShift`).
    #[arg(long)]
    pub cancel: bool,
}

/// Start or extend the zone's shift until `expires_at`, or cancel it (`None`): one merge patch
/// per node of the zone that does not say so yet. Returns the nodes written.
pub async fn write_shift(
    client: &kube::Client,
    zone: &str,
    expires_at: Option<Moment>,
    now: Moment,
) -> anyhow::Result<Vec<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let selector = format!("{}={zone}", controllers::ZONE_LABEL);
    let list = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("listing the nodes of zone {zone}"))?;
    if list.items.is_empty() {
        bail!("zone {zone:?} has no nodes (label {selector})");
    }
    let mut written = Vec::new();
    for node in &list.items {
        let changed = match expires_at {
            Some(at) => zonalshift::start_node(node, at, now).is_some(),
            None => zonalshift::cancel_node(node).is_some(),
        };
        if !changed {
            continue;
        }
        let started = node
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key(zonalshift::STARTED_AT_ANNOTATION))
            .then_some(now);
        let name = node.metadata.name.clone().unwrap_or_default();
        let patch = zonalshift::merge_patch(expires_at, started);
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("writing the zonal shift on node {name}"))?;
        written.push(name);
    }
    Ok(written)
}

/// Milliseconds of a duration, checked against ARC's `expiresIn` bounds.
pub fn expires_in_ms(d: Duration) -> anyhow::Result<Duration> {
    if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&d) {
        bail!(
            "--expires-in {}: out of range, expected 1m to 72h (ARC's bounds)",
            scenario::format_duration(d)
        );
    }
    Ok(d)
}

/// `zonelab lab zonal-shift`.
pub async fn cli(lab: &crate::lab::LabArgs, a: &ZonalShiftArgs) -> anyhow::Result<i32> {
    let cfg = crate::lab::load_config(&lab.state_dir, &lab.prefix)?;
    if cfg.topology.nodes_in_zone(&a.zone).next().is_none() {
        bail!(
            "unknown zone {:?}: expected one of {}",
            a.zone,
            cfg.topology
                .zones
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let expires = if a.cancel {
        None
    } else {
        Some(expires_in_ms(a.expires_in)?)
    };
    let client = cfg.client()?;
    let now = live::controllers::wall_clock();
    let nodes = write_shift(&client, &a.zone, expires.map(|e| now + e), now).await?;
    match expires {
        Some(e) => println!(
            "zonal shift away from zone {} until {} ({} node(s) written)",
            a.zone,
            zonalshift::format_time(now + e),
            nodes.len()
        ),
        None => println!(
            "zonal shift away from zone {} cancelled ({} node(s) written)",
            a.zone,
            nodes.len()
        ),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::expires_in_ms;

    #[test]
    fn expires_in_takes_arcs_bounds() {
        assert_eq!(
            expires_in_ms(Duration::from_secs(60)).ok(),
            Some(Duration::from_millis(60_000))
        );
        assert_eq!(
            expires_in_ms(Duration::from_secs(72 * 3600)).ok(),
            Some(Duration::from_millis(72 * 3_600_000))
        );
        let e = expires_in_ms(Duration::from_secs(30)).expect_err("too short");
        assert_eq!(
            e.to_string(),
            "--expires-in 30s: out of range, expected 1m to 72h (ARC's bounds)"
        );
        assert!(expires_in_ms(Duration::from_secs(73 * 3600)).is_err());
    }
}
