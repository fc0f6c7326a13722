//! The `shared-map` nftables layout (`--nftables-layout shared-map`): one endpoint map per
//! protocol keyed by (ClusterIP, port, endpoint index), one dispatch chain per endpoint count,
//! a hairpin set, and `numgen random mod (N-k)` rules instead of anonymous vmaps on the
//! per-Service chains that remain (session affinity, NodePort/external/load-balancer IPs).
//! Every rule a Service adds then binds no set of its own, so a transaction with N Services
//! costs O(N) in the kernel instead of O(N^2) (docs/proxy.md, "Layouts").
//! Start at [`SharedMaps`] and [`uses_shared_map`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{Protocol, ServicePortName};
use crate::nft::NftConfig;
use crate::plan::{PlannedEndpoint, ServicePlan};

/// Prefix of every statement: family and table.
const T: &str = "ip kube-proxy";

/// `--nftables-layout`: how ClusterIP traffic is dispatched to endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NftLayout {
    /// Upstream kube-proxy's rule text: per-Service chains with an anonymous
    /// `numgen random mod N vmap { … }` per Service (O(N^2) transactions in the kernel).
    #[default]
    Upstream,
    /// Shared endpoint maps and dispatch chains (this module).
    SharedMap,
}

/// A `--nftables-layout` value that is neither `upstream` nor `shared-map`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --nftables-layout {0:?}: must be \"upstream\" or \"shared-map\"")]
pub struct LayoutError(pub String);

impl NftLayout {
    /// Parses the flag value.
    pub fn parse(s: &str) -> Result<NftLayout, LayoutError> {
        match s {
            "upstream" => Ok(NftLayout::Upstream),
            "shared-map" => Ok(NftLayout::SharedMap),
            other => Err(LayoutError(other.to_string())),
        }
    }

    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            NftLayout::Upstream => "upstream",
            NftLayout::SharedMap => "shared-map",
        }
    }
}

/// Protocols with an endpoint map, in declaration order.
const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

/// `endpoints-tcp`: the map from ClusterIP . port . index to endpoint IP . port.
pub fn endpoints_map(p: Protocol) -> String {
    format!("endpoints-{}", p.lower())
}

/// `dispatch-tcp-10`: picks one of 10 endpoints from the map.
pub fn dispatch_chain(p: Protocol, count: usize) -> String {
    format!("dispatch-{}-{count}", p.lower())
}

/// Hairpin set name: `endpoint IP . endpoint IP` for every endpoint behind the map.
pub const HAIRPIN_SET: &str = "hairpin";

/// Whether ClusterIP traffic of this service port goes through the shared maps: without
/// session affinity (its per-endpoint sets need per-Service chains) and not externally
/// accessible (NodePort/external/load-balancer traffic reaches the Service's chains through
/// its `external-*` chain, with other destination addresses than the map's keys).
pub fn uses_shared_map(sp: &ServicePlan) -> bool {
    sp.port.affinity_timeout_s.is_none() && !sp.port.externally_accessible()
}

/// The declarations this layout adds to the base ones.
pub fn base_declarations() -> Vec<String> {
    let mut out: Vec<String> = PROTOCOLS
        .iter()
        .map(|p| {
            let l = p.lower();
            format!(
                "add map {T} {} {{ typeof ip daddr . {l} dport . numgen random mod 1 : ip daddr . {l} dport ; comment \"ClusterIP . port . endpoint index to endpoint\" ; }}",
                endpoints_map(*p)
            )
        })
        .collect();
    out.push(format!(
        "add set {T} {HAIRPIN_SET} {{ type ipv4_addr . ipv4_addr ; comment \"endpoint . endpoint: a pod reaching itself through a Service\" ; }}"
    ));
    out
}

/// The base rule this layout adds; it must precede `nat-postrouting jump masquerading`.
pub fn hairpin_rule() -> String {
    format!(
        "add rule {T} nat-postrouting ct status dnat ip saddr . ip daddr @{HAIRPIN_SET} jump mark-for-masquerade"
    )
}

