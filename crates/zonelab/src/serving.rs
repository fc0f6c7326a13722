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
//! - neither: as `--pki-dir <data-dir>/pki` (HTTPS by default, as kube-apiserver has no plain
//!   serving since 1.20; the lab's servers use the lab's own PKI, docs/lab.md).
//! - `--insecure-serving`: plain HTTP without authentication on a loopback `--listen` only;
//!   every request is the cluster admin. For tests and local experiments.
//!
//! `--insecure-port PORT` (upstream's removed flag) adds a plain-HTTP listener on
//! 127.0.0.1:PORT beside HTTPS, for tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Serve plain HTTP instead of HTTPS, without authentication (every request is the
    /// cluster admin); only on a loopback `--listen` and without `--listen-netns`. For tests
    /// and local experiments. Without it and without TLS flags the server generates its PKI
    /// under `--data-dir`/pki and serves HTTPS.
    #[arg(long, conflicts_with_all = ["tls_cert_file", "tls_private_key_file", "pki_dir"])]
    pub insecure_serving: bool,
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
    /// Decide from the flags; `listens` are the bound address and the `--listen-netns` ones,
    /// `data_dir` holds the generated PKI when no TLS flag says otherwise.
    pub fn resolve(
        args: &TlsArgs,
        data_dir: &Path,
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
            (None, None, None) if args.insecure_serving => {
                if let Some(a) = listens.iter().find(|a| !a.ip().is_loopback()) {
                    anyhow::bail!(
                        "--insecure-serving serves plain HTTP without authentication and only on \
                         loopback; {a} is not a loopback address (drop --insecure-serving for \
                         HTTPS, or give --pki-dir / --tls-cert-file and --tls-private-key-file)"
                    );
                }
                tracing::warn!(
                    "serving plain HTTP without authentication on {listen} (--insecure-serving): \
                     every request is the cluster admin"
                );
                Ok(Serving::Plain)
            }
            (None, None, None) => {
                let args = TlsArgs {
                    pki_dir: Some(data_dir.join("pki")),
                    ..args.clone()
                };
                Serving::resolve(&args, data_dir, listens, service_cidr)
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
    fn https_by_default_plain_only_on_loopback_and_tls_flags_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let cidr = "10.96.0.0/12";
        let lo: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let by_default = Serving::resolve(&TlsArgs::default(), dir.path(), &[lo], cidr).unwrap();
        assert_eq!(by_default.scheme(), "https");
        assert!(
            dir.path().join("pki/ca.crt").exists(),
            "PKI under --data-dir"
        );
        let plain = TlsArgs {
            insecure_serving: true,
            ..TlsArgs::default()
        };
        let s = Serving::resolve(&plain, dir.path(), &[lo], cidr).unwrap();
        assert_eq!(s.scheme(), "http");
        let wide: SocketAddr = "0.0.0.0:6443".parse().unwrap();
        let Err(e) = Serving::resolve(&plain, dir.path(), &[lo, wide], cidr) else {
            panic!("plain HTTP on a non-loopback address was accepted");
        };
        assert!(
            e.to_string()
                .contains("0.0.0.0:6443 is not a loopback address"),
            "{e}"
        );
        let half = TlsArgs {
            tls_cert_file: Some("x.crt".into()),
            ..TlsArgs::default()
        };
        assert!(Serving::resolve(&half, dir.path(), &[lo], cidr).is_err());
    }

    #[test]
    fn pki_dir_serves_tls() {
        let dir = tempfile::tempdir().unwrap();
        let args = TlsArgs {
            pki_dir: Some(dir.path().join("pki")),
            ..TlsArgs::default()
        };
        let s = Serving::resolve(
            &args,
            dir.path(),
            &["0.0.0.0:6443".parse().unwrap()],
            "10.96.0.0/12",
        )
        .unwrap();
        assert_eq!(s.scheme(), "https");
    }
}
