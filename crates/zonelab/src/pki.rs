//! The cluster PKI, laid out as kubeadm's `/etc/kubernetes/pki`: a CA, the API server's
//! serving certificate, the ServiceAccount signing key pair, and kubeconfigs with client
//! certificates for the admin, the controllers, the scheduler, kube-proxy and each node.
//! Start at [`Pki::ensure`] and [`Pki::kubeconfig`].
//!
//! Files are created only when missing (delete one to regenerate it); kubeconfigs are
//! rewritten on every start because they carry the server's URL.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use apiserver::authn::MASTERS_GROUP;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The CA's common name (kubeadm's).
pub const CA_COMMON_NAME: &str = "kubernetes";
/// The cluster name in kubeconfigs (kubeadm's).
pub const CLUSTER_NAME: &str = "kubernetes";
/// The admin user (in `system:masters`).
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The nodes' group.
pub const NODES_GROUP: &str = "system:nodes";
/// How long the CA is valid (kubeadm: 10 years) and every other certificate (1 year).
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 365;

/// Why the PKI could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key { path: PathBuf, source: rcgen::Error },
    #[error("issuing {what}: {source}")]
    Issue { what: String, source: rcgen::Error },
    #[error("{0}: a certificate carries at most one organization (group) here")]
    Groups(String),
    #[error("invalid --service-cluster-ip-range {0:?}")]
    Range(String),
}

/// One client identity of a kubeconfig: CN = user, O = groups (upstream's x509 mapping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn new(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: user.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// `system:node:NAME` in `system:nodes`.
    pub fn node(name: &str) -> Identity {
        Identity::new(&format!("system:node:{name}"), &[NODES_GROUP])
    }
}

/// The kubeconfigs a server writes beside its data (kubeadm's file names) and their users.
pub fn component_kubeconfigs() -> Vec<(&'static str, Identity)> {
    vec![
        ("admin.conf", Identity::new(ADMIN_USER, &[MASTERS_GROUP])),
        (
            "controller-manager.conf",
            Identity::new("system:kube-controller-manager", &[]),
        ),
        (
            "scheduler.conf",
            Identity::new("system:kube-scheduler", &[]),
        ),
        ("kube-proxy.conf", Identity::new("system:kube-proxy", &[])),
    ]
}

/// A loaded (or just created) PKI directory.
pub struct Pki {
    ca_pem: String,
    ca: Issuer<'static, KeyPair>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn issue(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Issue {
        what: what.to_string(),
        source,
    }
}

/// Write `data` to `path`; keys are readable by the owner only.
fn write(path: &Path, data: &str, secret: bool) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    if secret {
        // `mode` applies only when the file is created: an older, wider file is narrowed.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
    }
    std::io::Write::write_all(&mut f, data.as_bytes()).map_err(io(path))
}

fn read_key(path: &Path) -> Result<KeyPair, PkiError> {
    let pem = std::fs::read_to_string(path).map_err(io(path))?;
    KeyPair::from_pem(&pem).map_err(|source| PkiError::Key {
        path: path.to_path_buf(),
        source,
    })
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    p
}

