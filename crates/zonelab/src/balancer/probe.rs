//! The health checker's I/O: one TCP connect, or one HTTP/1.1 GET (over TLS for an HTTPS
//! check, the certificate not verified, as ELB's) read up to its status line, bounded by the
//! check's timeout. Runs on the balancer's thread, which is inside the
//! balancer's network namespace, so the sockets are opened there.
//!
//! Start at [`run`].

use std::io::ErrorKind;
use std::sync::{Arc, OnceLock};

use lb::{ProbeReport, ProbeRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The User-Agent ELB's HTTP health checks send.
const USER_AGENT: &str = "ELB-HealthChecker/2.0";
/// Most bytes read looking for the status line.
const MAX_STATUS_LINE: usize = 1024;

/// Run `req` and say what happened.
pub async fn run(req: &ProbeRequest) -> ProbeReport {
    match tokio::time::timeout(req.timeout, check(req)).await {
        Ok(r) => r,
        Err(_) => ProbeReport::TimedOut,
    }
}

async fn check(req: &ProbeRequest) -> ProbeReport {
    let stream = match TcpStream::connect(req.addr).await {
        Ok(s) => s,
        Err(e) => return ProbeReport::Failed(describe(&e)),
    };
    let Some(path) = &req.http_path else {
        return ProbeReport::Connected;
    };
    if !req.tls {
        return get(stream, path, req).await;
    }
    let connector = tokio_rustls::TlsConnector::from(tls_config());
    let name = rustls_pki_types::ServerName::IpAddress((*req.addr.ip()).into());
    match connector.connect(name, stream).await {
        Ok(tls) => get(tls, path, req).await,
        Err(e) => ProbeReport::Failed(format!("TLS handshake: {e}")),
    }
}

/// The GET of `path` over `stream`, read up to the status line.
async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    req: &ProbeRequest,
) -> ProbeReport {
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        req.addr
    );
    if let Err(e) = stream.write_all(head.as_bytes()).await {
        return ProbeReport::Failed(describe(&e));
    }
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < MAX_STATUS_LINE {
        match stream.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return ProbeReport::Connected,
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return ProbeReport::Failed(describe(&e)),
        }
    }
    match status_code(&buf) {
        Some(code) => ProbeReport::HttpStatus(code),
        None => ProbeReport::Failed("malformed HTTP response".into()),
    }
}

/// The HTTPS checks' client config: no certificate verification (ELB's HTTPS health checks
/// do not validate the target's certificate), signatures still checked by the ring provider.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        // ring, as the API server's (rustls deprecates it for lacking post-quantum exchange).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyCertificate(Arc::clone(&provider)));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Arc::new(config)
    }))
}

/// Accepts any server certificate (see [`tls_config`]).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The code of an `HTTP/1.x NNN …` status line.
fn status_code(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|b| *b == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Duration;

    #[test]
    fn parses_status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 20 OK\r\n"), None);
    }

    fn req(port: u16, http: bool) -> ProbeRequest {
        ProbeRequest {
            id: 1,
            group: "g".into(),
            target: lb::TargetKey {
                ip: Ipv4Addr::LOCALHOST,
                port,
            },
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            http_path: http.then(|| "/readyz".to_string()),
            tls: false,
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn http_and_tcp_checks_against_a_loopback_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut s, _) = l.accept().await.expect("accept");
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let asked = String::from_utf8_lossy(&buf[..n]).to_string();
                let _ = s
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
                    .await;
                if asked.contains("GET /readyz") {
                    assert!(asked.contains("User-Agent: ELB-HealthChecker/2.0"));
                }
            }
        });
        assert_eq!(run(&req(port, true)).await, ProbeReport::HttpStatus(503));
        assert_eq!(run(&req(port, false)).await, ProbeReport::Connected);
        server.await.expect("server");
        // Nothing listens there any more.
        assert_eq!(
            run(&req(port, false)).await,
            ProbeReport::Failed("connection refused".into())
        );
    }

    #[tokio::test]
    async fn https_checks_do_not_verify_the_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_dir = dir.path().join("pki");
        crate::pki::Pki::ensure(&pki_dir, &[], "10.96.0.0/12").expect("pki");
        let files = apiserver::tls::TlsFiles {
            cert_file: pki_dir.join("apiserver.crt"),
            key_file: pki_dir.join("apiserver.key"),
            client_ca_file: None,
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(files.server_config().expect("config"));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.expect("accept");
            let mut s = acceptor.accept(s).await.expect("handshake");
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).await.unwrap_or(0);
            assert!(String::from_utf8_lossy(&buf[..n]).contains("GET /readyz"));
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n")
                .await
                .expect("write");
            let _ = s.shutdown().await;
        });
        let mut r = req(port, true);
        r.tls = true;
        assert_eq!(run(&r).await, ProbeReport::HttpStatus(200));
        server.await.expect("server");
    }
}
