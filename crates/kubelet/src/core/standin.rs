//! What the lab does with a container's image: run the built-in `zonelab/echo`, run the
//! container's own `command`, or — for any other image, which the lab cannot pull or run —
//! stand in for it with `zonelab/echo` on its declared TCP ports (or refuse it, as a kubelet
//! whose image pull failed, under `--image-policy fail`). Start at [`plan`].

use k8s_openapi::api::core::v1::Container;

/// The built-in image that runs `<exe> echo --port <containerPort>`.
pub const ECHO_IMAGE: &str = "zonelab/echo";
/// Port of the echo image when the container declares none.
pub const ECHO_DEFAULT_PORT: u16 = 8080;
/// Annotation the kubelet puts on a pod with stand-in containers: one `container=image` entry
/// per stand-in, comma separated (e.g. `web=nginx:1.25`).
pub const STAND_IN_ANNOTATION: &str = "zonelab.io/stand-in";
/// Event reason recorded for each stand-in container start (on the first start of the pod's
/// container).
pub const STAND_IN_REASON: &str = "StandIn";
/// Upstream waiting reasons of a failed pull (k/k `pkg/kubelet/images/types.go`).
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";

/// `--image-policy`: what the kubelet does with an image the lab cannot run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImagePolicy {
    /// Run it as the `zonelab/echo` stand-in (the default).
    #[default]
    StandIn,
    /// Refuse it as a failed pull: `ErrImagePull`, then `ImagePullBackOff`.
    Fail,
}

impl ImagePolicy {
    /// Parse the flag value (`stand-in` or `fail`).
    pub fn parse(s: &str) -> Result<ImagePolicy, String> {
        match s {
            "stand-in" => Ok(ImagePolicy::StandIn),
            "fail" => Ok(ImagePolicy::Fail),
            other => Err(format!(
                "invalid --image-policy {other:?}: expected stand-in or fail"
            )),
        }
    }
}

/// How a container runs in the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The built-in echo image, on its first declared port (8080 without one).
    Echo { port: u16 },
    /// The container's own `command` + `args`.
    Command(Vec<String>),
    /// An image the lab cannot run, served by the echo on every declared TCP port.
    StandIn { image: String, ports: Vec<u16> },
    /// An image the lab cannot run, refused (`--image-policy fail`).
    Refuse { image: String },
}

/// The container's image without its tag or digest (`registry:5000/x:1` -> `registry:5000/x`).
pub fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i + 1..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Every declared TCP containerPort, in declaration order, without duplicates.
pub fn tcp_ports(c: &Container) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for p in c.ports.iter().flatten() {
        let tcp = p.protocol.as_deref().is_none_or(|p| p == "TCP");
        if let Ok(port) = u16::try_from(p.container_port)
            && tcp
            && port != 0
            && !out.contains(&port)
        {
            out.push(port);
        }
    }
    out
}

/// The numeric ports of the container's httpGet/tcpSocket probes (a port may be probed
/// without being declared: `containerPort` is informational upstream).
fn probe_ports(c: &Container) -> Vec<u16> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    [&c.readiness_probe, &c.liveness_probe, &c.startup_probe]
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = p
                .http_get
                .as_ref()
                .map(|h| &h.port)
                .or(p.tcp_socket.as_ref().map(|t| &t.port))?;
            match port {
                IntOrString::Int(n) => u16::try_from(*n).ok().filter(|n| *n != 0),
                IntOrString::String(_) => None,
            }
        })
        .collect()
}

