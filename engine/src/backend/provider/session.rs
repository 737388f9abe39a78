//! The provider as a [`Session`]: one task per call owns the WebSocket.
//!
//! Caller audio goes through a small drop-oldest queue (the media path never waits on
//! the network) and leaves as `input_audio_buffer.append`; a commit flushes it and asks
//! for a response (unless the server detects turns itself). Server events become
//! [`SessionEvent`]s: reply audio converted to the call's rate, transcripts, usage, and
//! failures classified for the failover policy. A stall is noticed by a deadline, not by
//! waiting forever.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};

use super::config::ProviderConfig;
use super::connect::{connect, ProviderSocket};
use super::protocol::{
    encode_audio, parse_server_event, ClientEvent, ErrorDetail, MessageItem, ResponseInfo,
    ServerEvent, SessionRequest, WireAudio,
};
use super::wire_audio::{wire_format_for, Downlink, Uplink};
use crate::backend::events::{self, EventSender, EventStream};
use crate::backend::local::brain::Speaker;
use crate::backend::{
    BackendKind, ErrorKind, ReplyDone, Session, SessionConfig, SessionError, SessionEvent, Usage,
    Utterance,
};

/// Caller audio held while the socket is busy: 2 s, then the oldest goes.
const QUEUE_SECONDS: u32 = 2;

/// Opens provider sessions with one configuration.
#[derive(Debug, Clone)]
pub struct ProviderBackend {
    config: Arc<ProviderConfig>,
}

impl ProviderBackend {
    /// A backend with `config`.
    pub fn new(config: ProviderConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// Connects (with retries for transient failures) and configures a session for one
    /// call. Errors are classified; with `ALLOW_EGRESS=false` no socket is opened.
    pub async fn open(&self, call: SessionConfig) -> Result<ProviderSession, SessionError> {
        let socket = connect(&self.config).await?;
        let format = wire_format_for(call.rate, call.telephony_ulaw);
        let resample = |e: crate::audio::resample::ResampleError| {
            SessionError::new(BackendKind::Provider, ErrorKind::Protocol, e.to_string()).fatal()
        };
        let uplink = Uplink::new(call.rate, format).map_err(resample)?;
        let downlink = Downlink::new(format, call.rate).map_err(resample)?;
        let queue = Arc::new(AudioQueue::new(call.rate * QUEUE_SECONDS));
        let (commands_tx, commands) = mpsc::channel(16);
        let (events_tx, events) = events::channel(64);
        let request = SessionRequest {
            model: self.config.model.clone(),
            instructions: call.instructions.clone(),
            voice: self.config.voice.clone(),
            audio: format,
            server_vad: self.config.server_vad,
            transcription_model: self.config.transcription_model.clone(),
            language: Some(call.language.clone()),
        };
        let mut task = SessionTask {
            socket,
            config: self.config.clone(),
            format,
            uplink,
            downlink,
            queue: queue.clone(),
            events: events_tx,
            wire: Vec::new(),
            response: None,
            awaiting_response: false,
            deadline: None,
        };
        task.start(&request, &call).await?;
        tokio::spawn(task.run(commands));
        Ok(ProviderSession {
            queue,
            commands: commands_tx,
            events,
        })
    }
}

/// Caller audio between the call loop and the session task. Drop-oldest, counted.
#[derive(Debug)]
struct AudioQueue {
    samples: Mutex<VecDeque<i16>>,
    capacity: usize,
    dropped: AtomicU64,
    ready: Notify,
}

impl AudioQueue {
    fn new(capacity: u32) -> Self {
        Self {
            samples: Mutex::new(VecDeque::with_capacity(capacity as usize)),
            capacity: capacity as usize,
            dropped: AtomicU64::new(0),
            ready: Notify::new(),
        }
    }

    fn push(&self, pcm: &[i16]) {
        let mut samples = match self.samples.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let excess = (samples.len() + pcm.len()).saturating_sub(self.capacity);
        let from_queue = excess.min(samples.len());
        samples.drain(..from_queue);
        let skip = excess - from_queue;
        samples.extend(&pcm[skip.min(pcm.len())..]);
        if excess > 0 {
            self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        }
        drop(samples);
        self.ready.notify_one();
    }

