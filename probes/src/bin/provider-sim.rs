//! `provider-sim`: a thin CLI over [`probes::sim`].
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use probes::sim::{
    Faults, ProviderSim, ReplySource, SimConfig, DEFAULT_CALLER_TRANSCRIPT, DEFAULT_REPLY_TEXT,
};

#[derive(Parser)]
#[command(
    name = "provider-sim",
    version,
    about = "OpenAI-Realtime provider simulator with fault injection, for tests and failover drills",
    long_about = "OpenAI-Realtime provider simulator with fault injection, for tests and \
                  failover drills.\n\nIt speaks the Realtime WebSocket protocol (GA and beta \
                  event names) on loopback, but it does NOT transcribe or reason: the caller \
                  transcript is a fixed text, and every reply is the same audio (a tone or \
                  --reply-wav) with the same text (--reply-text), paced at real time after \
                  the first-audio delay. Faults can be changed at run time through the admin \
                  API: GET/PUT /faults (JSON with the fault flags' names in snake_case), \
                  GET/DELETE /received. See docs/provider-sim.md."
)]
struct Cli {
    /// Address of the Realtime WebSocket listener (clients connect to
    /// ws://ADDR/v1/realtime; any path is accepted).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// Address of the admin HTTP API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8766")]
    admin: SocketAddr,
    /// Key clients must present (`Authorization: Bearer KEY` or `api-key: KEY`); unset:
    /// any key, or none, is accepted. Never logged.
    #[arg(long, env = "PROVIDER_SIM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Text of every reply (sent as transcript deltas alongside the audio).
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_REPLY_TEXT)]
    reply_text: String,
    /// WAV file to reply with instead of the tone (resampled to the session's format).
    #[arg(long, value_name = "FILE")]
    reply_wav: Option<PathBuf>,
    /// Length of the default reply tone (440 Hz) in ms.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 2000,
        conflicts_with = "reply_wav"
    )]
    tone_ms: u64,
    /// Caller transcript sent after each commit when the session asked for input
    /// transcription (no real transcription happens); `{seconds}` becomes the length of
    /// the committed audio.
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_CALLER_TRANSCRIPT)]
    caller_transcript: String,
    /// Append every received client event to this JSONL file (time offset, connection,
    /// type, audio byte count instead of audio).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    #[command(
        flatten,
        next_help_heading = "Faults (also GET/PUT /faults on the admin API)"
    )]
    faults: Faults,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let reply = match cli.reply_wav {
        Some(path) => ReplySource::Wav(path),
        None => ReplySource::Tone { ms: cli.tone_ms },
    };
    let config = SimConfig {
        listen: cli.listen,
        admin: cli.admin,
        api_key: cli.api_key,
        faults: cli.faults,
        reply,
        reply_text: cli.reply_text,
        caller_transcript: cli.caller_transcript,
        log: cli.log,
    };
    let sim = ProviderSim::start(config)
        .await
        .context("provider-sim cannot start")?;
    eprintln!(
        "provider-sim: realtime {}  admin {}",
        sim.ws_url(),
        sim.admin_url()
    );
    stopped().await?;
    tracing::info!("stopping");
    sim.shutdown().await;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM (systemd, docker stop).
async fn stopped() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot watch Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}
