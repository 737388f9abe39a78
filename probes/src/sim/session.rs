//! One connection's conversation, as a sans-IO state machine.
//!
//! The connection task feeds it client messages and timer ticks with the current time
//! and sends what it returns; the session never touches a socket or a clock. That keeps
//! the turn logic (settings, audio buffer, server VAD, response pacing, cancel,
//! truncate, faults) testable without the network, and lets tests drive the whole sim
//! under paused tokio time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use engine::backend::provider::protocol::{
    decode_audio, encode_audio, parse_client_event, AudioInput, AudioOutput, BetaTurnDetection,
    ClientEvent, ContentPart, Dialect, ErrorDetail, ItemInfo, ParseError, RateLimit, ResponseInfo,
    ResponseUsage, ServerEvent, SessionAudio, SessionSettings, StatusDetails, Transcription,
    TurnDetection, WireAudio,
};
use engine::backend::provider::protocol::{InputTokenDetails, OutputTokenDetails};
use serde::Deserialize;
use tokio::time::Instant;

use super::audio::ReplyAudio;
use super::faults::{Faults, RateLimitMode, Sampler};
use super::vad::{EnergyVad, VadEvent, DEFAULT_SILENCE_MS};

/// The API refuses to commit less audio than this.
const MIN_COMMIT_MS: u64 = 100;
/// Client event types the sim understands (the engine client's set).
const KNOWN_EVENTS: [&str; 8] = [
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "response.create",
    "response.cancel",
    "conversation.item.truncate",
    "conversation.item.create",
];
/// Longest error message echoed back: serde quotes the offending input, which a hostile
/// client controls.
const MAX_MESSAGE_CHARS: usize = 300;

/// Token rates of the synthetic `usage` (the published Realtime rates for audio, the
/// usual ~4 characters per token for text).
pub mod rates {
    /// ms of caller audio per input audio token.
    pub const INPUT_AUDIO_MS_PER_TOKEN: u64 = 100;
    /// ms of reply audio per output audio token.
    pub const OUTPUT_AUDIO_MS_PER_TOKEN: u64 = 50;
    /// Characters per text token.
    pub const CHARS_PER_TOKEN: u64 = 4;
}

/// What every session of one sim shares.
#[derive(Debug)]
pub struct SessionConfig {
    /// The reply audio.
    pub reply: ReplyAudio,
    /// The reply's transcript.
    pub reply_text: String,
    /// The caller transcript; `{seconds}` is replaced by the committed audio's length.
    pub caller_transcript: String,
    /// Audio per delta, in ms.
    pub delta_ms: u64,
}

/// What a connection opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// Connection number.
    pub conn: u64,
    /// Dialect announced by the handshake (`OpenAI-Beta: realtime=v1` means beta).
    pub dialect: Dialect,
    /// Model named in the URL.
    pub model: String,
}

/// What the connection must do.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "outputs live briefly in a Vec and are sent at once; boxing buys nothing"
)]
pub enum Output {
    /// Send this event.
    Send(ServerEvent),
    /// Drop the connection without a close frame (the `close_after_ms` fault).
    Close,
}

/// The session settings in force.
#[derive(Debug, Clone)]
struct Settings {
    dialect: Dialect,
    model: String,
    instructions: String,
    voice: String,
    input: WireAudio,
    output: WireAudio,
    turn_detection: Option<TurnDetection>,
    transcription: Option<Transcription>,
}

/// What a response does at its next deadline.
#[derive(Debug, Clone)]
enum Step {
    Stream,
    Fail(ErrorDetail),
}

#[derive(Debug)]
struct Response {
    id: String,
    item_id: String,
    output: WireAudio,
    step: Step,
    first_at: Instant,
    next_at: Instant,
    close_at: Option<Instant>,
    delta_jitter_ms: u64,
    chunks_sent: usize,
    bytes_sent: u64,
    words_sent: usize,
    text_sent: String,
}

/// One connection's conversation.
#[derive(Debug)]
pub struct Session {
    conn: u64,
    config: Arc<SessionConfig>,
    sampler: Sampler,
    settings: Settings,
    /// Bytes appended since the last commit or clear.
    buffer_bytes: u64,
    /// The user item of the turn the server VAD is hearing.
    user_item: Option<String>,
    vad: EnergyVad,
    /// Caller audio committed so far (all turns), for `usage`.
    conversation_audio_ms: u64,
    /// Text in the conversation so far (items, earlier replies), for `usage`.
    conversation_text_chars: u64,
    /// Reply audio sent per assistant item, in ms: what `truncate` is checked against.
    assistant_items: HashMap<String, u64>,
    response: Option<Response>,
    ids: u64,
}

