//! The built-in `zonelab/echo` image: an HTTP server that says who answered.
//!
//! `GET /` answers `{"pod":…,"node":…,"zone":…,"client":…}` (from the env the kubelet sets:
//! POD_NAME, NODE_NAME, ZONE; `client` is the source address the connection arrived from, so a
//! caller sees whether kube-proxy masqueraded it); `GET /healthz` answers `ok`. SIGTERM stops it after in-flight requests.

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
    /// Port to listen on (all addresses of the pod's network namespace).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
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

fn respond(id: &Identity, client: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (code, ctype, body) = match req.uri().path() {
        "/healthz" | "/readyz" | "/livez" => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ok"))
        }
        "/" => {
            let mut v = serde_json::to_value(id).unwrap_or_default();
            v["client"] = serde_json::Value::String(client.to_string());
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

pub async fn run(args: EchoArgs) -> anyhow::Result<()> {
    let id = Arc::new(Identity::from_env());
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], args.port))).await?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        let (stream, peer) = tokio::select! {
            _ = term.recv() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let id = Arc::clone(&id);
        let client: Arc<str> = Arc::from(peer.ip().to_string());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (id, client) = (Arc::clone(&id), Arc::clone(&client));
                async move { Ok::<_, Infallible>(respond(&id, &client, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
