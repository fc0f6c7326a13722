//! The compare file's parsing and checks (with the real scenario and flag validation), the
//! overrides applied, and the ranking, verdict, table and page from given reports.

use scenario::sim::Mode;
use scenario::{Scenario, ScenarioError};
use serde_json::{Value, json};

use crate::spec::{CompareFile, Kind};
use crate::{Planned, VariantRuns, plan, summarise};

/// A small base scenario, written in place.
const BASE: &str = "\
name: small
topology: {zones: [a, b, c], nodesPerZone: 1}
flags: {--node-monitor-grace-period: 5s}
workloads:
  - inline: {apiVersion: v1, kind: Service, metadata: {name: web}, spec: {selector: {app: web}, ports: [{port: 80}]}}
clients:
  - {name: web, target: web, rate: 10, timeout: 1s}
faults:
  - {at: 10s, type: zone-power-off, target: a}
run: {duration: 40s}
";

/// What the tests' `prepare` returns: the scenario and its inline objects.
#[derive(Debug, Clone)]
struct Prepared {
    scenario: Scenario,
    manifests: Vec<Value>,
}

/// The checks of `zonelab run [--sim]` that need no files: the scenario and its flags (crate
/// `profile`; the roles' own flags aside).
fn prepare(text: &str, label: &str, mode: Mode) -> Result<Prepared, ScenarioError> {
    let scenario = Scenario::parse_for(text, label, mode)?;
    profile::from_scenario(&scenario, text, label, |_| false)?;
    let manifests = scenario
        .workloads
        .iter()
        .flat_map(|w| w.inline_objects().into_iter().cloned())
        .collect();
    Ok(Prepared {
        scenario,
        manifests,
    })
}

fn compare_text(variants: &str) -> String {
    let base: String = BASE.lines().map(|l| format!("  {l}\n")).collect();
    format!("base:\n{base}variants:\n{variants}")
}

fn build(variants: &str) -> Result<Vec<Planned<Prepared>>, ScenarioError> {
    build_for(variants, Mode::Live)
}

fn build_for(variants: &str, mode: Mode) -> Result<Vec<Planned<Prepared>>, ScenarioError> {
    let text = compare_text(variants);
    let file = CompareFile::parse(&text, "cmp.yaml")?;
    let crate::Base::Inline(base) = &file.base else {
        panic!("inline base");
    };
    let base_text = serde_yaml::to_string(base).expect("yaml");
    let mut prepare = |t: &str, l: &str| prepare(t, l, mode);
    plan(&file, &base_text, "cmp.yaml (base)", &mut prepare, |p| {
        &mut p.manifests
    })
}

/// The error's `line:column` and text.
fn error_of(variants: &str) -> (usize, usize, String) {
    error_in(variants, Mode::Live)
}

fn error_in(variants: &str, mode: Mode) -> (usize, usize, String) {
    let e = build_for(variants, mode).expect_err("rejected");
    let (line, column) = e.location().expect("a position");
    (line, column, e.to_string())
}

