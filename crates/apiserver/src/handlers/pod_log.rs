//! `GET /api/v1/namespaces/NS/pods/NAME/log`: validate the options, pick the container, and
//! proxy to the pod's node's kubelet (`/containerLogs/NS/NAME/CONTAINER` on the address from
//! the Node's status and its `daemonEndpoints.kubeletEndpoint.Port`), as upstream's
//! `LogREST` + `LocationStreamer` do; the answer streams through, so `follow` works. Kubelet
//! errors come back with their code and text (upstream's `genericResponseChecker`); a node
//! that cannot be dialled gives upstream's `Get "URL": dial tcp ADDR: …` error.
//!
//! Start at [`log`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use api::status::{Cause, StatusError};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use serde_json::{Value, json};

use super::Ctx;
use crate::path::ResourceTarget;
use crate::server::{Body, Server};

/// Upstream's dial timeout towards kubelets (the apiserver's kubelet client transport uses a
/// 30 s `net.Dialer` timeout, k/k `pkg/kubelet/client/kubelet_client.go` via
/// `utilnet.SetTransportDefaults`).
pub const KUBELET_DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Connects to a kubelet (`addr`, dial timeout): blocking, called on a blocking thread.
#[derive(Clone)]
pub struct KubeletDialer(
    pub Arc<dyn Fn(SocketAddr, Duration) -> std::io::Result<std::net::TcpStream> + Send + Sync>,
);

impl std::fmt::Debug for KubeletDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeletDialer")
    }
}

/// Upstream kubelet port when the Node reports none (`ports.KubeletPort`).
pub const DEFAULT_KUBELET_PORT: i64 = 10250;
/// Most bytes of a kubelet's error answer kept (upstream `maxReadLength` = 50000).
const MAX_ERROR_BODY: usize = 50_000;
/// Node address types tried in order: kubeadm's `--kubelet-preferred-address-types`
/// (`InternalIP,ExternalIP,Hostname`); upstream's built-in default starts with `Hostname`,
/// which the lab's nodes cannot resolve.
const PREFERRED_ADDRESS_TYPES: [&str; 3] = ["InternalIP", "ExternalIP", "Hostname"];
/// Query parameters passed on to the kubelet.
const PASSED_ON: [&str; 7] = [
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// Serve a pod's log.
pub async fn log(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    validate_options(t, ctx, name)?;
    let (_, pod) = super::current(server, t, name).await?;
    let container = choose_container(&pod, name, ctx.query.get("container"))?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        // Upstream: a pod without a node has no log location; the answer is empty.
        return Ok(Response::new(Empty::new().boxed_unsync()));
    }
    let nodes = api::resources::by_plural("", "nodes").ok_or_else(StatusError::path_not_found)?;
    let node_target = ResourceTarget {
        res: nodes,
        namespace: None,
        name: Some(node_name.to_string()),
        subresource: None,
        watch_path: false,
    };
    let (_, node) = super::current(server, &node_target, node_name).await?;
    let addr = kubelet_address(&node)
        .ok_or_else(|| StatusError::bad_request(format!("node {node_name:?} has no address")))?;
    let ns = t.namespace.as_deref().unwrap_or("default");
    let url = kubelet_url(&addr.to_string(), ns, name, &container, &ctx.query);
    proxy(server.cfg.kubelet_dialer.clone(), addr, &url, name).await
}

