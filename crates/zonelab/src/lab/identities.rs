//! The lab's identities: one PKI per lab under `<state>/<prefix>/pki` (kubeadm's file names; a
//! serving certificate whose SANs cover every address a lab server is reached at), the admin
//! kubeconfig `<state>/<prefix>/kubeconfig`, and kube-proxy's and every node's kubeconfig under
//! `<state>/<prefix>/kubeconfigs/`; and the flags that make every lab server serve HTTPS with
//! that PKI, `--authorization-mode=Node,RBAC` and NodeRestriction (kubeadm's defaults).
//!
//! Start at [`create`] (at `lab up`), [`node_kubeconfig`] (each agent start, also for the
//! nodes the autoscaler adds later) and [`server_flags`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use netlab::Topology;

use crate::pki::{Identity, Pki};

/// kube-apiserver's default `--service-cluster-ip-range`.
const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// kube-proxy's user (upstream binds `system:node-proxier` to it).
pub const PROXY_USER: &str = "system:kube-proxy";

/// The lab's PKI directory (one CA for every server of the lab).
pub fn pki_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("pki")
}

/// Where kube-proxy's and the nodes' kubeconfigs are.
pub fn kubeconfigs_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("kubeconfigs")
}

/// The kubelet kubeconfig of `node` (kubeadm's `kubelet.conf`, one per node here).
pub fn node_kubeconfig_path(lab_dir: &Path, node: &str) -> PathBuf {
    kubeconfigs_dir(lab_dir).join(format!("kubelet-{node}.conf"))
}

/// kube-proxy's kubeconfig (shared by every node, as upstream's kube-proxy ServiceAccount is).
pub fn proxy_kubeconfig_path(lab_dir: &Path) -> PathBuf {
    kubeconfigs_dir(lab_dir).join("kube-proxy.conf")
}

/// Every address a lab server is reached at: the control-plane host, each zone's control-plane
/// host, the API's virtual IP (when the control plane is in the zones) and loopback.
pub fn serving_ips(topo: &Topology, zonal: bool) -> Vec<IpAddr> {
    let mut ips = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::V4(topo.control_plane.ip),
    ];
    ips.extend(topo.zone_control_planes.iter().map(|h| IpAddr::V4(h.ip)));
    if zonal {
        ips.push(IpAddr::V4(super::control_plane::API_VIP));
    }
    ips
}

/// The value of `--NAME` (as `--NAME=V` or `--NAME V`) in `flags`.
fn flag_value<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    let long = format!("--{name}");
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if let Some(v) = f.strip_prefix(&format!("{long}=")) {
            return Some(v);
        }
        if *f == long {
            return it.next().map(String::as_str);
        }
    }
    None
}

/// The servers' `--service-cluster-ip-range` (the `kubernetes` Service's ClusterIP is a SAN);
/// an invalid value is left for the server to refuse with its own error (the default here).
pub fn service_cidr(server_flags: &[String]) -> &str {
    flag_value(server_flags, "service-cluster-ip-range")
        .filter(|v| apiserver::alloc::IpRange::parse(v).is_ok())
        .unwrap_or(DEFAULT_SERVICE_CIDR)
}

/// A fresh PKI for a new lab in `lab_dir` (an earlier lab's is replaced), the admin kubeconfig
/// at `admin` and kube-proxy's, both against `api` (loopback; agents override the server).
pub fn create(
    lab_dir: &Path,
    topo: &Topology,
    zonal: bool,
    api: SocketAddr,
    server_flags: &[String],
    admin: &Path,
) -> anyhow::Result<()> {
    for d in [pki_dir(lab_dir), kubeconfigs_dir(lab_dir)] {
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", d.display()));
            }
            _ => {}
        }
    }
    let pki = Pki::ensure_for(
        &pki_dir(lab_dir),
        &serving_ips(topo, zonal),
        service_cidr(server_flags),
    )
    .context("creating the lab's PKI")?;
    std::fs::create_dir_all(kubeconfigs_dir(lab_dir))?;
    let url = format!("https://{api}");
    let (_, admin_id) = crate::pki::component_kubeconfigs()
        .into_iter()
        .find(|(f, _)| *f == "admin.conf")
        .context("no admin identity")?;
    pki.write_kubeconfig(admin, &admin_id, &url)?;
    pki.write_kubeconfig(
        &proxy_kubeconfig_path(lab_dir),
        &Identity::new(PROXY_USER, &[]),
        &url,
    )?;
    Ok(())
}

