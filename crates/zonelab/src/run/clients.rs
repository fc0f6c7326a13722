//! Traffic and the records that come back: client pods running `zonelab load` in their zones
//! (one JSON line per request into the run's directory), live counts for the progress line,
//! and, at the end, the requests and every proxy's sync log as [`lab`] records.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use lab::{Event, Request};
use scenario::Client;

/// Label on client pods.
pub const CLIENT_LABEL: &str = "zonelab.io/client";

/// One client pod (or external client process: zone `external`, node the router namespace).
#[derive(Debug, Clone)]
pub struct ClientPod {
    pub client: String,
    pub zone: String,
    pub node: String,
    pub pod: String,
    pub out: PathBuf,
    /// `clusterip` or `external` (the report's `per_client_kind`).
    pub kind: &'static str,
    /// The target Service, `<namespace>/<name>` (the report's `per_service`).
    pub service: String,
}

/// The longest one request of `c` can take: every attempt times out.
pub fn longest_request(c: &Client) -> Duration {
    c.timeout * (c.retries + 1)
}

/// The pod manifest of one client.
pub fn pod_manifest(c: &Client, cp: &ClientPod, url: &str, exe: &Path, run_for: Duration) -> Pod {
    let mut cmd = vec![
        exe.display().to_string(),
        "load".into(),
        "--target".into(),
        url.to_string(),
        "--rate".into(),
        c.rate.to_string(),
        "--duration".into(),
        format!("{}ms", run_for.as_millis()),
        "--timeout".into(),
        format!("{}ms", c.timeout.as_millis()),
        "--retries".into(),
        c.retries.to_string(),
        "--out".into(),
        cp.out.display().to_string(),
    ];
    if c.keepalive {
        cmd.push("--keepalive".into());
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": cp.pod, "namespace": "default",
                     "labels": {CLIENT_LABEL: cp.client, "topology.kubernetes.io/zone": cp.zone}},
        "spec": {
            "nodeName": cp.node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": longest_request(c).as_secs() + 5,
            "containers": [{"name": "load", "image": "zonelab/load", "command": cmd}]
        }
    }))
    .expect("a valid pod")
}

/// Creates the client pods.
pub async fn start(client: &kube::Client, pods: &[(ClientPod, Pod)]) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (cp, pod) in pods {
        api.create(&PostParams::default(), pod)
            .await
            .with_context(|| format!("creating client pod {}", cp.pod))?;
    }
    Ok(())
}

/// Deletes the client pods (their `zonelab load` stops on SIGTERM and flushes).
pub async fn stop(client: &kube::Client, pods: &[ClientPod]) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    // External clients have no pod (an empty name would address the whole collection).
    for cp in pods.iter().filter(|cp| !cp.pod.is_empty()) {
        let _ = api.delete(&cp.pod, &DeleteParams::default()).await;
    }
}

/// Reads files as they grow: each call returns only the complete lines appended since the last.
#[derive(Debug, Default)]
pub struct NewLines {
    offsets: BTreeMap<PathBuf, u64>,
}

impl NewLines {
    /// The complete lines appended to `path` since the last call (none if it cannot be read).
    pub fn read(&mut self, path: &Path) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(path) else {
            return Vec::new();
        };
        let off = self.offsets.entry(path.to_path_buf()).or_default();
        let mut buf = String::new();
        if f.seek(SeekFrom::Start(*off)).is_err() || f.read_to_string(&mut buf).is_err() {
            return Vec::new();
        }
        let complete = buf.rfind('\n').map_or(0, |i| i + 1);
        *off += complete as u64;
        buf[..complete].lines().map(str::to_string).collect()
    }
}

