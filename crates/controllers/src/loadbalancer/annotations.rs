//! The AWS Load Balancer Controller's Service annotations, read into what every target group of
//! a Service shares (target type, health check, attributes), with LBC's names, defaults and
//! error texts (pkg/service/model_build_target_group.go, pkg/annotations/parser.go).
//!
//! Start at [`Template::from_service`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use lb::config::{HealthCheckConfig, HealthPort, HealthProtocol, Matcher, TargetType};

/// `service.beta.kubernetes.io/aws-load-balancer-nlb-target-type`: `instance` (default) | `ip`.
pub const TARGET_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type";
/// `service.beta.kubernetes.io/aws-load-balancer-type`: the legacy way to pick LBC
/// (`external`, `nlb-ip`; `nlb-ip` means ip targets).
pub const LB_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-type";
pub const HC_PROTOCOL: &str = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol";
pub const HC_PORT: &str = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port";
pub const HC_PATH: &str = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path";
pub const HC_INTERVAL: &str = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval";
pub const HC_TIMEOUT: &str = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-timeout";
pub const HC_HEALTHY: &str =
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-healthy-threshold";
pub const HC_UNHEALTHY: &str =
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold";
pub const HC_SUCCESS_CODES: &str =
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-success-codes";
/// Load-balancer attributes, `k=v,k=v` (`load_balancing.cross_zone.enabled=true`).
pub const LB_ATTRIBUTES: &str = "service.beta.kubernetes.io/aws-load-balancer-attributes";
/// Target-group attributes, `k=v,k=v` (`deregistration_delay.timeout_seconds=30`,
/// `preserve_client_ip.enabled=false`).
pub const TG_ATTRIBUTES: &str =
    "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes";

pub const ATTR_CROSS_ZONE: &str = "load_balancing.cross_zone.enabled";
pub const ATTR_DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
pub const ATTR_PRESERVE_CLIENT_IP: &str = "preserve_client_ip.enabled";

/// LBC's health-check defaults for `externalTrafficPolicy: Local` with instance targets
/// (`defaultHealthCheck…ForInstanceModeLocal` in pkg/service/model_builder.go): an HTTP GET of
/// kube-proxy's `/healthz` on `spec.healthCheckNodePort`, every 10 s, 6 s timeout, 2 / 2.
pub const LOCAL_PATH: &str = "/healthz";
pub const LOCAL_INTERVAL_S: i32 = 10;
pub const LOCAL_TIMEOUT_S: i32 = 6;
pub const LOCAL_THRESHOLD: i32 = 2;
/// The general defaults (`defaultHealthCheck…`): TCP on the traffic port, 10 s, 10 s, 3 / 3.
pub const DEFAULT_INTERVAL_S: i32 = 10;
pub const DEFAULT_TIMEOUT_S: i32 = 10;
pub const DEFAULT_THRESHOLD: i32 = 3;

/// Why a Service's model cannot be built; the text goes into LBC's `FailedBuildModel` Event
/// (`Failed build model due to <this>`). Nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// LBC `ParseInt32Annotation` (wraps Go's `strconv.ParseInt` error).
    #[error(
        "failed to parse int32 annotation, {key}: {raw}: strconv.ParseInt: parsing {raw:?}: invalid syntax"
    )]
    ParseInt32 { key: &'static str, raw: String },
    /// LBC `ParseStringMapAnnotation`.
    #[error("failed to parse stringMap annotation, {key}: {raw}")]
    ParseStringMap { key: &'static str, raw: String },
    /// LBC `buildTargetGroupAttributes` / `buildLoadBalancerAttributes`.
    #[error("failed to parse attribute {key}={raw}")]
    ParseAttribute { key: &'static str, raw: String },
    /// LBC `buildTargetGroupHealthCheckProtocol`.
    #[error("unsupported health check protocol {0}")]
    HealthCheckProtocol(String),
    /// HTTPS checks are valid for LBC but this balancer does not probe TLS.
    #[error("unsupported health check protocol HTTPS: this balancer checks TCP and HTTP only")]
    HealthCheckHttps,
    /// LBC `buildTargetGroupHealthCheckPort` (a named port that is not on the Service).
    #[error("failed to resolve healthCheckPort: unable to find port {port} on service {service}")]
    HealthCheckPort { port: String, service: String },
    /// LBC `buildTargetGroupHealthCheckPort` for ip targets.
    #[error(
        "cannot use named healthCheckPort for IP TargetType when service's targetPort is a named port"
    )]
    NamedHealthCheckPort,
    /// Stricter than LBC (which treats anything but `ip` as `instance`): a typo should not
    /// silently pick a mode.
    #[error("unsupported target type {0:?}: {TARGET_TYPE} must be \"instance\" or \"ip\"")]
    TargetType(String),
    /// LBC `buildTargetType` with `allocateLoadBalancerNodePorts: false`.
    #[error("unable to support instance target type with an unallocated NodePort")]
    UnallocatedNodePort,
    /// UDP/SCTP listeners (valid for NLB, not forwarded by this balancer).
    #[error("unsupported protocol {protocol} on port {port}: this balancer forwards TCP only")]
    Protocol { port: i32, protocol: String },
}