/// The 1-based line of the first line of the compare text containing `needle`.
fn line_of(variants: &str, needle: &str) -> usize {
    compare_text(variants)
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

#[test]
fn an_unknown_flag_is_rejected_at_its_line() {
    let v = "  - name: grace\n    flags:\n      node-monitor-grace-period: 2s\n      node-monitr-period: 1s\n";
    let (line, column, msg) = error_of(v);
    assert_eq!(line, line_of(v, "node-monitr-period"), "{msg}");
    assert_eq!(column, 27, "at the value, as the scenario's errors: {msg}");
    assert!(msg.starts_with("cmp.yaml:"), "{msg}");
    assert!(
        msg.contains("variants[0].flags.node-monitr-period"),
        "{msg}"
    );
    assert!(msg.contains("unknown flag --node-monitr-period"), "{msg}");
}

#[test]
fn a_flag_the_simulator_does_not_model_is_rejected_at_its_line() {
    let v = "  - name: a\n    flags: {leader-elect-retry-period: 1s}\n";
    let (line, _, msg) = error_in(v, Mode::Sim);
    assert_eq!(line, line_of(v, "leader-elect-retry-period"), "{msg}");
    assert!(msg.contains("not modelled by the simulator"), "{msg}");
}

#[test]
fn a_flag_value_the_component_refuses_is_rejected_at_its_line() {
    let v = "  - name: a\n    flags: {node-monitor-grace-period: soon}\n";
    let (line, _, msg) = error_of(v);
    assert_eq!(line, line_of(v, "soon"), "{msg}");
}

#[test]
fn an_unknown_field_is_rejected_at_its_line_with_the_fields_expected() {
    let v = "  - name: retries\n    set:\n      clients[0].retries: 2\n      clients[0].timout: 200ms\n";
    let (line, column, msg) = error_of(v);
    assert_eq!(line, line_of(v, "timout"), "{msg}");
    assert_eq!(column, 26, "{msg}");
    assert!(msg.contains("unknown field `timout`"), "{msg}");
    assert!(msg.contains("`timeout`"), "{msg}");
}

#[test]
fn a_field_path_past_the_base_is_rejected() {
    let v = "  - name: a\n    set:\n      clients[3].timeout: 1s\n";
    let (line, _, msg) = error_of(v);
    assert_eq!(line, line_of(v, "clients[3]"), "{msg}");
    assert!(msg.contains("the base has 1 item(s)"), "{msg}");
}

#[test]
fn an_unknown_client_option_and_a_bad_value_are_rejected_at_their_lines() {
    let v = "  - name: a\n    clients: {connectTimeout: 200ms}\n";
    let (line, _, msg) = error_of(v);
    assert_eq!(line, line_of(v, "connectTimeout"), "{msg}");
    assert!(msg.contains("unknown field `connectTimeout`"), "{msg}");
    let v = "  - name: a\n    clients:\n      timeout: 200ms\n      retries: many\n";
    let (line, _, msg) = error_of(v);
    assert_eq!(line, line_of(v, "many"), "{msg}");
}

#[test]
fn a_semantic_error_of_the_result_is_reported_at_the_override() {
    // The added fault is after the end of the run: the scenario's own check, at the `add`.
    let v = "  - name: late\n    add:\n      faults: [{at: 50s, type: recover, target: a}]\n";
    let (line, _, msg) = error_of(v);
    assert_eq!(line, line_of(v, "faults: [{at: 50s"), "{msg}");
    assert!(msg.contains("is not within the run"), "{msg}");
}

#[test]
fn an_unknown_key_in_a_variant_and_a_bad_include_are_rejected() {
    let v = "  - name: a\n    flag: {x: 1}\n";
    let (line, _, msg) = error_of(v);
    assert_eq!(line, line_of(v, "flag: {x"), "{msg}");
    assert!(msg.contains("unknown field `flag`"), "{msg}");
    let v = "  - name: a\n    include: [b]\n  - name: b\n    include: [a]\n";
    let (_, _, msg) = error_of(v);
    assert!(msg.contains("includes itself"), "{msg}");
    let v = "  - name: a\n    include: [nope]\n";
    let (line, _, msg) = error_of(v);
    assert_eq!(line, line_of(v, "[nope]"), "{msg}");
    let v = "  - name: baseline\n";
    let (_, _, msg) = error_of(v);
    assert!(msg.contains("the base scenario's own name"), "{msg}");
}

#[test]
fn a_workload_patch_is_applied_and_an_unknown_field_is_a_strict_decoding_error() {
    let v = "  - name: close\n    workloads:\n      - kind: Service\n        name: web\n        patch: {spec: {trafficDistribution: PreferClose}}\n";
    let planned = build(v).expect("valid");
    let svc = &planned[1].prepared.manifests[0];
    assert_eq!(svc["spec"]["trafficDistribution"], "PreferClose");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80, "the patch merges");
    assert!(planned[0].prepared.manifests[0]["spec"]["trafficDistribution"].is_null());

    let bad = v.replace("trafficDistribution", "trafficDistributon");
    let (line, _, msg) = error_of(&bad);
    assert_eq!(line, line_of(&bad, "trafficDistributon"), "{msg}");
    assert!(
        msg.contains("strict decoding error: unknown field \"spec.trafficDistributon\""),
        "{msg}"
    );
    let missing = v.replace("name: web", "name: shop");
    let (line, _, msg) = error_of(&missing);
    assert_eq!(line, line_of(&missing, "name: shop"), "{msg}");
    assert!(msg.contains("no Service default/shop"), "{msg}");
}

