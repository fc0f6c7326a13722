//! The balancer's configuration (a YAML or JSON file): LB nodes, listeners, target groups with
//! their health checks and targets, with AWS's names and defaults, and its validation.
//!
//! Start at [`BalancerConfig::parse`]; the defaults are the constants below, each with its source.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Health-check interval: 10 s (AWS Load Balancer Controller annotation
/// `service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval`, docs/guide/service/annotations.md).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Health-check timeout: 10 s (LBC `…-healthcheck-timeout`, same page).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive successes to become healthy: 3 (LBC `…-healthcheck-healthy-threshold`; also
/// the ELBv2 default for NLB target groups).
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 3;
/// Consecutive failures to become unhealthy: 3 (LBC `…-healthcheck-unhealthy-threshold`).
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// HTTP health-check path: `/` (LBC `…-healthcheck-path` default for HTTP/HTTPS).
pub const DEFAULT_PATH: &str = "/";
/// HTTP success codes: `200-399` (ELBv2 `Matcher.HttpCode` default for Network Load
/// Balancers, which accept 200–599; LBC `…-healthcheck-success-codes` has the same default).
pub const DEFAULT_MATCHER: &str = "200-399";
/// Deregistration delay: 300 s (ELBv2 target group attribute
/// `deregistration_delay.timeout_seconds` default).
pub const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);
/// ELBv2's bounds on the health-check thresholds (2–10).
pub const THRESHOLD_RANGE: std::ops::RangeInclusive<u32> = 2..=10;
/// NLB matchers accept codes 200–599 (ELBv2 `Matcher.HttpCode`).
pub const MATCHER_RANGE: std::ops::RangeInclusive<u16> = 200..=599;
/// The balancer's name goes into the address label `lo:<name>` (at most 15 bytes).
pub const MAX_NAME_LEN: usize = 11;

/// A whole balancer: its LB nodes, listeners and target groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BalancerConfig {
    /// `[a-z0-9-]`, at most 11 characters: names the nft table `zonelab-lb-<name>` and the
    /// label `lo:<name>` of the node addresses.
    pub name: String,
    /// Cross-zone load balancing; off by default, as NLB's `load_balancing.cross_zone.enabled`.
    #[serde(default)]
    pub cross_zone: bool,
    /// One node per zone, each with its own address.
    pub nodes: Vec<NodeConfig>,
    pub listeners: Vec<ListenerConfig>,
    pub target_groups: Vec<TargetGroupConfig>,
    /// Zones under an active zonal shift (ARC zonal shift of the load balancer): their LB
    /// node leaves DNS and no other node routes to their targets (routing.rs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zonal_shift_away_from: Vec<String>,
}

/// One LB node. Without `zone` it is a regional node: it serves every zone's targets (a lab
/// convenience for a single address such as the API endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub address: Ipv4Addr,
}

/// A listener: every node's address, `port`, TCP, forwarded to `target_group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerConfig {
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    pub target_group: String,
}

/// Listener protocol: NLB's TCP (the only one this balancer forwards).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
}

/// `instance` (node IP + NodePort) or `ip` (pod IPs); LBC's `…-nlb-target-type`, default
/// `instance`. The model is the same; it only decides the client-IP-preservation default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    #[default]
    Instance,
    Ip,
}

/// A target group: targets, their health check, and how long deregistered ones drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetGroupConfig {
    pub name: String,
    #[serde(default)]
    pub target_type: TargetType,
    /// ELBv2 `preserve_client_ip.enabled`: on by default for instance targets, off for ip
    /// targets (TCP). Off = the balancer masquerades, so replies come back through it even
    /// when client and target share a subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_client_ip: Option<bool>,
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    #[serde(
        default = "default_deregistration_delay",
        deserialize_with = "scenario::duration::deserialize",
        serialize_with = "ser_duration"
    )]
    pub deregistration_delay: Duration,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
}

impl TargetGroupConfig {
    /// Whether clients' source addresses reach the targets (no masquerade).
    pub fn preserves_client_ip(&self) -> bool {
        self.preserve_client_ip
            .unwrap_or(self.target_type == TargetType::Instance)
    }
}

/// One target: where to send, and which zone it is in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetConfig {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub zone: String,
}

