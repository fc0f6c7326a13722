//! nftables renderer: turns the [`Plan`] into `nft -f` transactions in upstream kube-proxy's
//! format (table `ip kube-proxy`: ClusterIPs, NodePorts, external and load-balancer IPs with
//! their `external-`/`local-`/`firewall-` chains), as a full sync or a partial sync of changed
//! service ports, with stale chains flushed at once and deleted >= 1 s later. Start at
//! [`NftRenderer`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::elements::{ElementDiff, ElementStore};
use crate::model::{Cidr, Moment, Protocol, ServicePortName};
use crate::nft_shared::{self, SharedDiffs, SharedMaps};
pub use crate::nft_shared::{LayoutError, NftLayout};
use crate::plan::{NoEndpoints, Plan, PlannedEndpoint, ServicePlan};

/// Table name (nftables proxier.go `kubeProxyTable`).
pub const TABLE: &str = "kube-proxy";
/// Prefix of every statement: family and table.
const T: &str = "ip kube-proxy";
/// Default masquerade bit: 14, mark 0x4000 (pkg/proxy/apis/config/v1alpha1/defaults.go).
pub const DEFAULT_MASQUERADE_BIT: u8 = 14;
/// Stale chains are deleted at least this long after they were flushed, because kernels
/// before 6.2 refuse to delete a chain just unreferenced from a map (nftables proxier.go).
pub const STALE_CHAIN_DELETE_DELAY_MS: Duration = Duration::from_millis(1_000);

/// Renderer configuration (upstream test conventions in parentheses).
#[derive(Debug, Clone)]
pub struct NftConfig {
    /// Pod/cluster CIDR: traffic to a ClusterIP from outside it is masqueraded
    /// (`ip saddr != 10.0.0.0/8`). `None` = no local-traffic detector.
    pub cluster_cidr: Option<Cidr>,
    /// Service CIDRs: unallocated addresses in them are dropped (`172.30.0.0/16`).
    pub service_cidrs: Vec<Cidr>,
    /// `--masquerade-bit` (14).
    pub masquerade_bit: u8,
    /// `--masquerade-all`: masquerade all ClusterIP traffic.
    pub masquerade_all: bool,
    /// Addresses in the `nodeport-ips` set: where NodePorts are served. Upstream's nftables
    /// default `--nodeport-addresses primary` = the node's primary IP.
    pub nodeport_ips: Vec<Ipv4Addr>,
    /// The node's primary IP: a `loadBalancerSourceRanges` entry containing it also admits
    /// traffic from the load-balancer IPs (upstream `nodeIP`).
    pub node_ip: Option<Ipv4Addr>,
    /// `--nftables-layout` (upstream).
    pub layout: NftLayout,
}

impl Default for NftConfig {
    fn default() -> Self {
        NftConfig {
            cluster_cidr: None,
            service_cidrs: Vec::new(),
            masquerade_bit: DEFAULT_MASQUERADE_BIT,
            masquerade_all: false,
            nodeport_ips: Vec::new(),
            node_ip: None,
            layout: NftLayout::Upstream,
        }
    }
}

impl NftConfig {
    /// The masquerade mark as upstream prints it (`0x4000`).
    pub fn mark(&self) -> String {
        format!("{:#x}", 1u32 << u32::from(self.masquerade_bit.min(31)))
    }
}

/// Chains and sets (with their `add set` line) one service port owns in the kernel.
#[derive(Debug, Clone, Default)]
struct Owned {
    chains: Vec<String>,
    sets: Vec<(String, String)>,
}

type Dest = (Ipv4Addr, Protocol, u16);
/// A NodePort: protocol and port.
type NodePortKey = (Protocol, u16);

/// Renders transactions and remembers what the kernel holds after each (optimistically; a
/// failed transaction must be followed by a full sync, which resets this state).
#[derive(Debug, Default)]
pub struct NftRenderer {
    cfg: NftConfig,
    owned: BTreeMap<ServicePortName, Owned>,
    cluster_ips: ElementStore<Ipv4Addr>,
    service_ips: ElementStore<Dest>,
    no_endpoint_services: ElementStore<Dest>,
    firewall_ips: ElementStore<Dest>,
    service_nodeports: ElementStore<NodePortKey>,
    no_endpoint_nodeports: ElementStore<NodePortKey>,
    /// Flushed chains waiting for deletion, with the time they may be deleted.
    stale: BTreeMap<String, Moment>,
    /// A full sync created the table: later full syncs keep it (and the affinity sets).
    table_created: bool,
    /// The shared-map layout's maps, hairpin set and dispatch chains.
    shared: SharedMaps,
}

