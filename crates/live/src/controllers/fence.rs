//! The write fence of an elected component: a deadline on the local monotonic clock, set by the
//! leader elector after every successful renew, and a tower layer on the component's API
//! client that refuses to send any write (every method but GET) once the deadline has passed.
//! The clock is CLOCK_MONOTONIC, which keeps counting while the process is stopped, so a
//! leader frozen by SIGSTOP and resumed after its lease expired sends nothing.
//!
//! Start at [`Fence`] and [`client`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{HeaderValue, USER_AGENT};
use tower::{BoxError, Layer, Service};

use controllers::Moment;

/// Milliseconds on the local monotonic clock since the process first asked (never goes back,
/// counts while the process is stopped).
pub fn mono_clock() -> Moment {
    static BASE: OnceLock<Instant> = OnceLock::new();
    Moment::from_millis(BASE.get_or_init(Instant::now).elapsed().as_millis() as i64)
}

/// A write deadline on [`mono_clock`], shared by the elector (which moves it) and the client
/// (which checks it). Closed until first opened.
#[derive(Clone, Debug)]
pub struct Fence {
    until: Arc<AtomicI64>,
}

impl Default for Fence {
    fn default() -> Self {
        Fence::closed()
    }
}

impl Fence {
    /// A fence that lets nothing through until [`Fence::set`].
    pub fn closed() -> Fence {
        Fence {
            until: Arc::new(AtomicI64::new(Moment::MIN.as_millis())),
        }
    }

    /// A fence that never closes (`--leader-elect=false`).
    pub fn open() -> Fence {
        Fence {
            until: Arc::new(AtomicI64::new(Moment::MAX.as_millis())),
        }
    }

    /// Writes may be sent while `mono_clock() < deadline`; `None` closes the fence.
    pub fn set(&self, deadline: Option<Moment>) {
        self.until.store(
            deadline.unwrap_or(Moment::MIN).as_millis(),
            Ordering::SeqCst,
        );
    }

    /// May a write be sent at `now` (on [`mono_clock`])?
    pub fn allows(&self, now: Moment) -> bool {
        now < Moment::from_millis(self.until.load(Ordering::SeqCst))
    }
}

/// Why the fence refused a request.
#[derive(Debug, thiserror::Error)]
#[error("not sent: this instance is not the leader (lease not renewed within the renew deadline)")]
pub struct Fenced;

/// The tower layer for [`Fence`].
#[derive(Clone, Debug)]
pub struct FenceLayer(pub Fence);

impl<S> Layer<S> for FenceLayer {
    type Service = FenceService<S>;
    fn layer(&self, inner: S) -> FenceService<S> {
        FenceService {
            inner,
            fence: self.0.clone(),
        }
    }
}

/// See [`FenceLayer`].
#[derive(Clone, Debug)]
pub struct FenceService<S> {
    inner: S,
    fence: Fence,
}

impl<S, B> Service<http::Request<B>> for FenceService<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.method() != http::Method::GET && !self.fence.allows(mono_clock()) {
            return Box::pin(std::future::ready(Err(Box::new(Fenced) as BoxError)));
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// Upstream's User-Agent shape, `<component>/v<version> (<os>/<arch>) …`, with the elector's
/// identity appended: `kube-controller-manager/v0.1.0 (linux/amd64) zonelab identity=ID`.
/// `suffix` names a sub-client, as upstream's `leader-election`.
pub fn user_agent(component: &str, identity: &str, suffix: Option<&str>) -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let sub = suffix.map(|s| format!("/{s}")).unwrap_or_default();
    format!(
        "{component}/v{} ({}/{arch}) zonelab{sub} identity={identity}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    )
}

/// The identity a User-Agent made by [`user_agent`] carries.
pub fn identity_of_user_agent(ua: &str) -> Option<&str> {
    ua.rsplit_once(" identity=").map(|(_, id)| id)
}

/// A client for `config` sending `user_agent`, whose writes pass only through `fence`.
pub fn client(
    config: &kube::Config,
    user_agent: &str,
    fence: Fence,
) -> Result<kube::Client, kube::Error> {
    let mut config = config.clone();
    let ua = HeaderValue::from_str(user_agent).map_err(|e| kube::Error::HttpError(e.into()))?;
    config.headers.retain(|(name, _)| name != USER_AGENT);
    config.headers.push((USER_AGENT, ua));
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&FenceLayer(fence))
        .build())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn fence_opens_until_the_deadline_and_closes() {
        let f = Fence::closed();
        assert!(!f.allows(Moment::EPOCH));
        f.set(Some(Moment::from_millis(100)));
        assert!(f.allows(Moment::from_millis(99)));
        assert!(!f.allows(Moment::from_millis(100)));
        f.set(None);
        assert!(!f.allows(Moment::EPOCH));
        assert!(Fence::open().allows(Moment::MAX - Duration::from_millis(1)));
    }

    #[test]
    fn user_agent_carries_the_identity() {
        let ua = user_agent("kube-controller-manager", "node-a_1234", None);
        assert!(ua.starts_with("kube-controller-manager/v"), "{ua}");
        assert!(ua.contains(" (linux/"), "{ua}");
        assert_eq!(identity_of_user_agent(&ua), Some("node-a_1234"));
        let le = user_agent("kube-scheduler", "z b", Some("leader-election"));
        assert!(le.contains("zonelab/leader-election identity=z b"), "{le}");
        assert_eq!(identity_of_user_agent(&le), Some("z b"));
    }

    #[tokio::test]
    async fn a_closed_fence_refuses_writes_but_not_reads() {
        use tower::ServiceExt;
        let inner = tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, BoxError>(http::Response::new(()))
        });
        let fence = Fence::closed();
        let mut svc = FenceLayer(fence.clone()).layer(inner);
        let put = || http::Request::put("/x").body(()).unwrap();
        let get = http::Request::get("/x").body(()).unwrap();
        assert!(svc.ready().await.unwrap().call(get).await.is_ok());
        let err = svc.ready().await.unwrap().call(put()).await.unwrap_err();
        assert!(err.to_string().contains("not the leader"), "{err}");
        fence.set(Some(mono_clock() + Duration::from_millis(60_000)));
        assert!(svc.ready().await.unwrap().call(put()).await.is_ok());
    }
}
