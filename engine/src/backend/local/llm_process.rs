//! Runs the local LLM server `tom-llm` as a child process and keeps it running.
//!
//! llama.cpp cannot be linked into the engine (whisper.cpp vendors the same ggml symbols;
//! docs/decisions/0006-local-llm-process.md), so the small local model lives in its own
//! process and the engine reaches it through the ordinary `openai-compatible` brain at
//! [`LlmProcess::base_url`].
//!
//! Contract with the child (see `llm-server/src/main.rs`): it takes `--model`,
//! `--model-id`, `--listen`, `--threads` and `--exit-on-stdin-eof`; it prints one line
//! `tom-llm ready on http://ADDR` on stdout once the model is loaded; `GET /health`
//! answers 200 when it can serve. The supervisor holds the child's stdin open, so the
//! child exits by itself if the engine dies without killing it.
//!
//! If the child exits, it is started again on the same address after an exponential
//! backoff (reset once a child has stayed up for a while), so the brain's base URL never
//! changes. The child is killed when the [`LlmProcess`] is dropped or shut down.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::brain::LlmConfig;
use crate::models::{self, ModelError};

/// The server's file name.
pub const BINARY_NAME: &str = "tom-llm";
/// The artefact id of the default model in `models/models.toml`.
pub const SMOLLM2_ID: &str = "smollm2";
/// Its file.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The line prefix the child prints when ready.
const READY_PREFIX: &str = "tom-llm ready on http://";

/// Why the local LLM server cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LlmProcessError {
    /// No `tom-llm` binary where it was looked for.
    #[error("the local LLM server binary `tom-llm` was not found (looked at: {}); build it with: cargo build --release -p llm-server (or set TOM_LLM_BIN)", list(.searched))]
    BinaryNotFound {
        /// Every path tried, in order.
        searched: Vec<PathBuf>,
    },
    /// The model file is missing (the message names the fetch command).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The binary is there but could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The child exited before it was ready.
    #[error("tom-llm exited before it was ready ({status}); its log lines above say why")]
    Exited {
        /// How it ended.
        status: String,
    },
    /// The child did not become ready in time.
    #[error("tom-llm was not ready within {0:?}")]
    NotReady(Duration),
    /// The child printed something other than the ready line.
    #[error("tom-llm printed an unexpected first line: {0:?}")]
    BadReadyLine(String),
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where to look for the binary: `TOM_LLM_BIN`, else next to the current executable,
/// else on `PATH`.
#[derive(Debug, Clone, Default)]
pub struct BinarySearch {
    /// An explicit path (`TOM_LLM_BIN`); when set, nothing else is tried.
    pub explicit: Option<PathBuf>,
    /// The directory of the running executable.
    pub exe_dir: Option<PathBuf>,
    /// The `PATH` variable.
    pub path: Option<OsString>,
}

impl BinarySearch {
    /// The search this process would do.
    pub fn from_env() -> Self {
        Self {
            explicit: std::env::var_os("TOM_LLM_BIN").map(PathBuf::from),
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
            path: std::env::var_os("PATH"),
        }
    }

    /// The first existing candidate.
    pub fn find(&self) -> Result<PathBuf, LlmProcessError> {
        if let Some(explicit) = &self.explicit {
            // An explicit choice that is wrong should say so, not silently run another.
            return if explicit.is_file() {
                Ok(explicit.clone())
            } else {
                Err(LlmProcessError::BinaryNotFound {
                    searched: vec![explicit.clone()],
                })
            };
        }
        let mut searched = Vec::new();
        if let Some(dir) = &self.exe_dir {
            searched.push(dir.join(BINARY_NAME));
            // Test executables live in target/<profile>/deps; the binary one level up.
            if dir.file_name().is_some_and(|name| name == "deps") {
                if let Some(parent) = dir.parent() {
                    searched.push(parent.join(BINARY_NAME));
                }
            }
        }
        if let Some(path) = &self.path {
            searched.extend(std::env::split_paths(path).map(|dir| dir.join(BINARY_NAME)));
        }
        match searched.iter().find(|p| p.is_file()) {
            Some(found) => Ok(found.clone()),
            None => Err(LlmProcessError::BinaryNotFound { searched }),
        }
    }
}

