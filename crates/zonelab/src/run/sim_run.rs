//! `zonelab run SCENARIO --sim`: the scenario in the simulator (the `sim` crate), on the
//! calling thread, writing the same files as a live run. Start at [`run`].

use anyhow::Context;

use super::{Prepared, RunArgs, SLO_MISSED, write_outputs};

/// Simulates the prepared scenario with `--seed` and writes `report.json`, `report.html`,
/// `requests.jsonl` and `timeline.jsonl` to `--out`.
pub fn run(args: &RunArgs, p: &Prepared) -> anyhow::Result<i32> {
    let s = &p.scenario;
    eprintln!(
        "scenario {:?} from {} in the simulator (seed {})",
        s.name,
        p.file.display(),
        args.seed
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started = std::time::Instant::now();
    // The components' own log lines would carry wall-clock stamps of a virtual run: silenced.
    let out =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            sim::run(s, &p.manifests, args.seed)
        })
        .context("simulating the scenario")?;
    eprintln!(
        "simulated {:.0} s in {:.2} s of wall time ({} events, {} API writes, {} proxy syncs)",
        out.report.duration_s,
        started.elapsed().as_secs_f64(),
        out.stats.events,
        out.stats.api_writes,
        out.stats.proxy_syncs
    );
    write_outputs(&args.out, &out.report, &out.events, &out.requests)?;
    print!("{}", lab::summary::render(&out.report));
    println!("report: {}", args.out.join("report.html").display());
    Ok(if args.check_slo && !out.report.slo.met {
        SLO_MISSED
    } else {
        0
    })
}