/// Writes a dispatch chain's rules (after its `add chain`).
fn write_dispatch_rules(cfg: &NftConfig, p: Protocol, count: usize, out: &mut String) {
    let chain = dispatch_chain(p, count);
    if cfg.masquerade_all {
        let _ = writeln!(out, "add rule {T} {chain} jump mark-for-masquerade");
    } else if let Some(cidr) = cfg.cluster_cidr {
        let _ = writeln!(
            out,
            "add rule {T} {chain} ip saddr != {cidr} jump mark-for-masquerade"
        );
    }
    let l = p.lower();
    let _ = writeln!(
        out,
        "add rule {T} {chain} meta l4proto {l} dnat ip to ip daddr . {l} dport . numgen random mod {count} map @{}",
        endpoints_map(p)
    );
}

/// The random pick among `eps` on a per-Service chain without an anonymous set: rule k
/// jumps with probability 1/(N-k), the last one always (upstream iptables' `--probability`
/// cascade, in nftables).
pub fn write_mod_dispatch(chain: &str, eps: &[PlannedEndpoint], out: &mut String) {
    let n = eps.len();
    for (k, ep) in eps.iter().enumerate() {
        if k + 1 < n {
            let _ = writeln!(
                out,
                "add rule {T} {chain} numgen random mod {} == 0 goto endpoint-{}",
                n - k,
                ep.nft_base()
            );
        } else {
            let _ = writeln!(out, "add rule {T} {chain} goto endpoint-{}", ep.nft_base());
        }
    }
}

/// Elements per `add element`/`delete element` command in this layout: nft parses such a
/// command faster and sends it as one message (10,000 Services' full sync: ~2.4x less nft
/// CPU than one element per command).
pub const ELEMENT_BATCH: usize = 1_000;

/// Writes `VERB element ip kube-proxy SET { e1, e2, … }` commands for `elems` (element text:
/// key, or `key : value`): one element per command (upstream's text) or up to
/// [`ELEMENT_BATCH`] per command.
pub fn write_elements(
    out: &mut String,
    verb: &str,
    set: &str,
    elems: impl Iterator<Item = impl std::fmt::Display>,
    batch: bool,
) {
    let per = if batch { ELEMENT_BATCH } else { 1 };
    let mut n = 0;
    for e in elems {
        if n == 0 {
            let _ = write!(out, "{verb} element {T} {set} {{ {e}");
        } else {
            let _ = write!(out, ", {e}");
        }
        n += 1;
        if n == per {
            out.push_str(" }\n");
            n = 0;
        }
    }
    if n > 0 {
        out.push_str(" }\n");
    }
}

/// ClusterIP, port and endpoint index: the key of an `endpoints-*` element.
type EpKey = (Ipv4Addr, u16, usize);

/// An `endpoints-*` element as nft text: the key, and the value when adding (written
/// straight into the transaction, no string per element).
struct EpElem<'a>(&'a EpKey, Option<&'a (Ipv4Addr, u16)>);

impl std::fmt::Display for EpElem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ip, port, k) = self.0;
        write!(f, "{ip} . {port} . {k}")?;
        match self.1 {
            Some((eip, eport)) => write!(f, " : {eip} . {eport}"),
            None => Ok(()),
        }
    }
}

/// A `hairpin` element: `ip . ip`.
struct Hairpin<'a>(&'a Ipv4Addr);

impl std::fmt::Display for Hairpin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{0} . {0}", self.0)
    }
}

/// The `endpoints-*` elements of one shared service port: keys `cluster_ip . port . k`, values
/// `endpoints[k]`. Keys never collide between service ports (a ClusterIP, protocol and port
/// belong to one), so no per-element owner bookkeeping is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedEndpoints {
    protocol: Protocol,
    cluster_ip: Ipv4Addr,
    port: u16,
    endpoints: Vec<(Ipv4Addr, u16)>,
}

/// What the kernel holds of this layout's shared objects, with their owners.
#[derive(Debug, Default)]
pub struct SharedMaps {
    endpoints: BTreeMap<ServicePortName, OwnedEndpoints>,
    /// Shared service ports per endpoint IP: the `hairpin` element exists while it has some.
    hairpin_refs: BTreeMap<Ipv4Addr, usize>,
    /// Service ports per dispatch chain; a chain exists exactly while it has some.
    dispatch_refs: BTreeMap<(Protocol, usize), usize>,
}

