//! iptables renderer: `iptables-restore --noflush` input (filter and nat tables) from the
//! same [`Plan`], with upstream kube-proxy's chain names and rule text (KUBE-SVC/SVL/EXT/FW/
//! SEP, KUBE-NODEPORTS, KUBE-EXTERNAL-SERVICES, KUBE-PROXY-FIREWALL); partial restores
//! rewrite only changed service chains (KEP-3453). Start at [`IptablesRenderer`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::model::{Cidr, ServicePortName};
use crate::nft::DEFAULT_MASQUERADE_BIT;
use crate::plan::{NoEndpoints, Plan, PlannedEndpoint, ServicePlan};

/// Above this many endpoints, per-endpoint comments are dropped ("large cluster mode",
/// iptables proxier.go `largeClusterEndpointsThreshold`).
pub const LARGE_CLUSTER_ENDPOINTS_THRESHOLD: usize = 1000;

/// Renderer configuration.
#[derive(Debug, Clone)]
pub struct IptablesConfig {
    /// Local-traffic detector: ClusterIP traffic from outside it is masqueraded.
    pub cluster_cidr: Option<Cidr>,
    pub masquerade_bit: u8,
    pub masquerade_all: bool,
    /// Append `--random-fully` to MASQUERADE (when the iptables binary supports it).
    pub random_fully: bool,
    /// `--nodeport-addresses` resolved to this node's addresses; empty = every local address
    /// (upstream's iptables default, `-m addrtype --dst-type LOCAL`).
    pub nodeport_ips: Vec<std::net::Ipv4Addr>,
    /// `--iptables-localhost-nodeports` (upstream default true, which also sets
    /// `route_localnet`); this proxy runs with false: no NodePorts on 127.0.0.0/8.
    pub localhost_nodeports: bool,
    /// The node's primary IP (a `loadBalancerSourceRanges` entry containing it also admits
    /// the load-balancer IPs as sources).
    pub node_ip: Option<std::net::Ipv4Addr>,
}

impl Default for IptablesConfig {
    fn default() -> Self {
        IptablesConfig {
            cluster_cidr: None,
            masquerade_bit: DEFAULT_MASQUERADE_BIT,
            masquerade_all: false,
            random_fully: false,
            nodeport_ips: Vec::new(),
            localhost_nodeports: false,
            node_ip: None,
        }
    }
}

