//! Everything `zonelab run` checks before it builds anything: the scenario file, the workload
//! manifests it names, and its flag overrides (each a config flag that crate `profile` resolves,
//! or another `zonelab server` or `zonelab agent` flag). Errors carry `file:line:column`.

use std::path::{Path, PathBuf};

use clap::Args;
use scenario::locate::{Seg, locate, render};
use scenario::sim::Mode;
use scenario::{Scenario, ScenarioError};
use serde::Deserialize;

/// A scenario ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub scenario: Scenario,
    pub file: PathBuf,
    /// Workload objects in the order they are applied.
    pub manifests: Vec<serde_json::Value>,
    /// `--name=value` for `zonelab server`.
    pub server_flags: Vec<String>,
    /// `--name=value` for every `zonelab agent`.
    pub agent_flags: Vec<String>,
    /// Every component's config under the scenario's profile and flags (crate `profile`).
    pub configs: profile::Configs,
    /// Its sizes and the simulator's memory estimate for them.
    pub estimate: scenario::memory::Estimate,
}

/// Flags the run sets itself: a scenario sets them with their own fields instead.
const RESERVED: [&str; 14] = [
    "profile",
    "etcd-servers",
    "leader-elect-identity",
    "proxy-mode",
    "listen",
    "listen-netns",
    "data-dir",
    "node-name",
    "zone",
    "node-ip",
    "pod-cidr",
    "server",
    "netns",
    "lab-prefix",
];

/// Reads and checks a scenario file and what it refers to, for the live lab or the simulator.
pub fn prepare(path: &Path, mode: Mode) -> Result<Prepared, ScenarioError> {
    let text = scenario::read_text(path)?;
    let p = prepare_text(&text, path, path.parent().unwrap_or(Path::new(".")), mode)?;
    if mode == Mode::Sim {
        check_sim_memory(&p, &text)?;
    }
    Ok(p)
}

/// Checks scenario `text` (named `path` in errors); workload paths are relative to `base`.
pub fn prepare_text(
    text: &str,
    path: &Path,
    base: &Path,
    mode: Mode,
) -> Result<Prepared, ScenarioError> {
    let file = path.display().to_string();
    let mut scenario = Scenario::parse_for(text, &file, mode)?;
    let invalid = |segs: Vec<Seg>, message: String| {
        let (line, column) = locate(text, &segs).unwrap_or((1, 1));
        ScenarioError::Invalid {
            file: file.clone(),
            line,
            column,
            field: render(&segs),
            message,
        }
    };
    let (server_flags, agent_flags, configs) = split_flags(&scenario, text, &file, &invalid)?;
    // One spelling from here on (`--name: x` and `name: x` are the same flag).
    scenario.flags = std::mem::take(&mut scenario.flags)
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches('-').to_string(), v))
        .collect();
    let mut manifests = Vec::new();
    let mut census = scenario::memory::Census::new(&scenario);
    for (i, w) in scenario.workloads.iter().enumerate() {
        let at = |k: &str| {
            vec![
                Seg::Key("workloads".into()),
                Seg::Index(i),
                Seg::Key(k.into()),
            ]
        };
        let mut objects = Vec::new();
        if let Some(rel) = &w.path {
            let full = base.join(rel);
            objects = read_manifests(&full).map_err(|e| match e {
                ManifestError::Read(err) => {
                    invalid(at("path"), format!("cannot read {}: {err}", full.display()))
                }
                ManifestError::Syntax(err) => err,
            })?;
            for obj in &objects {
                scenario::stamp::check_template(obj, w.copies())
                    .map_err(|m| invalid(at("count"), format!("{rel}: {m}")))?;
                if mode == Mode::Sim {
                    sim_check(obj).map_err(|(field, m)| {
                        invalid(at("path"), format!("{rel}: {field}: {m}"))
                    })?;
                }
            }
        }
        let inline = w.inline_objects();
        for (j, obj) in inline.iter().enumerate() {
            check_object(obj).map_err(|m| invalid(at("inline"), m))?;
            if mode == Mode::Sim
                && let Err(r) = scenario::sim_manifests::check_object(obj)
            {
                let mut segs = at("inline");
                if w.inline.as_ref().is_some_and(|v| v.is_array()) {
                    segs.push(Seg::Index(j));
                }
                segs.extend(r.at);
                return Err(invalid(segs, r.message));
            }
            objects.push((*obj).clone());
        }
        for obj in w.stamp(&objects) {
            census.add(i, &obj);
            manifests.push(obj);
        }
    }
    check_external_services(&scenario, &manifests, &invalid)?;
    Ok(Prepared {
        scenario,
        file: path.to_path_buf(),
        manifests,
        server_flags,
        agent_flags,
        configs,
        estimate: census.finish(),
    })
}

