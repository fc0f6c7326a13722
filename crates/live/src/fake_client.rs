//! A test double at the API seam of the live drivers: a `kube::Client` over an in-memory
//! service. Lists answer with the items given per resource (plural), watches stay open with
//! nothing to say, and every write is counted and refused with a 500 `Status`, so it comes
//! back to the driver as a failure. For tests of the driver loops themselves (no network).
//!
//! Start at [`fake_client`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};

type Body = BoxBody<Bytes, Infallible>;

fn respond(code: u16, body: &serde_json::Value) -> http::Response<Body> {
    let mut r = http::Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// A client whose lists of `plural` (e.g. `pods`) return `lists[plural]` (nothing for others);
/// `writes` counts every non-GET request.
pub fn fake_client(
    lists: BTreeMap<String, Vec<serde_json::Value>>,
    writes: Arc<AtomicUsize>,
) -> kube::Client {
    let lists = Arc::new(lists);
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (lists, writes) = (Arc::clone(&lists), Arc::clone(&writes));
        async move {
            let query = req.uri().query().unwrap_or("");
            let resp = if req.method() == http::Method::GET && query.contains("watch=true") {
                let never =
                    futures::stream::pending::<Result<http_body::Frame<Bytes>, Infallible>>();
                let mut r = http::Response::new(StreamBody::new(never).boxed());
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            } else if req.method() == http::Method::GET && names_one_object(req.uri().path()) {
                respond(
                    404,
                    &serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "message": "not found", "reason": "NotFound", "code": 404}),
                )
            } else if req.method() == http::Method::GET {
                let plural = req.uri().path().rsplit('/').next().unwrap_or("");
                let items = lists.get(plural).cloned().unwrap_or_default();
                respond(
                    200,
                    &serde_json::json!({"apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            } else {
                writes.fetch_add(1, Ordering::SeqCst);
                respond(
                    500,
                    &serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "message": "injected by the test double", "reason": "InternalError", "code": 500}),
                )
            };
            Ok::<_, Infallible>(resp)
        }
    });
    kube::Client::new(svc, "default")
}

/// True for a path naming one object (`/api/v1/namespaces/NS/pods/NAME`,
/// `/apis/G/V/nodes/NAME`), false for a collection: the double has no single objects.
fn names_one_object(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.first() {
        Some(&"api") => segs.get(2..),
        Some(&"apis") => segs.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    rest.len() == 2
}