/// Health-check protocol: TCP connect (LBC's default) or an HTTP GET.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthProtocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "HTTP")]
    Http,
    /// An HTTP GET over TLS; the target's certificate is not verified (as ELB's HTTPS checks).
    #[serde(rename = "HTTPS")]
    Https,
}

impl HealthProtocol {
    /// HTTP or HTTPS: the check is a GET of `path` judged by `matcher`.
    pub fn is_http(self) -> bool {
        matches!(self, HealthProtocol::Http | HealthProtocol::Https)
    }
}

/// Health-check port: the target's own port (`traffic-port`, the default) or a fixed one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HealthPort {
    #[default]
    TrafficPort,
    Port(u16),
}

/// A target group's health check (ELBv2 names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckConfig {
    #[serde(default)]
    pub protocol: HealthProtocol,
    #[serde(default)]
    pub port: HealthPort,
    /// HTTP only.
    #[serde(default = "default_path")]
    pub path: String,
    /// HTTP only: success codes, `200-399`, `200,202` or a mix.
    #[serde(default)]
    pub matcher: Matcher,
    #[serde(
        default = "default_interval",
        deserialize_with = "scenario::duration::deserialize",
        serialize_with = "ser_duration"
    )]
    pub interval: Duration,
    #[serde(
        default = "default_timeout",
        deserialize_with = "scenario::duration::deserialize",
        serialize_with = "ser_duration"
    )]
    pub timeout: Duration,
    #[serde(default = "default_healthy")]
    pub healthy_threshold: u32,
    #[serde(default = "default_unhealthy")]
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            protocol: HealthProtocol::Tcp,
            port: HealthPort::TrafficPort,
            path: DEFAULT_PATH.to_string(),
            matcher: Matcher::default(),
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
        }
    }
}

fn default_deregistration_delay() -> Duration {
    DEFAULT_DEREGISTRATION_DELAY
}
fn default_path() -> String {
    DEFAULT_PATH.to_string()
}
fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_healthy() -> u32 {
    DEFAULT_HEALTHY_THRESHOLD
}
fn default_unhealthy() -> u32 {
    DEFAULT_UNHEALTHY_THRESHOLD
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&scenario::format_duration(*d))
}

impl Serialize for HealthPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HealthPort::TrafficPort => s.serialize_str("traffic-port"),
            HealthPort::Port(p) => s.serialize_u16(*p),
        }
    }
}

impl<'de> Deserialize<'de> for HealthPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u16),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(p) => Ok(HealthPort::Port(p)),
            Raw::Text(t) if t == "traffic-port" => Ok(HealthPort::TrafficPort),
            Raw::Text(t) => t.parse().map(HealthPort::Port).map_err(|_| {
                serde::de::Error::custom(format!(
                    "health check port {t:?} is neither \"traffic-port\" nor a port number"
                ))
            }),
        }
    }
}

/// HTTP success codes as inclusive ranges, kept with the text they were written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    text: String,
    ranges: Vec<(u16, u16)>,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher::parse(DEFAULT_MATCHER).unwrap_or(Matcher {
            text: DEFAULT_MATCHER.to_string(),
            ranges: vec![(200, 399)],
        })
    }
}

impl Matcher {
    /// `200`, `200,202`, `200-299` or a comma-separated mix; codes within 200–599.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let code = |s: &str| -> Result<u16, String> {
                let c: u16 = s
                    .trim()
                    .parse()
                    .map_err(|_| format!("{s:?} is not an HTTP status code"))?;
                if MATCHER_RANGE.contains(&c) {
                    Ok(c)
                } else {
                    Err(format!("{c} is outside 200-599"))
                }
            };
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(format!("range {part:?} runs backwards"));
            }
            ranges.push((lo, hi));
        }
        Ok(Matcher {
            text: text.to_string(),
            ranges,
        })
    }

    pub fn matches(&self, code: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Matcher::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("matcher {text:?}: {e}")))
    }
}

