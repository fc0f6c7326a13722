//! The load-balancer controller in virtual time: a fake API, a fake cloud that applies (or
//! refuses) the controller's [`CloudAction`]s, no I/O. Start at [`Rig`] and [`cluster`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use lb::config::{HealthPort, HealthProtocol, TargetConfig, TargetType};
use serde_json::{Value, json};

use super::*;
use crate::events::EventRecord;
use crate::fake::{FakeApi, T0, object};
use crate::{Action, Controller, Kind};

/// The controller, an API and a cloud (balancer name → applied configuration).
struct Rig {
    api: FakeApi,
    ctl: LoadBalancerController,
    now: Moment,
    cloud: BTreeMap<String, BalancerConfig>,
    /// The cloud's answer while set: refuse every action with this message.
    cloud_error: Option<String>,
    cloud_log: Vec<CloudAction>,
    events: Vec<EventRecord>,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            api: FakeApi::new(),
            ctl: controller(),
            now: T0,
            cloud: BTreeMap::new(),
            cloud_error: None,
            cloud_log: Vec::new(),
            events: Vec::new(),
        }
    }

    fn start(&mut self) {
        self.ctl.handle_synced(&self.api.cache, self.now);
        self.settle();
    }

    /// A client's write; like `kubectl apply`, an update of a Service keeps its status (a
    /// subresource) and its finalizers.
    fn put(&mut self, v: Value) {
        let mut obj = object(v);
        let old = self.api.get(Kind::Service, &obj.key());
        if let (Object::Service(new), Some(Object::Service(old))) = (&mut obj, old) {
            let new = Arc::make_mut(new);
            new.status = old.status.clone();
            new.metadata.finalizers = old.metadata.finalizers.clone();
        }
        let change = self.api.put(obj, self.now);
        self.ctl.handle_change(&self.api.cache, &change, self.now);
        self.settle();
    }

    /// A client's delete (the API server keeps a finalized object with deletionTimestamp).
    fn delete(&mut self, kind: Kind, name: &str) {
        let key = if kind == Kind::Node {
            Key::new("", name)
        } else {
            Key::new("default", name)
        };
        let del = Action::Delete {
            kind,
            key,
            uid: None,
            grace_period_seconds: None,
        };
        let changes = self.api.execute(&del, self.now).expect("delete");
        for c in &changes {
            self.ctl.handle_change(&self.api.cache, c, self.now);
        }
        self.settle();
    }

    fn advance(&mut self, ms: Duration) {
        self.now += ms;
        self.settle();
    }

    /// Run due work, writes, cloud actions until nothing is left at `now`.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut busy = false;
            if self.ctl.poll_timeout().is_some_and(|w| w <= self.now) {
                self.ctl.handle_timeout(&self.api.cache, self.now);
                busy = true;
            }
            let mut actions = Vec::new();
            actions.extend(std::iter::from_fn(|| self.ctl.poll_action()));
            for a in &actions {
                busy = true;
                match self.api.execute(a, self.now) {
                    Ok(changes) => changes
                        .iter()
                        .for_each(|c| self.ctl.handle_change(&self.api.cache, c, self.now)),
                    Err(e) => self.ctl.handle_write_failed(a, &e, self.now),
                }
            }
            let mut cloud = Vec::new();
            self.ctl.drain_cloud_actions(&mut cloud);
            for a in &cloud {
                busy = true;
                self.cloud_log.push(a.clone());
                let result = match (&self.cloud_error, a) {
                    (Some(e), _) => Err(e.clone()),
                    (None, CloudAction::EnsureLoadBalancer { config, .. }) => {
                        self.cloud.insert(config.name.clone(), config.clone());
                        Ok(())
                    }
                    (None, CloudAction::DeleteLoadBalancer { name, .. }) => {
                        self.cloud.remove(name);
                        Ok(())
                    }
                };
                self.ctl
                    .on_cloud_result(&self.api.cache, a, result, self.now);
            }
            self.events
                .extend(std::iter::from_fn(|| self.ctl.poll_event()));
            if !busy {
                return;
            }
        }
        panic!("the controller did not settle");
    }

    fn svc(&self, name: &str) -> Option<Service> {
        match self.api.get(Kind::Service, &Key::new("default", name)) {
            Some(Object::Service(s)) => Some((*s).clone()),
            _ => None,
        }
    }

    fn balancer(&self, name: &str) -> &BalancerConfig {
        let lb = model::balancer_name(&Key::new("default", name));
        self.cloud
            .get(&lb)
            .unwrap_or_else(|| panic!("no balancer for {name}: {:?}", self.cloud))
    }

    fn reasons(&self) -> Vec<(&str, String)> {
        self.events
            .iter()
            .map(|e| (e.reason, e.message.clone()))
            .collect()
    }
}