impl NftRenderer {
    pub fn new(cfg: NftConfig) -> NftRenderer {
        NftRenderer {
            cfg,
            ..Default::default()
        }
    }

    /// Full sync at time 0 (tests; the syncer uses [`NftRenderer::render_full_at`]).
    pub fn render_full(&mut self, plan: &Plan) -> String {
        self.render_full_at(plan, Moment::EPOCH)
    }

    /// Full sync. The first one recreates the table (`add table` + `delete table` clears
    /// leftovers of an earlier run); later ones keep it, as upstream's proxier does: base
    /// chains, sets and maps are flushed and refilled, service chains re-added and flushed,
    /// chains no longer used flushed now and deleted >= 1 s after `now`, unused affinity sets
    /// deleted. Affinity sets still in use are not touched, so ClientIP affinity survives.
    pub fn render_full_at(&mut self, plan: &Plan, now: Moment) -> String {
        let mut out = String::with_capacity(plan.endpoint_count() * 360 + plan.len() * 600 + 8192);
        if !self.table_created {
            let _ = writeln!(out, "add table {T}");
            let _ = writeln!(out, "delete table {T}");
            self.render_full_body(plan, &mut out);
            self.table_created = true;
            return out;
        }
        let mut old_chains: BTreeSet<String> = self.stale.keys().cloned().collect();
        let mut old_sets: BTreeMap<String, String> = BTreeMap::new();
        for owned in self.owned.values() {
            old_chains.extend(owned.chains.iter().cloned());
            old_sets.extend(owned.sets.iter().map(|(s, d)| (s.clone(), d.clone())));
        }
        old_chains.extend(self.shared.chains());
        self.render_body(plan, true, &mut out);
        let mut new_chains: BTreeSet<String> = self.shared.chains().into_iter().collect();
        for owned in self.owned.values() {
            new_chains.extend(owned.chains.iter().cloned());
            for (s, _) in &owned.sets {
                old_sets.remove(s);
            }
        }
        for c in old_chains.difference(&new_chains) {
            // `add` first: a flush of a chain that is not there would fail the transaction.
            let _ = writeln!(out, "add chain {T} {c}");
            let _ = writeln!(out, "flush chain {T} {c}");
            self.stale
                .insert(c.clone(), now + STALE_CHAIN_DELETE_DELAY_MS);
        }
        for (s, decl) in old_sets {
            let _ = writeln!(out, "{decl}");
            let _ = writeln!(out, "delete set {T} {s}");
        }
        out
    }

    /// The full-sync text without the table reset (what upstream's fake `Dump()` shows).
    pub fn render_full_body(&mut self, plan: &Plan, out: &mut String) {
        self.render_body(plan, false, out);
    }

    /// Everything a full sync writes; `flush`: the table exists, empty what it holds first.
    fn render_body(&mut self, plan: &Plan, flush: bool, out: &mut String) {
        self.owned.clear();
        self.cluster_ips.clear();
        self.service_ips.clear();
        self.no_endpoint_services.clear();
        self.firewall_ips.clear();
        self.service_nodeports.clear();
        self.no_endpoint_nodeports.clear();
        self.stale.clear();
        self.shared.clear();
        write_base(&self.cfg, flush, out);
        let mut diffs = Diffs::default();
        let mut dispatch = BTreeMap::new();
        for sp in plan.services() {
            if !self.is_shared(sp) {
                let owned = write_service_chains(&self.cfg, sp, flush, out);
                self.owned.insert(sp.port.name.clone(), owned);
            }
            self.claim_elements(sp.port.name.clone(), Some(sp), &mut diffs, &mut dispatch);
        }
        self.shared
            .write_dispatch_changes(&self.cfg, dispatch, flush, out);
        diffs.write(out, self.cfg.layout == NftLayout::SharedMap);
    }

