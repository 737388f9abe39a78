//! `tom-llm`: the CLI. Listens, loads the model on a worker thread, and prints one line
//! `tom-llm ready on http://ADDR` to stdout once the model is loaded: the supervisor
//! and the tests read it to learn the port (`--listen …:0`) and that requests will be
//! served, without polling. Logs are JSON on stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use llm_server::generate::{ModelOptions, Status, Worker};
use llm_server::paths;
use llm_server::server::{router, AppState, ServerConfig};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// OpenAI-compatible chat completions for TOM's local LLM (llama.cpp).
#[derive(Debug, Parser)]
#[command(name = "tom-llm", version)]
struct Cli {
    /// The GGUF model [default: $TOM_MODELS, else $TOM_CACHE/models, else
    /// ~/.cache/tom/models, then /smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
    #[arg(long, env = "TOM_LLM_MODEL")]
    model: Option<PathBuf>,
    /// The model id clients use and `/v1/models` lists.
    #[arg(long, default_value = paths::MODEL_ID)]
    model_id: String,
    /// Address to listen on (port 0 picks a free one; see the stdout line).
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: SocketAddr,
    /// CPU threads for inference.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Context length in tokens (prompt plus reply).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(128..))]
    ctx_size: u32,
    /// Reply token limit when a request sets none.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_tokens: u32,
    /// Upper bound on any request's reply token limit.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=8192))]
    max_tokens_cap: u32,
    /// Requests admitted at once (one generates, the others wait); more get 503.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    queue: u16,
    /// Sampling temperature when a request sets none.
    #[arg(long, default_value_t = 0.2)]
    temperature: f32,
    /// Nucleus sampling mass when a request sets none.
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    body_limit: usize,
    /// Exit when stdin reaches end of file: the supervisor holds the other end of a pipe,
    /// so the server never outlives an engine that died without killing it.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // llama.cpp logs every metadata key at info; only its warnings matter here.
                .unwrap_or_else(|_| "info,llama-cpp-2=warn,llama_cpp_2=error".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tom-llm: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "tom-llm stopped");
            eprintln!("tom-llm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let model = cli.model.clone().unwrap_or_else(paths::default_model);
    paths::check_model(&model)?;
    let (worker, mut status) = Worker::spawn(ModelOptions {
        path: model,
        threads: cli.threads,
        ctx_size: cli.ctx_size,
        batch: 512,
    })
    .context("cannot start the model thread")?;
    let config = ServerConfig {
        model_id: cli.model_id,
        default_max_tokens: cli.max_tokens.min(cli.max_tokens_cap),
        max_tokens_cap: cli.max_tokens_cap,
        queue: usize::from(cli.queue),
        default_temperature: cli.temperature,
        default_top_p: cli.top_p,
        body_limit: cli.body_limit,
    };
    // Bind before loading finishes, so the port is ours and /health can say "loading".
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let addr = listener.local_addr().context("the bound address")?;
    tracing::info!(%addr, "listening");

    let app = router(Arc::new(AppState::new(worker, status.clone(), config)));
    let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown(cli.exit_on_stdin_eof));
    let ready = async move {
        wait_ready(&mut status).await?;
        announce(addr).context("cannot write the ready line to stdout")?;
        tracing::info!(%addr, "ready");
        // The worker only ends by panicking (its job channel lives as long as the
        // server): exit non-zero so the supervisor starts a fresh process, rather than
        // answering every request with an error.
        while status.changed().await.is_ok() {}
        anyhow::bail!("the model worker stopped unexpectedly")
    };
    tokio::select! {
        served = serve => served.context("the HTTP server failed"),
        failed = ready => failed,
    }
}

fn announce(addr: SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "tom-llm ready on http://{addr}")?;
    out.flush()
}

/// Resolves once the model is loaded, or with the reason it could not be.
async fn wait_ready(status: &mut watch::Receiver<Status>) -> anyhow::Result<()> {
    loop {
        match &*status.borrow_and_update() {
            Status::Ready => return Ok(()),
            Status::Failed(reason) => anyhow::bail!("the model could not be loaded: {reason}"),
            Status::Loading => {}
        }
        if status.changed().await.is_err() {
            anyhow::bail!("the model thread ended before the model was loaded");
        }
    }
}

async fn shutdown(watch_stdin: bool) {
    let stdin_closed = async {
        if !watch_stdin {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        tracing::info!("stdin closed: the supervisor is gone");
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = terminate => tracing::info!("terminated"),
        _ = stdin_closed => {}
    }
}