/// Leaf parameters valid from a minute ago (clock skew) for `days`.
fn leaf_params(cn: &str, orgs: &[String], days: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    for o in orgs {
        p.distinguished_name
            .push(DnType::OrganizationName, o.as_str());
    }
    p.distinguished_name.push(DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(1);
    p.not_after = now + time::Duration::days(days);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.use_authority_key_identifier_extension = true;
    p
}

/// The serving certificate's SANs: every address of `addrs` (unspecified ones are left out;
/// loopback is always in), the `kubernetes` Service's ClusterIP (the first address of
/// `service_cidr`), its DNS names and localhost (kubeadm's list).
pub fn serving_sans(addrs: &[IpAddr], service_cidr: &str) -> Result<Vec<SanType>, PkiError> {
    let range = apiserver::alloc::IpRange::parse(service_cidr)
        .map_err(|_| PkiError::Range(service_cidr.to_string()))?;
    // The address the allocator gives the `kubernetes` Service.
    let first = IpAddr::V4(apiserver::alloc::first_ip(&range));
    let mut ips: Vec<IpAddr> = vec![first, IpAddr::from([127, 0, 0, 1])];
    for ip in addrs {
        if !ip.is_unspecified() && !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    let names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ];
    let mut out = Vec::new();
    for n in names {
        let dns = n.to_string().try_into().map_err(issue("a DNS SAN"))?;
        out.push(SanType::DnsName(dns));
    }
    out.extend(ips.into_iter().map(SanType::IpAddress));
    Ok(out)
}

impl Pki {
    /// Load the CA under `dir`, creating the directory, `ca.crt`/`ca.key` and the
    /// ServiceAccount key pair `sa.key` (PKCS#8)/`sa.pub` (SPKI) when missing.
    pub fn load_or_create(dir: &Path) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if !crt.exists() || !key.exists() {
            let ca_key = KeyPair::generate().map_err(issue("the CA key"))?;
            let mut p = ca_params();
            let now = time::OffsetDateTime::now_utc();
            p.not_before = now - time::Duration::minutes(1);
            p.not_after = now + time::Duration::days(CA_DAYS);
            let cert = p.self_signed(&ca_key).map_err(issue("the CA"))?;
            write(&key, &ca_key.serialize_pem(), true)?;
            write(&crt, &cert.pem(), false)?;
        }
        let (sa_key, sa_pub) = (dir.join("sa.key"), dir.join("sa.pub"));
        if !sa_key.exists() || !sa_pub.exists() {
            let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(issue("the ServiceAccount key"))?;
            write(&sa_key, &k.serialize_pem(), true)?;
            write(&sa_pub, &k.public_key_pem(), false)?;
        }
        let ca_pem = std::fs::read_to_string(&crt).map_err(io(&crt))?;
        // The issuer is the CA's subject and key; the subject is always `ca_params`'s.
        let ca = Issuer::new(ca_params(), read_key(&key)?);
        Ok(Pki { ca_pem, ca })
    }

    /// `load_or_create`, then the serving certificate `apiserver.crt`/`apiserver.key` for
    /// `listen` when missing.
    pub fn ensure(dir: &Path, listen: &[SocketAddr], service_cidr: &str) -> Result<Pki, PkiError> {
        let ips: Vec<IpAddr> = listen.iter().map(SocketAddr::ip).collect();
        Pki::ensure_for(dir, &ips, service_cidr)
    }

    /// [`Pki::ensure`] with a serving certificate for the addresses `ips` (the lab's: every
    /// address agents and users reach a server at).
    pub fn ensure_for(dir: &Path, ips: &[IpAddr], service_cidr: &str) -> Result<Pki, PkiError> {
        let pki = Pki::load_or_create(dir)?;
        let (crt, key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
        if !crt.exists() || !key.exists() {
            let mut p = leaf_params("kube-apiserver", &[], LEAF_DAYS);
            p.subject_alt_names = serving_sans(ips, service_cidr)?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let k = KeyPair::generate().map_err(issue("the serving key"))?;
            let cert = p.signed_by(&k, &pki.ca).map_err(issue("apiserver.crt"))?;
            write(&key, &k.serialize_pem(), true)?;
            write(&crt, &cert.pem(), false)?;
        }
        Ok(pki)
    }

    /// A client certificate and its key (PEM) for `who`, valid for `days` from now.
    pub fn client_cert(&self, who: &Identity, days: i64) -> Result<(String, String), PkiError> {
        // rcgen keeps one value per subject attribute type.
        if who.groups.len() > 1 {
            return Err(PkiError::Groups(who.user.clone()));
        }
        let mut p = leaf_params(&who.user, &who.groups, days);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let k = KeyPair::generate().map_err(issue(&who.user))?;
        let cert = p.signed_by(&k, &self.ca).map_err(issue(&who.user))?;
        Ok((cert.pem(), k.serialize_pem()))
    }

    /// A kubectl-compatible kubeconfig for `who` against `server` (an https URL), with the CA
    /// and a fresh client certificate embedded (kubeadm's layout and names).
    pub fn kubeconfig(&self, who: &Identity, server: &str) -> Result<String, PkiError> {
        let (cert, key) = self.client_cert(who, LEAF_DAYS)?;
        Ok(render_kubeconfig(
            server,
            &who.user,
            self.ca_pem.as_bytes(),
            cert.as_bytes(),
            key.as_bytes(),
        ))
    }

    /// Write a kubeconfig for `who` against `server` to `path` (owner-readable only).
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        who: &Identity,
        server: &str,
    ) -> Result<(), PkiError> {
        write(path, &self.kubeconfig(who, server)?, true)
    }

    /// Write the components' kubeconfigs (admin.conf, …) and one `kubelet-NAME.conf` per node
    /// into `out`; returns the admin kubeconfig's path.
    pub fn write_kubeconfigs(
        &self,
        out: &Path,
        server: &str,
        nodes: &[String],
    ) -> Result<PathBuf, PkiError> {
        std::fs::create_dir_all(out).map_err(io(out))?;
        let nodes = nodes
            .iter()
            .map(|n| (format!("kubelet-{n}.conf"), Identity::node(n)));
        let all = component_kubeconfigs()
            .into_iter()
            .map(|(f, who)| (f.to_string(), who))
            .chain(nodes);
        for (file, who) in all {
            self.write_kubeconfig(&out.join(file), &who, server)?;
        }
        Ok(out.join("admin.conf"))
    }
}

