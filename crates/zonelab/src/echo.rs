//! The built-in `zonelab/echo` image: an HTTP server that says who answered.
//!
//! `GET /` answers `{"pod":…,"node":…,"zone":…,"client":…}` (from the env the kubelet sets:
//! POD_NAME, NODE_NAME, ZONE; `client` is the source address the connection arrived from, so a
//! caller sees whether kube-proxy masqueraded it); `GET /healthz` answers `ok`. SIGTERM stops it.
//! It serves every `--port` given; as a stand-in for another image (`--stands-in-for IMAGE`)
//! every path answers 200 with the identity (plus `image` and `port`), so the image's own
//! httpGet probes pass. Every request is logged to stdout, one line each (nginx's combined
//! format plus the port), which is what `kubectl logs` shows. Start at [`run`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    /// Port to listen on (all addresses of the pod's network namespace); repeat for more.
    /// Without any: 8080, unless standing in (a stand-in serves exactly the declared ports).
    #[arg(long)]
    pub port: Vec<u16>,
    /// Stand in for this image: every path answers 200 with who served it.
    #[arg(long)]
    pub stands_in_for: Option<String>,
}

/// Who this server is, from the environment.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Identity {
    pub pod: String,
    pub node: String,
    pub zone: String,
}

impl Identity {
    pub fn from_env() -> Identity {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Identity {
            pod: var("POD_NAME"),
            node: var("NODE_NAME"),
            zone: var("ZONE"),
        }
    }
}

/// What one listener knows about itself.
struct Served {
    id: Identity,
    port: u16,
    stands_in_for: Option<String>,
}

fn respond(s: &Served, client: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let (code, ctype, body) = match path {
        "/healthz" | "/readyz" | "/livez" => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ok"))
        }
        _ if path == "/" || s.stands_in_for.is_some() => {
            let mut v = serde_json::to_value(&s.id).unwrap_or_default();
            v["client"] = serde_json::Value::String(client.to_string());
            if let Some(image) = &s.stands_in_for {
                v["image"] = serde_json::Value::String(image.clone());
                v["port"] = serde_json::Value::from(s.port);
            }
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            b.push(b'\n');
            (StatusCode::OK, "application/json", Bytes::from(b))
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found"),
        ),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = code;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// One access-log line: nginx's `combined` format plus the port that served it.
fn access_line(
    client: &str,
    req: &Request<Incoming>,
    code: u16,
    bytes: usize,
    port: u16,
) -> String {
    let header = |h: header::HeaderName| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    format!(
        "{client} - - [{}] \"{} {target} {:?}\" {code} {bytes} \"{}\" \"{}\" port={port}",
        chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S %z"),
        req.method(),
        req.version(),
        header(header::REFERER),
        header(header::USER_AGENT),
    )
}

/// Write one line to stdout; a closed stdout (the kubelet went away) is ignored.
fn log_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn serve(listener: tokio::net::TcpListener, served: Arc<Served>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let served = Arc::clone(&served);
        let client: Arc<str> = Arc::from(peer.ip().to_string());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (served, client) = (Arc::clone(&served), Arc::clone(&client));
                async move {
                    let r = respond(&served, &client, &req);
                    let len = hyper::body::Body::size_hint(r.body()).exact().unwrap_or(0);
                    log_line(&access_line(
                        &client,
                        &req,
                        r.status().as_u16(),
                        usize::try_from(len).unwrap_or(0),
                        served.port,
                    ));
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

pub async fn run(args: EchoArgs) -> anyhow::Result<()> {
    let id = Identity::from_env();
    let mut ports = args.port.clone();
    if ports.is_empty() && args.stands_in_for.is_none() {
        ports.push(8080);
    }
    let mut tasks = Vec::new();
    for port in &ports {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], *port))).await?;
        let served = Arc::new(Served {
            id: id.clone(),
            port: *port,
            stands_in_for: args.stands_in_for.clone(),
        });
        tasks.push(tokio::spawn(serve(listener, served)));
    }
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    match &args.stands_in_for {
        Some(image) => log_line(&format!(
            "zonelab/echo standing in for {image} on ports [{}] (pod {}, node {}, zone {})",
            list.join(" "),
            id.pod,
            id.node,
            id.zone
        )),
        None => log_line(&format!("zonelab/echo serving ports [{}]", list.join(" "))),
    }
    let mut term = signal(SignalKind::terminate())?;
    term.recv().await;
    log_line("SIGTERM: stopping");
    for t in tasks {
        t.abort();
    }
    Ok(())
}