fn node(name: &str, zone: &str, ip: &str, ready: bool, extra: Value) -> Value {
    let mut labels = json!({"topology.kubernetes.io/zone": zone, "kubernetes.io/hostname": name});
    if let (Some(l), Some(e)) = (labels.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
    }
    json!({"kind": "Node", "metadata": {"name": name, "labels": labels},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
}

/// A LoadBalancer Service with ports 80 (NodePort 30080) and 443 (NodePort 30443).
fn service(name: &str, annotations: Value, spec: Value) -> Value {
    let mut s = json!({"type": "LoadBalancer", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                  {"name": "https", "port": 443, "targetPort": 8443, "nodePort": 30443}]});
    if let (Some(o), Some(e)) = (s.as_object_mut(), spec.as_object()) {
        o.extend(e.clone());
    }
    json!({"kind": "Service", "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": s})
}

fn t(ip: &str, port: u16, zone: &str) -> TargetConfig {
    TargetConfig {
        ip: ip.parse().expect("ip"),
        port,
        zone: zone.to_string(),
    }
}

/// A controller over the lab's address pool.
fn controller() -> LoadBalancerController {
    LoadBalancerController::new(addresses::Allocator::new(addresses::test_pool()))
}

fn lb_ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 20, 251, host)
}

/// Zones a (2 nodes, one unready) and b (1 node, 1 excluded); zone c has no nodes at all.
fn cluster() -> Rig {
    let mut r = Rig::new();
    r.put(node("a-1", "a", "172.20.0.11", true, json!({})));
    r.put(node("a-2", "a", "172.20.0.12", false, json!({})));
    r.put(node("b-1", "b", "172.20.1.11", true, json!({})));
    let exclude = json!({"node.kubernetes.io/exclude-from-external-load-balancers": ""});
    r.put(node("b-2", "b", "172.20.1.12", true, exclude));
    r.start();
    r
}