/// How to run and supervise the server.
#[derive(Debug, Clone)]
pub struct LlmProcessConfig {
    /// The `tom-llm` binary.
    pub binary: PathBuf,
    /// The GGUF model.
    pub model: PathBuf,
    /// The id the brain sends as `model`.
    pub model_id: String,
    /// Where the server listens; port 0 picks one at first start and keeps it after.
    pub listen: SocketAddr,
    /// Inference threads.
    pub threads: u16,
    /// Limit for one start: process launch, model load, first healthy `/health`.
    pub ready_timeout: Duration,
    /// Interval between `/health` polls while starting.
    pub health_interval: Duration,
    /// First restart delay.
    pub restart_min_delay: Duration,
    /// Longest restart delay.
    pub restart_max_delay: Duration,
    /// A child up this long counts as healthy: the next crash restarts without delay
    /// growth.
    pub stable_after: Duration,
    /// More arguments for the server.
    pub extra_args: Vec<OsString>,
}

impl LlmProcessConfig {
    /// Defaults around a given binary and model: loopback port 8091, 2 threads.
    pub fn new(binary: PathBuf, model: PathBuf) -> Self {
        Self {
            binary,
            model,
            model_id: SMOLLM2_ID.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8091)),
            threads: 2,
            ready_timeout: Duration::from_secs(30),
            health_interval: Duration::from_millis(50),
            restart_min_delay: Duration::from_millis(250),
            restart_max_delay: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            extra_args: Vec::new(),
        }
    }

    /// SmolLM2 from the model cache and the binary found by [`BinarySearch::from_env`];
    /// a missing file is an error that names the command that fixes it.
    pub fn smollm2() -> Result<Self, LlmProcessError> {
        let model = models::model_file(&models::models_dir(), SMOLLM2_ID, SMOLLM2_FILE)?;
        let binary = BinarySearch::from_env().find()?;
        Ok(Self::new(binary, model))
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.restart_min_delay)
            .with_max_delay(self.restart_max_delay)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// What the supervisor reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessState {
    /// The live child's pid; `None` while it is being restarted.
    pub pid: Option<u32>,
    /// Completed restarts.
    pub restarts: u32,
    /// How the last child ended.
    pub last_exit: Option<String>,
}