/// How `c` runs under `policy`. A stand-in serves every declared TCP port, then any port its
/// probes use that is not declared.
pub fn plan(c: &Container, policy: ImagePolicy) -> Plan {
    let image = c.image.clone().unwrap_or_default();
    if image_repository(&image) == ECHO_IMAGE {
        let port = tcp_ports(c).first().copied().unwrap_or(ECHO_DEFAULT_PORT);
        return Plan::Echo { port };
    }
    let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
    if !argv.is_empty() {
        argv.extend(c.args.clone().unwrap_or_default());
        return Plan::Command(argv);
    }
    match policy {
        ImagePolicy::StandIn => {
            let mut ports = tcp_ports(c);
            for p in probe_ports(c) {
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
            Plan::StandIn { image, ports }
        }
        ImagePolicy::Fail => Plan::Refuse { image },
    }
}

/// The `StandIn` Event's message: `image nginx:1.25 runs as the zonelab/echo stand-in on
/// ports 80, 443`.
pub fn stand_in_message(image: &str, ports: &[u16]) -> String {
    if ports.is_empty() {
        return format!("image {image} runs as the {ECHO_IMAGE} stand-in (no TCP ports declared)");
    }
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "image {image} runs as the {ECHO_IMAGE} stand-in on ports {}",
        list.join(", ")
    )
}

/// The pull error of a refused image (the `Failed` Event and the waiting message).
pub fn refused_message(image: &str) -> String {
    format!(
        "zonelab cannot pull or run image \"{image}\" (the kubelet runs with --image-policy fail)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn repositories() {
        assert_eq!(image_repository("nginx:1.25"), "nginx");
        assert_eq!(image_repository("zonelab/echo"), "zonelab/echo");
        assert_eq!(image_repository("registry:5000/x/y:2"), "registry:5000/x/y");
        assert_eq!(image_repository("registry:5000/x"), "registry:5000/x");
        assert_eq!(image_repository("nginx@sha256:abc"), "nginx");
    }

    #[test]
    fn plans() {
        let echo = container(serde_json::json!({"name": "c", "image": "zonelab/echo:1",
            "ports": [{"containerPort": 9000}]}));
        assert_eq!(
            plan(&echo, ImagePolicy::Fail),
            Plan::Echo { port: 9000 },
            "the built-in image runs under either policy"
        );
        let cmd = container(serde_json::json!({"name": "c", "image": "busybox",
            "command": ["sleep"], "args": ["100"]}));
        assert_eq!(
            plan(&cmd, ImagePolicy::StandIn),
            Plan::Command(vec!["sleep".into(), "100".into()])
        );
        let nginx = container(serde_json::json!({"name": "web", "image": "nginx:1.25",
            "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"},
                      {"containerPort": 443, "protocol": "TCP"}, {"containerPort": 80}]}));
        assert_eq!(
            plan(&nginx, ImagePolicy::StandIn),
            Plan::StandIn {
                image: "nginx:1.25".into(),
                ports: vec![80, 443]
            }
        );
        assert_eq!(
            plan(&nginx, ImagePolicy::Fail),
            Plan::Refuse {
                image: "nginx:1.25".into()
            }
        );
        let probed = container(serde_json::json!({"name": "c", "image": "app:2",
            "ports": [{"containerPort": 8080, "name": "http"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
            "livenessProbe": {"tcpSocket": {"port": 9090}}}));
        assert_eq!(
            plan(&probed, ImagePolicy::StandIn),
            Plan::StandIn {
                image: "app:2".into(),
                ports: vec![8080, 9090]
            },
            "an undeclared probe port is served too"
        );
        // args without a command still leave the image's entrypoint to run: a stand-in.
        let args_only = container(serde_json::json!({"name": "c", "image": "redis:7",
            "args": ["--port", "6380"]}));
        assert!(matches!(
            plan(&args_only, ImagePolicy::StandIn),
            Plan::StandIn { .. }
        ));
    }

    #[test]
    fn messages() {
        assert_eq!(
            stand_in_message("nginx:1.25", &[80]),
            "image nginx:1.25 runs as the zonelab/echo stand-in on ports 80"
        );
        assert_eq!(
            stand_in_message("x", &[80, 443]),
            "image x runs as the zonelab/echo stand-in on ports 80, 443"
        );
        assert!(ImagePolicy::parse("pull").is_err());
        assert_eq!(ImagePolicy::parse("fail"), Ok(ImagePolicy::Fail));
    }
}