/// What every target group of one Service shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub target_type: TargetType,
    /// The health check; a named `…-healthcheck-port` is resolved already.
    pub health_check: HealthCheckConfig,
    pub cross_zone: bool,
    pub deregistration_delay: Option<Duration>,
    pub preserve_client_ip: Option<bool>,
}

fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(|v| v.trim())
}

fn int32(svc: &Service, key: &'static str, default: i32) -> Result<i32, BuildError> {
    match annotation(svc, key) {
        None => Ok(default),
        Some(raw) => raw.parse::<i32>().map_err(|_| BuildError::ParseInt32 {
            key,
            raw: raw.to_string(),
        }),
    }
}

/// Whole seconds; a negative value becomes 0, which the balancer's validation rejects.
fn seconds(v: i32) -> Duration {
    runtime::time::span_secs(i64::from(v))
}

/// LBC's `k1=v1,k2=v2` map annotations (empty parts skipped, whitespace trimmed).
fn string_map(svc: &Service, key: &'static str) -> Result<BTreeMap<String, String>, BuildError> {
    let mut out = BTreeMap::new();
    let Some(raw) = annotation(svc, key) else {
        return Ok(out);
    };
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or(BuildError::ParseStringMap {
            key,
            raw: raw.to_string(),
        })?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(key: &'static str, raw: &str) -> Result<bool, BuildError> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(BuildError::ParseAttribute {
            key,
            raw: raw.to_string(),
        }),
    }
}

fn is_local_instance(svc: &Service, target_type: TargetType) -> bool {
    let spec = svc.spec.as_ref();
    target_type == TargetType::Instance
        && spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local")
        && spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// LBC `buildTargetType`: `…-type: nlb-ip` or `…-nlb-target-type: ip` → ip, else instance.
pub fn target_type(svc: &Service) -> Result<TargetType, BuildError> {
    if annotation(svc, LB_TYPE) == Some("nlb-ip") {
        return Ok(TargetType::Ip);
    }
    match annotation(svc, TARGET_TYPE) {
        None | Some("instance") => Ok(TargetType::Instance),
        Some("ip") => Ok(TargetType::Ip),
        Some(other) => Err(BuildError::TargetType(other.to_string())),
    }
}

/// LBC `buildTargetGroupHealthCheckPort`: `traffic-port`, a number, or a Service port name
/// (its NodePort for instance targets, its numeric targetPort for ip targets).
fn health_port(svc: &Service, raw: &str, tt: TargetType) -> Result<HealthPort, BuildError> {
    if raw == "traffic-port" {
        return Ok(HealthPort::TrafficPort);
    }
    if let Ok(p) = raw.parse::<u16>() {
        return Ok(HealthPort::Port(p));
    }
    let service = format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or(""),
        svc.metadata.name.as_deref().unwrap_or("")
    );
    let port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ps| ps.iter().find(|p| p.name.as_deref() == Some(raw)))
        .ok_or_else(|| BuildError::HealthCheckPort {
            port: raw.to_string(),
            service,
        })?;
    let number = match tt {
        TargetType::Instance => port.node_port.unwrap_or(0),
        TargetType::Ip => match &port.target_port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p)) => *p,
            Some(_) => return Err(BuildError::NamedHealthCheckPort),
            None => port.port,
        },
    };
    Ok(HealthPort::Port(u16::try_from(number).unwrap_or(0)))
}

