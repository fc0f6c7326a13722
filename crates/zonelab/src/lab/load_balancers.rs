//! The lab's Service load balancers: every API server of the lab runs the load-balancer
//! controller with its balancers in the router namespace (`--load-balancer-netns
//! <prefix>-rt`), and `lab down` (or `lab up` after a crash) stops them.
//!
//! Start at [`with_load_balancers`]. The balancers are found by their command line
//! ([`crate::balancer::fleet::stop_all`]): `netlab`'s sweep of the lab's namespaces goes by
//! each process's main-thread namespace and would miss a balancer started outside them.

use netlab::Topology;

use super::UpPlan;
use crate::balancer::fleet;

/// The server flag that turns the controller on.
pub const FLAG: &str = "--load-balancer-netns";

/// `plan` with every server running the load-balancer controller in the router namespace,
/// unless its flags already say where.
pub fn with_load_balancers(plan: &UpPlan, topo: &Topology) -> UpPlan {
    let mut plan = plan.clone();
    let given = plan
        .server_flags
        .iter()
        .any(|f| f == FLAG || f.starts_with(&format!("{FLAG}=")));
    if !given {
        plan.server_flags
            .push(format!("{FLAG}={}", topo.router_netns));
    }
    plan
}

/// The router namespace of the lab `prefix` (what its servers were given).
pub fn router_netns(prefix: &str) -> String {
    format!("{prefix}-rt")
}

/// Stop every Service load balancer of lab `prefix` and remove their files; returns the pids.
pub fn stop(prefix: &str) -> Vec<u32> {
    let dir = fleet::default_dir(&router_netns(prefix));
    let pids = fleet::stop_all(&dir);
    if !pids.is_empty() {
        eprintln!("stopped {} load balancer(s) of lab {prefix:?}", pids.len());
    }
    pids
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use netlab::LabSpec;

    use super::*;
    use crate::flags::Profile;

    fn plan(flags: &[&str]) -> UpPlan {
        UpPlan {
            zones: vec!["a".into()],
            nodes_per_zone: 1,
            profile: Profile::Fast,
            proxy_mode: "nftables".into(),
            api_port: 1,
            wait: Duration::from_secs(1),
            server_flags: flags.iter().map(|f| f.to_string()).collect(),
            agent_flags: Vec::new(),
            etcd_in_zones: false,
            kube_proxy_daemonset: false,
        }
    }

    #[test]
    fn servers_get_the_router_namespace_unless_told_otherwise() {
        let topo = Topology::new(&LabSpec {
            prefix: "zq".into(),
            zones: vec!["a".into()],
            nodes_per_zone: 1,
        })
        .expect("topology");
        let p = with_load_balancers(&plan(&["--v=2"]), &topo);
        assert_eq!(p.server_flags, ["--v=2", "--load-balancer-netns=zq-rt"]);
        assert_eq!(router_netns("zq"), topo.router_netns);
        let p = with_load_balancers(&plan(&["--load-balancer-netns=other"]), &topo);
        assert_eq!(p.server_flags, ["--load-balancer-netns=other"]);
    }
}