/// A supervised `tom-llm`.
#[derive(Debug)]
pub struct LlmProcess {
    base_url: String,
    model_id: String,
    state: watch::Receiver<ProcessState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl LlmProcess {
    /// Starts the server and waits until it is ready (bounded by `ready_timeout`).
    pub async fn start(config: LlmProcessConfig) -> Result<Self, LlmProcessError> {
        if !config.model.is_file() {
            // The manifest's only LLM artefact, so the message names a fetch that works.
            return Err(ModelError::Missing {
                id: SMOLLM2_ID.into(),
                path: config.model.clone(),
            }
            .into());
        }
        let running = launch(&config, config.listen).await?;
        let addr = running.addr;
        tracing::info!(%addr, pid = running.child.id(), "local LLM server ready");
        let (state_tx, state) = watch::channel(ProcessState {
            pid: running.child.id(),
            ..ProcessState::default()
        });
        let (stop_tx, stop) = oneshot::channel();
        let model_id = config.model_id.clone();
        let task = tokio::spawn(supervise(config, running, state_tx, stop));
        Ok(Self {
            base_url: format!("http://{addr}/v1"),
            model_id,
            state,
            stop: Some(stop_tx),
            task,
        })
    }

    /// The OpenAI API base, e.g. `http://127.0.0.1:8091/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Brain settings pointing at this server.
    pub fn llm_config(&self) -> LlmConfig {
        LlmConfig::local(self.base_url.clone(), self.model_id.clone())
    }

    /// Watch the child's pid and restarts.
    pub fn state(&self) -> watch::Receiver<ProcessState> {
        self.state.clone()
    }

    /// Stops the child (closing its stdin first, so it can finish cleanly) and waits.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for LlmProcess {
    fn drop(&mut self) {
        // Aborting drops the task's `Child`, and `kill_on_drop` kills it.
        self.task.abort();
    }
}

/// A started child. Its stdin is kept apart because `Child::wait` closes a stdin it
/// still holds, and a closed stdin tells the server its supervisor is gone.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

/// Starts one child on `listen` and waits for its ready line and a healthy `/health`.
async fn launch(config: &LlmProcessConfig, listen: SocketAddr) -> Result<Running, LlmProcessError> {
    let deadline = Instant::now() + config.ready_timeout;
    let mut child = Command::new(&config.binary)
        .arg("--model")
        .arg(&config.model)
        .arg("--model-id")
        .arg(&config.model_id)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--threads")
        .arg(config.threads.to_string())
        .arg("--exit-on-stdin-eof")
        .args(&config.extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => LlmProcessError::BinaryNotFound {
                searched: vec![config.binary.clone()],
            },
            _ => LlmProcessError::Spawn {
                binary: config.binary.clone(),
                source,
            },
        })?;
    let Some(stdout) = child.stdout.take() else {
        return Err(LlmProcessError::BadReadyLine("stdout is not piped".into()));
    };
    let first = tokio::time::timeout_at(deadline, BufReader::new(stdout).lines().next_line())
        .await
        .map_err(|_| LlmProcessError::NotReady(config.ready_timeout))?;
    let line = match first {
        Ok(Some(line)) => line,
        // No line: the child is exiting; say how.
        Ok(None) | Err(_) => {
            let status = tokio::time::timeout_at(deadline, child.wait())
                .await
                .map_err(|_| LlmProcessError::NotReady(config.ready_timeout))?;
            return Err(LlmProcessError::Exited {
                status: describe(status),
            });
        }
    };
    let addr: SocketAddr = line
        .strip_prefix(READY_PREFIX)
        .and_then(|addr| addr.trim().parse().ok())
        .ok_or_else(|| LlmProcessError::BadReadyLine(line.clone()))?;
    wait_healthy(addr, deadline, config).await?;
    let stdin = child.stdin.take();
    Ok(Running { child, stdin, addr })
}

/// Polls `/health` until it answers 200 or the deadline passes.
async fn wait_healthy(
    addr: SocketAddr,
    deadline: Instant,
    config: &LlmProcessConfig,
) -> Result<(), LlmProcessError> {
    let not_ready = || LlmProcessError::NotReady(config.ready_timeout);
    // A proxy from the environment must never see loopback traffic.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(config.health_interval.max(Duration::from_millis(500)))
        .build()
        .map_err(|_| not_ready())?;
    let url = format!("http://{addr}/health");
    let mut poll = tokio::time::interval(config.health_interval);
    loop {
        tokio::time::timeout_at(deadline, poll.tick())
            .await
            .map_err(|_| not_ready())?;
        let answer = tokio::time::timeout_at(deadline, http.get(&url).send())
            .await
            .map_err(|_| not_ready())?;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("unknown: {e}"),
    }
}

/// Waits for the child to exit and starts a new one, until told to stop.
async fn supervise(
    config: LlmProcessConfig,
    mut running: Running,
    state: watch::Sender<ProcessState>,
    mut stop: oneshot::Receiver<()>,
) {
    let addr = running.addr;
    let mut backoff = config.backoff();
    let mut up_since = Instant::now();
    loop {
        let status = tokio::select! {
            // A dropped sender (the handle is gone) stops too.
            _ = &mut stop => {
                stop_child(running).await;
                return;
            }
            status = running.child.wait() => describe(status),
        };
        tracing::warn!(%status, "local LLM server exited; restarting");
        state.send_modify(|s| {
            s.pid = None;
            s.last_exit = Some(status);
        });
        if up_since.elapsed() >= config.stable_after {
            backoff = config.backoff();
        }
        running = loop {
            let delay = backoff.next().unwrap_or(config.restart_max_delay);
            let started = tokio::select! {
                _ = &mut stop => return,
                started = async {
                    tokio::time::sleep(delay).await;
                    launch(&config, addr).await
                } => started,
            };
            match started {
                Ok(running) => break running,
                Err(e) => tracing::warn!(error = %e, ?delay, "local LLM server restart failed"),
            }
        };
        up_since = Instant::now();
        tracing::info!(%addr, pid = running.child.id(), "local LLM server restarted");
        state.send_modify(|s| {
            s.pid = running.child.id();
            s.restarts += 1;
        });
    }
}