    fn take_into(&self, out: &mut Vec<i16>) {
        let mut samples = match self.samples.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        out.extend(samples.drain(..));
    }
}

/// A provider session's handle (what the call loop holds).
#[derive(Debug)]
pub struct ProviderSession {
    queue: Arc<AudioQueue>,
    commands: mpsc::Sender<Command>,
    events: EventStream,
}

impl ProviderSession {
    /// Caller samples dropped because the socket could not keep up.
    pub fn dropped_samples(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum Command {
    Commit,
    Cancel { epoch: u64, played: Duration },
}

impl Session for ProviderSession {
    fn backend(&self) -> BackendKind {
        BackendKind::Provider
    }

    fn push_audio(&mut self, pcm: &[i16]) -> Result<(), SessionError> {
        if self.commands.is_closed() {
            return Err(stopped());
        }
        self.queue.push(pcm);
        Ok(())
    }

    fn commit(&mut self, _turn: Utterance) -> Result<(), SessionError> {
        self.send(Command::Commit)
    }

    fn cancel(&mut self, played: Duration) -> Result<(), SessionError> {
        let epoch = self.events.cancel();
        self.send(Command::Cancel { epoch, played })
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>> {
        self.events.poll_event(cx)
    }

    fn close(&mut self) {
        let (closed, _) = mpsc::channel(1);
        self.commands = closed;
        self.queue.ready.notify_one();
    }
}

impl ProviderSession {
    fn send(&self, command: Command) -> Result<(), SessionError> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SessionError::new(
                BackendKind::Provider,
                ErrorKind::Protocol,
                "session is not keeping up with commands",
            ),
            mpsc::error::TrySendError::Closed(_) => stopped(),
        })
    }
}

fn stopped() -> SessionError {
    SessionError::new(
        BackendKind::Provider,
        ErrorKind::ClosedMidResponse,
        "session has stopped",
    )
    .fatal()
}

fn failure(kind: ErrorKind, message: impl Into<String>) -> SessionError {
    SessionError::new(BackendKind::Provider, kind, message)
}

/// The reply being received.
#[derive(Debug)]
struct ActiveResponse {
    id: String,
    /// The assistant item carrying the audio (what a truncate names).
    item_id: Option<String>,
    /// Wire bytes of audio received for that item.
    audio_bytes: u64,
    /// We cancelled it: its remaining deltas are dropped.
    cancelled: bool,
    /// An `error` event already reported its failure: a `response.done` with status
    /// `failed` that follows is the same failure, not a second one.
    error_reported: bool,
}

struct SessionTask {
    socket: ProviderSocket,
    config: Arc<ProviderConfig>,
    format: WireAudio,
    uplink: Uplink,
    downlink: Downlink,
    queue: Arc<AudioQueue>,
    events: EventSender,
    /// Scratch for wire bytes (reused).
    wire: Vec<u8>,
    response: Option<ActiveResponse>,
    /// A turn was committed and its response has not finished.
    awaiting_response: bool,
    /// When the provider is overdue (a reply is owed and nothing came).
    deadline: Option<Instant>,
}

/// Why the task stops.
enum Stop {
    /// The handle is gone or closed the session.
    Closed,
    /// The provider failed; reported as a fatal error.
    Failed(SessionError),
}

impl SessionTask {
    /// Configures the session and replays the conversation so far.
    async fn start(
        &mut self,
        request: &SessionRequest,
        call: &SessionConfig,
    ) -> Result<(), SessionError> {
        let update = ClientEvent::SessionUpdate {
            session: Box::new(request.settings(self.config.dialect)),
        };
        self.send(&update).await.map_err(SessionError::fatal)?;
        for turn in &call.history {
            let item = match turn.speaker {
                Speaker::Caller => MessageItem::user(turn.text.clone()),
                Speaker::Agent => MessageItem::assistant(turn.text.clone(), self.config.dialect),
            };
            self.send(&ClientEvent::ItemCreate { item })
                .await
                .map_err(SessionError::fatal)?;
        }
        Ok(())
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let queue = self.queue.clone();
        let mut samples = Vec::new();
        let stop = loop {
            let deadline = self.deadline;
            let overdue = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let step = tokio::select! {
                command = commands.recv() => match command {
                    None => Err(Stop::Closed),
                    Some(Command::Commit) => self.commit(&mut samples).await,
                    Some(Command::Cancel { epoch, played }) => {
                        self.events.set_epoch(epoch);
                        self.cancel(played).await
                    }
                },
                _ = queue.ready.notified() => {
                    if commands.is_closed() {
                        Err(Stop::Closed)
                    } else {
                        self.flush_audio(&mut samples).await.map_err(Stop::Failed)
                    }
                }
                message = self.socket.next() => self.receive(message).await,
                _ = overdue => Err(Stop::Failed(failure(
                    ErrorKind::Timeout,
                    format!("no answer from the provider for {} ms", self.config.response_timeout.as_millis()),
                ).fatal())),
            };
            if let Err(stop) = step {
                break stop;
            }
        };
        if let Stop::Failed(error) = stop {
            warn!(error = %error, "provider session failed");
            let _ = self.events.send(SessionEvent::Error(error)).await;
        }
        let _ = self.socket.close(None).await;
    }