/// Waits until the shared start rule ([`lab::load_start::LoadGate`]) lets the load of `pods`
/// start: each client pod's node's kube-proxy logged a sync programming an endpoint of its
/// Service while knowing all of the Service's ready endpoints (the agents' `proxy-sync` lines
/// in `logs`; the Service's Ready pods read from the API). Polls every `POLL_MS`, gives up
/// after `CAP_MS` and then returns what still held the load back.
pub async fn wait_programmed(
    client: &kube::Client,
    logs: &Path,
    pods: &[&ClientPod],
) -> anyhow::Result<Option<String>> {
    let gate = lab::load_start::LoadGate::new(
        pods.iter()
            .filter(|cp| cp.kind == lab::timeline::CLUSTERIP)
            .map(|cp| (cp.node.clone(), cp.service.clone())),
    );
    let mut lines = NewLines::default();
    let mut latest: BTreeMap<String, Synced> = BTreeMap::new();
    let nodes: std::collections::BTreeSet<&str> = pods.iter().map(|cp| cp.node.as_str()).collect();
    let started = std::time::Instant::now();
    let cap = Duration::from_millis(lab::load_start::CAP_MS as u64);
    loop {
        for node in &nodes {
            for line in proxy_lines(&mut lines, logs, node) {
                match line {
                    ProxyLine::Synced(sync) => {
                        latest.insert(node.to_string(), sync);
                    }
                    ProxyLine::Known(ready) => {
                        if let Some(sync) = latest.get_mut(*node) {
                            sync.ready = Some(ready);
                        }
                    }
                }
            }
        }
        let seen = |n: &str, s: &str| {
            latest
                .get(n)
                .map_or_else(Default::default, |sync| sync.seen(s))
        };
        // With no ready count asked (0), only a node without a programmed endpoint holds the
        // gate: the API is read once every node has one.
        let mut waiting = gate.pending(|_| 0, seen);
        if waiting.is_none() {
            let mut ready = BTreeMap::new();
            for svc in gate.services() {
                ready.insert(svc, ready_pods(client, svc).await?);
            }
            waiting = gate.pending(|s| ready.get(s).copied().unwrap_or(0), seen);
        }
        let Some(waiting) = waiting else {
            return Ok(None);
        };
        if started.elapsed() >= cap {
            return Ok(Some(waiting.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(lab::load_start::POLL_MS as u64)).await;
    }
}

/// The ready endpoints Service `service` (`namespace/name`) will have: its Ready pods in the
/// API ([`lab::load_start::ready_pods`]).
async fn ready_pods(client: &kube::Client, service: &str) -> anyhow::Result<usize> {
    let (ns, name) = service.split_once('/').unwrap_or(("default", service));
    let svc = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("reading Service {service}"))?;
    let Some(sel) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
    else {
        return Ok(0);
    };
    let labels: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let list = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default().labels(&labels.join(",")))
        .await
        .with_context(|| format!("listing the pods of Service {service}"))?;
    Ok(lab::load_start::ready_pods(&svc, &list.items))
}

/// The outcome of one `zonelab load` record line (`None`: not a record).
fn outcome(line: &str) -> Option<lab::Outcome> {
    #[derive(serde::Deserialize)]
    struct Line {
        outcome: lab::Outcome,
    }
    serde_json::from_str::<Line>(line).ok().map(|l| l.outcome)
}

/// Live counts of the clients' records, for the progress line.
#[derive(Debug, Default)]
pub struct Tail {
    lines: NewLines,
    pub ok: u64,
    pub failed: u64,
    /// Failed requests among those read in the last poll.
    pub recent_failed: u64,
    pub recent_total: u64,
}

impl Tail {
    /// Counts the records appended since the last call.
    pub fn poll(&mut self, pods: &[ClientPod]) {
        self.recent_failed = 0;
        self.recent_total = 0;
        for cp in pods {
            for line in self.lines.read(&cp.out) {
                self.recent_total += 1;
                if outcome(&line) == Some(lab::Outcome::Ok) {
                    self.ok += 1;
                } else {
                    self.failed += 1;
                    self.recent_failed += 1;
                }
            }
        }
    }
}

/// Every request the clients recorded.
pub fn read_requests(pods: &[ClientPod]) -> Vec<Request> {
    let mut out = Vec::new();
    for cp in pods {
        let Ok(f) = std::fs::File::open(&cp.out) else {
            continue;
        };
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if !v.is_object() {
                continue;
            }
            v["client"] = cp.client.clone().into();
            v["client_zone"] = cp.zone.clone().into();
            v["client_node"] = cp.node.clone().into();
            v["client_kind"] = cp.kind.into();
            v["service"] = cp.service.clone().into();
            if let Ok(r) = serde_json::from_value::<Request>(v) {
                out.push(r);
            }
        }
    }
    out
}

/// Every successful proxy sync the agents logged (`proxy-sync` lines of their stdout), read
/// as the logs grow.
#[derive(Debug, Default)]
pub struct ProxySyncs {
    lines: NewLines,
    /// Each programmed set listed once (the same shared code as the simulator's).
    sets: lab::observe::ProxySyncObserver,
    /// The syncs read so far, per node in log order.
    pub events: Vec<Event>,
}

impl ProxySyncs {
    /// Reads the syncs logged since the last call.
    pub fn poll(&mut self, logs: &Path, nodes: &[String]) {
        for node in nodes {
            for sync in proxy_syncs(&mut self.lines, logs, node) {
                let (_, kind) = self.sets.synced(node, sync.services);
                self.events.push(Event { at: sync.at, kind });
            }
        }
    }
}

/// One successful sync of an agent's `proxy-sync` line.
#[derive(Debug, Default, PartialEq)]
struct Synced {
    /// When it was applied (ms since the epoch).
    at: f64,
    /// What it programmed.
    services: lab::observe::Programmed,
    /// Per Service, the ready endpoints the proxy knew (`ready`; `None` on an older agent's
    /// line, which does not say).
    ready: Option<BTreeMap<String, usize>>,
}