/// Closes stdin so the child can exit cleanly; kills it if it does not promptly.
async fn stop_child(running: Running) {
    let Running {
        mut child, stdin, ..
    } = running;
    drop(stdin);
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::OnceLock;

    use super::*;

    /// Fake servers, written once per test process: writing an executable while another
    /// thread forks can make exec fail with "text file busy".
    fn fakes() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            // Honours the contract. `--fake-mode one-shot` answers exactly one request
            // (the supervisor's health check) and exits: a server that keeps crashing.
            // `steady` serves until its stdin closes.
            // `--fake-fifo PATH` holds the write end of a FIFO open for as long as the
            // process lives, so a test can see it die by reading to end of file.
            let fake = r#"#!/usr/bin/env python3
import http.server, sys
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1] if name in args else None
if opt("--fake-fifo"):
    alive = open(opt("--fake-fifo"), "w")
host, port = opt("--listen").rsplit(":", 1)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((host, int(port)), Health)
print(f"tom-llm ready on http://{host}:{server.server_address[1]}", flush=True)
if opt("--fake-mode") == "one-shot":
    server.handle_request()
else:
    # Like the real server: stdin at end of file means the supervisor is gone.
    import os, threading
    def watch_stdin():
        sys.stdin.buffer.read()
        os._exit(0)
    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()