/// A configuration that cannot be used; nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot parse the balancer configuration: {0}")]
    Parse(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl BalancerConfig {
    /// Parse YAML or JSON (JSON is YAML) and validate.
    pub fn parse(text: &str) -> Result<BalancerConfig, ConfigError> {
        let c: BalancerConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&TargetGroupConfig> {
        self.target_groups.iter().find(|g| g.name == name)
    }

    /// Every rule a usable configuration keeps; the first broken one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name("name", &self.name, MAX_NAME_LEN)?;
        if self.nodes.is_empty() {
            return Err(invalid("nodes", "a balancer needs at least one node"));
        }
        let mut zones = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(z) = &n.zone
                && !zones.insert(z.as_str())
            {
                return Err(invalid(
                    format!("nodes[{i}].zone"),
                    format!("zone {z:?} already has a node (one node per zone)"),
                ));
            }
            if !addrs.insert(n.address) {
                return Err(invalid(
                    format!("nodes[{i}].address"),
                    format!("{} is used twice", n.address),
                ));
            }
        }
        let mut ports = BTreeSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            if l.port == 0 || !ports.insert(l.port) {
                return Err(invalid(
                    format!("listeners[{i}].port"),
                    format!("port {} is 0 or has a listener already", l.port),
                ));
            }
            if self.group(&l.target_group).is_none() {
                return Err(invalid(
                    format!("listeners[{i}].targetGroup"),
                    format!("no target group named {:?}", l.target_group),
                ));
            }
        }
        let mut names = BTreeSet::new();
        for (i, g) in self.target_groups.iter().enumerate() {
            let at = format!("targetGroups[{i}]");
            validate_name(&format!("{at}.name"), &g.name, 32)?;
            if !names.insert(g.name.as_str()) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("{:?} is used twice", g.name),
                ));
            }
            validate_health_check(&format!("{at}.healthCheck"), &g.health_check)?;
            let mut seen = BTreeSet::new();
            for (j, t) in g.targets.iter().enumerate() {
                if t.port == 0 || !seen.insert((t.ip, t.port)) {
                    return Err(invalid(
                        format!("{at}.targets[{j}]"),
                        format!("{}:{} is port 0 or registered twice", t.ip, t.port),
                    ));
                }
                if t.zone.is_empty() {
                    return Err(invalid(format!("{at}.targets[{j}].zone"), "must be set"));
                }
            }
        }
        Ok(())
    }
}

fn validate_name(field: &str, name: &str, max: usize) -> Result<(), ConfigError> {
    let b = name.as_bytes();
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = !name.is_empty()
        && name.len() <= max
        && edge(b.first())
        && edge(b.last())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{name:?} must be 1-{max} characters of [a-z0-9-], alphanumeric at both ends"),
        ))
    }
}

