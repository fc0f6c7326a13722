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
    let cpu_start = thread_cpu_s();
    let mut at_load_start = None;
    // The components' own log lines would carry wall-clock stamps of a virtual run: silenced.
    let out =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            sim::run_observed(s, &p.manifests, args.seed, &mut |_| {
                at_load_start = Some((started.elapsed().as_secs_f64(), thread_cpu_s()));
            })
        })
        .context("simulating the scenario")?;
    let (wall, cpu) = (started.elapsed().as_secs_f64(), thread_cpu_s());
    eprintln!(
        "simulated {:.0} s in {:.2} s of wall time ({} events, {} API writes, {} proxy syncs)",
        out.report.duration_s, wall, out.stats.events, out.stats.api_writes, out.stats.proxy_syncs
    );
    if let Some((wall0, cpu0)) = at_load_start {
        let phases = [
            (
                "start-up",
                &sim::Stats::default(),
                &out.stats_at_load_start,
                wall0,
                cpu0 - cpu_start,
            ),
            (
                "load",
                &out.stats_at_load_start,
                &out.stats,
                wall - wall0,
                cpu - cpu0,
            ),
        ];
        for (phase, from, to, wall, cpu) in phases {
            let kinds: Vec<String> = to
                .kinds_since(from)
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            eprintln!(
                "  {phase}: {:.2} s wall, {:.2} s CPU, {} events ({})",
                wall,
                cpu,
                to.events - from.events,
                kinds.join(", ")
            );
        }
    }
    write_outputs(&args.out, &out.report, &out.events, &out.requests)?;
    print!("{}", lab::summary::render(&out.report));
    println!("report: {}", args.out.join("report.html").display());
    Ok(if args.check_slo && !out.report.slo.met {
        SLO_MISSED
    } else {
        0
    })
}

/// CPU time of the calling thread so far, in seconds (`/proc/thread-self/schedstat`; 0 where
/// it cannot be read): the simulator runs on this thread.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}
