//! Conversation backends behind one interface, so the call loop does not care whether a
//! turn is answered by the cloud provider or by the local pipeline.
//!
//! A [`Session`] is a handle to one backend conversation owned by its own task: the
//! call loop pushes caller audio and turn boundaries into it without waiting (the media
//! path never blocks on a backend), and reads [`SessionEvent`]s out of it. Audio crosses
//! the interface as 16-bit PCM at the call's rate ([`SessionConfig::rate`]); each backend
//! converts to what it needs (µ-law for a PCMU-capable provider, 16 kHz for whisper).

use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub mod events;
pub mod local;
pub mod provider;

use local::brain::Turn;

/// Which backend a session talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The cloud realtime provider (OpenAI Realtime protocol).
    Provider,
    /// The local pipeline on this machine.
    Local,
}

impl BackendKind {
    /// The label used in metrics, logs and the cost log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Local => "local",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a session is opened with.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Sample rate of the call's audio in both directions (8000 for a PCMU call).
    pub rate: u32,
    /// The call's media is G.711 µ-law at the far end, so a backend that can take µ-law
    /// directly should (no resampling of telephony audio).
    pub telephony_ulaw: bool,
    /// Language of the call (BCP 47 primary tag, e.g. "en", "de").
    pub language: String,
    /// System instructions / persona for the reply generator.
    pub instructions: String,
    /// The conversation so far (non-empty when a call fails over mid-way).
    pub history: Vec<Turn>,
}

/// Per-stage latencies (DESIGN.md vocabulary), reported as they become known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// End of speech → end of turn: the silence the endpointer waited for before it
    /// handed the turn to the backend (recorded by the call, for both backends).
    Endpoint,
    /// End of speech → final caller text.
    Stt,
    /// Caller text → first reply token.
    LlmFirstToken,
    /// First reply text → first reply audio.
    TtsFirstAudio,
}

impl Stage {
    /// The `stage` label of `tom_stage_latency_ms`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint_ms",
            Self::Stt => "stt_ms",
            Self::LlmFirstToken => "llm_first_token_ms",
            Self::TtsFirstAudio => "tts_first_audio_ms",
        }
    }
}

/// Provider token usage of one response (what the cost log prices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Input tokens that were audio.
    pub input_audio_tokens: u64,
    /// Input tokens that were text.
    pub input_text_tokens: u64,
    /// Input tokens served from the provider's cache.
    pub input_cached_tokens: u64,
    /// Output audio tokens.
    pub output_audio_tokens: u64,
    /// Output text tokens.
    pub output_text_tokens: u64,
}

/// How a reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyDone {
    /// The reply was cancelled (barge-in) before it finished.
    pub cancelled: bool,
    /// The reply says goodbye: play it out, then hang up.
    pub ends_call: bool,
    /// Token usage, when the backend is billed by tokens.
    pub usage: Option<Usage>,
}

/// Something a session produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// The backend's own voice detection heard the caller start (provider server VAD);
    /// a barge-in hint for the call loop.
    SpeechStarted,
    /// The backend's own voice detection heard the caller stop.
    SpeechStopped,
    /// What the caller said in the turn just committed.
    CallerText(String),
    /// The next piece of the reply's text (a token, a transcript delta, a sentence).
    ReplyText(String),
    /// The next piece of reply audio, 16-bit PCM at the call's rate.
    ReplyAudio(Vec<i16>),
    /// A stage of the current turn took this long.
    StageLatency {
        /// Which stage.
        stage: Stage,
        /// How long it took.
        took: Duration,
    },
    /// The reply is complete (or was cancelled).
    ReplyDone(ReplyDone),
    /// Something failed. After a fatal error the session produces nothing more.
    Error(SessionError),
}