/// A manifest read from a file that the simulator does not take: `(kind name, field path)` and
/// why (the error points at the workload's `path`; the message says where in the file).
fn sim_check(obj: &serde_json::Value) -> Result<(), (String, String)> {
    scenario::sim_manifests::check_object(obj).map_err(|r| {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        (format!("{kind} {name}: {}", render(&r.at)), r.message)
    })
}

/// The simulator's memory estimate for `p` against the memory this machine has available
/// (`MemAvailable` of /proc/meminfo): a run that would not fit fails here, at the scenario's
/// heaviest entry, before anything runs. Without /proc/meminfo nothing is checked.
pub fn check_sim_memory(p: &Prepared, text: &str) -> Result<(), ScenarioError> {
    let Some(available) = mem_available() else {
        return Ok(());
    };
    scenario::memory::check(&p.scenario, &p.estimate, available).map_err(|e| {
        let (line, column) = locate(text, &e.path).unwrap_or((1, 1));
        ScenarioError::Invalid {
            file: p.file.display().to_string(),
            line,
            column,
            field: render(&e.path),
            message: e.message,
        }
    })
}

/// `MemAvailable` of /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// An external client's Service, when the workloads create it, must be `type: LoadBalancer`
/// (found before anything is built, at the client's `service` or `target`).
fn check_external_services(
    s: &Scenario,
    manifests: &[serde_json::Value],
    invalid: &Invalid,
) -> Result<(), ScenarioError> {
    for (i, c) in s.clients.iter().enumerate() {
        if c.from != scenario::ClientFrom::External {
            continue;
        }
        let Some(svc) = c.service_ref() else { continue };
        let found = manifests.iter().find(|m| {
            m["kind"] == "Service"
                && m["metadata"]["name"] == svc.name.as_str()
                && m["metadata"]["namespace"].as_str().unwrap_or("default") == svc.namespace
        });
        let Some(m) = found else { continue };
        let kind = m["spec"]["type"].as_str().unwrap_or("ClusterIP");
        if kind != "LoadBalancer" {
            let field = if c.service.is_some() {
                "service"
            } else {
                "target"
            };
            return Err(invalid(
                vec![
                    Seg::Key("clients".into()),
                    Seg::Index(i),
                    Seg::Key(field.into()),
                ],
                format!(
                    "an external client goes through the Service's load balancer, but {}/{} has type {kind}: set `type: LoadBalancer`",
                    svc.namespace, svc.name
                ),
            ));
        }
    }
    Ok(())
}

type Invalid<'a> = dyn Fn(Vec<Seg>, String) -> ScenarioError + 'a;

/// Resolves the `flags` entries into every component's config (crate `profile`) and sends each
/// to the role that has it (the cluster autoscaler's are read by the run from the scenario).
fn split_flags(
    s: &Scenario,
    text: &str,
    file: &str,
    invalid: &Invalid,
) -> Result<(Vec<String>, Vec<String>, profile::Configs), ScenarioError> {
    let longs = |cmd: clap::Command| -> Vec<String> {
        cmd.get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect()
    };
    let server = longs(crate::server::ServerArgs::augment_args(clap::Command::new(
        "server",
    )));
    let agent = longs(crate::agent::AgentArgs::augment_args(clap::Command::new(
        "agent",
    )));
    for name in s.flags.keys() {
        let bare = name.trim_start_matches('-');
        if RESERVED.contains(&bare) {
            return Err(invalid(
                vec![Seg::Key("flags".into()), Seg::Key(name.clone())],
                format!("--{bare} is set by the run itself (use the scenario's own field)"),
            ));
        }
    }
    let has = |list: &[String], name: &str| list.iter().any(|f| f == name);
    let resolved = profile::from_scenario(s, text, file, |name| {
        has(&server, name) || has(&agent, name)
    })?;
    let (mut to_server, mut to_agent) = (Vec::new(), Vec::new());
    for (name, value) in &s.flags {
        let bare = name.trim_start_matches('-');
        let flag = format!("--{bare}={value}");
        if has(&server, bare) {
            to_server.push(flag.clone());
        }
        if has(&agent, bare) {
            to_agent.push(flag);
        }
    }
    Ok((to_server, to_agent, resolved.configs))
}

enum ManifestError {
    Read(std::io::Error),
    Syntax(ScenarioError),
}

