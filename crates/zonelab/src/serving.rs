//! How `zonelab server` serves: HTTPS with given or generated certificates, or plain HTTP.
//! Start at [`TlsArgs`] and [`Serving::resolve`].
//!
//! - `--tls-cert-file`/`--tls-private-key-file` (and `--client-ca-file`): HTTPS with those
//!   files, kube-apiserver's flags.
//! - `--pki-dir DIR`: the PKI under DIR (created when missing, kubeadm's file names), HTTPS
//!   with `apiserver.crt`, client certificates verified against `ca.crt`, and kubeconfigs
//!   (admin.conf, …) written into `--data-dir`; the in-process controllers and scheduler use
//!   controller-manager.conf and scheduler.conf. Every `--listen-netns` listener serves HTTPS
//!   too (the serving certificate's SANs cover them).
//! - neither: plain HTTP with a warning; every request is the cluster admin (meant for
//!   loopback only; the lab's servers serve HTTPS with the lab's PKI, docs/lab.md).
//!
//! `--insecure-port PORT` (upstream's removed flag) adds a plain-HTTP listener on
//! 127.0.0.1:PORT beside HTTPS, for tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Serving certificate (PEM, then its chain) of the HTTPS listener (kube-apiserver).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// The serving certificate's private key (PEM) (kube-apiserver).
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Client certificates signed by a CA in this PEM file authenticate as CN = user,
    /// O = groups (kube-apiserver).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Create (when missing) and use the cluster PKI in DIR (kubeadm's file names: ca.crt,
    /// apiserver.crt, sa.key, …) and write admin.conf and the components' kubeconfigs into
    /// --data-dir.
    #[arg(long, value_name = "DIR")]
    pub pki_dir: Option<PathBuf>,
    /// Also serve plain HTTP, without authentication (every request is the cluster admin), on
    /// 127.0.0.1:PORT; for tests (upstream's removed `--insecure-port`).
    #[arg(long, value_name = "PORT")]
    pub insecure_port: Option<u16>,
}

/// What the server listens with.
pub enum Serving {
    Plain,
    Tls {
        config: Arc<rustls::ServerConfig>,
        /// The PKI, when the server made it (kubeconfigs are written from it).
        pki: Option<Box<crate::pki::Pki>>,
    },
}

impl Serving {
    /// Decide from the flags; `listen` is the bound address.
    pub fn resolve(
        args: &TlsArgs,
        listens: &[SocketAddr],
        service_cidr: &str,
    ) -> anyhow::Result<Serving> {
        let listen = *listens.first().context("no listen address")?;
        match (
            &args.tls_cert_file,
            &args.tls_private_key_file,
            &args.pki_dir,
        ) {
            (Some(cert), Some(key), _) => {
                let files = apiserver::tls::TlsFiles {
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                    client_ca_file: args.client_ca_file.clone(),
                };
                Ok(Serving::Tls {
                    config: files.server_config()?,
                    pki: None,
                })
            }
            (Some(_), None, _) | (None, Some(_), _) => {
                anyhow::bail!("--tls-cert-file and --tls-private-key-file must be given together")
            }
            (None, None, Some(dir)) => {
                let pki = crate::pki::Pki::ensure(dir, listens, service_cidr)
                    .with_context(|| format!("--pki-dir {}", dir.display()))?;
                let files = apiserver::tls::TlsFiles {
                    cert_file: dir.join("apiserver.crt"),
                    key_file: dir.join("apiserver.key"),
                    client_ca_file: Some(args.client_ca_file.clone().unwrap_or(dir.join("ca.crt"))),
                };
                Ok(Serving::Tls {
                    config: files.server_config()?,
                    pki: Some(Box::new(pki)),
                })
            }
            (None, None, None) => {
                // TODO(tls): refuse a non-loopback plain listener once the lab's servers
                // (in lab namespaces, e.g. the zonal control planes on 172.20.x.10) serve TLS.
                if listen.ip().is_loopback() {
                    tracing::warn!(
                        "serving plain HTTP without authentication on {listen} (loopback); \
                         give --pki-dir or --tls-cert-file/--tls-private-key-file for HTTPS"
                    );
                } else {
                    tracing::warn!(
                        "serving plain HTTP without authentication on {listen}: whoever \
                         reaches it is the cluster admin; give --pki-dir or \
                         --tls-cert-file/--tls-private-key-file for HTTPS"
                    );
                }
                Ok(Serving::Plain)
            }
        }
    }

    pub fn scheme(&self) -> &'static str {
        match self {
            Serving::Plain => "http",
            Serving::Tls { .. } => "https",
        }
    }
}

/// The serving task and the `--insecure-port` listener's address.
pub type Spawned = (
    tokio::task::JoinHandle<std::io::Result<()>>,
    Option<SocketAddr>,
);

/// Serve `listener` as `serving` says; also the `--insecure-port` listener when asked.
pub async fn spawn(
    server: Arc<apiserver::Server>,
    serving: &Serving,
    listener: tokio::net::TcpListener,
    args: &TlsArgs,
) -> anyhow::Result<Spawned> {
    let mut insecure = None;
    if let Some(port) = args.insecure_port {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let plain = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --insecure-port {port}"))?;
        insecure = Some(plain.local_addr()?);
        tokio::spawn(Arc::clone(&server).accept_loop(plain));
    }
    let task = match serving {
        Serving::Plain => tokio::spawn(server.serve(listener)),
        Serving::Tls { config, .. } => tokio::spawn(server.serve_tls(listener, Arc::clone(config))),
    };
    Ok((task, insecure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_without_tls_flags_and_tls_flags_in_pairs() {
        let none = TlsArgs::default();
        let cidr = "10.96.0.0/12";
        let plain = Serving::resolve(&none, &["127.0.0.1:6443".parse().unwrap()], cidr).unwrap();
        assert_eq!(plain.scheme(), "http");
        let half = TlsArgs {
            tls_cert_file: Some("x.crt".into()),
            ..TlsArgs::default()
        };
        assert!(Serving::resolve(&half, &["127.0.0.1:6443".parse().unwrap()], cidr).is_err());
    }

    #[test]
    fn pki_dir_serves_tls() {
        let dir = tempfile::tempdir().unwrap();
        let args = TlsArgs {
            pki_dir: Some(dir.path().join("pki")),
            ..TlsArgs::default()
        };
        let s =
            Serving::resolve(&args, &["0.0.0.0:6443".parse().unwrap()], "10.96.0.0/12").unwrap();
        assert_eq!(s.scheme(), "https");
    }
}
