//! The `zonelab` binary: one executable with roles, like k3s. `zonelab server` runs the API
//! server with the controllers and the scheduler in-process.
//!
//! Start at [`main`]; each role lives in its own module ([`server`]).

use clap::{Parser, Subcommand};

mod flags;
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(args) => rt.block_on(server::run(args)),
    }
}
