//! Slice placement: compares the desired endpoints of a Service with its existing slices and
//! plans the fewest slice writes, as upstream `reconcileByPortMapping` and `finalize` do.
//! Start at [`plan`].
//!
//! Per port group: (1) existing slices drop stale endpoints and take changed ones; (2) slices
//! changed in step 1 are filled (fullest first) with new endpoints; (3) the rest goes into the
//! unchanged slice it fits closest, or into new slices. No rebalancing. Then, service-wide:
//! one placeholder slice is kept for a Service with no endpoints, and creates are turned into
//! updates of slices that would otherwise be deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::desired::{Desired, PortGroup, PortKey, existing_identity, port_key};
use super::{ADDRESS_TYPE, HEADLESS_LABEL, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

/// The writes one reconcile of a Service needs.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub creates: Vec<EndpointSlice>,
    pub updates: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub deletes: Vec<String>,
}

/// What happens to one existing slice of a port group.
enum State {
    Unchanged,
    Update(Vec<Endpoint>),
    Delete,
}

struct Work<'s> {
    slice: &'s EndpointSlice,
    state: State,
}

impl Work<'_> {
    fn len(&self) -> usize {
        match &self.state {
            State::Update(eps) => eps.len(),
            State::Unchanged => self.slice.endpoints.len(),
            State::Delete => 0,
        }
    }
}

fn is_reserved(label: &str) -> bool {
    label == SERVICE_NAME_LABEL || label == MANAGED_BY_LABEL || label == HEADLESS_LABEL
}

/// The labels a slice of `svc` carries (upstream `setEndpointSliceLabels`).
pub(crate) fn desired_labels(svc: &Service, controller: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !is_reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let cluster_ip = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("");
    if cluster_ip.is_empty() || cluster_ip == "None" {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    }
    labels.insert(
        SERVICE_NAME_LABEL.to_string(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.to_string(), controller.to_string());
    labels
}

/// True if the slice's non-reserved labels differ from the Service's (upstream only compares
/// those; the reserved ones are set on every write).
fn labels_changed(slice: &EndpointSlice, svc: &Service) -> bool {
    let ours = slice
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !is_reserved(k));
    let theirs = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !is_reserved(k));
    !ours.eq(theirs)
}

/// True if the slice has an ownerReference to this Service (by uid).
pub(crate) fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice.metadata.owner_references.iter().flatten().any(|o| {
        Some(&o.uid) == svc.metadata.uid.as_ref() && o.kind == "Service" && o.api_version == "v1"
    })
}

/// A new, empty slice for `svc` with `ports` (upstream `newEndpointSlice`).
pub(crate) fn new_slice(
    svc: &Service,
    ports: &[k8s_openapi::api::discovery::v1::EndpointPort],
    labels: &BTreeMap<String, String>,
) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_string(),
                kind: "Service".to_string(),
                name,
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: ADDRESS_TYPE.to_string(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    }
}

/// FNV-1a: a fast hasher for the identity index (lookups only; never iterated).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Inputs shared by every port group of one reconcile.
pub(crate) struct Ctx<'a> {
    pub svc: &'a Service,
    pub labels: &'a BTreeMap<String, String>,
    pub max: usize,
    /// A partial sync: only these pods changed; other endpoints are known to be current.
    pub only: Option<&'a [String]>,
    /// In a partial sync, the slices holding an endpoint of an `only` pod: the others are
    /// left as they are without a look at their endpoints.
    pub holding: Option<&'a BTreeSet<&'a str>>,
}

