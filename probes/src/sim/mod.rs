//! `provider-sim`: an OpenAI-Realtime-protocol server on loopback with fault injection.
//!
//! It speaks the wire protocol with the engine's own serde types
//! ([`engine::backend::provider::protocol`]) so it cannot drift from the client. It does
//! not transcribe or reason: every reply is the configured audio (a tone or a WAV file)
//! with the configured text, paced at real time, after a configurable first-audio delay.
//!
//! Start it in-process with [`ProviderSim::start`]; the `provider-sim` binary is a thin
//! CLI over the same call. Modules: [`faults`] (settings and random draws), [`audio`]
//! (the reply), [`session`] (one connection's turn logic, sans-IO), [`vad`] (the crude
//! server VAD), [`wire`] (dialect naming), [`received`] (the record of client events),
//! `admin` (the HTTP API), `connection` (the per-socket task).

pub mod audio;
pub mod faults;
pub mod received;
pub mod session;
pub mod vad;
pub mod wire;

mod admin;
mod connection;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use axum::{Json, Router};
use engine::backend::provider::protocol::Dialect;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use audio::{ReplyAudio, ReplySource};
pub use faults::{Faults, FaultsError, RateLimitMode};
pub use received::ReceivedEvent;

use received::Recorder;
use session::{Opening, Session, SessionConfig};

/// Reply text when none is configured.
pub const DEFAULT_REPLY_TEXT: &str =
    "This is provider-sim. I did not understand you, but I answered on time.";
/// Caller transcript when none is configured (`{seconds}`: the committed audio's length).
pub const DEFAULT_CALLER_TRANSCRIPT: &str = "(provider-sim heard {seconds} s of audio)";
/// Audio per delta.
pub const DELTA_MS: u64 = 100;
/// Model reported when the URL names none.
const DEFAULT_MODEL: &str = "gpt-realtime";
/// Largest client message accepted: the API's own limit is 15 MiB per event.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// WebSocket listener (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Admin HTTP listener.
    pub admin: SocketAddr,
    /// Key clients must present (`Authorization: Bearer …` or `api-key: …`); `None`
    /// accepts any.
    pub api_key: Option<String>,
    /// Initial faults.
    pub faults: Faults,
    /// Reply audio.
    pub reply: ReplySource,
    /// Reply transcript.
    pub reply_text: String,
    /// Caller transcript template.
    pub caller_transcript: String,
    /// JSONL file that every received client event is appended to.
    pub log: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            listen: loopback,
            admin: loopback,
            api_key: None,
            faults: Faults::default(),
            reply: ReplySource::default(),
            reply_text: DEFAULT_REPLY_TEXT.into(),
            caller_transcript: DEFAULT_CALLER_TRANSCRIPT.into(),
            log: None,
        }
    }
}

/// Why the simulator could not start or take a setting.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A fault setting is out of range.
    #[error(transparent)]
    Faults(#[from] FaultsError),
    /// The reply audio could not be prepared.
    #[error(transparent)]
    Audio(#[from] audio::AudioError),
    /// The log file could not be opened.
    #[error(transparent)]
    Log(#[from] received::LogFileError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// State shared by the listeners, the connections and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    faults: RwLock<Faults>,
    pub(crate) recorder: Recorder,
    api_key: Option<String>,
    session: Arc<SessionConfig>,
    connections: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn replace_faults(&self, faults: Faults) -> Result<(), FaultsError> {
        faults.validate()?;
        tracing::info!(
            faults = %serde_json::to_string(&faults).unwrap_or_default(),
            "faults replaced"
        );
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = faults;
        Ok(())
    }
}

/// The simulator.
pub struct ProviderSim;

impl ProviderSim {
    /// Binds both listeners and serves until the handle is shut down or dropped.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        config.faults.validate()?;
        let reply = ReplyAudio::load(&config.reply)?;
        let recorder = Recorder::new(config.log.as_deref())?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| SimError::Bind { addr, source })
        };
        let ws_listener = bind(config.listen).await?;
        let admin_listener = bind(config.admin).await?;
        let local = |l: &TcpListener, addr| {
            l.local_addr()
                .map_err(|source| SimError::Bind { addr, source })
        };
        let ws_addr = local(&ws_listener, config.listen)?;
        let admin_addr = local(&admin_listener, config.admin)?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            faults: RwLock::new(config.faults),
            recorder,
            api_key: config.api_key,
            session: Arc::new(SessionConfig {
                reply,
                reply_text: config.reply_text,
                caller_transcript: config.caller_transcript,
                delta_ms: DELTA_MS,
            }),
            connections: AtomicU64::new(0),
            shutdown: shutdown_rx.clone(),
        });

        let realtime = Router::new()
            .fallback(upgrade)
            .with_state(Arc::clone(&shared));
        let listener = RefusingListener {
            inner: ws_listener,
            shared: Arc::clone(&shared),
        };
        let mut stop = shutdown_rx.clone();
        let ws_task = tokio::spawn(async move {
            let served = axum::serve(listener, realtime)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|&s| s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("realtime listener failed: {e}");
            }
        });
        let mut stop = shutdown_rx;
        let admin = admin::router(Arc::clone(&shared));
        let admin_task = tokio::spawn(async move {
            let served = axum::serve(admin_listener, admin)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|&s| s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("admin listener failed: {e}");
            }
        });
        tracing::info!(%ws_addr, %admin_addr, "provider-sim listening");
        Ok(SimHandle {
            ws_addr,
            admin_addr,
            shared,
            shutdown: shutdown_tx,
            tasks: vec![ws_task, admin_task],
        })
    }
}