    /// `sp` goes through the shared maps (shared-map layout only).
    fn is_shared(&self, sp: &ServicePlan) -> bool {
        self.cfg.layout == NftLayout::SharedMap && nft_shared::uses_shared_map(sp)
    }

    /// Partial sync of the `affected` service ports: their chains are rewritten, their
    /// elements diffed against the cache; chains no longer used are flushed now and queued
    /// for deletion at `now + 1 s` (see [`NftRenderer::render_stale_deletes`]).
    pub fn render_partial(
        &mut self,
        plan: &Plan,
        affected: &BTreeSet<ServicePortName>,
        now: Moment,
    ) -> String {
        let mut out = String::new();
        let mut diffs = Diffs::default();
        let mut stale_chains = Vec::new();
        let mut stale_sets = Vec::new();
        let mut dispatch = BTreeMap::new();
        for name in affected {
            let old = self.owned.remove(name).unwrap_or_default();
            let sp = plan.get(name);
            let new = match sp {
                Some(sp) if !self.is_shared(sp) => {
                    write_service_chains(&self.cfg, sp, true, &mut out)
                }
                _ => Owned::default(),
            };
            for c in &new.chains {
                self.stale.remove(c);
            }
            stale_chains.extend(old.chains.into_iter().filter(|c| !new.chains.contains(c)));
            stale_sets.extend(
                old.sets
                    .into_iter()
                    .map(|(s, _)| s)
                    .filter(|s| !new.sets.iter().any(|(n, _)| n == s)),
            );
            if !new.chains.is_empty() || !new.sets.is_empty() {
                self.owned.insert(name.clone(), new);
            }
            self.claim_elements(name.clone(), sp, &mut diffs, &mut dispatch);
        }
        let changes = self
            .shared
            .write_dispatch_changes(&self.cfg, dispatch, true, &mut out);
        for c in &changes.created {
            self.stale.remove(c);
        }
        stale_chains.extend(changes.unused);
        diffs.write(&mut out, self.cfg.layout == NftLayout::SharedMap);
        for c in stale_chains {
            let _ = writeln!(out, "flush chain {T} {c}");
            self.stale.insert(c, now + STALE_CHAIN_DELETE_DELAY_MS);
        }
        for s in stale_sets {
            let _ = writeln!(out, "delete set {T} {s}");
        }
        out
    }

    /// The separate transaction deleting stale chains whose delay has passed, if any.
    pub fn render_stale_deletes(&mut self, now: Moment) -> Option<String> {
        let due: Vec<String> = self
            .stale
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(c, _)| c.clone())
            .collect();
        if due.is_empty() {
            return None;
        }
        let mut out = String::new();
        for c in due {
            self.stale.remove(&c);
            let _ = writeln!(out, "delete chain {T} {c}");
        }
        Some(out)
    }

    /// When the next stale-chain deletion is due.
    pub fn next_stale_due(&self) -> Option<Moment> {
        self.stale.values().min().copied()
    }

    /// Chains flushed and waiting for deletion, with their due time.
    pub fn stale_chains(&self) -> impl Iterator<Item = (&str, Moment)> {
        self.stale.iter().map(|(c, t)| (c.as_str(), *t))
    }

    fn claim_elements(
        &mut self,
        name: ServicePortName,
        sp: Option<&ServicePlan>,
        diffs: &mut Diffs,
        dispatch: &mut BTreeMap<(Protocol, usize), usize>,
    ) {
        let layout = self.cfg.layout;
        let e = sp.map(|sp| elements_of(sp, layout)).unwrap_or_default();
        if layout == NftLayout::SharedMap {
            self.shared.claim(&name, sp, &mut diffs.shared, dispatch);
        }
        self.cluster_ips
            .set_owner(&name, e.cluster_ips, &mut diffs.cluster_ips);
        self.service_ips
            .set_owner(&name, e.service_ips, &mut diffs.service_ips);
        self.no_endpoint_services.set_owner(
            &name,
            e.no_endpoint_services,
            &mut diffs.no_endpoint_services,
        );
        self.firewall_ips
            .set_owner(&name, e.firewall_ips, &mut diffs.firewall_ips);
        self.service_nodeports
            .set_owner(&name, e.service_nodeports, &mut diffs.service_nodeports);
        self.no_endpoint_nodeports.set_owner(
            &name,
            e.no_endpoint_nodeports,
            &mut diffs.no_endpoint_nodeports,
        );
    }
}