impl Session {
    /// A new session.
    pub fn new(opening: Opening, config: Arc<SessionConfig>, sampler: Sampler) -> Self {
        Self {
            conn: opening.conn,
            config,
            sampler,
            settings: Settings {
                dialect: opening.dialect,
                model: opening.model,
                instructions: String::new(),
                voice: "alloy".into(),
                input: WireAudio::Pcm24k,
                output: WireAudio::Pcm24k,
                // The API's defaults: server VAD on, answering and interrupting by itself.
                turn_detection: Some(TurnDetection {
                    kind: "server_vad".into(),
                    create_response: Some(true),
                    interrupt_response: Some(true),
                    silence_duration_ms: Some(DEFAULT_SILENCE_MS as u32),
                }),
                transcription: None,
            },
            buffer_bytes: 0,
            user_item: None,
            vad: EnergyVad::new(DEFAULT_SILENCE_MS),
            conversation_audio_ms: 0,
            conversation_text_chars: 0,
            assistant_items: HashMap::new(),
            response: None,
            ids: 0,
        }
    }

    /// The dialect events must be sent in.
    pub fn dialect(&self) -> Dialect {
        self.settings.dialect
    }

    /// The first event of the connection.
    pub fn open(&mut self) -> Vec<Output> {
        vec![Output::Send(ServerEvent::SessionCreated {
            session: self.session_object(),
        })]
    }

