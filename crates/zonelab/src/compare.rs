//! `zonelab compare FILE --out DIR [--sim|--live] [--seeds N]`: runs a base scenario and its
//! variants (the simulator by default, the live lab with `--live`), several seeds each, and
//! writes `DIR/compare.json`, `DIR/compare.html`, every run's report in `DIR/NAME/seed-K/`,
//! and prints the variants ranked by error window. Every variant is built and checked before
//! the first run. The pure parts are crate `compare`; this module is the I/O.
//!
//! Start at [`run`]; the file's syntax is in docs/compare.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use compare::{Base, CompareFile, Planned, VariantRuns};
use scenario::ScenarioError;
use scenario::sim::Mode;

use crate::run::{Prepared, RunArgs, prepare_text, write_outputs};

#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// The compare file: a base scenario and named variants (docs/compare.md).
    pub file: PathBuf,
    /// Directory for compare.json, compare.html and each run's report (NAME/seed-K/).
    #[arg(long, default_value = "zonelab-compare")]
    pub out: PathBuf,
    /// Run every variant in the simulator (the default).
    #[arg(long, conflicts_with = "live")]
    pub sim: bool,
    /// Run every variant in the live lab (root; one run at a time).
    #[arg(long)]
    pub live: bool,
    /// Seeds per variant, 1..=N [default: 5 in the simulator, 1 live].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub seeds: Option<u64>,
    /// Name prefix of the live labs the runs build.
    #[arg(long, default_value = "zc")]
    pub prefix: String,
    /// Where the live labs keep their state and logs.
    #[arg(long, default_value = netlab::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Loopback port of the live lab's API server.
    #[arg(long, default_value_t = 16444)]
    pub api_port: u16,
}

/// Reads, builds and checks every variant, runs them and writes the comparison.
pub fn run(args: CompareArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<i32> {
    let mode = if args.live { Mode::Live } else { Mode::Sim };
    let planned = load(&args.file, mode)?;
    let n = args.seeds.unwrap_or(if args.live { 1 } else { 5 });
    let seeds: Vec<u64> = (1..=n).collect();
    if args.live && !nix::unistd::geteuid().is_root() {
        bail!("the live lab builds network namespaces: run `zonelab compare --live` as root");
    }
    let total = planned.len() * seeds.len();
    eprintln!(
        "comparing {} variants of {:?} in the {}, {} seed(s) each: {total} runs",
        planned.len(),
        planned[0].prepared.scenario.name,
        if args.live { "live lab" } else { "simulator" },
        seeds.len(),
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut reports = Vec::new();
    let mut done = 0;
    for v in &planned {
        let dir = args.out.join(&v.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("scenario.yaml"), &v.scenario_text)?;
        let mut runs = Vec::new();
        for &seed in &seeds {
            done += 1;
            let out = dir.join(format!("seed-{seed}"));
            let started = Instant::now();
            let report = if args.live {
                live_run(&args, v, &dir, &out, seed, rt)?
            } else {
                sim_run(&v.prepared, &out, seed)
                    .with_context(|| format!("variant {} seed {seed}", v.name))?
            };
            eprintln!(
                "[{done}/{total}] {} seed {seed}: error window {:.1} s, {} of {} failed ({:.1} s)",
                v.name,
                report.error_window_s,
                report.requests.failed,
                report.requests.total,
                started.elapsed().as_secs_f64()
            );
            runs.push(report);
        }
        reports.push(runs);
    }
    let runs: Vec<VariantRuns<'_>> = planned
        .iter()
        .zip(&reports)
        .map(|(p, r)| VariantRuns::of(p, r))
        .collect();
    let mode_name = if args.live { "live" } else { "sim" };
    let c = compare::summarise(&planned[0].prepared.scenario.name, mode_name, &seeds, &runs);
    let mut json = serde_json::to_vec_pretty(&c)?;
    json.push(b'\n');
    std::fs::write(args.out.join("compare.json"), json)?;
    std::fs::write(args.out.join("compare.html"), compare::html::render(&c))?;
    print!("{}", compare::table(&c));
    println!("compare: {}", args.out.join("compare.html").display());
    Ok(0)
}

/// The compare file and every variant built and checked (nothing runs yet).
fn load(file: &Path, mode: Mode) -> anyhow::Result<Vec<Planned<Prepared>>> {
    let text = scenario::read_text(file)?;
    let spec = CompareFile::parse(&text, &file.display().to_string())?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let (base_text, base_path, base_dir) = match &spec.base {
        Base::Path(p) => {
            let path = dir.join(p);
            let text = scenario::read_text(&path)?;
            let base_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (text, path, base_dir)
        }
        Base::Inline(v) => (
            serde_yaml::to_string(v)?,
            PathBuf::from(format!("{} (base)", file.display())),
            dir.to_path_buf(),
        ),
    };
    let mut prepare = |text: &str, label: &str| check(text, Path::new(label), &base_dir, mode);
    Ok(compare::plan(
        &spec,
        &base_text,
        &base_path.display().to_string(),
        &mut prepare,
        |p| &mut p.manifests,
    )?)
}

/// `zonelab run`'s checks of a scenario text; a flag the simulator refuses is reported as the
/// live checks see it when they refuse it too (a typo: "unknown flag", not "not modelled").
fn check(text: &str, label: &Path, base_dir: &Path, mode: Mode) -> Result<Prepared, ScenarioError> {
    let r = prepare_text(text, label, base_dir, mode);
    if mode == Mode::Sim
        && let Err(ScenarioError::Invalid { field, .. }) = &r
        && field.starts_with("flags.")
        && let Err(live @ ScenarioError::Invalid { .. }) =
            prepare_text(text, label, base_dir, Mode::Live)
        && matches!(&live, ScenarioError::Invalid { field: f, .. } if f == field)
    {
        return Err(live);
    }
    r
}

/// One simulated run, its files written to `out`.
fn sim_run(p: &Prepared, out: &Path, seed: u64) -> anyhow::Result<lab::Report> {
    std::fs::create_dir_all(out)?;
    // The components' own log lines would carry wall-clock stamps of a virtual run: silenced.
    let o =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            sim::run(&p.scenario, &p.manifests, seed)
        })?;
    write_outputs(out, &o.report, &o.events, &o.requests)?;
    Ok(o.report)
}

/// One live run (as `zonelab run`), its report read back from `out`.
fn live_run(
    args: &CompareArgs,
    v: &Planned<Prepared>,
    dir: &Path,
    out: &Path,
    seed: u64,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<lab::Report> {
    let run_args = RunArgs {
        scenario: dir.join("scenario.yaml"),
        out: out.to_path_buf(),
        sim: false,
        seed,
        prefix: args.prefix.clone(),
        state_dir: args.state_dir.clone(),
        api_port: args.api_port,
        keep: false,
        check_slo: false,
    };
    rt.block_on(crate::run::execute(&run_args, &v.prepared))
        .with_context(|| format!("variant {} seed {seed} (live)", v.name))?;
    let bytes = std::fs::read(out.join("report.json"))
        .with_context(|| format!("reading {}", out.join("report.json").display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}