/// Every document of a manifest file (`---` separated; empty documents skipped; `kind: List`
/// expanded).
fn read_manifests(path: &Path) -> Result<Vec<serde_json::Value>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(ManifestError::Read)?;
    let file = path.display().to_string();
    let syntax = |line: usize, column: usize, message: String| {
        ManifestError::Syntax(ScenarioError::Syntax {
            file: file.clone(),
            line,
            column,
            message,
        })
    };
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(doc).map_err(|e| {
            let (l, c) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            syntax(l, c, e.to_string())
        })?;
        let items = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::Object(ref m)
                if m.get("kind").and_then(|k| k.as_str()) == Some("List") =>
            {
                m.get("items")
                    .and_then(|i| i.as_array())
                    .cloned()
                    .unwrap_or_default()
            }
            v => vec![v],
        };
        for obj in items {
            check_object(&obj).map_err(|m| syntax(1, 1, m))?;
            out.push(obj);
        }
    }
    Ok(out)
}

/// An object must say what it is and be named.
fn check_object(obj: &serde_json::Value) -> Result<(), String> {
    let field = |p: &str| {
        obj.pointer(p)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    if !obj.is_object() {
        return Err("expected a Kubernetes object (a mapping)".into());
    }
    for (p, name) in [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
    ] {
        if field(p).is_none() {
            return Err(format!("the object has no {name}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(text: &str, dir: &Path) -> Result<Prepared, ScenarioError> {
        prepare_text(text, &dir.join("s.yaml"), dir, Mode::Live)
    }

    #[test]
    fn every_example_prepares() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                continue; // an app's manifests (examples/shop/)
            }
            let text = std::fs::read_to_string(&path).expect("read");
            // Scenarios have `run:`; the others are manifests (web.yaml).
            if !(path.extension().is_some_and(|e| e == "yaml") && text.contains("\nrun:")) {
                continue;
            }
            let sim_only = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("sim-"));
            if sim_only {
                // Sizes beyond the live address plan: the simulator takes it, the live lab
                // refuses it with a pointer to --sim.
                prepare_text(&text, &path, &dir, Mode::Sim).unwrap_or_else(|e| panic!("{e}"));
                let e = prepare(&path, Mode::Live).expect_err("sim-only sizes");
                assert!(e.to_string().contains("--sim"), "{e}");
            } else {
                prepare(&path, Mode::Live).unwrap_or_else(|e| panic!("{e}"));
            }
            checked += 1;
        }
        assert!(checked >= 8, "{checked} scenarios");
        let ha = prepare(&dir.join("ha-zone-power-off.yaml"), Mode::Live).expect("ha example");
        assert!(ha.scenario.control_plane.zonal());
    }

    #[test]
    fn an_external_client_of_a_clusterip_service_is_rejected_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = "name: x
workloads:
  - inline: {apiVersion: v1, kind: Service, metadata: {name: web}, spec: {ports: [{port: 80}]}}
clients:
  - {name: out, from: external, service: web}
run: {duration: 10s}
";
        let e = prep(text, dir.path()).expect_err("a ClusterIP Service");
        assert_eq!(e.location(), Some((5, 42)), "{e}");
        assert!(
            e.to_string().contains("default/web has type ClusterIP"),
            "{e}"
        );
        let lb = text.replace("spec: {ports", "spec: {type: LoadBalancer, ports");
        prep(&lb, dir.path()).expect("a LoadBalancer Service");
    }

    #[test]
    fn flags_go_to_the_role_that_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = prep(
            "name: x\nflags:\n  node-monitor-grace-period: 5s\n  --sync-period: 2s\n  service-cluster-ip-range: 10.96.0.0/16\nrun: {duration: 10s}\n",
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            p.server_flags,
            vec![
                "--node-monitor-grace-period=5s",
                "--service-cluster-ip-range=10.96.0.0/16"
            ]
        );
        // service-cluster-ip-range is a flag of both roles.
        assert_eq!(
            p.agent_flags,
            vec![
                "--sync-period=2s",
                "--service-cluster-ip-range=10.96.0.0/16"
            ]
        );
        assert!(
            p.scenario.flags.contains_key("sync-period"),
            "keys normalised"
        );
        // The config flags resolved under the scenario's profile (default fast).
        let c = &p.configs;
        assert_eq!(
            c.node_lifecycle.node_monitor_grace_period,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(
            c.node_lifecycle.node_monitor_period,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(c.proxy.sync_period_ms, std::time::Duration::from_secs(2));
        assert_eq!(c.report_timers().unreachable_toleration_s, 30.0);
    }

    #[test]
    fn config_flag_values_are_checked_at_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let e = prep(
            "name: x\nflags:\n  sync-period: 2s\n  node-monitor-grace-period: soon\nrun: {duration: 10s}\n",
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("s.yaml:4:") && e.contains("invalid duration"),
            "{e}"
        );
        let e = prep(
            "name: x\nflags: {expander: most-pods}\nrun: {duration: 10s}\n",
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("s.yaml:2:") && e.ends_with("Expander most-pods not supported"),
            "{e}"
        );
    }

    #[test]
    fn reserved_and_unknown_flags_are_rejected_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let e = prep(
            "name: x\nflags: {profile: upstream}\nrun: {duration: 10s}\n",
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("s.yaml:2:") && e.contains("set by the run itself"),
            "{e}"
        );
        let e = prep(
            "name: x\nflags: {nope: 1}\nrun: {duration: 10s}\n",
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("s.yaml:2:") && e.contains("unknown flag --nope"),
            "{e}"
        );
    }

    #[test]
    fn the_5000_node_example_stamps_its_templates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let path = dir.join("sim-az-5000.yaml");
        let text = std::fs::read_to_string(&path).expect("read");
        let p = prepare_text(&text, &path, &dir, Mode::Sim).expect("sim example");
        let z = p.estimate.size;
        assert_eq!((z.nodes, z.pods, z.services), (5_001, 150_000, 10_000));
        assert_eq!(z.endpoints, 150_000, "every pod behind its own Service");
        assert_eq!(p.manifests.len(), 30_000);
        assert_eq!(p.manifests[3]["metadata"]["name"], "small-1");
        assert_eq!(p.manifests[4]["metadata"]["namespace"], "small-1");
        assert_eq!(
            p.manifests[29_999]["spec"]["template"]["metadata"]["labels"]["app"],
            "large-9"
        );
    }

    #[test]
    fn a_stamped_file_template_needs_the_index_in_its_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("w.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
        )
        .unwrap();
        let text = "name: x\nworkloads:\n  - path: w.yaml\n    count: 3\nrun: {duration: 10s}\n";
        let e = prep(text, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("s.yaml:4:12: workloads[0].count: w.yaml: count: 3 stamps Service \"web\""),
            "{e}"
        );
        std::fs::write(
            dir.path().join("w.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: 'web-{{.Index}}'}\n",
        )
        .unwrap();
        let p = prep(text, dir.path()).unwrap();
        let names: Vec<&str> = p
            .manifests
            .iter()
            .map(|m| m["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web-0", "web-1", "web-2"]);
    }

    #[test]
    fn the_simulator_refuses_live_only_manifest_fields_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let sim =
            |text: &str| prepare_text(text, &dir.path().join("s.yaml"), dir.path(), Mode::Sim);
        let inline = "name: x
