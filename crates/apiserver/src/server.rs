//! The HTTP server: accepts connections, reads bounded bodies, dispatches to the handlers and
//! renders `Status` errors; also bootstraps the built-in namespaces and the `kubernetes` Service.
//!
//! Start at [`Server::new`] and [`Server::serve`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::status::StatusError;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use store::SharedStore;
use tokio::net::TcpListener;

use crate::alloc::ServiceAllocations;
use crate::metrics::{Metrics, RequestLabels};
use crate::path::{self, Target};
use crate::{discovery, handlers};

/// Largest request body accepted (upstream: 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The response body type: whole documents and watch streams alike.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Which listener a request came in on.
#[derive(Clone, Debug)]
pub enum Conn {
    /// The plain-HTTP loopback listener: every request is the cluster admin, without
    /// authentication (upstream's removed insecure port).
    Insecure,
    /// The HTTPS listener, with the connection's verified client certificate if it sent one;
    /// requests are authenticated by the authenticator chain.
    Secure(Option<Arc<crate::authn::CertIdentity>>),
}

/// API server settings; names follow kube-apiserver's flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--service-cluster-ip-range` (upstream default when unset: 10.0.0.0/24; zonelab and
    /// kubeadm use 10.96.0.0/12).
    pub service_cluster_ip_range: String,
    /// `--service-node-port-range`, default 30000-32767.
    pub service_node_port_range: (u16, u16),
    /// Address published in `/api` and as the `kubernetes` Service's target port.
    pub advertise_address: SocketAddr,
    /// How often watchers that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// `--default-not-ready-toleration-seconds` (300).
    pub default_not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds` (300).
    pub default_unreachable_toleration_seconds: i64,
    /// `--audit-log-path`: one audit Event per mutating request (see [`crate::audit`]).
    pub audit_log_path: Option<std::path::PathBuf>,
    /// How `pods/log` reaches a kubelet (`None`: a plain connect from this process's network
    /// namespace). The lab's server connects from inside the lab's control-plane namespace.
    pub kubelet_dialer: Option<crate::handlers::KubeletDialer>,
    /// `--authorization-mode` (upstream default: AlwaysAllow).
    pub authorization_modes: Vec<crate::authz::Mode>,
    /// The NodeRestriction admission plugin (`--enable-admission-plugins=NodeRestriction`).
    pub node_restriction: bool,
    /// `--token-auth-file`: static bearer tokens (upstream's CSV).
    pub token_auth_file: Option<std::path::PathBuf>,
    /// `--service-account-signing-key-file`, `--service-account-key-file`,
    /// `--service-account-issuer`, `--api-audiences`.
    pub service_accounts: crate::authn::serviceaccount::SaFlags,
    /// `--anonymous-auth` (default true).
    pub anonymous_auth: bool,
    /// Requests on the plain listener without a bearer token are the cluster admin (upstream's
    /// removed insecure port); with one they are authenticated. Default true.
    pub insecure_superuser: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_cluster_ip_range: "10.96.0.0/12".into(),
            service_node_port_range: (30000, 32767),
            advertise_address: SocketAddr::from(([127, 0, 0, 1], 6443)),
            bookmark_interval: Duration::from_secs(10),
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
            audit_log_path: None,
            kubelet_dialer: None,
            authorization_modes: vec![crate::authz::Mode::AlwaysAllow],
            node_restriction: false,
            token_auth_file: None,
            service_accounts: crate::authn::serviceaccount::SaFlags::default(),
            anonymous_auth: true,
            insecure_superuser: true,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid --service-cluster-ip-range: {0}")]
    Range(String),
    #[error("reading stored services failed: {0}")]
    Store(#[from] store::StoreError),
    #[error("bootstrapping built-in objects failed: {0}")]
    Bootstrap(StatusError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditOpenError),
    #[error("--token-auth-file: {0}")]
    TokenFile(#[from] crate::authn::tokens::TokenFileError),
    #[error(transparent)]
    ServiceAccountKey(#[from] crate::authn::serviceaccount::SaKeyError),
}

/// The API server. Cheap to share (`Arc`).
pub struct Server {
    pub(crate) store: SharedStore,
    pub(crate) cfg: Config,
    pub(crate) alloc: Mutex<ServiceAllocations>,
    pub(crate) rng: Mutex<StdRng>,
    pub(crate) metrics: Arc<Metrics>,
    /// Watch lines and decoded objects of recent events, shared by all watch streams.
    pub(crate) watch_events: Arc<crate::handlers::SharedEvents>,
    /// Decides what requests may do (`--authorization-mode`).
    pub(crate) authorizer: crate::authz::Chain,
    /// Finds each HTTPS request's user, asked in order (upstream's union authenticator);
    /// the plain loopback listener's requests skip it (the insecure superuser).
    pub(crate) authenticators: Vec<Box<dyn crate::authn::Authenticator>>,
    /// Requests without credentials are `system:anonymous` (`--anonymous-auth`).
    pub(crate) anonymous_auth: bool,
    /// `--audit-log-path`, when set.
    audit: Option<crate::audit::AuditLog>,
    /// Signs TokenRequests (`--service-account-signing-key-file`), when set.
    pub(crate) token_issuer: Option<crate::authn::serviceaccount::TokenIssuer>,
}

impl Server {
    /// Build a server over `store`: rebuilds the ClusterIP/NodePort allocators from the stored
    /// Services and creates the built-in namespaces and the `kubernetes` Service if missing.
    pub async fn new(store: SharedStore, cfg: Config) -> Result<Arc<Server>, StartError> {
        let metrics = Arc::new(Metrics::default());
        let store: SharedStore = Arc::new(crate::metered::MeteredStore::new(
            store,
            Arc::clone(&metrics),
        ));
        let services = crate::bootstrap::stored_services(&*store).await?;
        let (alloc, issues) = crate::svcalloc::rebuild(
            &cfg.service_cluster_ip_range,
            cfg.service_node_port_range,
            services.iter(),
        )
        .map_err(StartError::Range)?;
        for issue in issues {
            tracing::warn!("allocator repair: {issue}");
        }
        let audit = cfg
            .audit_log_path
            .as_deref()
            .map(crate::audit::AuditLog::open);
        let authorizer = crate::authz::build(&cfg.authorization_modes);
        let anonymous_auth = anonymous_auth(&cfg);
        let (authenticators, token_issuer) = crate::authn::chain(&cfg, &store)?;
        let server = Arc::new(Server {
            audit: audit.transpose()?,
            store,
            alloc: Mutex::new(alloc),
            rng: Mutex::new(StdRng::from_os_rng()),
            metrics,
            watch_events: Arc::default(),
            authorizer,
            anonymous_auth,
            authenticators,
            token_issuer,
            cfg,
        });
        crate::svcalloc::adopt_stored(&server, &services)
            .await
            .map_err(StartError::Store)?;
        crate::bootstrap::ensure_builtins(&server)
            .await
            .map_err(StartError::Bootstrap)?;
        crate::authz::start(&server)
            .await
            .map_err(StartError::Bootstrap)?;
        Ok(server)
    }

    /// Serve HTTP/1.1 on `listener` until the process ends (also starts the bookmark ticker;
    /// serve further listeners with [`Server::accept_loop`]).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        self.start_bookmark_ticker();
        self.accept_loop(listener).await
    }

    /// Send watch bookmarks every `bookmark_interval`.
    pub(crate) fn start_bookmark_ticker(self: &Arc<Self>) {
        let ticker = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(ticker.cfg.bookmark_interval);
            loop {
                every.tick().await;
                ticker.store.request_progress();
            }
        });
    }

    /// Accept and serve connections on one more listener.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = accept_next(&listener).await;
            let server = Arc::clone(&self);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let server = Arc::clone(&server);
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!("connection ended: {e}");
                }
            });
        }
    }

    /// Handle one request of the plain listener (the insecure superuser).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        self.handle_conn(req, Conn::Insecure).await
    }

    /// Handle one request that arrived on `conn`, turning every failure into a `Status`
    /// response, and record it in the request metrics.
    pub async fn handle_conn(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Conn,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        let (parts, body) = req.into_parts();
        let method = parts.method.clone();
        let path = parts.uri.path().to_string();
        let query = path::parse_query(parts.uri.query());
        let content_type = header_str(&parts.headers, header::CONTENT_TYPE);
        let target = path::parse(&path);
        let labels = request_labels(
            &method,
            target.as_ref().ok(),
            &query,
            content_type.as_deref(),
        );
        let authn = match &conn {
            Conn::Insecure if self.cfg.insecure_superuser && bearer(&parts.headers).is_none() => {
                Ok(crate::authn::UserInfo::admin())
            }
            Conn::Insecure => self.authenticate(&parts.headers, None).await,
            Conn::Secure(cert) => self.authenticate(&parts.headers, cert.as_deref()).await,
        };
        let nobody = crate::authn::UserInfo::default();
        let audit = self.audit.as_ref().and_then(|a| {
            let user = authn.as_ref().unwrap_or(&nobody);
            a.begin(&parts, target.as_ref().ok(), user, || {
                crate::objects::new_uid(&mut *self.rng.lock().unwrap_or_else(|e| e.into_inner()))
            })
        });
        let _inflight = (labels.verb != "WATCH").then(|| {
            self.metrics
                .inflight(!matches!(labels.verb, "GET" | "LIST"))
        });
        let long_running =
            (labels.verb == "WATCH").then(|| self.metrics.long_running(labels.clone()));
        let result = async {
            let user = authn?;
            let user = crate::authz::admit_request(
                &self,
                &parts,
                &path,
                target.as_ref().ok(),
                &query,
                user,
            )?;
            let body = read_body(body).await?;
            let ctx = handlers::Ctx {
                method: parts.method,
                query,
                accept: header_str(&parts.headers, header::ACCEPT),
                content_type,
                body,
                user,
            };
            self.dispatch(target?, ctx).await
        }
        .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!("{method} {path}: {} {}", e.code, e.message);
                status_response(&e)
            }
        };
        self.metrics
            .record_request(labels, resp.status().as_u16(), started.elapsed());
        audit
            .into_iter()
            .for_each(|a| a.finish(resp.status().as_u16()));
        match long_running {
            // The watch stays counted as open until its body stream ends.
            Some(guard) if resp.status().is_success() => {
                let (parts, body) = resp.into_parts();
                Response::from_parts(parts, hold_until_end(body, guard))
            }
            _ => resp,
        }
    }

    /// The user behind a request: its bearer token and the connection's verified client
    /// certificate, asked of the authenticators in order; 401 when none accepts them.
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        client_cert: Option<&crate::authn::CertIdentity>,
    ) -> Result<crate::authn::UserInfo, StatusError> {
        let creds = crate::authn::Credentials {
            bearer: bearer(headers),
            client_cert,
            now: std::time::SystemTime::now(),
        };
        crate::authn::authenticate(&self.authenticators, &creds, self.anonymous_auth)
            .await
            .map_err(|e| {
                // Upstream's klog.ErrorS(err, "Unable to authenticate the request").
                tracing::error!("Unable to authenticate the request: {}", e.0);
                StatusError::unauthorized()
            })
    }

    /// The metrics page, with stored object counts taken now (none while the store is
    /// unhealthy: a scrape must not wait out one timeout per resource).
    async fn metrics_page(&self) -> String {
        let mut objects = Vec::new();
        // A storage alias (events.k8s.io Events) is counted once, under its target.
        let stored = api::resources::RESOURCES
            .iter()
            .filter(|r| api::resources::storage_alias_of(r).is_none());
        let healthy = self.store.health().await.is_ok();
        for res in stored.filter(|_| healthy) {
            let prefix = crate::objects::prefix(res, None);
            let opts = store::ListOptions {
                limit: Some(1),
                ..Default::default()
            };
            if let Ok(page) = self.store.list(&prefix, opts).await {
                objects.push((
                    crate::metered::group_resource(&prefix),
                    page.items.len() as u64 + page.remaining,
                ));
            }
        }
        self.metrics.render(&objects)
    }

    async fn dispatch(
        self: &Arc<Self>,
        target: Target,
        ctx: handlers::Ctx,
    ) -> Result<Response<Body>, StatusError> {
        let doc = |v: Value| Ok(json_response(StatusCode::OK, &v));
        if !matches!(target, Target::Resource(_)) && ctx.method != Method::GET {
            return Err(StatusError::method_not_allowed(
                ctx.method.as_str(),
                "discovery",
            ));
        }
        match target {
            Target::Version => doc(discovery::version()),
            Target::Healthz(probe) => {
                let verbose = ctx.query.contains_key("verbose");
                let (code, body) = probe.check(self.store.as_ref(), verbose).await;
                let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Ok(text_response(code, body))
            }
            Target::Metrics => {
                let mut r = Response::new(full(self.metrics_page().await));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                Ok(r)
            }
            Target::CoreVersions => doc(discovery::core_versions(
                &self.cfg.advertise_address.to_string(),
            )),
            Target::Groups => doc(discovery::group_list()),
            Target::Group(g) => doc(discovery::group(&g)),
            Target::ResourceList { group, .. } => doc(discovery::resource_list(&group)),
            Target::OpenApiV2 => {
                use crate::negotiate::{OpenApiV2Format, openapi_v2_format};
                let mut r = match openapi_v2_format(ctx.accept.as_deref())? {
                    OpenApiV2Format::Json => {
                        json_response(StatusCode::OK, api::schema::openapi_v2())
                    }
                    OpenApiV2Format::Protobuf => {
                        let mut r = Response::new(full(api::schema::openapi_v2_protobuf()));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            http::HeaderValue::from_static(api::proto::openapi_v2::MEDIA_TYPE),
                        );
                        r
                    }
                };
                r.headers_mut()
                    .insert(header::VARY, http::HeaderValue::from_static("Accept"));
                Ok(r)
            }
            Target::OpenApiV3Index => doc(api::schema::openapi_v3_index()),
            Target::OpenApiV3(p) => match api::schema::openapi_v3(&p) {
                Some(v) => doc(v.clone()),
                None => Err(StatusError::path_not_found()),
            },
            Target::Resource(t) => handlers::handle(self, t, ctx).await,
        }
    }
}

/// A request in upstream's metric labels (k8s.io/apiserver endpoints/metrics: verbs from the
/// route, `WATCH` for watches, `APPLY` for server-side apply; scope `resource` for one object
/// or a create, else `namespace` or `cluster`; non-resource paths by path).
fn request_labels(
    method: &Method,
    target: Option<&Target>,
    query: &std::collections::BTreeMap<String, String>,
    content_type: Option<&str>,
) -> RequestLabels {
    let non_resource = |path: &str| RequestLabels {
        verb: if *method == Method::GET {
            "GET"
        } else {
            "POST"
        },
        dry_run: false,
        group: "",
        version: "",
        resource: "",
        subresource: path.to_string(),
        scope: "",
    };
    let t = match target {
        Some(Target::Resource(t)) => t,
        Some(Target::Version) => return non_resource("/version"),
        Some(Target::Healthz(_)) => return non_resource("/healthz"),
        Some(Target::Metrics) => return non_resource("/metrics"),
        Some(Target::OpenApiV2) => return non_resource("/openapi/v2"),
        Some(Target::OpenApiV3Index | Target::OpenApiV3(_)) => return non_resource("/openapi/v3"),
        Some(Target::CoreVersions) => return non_resource("/api"),
        Some(_) => return non_resource("/apis"),
        None => return non_resource(""),
    };
    let watch = t.watch_path || query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let apply = content_type.is_some_and(|c| c.starts_with("application/apply-patch"));
    let verb = match *method {
        Method::GET if watch => "WATCH",
        Method::GET if t.name.is_some() => "GET",
        Method::GET => "LIST",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH if apply => "APPLY",
        Method::PATCH => "PATCH",
        Method::DELETE if t.name.is_none() => "DELETECOLLECTION",
        Method::DELETE => "DELETE",
        _ => "UNKNOWN",
    };
    let scope = if (t.name.is_some() && !watch) || *method == Method::POST {
        "resource"
    } else if t.namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    };
    RequestLabels {
        verb,
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
        group: t.res.group,
        version: t.res.version,
        resource: t.res.plural,
        subresource: t.subresource.clone().unwrap_or_default(),
        scope,
    }
}

/// A body that keeps `guard` alive until the body is dropped (the watch's connection ends).
fn hold_until_end(body: Body, guard: crate::metrics::LongRunningGuard) -> Body {
    struct Guarded {
        inner: Body,
        _guard: crate::metrics::LongRunningGuard,
    }
    impl hyper::body::Body for Guarded {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            std::pin::Pin::new(&mut self.inner).poll_frame(cx)
        }
        fn is_end_stream(&self) -> bool {
            self.inner.is_end_stream()
        }
    }
    Guarded {
        inner: body,
        _guard: guard,
    }
    .boxed_unsync()
}

fn header_str(h: &http::HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn read_body(body: Incoming) -> Result<Bytes, StatusError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(StatusError::too_large(MAX_BODY_BYTES))
        }
        Err(e) => Err(StatusError::bad_request(format!(
            "reading the request body failed: {e}"
        ))),
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(full(bytes));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn text_response(code: StatusCode, s: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(s));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn status_response(e: &StatusError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status())
}

/// The token of a request's `Authorization: Bearer …` header.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::authn::tokens::bearer_token)
}

/// `--anonymous-auth`, unless `AlwaysAllow` would let anonymous requests do anything: upstream
/// then turns it off with a warning.
fn anonymous_auth(cfg: &Config) -> bool {
    let always_allow = cfg
        .authorization_modes
        .contains(&crate::authz::Mode::AlwaysAllow);
    if cfg.anonymous_auth && always_allow {
        tracing::warn!(
            "AnonymousAuth is not allowed with the AlwaysAllow authorizer. Resetting AnonymousAuth to false. You should use a different authorizer"
        );
    }
    cfg.anonymous_auth && !always_allow
}

/// The next connection on `listener`, with Nagle off; a failed accept (e.g. out of file
/// descriptors) is logged and retried after 50 ms rather than ending the loop.
pub(crate) async fn accept_next(
    listener: &TcpListener,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