fn validate_health_check(at: &str, h: &HealthCheckConfig) -> Result<(), ConfigError> {
    if h.interval.is_zero() {
        return Err(invalid(format!("{at}.interval"), "must be greater than 0"));
    }
    if h.timeout.is_zero() || h.timeout > h.interval {
        return Err(invalid(
            format!("{at}.timeout"),
            format!(
                "must be greater than 0 and at most the interval ({})",
                scenario::format_duration(h.interval)
            ),
        ));
    }
    for (name, v) in [
        ("healthyThreshold", h.healthy_threshold),
        ("unhealthyThreshold", h.unhealthy_threshold),
    ] {
        if !THRESHOLD_RANGE.contains(&v) {
            return Err(invalid(
                format!("{at}.{name}"),
                format!("{v} is outside 2-10"),
            ));
        }
    }
    if h.port == HealthPort::Port(0) {
        return Err(invalid(format!("{at}.port"), "port 0"));
    }
    if h.protocol.is_http() && !h.path.starts_with('/') {
        return Err(invalid(
            format!("{at}.path"),
            format!("{:?} must start with /", h.path),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
name: web
nodes:
  - {zone: a, address: 172.20.251.1}
listeners:
  - {port: 80, targetGroup: tg}
targetGroups:
  - name: tg
    targets:
      - {ip: 172.20.0.11, port: 30080, zone: a}
";

    #[test]
    fn defaults_are_the_load_balancer_controllers() {
        let c = BalancerConfig::parse(MINIMAL).expect("valid");
        assert!(!c.cross_zone);
        let g = &c.target_groups[0];
        let h = &g.health_check;
        assert_eq!(h.protocol, HealthProtocol::Tcp);
        assert_eq!(h.port, HealthPort::TrafficPort);
        assert_eq!(h.interval, Duration::from_secs(10));
        assert_eq!(h.timeout, Duration::from_secs(10));
        assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (3, 3));
        assert_eq!(h.matcher.to_string(), "200-399");
        assert_eq!(g.deregistration_delay, Duration::from_secs(300));
        assert_eq!(g.target_type, TargetType::Instance);
        assert!(g.preserves_client_ip());
        assert_eq!(c.listeners[0].protocol, Protocol::Tcp);
    }

    #[test]
    fn json_round_trips_with_go_durations() {
        let c = BalancerConfig::parse(MINIMAL).expect("valid");
        let json = serde_json::to_string(&c).expect("json");
        assert!(json.contains("\"interval\":\"10s\""), "{json}");
        assert!(json.contains("\"port\":\"traffic-port\""), "{json}");
        assert_eq!(BalancerConfig::parse(&json).expect("json parses"), c);
    }

    #[test]
    fn http_check_with_fast_timers_and_explicit_port() {
        let text = MINIMAL.replace(
            "    targets:",
            "    targetType: ip\n    healthCheck: {protocol: HTTP, path: /readyz, port: 6443, interval: 1s, timeout: 500ms, matcher: \"200,204\"}\n    targets:",
        );
        let c = BalancerConfig::parse(&text).expect("valid");
        let h = &c.target_groups[0].health_check;
        assert_eq!(h.protocol, HealthProtocol::Http);
        assert_eq!(h.port, HealthPort::Port(6443));
        assert_eq!(h.timeout, Duration::from_millis(500));
        assert!(h.matcher.matches(204) && !h.matcher.matches(202));
        assert!(!c.target_groups[0].preserves_client_ip());
    }

    #[test]
    fn matcher_ranges() {
        let m = Matcher::parse("200-299, 302").expect("valid");
        assert!(m.matches(200) && m.matches(299) && m.matches(302));
        assert!(!m.matches(301) && !m.matches(503));
        assert!(Matcher::parse("199").is_err());
        assert!(Matcher::parse("300-200").is_err());
        assert!(Matcher::parse("ok").is_err());
    }

    #[test]
    fn the_documented_example_is_valid() {
        let doc = include_str!("../../../docs/load-balancer.md");
        let yaml = doc
            .split("```yaml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a yaml block in docs/load-balancer.md");
        let c = BalancerConfig::parse(yaml).expect("the documented configuration parses");
        assert_eq!(c.name, "api");
        assert_eq!(c.target_groups[0].health_check.path, "/readyz");
    }

    fn err(text: &str) -> String {
        BalancerConfig::parse(text)
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = err(&MINIMAL.replace("targetGroup: tg", "targetGroup: nope"));
        assert_eq!(
            e,
            "listeners[0].targetGroup: no target group named \"nope\""
        );
        let e = err(&MINIMAL.replace(
            "    targets:",
            "    healthCheck: {interval: 5s, timeout: 6s}\n    targets:",
        ));
        assert!(
            e.starts_with("targetGroups[0].healthCheck.timeout: "),
            "{e}"
        );
        let e = err(&MINIMAL.replace(
            "    targets:",
            "    healthCheck: {healthyThreshold: 1}\n    targets:",
        ));
        assert_eq!(
            e,
            "targetGroups[0].healthCheck.healthyThreshold: 1 is outside 2-10"
        );
        let e = err(&MINIMAL.replace("name: web", "name: Web_1"));
        assert!(e.starts_with("name: \"Web_1\" must be"), "{e}");
        let e = err(&MINIMAL.replace(
            "address: 172.20.251.1}",
            "address: 172.20.251.1}\n  - {zone: a, address: 172.20.251.2}",
        ));
        assert!(
            e.starts_with("nodes[1].zone: zone \"a\" already has a node"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("interval", "x").replace(
            "name: tg\n",
            "name: tg\n    healthCheck: {interval: soon}\n",
        ));
        assert!(
            e.starts_with("cannot parse the balancer configuration: "),
            "{e}"
        );
        assert!(e.contains("invalid duration \"soon\""), "{e}");
        let e = err(&MINIMAL.replace("port: 30080", "port: 30080, weight: 2"));
        assert!(e.contains("unknown field `weight`"), "{e}");
    }
}