#[test]
fn overrides_build_the_variant_and_includes_come_first() {
    let v = "  - name: grace
    flags: {node-monitor-grace-period: 2s, node-lease-duration-seconds: 8}
  - name: retries
    clients: {timeout: 200ms, retries: 2}
  - name: both
    include: [grace, retries]
    set:
      clients[*].keepalive: true
";
    let planned = build(v).expect("valid");
    let names: Vec<&str> = planned.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["baseline", "grace", "retries", "both"]);
    assert!(planned[0].baseline && !planned[3].baseline);
    let base = &planned[0].prepared.scenario;
    assert_eq!(base.flags["--node-monitor-grace-period"], "5s");
    let both = &planned[3].prepared.scenario;
    // The override replaces the base's `--`-spelled flag instead of adding a second one.
    assert_eq!(both.flags.len(), 2, "{:?}", both.flags);
    assert_eq!(both.flags["node-monitor-grace-period"], "2s");
    assert_eq!(both.clients[0].timeout.as_millis(), 200);
    assert_eq!(both.clients[0].retries, 2);
    assert!(both.clients[0].keepalive);
    let kinds: Vec<&str> = planned[3]
        .overrides
        .iter()
        .map(|o| o.kind.as_str())
        .collect();
    assert_eq!(kinds, ["flag", "flag", "client", "client", "field"]);
    assert_eq!(planned[3].overrides[0].from, "grace");
    assert!(matches!(planned[3].overrides[4].kind, Kind::Field));
    // The grace variant changed nothing else.
    assert!(!planned[1].prepared.scenario.clients[0].keepalive);
}

/// A report with the given figures (an empty run's analysis, then set).
fn report(seed: u64, window: f64, failed: u64, detect: f64) -> lab::Report {
    let meta = lab::fixtures::meta("small", 0.0, 60.0);
    let mut r = lab::analyze(&meta, &[], &[]);
    r.seed = seed;
    r.error_window_s = window;
    r.error_window = Some(lab::report::Window {
        start_s: 10.5,
        end_s: 10.5 + window,
    });
    r.requests.total = 1000;
    r.requests.failed = failed;
    r.availability = 100.0 * (1000 - failed) as f64 / 1000.0;
    r.phases.fault_s = Some(10.0);
    r.phases.nodes_not_ready_s = Some(10.0 + detect);
    r.phases.endpoints_removed_s = Some(10.5 + detect);
    r.phases.proxies_converged_s = Some(11.0 + detect);
    r
}

fn given() -> (Vec<Planned<Prepared>>, Vec<Vec<lab::Report>>) {
    let v = "  - name: grace
    flags: {node-monitor-grace-period: 2s}
  - name: retries
    clients: {timeout: 200ms, retries: 2}
";
    let planned = build(v).expect("valid");
    let reports = vec![
        vec![report(1, 45.0, 300, 44.0), report(2, 50.0, 320, 49.0)],
        vec![report(1, 6.0, 40, 4.0), report(2, 8.0, 60, 6.0)],
        vec![report(1, 2.0, 3, 44.0), report(2, 2.5, 5, 49.0)],
    ];
    (planned, reports)
}

fn comparison() -> crate::Comparison {
    let (planned, reports) = given();
    let runs: Vec<VariantRuns<'_>> = planned
        .iter()
        .zip(&reports)
        .map(|(p, r)| VariantRuns::of(p, r))
        .collect();
    summarise("small", "sim", &[1, 2], &runs)
}

#[test]
fn variants_are_ranked_by_error_window_and_the_verdict_names_the_best_and_its_cost() {
    let c = comparison();
    assert_eq!(c.ranking, ["retries", "grace", "baseline"]);
    let retries = &c.variants[2];
    assert_eq!(retries.error_window_s, 2.25);
    assert_eq!(retries.error_window_p50_s, 2.0);
    assert_eq!(retries.error_window_p95_s, 2.5);
    assert_eq!(retries.failed, 4.0);
    assert_eq!(retries.seeds, [1, 2]);
    assert_eq!(c.variants[1].detection_s, Some(5.0));
    assert!(c.variants[0].baseline);
    assert!(
        c.verdict
            .starts_with("retries helps most: an error window of 2.2 s")
            || c.verdict
                .starts_with("retries helps most: an error window of 2.3 s"),
        "{}",
        c.verdict
    );
    assert!(
        c.verdict.contains("against 47.5 s for the baseline"),
        "{}",
        c.verdict
    );
    assert!(
        c.verdict.contains("78x fewer failed requests"),
        "{}",
        c.verdict
    );
    // The cost comes from the cost table (data), per override kind.
    assert!(c.verdict.contains("retry amplification"), "{}", c.verdict);
    assert!(c.variants[1].cost.contains("false-positive detection risk"));
    let table = crate::table(&c);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[1].contains("retries") && lines[3].contains("baseline"),
        "{table}"
    );
    assert_eq!(*lines.last().expect("lines"), c.verdict);
}

