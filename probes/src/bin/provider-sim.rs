//! `provider-sim`: will serve the OpenAI Realtime protocol with fault injection.
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "provider-sim",
    version,
    about = "OpenAI-Realtime provider simulator (not implemented yet)"
)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    std::process::exit(probes::not_implemented(
        "provider-sim",
        "issue 4: provider backend",
    ));
}