"#;
            for (name, body) in [
                ("fake", fake),
                ("dies", "#!/bin/sh\necho 'cannot load model' >&2\nexit 3\n"),
                ("mute", "#!/bin/sh\nexec sleep 30\n"),
                ("chatty", "#!/bin/sh\necho hello\nexec sleep 30\n"),
            ] {
                let path = dir.path().join(name);
                std::fs::write(&path, body).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            dir
        })
        .path()
    }

    fn config(fake: &str) -> LlmProcessConfig {
        // The model file only has to exist; the fakes never read it.
        let model = fakes().join("dies");
        let (binary, mode) = match fake {
            "one-shot" | "steady" => ("fake", fake),
            other => (other, ""),
        };
        let mut config = LlmProcessConfig::new(fakes().join(binary), model);
        config.extra_args = vec!["--fake-mode".into(), mode.into()];
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.ready_timeout = Duration::from_secs(20);
        config.restart_min_delay = Duration::from_millis(1);
        config.restart_max_delay = Duration::from_millis(20);
        config
    }

    #[test]
    fn explicit_binary_that_is_missing_is_a_typed_error_with_the_fix() {
        let search = BinarySearch {
            explicit: Some("/nonexistent/tom-llm".into()),
            exe_dir: Some(fakes().to_path_buf()),
            path: None,
        };
        let e = search.find().unwrap_err();
        assert!(
            matches!(&e, LlmProcessError::BinaryNotFound { searched } if searched == &[PathBuf::from("/nonexistent/tom-llm")])
        );
        assert!(e
            .to_string()
            .contains("cargo build --release -p llm-server"));
    }

    #[test]
    fn binary_is_found_next_to_the_executable_then_above_deps_then_on_path() {
        let root = tempfile::tempdir().unwrap();
        let (deps, bin) = (root.path().join("debug/deps"), root.path().join("bin"));
        std::fs::create_dir_all(&deps).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let search = BinarySearch {
            explicit: None,
            exe_dir: Some(deps.clone()),
            path: Some(std::env::join_paths([&bin]).unwrap()),
        };
        let e = search.find().unwrap_err();
        let LlmProcessError::BinaryNotFound { searched } = e else {
            panic!("{e}");
        };
        assert_eq!(
            searched,
            [
                deps.join("tom-llm"),
                root.path().join("debug/tom-llm"),
                bin.join("tom-llm")
            ]
        );
        std::fs::write(bin.join("tom-llm"), "").unwrap();
        assert_eq!(search.find().unwrap(), bin.join("tom-llm"));
        std::fs::write(root.path().join("debug/tom-llm"), "").unwrap();
        assert_eq!(search.find().unwrap(), root.path().join("debug/tom-llm"));
        std::fs::write(deps.join("tom-llm"), "").unwrap();
        assert_eq!(search.find().unwrap(), deps.join("tom-llm"));
    }

    #[tokio::test]
    async fn a_missing_model_names_the_fetch_command() {
        let mut config = config("one-shot");
        config.model = "/nonexistent/SmolLM2-135M-Instruct.Q4_1.gguf".into();
        let e = LlmProcess::start(config).await.unwrap_err();
        assert!(matches!(e, LlmProcessError::Model(_)));
        assert!(
            e.to_string()
                .contains("scripts/fetch-models.sh --only smollm2"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_typed_error() {
        let mut config = config("one-shot");
        config.binary = fakes().join("no-such-binary");
        let e = LlmProcess::start(config).await.unwrap_err();
        assert!(matches!(e, LlmProcessError::BinaryNotFound { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_child_that_dies_before_ready_reports_its_status() {
        let e = LlmProcess::start(config("dies")).await.unwrap_err();
        assert!(
            matches!(&e, LlmProcessError::Exited { status } if status.contains('3')),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_child_that_never_gets_ready_times_out() {
        let mut config = config("mute");
        config.ready_timeout = Duration::from_millis(300);
        let e = LlmProcess::start(config).await.unwrap_err();
        assert!(matches!(e, LlmProcessError::NotReady(_)), "{e}");
        let e = LlmProcess::start(self::config("chatty")).await.unwrap_err();
        assert!(
            matches!(&e, LlmProcessError::BadReadyLine(l) if l == "hello"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_child_that_exits_is_restarted_on_the_same_address() {
        let process = LlmProcess::start(config("one-shot")).await.unwrap();
        let base = process.base_url().to_owned();
        assert!(base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"));
        assert!(!base.contains(":0/"), "the real port is exposed: {base}");
        assert_eq!(process.llm_config().base_url, base);
        assert_eq!(process.llm_config().model, "smollm2");
        let first_pid = process.state().borrow().pid.unwrap();

        let mut state = process.state();
        let restarted = tokio::time::timeout(
            Duration::from_secs(30),
            state.wait_for(|s| s.restarts >= 2 && s.pid.is_some()),
        )
        .await
        .expect("restarted in time")
        .unwrap()
        .clone();
        assert_ne!(restarted.pid, Some(first_pid));
        assert!(restarted.last_exit.is_some());
        assert_eq!(process.base_url(), base);

        let pid = restarted.pid.unwrap();
        let mut state = process.state();
        process.shutdown().await;
        // Once shut down, the last child is gone (or is a newer one that was then
        // stopped): no pid the supervisor reported is still running.
        let last = state.borrow_and_update().pid;
        for pid in [Some(pid), last].into_iter().flatten() {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "pid {pid} alive"
            );
        }
    }

    #[tokio::test]
    async fn a_supervised_child_keeps_serving() {
        let process = LlmProcess::start(config("steady")).await.unwrap();
        let pid = process.state().borrow().pid;
        let health = process.base_url().replace("/v1", "/health");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        for _ in 0..5 {
            let answer = http.get(&health).send().await.unwrap();
            assert!(answer.status().is_success());
        }
        // Its stdin is still open (a closed one would have ended it and forced a restart).
        assert_eq!(process.state().borrow().restarts, 0);
        assert_eq!(process.state().borrow().pid, pid);
        process.shutdown().await;
    }

    #[tokio::test]
    async fn dropping_the_handle_kills_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("alive");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Reading the FIFO ends when its only writer, the child, is gone. A plain thread,
        // not the runtime's blocking pool: if the test fails early it must not hold up
        // the runtime's shutdown.
        let (gone_tx, gone) = oneshot::channel();
        let reader_path = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut sink = Vec::new();
            let read = std::fs::File::open(reader_path).and_then(|mut f| f.read_to_end(&mut sink));
            let _ = gone_tx.send(read.map(|_| ()));
        });
        let mut config = config("steady");
        config
            .extra_args
            .extend(["--fake-fifo".into(), fifo.into()]);
        let process = LlmProcess::start(config).await.unwrap();
        assert!(process.state().borrow().pid.is_some());
        drop(process);
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .expect("the child died when the handle was dropped")
            .unwrap()
            .unwrap();
    }
}