#[test]
fn no_variant_better_than_the_baseline_says_so() {
    let mut c = comparison();
    for v in &mut c.variants {
        if !v.baseline {
            v.error_window_s = 60.0;
        }
    }
    let order = crate::results::rank(&c.variants);
    assert_eq!(c.variants[order[0]].name, "baseline");
    let s = crate::results::verdict(&c.variants, &order);
    assert_eq!(
        s,
        "No variant shortens the baseline's error window of 47.5 s."
    );
}

#[test]
fn the_page_has_a_bar_per_variant_and_a_strip_per_variant() {
    let c = comparison();
    let page = crate::html::render(&c);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("<script"));
    // One mean bar per variant plus one dot per seed.
    assert_eq!(page.matches("<circle").count(), 6);
    assert_eq!(page.matches("<title>error window:").count(), 3);
    assert!(
        page.contains("<title>detection: 0.0 to 4.0 s</title>"),
        "a strip for grace's median seed"
    );
    assert!(page.contains("grace (seed 1)"));
    let round: crate::Comparison =
        serde_json::from_value(serde_json::to_value(&c).expect("json")).expect("back");
    assert_eq!(round, c);
    let j = serde_json::to_value(&c).expect("json");
    for k in [
        "name",
        "baseline",
        "overrides",
        "seeds",
        "error_window_s",
        "error_window_p50_s",
        "error_window_p95_s",
        "availability",
        "failed",
        "detection_s",
        "capacity_restored_s",
        "stale_conntrack",
    ] {
        assert!(j["variants"][1].get(k).is_some(), "{k}");
    }
    assert_eq!(
        j["variants"][2]["overrides"][0],
        json!({"kind": "client", "target": "timeout", "value": "200ms"})
    );
}

#[test]
fn add_creates_a_missing_list_and_costs_come_from_the_table_per_override_kind() {
    let v = "  - name: shift
    add:
      zonalShifts: [{at: +10s, awayFrom: a, expiresIn: 30m}]
      faults: [{at: 20s, type: recover, target: a}]
    set:
      zonalAutoshift: {threshold: 5}
";
    let file = CompareFile::parse(&compare_text(v), "cmp.yaml").expect("parses");
    let crate::Base::Inline(base) = &file.base else {
        panic!("inline base");
    };
    let o = &file.variants[0].overrides;
    let doc = crate::apply::apply_scenario(base, o).expect("applies");
    assert_eq!(doc["zonalShifts"][0]["awayFrom"].as_str(), Some("a"));
    let faults = doc["faults"].as_sequence().expect("faults");
    assert_eq!(faults.len(), 2, "appended to the base's fault");
    assert_eq!(doc["zonalAutoshift"]["threshold"].as_u64(), Some(5));
    let cost = crate::results::cost_of(o);
    // In application order: `set` before `add`.
    assert!(
        cost.starts_with("a shift on an error-rate signal"),
        "{cost}"
    );
    assert!(
        cost.contains("; someone (or an alarm) has to start"),
        "{cost}"
    );
    // `add` on something that is not a list says so, at the override.
    let v = "  - name: a\n    add:\n      run: [1]\n";
    let file = CompareFile::parse(&compare_text(v), "cmp.yaml").expect("parses");
    let crate::Base::Inline(base) = &file.base else {
        panic!("inline base");
    };
    let p =
        crate::apply::apply_scenario(base, &file.variants[0].overrides).expect_err("not a list");
    assert_eq!(scenario::locate::render(&p.path), "variants[0].add.run");
    assert!(p.message.contains("run is not a list"), "{}", p.message);
}