/// The set and map elements one service port wants, with the text after the key.
#[derive(Default)]
struct Elements {
    cluster_ips: Vec<(Ipv4Addr, String)>,
    service_ips: Vec<(Dest, String)>,
    no_endpoint_services: Vec<(Dest, String)>,
    firewall_ips: Vec<(Dest, String)>,
    service_nodeports: Vec<(NodePortKey, String)>,
    no_endpoint_nodeports: Vec<(NodePortKey, String)>,
}

fn verdict_text(v: NoEndpoints) -> &'static str {
    match v {
        NoEndpoints::Reject => "goto reject-chain",
        NoEndpoints::Drop => "drop",
    }
}

/// Upstream's element writes of `syncProxyRules` for one service port: the ClusterIP, the
/// external and load-balancer IPs, the firewall and the NodePort, each to its chain or to
/// its no-endpoints verdict. With the shared-map layout a shared service port's ClusterIP
/// goes to its dispatch chain.
fn elements_of(sp: &ServicePlan, layout: NftLayout) -> Elements {
    let mut e = Elements::default();
    let (proto, port) = (sp.port.name.protocol, sp.port.port);
    let comment = |v: NoEndpoints| format!(" comment \"{}\" : {}", sp.port.name, verdict_text(v));
    e.cluster_ips.push((sp.port.cluster_ip, String::new()));
    let cluster_dest = (sp.port.cluster_ip, proto, port);
    match sp.no_endpoints {
        None => {
            let chain = match SharedMaps::dispatch_for(sp) {
                Some((p, n)) if layout == NftLayout::SharedMap => nft_shared::dispatch_chain(p, n),
                _ => sp.nft_chain(),
            };
            e.service_ips
                .push((cluster_dest, format!(" : goto {chain}")));
        }
        Some(v) => e.no_endpoint_services.push((cluster_dest, comment(v))),
    }
    let to_external = format!(" : goto {}", sp.nft_external_chain());
    let external_dests = sp
        .port
        .external_ips
        .iter()
        .chain(&sp.port.load_balancer_ips);
    for ip in external_dests {
        let dest = (*ip, proto, port);
        if sp.has_endpoints {
            e.service_ips.push((dest, to_external.clone()));
        }
        if let Some(v) = sp.external_no_endpoints {
            e.no_endpoint_services.push((dest, comment(v)));
        }
    }
    if uses_firewall(sp) {
        for ip in &sp.port.load_balancer_ips {
            e.firewall_ips.push((
                (*ip, proto, port),
                format!(" : goto {}", sp.nft_firewall_chain()),
            ));
        }
    }
    if let Some(node_port) = sp.port.node_port {
        if sp.has_endpoints {
            e.service_nodeports.push(((proto, node_port), to_external));
        }
        if let Some(v) = sp.external_no_endpoints {
            e.no_endpoint_nodeports
                .push(((proto, node_port), comment(v)));
        }
    }
    e
}

/// Load-balancer IPs with `loadBalancerSourceRanges` (nftables: even without endpoints).
fn uses_firewall(sp: &ServicePlan) -> bool {
    !sp.port.load_balancer_ips.is_empty() && !sp.port.load_balancer_source_ranges.is_empty()
}

#[derive(Default)]
struct Diffs {
    cluster_ips: ElementDiff<Ipv4Addr>,
    service_ips: ElementDiff<Dest>,
    no_endpoint_services: ElementDiff<Dest>,
    firewall_ips: ElementDiff<Dest>,
    service_nodeports: ElementDiff<NodePortKey>,
    no_endpoint_nodeports: ElementDiff<NodePortKey>,
    shared: SharedDiffs,
}

fn dest_str((ip, proto, port): &Dest) -> String {
    format!("{ip} . {} . {port}", proto.lower())
}

fn node_port_str((proto, port): &NodePortKey) -> String {
    format!("{} . {port}", proto.lower())
}

