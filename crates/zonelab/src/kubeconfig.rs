//! Kube client configs from kubeconfig files: the lab's per-component kubeconfigs, the
//! agent's `--kubeconfig`/`--proxy-kubeconfig`, the autoscaler's `--kubeconfig`. The cluster's
//! CA and the client certificate come from the file; the reads are bounded as every lab
//! client's ([`crate::client::config`]). Start at [`client_config`].

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// The file as kube-rs reads it (CA, client certificate, server URL), unchanged.
pub fn load(path: &Path) -> anyhow::Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    kube::Config::try_from(kc).with_context(|| format!("kubeconfig {}", path.display()))
}

/// A client config with the credentials and CA of the kubeconfig at `path`, against `server`
/// when given (kube-proxy's `--master` overriding its kubeconfig's server) else the file's,
/// with reads bounded by `read_timeout` ([`crate::client::config`]).
pub fn client_config(
    path: &Path,
    server: Option<&str>,
    read_timeout: Duration,
) -> anyhow::Result<kube::Config> {
    let loaded = load(path)?;
    let url = match server {
        Some(s) => s.parse().with_context(|| format!("server URL {s:?}"))?,
        None => loaded.cluster_url.clone(),
    };
    let mut c = crate::client::config(url, read_timeout);
    c.root_cert = loaded.root_cert;
    c.auth_info = loaded.auth_info;
    c.tls_server_name = loaded.tls_server_name;
    c.default_namespace = loaded.default_namespace;
    Ok(c)
}

/// The client config of an agent role: its kubeconfig (with `--server` overriding the file's
/// server), or, without one, plain `--server` with no credentials.
pub fn role_config(
    kubeconfig: Option<&Path>,
    server: Option<&str>,
    read_timeout: Duration,
    role: &str,
) -> anyhow::Result<kube::Config> {
    match (kubeconfig, server) {
        (Some(path), server) => client_config(path, server, read_timeout),
        (None, Some(s)) => {
            let url = s.parse().with_context(|| format!("--server {s:?}"))?;
            Ok(crate::client::config(url, read_timeout))
        }
        (None, None) => anyhow::bail!("{role}: give --kubeconfig or --server"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_server_ca_and_certificate_are_used_and_server_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::Pki::load_or_create(&dir.path().join("pki")).unwrap();
        let path = dir.path().join("n1.conf");
        let who = crate::pki::Identity::node("n1");
        pki.write_kubeconfig(&path, &who, "https://127.0.0.1:6443")
            .unwrap();
        let c = client_config(&path, None, Duration::from_secs(1)).unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert_eq!(c.root_cert.as_ref().map(Vec::len), Some(1));
        assert!(c.auth_info.client_certificate_data.is_some());
        assert_eq!(c.read_timeout, Some(crate::client::SERVER_REQUEST_TIMEOUT));
        let o =
            client_config(&path, Some("https://10.0.0.1:6443"), Duration::from_secs(1)).unwrap();
        assert_eq!(o.cluster_url.host(), Some("10.0.0.1"));
        assert!(role_config(None, None, Duration::from_secs(1), "kubelet").is_err());
        assert!(load(&dir.path().join("missing.conf")).is_err());
    }
}