    async fn send(&mut self, event: &ClientEvent) -> Result<(), SessionError> {
        let json = serde_json::to_string(event)
            .map_err(|e| failure(ErrorKind::Protocol, format!("cannot encode an event: {e}")))?;
        self.socket
            .send(Message::text(json))
            .await
            .map_err(|e| self.closed(format!("sending to the provider failed: {e}")))
    }

    fn closed(&self, message: String) -> SessionError {
        let kind = if self.awaiting_response {
            ErrorKind::ClosedMidResponse
        } else {
            ErrorKind::Connect
        };
        failure(kind, message).fatal()
    }

    async fn flush_audio(&mut self, samples: &mut Vec<i16>) -> Result<(), SessionError> {
        samples.clear();
        self.queue.take_into(samples);
        if samples.is_empty() {
            return Ok(());
        }
        self.wire.clear();
        self.uplink
            .encode(samples, &mut self.wire)
            .map_err(|e| failure(ErrorKind::Protocol, e.to_string()))?;
        if self.wire.is_empty() {
            return Ok(());
        }
        let append = ClientEvent::InputAudioAppend {
            audio: encode_audio(&self.wire),
        };
        self.send(&append).await
    }

    async fn commit(&mut self, samples: &mut Vec<i16>) -> Result<(), Stop> {
        self.flush_audio(samples).await.map_err(Stop::Failed)?;
        if self.config.server_vad {
            // The server commits and answers on its own.
            return Ok(());
        }
        self.send(&ClientEvent::InputAudioCommit {})
            .await
            .map_err(Stop::Failed)?;
        self.send(&ClientEvent::ResponseCreate {})
            .await
            .map_err(Stop::Failed)?;
        self.awaiting_response = true;
        self.deadline = Some(Instant::now() + self.config.response_timeout);
        Ok(())
    }

    async fn cancel(&mut self, played: Duration) -> Result<(), Stop> {
        let Some(response) = self.response.as_mut() else {
            return Ok(());
        };
        if response.cancelled {
            return Ok(());
        }
        response.cancelled = true;
        let id = response.id.clone();
        // Clamped: truncating beyond the audio the server sent is an error on its side.
        let truncate = response.item_id.clone().map(|item_id| {
            let received_ms = self.format.ms_of(response.audio_bytes);
            ClientEvent::ItemTruncate {
                item_id,
                content_index: 0,
                audio_end_ms: (played.as_millis() as u64).min(received_ms),
            }
        });
        self.send(&ClientEvent::ResponseCancel {
            response_id: Some(id),
        })
        .await
        .map_err(Stop::Failed)?;
        if let Some(truncate) = truncate {
            self.send(&truncate).await.map_err(Stop::Failed)?;
        }
        Ok(())
    }

    async fn emit(&self, event: SessionEvent) -> Result<(), Stop> {
        if self.events.send(event).await {
            Ok(())
        } else {
            Err(Stop::Closed)
        }
    }

