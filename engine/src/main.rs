//! `tom`: the TOM realtime media engine.
//!
//! What is real today: the FreeSWITCH side. `tom serve` accepts the dialplan's
//! `socket … async full` connections, answers, streams the call's audio over a unicast
//! leg and sends it back (an echo, like FreeSWITCH's own echo test), then hangs up after
//! `--max-call-secs`. The conversation backends (local pipeline, cloud provider) and
//! the HTTP endpoints are not built yet; see the README.

use clap::{Parser, Subcommand};
use engine::serve;

#[derive(Parser, Debug)]
#[command(
    name = "tom",
    version,
    about = "TOM realtime media engine for FreeSWITCH"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Accept FreeSWITCH outbound ESL connections and serve calls.
    Serve(serve::ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args).await,
    }
}