/// Writes one map's deletes (`deletes`) or adds.
fn write_diff<K: Ord>(
    out: &mut String,
    map: &str,
    d: &ElementDiff<K>,
    key: impl Fn(&K) -> String,
    (deletes, batch): (bool, bool),
) {
    if deletes {
        let elems = d.deleted().map(&key);
        nft_shared::write_elements(out, "delete", map, elems, batch);
    } else {
        let elems = d.added().map(|(k, v)| format!("{}{v}", key(k)));
        nft_shared::write_elements(out, "add", map, elems, batch);
    }
}

impl Diffs {
    /// Deletes first (they may free keys re-added below), then adds; `batch`: several
    /// elements per command (shared-map layout).
    fn write(&self, out: &mut String, batch: bool) {
        for deletes in [true, false] {
            let mode = (deletes, batch);
            write_diff(
                out,
                "cluster-ips",
                &self.cluster_ips,
                Ipv4Addr::to_string,
                mode,
            );
            write_diff(out, "service-ips", &self.service_ips, dest_str, mode);
            let nes = &self.no_endpoint_services;
            write_diff(out, "no-endpoint-services", nes, dest_str, mode);
            write_diff(out, "firewall-ips", &self.firewall_ips, dest_str, mode);
            let snp = &self.service_nodeports;
            write_diff(out, "service-nodeports", snp, node_port_str, mode);
            let nen = &self.no_endpoint_nodeports;
            write_diff(out, "no-endpoint-nodeports", nen, node_port_str, mode);
            self.shared.write(out, deletes);
        }
    }
}

/// Writes the chains (and affinity sets) of one service port, as upstream's
/// `syncProxyRules`: endpoint chains first so every `goto` target exists, then the Cluster
/// and Local policy chains, the external chain and the firewall chain. `flush` re-adds a
/// chain that may already exist (partial sync).
fn write_service_chains(cfg: &NftConfig, sp: &ServicePlan, flush: bool, out: &mut String) -> Owned {
    let mut owned = Owned::default();
    let open_chain = |out: &mut String, owned: &mut Owned, name: &str| {
        let _ = writeln!(out, "add chain {T} {name}");
        if flush {
            let _ = writeln!(out, "flush chain {T} {name}");
        }
        owned.chains.push(name.to_string());
    };
    if uses_firewall(sp) {
        let chain = sp.nft_firewall_chain();
        open_chain(out, &mut owned, &chain);
        let sources = firewall_sources(cfg, sp);
        let _ = writeln!(out, "add rule {T} {chain} ip saddr != {{ {sources} }} drop");
    }
    if !sp.has_endpoints {
        return owned;
    }
    let proto = sp.port.name.protocol.lower();
    let affinity = sp.port.affinity_timeout_s;
    for ep in sp.reachable_endpoints() {
        let e = &ep.endpoint;
        if let Some(timeout) = affinity {
            let set = format!("affinity-{}", ep.nft_base());
            let decl = format!(
                "add set {T} {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"
            );
            let _ = writeln!(out, "{decl}");
            owned.sets.push((set, decl));
        }
        let chain = format!("endpoint-{}", ep.nft_base());
        open_chain(out, &mut owned, &chain);
        let _ = writeln!(
            out,
            "add rule {T} {chain} ip saddr {} jump mark-for-masquerade",
            e.ip
        );
        if affinity.is_some() {
            let _ = writeln!(
                out,
                "add rule {T} {chain} update @affinity-{} {{ ip saddr }}",
                ep.nft_base()
            );
        }
        let _ = writeln!(
            out,
            "add rule {T} {chain} meta l4proto {proto} dnat to {}:{}",
            e.ip, e.port
        );
    }
    let internal = sp.nft_chain();
    for (chain, eps) in [
        (sp.nft_cluster_chain(), &sp.cluster_endpoints),
        (sp.nft_local_chain(), &sp.local_endpoints),
    ] {
        if eps.is_empty() {
            continue;
        }
        open_chain(out, &mut owned, &chain);
        if chain == internal {
            write_internal_masquerade(cfg, sp, &chain, out);
        }
        write_endpoint_dispatch(cfg.layout, sp, &chain, eps, out);
    }
    if sp.uses_external_chain() {
        let chain = sp.nft_external_chain();
        open_chain(out, &mut owned, &chain);
        write_external_rules(cfg, sp, &chain, out);
    }
    owned
}