    async fn receive(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), Stop> {
        let text = match message {
            None => {
                return Err(Stop::Failed(
                    self.closed("the provider closed the connection".into()),
                ))
            }
            Some(Err(e)) => {
                return Err(Stop::Failed(
                    self.closed(format!("the provider connection failed: {e}")),
                ))
            }
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!(" ({} {})", f.code, f.reason))
                    .unwrap_or_default();
                return Err(Stop::Failed(
                    self.closed(format!("the provider closed the connection{why}")),
                ));
            }
            // Pings are answered by tungstenite; binary frames are not part of the protocol.
            Some(Ok(_)) => return Ok(()),
        };
        if self.awaiting_response {
            self.deadline = Some(Instant::now() + self.config.response_timeout);
        }
        let event = match parse_server_event(text.as_str()) {
            Ok(event) => event,
            Err(e) => {
                // One bad event does not end the call; the failover policy counts it.
                return self
                    .emit(SessionEvent::Error(failure(
                        ErrorKind::Protocol,
                        e.to_string(),
                    )))
                    .await;
            }
        };
        self.handle(event).await
    }

    async fn handle(&mut self, event: ServerEvent) -> Result<(), Stop> {
        match event {
            ServerEvent::SessionCreated { .. } | ServerEvent::SessionUpdated { .. } => Ok(()),
            ServerEvent::SpeechStarted { .. } => self.emit(SessionEvent::SpeechStarted).await,
            ServerEvent::SpeechStopped { .. } => {
                if self.config.server_vad {
                    self.awaiting_response = true;
                    self.deadline = Some(Instant::now() + self.config.response_timeout);
                }
                self.emit(SessionEvent::SpeechStopped).await
            }
            ServerEvent::InputTranscript { transcript, .. } => {
                self.emit(SessionEvent::CallerText(transcript)).await
            }
            ServerEvent::ResponseCreated { response } => {
                self.response = Some(ActiveResponse {
                    id: response.id,
                    item_id: None,
                    audio_bytes: 0,
                    cancelled: false,
                    error_reported: false,
                });
                Ok(())
            }
            ServerEvent::OutputItemAdded { response_id, item } => {
                if let Some(active) = self.response.as_mut().filter(|r| r.id == response_id) {
                    if active.item_id.is_none() && item.role.as_deref() != Some("user") {
                        active.item_id = Some(item.id);
                    }
                }
                Ok(())
            }
            ServerEvent::AudioDelta {
                response_id,
                item_id,
                delta,
            } => self.audio(&response_id, item_id, &delta).await,
            ServerEvent::TranscriptDelta { response_id, delta }
            | ServerEvent::TextDelta { response_id, delta } => {
                if self.is_live(&response_id) {
                    self.emit(SessionEvent::ReplyText(delta)).await
                } else {
                    Ok(())
                }
            }
            ServerEvent::ResponseDone { response } => self.done(response).await,
            ServerEvent::Error { error } => self.server_error(error).await,
            ServerEvent::RateLimitsUpdated { rate_limits } => {
                for limit in rate_limits {
                    debug!(name = %limit.name, remaining = limit.remaining, reset_s = limit.reset_seconds, "provider rate limit");
                }
                Ok(())
            }
            ServerEvent::InputCommitted { .. }
            | ServerEvent::AudioDone { .. }
            | ServerEvent::TranscriptDone { .. }
            | ServerEvent::ItemTruncated { .. }
            | ServerEvent::Unknown => Ok(()),
        }
    }

    fn is_live(&self, response_id: &str) -> bool {
        match &self.response {
            Some(r) => !r.cancelled && (response_id.is_empty() || r.id == response_id),
            // Deltas without a response.created: accept rather than lose the reply.
            None => true,
        }
    }

    async fn audio(&mut self, response_id: &str, item_id: String, delta: &str) -> Result<(), Stop> {
        let bytes = match super::protocol::decode_audio(delta) {
            Ok(bytes) => bytes,
            Err(e) => {
                return self
                    .emit(SessionEvent::Error(failure(
                        ErrorKind::Protocol,
                        format!("audio delta is not base64: {e}"),
                    )))
                    .await
            }
        };
        if let Some(active) = self.response.as_mut() {
            if response_id.is_empty() || active.id == response_id {
                if active.item_id.is_none() && !item_id.is_empty() {
                    active.item_id = Some(item_id);
                }
                active.audio_bytes += bytes.len() as u64;
            }
        }
        if !self.is_live(response_id) {
            return Ok(());
        }
        let pcm = self
            .downlink
            .decode(&bytes)
            .map_err(|e| Stop::Failed(failure(ErrorKind::Protocol, e.to_string()).fatal()))?;
        if pcm.is_empty() {
            return Ok(());
        }
        self.emit(SessionEvent::ReplyAudio(pcm)).await
    }

    async fn done(&mut self, response: ResponseInfo) -> Result<(), Stop> {
        self.awaiting_response = false;
        self.deadline = None;
        let ours = self.response.take();
        let cancelled =
            response.status == "cancelled" || ours.as_ref().is_some_and(|r| r.cancelled);
        let already_reported = ours.as_ref().is_some_and(|r| r.error_reported);
        if response.status == "failed" && !already_reported {
            let detail = response
                .status_details
                .as_ref()
                .and_then(|d| d.error.clone())
                .unwrap_or_default();
            let error = classify_error(&detail);
            self.emit(SessionEvent::Error(error)).await?;
        }
        let usage = response.usage.map(|u| Usage {
            input_audio_tokens: u.input_token_details.audio_tokens,
            input_text_tokens: u.input_token_details.text_tokens,
            input_cached_tokens: u.input_token_details.cached_tokens,
            output_audio_tokens: u.output_token_details.audio_tokens,
            output_text_tokens: u.output_token_details.text_tokens,
        });
        self.emit(SessionEvent::ReplyDone(ReplyDone {
            cancelled,
            ends_call: false,
            usage,
        }))
        .await
    }

    async fn server_error(&mut self, detail: ErrorDetail) -> Result<(), Stop> {
        // A cancel that crossed the response's end on the wire: nothing went wrong.
        if detail.code.as_deref() == Some("response_cancel_not_active") {
            return Ok(());
        }
        let error = classify_error(&detail);
        if error.fatal {
            return Err(Stop::Failed(error));
        }
        if let Some(active) = self.response.as_mut() {
            active.error_reported = true;
        }
        self.emit(SessionEvent::Error(error)).await
    }
}

