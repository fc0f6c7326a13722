//! iptables renderer: `iptables-restore --noflush` input (filter and nat tables) from the
//! same [`Plan`], with upstream kube-proxy's chain names and rule text; partial restores
//! rewrite only changed service chains (KEP-3453). Start at [`IptablesRenderer`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::model::{Cidr, ServicePortName};
use crate::nft::DEFAULT_MASQUERADE_BIT;
use crate::plan::{NoEndpoints, Plan, ServicePlan};

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
}

impl Default for IptablesConfig {
    fn default() -> Self {
        IptablesConfig {
            cluster_cidr: None,
            masquerade_bit: DEFAULT_MASQUERADE_BIT,
            masquerade_all: false,
            random_fully: false,
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
                Some(sp) if sp.no_endpoints.is_none() => self.write_service(sp, large, &mut rules),
                _ => Vec::new(),
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
            let Some(v) = sp.no_endpoints else { continue };
            let (what, target) = match v {
                NoEndpoints::Reject => ("has no endpoints", "REJECT"),
                NoEndpoints::Drop => ("has no local endpoints", "DROP"),
            };
            let p = sp.port.name.protocol.lower();
            let _ = writeln!(
                out,
                "-A KUBE-SERVICES -m comment --comment \"{} {what}\" -m {p} -p {p} -d {} --dport {} -j {target}",
                sp.port.name, sp.port.cluster_ip, sp.port.port
            );
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

    /// KUBE-SERVICES (one rule per service port with endpoints, then the NodePorts jump),
    /// KUBE-MARK-MASQ and KUBE-POSTROUTING.
    fn write_nat_static(&self, plan: &Plan, out: &mut String) {
        for sp in plan.services().filter(|s| s.no_endpoints.is_none()) {
            let p = sp.port.name.protocol.lower();
            let _ = writeln!(
                out,
                "-A KUBE-SERVICES -m comment --comment \"{} cluster IP\" -m {p} -p {p} -d {} --dport {} -j {}",
                sp.port.name, sp.port.cluster_ip, sp.port.port, sp.ipt_chain
            );
        }
        out.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
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

    /// The KUBE-SVC chain and its KUBE-SEP chains; returns their names.
    fn write_service(&self, sp: &ServicePlan, large: bool, out: &mut String) -> Vec<String> {
        let name = sp.port.name.to_string();
        let p = sp.port.name.protocol.lower();
        let svc = &sp.ipt_chain;
        let (cip, port) = (sp.port.cluster_ip, sp.port.port);
        let masq_match = match (self.cfg.masquerade_all, self.cfg.cluster_cidr) {
            (true, _) => Some(String::new()),
            (false, Some(cidr)) => Some(format!(" ! -s {cidr}")),
            (false, None) => None,
        };
        if let Some(m) = masq_match {
            let _ = writeln!(
                out,
                "-A {svc} -m comment --comment \"{name} cluster IP\" -m {p} -p {p} -d {cip} --dport {port}{m} -j KUBE-MARK-MASQ"
            );
        }
        let arrow = |addr: &str| {
            if large {
                String::new()
            } else {
                format!(" -m comment --comment \"{name} -> {addr}\"")
            }
        };
        if let Some(timeout) = sp.port.affinity_timeout_s {
            for ep in &sp.endpoints {
                let c = arrow(&ep.endpoint.addr_string());
                let sep = &ep.ipt_chain;
                let _ = writeln!(
                    out,
                    "-A {svc}{c} -m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}"
                );
            }
        }
        let n = sp.endpoints.len();
        for (i, ep) in sp.endpoints.iter().enumerate() {
            let c = arrow(&ep.endpoint.addr_string());
            let prob = if i + 1 < n {
                format!(
                    " -m statistic --mode random --probability {:.10}",
                    1.0 / (n - i) as f64
                )
            } else {
                String::new()
            };
            let _ = writeln!(out, "-A {svc}{c}{prob} -j {}", ep.ipt_chain);
        }
        let sep_comment = if large {
            String::new()
        } else {
            format!(" -m comment --comment {}", quote(&name))
        };
        let mut chains = vec![svc.clone()];
        for ep in &sp.endpoints {
            let sep = &ep.ipt_chain;
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
            chains.push(sep.clone());
        }
        chains
    }
}

#[cfg(test)]
#[path = "iptables_tests.rs"]
mod tests;