/// Jump rules from the built-in chains to kube-proxy's, as `(table, chain, rule args)`:
/// upstream ensures them with single `iptables` calls on full syncs (`iptablesJumpChains`).
pub const JUMP_RULES: &[(&str, &str, &str)] = &[
    (
        "filter",
        "INPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "filter",
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "filter",
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "filter",
        "FORWARD",
        "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
    ),
    (
        "filter",
        "INPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        "filter",
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        "filter",
        "INPUT",
        "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS",
    ),
    (
        "filter",
        "INPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    ),
    (
        "filter",
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    ),
    (
        "filter",
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    ),
    (
        "nat",
        "OUTPUT",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "nat",
        "PREROUTING",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "nat",
        "POSTROUTING",
        "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    ),
];

/// Renders restore input and remembers which service chains exist.
#[derive(Debug, Default)]
pub struct IptablesRenderer {
    cfg: IptablesConfig,
    /// nat chains per service port (KUBE-SVC/SVL and KUBE-SEP).
    chains: BTreeMap<ServicePortName, Vec<String>>,
}

fn quote(comment: &str) -> String {
    if comment.contains(' ') {
        format!("\"{comment}\"")
    } else {
        comment.to_string()
    }
}

impl IptablesRenderer {
    pub fn new(cfg: IptablesConfig) -> IptablesRenderer {
        IptablesRenderer {
            cfg,
            chains: BTreeMap::new(),
        }
    }

    /// Full restore: every chain and rule.
    pub fn render_full(&mut self, plan: &Plan) -> String {
        self.chains.clear();
        let all: BTreeSet<ServicePortName> = plan.services().map(|s| s.port.name.clone()).collect();
        self.render(plan, &all)
    }

    /// Partial restore: top-level chains in full, service chains only for `affected`;
    /// chains no longer used are declared and deleted (`-X`).
    pub fn render_partial(&mut self, plan: &Plan, affected: &BTreeSet<ServicePortName>) -> String {
        self.render(plan, affected)
    }

    fn render(&mut self, plan: &Plan, affected: &BTreeSet<ServicePortName>) -> String {
        let large = plan.endpoint_count() > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
        let mut out = String::with_capacity(affected.len() * 200 + plan.len() * 150 + 4096);
        self.write_filter(plan, &mut out);

        let mut decls = String::new();
        let mut rules = String::new();
        let mut deleted = Vec::new();
        for name in affected {
            let old = self.chains.remove(name).unwrap_or_default();
            let new = match plan.get(name) {
                Some(sp) => self.write_service(sp, large, &mut rules),
                None => Vec::new(),
            };
            deleted.extend(old.into_iter().filter(|c| !new.contains(c)));
            for c in &new {
                let _ = writeln!(decls, ":{c} - [0:0]");
            }
            if !new.is_empty() {
                self.chains.insert(name.clone(), new);
            }
        }
        out.push_str("*nat\n");
        for c in [
            "KUBE-NODEPORTS",
            "KUBE-SERVICES",
            "KUBE-MARK-MASQ",
            "KUBE-POSTROUTING",
        ] {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        out.push_str(&decls);
        for c in &deleted {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        self.write_nat_static(plan, &mut out);
        out.push_str(&rules);
        for c in &deleted {
            let _ = writeln!(out, "-X {c}");
        }
        out.push_str("COMMIT\n");
        out
    }

    /// The filter table: no-endpoint REJECT/DROP rules, health-check-port ACCEPTs, the
    /// load-balancer firewall's DROPs, and KUBE-FORWARD.
    fn write_filter(&self, plan: &Plan, out: &mut String) {
        out.push_str("*filter\n");
        for c in [
            "KUBE-NODEPORTS",
            "KUBE-SERVICES",
            "KUBE-EXTERNAL-SERVICES",
            "KUBE-FORWARD",
            "KUBE-PROXY-FIREWALL",
        ] {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for sp in plan.services() {
            write_service_filter(sp, out);
        }
        let mark = self.mark();
        out.push_str("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
        let _ = writeln!(
            out,
            "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
        );
        out.push_str("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
        out.push_str("COMMIT\n");
    }

    fn mark(&self) -> String {
        format!("{:#x}", 1u32 << u32::from(self.cfg.masquerade_bit.min(31)))
    }

    /// KUBE-SERVICES (each service port's ClusterIP, external IPs and load-balancer IPs,
    /// then the NodePorts jump), KUBE-NODEPORTS, KUBE-MARK-MASQ and KUBE-POSTROUTING.
    fn write_nat_static(&self, plan: &Plan, out: &mut String) {
        for sp in plan.services() {
            write_service_dispatch(sp, out);
        }
        self.write_nodeports_jump(out);
        let mark = self.mark();
        let _ = writeln!(out, "-A KUBE-MARK-MASQ -j MARK --or-mark {mark}");
        let _ = writeln!(
            out,
            "-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN"
        );
        let _ = writeln!(out, "-A KUBE-POSTROUTING -j MARK --xor-mark {mark}");
        let random = if self.cfg.random_fully {
            " --random-fully"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{random}"
        );
    }

    /// The last rule of KUBE-SERVICES: NodePorts on every local address (minus 127.0.0.0/8
    /// without localhost NodePorts) or on each configured node address.
    fn write_nodeports_jump(&self, out: &mut String) {
        let head = "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
        if self.cfg.nodeport_ips.is_empty() {
            let localhost = if self.cfg.localhost_nodeports {
                ""
            } else {
                " ! -d 127.0.0.0/8"
            };
            let _ = writeln!(
                out,
                "{head} -m addrtype --dst-type LOCAL{localhost} -j KUBE-NODEPORTS"
            );
            return;
        }
        for ip in &self.cfg.nodeport_ips {
            if ip.is_loopback() && !self.cfg.localhost_nodeports {
                continue;
            }
            let _ = writeln!(out, "{head} -d {ip} -j KUBE-NODEPORTS");
        }
    }

    /// The nat chains of one service port (KUBE-FW, KUBE-EXT, KUBE-SVC, KUBE-SVL and
    /// KUBE-SEP, as upstream's `syncProxyRules`); returns their names.
    fn write_service(&self, sp: &ServicePlan, large: bool, out: &mut String) -> Vec<String> {
        let mut chains = Vec::new();
        if !sp.has_endpoints {
            return chains;
        }
        let name = sp.port.name.to_string();
        if uses_ipt_firewall(sp) {
            let fw = sp.ipt_firewall_chain();
            let head = format!("-A {fw} -m comment --comment \"{name} loadbalancer IP\"");
            let ext = sp.ipt_external_chain();
            let ranges = &sp.port.load_balancer_source_ranges;
            for cidr in ranges {
                let _ = writeln!(out, "{head} -s {cidr} -j {ext}");
            }
            if self
                .cfg
                .node_ip
                .is_some_and(|ip| ranges.iter().any(|r| r.contains(ip)))
            {
                for lb in &sp.port.load_balancer_ips {
                    let _ = writeln!(out, "{head} -s {lb} -j {ext}");
                }
            }
            let _ = writeln!(
                out,
                "-A {fw} -m comment --comment \"other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL\""
            );
            chains.push(fw);
        }
        if sp.uses_external_chain() {
            chains.push(self.write_external(sp, out));
        }
        let internal = sp.ipt_chain.clone();
        for (chain, eps) in [
            (sp.ipt_cluster_chain(), &sp.cluster_endpoints),
            (sp.ipt_local_chain(), &sp.local_endpoints),
        ] {
            if eps.is_empty() {
                continue;
            }
            if chain == internal {
                self.write_internal_masquerade(sp, &chain, out);
            }
            write_endpoint_dispatch(sp, &chain, eps, large, out);
            chains.push(chain);
        }
        let p = sp.port.name.protocol.lower();
        let sep_comment = if large {
            String::new()
        } else {
            format!(" -m comment --comment {}", quote(&name))
        };
        for ep in sp.reachable_endpoints() {
            let sep = ep.ipt_chain();
            let e = &ep.endpoint;
            let _ = writeln!(out, "-A {sep}{sep_comment} -s {} -j KUBE-MARK-MASQ", e.ip);
            let recent = if sp.port.affinity_timeout_s.is_some() {
                format!(" -m recent --name {sep} --set")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "-A {sep}{sep_comment}{recent} -m {p} -p {p} -j DNAT --to-destination {}:{}",
                e.ip, e.port
            );
            chains.push(sep.to_string());
        }
        chains
    }

    /// Masquerades ClusterIP traffic from outside the cluster (all with `--masquerade-all`).
    fn write_internal_masquerade(&self, sp: &ServicePlan, chain: &str, out: &mut String) {
        let masq_match = match (self.cfg.masquerade_all, self.cfg.cluster_cidr) {
            (true, _) => String::new(),
            (false, Some(cidr)) => format!(" ! -s {cidr}"),
            (false, None) => return,
        };
        let p = sp.port.name.protocol.lower();
        let _ = writeln!(
            out,
            "-A {chain} -m comment --comment \"{} cluster IP\" -m {p} -p {p} -d {} --dport {}{masq_match} -j KUBE-MARK-MASQ",
            sp.port.name, sp.port.cluster_ip, sp.port.port
        );
    }

    /// KUBE-EXT: masquerade with `Cluster` policy; with `Local`, pod and node-originated
    /// traffic goes to KUBE-SVC (the latter masqueraded); then the policy chain.
    fn write_external(&self, sp: &ServicePlan, out: &mut String) -> String {
        let ext = sp.ipt_external_chain();
        let svc = sp.ipt_cluster_chain();
        let name = &sp.port.name;
        if !sp.port.external_policy_local() {
            let _ = writeln!(
                out,
                "-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ"
            );
        } else {
            if let Some(cidr) = self.cfg.cluster_cidr {
                let _ = writeln!(
                    out,
                    "-A {ext} -m comment --comment \"pod traffic for {name} external destinations\" -s {cidr} -j {svc}"
                );
            }
            let _ = writeln!(
                out,
                "-A {ext} -m comment --comment \"masquerade LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                out,
                "-A {ext} -m comment --comment \"route LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {svc}"
            );
        }
        if sp.has_external_endpoints() {
            let _ = writeln!(out, "-A {ext} -j {}", sp.ipt_external_policy_chain());
        }
        ext
    }
}

/// Load-balancer IPs with `loadBalancerSourceRanges` and endpoints (iptables' condition).
fn uses_ipt_firewall(sp: &ServicePlan) -> bool {
    sp.has_endpoints
        && !sp.port.load_balancer_ips.is_empty()
        && !sp.port.load_balancer_source_ranges.is_empty()
}

/// `-m {p} -p {p} -d {ip} --dport {port}`.
fn dest_match(sp: &ServicePlan, ip: std::net::Ipv4Addr) -> String {
    let p = sp.port.name.protocol.lower();
    format!("-m {p} -p {p} -d {ip} --dport {}", sp.port.port)
}

/// One service port's filter rules: REJECT/DROP for destinations without endpoints, the
/// health check node port ACCEPT, the firewall DROP for load-balancer IPs.
fn write_service_filter(sp: &ServicePlan, out: &mut String) {
    let name = &sp.port.name;
    if let Some(v) = sp.no_endpoints {
        let (what, target) = verdict(v);
        let m = dest_match(sp, sp.port.cluster_ip);
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -m comment --comment \"{name} {what}\" {m} -j {target}"
        );
    }
    let ext = sp.external_no_endpoints.map(verdict);
    for ip in &sp.port.external_ips {
        if let Some((what, target)) = ext {
            let m = dest_match(sp, *ip);
            let _ = writeln!(
                out,
                "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{name} {what}\" {m} -j {target}"
            );
        }
    }
    for ip in &sp.port.load_balancer_ips {
        if uses_ipt_firewall(sp) {
            let m = dest_match(sp, *ip);
            let fw = sp.ipt_firewall_chain();
            let _ = writeln!(
                out,
                "-A KUBE-PROXY-FIREWALL -m comment --comment \"{name} traffic not accepted by {fw}\" {m} -j DROP"
            );
        }
    }
    if let Some((what, target)) = ext {
        for ip in &sp.port.load_balancer_ips {
            let m = dest_match(sp, *ip);
            let _ = writeln!(
                out,
                "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{name} {what}\" {m} -j {target}"
            );
        }
        if let Some(np) = sp.port.node_port {
            let p = sp.port.name.protocol.lower();
            let _ = writeln!(
                out,
                "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{name} {what}\" -m addrtype --dst-type LOCAL -m {p} -p {p} --dport {np} -j {target}"
            );
        }
    }
    if let Some(hc) = sp.port.health_check_node_port {
        let _ = writeln!(
            out,
            "-A KUBE-NODEPORTS -m comment --comment \"{name} health check node port\" -m tcp -p tcp --dport {hc} -j ACCEPT"
        );
    }
}

/// One service port's nat jumps: ClusterIP to its policy chain, external and load-balancer
/// IPs to KUBE-EXT (or KUBE-FW), the NodePort to KUBE-EXT.
fn write_service_dispatch(sp: &ServicePlan, out: &mut String) {
    let name = &sp.port.name;
    if sp.no_endpoints.is_none() {
        let m = dest_match(sp, sp.port.cluster_ip);
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -m comment --comment \"{name} cluster IP\" {m} -j {}",
            sp.ipt_chain
        );
    }
    if !sp.has_endpoints {
        return;
    }
    let ext = sp.ipt_external_chain();
    for ip in &sp.port.external_ips {
        let m = dest_match(sp, *ip);
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -m comment --comment \"{name} external IP\" {m} -j {ext}"
        );
    }
    let lb_target = if uses_ipt_firewall(sp) {
        sp.ipt_firewall_chain()
    } else {
        ext.clone()
    };
    for ip in &sp.port.load_balancer_ips {
        let m = dest_match(sp, *ip);
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -m comment --comment \"{name} loadbalancer IP\" {m} -j {lb_target}"
        );
    }
    if let Some(np) = sp.port.node_port {
        let p = sp.port.name.protocol.lower();
        let _ = writeln!(
            out,
            "-A KUBE-NODEPORTS -m comment --comment {} -m {p} -p {p} --dport {np} -j {ext}",
            quote(&name.to_string())
        );
    }
}

/// Affinity checks, then the probability cascade to `eps` (upstream
/// `writeServiceToEndpointRules`).
fn write_endpoint_dispatch(
    sp: &ServicePlan,
    chain: &str,
    eps: &[PlannedEndpoint],
    large: bool,
    out: &mut String,
) {
    let name = sp.port.name.to_string();
    let arrow = |addr: &str| {
        if large {
            String::new()
        } else {
            format!(" -m comment --comment \"{name} -> {addr}\"")
        }
    };
    if let Some(timeout) = sp.port.affinity_timeout_s {
        for ep in eps {
            let c = arrow(&ep.endpoint.addr_string());
            let sep = ep.ipt_chain();
            let _ = writeln!(
                out,
                "-A {chain}{c} -m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}"
            );
        }
    }
    let n = eps.len();
    for (i, ep) in eps.iter().enumerate() {
        let c = arrow(&ep.endpoint.addr_string());
        let prob = if i + 1 < n {
            format!(
                " -m statistic --mode random --probability {:.10}",
                1.0 / (n - i) as f64
            )
        } else {
            String::new()
        };
        let _ = writeln!(out, "-A {chain}{c}{prob} -j {}", ep.ipt_chain());
    }
}

fn verdict(v: NoEndpoints) -> (&'static str, &'static str) {
    match v {
        NoEndpoints::Reject => ("has no endpoints", "REJECT"),
        NoEndpoints::Drop => ("has no local endpoints", "DROP"),
    }
}

#[cfg(test)]
#[path = "iptables_tests.rs"]
mod tests;