/// The failover class of an `error` event (or a failed response's error).
pub fn classify_error(detail: &ErrorDetail) -> SessionError {
    let code = detail.code.as_deref().unwrap_or("");
    let kind = match (detail.kind.as_str(), code) {
        (_, "rate_limit_exceeded") | ("rate_limit_error", _) => ErrorKind::RateLimit,
        (_, "invalid_api_key" | "insufficient_quota")
        | ("authentication_error" | "permission_error", _) => ErrorKind::Auth,
        ("server_error", _) | (_, "server_error") => ErrorKind::Server,
        _ => ErrorKind::InvalidRequest,
    };
    let message = if detail.message.is_empty() {
        format!("{} {}", detail.kind, code)
    } else {
        detail.message.chars().take(300).collect()
    };
    let error = failure(kind, format!("provider error: {message}"));
    if kind == ErrorKind::Auth {
        error.fatal()
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audio_queue_drops_the_oldest_and_counts() {
        let queue = AudioQueue::new(10);
        queue.push(&[1, 2, 3, 4, 5, 6]);
        queue.push(&[7, 8, 9, 10, 11, 12]);
        let mut out = Vec::new();
        queue.take_into(&mut out);
        assert_eq!(out, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
        queue.push(&(0..25).collect::<Vec<i16>>());
        out.clear();
        queue.take_into(&mut out);
        assert_eq!(out, (15..25).collect::<Vec<i16>>());
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 17);
    }

    #[test]
    fn error_events_map_to_failover_classes() {
        let cases = [
            ("server_error", None, ErrorKind::Server, false),
            (
                "invalid_request_error",
                Some("rate_limit_exceeded"),
                ErrorKind::RateLimit,
                false,
            ),
            (
                "invalid_request_error",
                Some("invalid_api_key"),
                ErrorKind::Auth,
                true,
            ),
            (
                "invalid_request_error",
                Some("unknown_parameter"),
                ErrorKind::InvalidRequest,
                false,
            ),
        ];
        for (kind, code, expected, fatal) in cases {
            let e = classify_error(&ErrorDetail {
                kind: kind.into(),
                code: code.map(str::to_owned),
                message: "m".into(),
                event_id: None,
            });
            assert_eq!((e.kind, e.fatal), (expected, fatal), "{kind} {code:?}");
        }
    }
}