/// Step 1: keep desired endpoints found in existing slices; mark what changed.
fn step_existing<'s>(
    ctx: &Ctx,
    existing: &[&'s EndpointSlice],
    group: &PortGroup,
    placed: &mut [bool],
) -> Vec<Work<'s>> {
    let mut index: HashMap<(&str, &str), usize, BuildHasherDefault<Fnv>> =
        HashMap::with_capacity_and_hasher(group.endpoints.len(), BuildHasherDefault::default());
    index.extend(
        group
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, d)| (d.identity(), i)),
    );
    let mut works = Vec::with_capacity(existing.len());
    for slice in existing {
        if let Some(holding) = ctx.holding
            && !holding.contains(slice.metadata.name.as_deref().unwrap_or(""))
        {
            let state = if labels_changed(slice, ctx.svc) {
                State::Update(slice.endpoints.clone())
            } else {
                State::Unchanged
            };
            works.push(Work { slice, state });
            continue;
        }
        // (desired index, unchanged) — or `Err(ep)`: an untouched endpoint of a partial sync.
        let mut kept: Vec<(Result<usize, &Endpoint>, bool)> =
            Vec::with_capacity(slice.endpoints.len());
        for ep in &slice.endpoints {
            let id = existing_identity(ep);
            let hit = id.and_then(|id| index.get(&id).copied());
            if let Some(i) = hit.filter(|&i| !placed[i]) {
                placed[i] = true;
                kept.push((Ok(i), group.endpoints[i].matches(ep)));
            } else if let (Some(only), Some((name, _))) = (ctx.only, id)
                && !only.iter().any(|n| n == name)
            {
                kept.push((Err(ep), true));
            }
        }
        let changed = kept.len() != slice.endpoints.len() || kept.iter().any(|(_, same)| !same);
        let state = if changed && kept.is_empty() {
            State::Delete
        } else if changed {
            State::Update(rebuild(&kept, group))
        } else if labels_changed(slice, ctx.svc) {
            State::Update(slice.endpoints.clone())
        } else {
            State::Unchanged
        };
        works.push(Work { slice, state });
    }
    works
}

/// The endpoints of a changed slice: desired versions of the kept ones, untouched ones as is.
fn rebuild(kept: &[(Result<usize, &Endpoint>, bool)], group: &PortGroup) -> Vec<Endpoint> {
    kept.iter()
        .map(|(k, _)| match k {
            Ok(i) => group.endpoints[*i].to_endpoint(),
            Err(ep) => (*ep).clone(),
        })
        .collect()
}