/// LBC `buildTargetGroupHealthCheckConfig` (Default or ForInstanceModeLocal).
fn health_check(svc: &Service, tt: TargetType) -> Result<HealthCheckConfig, BuildError> {
    let local = is_local_instance(svc, tt);
    let hc_node_port = svc
        .spec
        .as_ref()
        .and_then(|s| s.health_check_node_port)
        .unwrap_or(0)
        .to_string();
    let (protocol, port, path, interval, timeout, threshold) = if local {
        let p = hc_node_port.as_str();
        (
            "HTTP",
            p,
            LOCAL_PATH,
            LOCAL_INTERVAL_S,
            LOCAL_TIMEOUT_S,
            LOCAL_THRESHOLD,
        )
    } else {
        let (i, t, th) = (DEFAULT_INTERVAL_S, DEFAULT_TIMEOUT_S, DEFAULT_THRESHOLD);
        ("TCP", "traffic-port", lb::config::DEFAULT_PATH, i, t, th)
    };
    let raw_protocol = annotation(svc, HC_PROTOCOL).unwrap_or(protocol);
    let protocol = match raw_protocol.to_ascii_uppercase().as_str() {
        "TCP" => HealthProtocol::Tcp,
        "HTTP" => HealthProtocol::Http,
        "HTTPS" => return Err(BuildError::HealthCheckHttps),
        _ => return Err(BuildError::HealthCheckProtocol(raw_protocol.to_string())),
    };
    let port = health_port(svc, annotation(svc, HC_PORT).unwrap_or(port), tt)?;
    let mut hc = HealthCheckConfig {
        protocol,
        port,
        interval: seconds(int32(svc, HC_INTERVAL, interval)?),
        timeout: seconds(int32(svc, HC_TIMEOUT, timeout)?),
        healthy_threshold: u32::try_from(int32(svc, HC_HEALTHY, threshold)?).unwrap_or(0),
        unhealthy_threshold: u32::try_from(int32(svc, HC_UNHEALTHY, threshold)?).unwrap_or(0),
        ..HealthCheckConfig::default()
    };
    // Path and success codes only mean something for HTTP (LBC leaves them nil for TCP).
    if protocol == HealthProtocol::Http {
        hc.path = annotation(svc, HC_PATH).unwrap_or(path).to_string();
        if let Some(codes) = annotation(svc, HC_SUCCESS_CODES) {
            hc.matcher = Matcher::parse(codes).map_err(|_| BuildError::ParseAttribute {
                key: HC_SUCCESS_CODES,
                raw: codes.to_string(),
            })?;
        }
    }
    Ok(hc)
}

impl Template {
    /// Everything the annotations decide for `svc`, or the first error LBC would report.
    pub fn from_service(svc: &Service) -> Result<Template, BuildError> {
        let target_type = target_type(svc)?;
        let health_check = health_check(svc, target_type)?;
        let lb_attrs = string_map(svc, LB_ATTRIBUTES)?;
        let cross_zone = match lb_attrs.get(ATTR_CROSS_ZONE) {
            Some(v) => parse_bool(ATTR_CROSS_ZONE, v)?,
            None => false,
        };
        let tg_attrs = string_map(svc, TG_ATTRIBUTES)?;
        let deregistration_delay = match tg_attrs.get(ATTR_DEREGISTRATION_DELAY) {
            Some(v) => Some(seconds(v.parse::<i32>().map_err(|_| {
                BuildError::ParseAttribute {
                    key: ATTR_DEREGISTRATION_DELAY,
                    raw: v.clone(),
                }
            })?)),
            None => None,
        };
        let preserve_client_ip = match tg_attrs.get(ATTR_PRESERVE_CLIENT_IP) {
            Some(v) => Some(parse_bool(ATTR_PRESERVE_CLIENT_IP, v)?),
            None => None,
        };
        Ok(Template {
            target_type,
            health_check,
            cross_zone,
            deregistration_delay,
            preserve_client_ip,
        })
    }
}
