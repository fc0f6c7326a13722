//! The HTTPS listener (`--tls-cert-file`, `--tls-private-key-file`, `--client-ca-file`):
//! rustls with the ring provider, HTTP/1.1, optional client certificates verified against the
//! client CA. Start at [`TlsFiles::server_config`] and [`Server::accept_loop_tls`].
//!
//! As upstream, a client certificate is optional at the handshake (a request without one may
//! still carry a bearer token), but one that does not chain to the client CA or has expired
//! fails the handshake, which is logged (Go's "http: TLS handshake error from …").

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::authn::CertIdentity;
use crate::server::{Conn, Server};

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Go's answer to plain HTTP on a TLS port.
const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The serving files, as kube-apiserver's flags name them.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// `--tls-cert-file`: the serving certificate (then its chain), PEM.
    pub cert_file: PathBuf,
    /// `--tls-private-key-file`: its key, PEM (PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
    /// `--client-ca-file`: client certificates signed by these CAs authenticate by CN/O.
    pub client_ca_file: Option<PathBuf>,
}

/// Why the TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {flag} {path}: {source}")]
    Pem {
        flag: &'static str,
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{flag} {path} holds no certificate")]
    Empty { flag: &'static str, path: PathBuf },
    #[error("--client-ca-file {path}: {source}")]
    ClientCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("--tls-cert-file/--tls-private-key-file: {0}")]
    Rustls(#[from] rustls::Error),
}

fn certs(flag: &'static str, path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        flag,
        path: path.clone(),
        source,
    };
    let out = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if out.is_empty() {
        return Err(TlsError::Empty {
            flag,
            path: path.clone(),
        });
    }
    Ok(out)
}

impl TlsFiles {
    /// The rustls server config: HTTP/1.1 by ALPN, client certificates optional and verified
    /// against `--client-ca-file` when it is set (none asked for otherwise).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        // ring, as chosen (aws-lc needs cmake and a long C build); rustls 0.23.48 deprecates
        // it for lacking post-quantum key exchange, which no kubectl needs.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certs("--tls-cert-file", &self.cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|source| TlsError::Pem {
            flag: "--tls-private-key-file",
            path: self.key_file.clone(),
            source,
        })?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let mut cfg = match &self.client_ca_file {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in certs("--client-ca-file", path)? {
                    roots.add(ca).map_err(|source| TlsError::ClientCa {
                        path: path.clone(),
                        source,
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .allow_unauthenticated()
                .build()?;
                builder
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain, key)?
            }
            None => builder.with_no_client_auth().with_single_cert(chain, key)?,
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl Server {
    /// Serve HTTPS on `listener` until the process ends (also starts the bookmark ticker).
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        self.start_bookmark_ticker();
        self.accept_loop_tls(listener, config).await
    }

    /// Accept and serve HTTPS connections on `listener`; each connection's verified client
    /// certificate (if any) is its requests' x509 credential.
    pub async fn accept_loop_tls(
        self: Arc<Self>,
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let (stream, peer) = crate::server::accept_next(&listener).await;
            let server = Arc::clone(&self);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_tls(server, acceptor, stream, peer).await {
                    tracing::warn!("http: TLS handshake error from {peer}: {e}");
                }
            });
        }
    }
}

/// Handshake, then serve HTTP/1.1 over the connection. An error is a refused handshake.
async fn serve_tls(
    server: Arc<Server>,
    acceptor: tokio_rustls::TlsAcceptor,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), String> {
    if looks_like_plain_http(&stream).await {
        let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
        let _ = stream.shutdown().await;
        return Err("client sent an HTTP request to an HTTPS server".into());
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("handshake timed out".into()),
    };
    let client_cert = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(leaf) => match crate::authn::x509::subject_identity(leaf) {
            Ok(id) => Some(Arc::new(id)),
            Err(e) => return Err(e.to_string()),
        },
        None => None,
    };
    serve_http(server, tls, client_cert, peer).await;
    Ok(())
}

async fn serve_http(
    server: Arc<Server>,
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    client_cert: Option<Arc<CertIdentity>>,
    peer: SocketAddr,
) {
    let svc = service_fn(move |req| {
        let server = Arc::clone(&server);
        let conn = Conn::Secure(client_cert.clone());
        async move { Ok::<_, Infallible>(server.handle_conn(req, conn).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), svc);
    if let Err(e) = conn.await {
        tracing::debug!("connection from {peer} ended: {e}");
    }
}

/// Whether the first bytes are an ASCII HTTP request rather than a TLS record (which starts
/// with 0x16, the handshake content type). Waits at most the handshake timeout.
async fn looks_like_plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 4];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {
            first[0].is_ascii_uppercase()
                && first[..n]
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || *b == b' ')
        }
        _ => false,
    }
}
