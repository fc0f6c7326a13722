//! `get` over HTTPS with a client certificate vs plain HTTP, in one run against one server:
//! requests/s and p99 on reused connections (4 clients), and the full TLS handshake time.
//!
//! Run: `cargo bench -p apiserver --bench tls` (on this shared machine, `--profile dev`).

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
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
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
        let c = p.signed_by(&k, &issuer).unwrap();
        (
            c.der().clone(),
            PrivateKeyDer::try_from(k.serialize_der()).unwrap(),
        )
    };
    Pki {
        ca: ca.der().clone(),
        server: leaf("kube-apiserver", vec!["localhost".into()]),
        client: leaf("kubernetes-admin", vec![]),
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
    let roots = Arc::new(roots);
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    let scfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, tls_addr) = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
    tokio::spawn(Arc::clone(&server).accept_loop(plain));
    tokio::spawn(Arc::clone(&server).accept_loop_tls(secure, Arc::new(scfg)));
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

    let mut hs = Vec::with_capacity(HANDSHAKES);
    for _ in 0..HANDSHAKES {
        let t = Instant::now();
        let tcp = TcpStream::connect(tls_addr).await.unwrap();
        let mut s = BufReader::new(connector.connect(name.clone(), tcp).await.unwrap());
        // The server verifies the client certificate before it answers the first request.
        get(&mut s).await;
        hs.push(t.elapsed());
    }
    hs.sort();
    println!(
        "full handshake + first get ({HANDSHAKES}, client certificate): median {:?}, p99 {:?}",
        hs[HANDSHAKES / 2],
        hs[HANDSHAKES * 99 / 100]
    );
}