/// Masquerades ClusterIP traffic from outside the cluster (or all of it with
/// `--masquerade-all`).
fn write_internal_masquerade(cfg: &NftConfig, sp: &ServicePlan, chain: &str, out: &mut String) {
    let cip = sp.port.cluster_ip;
    let proto = sp.port.name.protocol.lower();
    if cfg.masquerade_all {
        let _ = writeln!(
            out,
            "add rule {T} {chain} ip daddr {cip} {proto} dport {} jump mark-for-masquerade",
            sp.port.port
        );
    } else if let Some(cidr) = cfg.cluster_cidr {
        let _ = writeln!(
            out,
            "add rule {T} {chain} ip daddr {cip} ip saddr != {cidr} jump mark-for-masquerade"
        );
    }
}

/// Affinity lookups, then a random pick among `eps` (upstream `writeServiceToEndpointRules`;
/// the shared-map layout picks with `numgen random mod (N-k)` rules instead of a vmap).
fn write_endpoint_dispatch(
    layout: NftLayout,
    sp: &ServicePlan,
    chain: &str,
    eps: &[PlannedEndpoint],
    out: &mut String,
) {
    if sp.port.affinity_timeout_s.is_some() {
        for ep in eps {
            let b = ep.nft_base();
            let _ = writeln!(
                out,
                "add rule {T} {chain} ip saddr @affinity-{b} goto endpoint-{b}"
            );
        }
    }
    if layout == NftLayout::SharedMap {
        nft_shared::write_mod_dispatch(chain, eps, out);
        return;
    }
    let _ = write!(
        out,
        "add rule {T} {chain} numgen random mod {} vmap {{ ",
        eps.len()
    );
    for (i, ep) in eps.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}{i} : goto endpoint-{} ", ep.nft_base());
    }
    out.push_str("}\n");
}

/// The external chain: with `Cluster` policy masquerade everything; with `Local` keep the
/// client's address, but send pod traffic and the node's own traffic (masqueraded) to the
/// Cluster policy chain; then on to the policy chain if it has endpoints.
fn write_external_rules(cfg: &NftConfig, sp: &ServicePlan, chain: &str, out: &mut String) {
    let cluster = sp.nft_cluster_chain();
    if !sp.port.external_policy_local() {
        let _ = writeln!(out, "add rule {T} {chain} jump mark-for-masquerade");
    } else {
        if let Some(cidr) = cfg.cluster_cidr {
            let _ = writeln!(
                out,
                "add rule {T} {chain} ip saddr {cidr} goto {cluster} comment \"short-circuit pod traffic\""
            );
        }
        let _ = writeln!(
            out,
            "add rule {T} {chain} fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\""
        );
        let _ = writeln!(
            out,
            "add rule {T} {chain} fib saddr type local goto {cluster} comment \"short-circuit local traffic\""
        );
    }
    if sp.has_external_endpoints() {
        let policy = sp.nft_external_policy_chain();
        let _ = writeln!(out, "add rule {T} {chain} goto {policy}");
    }
}

/// `loadBalancerSourceRanges`, plus the load-balancer IPs when a range holds the node's IP.
fn firewall_sources(cfg: &NftConfig, sp: &ServicePlan) -> String {
    let ranges = &sp.port.load_balancer_source_ranges;
    let mut sources: Vec<String> = ranges.iter().map(Cidr::to_string).collect();
    if cfg
        .node_ip
        .is_some_and(|ip| ranges.iter().any(|r| r.contains(ip)))
    {
        sources.extend(sp.port.load_balancer_ips.iter().map(Ipv4Addr::to_string));
    }
    sources.join(" , ")
}