workloads:
  - inline:
      - apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: c
            readinessProbe:
              exec: {command: [cat, /ready]}
run: {duration: 10s}
";
        let e = sim(inline).unwrap_err().to_string();
        assert!(
            e.contains("s.yaml:11:21: workloads[0].inline[0].spec.containers[0].readinessProbe.exec: an exec readinessProbe is live-only"),
            "{e}"
        );
        prep(inline, dir.path()).expect("the live lab runs exec probes");
        std::fs::write(
            dir.path().join("w.yaml"),
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\n",
        )
        .unwrap();
        let e = sim("name: x\nworkloads:\n  - path: w.yaml\nrun: {duration: 10s}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s.yaml:3:11: workloads[0].path: w.yaml: Job j: kind: batch/v1 Job is not modelled by the simulator"),
            "{e}"
        );
    }

    #[test]
    fn manifests_are_read_relative_to_the_scenario_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("w.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n",
        )
        .unwrap();
        let text = "name: x\nworkloads:\n  - path: w.yaml\n  - inline: {apiVersion: v1, kind: Pod, metadata: {name: c}}\nrun: {duration: 10s}\n";
        let p = prep(text, dir.path()).unwrap();
        let names: Vec<&str> = p
            .manifests
            .iter()
            .map(|m| m["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        std::fs::write(dir.path().join("w.yaml"), "apiVersion: v1\nkind: [\n").unwrap();
        let e = prep(text, dir.path()).unwrap_err().to_string();
        assert!(e.contains("w.yaml:"), "{e}");
        let e = prep(
            "name: x\nworkloads:\n  - path: missing.yaml\nrun: {duration: 10s}\n",
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("s.yaml:3:") && e.contains("cannot read"), "{e}");
        let e = prep(
            "name: x\nworkloads:\n  - inline: {apiVersion: v1, kind: Pod}\nrun: {duration: 10s}\n",
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("s.yaml:3:") && e.contains("no metadata.name"),
            "{e}"
        );
    }
}