/// `node`'s kubeconfig against `api`, made from the lab's CA when missing (nodes added after
/// `lab up`, e.g. by the autoscaler, get theirs at their first start).
pub fn node_kubeconfig(lab_dir: &Path, api: SocketAddr, node: &str) -> anyhow::Result<PathBuf> {
    let path = node_kubeconfig_path(lab_dir, node);
    if !path.exists() {
        // Never make a new CA here: the servers trust only the one `lab up` made.
        anyhow::ensure!(
            pki_dir(lab_dir).join("ca.key").exists(),
            "the lab has no PKI ({}): take it down and run lab up again",
            pki_dir(lab_dir).display()
        );
        let pki = Pki::load_or_create(&pki_dir(lab_dir)).context("the lab's PKI")?;
        std::fs::create_dir_all(kubeconfigs_dir(lab_dir))?;
        pki.write_kubeconfig(&path, &Identity::node(node), &format!("https://{api}"))?;
    }
    Ok(path)
}

/// The flags that make a lab server serve HTTPS with the lab's PKI and authorize as kubeadm
/// sets kube-apiserver up (`Node,RBAC`, NodeRestriction); a flag the scenario's `flags` set
/// already is left to it.
pub fn server_flags(lab_dir: &Path, server_flags: &[String]) -> Vec<String> {
    let ours = [
        ("pki-dir", pki_dir(lab_dir).display().to_string()),
        ("authorization-mode", "Node,RBAC".to_string()),
        ("enable-admission-plugins", "NodeRestriction".to_string()),
    ];
    ours.into_iter()
        .filter(|(name, _)| flag_value(server_flags, name).is_none())
        .map(|(name, value)| format!("--{name}={value}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::new(&netlab::LabSpec {
            prefix: "t".into(),
            zones: vec!["a".into(), "b".into()],
            nodes_per_zone: 1,
        })
        .unwrap()
        .with_zone_control_planes()
    }

    #[test]
    fn flags_defer_to_the_scenarios_and_sans_cover_every_server_address() {
        let dir = Path::new("/lab");
        let f = server_flags(dir, &[]);
        assert!(f.contains(&"--pki-dir=/lab/pki".to_string()));
        assert!(f.contains(&"--authorization-mode=Node,RBAC".to_string()));
        let mine = vec!["--authorization-mode".to_string(), "RBAC".to_string()];
        assert!(
            !server_flags(dir, &mine)
                .iter()
                .any(|f| f.starts_with("--authorization-mode"))
        );
        assert_eq!(service_cidr(&[]), "10.96.0.0/12");
        assert_eq!(
            service_cidr(&["--service-cluster-ip-range=10.0.0.0/16".into()]),
            "10.0.0.0/16"
        );
        let bad = ["--service-cluster-ip-range=10.96.0.0/40".to_string()];
        assert_eq!(service_cidr(&bad), "10.96.0.0/12");
        let t = topo();
        let ips = serving_ips(&t, true);
        assert!(ips.contains(&IpAddr::V4(t.control_plane.ip)));
        assert!(ips.contains(&IpAddr::V4(t.zone_control_planes[1].ip)));
        assert!(ips.contains(&IpAddr::V4(super::super::control_plane::API_VIP)));
    }

    #[test]
    fn create_then_node_kubeconfigs_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("kubeconfig");
        let api: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        create(dir.path(), &topo(), true, api, &[], &admin).unwrap();
        let ca = std::fs::read(pki_dir(dir.path()).join("ca.crt")).unwrap();
        let n = node_kubeconfig(dir.path(), api, "t-a-1").unwrap();
        let c = crate::kubeconfig::load(&n).unwrap();
        let a = crate::kubeconfig::load(&admin).unwrap();
        assert_eq!(c.root_cert, a.root_cert);
        assert_eq!(a.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert!(proxy_kubeconfig_path(dir.path()).exists());
        // A second lab in the same place gets a new CA.
        create(dir.path(), &topo(), true, api, &[], &admin).unwrap();
        assert_ne!(
            std::fs::read(pki_dir(dir.path()).join("ca.crt")).unwrap(),
            ca
        );
        assert!(!node_kubeconfig_path(dir.path(), "t-a-1").exists());
    }

    #[test]
    fn a_node_kubeconfig_is_never_signed_by_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        let api: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let err = node_kubeconfig(dir.path(), api, "t-a-1").unwrap_err();
        assert!(err.to_string().contains("the lab has no PKI"), "{err}");
        assert!(!pki_dir(dir.path()).join("ca.key").exists());
    }
}