    /// When [`Self::on_timer`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.response.as_ref().map(|r| match r.close_at {
            Some(close) => close.min(r.next_at),
            None => r.next_at,
        })
    }

    /// A binary message (the API speaks JSON text only).
    pub fn on_binary(&mut self) -> Vec<Output> {
        vec![invalid(
            Some("invalid_value"),
            "Binary WebSocket messages are not supported; send JSON text events.".into(),
            None,
        )]
    }

    /// A text message from the client.
    pub fn on_text(&mut self, text: &str, now: Instant, faults: &Faults) -> Vec<Output> {
        let event_id = client_event_id(text);
        match parse_client_event(text) {
            Ok(event) => self.on_event(event, event_id, now, faults),
            Err(e) => vec![unparseable(&e, event_id)],
        }
    }

    /// Time passed: streams what is due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(r) = &self.response {
            match r.close_at {
                Some(close) if close <= now && close <= r.next_at => {
                    out.push(Output::Close);
                    self.response = None;
                    return out;
                }
                _ => {}
            }
            if r.next_at > now {
                break;
            }
            self.step(&mut out);
        }
        out
    }

    fn on_event(
        &mut self,
        event: ClientEvent,
        event_id: Option<String>,
        now: Instant,
        faults: &Faults,
    ) -> Vec<Output> {
        match event {
            ClientEvent::SessionUpdate { session } => self.update(&session, event_id),
            ClientEvent::InputAudioAppend { audio } => self.append(&audio, event_id, now, faults),
            ClientEvent::InputAudioCommit {} => self.commit(false, event_id, now, faults),
            ClientEvent::InputAudioClear {} => {
                // The API answers `input_audio_buffer.cleared`, which the client does not
                // act on and the shared types do not carry; nothing is sent.
                self.buffer_bytes = 0;
                self.user_item = None;
                self.vad.reset_turn();
                Vec::new()
            }
            ClientEvent::ResponseCreate {} => self.create_response(event_id, now, faults),
            ClientEvent::ResponseCancel { response_id } => self.cancel(response_id, event_id),
            ClientEvent::ItemTruncate {
                item_id,
                content_index,
                audio_end_ms,
            } => self.truncate(item_id, content_index, audio_end_ms, event_id),
            ClientEvent::ItemCreate { item } => {
                let chars: usize = item
                    .content
                    .iter()
                    .map(|part| match part {
                        ContentPart::InputText { text }
                        | ContentPart::OutputText { text }
                        | ContentPart::Text { text } => text.chars().count(),
                    })
                    .sum();
                self.conversation_text_chars += chars as u64;
                Vec::new()
            }
        }
    }

    fn update(&mut self, session: &SessionSettings, event_id: Option<String>) -> Vec<Output> {
        let mut next = self.settings.clone();
        if let Some(audio) = &session.audio {
            let (Some(input), Some(output)) = (
                WireAudio::from_ga(&audio.input.format),
                WireAudio::from_ga(&audio.output.format),
            ) else {
                return vec![unsupported_format(event_id)];
            };
            next.input = input;
            next.output = output;
            next.turn_detection.clone_from(&audio.input.turn_detection);
            next.transcription.clone_from(&audio.input.transcription);
            if let Some(voice) = &audio.output.voice {
                next.voice.clone_from(voice);
            }
        }
        for (name, slot) in [
            (&session.input_audio_format, &mut next.input),
            (&session.output_audio_format, &mut next.output),
        ] {
            if let Some(name) = name {
                let Some(format) = WireAudio::from_beta(name) else {
                    return vec![unsupported_format(event_id)];
                };
                *slot = format;
            }
        }
        match &session.turn_detection {
            BetaTurnDetection::Absent => {}
            BetaTurnDetection::Off => next.turn_detection = None,
            BetaTurnDetection::On(t) => next.turn_detection = Some(t.clone()),
        }
        if let Some(t) = &session.input_audio_transcription {
            next.transcription = Some(t.clone());
        }
        if let Some(voice) = &session.voice {
            next.voice.clone_from(voice);
        }
        if let Some(instructions) = &session.instructions {
            next.instructions.clone_from(instructions);
        }
        if let Some(model) = &session.model {
            next.model.clone_from(model);
        }
        if let Some(dialect) = dialect_of(session) {
            next.dialect = dialect;
        }
        let silence = next
            .turn_detection
            .as_ref()
            .and_then(|t| t.silence_duration_ms)
            .map_or(DEFAULT_SILENCE_MS, u64::from);
        if next.input != self.settings.input || next.turn_detection != self.settings.turn_detection
        {
            self.vad = EnergyVad::new(silence);
            self.user_item = None;
        }
        self.settings = next;
        vec![Output::Send(ServerEvent::SessionUpdated {
            session: self.session_object(),
        })]
    }

    fn append(
        &mut self,
        audio: &str,
        event_id: Option<String>,
        now: Instant,
        faults: &Faults,
    ) -> Vec<Output> {
        let Ok(bytes) = decode_audio(audio) else {
            return vec![invalid(
                Some("invalid_value"),
                "Invalid 'audio'. Expected base64-encoded audio bytes.".into(),
                event_id,
            )];
        };
        self.buffer_bytes += bytes.len() as u64;
        let mut out = Vec::new();
        if self.settings.turn_detection.is_none() {
            return out;
        }
        for change in self.vad.push(self.settings.input, &bytes) {
            match change {
                VadEvent::Started(audio_start_ms) => {
                    let item_id = self.next_id("item");
                    self.user_item = Some(item_id.clone());
                    out.push(Output::Send(ServerEvent::SpeechStarted {
                        audio_start_ms,
                        item_id: Some(item_id),
                    }));
                    let interrupts = self
                        .settings
                        .turn_detection
                        .as_ref()
                        .is_some_and(|t| t.interrupt_response != Some(false));
                    if interrupts && self.response.is_some() {
                        out.extend(self.finish("cancelled", Some("turn_detected"), None));
                    }
                }
                VadEvent::Stopped(audio_end_ms) => {
                    out.push(Output::Send(ServerEvent::SpeechStopped {
                        audio_end_ms,
                        item_id: self.user_item.clone(),
                    }));
                    out.extend(self.commit(true, None, now, faults));
                }
            }
        }
        out
    }

    fn commit(
        &mut self,
        automatic: bool,
        event_id: Option<String>,
        now: Instant,
        faults: &Faults,
    ) -> Vec<Output> {
        let buffered_ms = self.settings.input.ms_of(self.buffer_bytes);
        if faults.stall {
            tracing::debug!(conn = self.conn, "stall fault: commit swallowed");
            self.buffer_bytes = 0;
            self.user_item = None;
            return Vec::new();
        }
        if buffered_ms < MIN_COMMIT_MS {
            if automatic {
                return Vec::new();
            }
            return vec![invalid(
                Some("input_audio_buffer_commit_empty"),
                format!(
                    "Error committing input audio buffer: buffer too small. Expected at least \
                     {MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms}ms of audio."
                ),
                event_id,
            )];
        }
        let item_id = match self.user_item.take() {
            Some(id) => id,
            None => self.next_id("item"),
        };
        self.buffer_bytes = 0;
        self.vad.reset_turn();
        self.conversation_audio_ms += buffered_ms;
        let mut out = vec![Output::Send(ServerEvent::InputCommitted {
            item_id: Some(item_id.clone()),
        })];
        if self.settings.transcription.is_some() {
            let seconds = format!("{:.1}", buffered_ms as f64 / 1000.0);
            let transcript = self.config.caller_transcript.replace("{seconds}", &seconds);
            self.conversation_text_chars += transcript.chars().count() as u64;
            out.push(Output::Send(ServerEvent::InputTranscript {
                item_id: Some(item_id),
                transcript,
            }));
        }
        let answers = self
            .settings
            .turn_detection
            .as_ref()
            .is_some_and(|t| t.create_response != Some(false));
        if answers && self.response.is_none() {
            out.extend(self.create_response(None, now, faults));
        }
        out
    }

    fn create_response(
        &mut self,
        event_id: Option<String>,
        now: Instant,
        faults: &Faults,
    ) -> Vec<Output> {
        if faults.stall {
            tracing::debug!(conn = self.conn, "stall fault: response.create swallowed");
            return Vec::new();
        }
        if let Some(active) = &self.response {
            return vec![invalid(
                Some("conversation_already_has_active_response"),
                format!(
                    "Conversation already has an active response in progress: {}. Wait until \
                     the response is finished before creating a new one.",
                    active.id
                ),
                event_id,
            )];
        }
        let id = self.next_id("resp");
        let item_id = self.next_id("item");
        let mut out = vec![
            Output::Send(ServerEvent::ResponseCreated {
                response: ResponseInfo {
                    id: id.clone(),
                    status: "in_progress".into(),
                    ..ResponseInfo::default()
                },
            }),
            Output::Send(ServerEvent::OutputItemAdded {
                response_id: id.clone(),
                item: ItemInfo {
                    id: item_id.clone(),
                    kind: "message".into(),
                    role: Some("assistant".into()),
                },
            }),
        ];
        self.assistant_items.insert(item_id.clone(), 0);
        let first_at = now + self.sampler.first_audio(faults);
        let step = if faults.rate_limit == RateLimitMode::Event {
            Step::Fail(ErrorDetail {
                kind: "rate_limit_exceeded".into(),
                code: Some("rate_limit_exceeded".into()),
                message: "Rate limit reached for requests (provider-sim injected fault).".into(),
                event_id: None,
            })
        } else if self.sampler.fails(faults) {
            Step::Fail(ErrorDetail {
                kind: "server_error".into(),
                code: None,
                message: "The server had an error while processing your request. Sorry about \
                          that! (provider-sim injected fault)"
                    .into(),
                event_id: None,
            })
        } else {
            Step::Stream
        };
        let immediate = matches!(step, Step::Fail(_)) && faults.rate_limit == RateLimitMode::Event;
        self.response = Some(Response {
            id,
            item_id,
            output: self.settings.output,
            step,
            first_at,
            // A rate limit is known at once; anything else shows up when audio would.
            next_at: if immediate { now } else { first_at },
            close_at: faults
                .close_after_ms
                .map(|ms| now + Duration::from_millis(ms)),
            delta_jitter_ms: faults.delta_jitter_ms,
            chunks_sent: 0,
            bytes_sent: 0,
            words_sent: 0,
            text_sent: String::new(),
        });
        if immediate {
            out.extend(self.on_timer(now));
        }
        out
    }

    /// Does what the active response has due now.
    fn step(&mut self, out: &mut Vec<Output>) {
        let config = Arc::clone(&self.config);
        let Some(r) = &mut self.response else {
            return;
        };
        if let Step::Fail(error) = &r.step {
            let error = error.clone();
            out.push(Output::Send(ServerEvent::Error {
                error: error.clone(),
            }));
            out.extend(self.finish("failed", None, Some(error)));
            return;
        }
        let mut chunks = config.reply.chunks(r.output, config.delta_ms);
        let total = chunks.len();
        let Some(chunk) = chunks.nth(r.chunks_sent) else {
            out.extend(self.finish("completed", None, None));
            return;
        };
        let words: Vec<&str> = config.reply_text.split_inclusive(' ').collect();
        let due_words = (words.len() * (r.chunks_sent + 1)).div_ceil(total.max(1));
        if due_words > r.words_sent {
            let delta: String = words[r.words_sent..due_words].concat();
            r.words_sent = due_words;
            r.text_sent.push_str(&delta);
            out.push(Output::Send(ServerEvent::TranscriptDelta {
                response_id: r.id.clone(),
                delta,
            }));
        }
        out.push(Output::Send(ServerEvent::AudioDelta {
            response_id: r.id.clone(),
            item_id: r.item_id.clone(),
            delta: encode_audio(chunk),
        }));
        r.bytes_sent += chunk.len() as u64;
        r.chunks_sent += 1;
        self.assistant_items
            .insert(r.item_id.clone(), r.output.ms_of(r.bytes_sent));
        if r.chunks_sent == total {
            out.extend(self.finish("completed", None, None));
            return;
        }
        // Slots are fixed on the first audio, so lateness never accumulates into drift
        // and the stream stays at real time on average.
        let slot = config.delta_ms.saturating_mul(r.chunks_sent as u64);
        let late = self.sampler.delta_lateness(r.delta_jitter_ms);
        r.next_at = (r.first_at + Duration::from_millis(slot) + late).max(r.next_at);
    }

    /// Ends the active response with `status`.
    fn finish(
        &mut self,
        status: &str,
        reason: Option<&str>,
        error: Option<ErrorDetail>,
    ) -> Vec<Output> {
        let Some(r) = self.response.take() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if status == "completed" {
            out.push(Output::Send(ServerEvent::AudioDone {
                response_id: r.id.clone(),
            }));
            out.push(Output::Send(ServerEvent::TranscriptDone {
                response_id: r.id.clone(),
                transcript: r.text_sent.clone(),
            }));
        }
        let usage = self.usage(r.output.ms_of(r.bytes_sent), &r.text_sent);
        self.conversation_text_chars += r.text_sent.chars().count() as u64;
        let status_details = (status != "completed").then(|| StatusDetails {
            kind: Some(status.into()),
            reason: reason.map(Into::into),
            error,
        });
        out.push(Output::Send(ServerEvent::ResponseDone {
            response: ResponseInfo {
                id: r.id,
                status: status.into(),
                status_details,
                usage: Some(usage),
            },
        }));
        out.push(Output::Send(ServerEvent::RateLimitsUpdated {
            rate_limits: rate_limits(usage.total_tokens),
        }));
        out
    }

    fn cancel(&mut self, response_id: Option<String>, event_id: Option<String>) -> Vec<Output> {
        let matches = match (&self.response, &response_id) {
            (Some(active), Some(id)) => &active.id == id,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !matches {
            return vec![invalid(
                Some("response_cancel_not_active"),
                "Cancellation failed: no active response found".into(),
                event_id,
            )];
        }
        self.finish("cancelled", Some("client_cancelled"), None)
    }

    fn truncate(
        &mut self,
        item_id: String,
        content_index: u32,
        audio_end_ms: u64,
        event_id: Option<String>,
    ) -> Vec<Output> {
        let Some(sent_ms) = self.assistant_items.get(&item_id).copied() else {
            return vec![invalid(
                Some("item_not_found"),
                format!(
                    "Invalid 'item_id': no assistant audio item '{}' in this conversation.",
                    clip(&item_id)
                ),
                event_id,
            )];
        };
        if content_index != 0 {
            return vec![invalid(
                Some("invalid_value"),
                format!("Invalid 'content_index': {content_index}; the item has one part (0)."),
                event_id,
            )];
        }
        if audio_end_ms > sent_ms {
            return vec![invalid(
                Some("invalid_value"),
                format!("Audio content of {sent_ms}ms is already shorter than {audio_end_ms}ms"),
                event_id,
            )];
        }
        self.assistant_items.insert(item_id.clone(), audio_end_ms);
        vec![Output::Send(ServerEvent::ItemTruncated {
            item_id,
            audio_end_ms,
        })]
    }

    /// Synthetic token usage of one response; see [`rates`].
    fn usage(&self, output_audio_ms: u64, output_text: &str) -> ResponseUsage {
        let text_tokens = |chars: u64| chars.div_ceil(rates::CHARS_PER_TOKEN);
        let input = InputTokenDetails {
            cached_tokens: 0,
            text_tokens: text_tokens(
                self.settings.instructions.chars().count() as u64 + self.conversation_text_chars,
            ),
            audio_tokens: self
                .conversation_audio_ms
                .div_ceil(rates::INPUT_AUDIO_MS_PER_TOKEN),
        };
        let output = OutputTokenDetails {
            text_tokens: text_tokens(output_text.chars().count() as u64),
            audio_tokens: output_audio_ms.div_ceil(rates::OUTPUT_AUDIO_MS_PER_TOKEN),
        };
        let input_tokens = input.text_tokens + input.audio_tokens;
        let output_tokens = output.text_tokens + output.audio_tokens;
        ResponseUsage {
            total_tokens: input_tokens + output_tokens,
            input_tokens,
            output_tokens,
            input_token_details: input,
            output_token_details: output,
        }
    }

    /// The session as `session.created` / `session.updated` show it.
    fn session_object(&self) -> serde_json::Value {
        let s = &self.settings;
        let settings = match s.dialect {
            Dialect::Ga => SessionSettings {
                kind: Some("realtime".into()),
                model: Some(s.model.clone()),
                instructions: Some(s.instructions.clone()),
                output_modalities: Some(vec!["audio".into()]),
                audio: Some(SessionAudio {
                    input: AudioInput {
                        format: s.input.ga(),
                        turn_detection: s.turn_detection.clone(),
                        transcription: s.transcription.clone(),
                    },
                    output: AudioOutput {
                        format: s.output.ga(),
                        voice: Some(s.voice.clone()),
                    },
                }),
                ..SessionSettings::default()
            },
            Dialect::Beta => SessionSettings {
                instructions: Some(s.instructions.clone()),
                modalities: Some(vec!["audio".into(), "text".into()]),
                voice: Some(s.voice.clone()),
                input_audio_format: Some(s.input.beta().into()),
                output_audio_format: Some(s.output.beta().into()),
                turn_detection: s
                    .turn_detection
                    .clone()
                    .map_or(BetaTurnDetection::Off, BetaTurnDetection::On),
                input_audio_transcription: s.transcription.clone(),
                ..SessionSettings::default()
            },
        };
        let mut value = serde_json::to_value(settings).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("id".into(), format!("sess_sim{}", self.conn).into());
            object.insert("object".into(), "realtime.session".into());
            object.insert("model".into(), s.model.clone().into());
        }
        value
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.ids += 1;
        format!("{prefix}_sim{}_{}", self.conn, self.ids)
    }
}