/// Upstream `ValidatePodLogOptions`: 422 `PodLogOptions "NAME" is invalid: …`.
fn validate_options(t: &ResourceTarget, ctx: &Ctx, name: &str) -> Result<(), StatusError> {
    let int = |k: &str| -> Result<Option<i64>, StatusError> {
        match ctx.query.get(k) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                StatusError::bad_request(format!(
                    "couldn't parse query parameter {k}: invalid value {v:?}"
                ))
            }),
        }
    };
    let mut causes = Vec::new();
    if let Some(n) = int("tailLines")?.filter(|n| *n < 0) {
        causes.push(Cause::invalid(
            "tailLines",
            &json!(n),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = int("limitBytes")?.filter(|n| *n < 1) {
        causes.push(Cause::invalid(
            "limitBytes",
            &json!(n),
            "must be greater than 0",
        ));
    }
    let since_seconds = int("sinceSeconds")?;
    if since_seconds.is_some() && ctx.query.contains_key("sinceTime") {
        causes.push(Cause::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    } else if let Some(n) = since_seconds.filter(|n| *n < 1) {
        causes.push(Cause::invalid(
            "sinceSeconds",
            &json!(n),
            "must be greater than 0",
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    let mut info = *t.res;
    info.kind = "PodLogOptions";
    Err(StatusError::invalid(&info, name, causes))
}

/// The container to read: the one asked for, or the only one (upstream `LogLocation`).
fn choose_container(
    pod: &Value,
    name: &str,
    asked: Option<&String>,
) -> Result<String, StatusError> {
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let Some(asked) = asked.filter(|c| !c.is_empty()) else {
        return match containers.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(StatusError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            many => {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                );
                if !init.is_empty() {
                    msg.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                Err(StatusError::bad_request(msg))
            }
        };
    };
    if containers.contains(asked) || init.contains(asked) {
        return Ok(asked.clone());
    }
    Err(StatusError::bad_request(format!(
        "container {asked} is not valid for pod {name}"
    )))
}

/// The node's kubelet: the first IP address of the preferred types (names are never
/// resolved) and its port.
fn kubelet_address(node: &Value) -> Option<SocketAddr> {
    let addresses = node["status"]["addresses"].as_array()?;
    let ip = PREFERRED_ADDRESS_TYPES.iter().find_map(|want| {
        addresses
            .iter()
            .filter(|a| a["type"] == *want)
            .find_map(|a| a["address"].as_str()?.parse::<IpAddr>().ok())
    })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_i64()
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

fn kubelet_url(
    addr: &str,
    ns: &str,
    pod: &str,
    container: &str,
    query: &std::collections::BTreeMap<String, String>,
) -> String {
    let params: Vec<String> = PASSED_ON
        .iter()
        .filter_map(|k| query.get(*k).map(|v| (k, v)))
        .filter(|(k, v)| {
            !matches!(
                (**k, v.as_str()),
                ("follow" | "previous" | "timestamps", "false")
            )
        })
        .map(|(k, v)| {
            let v = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
            format!("{k}={v}")
        })
        .collect();
    let mut url = format!("http://{addr}/containerLogs/{ns}/{pod}/{container}");
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

/// Go's text for a failed dial (`dial tcp ADDR: connect: connection refused`).
fn dial_error(addr: &str, e: Option<&std::io::Error>) -> String {
    let why = match e.map(std::io::Error::kind) {
        None => "i/o timeout".to_string(),
        Some(std::io::ErrorKind::ConnectionRefused) => "connect: connection refused".into(),
        Some(std::io::ErrorKind::HostUnreachable) => "connect: no route to host".into(),
        Some(std::io::ErrorKind::NetworkUnreachable) => "connect: network is unreachable".into(),
        Some(_) => format!(
            "connect: {}",
            e.map(ToString::to_string).unwrap_or_default()
        ),
    };
    format!("dial tcp {addr}: {why}")
}

/// A failure that is not an API status: 500 without a reason, as upstream's
/// `ErrorToAPIStatus` makes of a transport error (kubectl prints `Error from server: …`).
fn transport_error(message: String) -> StatusError {
    StatusError {
        code: 500,
        reason: "",
        message,
        details: None,
    }
}

/// A kubelet's error answer as upstream's `genericResponseChecker` reports it: 400 as
/// BadRequest with the kubelet's text, 500 as InternalError, anything else as
/// `NewGenericServerResponse` (its fixed message per code, then `( pods NAME)`).
fn kubelet_error(code: StatusCode, body: &str, pod: &str) -> StatusError {
    let (reason, generic): (&'static str, &str) = match code.as_u16() {
        400 => return StatusError::bad_request(body),
        500 => {
            return StatusError {
                code: 500,
                reason: "InternalError",
                message: format!("Internal error occurred: {body}"),
                details: None,
            };
        }
        404 => (
            "NotFound",
            "the server could not find the requested resource",
        ),
        401 => (
            "Unauthorized",
            "the server has asked for the client to provide credentials",
        ),
        403 => ("Forbidden", body),
        405 => (
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
        409 => ("Conflict", "the server reported a conflict"),
        422 => (
            "Invalid",
            "the server rejected our request due to an error in our request",
        ),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        c if c >= 500 => {
            return StatusError {
                code: c,
                reason: "InternalError",
                message: format!(
                    "an error on the server ({body:?}) has prevented the request from succeeding ( pods {pod})"
                ),
                details: None,
            };
        }
        _ => ("", ""),
    };
    let message = if generic.is_empty() {
        format!(
            "the server responded with the status code {} but did not return more information ( pods {pod})",
            code.as_u16()
        )
    } else {
        format!("{generic} ( pods {pod})")
    };
    StatusError {
        code: code.as_u16(),
        reason,
        message,
        details: None,
    }
}

/// Connect to the kubelet at `addr` within [`KUBELET_DIAL_TIMEOUT`]; `None` on a timeout.
async fn dial(
    dialer: Option<KubeletDialer>,
    addr: SocketAddr,
) -> Result<tokio::net::TcpStream, Option<std::io::Error>> {
    let Some(dialer) = dialer else {
        // Without a dialer (no `--listen-netns`) only loopback kubelets are reached: a node
        // address of a lab must never be dialled from a namespace whose routes lead to the
        // real network.
        if !addr.ip().is_loopback() {
            return Err(Some(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "kubelets off loopback are reached only through --listen-netns",
            )));
        }
        return match tokio::time::timeout(
            KUBELET_DIAL_TIMEOUT,
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        };
    };
    let joined = tokio::task::spawn_blocking(move || (dialer.0)(addr, KUBELET_DIAL_TIMEOUT)).await;
    let std_stream = match joined {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => return Err(None),
        Ok(Err(e)) => return Err(Some(e)),
        Err(e) => return Err(Some(std::io::Error::other(e.to_string()))),
    };
    std_stream.set_nonblocking(true).map_err(Some)?;
    tokio::net::TcpStream::from_std(std_stream).map_err(Some)
}

async fn proxy(
    dialer: Option<KubeletDialer>,
    addr: SocketAddr,
    url: &str,
    pod: &str,
) -> Result<Response<Body>, StatusError> {
    let get_failed = |why: String| transport_error(format!("Get {url:?}: {why}"));
    let addr_text = addr.to_string();
    let stream = match dial(dialer, addr).await {
        Ok(s) => s,
        Err(e) => return Err(get_failed(dial_error(&addr_text, e.as_ref()))),
    };
    let addr = addr_text.as_str();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| get_failed(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = url.split_once(addr).map_or("/", |(_, p)| p).to_string();
    let req = http::Request::get(path)
        .header(http::header::HOST, addr)
        .body(Empty::<Bytes>::new())
        .map_err(|e| get_failed(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| get_failed(e.to_string()))?;
    let code = resp.status();
    if !(200..=206).contains(&code.as_u16()) {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]).into_owned();
        return Err(kubelet_error(code, &text, pod));
    }
    let body = resp.into_body();
    let frames = futures::stream::unfold(body, |mut b| async move {
        match b.frame().await {
            Some(Ok(f)) => Some((Ok::<_, Infallible>(f), b)),
            _ => None,
        }
    });
    let mut out = Response::new(StreamBody::new(frames).boxed_unsync());
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_dialer_only_loopback_is_dialled() {
        let lab_node: SocketAddr = "172.20.0.11:10250".parse().unwrap();
        let err = dial(None, lab_node)
            .await
            .unwrap_err()
            .expect("an error, not a timeout");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        // Loopback is dialled: a closed port answers with a refusal, not the guard.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let err = dial(None, addr).await.unwrap_err().expect("an error");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn containers_addresses_and_urls() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            choose_container(&pod, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(
            choose_container(&pod, "p", Some(&"x".to_string()))
                .unwrap_err()
                .message,
            "container x is not valid for pod p"
        );
        assert_eq!(
            choose_container(&pod, "p", Some(&"b".to_string())).ok(),
            Some("b".into())
        );
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(choose_container(&one, "p", None).ok(), Some("a".into()));
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"},
            {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(
            kubelet_address(&node).map(|a| a.to_string()).as_deref(),
            Some("10.0.0.5:10250")
        );
        let named = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(kubelet_address(&named), None, "names are not resolved");
        let q = [
            ("follow", "true"),
            ("previous", "false"),
            ("tailLines", "5"),
            ("pretty", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            kubelet_url("10.0.0.5:10250", "ns", "p", "a", &q),
            "http://10.0.0.5:10250/containerLogs/ns/p/a?follow=true&tailLines=5"
        );
        let e = kubelet_error(
            StatusCode::BAD_REQUEST,
            "container \"a\" in pod \"p\" is waiting to start: ContainerCreating",
            "p",
        );
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert!(e.message.starts_with("container \"a\""));
        let e = kubelet_error(StatusCode::NOT_FOUND, "pod \"p\" does not exist\n", "p");
        assert_eq!(
            (e.reason, e.message.as_str()),
            (
                "NotFound",
                "the server could not find the requested resource ( pods p)"
            )
        );
        assert_eq!(
            dial_error("10.0.0.5:10250", None),
            "dial tcp 10.0.0.5:10250: i/o timeout"
        );
    }
}