/// The table, sets, maps, base chains and static rules (upstream's `baseRules`, newest
/// generation with `filter-*-pre-dnat` chains).
/// `flush`: the table exists; empty every base chain, set and map before refilling it.
fn write_base(cfg: &NftConfig, flush: bool, out: &mut String) {
    let mark = cfg.mark();
    let _ = writeln!(
        out,
        "add table {T} {{ comment \"rules for kube-proxy\" ; }}"
    );
    let shared = cfg.layout == NftLayout::SharedMap;
    let extra = if shared {
        nft_shared::base_declarations()
    } else {
        Vec::new()
    };
    let declarations = BASE_DECLARATIONS
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str));
    for line in declarations.clone() {
        let _ = writeln!(out, "{line}");
    }
    if flush {
        for line in declarations {
            // "add chain ip kube-proxy NAME ..." -> "flush chain ip kube-proxy NAME".
            let mut words = line.split(' ');
            if let (Some("add"), Some(what), Some(_), Some(_), Some(name)) = (
                words.next(),
                words.next(),
                words.next(),
                words.next(),
                words.next(),
            ) {
                let _ = writeln!(out, "flush {what} {T} {name}");
            }
        }
    }
    let _ = writeln!(
        out,
        "add rule {T} cluster-ips-check ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\""
    );
    if !cfg.service_cidrs.is_empty() {
        let cidrs: Vec<String> = cfg.service_cidrs.iter().map(Cidr::to_string).collect();
        let _ = writeln!(
            out,
            "add rule {T} cluster-ips-check ip daddr {{ {} }} drop comment \"Drop traffic to unallocated ClusterIPs\"",
            cidrs.join(", ")
        );
    }
    if shared {
        // Before `nat-postrouting jump masquerading`, which acts on the mark.
        let _ = writeln!(out, "{}", nft_shared::hairpin_rule());
    }
    for line in BASE_RULES {
        let _ = writeln!(out, "add rule {T} {line}");
    }
    let _ = writeln!(
        out,
        "add rule {T} mark-for-masquerade mark set mark or {mark}"
    );
    let _ = writeln!(out, "add rule {T} masquerading mark and {mark} == 0 return");
    let _ = writeln!(out, "add rule {T} masquerading mark set mark xor {mark}");
    let _ = writeln!(out, "add rule {T} masquerading masquerade fully-random");
    for ip in &cfg.nodeport_ips {
        let _ = writeln!(out, "add element {T} nodeport-ips {{ {ip} }}");
    }
}

const BASE_DECLARATIONS: &[&str] = &[
    "add set ip kube-proxy cluster-ips { type ipv4_addr ; comment \"Active ClusterIPs\" ; }",
    "add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment \"IPs that accept NodePort traffic\" ; }",
    "add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"destinations that are subject to LoadBalancerSourceRanges\" ; }",
    "add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to service nodeports with no endpoints\" ; }",
    "add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to services with no endpoints\" ; }",
    "add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }",
    "add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }",
    "add chain ip kube-proxy cluster-ips-check",
    "add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }",
    "add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }",
    "add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }",
    "add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }",
    "add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }",
    "add chain ip kube-proxy firewall-check",
    "add chain ip kube-proxy mark-for-masquerade",
    "add chain ip kube-proxy masquerading",
    "add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }",
    "add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }",
    "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }",
    "add chain ip kube-proxy nodeport-endpoints-check",
    "add chain ip kube-proxy reject-chain { comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }",
    "add chain ip kube-proxy services",
    "add chain ip kube-proxy service-endpoints-check",
];

const BASE_RULES: &[&str] = &[
    "filter-prerouting-pre-dnat ct state new jump firewall-check",
    "filter-forward ct state new jump service-endpoints-check",
    "filter-forward ct state new jump cluster-ips-check",
    "filter-input ct state new jump nodeport-endpoints-check",
    "filter-input ct state new jump service-endpoints-check",
    "filter-output ct state new jump service-endpoints-check",
    "filter-output-pre-dnat ct state new jump firewall-check",
    "filter-output ct state new jump cluster-ips-check",
    "firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
    "nat-output jump services",
    "nat-postrouting jump masquerading",
    "nat-prerouting jump services",
    "nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",
    "reject-chain reject",
    "services ip daddr . meta l4proto . th dport vmap @service-ips",
    "services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
    "service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
];

#[cfg(test)]
#[path = "nft_tests.rs"]
pub(crate) mod tests;
