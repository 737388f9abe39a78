//! `realtime-probe`: will measure first_token_ms, first_audio_ms and e2e_ms (exit 0/1/2).
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "realtime-probe",
    version,
    about = "Measure realtime latency (not implemented yet)"
)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    std::process::exit(probes::not_implemented(
        "realtime-probe",
        "issue 6: realtime-probe",
    ));
}