/// Which dialect a `session.update` is written in, if it tells.
fn dialect_of(session: &SessionSettings) -> Option<Dialect> {
    let ga = session.kind.is_some()
        || session.audio.is_some()
        || session.output_modalities.is_some()
        || session.model.is_some();
    let beta = session.modalities.is_some()
        || session.voice.is_some()
        || session.input_audio_format.is_some()
        || session.output_audio_format.is_some()
        || session.turn_detection != BetaTurnDetection::Absent
        || session.input_audio_transcription.is_some();
    match (ga, beta) {
        (true, _) => Some(Dialect::Ga),
        (false, true) => Some(Dialect::Beta),
        (false, false) => None,
    }
}

fn rate_limits(used_tokens: u64) -> Vec<RateLimit> {
    const TOKENS_PER_MINUTE: u64 = 40_000;
    vec![
        RateLimit {
            name: "requests".into(),
            limit: 5000,
            remaining: 4999,
            reset_seconds: 0.012,
        },
        RateLimit {
            name: "tokens".into(),
            limit: TOKENS_PER_MINUTE,
            remaining: TOKENS_PER_MINUTE.saturating_sub(used_tokens),
            reset_seconds: used_tokens as f64 * 60.0 / TOKENS_PER_MINUTE as f64,
        },
    ]
}