/// A running simulator. Dropping it stops it too (without waiting).
#[derive(Debug)]
pub struct SimHandle {
    ws_addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// Where the WebSocket listener is.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// The realtime URL, as a client would be configured with it.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/realtime", self.ws_addr)
    }

    /// Where the admin listener is.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Every client event received so far (see [`received::MEMORY_LIMIT`]).
    pub fn received(&self) -> Vec<ReceivedEvent> {
        self.shared.recorder.snapshot()
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults (connections and responses that start later see them).
    pub fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        Ok(self.shared.replace_faults(faults)?)
    }

    /// The reply audio the sim streams.
    pub fn reply_audio(&self) -> &ReplyAudio {
        &self.shared.session.reply
    }

    /// Stops listening, ends every connection and waits for the listeners to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The WebSocket listener, which can drop connections before any HTTP is read.
struct RefusingListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl Listener for RefusingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let (stream, peer) = Listener::accept(&mut self.inner).await;
            if self.shared.faults().refuse_connections {
                tracing::info!(%peer, "refuse_connections fault: connection dropped");
                drop(stream);
                continue;
            }
            // Replies are many small frames; without this, Nagle and delayed ACKs hold
            // some back by ~40 ms, which would distort every latency the sim fakes.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
            }
            return (stream, peer);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Any path: the real one is `/v1/realtime?model=…`, Azure's differs.
async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let faults = shared.faults();
    if faults.reject_auth || !authorised(&headers, shared.api_key.as_deref()) {
        tracing::info!(fault = faults.reject_auth, "upgrade refused: 401");
        return api_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided.",
        );
    }
    if faults.rate_limit == RateLimitMode::Http {
        tracing::info!("rate_limit fault: upgrade refused with 429");
        let mut response = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            "rate_limit_exceeded",
            "Rate limit reached for requests (provider-sim injected fault).",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let params = query.map(|Query(q)| q).unwrap_or_default();
    let model = params
        .get("model")
        .or_else(|| params.get("deployment"))
        .map_or(DEFAULT_MODEL, String::as_str)
        .chars()
        .take(200)
        .collect();
    let beta = headers
        .get_all("openai-beta")
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("realtime=v1")));
    let conn = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let opening = Opening {
        conn,
        dialect: if beta { Dialect::Beta } else { Dialect::Ga },
        model,
    };
    let session = Session::new(
        opening,
        Arc::clone(&shared.session),
        faults::Sampler::new(faults.seed, conn),
    );
    let shutdown = shared.shutdown.clone();
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| connection::serve(socket, session, conn, shared, shutdown))
}

/// Whether the request carries the configured key (any key when none is configured).
fn authorised(headers: &HeaderMap, key: Option<&str>) -> bool {
    let Some(key) = key else {
        return true;
    };
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let azure = headers
        .get_all("api-key")
        .iter()
        .filter_map(|v| v.to_str().ok());
    bearer
        .chain(azure)
        .any(|presented| same_secret(presented.trim().as_bytes(), key.as_bytes()))
}

/// Compares without an early exit, so response timing does not reveal the key.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An OpenAI-shaped HTTP error.
fn api_error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    let body = json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_in_either_header() {
        let mut h = HeaderMap::new();
        assert!(authorised(&h, None));
        assert!(!authorised(&h, Some("k1")));
        h.insert(header::AUTHORIZATION, "Bearer k1".parse().unwrap());
        assert!(authorised(&h, Some("k1")));
        assert!(!authorised(&h, Some("k2")));
        let mut h = HeaderMap::new();
        h.insert("api-key", "k2".parse().unwrap());
        assert!(authorised(&h, Some("k2")));
        assert!(!authorised(&h, Some("k22")));
    }
}