#[test]
fn instance_targets_are_every_eligible_node_on_the_node_port() {
    let mut r = cluster();
    r.put(service("web", json!({}), json!({})));
    let c = r.balancer("web").clone();
    assert_eq!(c.name.len(), 11, "{}", c.name);
    assert!(!c.cross_zone);
    // One LB node per zone with nodes: a and b, not c.
    let nodes: Vec<_> = c
        .nodes
        .iter()
        .map(|n| (n.zone.clone().unwrap(), n.address))
        .collect();
    assert_eq!(
        nodes,
        vec![("a".to_string(), lb_ip(16)), ("b".to_string(), lb_ip(17))]
    );
    let ports: Vec<_> = c
        .listeners
        .iter()
        .map(|l| (l.port, l.target_group.as_str()))
        .collect();
    assert_eq!(ports, vec![(80, "port-80"), (443, "port-443")]);
    let g = c.group("port-80").expect("group");
    assert_eq!(g.target_type, TargetType::Instance);
    // The unready node stays (the health check decides); the excluded one is left out.
    let want = vec![
        t("172.20.0.11", 30080, "a"),
        t("172.20.0.12", 30080, "a"),
        t("172.20.1.11", 30080, "b"),
    ];
    assert_eq!(g.targets, want);
    assert_eq!(c.group("port-443").expect("group").targets[0].port, 30443);
    // LBC's defaults.
    let h = &g.health_check;
    assert_eq!(
        (h.protocol, h.port),
        (HealthProtocol::Tcp, HealthPort::TrafficPort)
    );
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(10), Duration::from_secs(10))
    );
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (3, 3));
    assert_eq!(g.deregistration_delay, Duration::from_secs(300));
    // Finalizer, status (one ip per LB node, ipMode Proxy), one Event.
    let s = r.svc("web").expect("svc");
    assert_eq!(s.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    let ingress = current_ingress(&s);
    let ips: Vec<_> = ingress
        .iter()
        .map(|i| (i.ip.clone().unwrap(), i.ip_mode.clone()))
        .collect();
    let proxy = Some("Proxy".to_string());
    assert_eq!(
        ips,
        vec![
            ("172.20.251.16".into(), proxy.clone()),
            ("172.20.251.17".into(), proxy)
        ]
    );
    assert_eq!(
        r.reasons(),
        vec![("SuccessfullyReconciled", "Successfully reconciled".into())]
    );
    assert_eq!(r.events[0].component, "service");
    // Nothing changes: nothing is sent again.
    let sent = r.cloud_log.len();
    r.put(node(
        "a-1",
        "a",
        "172.20.0.11",
        true,
        json!({"extra": "label"}),
    ));
    r.advance(Duration::from_millis(60_000));
    assert_eq!(r.cloud_log.len(), sent);
}

#[test]
fn ip_targets_are_ready_endpoints() {
    let mut r = cluster();
    let ip = json!({"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip"});
    r.put(service("web", ip, json!({})));
    r.put(json!({"kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "zone": "a", "nodeName": "a-1"},
            {"addresses": ["10.244.2.7"], "conditions": {"ready": true}, "nodeName": "b-1"},
            {"addresses": ["10.244.0.9"], "conditions": {"ready": false}, "zone": "a"}]}));
    let c = r.balancer("web");
    let g = c.group("port-80").expect("group");
    assert_eq!(g.target_type, TargetType::Ip);
    assert_eq!(
        g.targets,
        vec![t("10.244.0.5", 8080, "a"), t("10.244.2.7", 8080, "b")]
    );
    assert!(!g.preserves_client_ip());
    // No slice port named https: no targets for 443 (yet).
    assert!(c.group("port-443").expect("group").targets.is_empty());
}

#[test]
fn annotations_override_the_defaults() {
    let mut r = cluster();
    r.put(service(
        "web",
        json!({
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol": "http",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path": "/ping",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port": "https",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval": "5",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-timeout": "3",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-healthy-threshold": "4",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold": "2",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-success-codes": "200-299",
            "service.beta.kubernetes.io/aws-load-balancer-attributes": "load_balancing.cross_zone.enabled=true",
            "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes":
                "deregistration_delay.timeout_seconds=30, preserve_client_ip.enabled=false"
        }),
        json!({}),
    ));
    let c = r.balancer("web");
    assert!(c.cross_zone);
    let g = c.group("port-80").expect("group");
    let h = &g.health_check;
    assert_eq!(h.protocol, HealthProtocol::Http);
    assert_eq!(h.path, "/ping");
    // A named port is the Service port's NodePort for instance targets.
    assert_eq!(h.port, HealthPort::Port(30443));
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(5), Duration::from_secs(3))
    );
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (4, 2));
    assert_eq!(h.matcher.to_string(), "200-299");
    assert_eq!(g.deregistration_delay, Duration::from_secs(30));
    assert!(!g.preserves_client_ip());
}