/// The client's `event_id`, for the `error` it may cause.
fn client_event_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct WithId {
        event_id: Option<String>,
    }
    serde_json::from_str::<WithId>(text)
        .ok()
        .and_then(|w| w.event_id)
        .map(|id| clip(&id))
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

fn invalid(code: Option<&str>, message: String, event_id: Option<String>) -> Output {
    Output::Send(ServerEvent::Error {
        error: ErrorDetail {
            kind: "invalid_request_error".into(),
            code: code.map(Into::into),
            message: clip(&message),
            event_id,
        },
    })
}

fn unsupported_format(event_id: Option<String>) -> Output {
    invalid(
        Some("invalid_value"),
        "Unsupported audio format: provider-sim speaks audio/pcmu (g711_ulaw) and 24 kHz \
         audio/pcm (pcm16)."
            .into(),
        event_id,
    )
}

fn unparseable(error: &ParseError, event_id: Option<String>) -> Output {
    match error.event_type.as_deref() {
        None => invalid(
            Some("invalid_json"),
            format!(
                "The client event is not a JSON object with a string 'type': {}",
                error.source
            ),
            event_id,
        ),
        Some(kind) if KNOWN_EVENTS.contains(&kind) => invalid(
            Some("invalid_value"),
            format!("Invalid '{kind}' event: {}", error.source),
            event_id,
        ),
        Some(kind) => invalid(
            Some("invalid_value"),
            format!(
                "Invalid value: '{kind}'. provider-sim supports: {}.",
                KNOWN_EVENTS.join(", ")
            ),
            event_id,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::audio::ReplySource;

    fn session(reply_ms: u64) -> Session {
        let config = SessionConfig {
            reply: ReplyAudio::load(&ReplySource::Tone { ms: reply_ms }).unwrap(),
            reply_text: "one two three four five".into(),
            caller_transcript: "heard {seconds} s".into(),
            delta_ms: 100,
        };
        Session::new(
            Opening {
                conn: 1,
                dialect: Dialect::Ga,
                model: "gpt-realtime".into(),
            },
            Arc::new(config),
            Sampler::new(Some(1), 1),
        )
    }

    fn sent(out: Vec<Output>) -> Vec<ServerEvent> {
        out.into_iter()
            .map(|o| match o {
                Output::Send(e) => e,
                Output::Close => panic!("unexpected close"),
            })
            .collect()
    }

    fn pcmu_update(vad: bool) -> String {
        let td = if vad {
            r#"{"type":"server_vad"}"#
        } else {
            "null"
        };
        format!(
            r#"{{"type":"session.update","session":{{"type":"realtime","audio":{{"input":{{"format":{{"type":"audio/pcmu"}},"turn_detection":{td},"transcription":{{"model":"whisper-1"}}}},"output":{{"format":{{"type":"audio/pcmu"}}}}}}}}}}"#
        )
    }

    fn append(ms: usize, level: i16) -> String {
        let mut bytes = Vec::new();
        engine::audio::g711::ulaw_encode_into(&[level, -level].repeat(ms * 4), &mut bytes);
        format!(
            r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#,
            encode_audio(&bytes)
        )
    }

    /// Runs the session's timers until it has nothing scheduled.
    fn drain(s: &mut Session) -> Vec<ServerEvent> {
        let mut all = Vec::new();
        while let Some(at) = s.next_deadline() {
            all.extend(sent(s.on_timer(at)));
        }
        all
    }

    #[tokio::test(start_paused = true)]
    async fn commit_driven_turn_streams_the_whole_reply() {
        let mut s = session(1000);
        let faults = Faults::default();
        let t0 = Instant::now();
        sent(s.on_text(&pcmu_update(false), t0, &faults));
        assert!(sent(s.on_text(&append(500, 3000), t0, &faults)).is_empty());
        let ev = sent(s.on_text(r#"{"type":"input_audio_buffer.commit"}"#, t0, &faults));
        assert!(matches!(&ev[0], ServerEvent::InputCommitted { .. }));
        assert!(
            matches!(&ev[1], ServerEvent::InputTranscript { transcript, .. } if transcript == "heard 0.5 s")
        );
        assert_eq!(ev.len(), 2, "no response without server VAD");
        let ev = sent(s.on_text(r#"{"type":"response.create"}"#, t0, &faults));
        assert_eq!(ev.len(), 2);
        assert_eq!(
            s.next_deadline(),
            Some(t0 + Duration::from_millis(faults.first_audio_ms))
        );
        let ev = drain(&mut s);
        let audio: usize = ev
            .iter()
            .filter_map(|e| match e {
                ServerEvent::AudioDelta { delta, .. } => Some(decode_audio(delta).unwrap().len()),
                _ => None,
            })
            .sum();
        assert_eq!(audio, 8000);
        let text: String = ev
            .iter()
            .filter_map(|e| match e {
                ServerEvent::TranscriptDelta { delta, .. } => Some(delta.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "one two three four five");
        let Some(ServerEvent::ResponseDone { response }) = ev.iter().rev().nth(1) else {
            panic!("{ev:?}");
        };
        assert_eq!(response.status, "completed");
        let usage = response.usage.unwrap();
        assert_eq!(usage.input_token_details.audio_tokens, 5);
        assert_eq!(usage.output_token_details.audio_tokens, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn server_vad_detects_the_turn_and_answers() {
        let mut s = session(300);
        let faults = Faults::default();
        let t0 = Instant::now();
        sent(s.on_text(&pcmu_update(true), t0, &faults));
        let ev = sent(s.on_text(&append(400, 8000), t0, &faults));
        assert!(matches!(
            ev[..],
            [ServerEvent::SpeechStarted {
                audio_start_ms: 0,
                ..
            }]
        ));
        let ev = sent(s.on_text(&append(600, 0), t0, &faults));
        let kinds: Vec<_> = ev.iter().map(|e| format!("{e:?}")).collect();
        assert!(
            matches!(
                &ev[0],
                ServerEvent::SpeechStopped {
                    audio_end_ms: 900,
                    ..
                }
            ),
            "{kinds:?}"
        );
        assert!(matches!(&ev[1], ServerEvent::InputCommitted { .. }));
        assert!(matches!(&ev[3], ServerEvent::ResponseCreated { .. }));
        // Speech during the reply interrupts it.
        let ev = sent(s.on_text(&append(100, 8000), t0, &faults));
        assert!(matches!(&ev[0], ServerEvent::SpeechStarted { .. }));
        let ServerEvent::ResponseDone { response } = &ev[1] else {
            panic!("{ev:?}");
        };
        assert_eq!(response.status, "cancelled");
        assert_eq!(
            response.status_details.as_ref().unwrap().reason.as_deref(),
            Some("turn_detected")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn faults_fail_stall_and_close() {
        let t0 = Instant::now();
        let create = r#"{"type":"response.create"}"#;
        let mut s = session(1000);
        let failing = Faults {
            error_rate: 1.0,
            ..Faults::default()
        };
        assert_eq!(sent(s.on_text(create, t0, &failing)).len(), 2);
        let ev = drain(&mut s);
        assert!(matches!(&ev[0], ServerEvent::Error { error } if error.kind == "server_error"));
        assert!(
            matches!(&ev[1], ServerEvent::ResponseDone { response } if response.status == "failed")
        );

        let stalled = Faults {
            stall: true,
            ..Faults::default()
        };
        assert!(s.on_text(create, t0, &stalled).is_empty());
        assert_eq!(s.next_deadline(), None);

        let closing = Faults {
            close_after_ms: Some(450),
            ..Faults::default()
        };
        s.on_text(create, t0, &closing);
        let mut out = Vec::new();
        while let Some(at) = s.next_deadline() {
            out.extend(s.on_timer(at));
        }
        assert_eq!(out.last(), Some(&Output::Close));
        assert_eq!(
            out.iter()
                .filter(|o| matches!(o, Output::Send(ServerEvent::AudioDelta { .. })))
                .count(),
            2,
            "deltas at 300 and 400 ms, closed at 450"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hostile_input_gets_errors() {
        let mut s = session(100);
        let t0 = Instant::now();
        let faults = Faults::default();
        for text in [
            "{",
            "null",
            r#"{"type":"nope","event_id":"e9"}"#,
            r#"{"type":"input_audio_buffer.append","audio":"!!"}"#,
            r#"{"type":"input_audio_buffer.append"}"#,
            r#"{"type":"response.cancel"}"#,
            r#"{"type":"input_audio_buffer.commit"}"#,
            r#"{"type":"conversation.item.truncate","item_id":"x","content_index":0,"audio_end_ms":1}"#,
            r#"{"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcma"},"turn_detection":null},"output":{"format":{"type":"audio/pcmu"}}}}}"#,
        ] {
            let ev = sent(s.on_text(text, t0, &faults));
            assert!(
                matches!(&ev[..], [ServerEvent::Error { error }] if error.kind == "invalid_request_error"),
                "{text}: {ev:?}"
            );
        }
        let ev = sent(s.on_text(
            &format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000)),
            t0,
            &faults,
        ));
        let [ServerEvent::Error { error }] = &ev[..] else {
            panic!()
        };
        assert!(error.message.len() <= MAX_MESSAGE_CHARS * 4);
        let ev = sent(s.on_text(r#"{"type":"nope","event_id":"e9"}"#, t0, &faults));
        assert!(
            matches!(&ev[..], [ServerEvent::Error { error }] if error.event_id.as_deref() == Some("e9"))
        );
    }

    #[test]
    fn dialect_follows_the_update_shape() {
        let beta: SessionSettings =
            serde_json::from_str(r#"{"input_audio_format":"g711_ulaw","turn_detection":null}"#)
                .unwrap();
        assert_eq!(dialect_of(&beta), Some(Dialect::Beta));
        let ga: SessionSettings = serde_json::from_str(r#"{"type":"realtime"}"#).unwrap();
        assert_eq!(dialect_of(&ga), Some(Dialect::Ga));
        let neither: SessionSettings = serde_json::from_str(r#"{"instructions":"x"}"#).unwrap();
        assert_eq!(dialect_of(&neither), None);
    }
}