/// Upstream `getSliceToFill`: the unchanged slice that ends up closest to full.
fn slice_to_fill(works: &[Work], count: usize, max: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, w) in works.iter().enumerate() {
        if !matches!(w.state, State::Unchanged) || w.len() + count > max {
            continue;
        }
        let diff = max - (w.len() + count);
        if best.is_none_or(|(_, d)| diff < d) {
            best = Some((i, diff));
            if diff == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Reconcile one port group: steps 1–3. Appends to `plan`.
fn reconcile_group(ctx: &Ctx, existing: &[&EndpointSlice], group: &PortGroup, plan: &mut Plan) {
    let mut placed = vec![false; group.endpoints.len()];
    let mut works = step_existing(ctx, existing, group, &mut placed);
    let remaining: Vec<usize> = (0..group.endpoints.len()).filter(|&i| !placed[i]).collect();
    let mut next = remaining.iter().map(|&i| group.endpoints[i].to_endpoint());
    let mut left = remaining.len();

    // Step 2: fill slices changed in step 1, fullest first (ties in name order).
    let mut order: Vec<usize> = (0..works.len())
        .filter(|&i| matches!(works[i].state, State::Update(_)))
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(works[i].len()));
    for i in order {
        if let State::Update(eps) = &mut works[i].state {
            while left > 0 && eps.len() < ctx.max {
                eps.extend(next.next());
                left -= 1;
            }
        }
    }

    // Step 3: the rest into the best-fitting unchanged slice, or into new slices.
    while left > 0 {
        let fill = if left < ctx.max {
            slice_to_fill(&works, left, ctx.max)
        } else {
            None
        };
        let mut eps = match fill {
            Some(i) => works[i].slice.endpoints.clone(),
            None => Vec::new(),
        };
        while left > 0 && eps.len() < ctx.max {
            eps.extend(next.next());
            left -= 1;
        }
        match fill {
            Some(i) => works[i].state = State::Update(eps),
            None => {
                let mut slice = new_slice(ctx.svc, &group.ports, ctx.labels);
                slice.endpoints = eps;
                plan.creates.push(slice);
            }
        }
    }
    collect(ctx, works, plan);
}

fn collect(ctx: &Ctx, works: Vec<Work>, plan: &mut Plan) {
    for w in works {
        match w.state {
            State::Unchanged => {}
            State::Delete => plan
                .deletes
                .push(w.slice.metadata.name.clone().unwrap_or_default()),
            State::Update(endpoints) => {
                let mut metadata = w.slice.metadata.clone();
                metadata.labels = Some(ctx.labels.clone());
                plan.updates.push(EndpointSlice {
                    metadata,
                    address_type: w.slice.address_type.clone(),
                    endpoints,
                    ports: w.slice.ports.clone(),
                });
            }
        }
    }
}

/// True if `slice` is what the placeholder would be (upstream `placeholderSliceCompare`:
/// namespace, labels, owner references, address type, no ports, no endpoints).
fn is_placeholder(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
        && slice.metadata.owner_references.clone().unwrap_or_default()
            == placeholder
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default()
        && slice.address_type == placeholder.address_type
        && slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(|p| p.is_empty())
}

/// Plan the writes for `svc` given its desired endpoints and the slices this controller
/// manages for it (any order; processed in name order).
pub(crate) fn plan(ctx: &Ctx, desired: &Desired, existing: &[&Arc<EndpointSlice>]) -> Plan {
    let mut plan = Plan::default();
    let mut by_key: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    let mut sorted: Vec<&EndpointSlice> = existing.iter().map(|s| s.as_ref()).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for slice in sorted {
        if slice.address_type == ADDRESS_TYPE && owned_by(slice, ctx.svc) {
            by_key
                .entry(port_key(slice.ports.as_deref().unwrap_or(&[])))
                .or_default()
                .push(slice);
        } else {
            plan.deletes
                .push(slice.metadata.name.clone().unwrap_or_default());
        }
    }
    // Every port list, desired or existing, in order (a partial sync sees fewer desired
    // groups than a full one, and must plan in the same order).
    let mut groups: BTreeMap<&PortKey, Option<&PortGroup>> =
        by_key.keys().map(|k| (k, None)).collect();
    groups.extend(desired.groups.iter().map(|g| (&g.key, Some(g))));
    for (key, group) in groups {
        let slices = by_key.get(key).map_or(&[][..], Vec::as_slice);
        match group {
            Some(group) => reconcile_group(ctx, slices, group, &mut plan),
            // Partial: just drop the touched pods from groups they are no longer desired in.
            None if ctx.only.is_some() => {
                let empty = PortGroup {
                    ports: Vec::new(),
                    key: key.clone(),
                    endpoints: Vec::new(),
                };
                reconcile_group(ctx, slices, &empty, &mut plan);
            }
            None => plan.deletes.extend(
                slices
                    .iter()
                    .map(|s| s.metadata.name.clone().unwrap_or_default()),
            ),
        }
    }
    if existing.len() == plan.deletes.len() && plan.creates.is_empty() {
        let placeholder = new_slice(ctx.svc, &[], ctx.labels);
        let keep = match plan.deletes.as_slice() {
            [only] => existing
                .iter()
                .any(|s| s.metadata.name.as_ref() == Some(only) && is_placeholder(s, &placeholder)),
            _ => false,
        };
        if keep {
            plan.deletes.clear();
        } else {
            plan.creates.push(placeholder);
        }
    }
    finalize(ctx, existing, &mut plan);
    plan
}

/// Turn creates into updates of slices about to be deleted (same address type, owned by the
/// Service), as upstream `finalize` does; drop creates for a Service being deleted.
fn finalize(ctx: &Ctx, existing: &[&Arc<EndpointSlice>], plan: &mut Plan) {
    let mut i = 0;
    while i < plan.deletes.len() && !plan.creates.is_empty() {
        let old = existing
            .iter()
            .find(|s| s.metadata.name.as_ref() == Some(&plan.deletes[i]));
        match old.filter(|s| s.address_type == ADDRESS_TYPE && owned_by(s, ctx.svc)) {
            Some(old) => {
                if let Some(mut slice) = plan.creates.pop() {
                    slice.metadata.name = old.metadata.name.clone();
                    slice.metadata.resource_version = old.metadata.resource_version.clone();
                    slice.metadata.annotations = old.metadata.annotations.clone();
                    plan.updates.push(slice);
                }
                plan.deletes.remove(i);
            }
            None => i += 1,
        }
    }
    if ctx.svc.metadata.deletion_timestamp.is_some() {
        plan.creates.clear();
    }
}