#[test]
fn local_policy_checks_kube_proxy_healthz_on_the_health_check_node_port() {
    let mut r = cluster();
    let spec = json!({"externalTrafficPolicy": "Local", "healthCheckNodePort": 32000});
    r.put(service("web", json!({}), spec));
    let g = r.balancer("web").group("port-80").expect("group").clone();
    let h = &g.health_check;
    assert_eq!(
        (h.protocol, h.port, h.path.as_str()),
        (HealthProtocol::Http, HealthPort::Port(32000), "/healthz")
    );
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(10), Duration::from_secs(6))
    );
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (2, 2));
    // Every eligible node stays registered; /healthz answers 503 where no endpoint is local.
    assert_eq!(g.targets.len(), 3);
    // An annotation still wins over the Local default.
    let spec = json!({"externalTrafficPolicy": "Local", "healthCheckNodePort": 32000});
    let ann = json!({"service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold": "5"});
    r.put(service("web", ann, spec));
    let h = &r
        .balancer("web")
        .group("port-80")
        .expect("group")
        .health_check;
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (2, 5));
}

#[test]
fn bad_annotations_get_an_event_and_change_nothing() {
    let mut r = cluster();
    r.put(service("web", json!({}), json!({})));
    let before = r.balancer("web").clone();
    let status = current_ingress(&r.svc("web").expect("svc"));
    let sent = r.cloud_log.len();
    let cases = [
        (
            json!({"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "pod"}),
            "FailedBuildModel",
            "Failed build model due to unsupported target type \"pod\": service.beta.kubernetes.io/aws-load-balancer-nlb-target-type must be \"instance\" or \"ip\"",
        ),
        (
            json!({"service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval": "ten"}),
            "FailedBuildModel",
            "Failed build model due to failed to parse int32 annotation, service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval: ten: strconv.ParseInt: parsing \"ten\": invalid syntax",
        ),
        (
            json!({"service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol": "ICMP"}),
            "FailedBuildModel",
            "Failed build model due to unsupported health check protocol ICMP",
        ),
        (
            json!({"service.beta.kubernetes.io/aws-load-balancer-healthcheck-healthy-threshold": "11"}),
            "FailedDeployModel",
            "Failed deploy model due to ValidationError: targetGroups[0].healthCheck.healthyThreshold: 11 is outside 2-10",
        ),
    ];
    for (ann, reason, message) in cases {
        r.events.clear();
        r.put(service("web", ann, json!({})));
        r.advance(Duration::from_millis(1_000));
        let got = r.reasons();
        assert!(!got.is_empty(), "no event for {message}");
        assert!(
            got.iter().all(|(why, m)| *why == reason && m == message),
            "{got:?}"
        );
        assert_eq!(r.events[0].type_, crate::events::EventType::Warning);
        assert_eq!(r.cloud_log.len(), sent, "nothing sent to the cloud");
        assert_eq!(r.balancer("web"), &before);
        assert_eq!(current_ingress(&r.svc("web").expect("svc")), status);
    }
    // Fixed: applied again, announced again.
    r.events.clear();
    r.put(service(
        "web",
        json!({"service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval": "30"}),
        json!({}),
    ));
    r.advance(Duration::from_millis(1_000));
    assert_eq!(
        r.balancer("web").target_groups[0].health_check.interval,
        Duration::from_secs(30)
    );
    assert_eq!(
        r.reasons().last().map(|e| e.0),
        Some("SuccessfullyReconciled")
    );
}

#[test]
fn a_new_service_with_a_bad_annotation_gets_no_balancer_and_no_address() {
    let mut r = cluster();
    let bad = json!({"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "pod"});
    r.put(service("bad", bad, json!({})));
    assert!(r.cloud_log.is_empty());
    let bad = r.svc("bad").expect("svc");
    assert!(current_ingress(&bad).is_empty());
    assert!(
        bad.metadata.finalizers.is_none(),
        "LBC builds the model before the finalizer"
    );
    assert_eq!(r.reasons()[0].0, "FailedBuildModel");
    // The next Service gets the first addresses: the bad one reserved none.
    r.put(service("web", json!({}), json!({})));
    assert_eq!(r.balancer("web").nodes[0].address, lb_ip(16));
}

#[test]
fn nodes_joining_and_leaving_move_targets_and_lb_nodes() {
    let mut r = cluster();
    r.put(service("web", json!({}), json!({})));
    let targets = |r: &Rig| -> Vec<String> {
        r.balancer("web").target_groups[0]
            .targets
            .iter()
            .map(|t| t.ip.to_string())
            .collect()
    };
    // A node in a new zone: a target, and an LB node (and ingress address) for zone c.
    r.put(node("c-1", "c", "172.20.2.11", true, json!({})));
    assert!(targets(&r).contains(&"172.20.2.11".to_string()));
    let zones: Vec<_> = r
        .balancer("web")
        .nodes
        .iter()
        .map(|n| n.zone.clone().unwrap())
        .collect();
    assert_eq!(zones, ["a", "b", "c"]);
    assert_eq!(current_ingress(&r.svc("web").expect("svc")).len(), 3);
    // The cluster autoscaler marks it for deletion: deregistered, the zone keeps its LB node.
    let mut tainted = node("c-1", "c", "172.20.2.11", true, json!({}));
    tainted["spec"] =
        json!({"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]});
    r.put(tainted);
    assert!(!targets(&r).contains(&"172.20.2.11".to_string()));
    assert_eq!(r.balancer("web").nodes.len(), 3);
    // Deleted: zone c has no nodes, so no LB node and its address leaves the status.
    r.delete(Kind::Node, "c-1");
    assert_eq!(r.balancer("web").nodes.len(), 2);
    assert_eq!(current_ingress(&r.svc("web").expect("svc")).len(), 2);
    // The excluded node loses its label: registered.
    r.put(node("b-2", "b", "172.20.1.12", true, json!({})));
    assert!(targets(&r).contains(&"172.20.1.12".to_string()));
}

#[test]
fn deletion_tears_the_balancer_down_before_the_finalizer_goes() {
    let mut r = cluster();
    r.put(service("web", json!({}), json!({})));
    r.cloud_error = Some("Throttling: Rate exceeded".to_string());
    r.delete(Kind::Service, "web");
    // The cloud refused: the balancer and the finalizer stay, with an Event.
    let s = r.svc("web").expect("still there");
    assert!(s.metadata.deletion_timestamp.is_some());
    assert_eq!(s.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    assert_eq!(r.cloud.len(), 1);
    let last = r.reasons().last().cloned().expect("event");
    assert_eq!(
        last,
        (
            "FailedDeployModel",
            "Failed deploy model due to Throttling: Rate exceeded".into()
        )
    );
    // The cloud recovers; the retry deletes, then the finalizer goes and so does the Service.
    r.cloud_error = None;
    r.advance(Duration::from_millis(1_000));
    assert!(r.cloud.is_empty());
    assert!(r.svc("web").is_none());
    assert!(matches!(
        r.cloud_log.last(),
        Some(CloudAction::DeleteLoadBalancer { .. })
    ));
    // Its addresses are free again.
    r.put(service("next", json!({}), json!({})));
    assert_eq!(r.balancer("next").nodes[0].address, lb_ip(16));
}

#[test]
fn leaving_type_load_balancer_cleans_up_and_other_classes_are_ignored() {
    let mut r = cluster();
    r.put(service("web", json!({}), json!({})));
    r.put(service("web", json!({}), json!({"type": "NodePort"})));
    assert!(r.cloud.is_empty());
    let s = r.svc("web").expect("svc");
    assert!(current_ingress(&s).is_empty());
    assert!(s.metadata.finalizers.as_ref().is_none_or(Vec::is_empty));
    let sent = r.cloud_log.len();
    r.put(service(
        "other",
        json!({}),
        json!({"loadBalancerClass": "example.com/lb"}),
    ));
    assert_eq!(r.cloud_log.len(), sent);
    assert!(r.svc("other").expect("svc").metadata.finalizers.is_none());
    r.put(service(
        "ours",
        json!({}),
        json!({"loadBalancerClass": "service.k8s.aws/nlb"}),
    ));
    assert_eq!(r.balancer("ours").listeners.len(), 2);
}

#[test]
fn a_restarted_controller_keeps_the_addresses_in_the_status() {
    let mut r = cluster();
    r.put(service("a", json!({}), json!({})));
    r.put(service("b", json!({}), json!({})));
    r.delete(Kind::Service, "a");
    let before = current_ingress(&r.svc("b").expect("svc"));
    assert_eq!(before[0].ip.as_deref(), Some("172.20.251.18"));
    let writes = r.api.log.len();
    r.ctl = controller();
    r.start();
    assert_eq!(current_ingress(&r.svc("b").expect("svc")), before);
    assert_eq!(r.api.log.len(), writes, "no status rewrite");
    r.put(service("c", json!({}), json!({})));
    assert_eq!(r.balancer("c").nodes[0].address, lb_ip(16));
}

#[test]
fn the_fast_profile_divides_every_balancer_timer() {
    let mut r = cluster();
    r.ctl = controller().with_time_divisor(10);
    r.start();
    let spec = json!({"externalTrafficPolicy": "Local", "healthCheckNodePort": 32000});
    r.put(service("local", json!({}), spec));
    let ann = json!({"service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval": "30"});
    r.put(service("web", ann, json!({})));
    let g = &r.balancer("local").target_groups[0];
    let h = &g.health_check;
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(1), Duration::from_millis(600))
    );
    assert_eq!(g.deregistration_delay, Duration::from_secs(30));
    let h = &r.balancer("web").target_groups[0].health_check;
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(3), Duration::from_secs(1))
    );
}

#[test]
fn two_services_whose_names_hash_alike_never_share_a_balancer() {
    // Find two Service names with the same 28-bit balancer name (a birthday search).
    let mut seen = BTreeMap::new();
    let (first, second) = (0..200_000)
        .find_map(|i| {
            let name = format!("s{i}");
            let lb = model::balancer_name(&Key::new("default", &name));
            seen.insert(lb, name.clone()).map(|prev| (prev, name))
        })
        .expect("a collision");
    let mut r = cluster();
    r.put(service(&first, json!({}), json!({})));
    r.put(service(&second, json!({}), json!({})));
    assert_eq!(r.cloud.len(), 1);
    let owner = match r.cloud_log.first() {
        Some(CloudAction::EnsureLoadBalancer { service, .. }) => service.name.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(owner, first);
    let (why, msg) = r.reasons().last().cloned().expect("event");
    assert_eq!(why, "FailedDeployModel");
    assert!(msg.contains("DuplicateLoadBalancerName"), "{msg}");
    assert!(current_ingress(&r.svc(&second).expect("svc")).is_empty());
}

#[test]
fn a_zonal_shift_reaches_the_balancer_and_its_end_too() {
    let mut r = cluster();
    r.put(service("web", json!({}), json!({})));
    assert!(r.balancer("web").zonal_shift_away_from.is_empty());
    let shift = |r: &mut Rig, expires: Option<Moment>| {
        for name in ["a-1", "a-2"] {
            let Some(Object::Node(n)) = r.api.get(Kind::Node, &Key::new("", name)) else {
                panic!("node {name}");
            };
            let new = match expires {
                Some(at) => crate::zonalshift::start_node(&n, at, r.now),
                None => crate::zonalshift::cancel_node(&n),
            };
            let change = r
                .api
                .put(Object::Node(Arc::new(new.expect("changed"))), r.now);
            r.ctl.handle_change(&r.api.cache, &change, r.now);
            r.settle();
        }
    };
    shift(&mut r, Some(T0 + Duration::from_millis(1_800_000)));
    let c = r.balancer("web").clone();
    assert_eq!(c.zonal_shift_away_from, vec!["a".to_string()]);
    // The targets stay registered: the balancer routes around them.
    assert_eq!(c.group("port-80").expect("group").targets.len(), 3);
    shift(&mut r, None);
    assert!(r.balancer("web").zonal_shift_away_from.is_empty());
}
