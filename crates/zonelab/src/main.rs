//! The `zonelab` binary: one executable with roles, like k3s. `zonelab server` runs the API
//! server with the controllers and the scheduler in-process.
//!
//! Start at [`main`]; each role lives in its own module ([`server`]).

use clap::{Parser, Subcommand};

mod agent;
mod conntrack;
mod echo;
mod flags;
mod lab;
mod load;
mod netns;
mod proxy_driver;
mod server;

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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZONELAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
        Command::Echo(args) => rt.block_on(echo::run(args)),
        Command::Agent(args) => rt.block_on(agent::run(args)),
        Command::Lab(args) => {
            let code = rt.block_on(lab::run(args))?;
            std::process::exit(code);
        }
        Command::Load(args) => {
            let (total, ok) = rt.block_on(load::run(args))?;
            eprintln!("{total} requests, {ok} ok, {} failed", total - ok);
            Ok(())
        }
    }
}