/// The kubeconfig text (YAML) for one user of one cluster.
pub fn render_kubeconfig(server: &str, user: &str, ca: &[u8], cert: &[u8], key: &[u8]) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let context = format!("{user}@{CLUSTER_NAME}");
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {}\n  name: {CLUSTER_NAME}\ncontexts:\n- context:\n    cluster: {CLUSTER_NAME}\n    user: {}\n  name: {}\ncurrent-context: {}\npreferences: {{}}\nusers:\n- name: {}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca),
        q(server),
        q(user),
        q(&context),
        q(&context),
        q(user),
        b64(cert),
        b64(key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn sans_cover_listen_addresses_and_the_kubernetes_service() {
        let sans = serving_sans(
            &["0.0.0.0".parse().unwrap(), "10.1.2.3".parse().unwrap()],
            "10.96.0.0/12",
        )
        .unwrap();
        let ip = |s: &str| SanType::IpAddress(s.parse().unwrap());
        assert!(sans.contains(&ip("10.96.0.1")));
        assert!(sans.contains(&ip("10.1.2.3")));
        assert!(sans.contains(&ip("127.0.0.1")));
        assert!(!sans.contains(&ip("0.0.0.0")));
        let dns = SanType::DnsName("kubernetes.default.svc.cluster.local".try_into().unwrap());
        assert!(sans.contains(&dns));
        assert!(serving_sans(&[], "bogus").is_err());
    }

    #[test]
    fn ensure_creates_kubeadm_files_once_and_kubeconfigs_parse() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let pki = Pki::ensure(&pki_dir, &["127.0.0.1:0".parse().unwrap()], "10.96.0.0/12").unwrap();
        for f in [
            "ca.crt",
            "ca.key",
            "apiserver.crt",
            "apiserver.key",
            "sa.key",
            "sa.pub",
        ] {
            assert!(pki_dir.join(f).exists(), "{f} missing");
        }
        let sa_key = std::fs::read_to_string(pki_dir.join("sa.key")).unwrap();
        assert!(sa_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let sa_pub = std::fs::read_to_string(pki_dir.join("sa.pub")).unwrap();
        assert!(sa_pub.starts_with("-----BEGIN PUBLIC KEY-----"));
        let ca_before = std::fs::read(pki_dir.join("ca.crt")).unwrap();
        drop(pki);
        let pki = Pki::ensure(&pki_dir, &[], "10.96.0.0/12").unwrap();
        assert_eq!(std::fs::read(pki_dir.join("ca.crt")).unwrap(), ca_before);
        let admin = pki
            .write_kubeconfigs(dir.path(), "https://127.0.0.1:6443", &["n1".into()])
            .unwrap();
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&admin).unwrap()).unwrap();
        assert_eq!(doc["current-context"], "kubernetes-admin@kubernetes");
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        let cert = doc["users"][0]["user"]["client-certificate-data"]
            .as_str()
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(cert)
            .unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let id = apiserver::authn::x509::subject_identity(&der).unwrap();
        assert_eq!(id.common_name, "kubernetes-admin");
        assert_eq!(id.organizations, vec!["system:masters"]);
        for f in [
            "controller-manager.conf",
            "scheduler.conf",
            "kube-proxy.conf",
            "kubelet-n1.conf",
        ] {
            assert!(dir.path().join(f).exists(), "{f} missing");
        }
    }
}
