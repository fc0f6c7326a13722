//! The thin driver of kube-proxy's health check node ports: after each sync it opens a
//! listener for every port [`proxy::service_health::ServiceHealth`] lists (on the node's
//! NodePort addresses, inside the node's network namespace where the agent runs, like the
//! proxy's `/healthz`) and closes the ones no longer listed; each request is answered with
//! what the sans-IO state says at that moment, on any path, as upstream.
//!
//! Start at [`HealthPorts::reconcile`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proxy::ServiceKey;
use proxy::service_health::HealthCheckAnswer;

/// What a health check request needs: the per-Service state and the proxy's own health.
pub trait HealthSource: Send + 'static {
    /// The answer for `svc` now (`None`: the check is closed).
    fn answer(&self, svc: &ServiceKey) -> Option<HealthCheckAnswer>;
}

/// Open listeners: port -> (Service, one accept task per address).
pub struct HealthPorts {
    addrs: Vec<Ipv4Addr>,
    open: BTreeMap<u16, (ServiceKey, Vec<tokio::task::JoinHandle<()>>)>,
}

impl HealthPorts {
    /// `addrs`: where NodePorts are served; empty = every address (`0.0.0.0`).
    pub fn new(addrs: Vec<Ipv4Addr>) -> HealthPorts {
        let addrs = if addrs.is_empty() {
            vec![Ipv4Addr::UNSPECIFIED]
        } else {
            addrs
        };
        HealthPorts {
            addrs,
            open: BTreeMap::new(),
        }
    }

    /// Opens the listeners of new ports, closes those of ports no longer wanted (upstream
    /// `SyncServices`). A port that cannot be bound is logged and retried at the next sync.
    pub async fn reconcile<S: HealthSource>(
        &mut self,
        wanted: BTreeMap<u16, ServiceKey>,
        source: &Arc<Mutex<S>>,
    ) {
        let stale: Vec<u16> = self
            .open
            .iter()
            .filter(|(port, (svc, _))| wanted.get(port) != Some(svc))
            .map(|(port, _)| *port)
            .collect();
        for port in stale {
            if let Some((svc, tasks)) = self.open.remove(&port) {
                tracing::info!(%svc, port, "closing health check node port");
                tasks.iter().for_each(tokio::task::JoinHandle::abort);
            }
        }
        for (port, svc) in wanted {
            if self.open.contains_key(&port) {
                continue;
            }
            let mut tasks = Vec::new();
            for ip in &self.addrs {
                let addr = SocketAddr::from((*ip, port));
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => tasks.push(tokio::spawn(serve(l, svc.clone(), Arc::clone(source)))),
                    Err(e) => {
                        tracing::warn!(%svc, %addr, "failed to start health check server: {e}")
                    }
                }
            }
            if tasks.len() == self.addrs.len() {
                tracing::info!(%svc, port, "opened health check node port");
                self.open.insert(port, (svc, tasks));
            } else {
                tasks.iter().for_each(tokio::task::JoinHandle::abort);
            }
        }
    }
}

async fn serve<S: HealthSource>(
    listener: tokio::net::TcpListener,
    svc: ServiceKey,
    source: Arc<Mutex<S>>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (svc, source) = (svc.clone(), Arc::clone(&source));
        tokio::spawn(async move {
            let handler = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                let answer = source.lock().ok().and_then(|s| s.answer(&svc));
                async move { Ok::<_, Infallible>(response(answer)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}

fn response(answer: Option<HealthCheckAnswer>) -> hyper::Response<Full<Bytes>> {
    // A closed check writes nothing upstream (an empty 200); 503 says "do not send" plainly.
    let Some(a) = answer else {
        let mut r = hyper::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        return r;
    };
    let mut r = hyper::Response::new(Full::new(Bytes::from(a.body())));
    *r.status_mut() = hyper::StatusCode::from_u16(a.status_code())
        .unwrap_or(hyper::StatusCode::SERVICE_UNAVAILABLE);
    for (name, value) in a.headers() {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}
