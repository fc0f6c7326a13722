//! The `zonelab` binary: one executable with roles, like k3s. `zonelab server` runs the API
//! server with the controllers and the scheduler in-process, `zonelab agent` one node, `zonelab
//! lab` builds and breaks labs, `zonelab run`/`demo`/`report` run scenarios and report on them.
//!
//! Start at [`main`]; each role lives in its own module ([`server`], [`agent`], [`lab`],
//! [`run`], [`load`], [`echo`], [`balancer`]).

use clap::{Parser, Subcommand};

mod agent;
mod authn_flags;
mod authz_args;
mod balancer;
mod capacity;
mod client;
mod clock;
mod compare;
mod echo;
mod election;
mod flags;
mod kubeconfig;
mod lab;
mod load;
mod netns;
mod pki;
mod ports;
mod preflight;
mod run;
mod server;
mod serving;
mod storage;
mod supervise;
mod zonal_shift;

#[derive(Parser)]
#[command(
    name = "zonelab",
    version,
    about = "Kubernetes ClusterIP networking and an AZ-failure lab"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the variants' sizes don't matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the API server, controllers and scheduler (kubectl --server http://HOST:PORT).
    Server(server::ServerArgs),
    /// Run one node: kubelet and kube-proxy (inside the node's network namespace).
    Agent(agent::AgentArgs),
    /// The built-in `zonelab/echo` image: HTTP server answering who served the request.
    Echo(echo::EchoArgs),
    /// Send requests at a fixed rate and record each one as a JSON line.
    Load(load::LoadArgs),
    /// Build, inspect, break and remove a lab of zones and nodes in network namespaces.
    Lab(lab::LabArgs),
    /// Run a scenario file: build its lab, send its traffic, inject its faults, write a report.
    Run(run::RunArgs),
    /// The bundled AZ-outage scenario: 3 zones x 2 nodes, zone a loses power at t=30s.
    Demo(run::DemoArgs),
    /// Analyse a run's records again and rewrite its report.json and report.html.
    Report(run::ReportArgs),
    /// Run a base scenario and its variants (several seeds each) and rank them by error window.
    Compare(compare::CompareArgs),
    /// Run an NLB-style L4 load balancer in a network namespace (nftables DNAT, health checks).
    Balancer(balancer::BalancerArgs),
    /// Run the cluster autoscaler against an API server and the lab's node-group cloud API.
    Autoscaler(capacity::AutoscalerArgs),
}

fn main() {
    let cli = Cli::parse();
    let name = cli.command.name();
    if let Err(e) = run(cli) {
        // The chain of causes on one line, like kubectl's `error: ...`; no backtrace.
        eprintln!("zonelab {name}: error: {e:#}");
        std::process::exit(1);
    }
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Server(_) => "server",
            Command::Agent(_) => "agent",
            Command::Echo(_) => "echo",
            Command::Load(_) => "load",
            Command::Lab(_) => "lab",
            Command::Run(_) => "run",
            Command::Demo(_) => "demo",
            Command::Report(_) => "report",
            Command::Compare(_) => "compare",
            Command::Balancer(_) => "balancer",
            Command::Autoscaler(_) => "autoscaler",
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The user-facing commands print their own progress; their library logs are for debugging.
    let default_level = match cli.command {
        // A failed API request during a control-plane failover is expected and recorded (the
        // write probe); the client library's per-request errors would bury the progress line.
        Command::Run(_) | Command::Demo(_) | Command::Compare(_) => {
            "warn,kube_client=off,live::relist=error"
        }
        Command::Lab(_) | Command::Load(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZONELAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Command::Agent(a) = &cli.command
        && let Some(ns) = &a.netns
    {
        // Before the runtime starts any thread: every thread inherits the namespace.
        netns::enter(ns)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(args) => rt.block_on(server::run(args)),
        Command::Autoscaler(args) => rt.block_on(capacity::run_role(args)),
        Command::Echo(args) => rt.block_on(echo::run(args)),
        Command::Agent(args) => rt.block_on(agent::run(args)),
        Command::Lab(args) => {
            let code = rt.block_on(lab::run(args))?;
            std::process::exit(code);
        }
        Command::Run(args) => {
            let code = rt.block_on(run::run(args))?;
            std::process::exit(code);
        }
        Command::Compare(args) => {
            let code = compare::run(args, &rt)?;
            std::process::exit(code);
        }
        Command::Demo(args) => {
            let code = rt.block_on(run::demo(args))?;
            std::process::exit(code);
        }
        // Its own threads: the health checker enters the namespace on a dedicated one.
        Command::Balancer(args) => balancer::run(args),
        Command::Report(args) => {
            run::report(args)?;
            Ok(())
        }
        Command::Load(args) => {
            let (total, ok) = rt.block_on(load::run(args))?;
            eprintln!("{total} requests, {ok} ok, {} failed", total - ok);
            Ok(())
        }
    }
}