impl Synced {
    /// What this sync shows of Service `service` to the load gate.
    fn seen(&self, service: &str) -> lab::load_start::ProxySeen {
        lab::load_start::ProxySeen {
            programmed: self.services.get(service).map_or(0, Vec::len),
            known_ready: self
                .ready
                .as_ref()
                .map(|r| r.get(service).copied().unwrap_or(0)),
        }
    }
}

/// A line of an agent's kube-proxy the runner reads.
#[derive(Debug, PartialEq)]
enum ProxyLine {
    /// A successful sync (`proxy-sync` with `ok`).
    Synced(Synced),
    /// Changes that left the rules as they were (`proxy-known`): per Service, the ready
    /// endpoints the proxy knows now.
    Known(BTreeMap<String, usize>),
}

/// The lines `node`'s agent logged since the last read of its log, in log order.
fn proxy_lines(lines: &mut NewLines, logs: &Path, node: &str) -> Vec<ProxyLine> {
    lines
        .read(&logs.join(format!("agent-{node}.out")))
        .iter()
        .filter_map(|line| parse_proxy_line(line))
        .collect()
}

/// The successful syncs `node`'s agent logged since the last read of its log, in log order.
fn proxy_syncs(lines: &mut NewLines, logs: &Path, node: &str) -> Vec<Synced> {
    proxy_lines(lines, logs, node)
        .into_iter()
        .filter_map(|l| match l {
            ProxyLine::Synced(s) => Some(s),
            ProxyLine::Known(_) => None,
        })
        .collect()
}

/// A `proxy-sync` line of a successful sync or a `proxy-known` line (`None`: another line,
/// or a failed sync).
fn parse_proxy_line(line: &str) -> Option<ProxyLine> {
    let v = serde_json::from_str::<serde_json::Value>(line).ok()?;
    if v["event"] == "proxy-known" {
        return serde_json::from_value(v["ready"].clone())
            .ok()
            .map(ProxyLine::Known);
    }
    if v["event"] != "proxy-sync" || v["ok"] != true {
        return None;
    }
    Some(ProxyLine::Synced(Synced {
        at: v["at"].as_f64().unwrap_or(0.0),
        services: serde_json::from_value(v["services"].clone()).unwrap_or_default(),
        ready: serde_json::from_value(v["ready"].clone()).ok(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn new_lines_returns_each_complete_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let mut r = NewLines::default();
        assert!(r.read(&path).is_empty(), "a missing file has no lines");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"one\ntw").unwrap();
        assert_eq!(r.read(&path), ["one"]);
        f.write_all(b"o\nthree\n").unwrap();
        assert_eq!(r.read(&path), ["two", "three"]);
        assert!(r.read(&path).is_empty());
    }

    #[test]
    fn a_proxy_sync_line_tells_the_gate_what_it_programmed_and_knew() {
        let line = r#"{"event":"proxy-sync","node":"b-2","at":5.0,"ok":true,"services":{"default/web":["10.244.0.2","10.244.4.2"]},"ready":{"default/web":2}}"#;
        let sync = |line: &str| match parse_proxy_line(line) {
            Some(ProxyLine::Synced(s)) => Some(s),
            _ => None,
        };
        let synced = sync(line).expect("a sync");
        assert_eq!(synced.at, 5.0);
        let web = synced.seen("default/web");
        assert_eq!((web.programmed, web.known_ready), (2, Some(2)));
        let other = synced.seen("shop/cart");
        assert_eq!((other.programmed, other.known_ready), (0, Some(0)));
        let older = sync(&line.replace(r#","ready":{"default/web":2}"#, "")).unwrap();
        assert_eq!(older.seen("default/web").known_ready, None);
        assert!(sync(&line.replace(r#""ok":true"#, r#""ok":false"#)).is_none());
        assert!(parse_proxy_line(r#"{"event":"other"}"#).is_none());
        let known = r#"{"event":"proxy-known","node":"b-2","at":6.0,"ready":{"default/web":3}}"#;
        assert_eq!(
            parse_proxy_line(known),
            Some(ProxyLine::Known(BTreeMap::from([(
                "default/web".into(),
                3
            )])))
        );
    }

    #[test]
    fn a_records_outcome_is_read_typed() {
        let ok = r#"{"start":1.0,"end":2.0,"outcome":"ok","conn":"new","attempts":1}"#;
        assert_eq!(outcome(ok), Some(lab::Outcome::Ok));
        assert_eq!(
            outcome(&ok.replace("\"ok\"", "\"refused\"")),
            Some(lab::Outcome::Refused)
        );
        assert_eq!(outcome("not json"), None);
    }
}
