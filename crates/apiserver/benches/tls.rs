//! `get` over HTTPS with a client certificate vs plain HTTP, in one run against one server:
//! requests/s and p99 on reused connections (4 clients), and the full TLS handshake time (the
//! client's handshake, then the first `get`, which in TLS 1.3 also waits for the server's check
//! of the client certificate). The TLS listener uses the server's own `TlsFiles::server_config`
//! over PEM files, as `--tls-cert-file`/`--tls-private-key-file`/`--client-ca-file` give it.
//!
//! Run: `cargo bench -p apiserver --bench tls` (on this shared machine, `--profile dev`, with
//! `--config 'profile.dev.package.{apiserver,rustls,ring}.opt-level=3'` for representative
//! crypto and request-path code without a release build).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CLIENTS: usize = 4;
const REQUESTS: usize = 2_000;
const HANDSHAKES: usize = 200;

fn dn(cn: &str) -> rcgen::DistinguishedName {
    let mut d = rcgen::DistinguishedName::new();
    d.push(rcgen::DnType::CommonName, cn);
    d
}

struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    /// The serving certificate and key, PEM.
    server: (String, String),
    client: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn pki() -> Pki {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = dn("kubernetes");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(p, ca_key);
    let leaf = |cn: &str, san: Vec<String>| {
        let mut p = rcgen::CertificateParams::new(san).unwrap();
        p.distinguished_name = dn(cn);
        let k = rcgen::KeyPair::generate().unwrap();
        (p.signed_by(&k, &issuer).unwrap(), k)
    };
    let (server, server_key) = leaf("kube-apiserver", vec!["localhost".into()]);
    let (client, client_key) = leaf("kubernetes-admin", vec![]);
    Pki {
        ca: ca.der().clone(),
        ca_pem: ca.pem(),
        server: (server.pem(), server_key.serialize_pem()),
        client: (
            client.der().clone(),
            PrivateKeyDer::try_from(client_key.serialize_der()).unwrap(),
        ),
    }
}

#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn get<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>) {
    s.get_mut()
        .write_all(b"GET /api/v1/namespaces/default HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut len = 0;
    loop {
        let mut line = String::new();
        s.read_line(&mut line).await.unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.unwrap();
}

fn report(name: &str, started: Instant, mut lat: Vec<Duration>) -> f64 {
    lat.sort();
    let rps = lat.len() as f64 / started.elapsed().as_secs_f64();
    let p99 = lat[lat.len() * 99 / 100];
    println!("{name:<34} {rps:>9.0} req/s   p99 {p99:?}");
    rps
}

#[tokio::main]
async fn main() {
    let pki = pki();
    let store: store::SharedStore = Arc::new(store::MemStore::new());
    let server = apiserver::Server::new(store, apiserver::Config::default())
        .await
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = apiserver::tls::TlsFiles {
        cert_file: file("apiserver.crt", &pki.server.0),
        key_file: file("apiserver.key", &pki.server.1),
        client_ca_file: Some(file("ca.crt", &pki.ca_pem)),
    };
    let scfg = files.server_config().unwrap();
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, tls_addr) = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
    tokio::spawn(Arc::clone(&server).accept_loop(plain));
    tokio::spawn(Arc::clone(&server).accept_loop_tls(secure, scfg));
    let ccfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![pki.client.0.clone()], pki.client.1.clone_key())
            .unwrap(),
    );
    let connector = tokio_rustls::TlsConnector::from(ccfg);
    let name = ServerName::try_from("localhost").unwrap();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    println!("get of one Namespace, {CLIENTS} clients x {REQUESTS} requests, reused connections");
    let mut rates = Vec::new();
    for tls in [false, true] {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (connector, name) = (connector.clone(), name.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(REQUESTS);
                let tcp = TcpStream::connect(if tls { tls_addr } else { plain_addr })
                    .await
                    .unwrap();
                tcp.set_nodelay(true).unwrap();
                if tls {
                    let mut s = BufReader::new(connector.connect(name, tcp).await.unwrap());
                    for _ in 0..REQUESTS {
                        let t = Instant::now();
                        get(&mut s).await;
                        lat.push(t.elapsed());
                    }
                } else {
                    let mut s = BufReader::new(tcp);
                    for _ in 0..REQUESTS {
                        let t = Instant::now();
                        get(&mut s).await;
                        lat.push(t.elapsed());
                    }
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let label = if tls {
            "https + client certificate"
        } else {
            "plain http"
        };
        rates.push(report(label, started, lat));
    }
    println!("https / plain: {:.2}x", rates[1] / rates[0]);

    let (mut hs, mut first, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..HANDSHAKES {
        let t = Instant::now();
        let tcp = TcpStream::connect(tls_addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut s = BufReader::new(connector.connect(name.clone(), tcp).await.unwrap());
        let shaken = t.elapsed();
        // The server verifies the client certificate before it answers the first request.
        get(&mut s).await;
        hs.push(shaken);
        both.push(t.elapsed());
        first.push(t.elapsed() - shaken);
    }
    let mut plain_first = Vec::new();
    for _ in 0..HANDSHAKES {
        let t = Instant::now();
        let tcp = TcpStream::connect(plain_addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        get(&mut BufReader::new(tcp)).await;
        plain_first.push(t.elapsed());
    }
    let show = |what: &str, mut v: Vec<Duration>| {
        v.sort();
        println!(
            "{what:<52} median {:>10?}  p99 {:>10?}",
            v[v.len() / 2],
            v[v.len() * 99 / 100]
        );
    };
    println!("{HANDSHAKES} new connections each:");
    show("TLS 1.3 handshake, client side (connect + handshake)", hs);
    show("first get on it (includes the server's cert check)", first);
    show("handshake + first get", both);
    show("plain http: connect + first get", plain_first);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
}
