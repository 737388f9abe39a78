//! `tom serve`: loads the local pipeline, listens for FreeSWITCH's outbound ESL
//! connections and serves each call in its own task; HTTP for metrics and health. On
//! SIGTERM or Ctrl-C it drains: `/ready` fails, new calls are refused politely, live
//! calls get `drain_secs` to finish.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use esl_bridge::outbound::{OutboundConfig, OutboundServer};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::backend::local::llm_process::{LlmProcess, LlmProcessConfig};
use crate::call::{serve_call, Services};
use crate::config::{BrainChoice, Config};

/// Settings of `tom serve` (the rest comes from the config file and the environment).
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML settings file (environment variables override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// A running engine: its addresses, and a way to stop it (tests, embedding).
#[derive(Debug)]
pub struct Running {
    /// The ESL listener's address.
    pub esl_addr: std::net::SocketAddr,
    /// The HTTP listener's address.
    pub http_addr: std::net::SocketAddr,
    /// The shared services (metrics, config).
    pub services: Arc<Services>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Drains and stops; returns when every call has ended (or the drain time passed).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("engine task")?
    }
}

/// Loads everything and starts listening; returns once both listeners are bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let models = crate::models::models_dir();
    // The small local LLM runs in its own supervised process (ADR 0006).
    let llm = match config.local.brain {
        BrainChoice::Smollm2 => {
            let process = LlmProcess::start(LlmProcessConfig::smollm2()?)
                .await
                .context("starting tom-llm")?;
            info!(url = process.base_url(), "local LLM (SmolLM2) ready");
            Some(process)
        }
        _ => None,
    };
    let llm_config = llm.as_ref().map(LlmProcess::llm_config);
    let auth = Authenticator::from_config(&config.auth).await?;
    let mut services =
        tokio::task::spawn_blocking(move || Services::load(config, &models, llm_config))
            .await
            .context("loading task")??;
    services.auth = auth;
    let services = Arc::new(services);
    let server = &services.config.server;
    let esl = OutboundServer::bind(OutboundConfig {
        listen: server.esl_listen,
        allow: server.esl_allow.clone(),
        ..OutboundConfig::default()
    })
    .await
    .with_context(|| format!("cannot listen for FreeSWITCH on {}", server.esl_listen))?;
    services.metrics.watch_esl(esl.counters());
    let http = crate::http::bind(server.http_addr)
        .await
        .with_context(|| format!("cannot serve HTTP on {}", server.http_addr))?;
    let esl_addr = esl.local_addr()?;
    let http_addr = http.local_addr()?;
    info!(esl = %esl_addr, http = %http_addr, "waiting for FreeSWITCH outbound connections");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let services_for_task = services.clone();
    let task = tokio::spawn(async move {
        let outcome = run(esl, http, services_for_task, stopped).await;
        if let Some(llm) = llm {
            llm.shutdown().await;
        }
        outcome
    });
    Ok(Running {
        esl_addr,
        http_addr,
        services,
        stop,
        task,
    })
}

async fn run(
    esl: OutboundServer,
    http: tokio::net::TcpListener,
    services: Arc<Services>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (http_stop_tx, http_stop) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(crate::http::serve(http, services.clone(), async move {
        let _ = http_stop.await;
    }));
    let prober_task = services
        .prober()
        .map(|prober| services.fleet.spawn_timer(std::sync::Arc::new(prober)));
    let mut calls = esl.serve();
    let mut live = JoinSet::new();
    loop {
        tokio::select! {
            call = calls.next() => {
                let Some(call) = call else { anyhow::bail!("the ESL listener stopped") };
                live.spawn(serve_call(call, services.clone()));
            }
            Some(_) = live.join_next(), if !live.is_empty() => {}
            _ = stopped.changed() => break,
        }
    }
    services.start_draining();
    let drain = Duration::from_secs(services.config.server.drain_secs);
    info!(
        calls = live.len() + services.streams.len(),
        drain_s = drain.as_secs(),
        "draining"
    );
    // Calls that arrive while draining are refused politely by their own task; new
    // streams are refused at the upgrade.
    services.streams.close();
    let drained = tokio::time::timeout(drain, async {
        let esl_calls = async {
            loop {
                tokio::select! {
                    call = calls.next() => match call {
                        Some(call) => { live.spawn(serve_call(call, services.clone())); }
                        None => break,
                    },
                    joined = live.join_next() => if joined.is_none() { break },
                }
            }
        };
        tokio::join!(esl_calls, services.streams.wait());
    })
    .await;
    if drained.is_err() {
        warn!(
            calls = live.len() + services.streams.len(),
            "drain time over: ending the remaining calls"
        );
        services.end_all_calls();
        // Each call hangs up and writes its cost record; only a stuck one is aborted.
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(
                async { while live.join_next().await.is_some() {} },
                services.streams.wait()
            );
        })
        .await;
        if ended.is_err() {
            live.abort_all();
        }
    }
    if let Some(task) = prober_task {
        task.abort();
    }
    let _ = http_stop_tx.send(());
    let _ = http_task.await;
    Ok(())
}

/// `tom serve`: runs until SIGTERM or Ctrl-C.
pub async fn run_cli(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let running = start(config).await?;
    tell_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]);
    shutdown_signal().await;
    info!("shutting down");
    tell_systemd(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("draining"),
    ]);
    running.shutdown().await
}

/// Tells systemd (a `Type=notify` unit) how the engine is doing: ready once the models
/// are loaded and both listeners bound, stopping when the drain starts. Nothing happens
/// without `NOTIFY_SOCKET`; a failure is logged and changes nothing else.
fn tell_systemd(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "systemd notification failed");
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