/// Error classes the failover policy tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Could not connect, or the connection timed out.
    Connect,
    /// A deadline inside the session passed (no answer in time).
    Timeout,
    /// The provider refused our credentials (401/403).
    Auth,
    /// The provider is rate limiting us (429 or a rate-limit error event).
    RateLimit,
    /// The provider failed on its side (5xx, `server_error`).
    Server,
    /// The provider sent something we cannot parse or did not expect.
    Protocol,
    /// The connection closed while a response was in progress.
    ClosedMidResponse,
    /// The provider reported an error about our request (4xx-like error event).
    InvalidRequest,
    /// Egress to the provider is disabled (`ALLOW_EGRESS=false`).
    EgressDisabled,
    /// The local pipeline failed (model, STT, brain, TTS) or is saturated.
    Local,
}

impl ErrorKind {
    /// The `kind` label of `tom_backend_errors_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Auth => "auth",
            Self::RateLimit => "rate_limit",
            Self::Server => "server",
            Self::Protocol => "protocol",
            Self::ClosedMidResponse => "closed_mid_response",
            Self::InvalidRequest => "invalid_request",
            Self::EgressDisabled => "egress_disabled",
            Self::Local => "local",
        }
    }

    /// Worth retrying in place (with backoff) before counting as a failure.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Connect | Self::Timeout | Self::Server)
    }
}

/// A classified backend failure. The message never contains secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{backend} backend: {kind:?}: {message}")]
pub struct SessionError {
    /// Which backend failed.
    pub backend: BackendKind,
    /// The class, for the failover policy and metrics.
    pub kind: ErrorKind,
    /// What happened, for logs.
    pub message: String,
    /// The session is unusable after this error.
    pub fatal: bool,
}

impl SessionError {
    /// A new error.
    pub fn new(backend: BackendKind, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            backend,
            kind,
            message: message.into(),
            fatal: false,
        }
    }

    /// The same error, marked as ending the session.
    pub fn fatal(mut self) -> Self {
        self.fatal = true;
        self
    }
}

/// Where the caller's turn lies in the audio pushed so far, as the call loop's
/// endpointer saw it. Durations rather than sample counts, so they mean the same at any
/// rate; a backend that streams everything (the provider) only needs `end_of_speech`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utterance {
    /// When the caller's last voiced frame arrived (`end_of_speech`).
    pub end_of_speech: Instant,
    /// Speech from onset to the last voiced frame.
    pub voiced: Duration,
    /// Audio pushed after the last voiced frame (silence so far).
    pub trailing: Duration,
}

impl Utterance {
    /// When the turn was handed to the backend: the endpointer's decision, `trailing`
    /// after the last voiced frame. The backend's response time counts from here.
    pub fn end_of_turn(&self) -> Instant {
        self.end_of_speech + self.trailing
    }
}

/// One live conversation with a backend, driven by the call loop.
///
/// Every method returns at once: work happens on the session's own task and results
/// arrive as events. Methods fail only when the session has already stopped.
pub trait Session: Send {
    /// Which backend this is.
    fn backend(&self) -> BackendKind;

    /// Caller audio (16-bit PCM at the call's rate, any length). Audio that cannot be
    /// queued is dropped oldest-first and counted, never waited for.
    fn push_audio(&mut self, pcm: &[i16]) -> Result<(), SessionError>;

    /// The caller's turn is over: answer it.
    fn commit(&mut self, turn: Utterance) -> Result<(), SessionError>;

    /// The caller paused; the turn may be over. A backend may start work on it early
    /// (speculation); a [`Session::commit`] with the same `end_of_speech` confirms it,
    /// anything else supersedes it.
    fn pause(&mut self, turn: Utterance) -> Result<(), SessionError> {
        let _ = turn;
        Ok(())
    }

    /// Barge-in: stop the current reply. `played` is how much of its audio the caller
    /// actually heard (the provider truncates its record of the reply there). No audio of
    /// the cancelled reply is delivered after this returns.
    fn cancel(&mut self, played: Duration) -> Result<(), SessionError>;

    /// Polls for the next event; `None` once the session has stopped.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>>;

    /// Ends the session (hang-up, failover); its task stops and frees its resources.
    fn close(&mut self);
}

/// Waits for the next event of a session.
pub async fn next_event(session: &mut (dyn Session + '_)) -> Option<SessionEvent> {
    poll_fn(|cx| session.poll_event(cx)).await
}
