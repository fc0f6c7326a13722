//! The lab's cloud API over HTTP on loopback, for a `zonelab autoscaler` in its own process
//! (upstream's cluster-autoscaler talks to the cloud's API the same way): `GET /nodegroups`
//! (the groups with their instances and templates, JSON), `POST /nodegroups/{name}/increase`
//! `{"delta": n}`, `POST /nodegroups/{name}/delete` `{"nodes": [...]}`; a refused call is a 400
//! with the cloud's error text and changes nothing. [`serve`] is the lab's side, [`HttpCloud`]
//! the autoscaler's.
//!
//! Start at [`serve`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use controllers::autoscaler::{CloudAction, NodeGroupView};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::cloud::CloudHost;

/// Largest request body the endpoint reads.
const MAX_BODY: usize = 64 * 1024;
/// Bound on one call of the client.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A call of the cloud API that failed.
#[derive(Debug, thiserror::Error)]
pub enum CloudCallError {
    #[error("cloud endpoint {0}: {1}")]
    Transport(String, String),
    /// The cloud refused the call (its error text).
    #[error("{0}")]
    Refused(String),
    #[error("cloud endpoint {0}: no answer within {CALL_TIMEOUT:?}")]
    Timeout(String),
    #[error("cloud endpoint answered {0}: {1}")]
    Status(u16, String),
    #[error("cloud endpoint: invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Serve `host` on `listen` (loopback); returns the bound address and the accept task.
pub async fn serve(
    host: CloudHost,
    listen: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let host = host.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let host = host.clone();
                    async move { Ok::<_, Infallible>(handle(&host, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

#[derive(Deserialize)]
struct Increase {
    delta: usize,
}

#[derive(Deserialize)]
struct Delete {
    nodes: Vec<String>,
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn refused(text: String) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": text }).to_string(),
    )
}

async fn handle(host: &CloudHost, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let method = req.method().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return refused(format!("reading the request: {e}")),
    };
    let action = match (&method, path.as_slice()) {
        (&Method::GET, [groups]) if groups == "nodegroups" => {
            return match serde_json::to_string(&host.views()) {
                Ok(text) => reply(StatusCode::OK, text),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
        }
        (&Method::POST, [groups, name, verb]) if groups == "nodegroups" => match verb.as_str() {
            "increase" => match serde_json::from_slice::<Increase>(&body) {
                Ok(b) => CloudAction::IncreaseSize {
                    group: name.clone(),
                    delta: b.delta,
                },
                Err(e) => return refused(format!("invalid body: {e}")),
            },
            "delete" => match serde_json::from_slice::<Delete>(&body) {
                Ok(b) => CloudAction::DeleteNodes {
                    group: name.clone(),
                    nodes: b.nodes,
                },
                Err(e) => return refused(format!("invalid body: {e}")),
            },
            _ => return reply(StatusCode::NOT_FOUND, "{}".into()),
        },
        _ => return reply(StatusCode::NOT_FOUND, "{}".into()),
    };
    match host.call(&action) {
        Ok(()) => reply(StatusCode::OK, "{}".into()),
        Err(e) => refused(e.to_string()),
    }
}

/// The autoscaler's side: the cloud API at `addr`.
#[derive(Clone, Debug)]
pub struct HttpCloud {
    addr: SocketAddr,
}

impl HttpCloud {
    /// `url` is `http://HOST:PORT` (loopback).
    pub fn parse(url: &str) -> anyhow::Result<HttpCloud> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            anyhow::anyhow!("--cloud-provider-url {url:?}: expected http://HOST:PORT")
        })?;
        let addr: SocketAddr = rest
            .trim_end_matches('/')
            .parse()
            .map_err(|e| anyhow::anyhow!("--cloud-provider-url {url:?}: {e}"))?;
        Ok(HttpCloud { addr })
    }

    /// Upstream `NodeGroups()` with their instances and templates.
    pub async fn views(&self) -> Result<Vec<NodeGroupView>, CloudCallError> {
        let body = self
            .send(Method::GET, "/nodegroups".into(), String::new())
            .await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// `IncreaseSize` or `DeleteNodes`.
    pub async fn call(&self, action: &CloudAction) -> Result<(), CloudCallError> {
        let (path, body) = match action {
            CloudAction::IncreaseSize { group, delta } => (
                format!("/nodegroups/{group}/increase"),
                serde_json::json!({ "delta": delta }),
            ),
            CloudAction::DeleteNodes { group, nodes } => (
                format!("/nodegroups/{group}/delete"),
                serde_json::json!({ "nodes": nodes }),
            ),
        };
        self.send(Method::POST, path, body.to_string())
            .await
            .map(drop)
    }

    async fn send(
        &self,
        method: Method,
        path: String,
        body: String,
    ) -> Result<Bytes, CloudCallError> {
        let at = self.addr.to_string();
        let call = async {
            let transport =
                |e: &dyn std::fmt::Display| CloudCallError::Transport(at.clone(), e.to_string());
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| transport(&e))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| transport(&e))?;
            tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, at.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| transport(&e))?;
            let resp = sender.send_request(req).await.map_err(|e| transport(&e))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), 16 * 1024 * 1024)
                .collect()
                .await
                .map_err(|e| transport(&e))?
                .to_bytes();
            if status == StatusCode::BAD_REQUEST {
                let text = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                return Err(CloudCallError::Refused(text));
            }
            if !status.is_success() {
                return Err(CloudCallError::Status(
                    status.as_u16(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
            Ok(bytes)
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| CloudCallError::Timeout(at.clone()))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use controllers::nodegroups::{Cloud, CloudConfig, NodeGroupSpec};

    use super::*;
    use crate::capacity::{LabTarget, Recorder};

    fn spec(name: &str, zone: &str) -> NodeGroupSpec {
        let kubelet = kubelet::KubeletConfig {
            zone: zone.into(),
            ..kubelet::KubeletConfig::default()
        };
        NodeGroupSpec {
            name: name.into(),
            zone: zone.into(),
            min: 1,
            max: 2,
            desired: 1,
            // Never boots within the test: no lab is touched.
            boot_delay: Duration::from_secs(3600),
            template: kubelet::core::initial_node(&kubelet, false, controllers::Moment::EPOCH),
        }
    }

    #[tokio::test]
    async fn the_autoscaler_sees_and_resizes_the_groups_over_http() {
        let config = CloudConfig {
            zone_node_prefix: Some("zt".into()),
            ..CloudConfig::default()
        };
        let cloud = Cloud::new(vec![spec("ng-a", "a"), spec("ng-b", "b")], config);
        let seen: Arc<Mutex<Vec<lab::EventKind>>> = Arc::default();
        let sink = Arc::clone(&seen);
        let record: Recorder = Arc::new(move |e| sink.lock().expect("lock").push(e));
        let lab = LabTarget {
            state_dir: std::env::temp_dir().join("zonelab-http-test-none"),
            prefix: "zt".into(),
        };
        let kube = kube::Client::try_from(kube::Config::new(
            "http://127.0.0.1:9".parse().expect("uri"),
        ))
        .expect("client");
        let (host, ticker) = CloudHost::start(cloud, lab, kube, record);
        let (addr, server) = serve(host, ([127, 0, 0, 1], 0).into())
            .await
            .expect("serve");
        let c = HttpCloud::parse(&format!("http://{addr}")).expect("url");

        let views = c.views().await.expect("views");
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].instances[0].name, "zt-a-1");
        assert_eq!(
            views[0].template.metadata.labels.as_ref().expect("labels")["topology.kubernetes.io/zone"],
            "a"
        );
        let inc = CloudAction::IncreaseSize {
            group: "ng-b".into(),
            delta: 1,
        };
        c.call(&inc).await.expect("increase");
        assert_eq!(c.views().await.expect("views")[1].target_size, 2);
        // Refused calls carry the cloud's words and change nothing.
        let e = c.call(&inc).await.expect_err("above max");
        assert_eq!(e.to_string(), "size increase too large - desired:3 max:2");
        let del = CloudAction::DeleteNodes {
            group: "ng-a".into(),
            nodes: vec!["zt-b-1".into()],
        };
        let e = c.call(&del).await.expect_err("not in group");
        assert_eq!(
            e.to_string(),
            "node zt-b-1 does not belong to node group ng-a"
        );
        let views = c.views().await.expect("views");
        assert_eq!((views[0].target_size, views[1].target_size), (1, 2));
        assert!(seen.lock().expect("lock").iter().any(
            |e| matches!(e, lab::EventKind::ScaleUpRequested { group, delta: 1 } if group == "ng-b")
        ));
        ticker.abort();
        server.abort();
    }
}