/// Element changes of the shared objects in one transaction.
#[derive(Debug, Default)]
pub struct SharedDiffs {
    endpoints: BTreeMap<Protocol, EndpointDiff>,
    hairpin_deleted: Vec<Ipv4Addr>,
    hairpin_added: Vec<Ipv4Addr>,
}

#[derive(Debug, Default)]
struct EndpointDiff {
    deleted: Vec<EpKey>,
    added: Vec<(EpKey, (Ipv4Addr, u16))>,
}

/// Dispatch chains a transaction created and those no service port uses any more.
#[derive(Debug, Default)]
pub struct DispatchChanges {
    pub created: Vec<String>,
    pub unused: Vec<String>,
}

impl SharedMaps {
    /// Forgets everything (full sync: the maps and sets were flushed or recreated).
    pub fn clear(&mut self) {
        *self = SharedMaps::default();
    }

    /// Every dispatch chain that exists.
    pub fn chains(&self) -> Vec<String> {
        self.dispatch_refs
            .keys()
            .map(|(p, n)| dispatch_chain(*p, *n))
            .collect()
    }

    /// The dispatch chain `sp`'s ClusterIP element goes to, if it uses the shared map and
    /// has endpoints.
    pub fn dispatch_for(sp: &ServicePlan) -> Option<(Protocol, usize)> {
        (uses_shared_map(sp) && !sp.endpoints.is_empty())
            .then_some((sp.port.name.protocol, sp.endpoints.len()))
    }

    /// Replaces what `name` owns of the shared objects with what `sp` (None: removed) needs;
    /// element changes go to `diffs`, dispatch chain refcounts to `touched`
    /// (key -> refcount before this transaction touched it).
    pub fn claim(
        &mut self,
        name: &ServicePortName,
        sp: Option<&ServicePlan>,
        diffs: &mut SharedDiffs,
        touched: &mut BTreeMap<(Protocol, usize), usize>,
    ) {
        let shared = sp.filter(|sp| uses_shared_map(sp));
        let new = shared.map(|sp| OwnedEndpoints {
            protocol: sp.port.name.protocol,
            cluster_ip: sp.port.cluster_ip,
            port: sp.port.port,
            endpoints: sp
                .endpoints
                .iter()
                .map(|e| (e.endpoint.ip, e.endpoint.port))
                .collect(),
        });
        let old = self.endpoints.remove(name);
        let (old_dispatch, new_dispatch) = (dispatch_of(old.as_ref()), dispatch_of(new.as_ref()));
        if old_dispatch != new_dispatch {
            if let Some(k) = old_dispatch {
                let refs = self.dispatch_refs.entry(k).or_default();
                touched.entry(k).or_insert(*refs);
                *refs = refs.saturating_sub(1);
            }
            if let Some(k) = new_dispatch {
                let refs = self.dispatch_refs.entry(k).or_default();
                touched.entry(k).or_insert(*refs);
                *refs += 1;
            }
        }
        if old != new {
            diff_endpoints(old.as_ref(), new.as_ref(), diffs);
            self.update_hairpin(old.as_ref(), new.as_ref(), diffs);
        }
        if let Some(new) = new {
            self.endpoints.insert(name.clone(), new);
        }
    }

    /// Moves the hairpin refcounts from `old`'s endpoint IPs to `new`'s; an element is added
    /// when its first user comes and deleted when its last one goes.
    fn update_hairpin(
        &mut self,
        old: Option<&OwnedEndpoints>,
        new: Option<&OwnedEndpoints>,
        diffs: &mut SharedDiffs,
    ) {
        // Each endpoint IP comes once per service port: a short list does.
        let mut before: Vec<(Ipv4Addr, usize)> = Vec::new();
        for (owned, up) in [(old, false), (new, true)] {
            for (ip, _) in owned.iter().flat_map(|o| &o.endpoints) {
                let refs = self.hairpin_refs.entry(*ip).or_default();
                if !before.iter().any(|(b, _)| b == ip) {
                    before.push((*ip, *refs));
                }
                *refs = if up {
                    *refs + 1
                } else {
                    refs.saturating_sub(1)
                };
            }
        }
        for (ip, was) in before {
            let now = self.hairpin_refs.get(&ip).copied().unwrap_or(0);
            if now == 0 {
                self.hairpin_refs.remove(&ip);
            }
            if was > 0 && now == 0 {
                diffs.hairpin_deleted.push(ip);
            } else if was == 0 && now > 0 {
                diffs.hairpin_added.push(ip);
            }
        }
    }

    /// Writes the dispatch chains `touched` created (refcount 0 -> more) and returns them
    /// with the ones no longer used (more -> 0, dropped from the refcounts). `flush`: a
    /// created chain may still exist, flushed and waiting for deletion.
    pub fn write_dispatch_changes(
        &mut self,
        cfg: &NftConfig,
        touched: BTreeMap<(Protocol, usize), usize>,
        flush: bool,
        out: &mut String,
    ) -> DispatchChanges {
        let mut changes = DispatchChanges::default();
        for ((p, n), before) in touched {
            let now = self.dispatch_refs.get(&(p, n)).copied().unwrap_or(0);
            let chain = dispatch_chain(p, n);
            if before == 0 && now > 0 {
                let _ = writeln!(out, "add chain {T} {chain}");
                if flush {
                    let _ = writeln!(out, "flush chain {T} {chain}");
                }
                write_dispatch_rules(cfg, p, n, out);
                changes.created.push(chain);
            } else if before > 0 && now == 0 {
                changes.unused.push(chain);
            }
            if now == 0 {
                self.dispatch_refs.remove(&(p, n));
            }
        }
        changes
    }
}

/// The dispatch chain a shared service port's ClusterIP element goes to (none without
/// endpoints).
fn dispatch_of(owned: Option<&OwnedEndpoints>) -> Option<(Protocol, usize)> {
    owned
        .filter(|o| !o.endpoints.is_empty())
        .map(|o| (o.protocol, o.endpoints.len()))
}

/// The `endpoints-*` element deletes and adds from `old` to `new`: only indices whose key or
/// endpoint changed (a changed value is a delete then an add, as elsewhere).
fn diff_endpoints(
    old: Option<&OwnedEndpoints>,
    new: Option<&OwnedEndpoints>,
    diffs: &mut SharedDiffs,
) {
    let same_key = match (old, new) {
        (Some(o), Some(n)) => {
            (o.protocol, o.cluster_ip, o.port) == (n.protocol, n.cluster_ip, n.port)
        }
        _ => false,
    };
    let len = |o: Option<&OwnedEndpoints>| o.map_or(0, |o| o.endpoints.len());
    for k in 0..len(old).max(len(new)) {
        let o = old.and_then(|o| o.endpoints.get(k).map(|e| (o, *e)));
        let n = new.and_then(|n| n.endpoints.get(k).map(|e| (n, *e)));
        if same_key && o.map(|x| x.1) == n.map(|x| x.1) {
            continue;
        }
        if let Some((o, _)) = o {
            let d = diffs.endpoints.entry(o.protocol).or_default();
            d.deleted.push((o.cluster_ip, o.port, k));
        }
        if let Some((n, ep)) = n {
            let d = diffs.endpoints.entry(n.protocol).or_default();
            d.added.push(((n.cluster_ip, n.port, k), ep));
        }
    }
}

impl SharedDiffs {
    /// Writes the deletes (`deletes`) or the adds of the shared maps and the hairpin set.
    pub fn write(&self, out: &mut String, deletes: bool) {
        for (p, d) in &self.endpoints {
            let map = endpoints_map(*p);
            if deletes {
                let keys = d.deleted.iter().map(|k| EpElem(k, None));
                write_elements(out, "delete", &map, keys, true);
            } else {
                let elems = d.added.iter().map(|(k, ep)| EpElem(k, Some(ep)));
                write_elements(out, "add", &map, elems, true);
            }
        }
        if deletes {
            let keys = self.hairpin_deleted.iter().map(Hairpin);
            write_elements(out, "delete", HAIRPIN_SET, keys, true);
        } else {
            let elems = self.hairpin_added.iter().map(Hairpin);
            write_elements(out, "add", HAIRPIN_SET, elems, true);
        }
    }
}

#[cfg(test)]
#[path = "nft_shared_tests.rs"]
mod tests;
