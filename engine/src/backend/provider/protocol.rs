//! The OpenAI Realtime wire protocol: the JSON events on the WebSocket, both directions.
//!
//! One set of serde types serves the client ([`super`]) and `provider-sim`, so the
//! simulator cannot drift from what the client sends and understands. We send the GA
//! shape (`session.type = "realtime"`, `audio.input.format`), or the beta shape for
//! older deployments ([`Dialect::Beta`]); we accept both GA and beta names of the
//! server's output events (`response.output_audio.delta` and `response.audio.delta`, …).
//! Unknown event types parse as [`ServerEvent::Unknown`] so a new server feature never
//! breaks a call. Why not async-openai's types: docs/decisions/0005-realtime-protocol.md.

use serde::{Deserialize, Serialize};

/// Which version of the session schema the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// The generally available protocol (`gpt-realtime`).
    #[default]
    Ga,
    /// The beta protocol (`OpenAI-Beta: realtime=v1`, `gpt-4o-realtime-preview`).
    Beta,
}

/// An audio format on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireAudio {
    /// G.711 µ-law, 8 kHz: telephony audio as it is.
    Pcmu,
    /// 16-bit little-endian PCM, 24 kHz mono.
    Pcm24k,
}

impl WireAudio {
    /// Samples per second.
    pub fn rate(self) -> u32 {
        match self {
            Self::Pcmu => 8000,
            Self::Pcm24k => 24_000,
        }
    }

    /// Bytes per second.
    pub fn bytes_per_second(self) -> u64 {
        match self {
            Self::Pcmu => 8000,
            Self::Pcm24k => 48_000,
        }
    }

    /// Milliseconds of audio in `bytes` of this format.
    pub fn ms_of(self, bytes: u64) -> u64 {
        bytes * 1000 / self.bytes_per_second()
    }

    /// The GA format object of this format.
    pub fn ga(self) -> AudioFormat {
        match self {
            Self::Pcmu => AudioFormat::Pcmu,
            Self::Pcm24k => AudioFormat::Pcm { rate: 24_000 },
        }
    }

    /// The beta format name of this format.
    pub fn beta(self) -> &'static str {
        match self {
            Self::Pcmu => "g711_ulaw",
            Self::Pcm24k => "pcm16",
        }
    }

    /// Reads a GA format object.
    pub fn from_ga(format: &AudioFormat) -> Option<Self> {
        match format {
            AudioFormat::Pcmu => Some(Self::Pcmu),
            AudioFormat::Pcm { rate: 24_000 } => Some(Self::Pcm24k),
            _ => None,
        }
    }

    /// Reads a beta format name.
    pub fn from_beta(name: &str) -> Option<Self> {
        match name {
            "g711_ulaw" => Some(Self::Pcmu),
            "pcm16" => Some(Self::Pcm24k),
            _ => None,
        }
    }
}

/// GA audio format object (`{"type":"audio/pcmu"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AudioFormat {
    /// 16-bit PCM at `rate` (the API accepts 24000 only).
    #[serde(rename = "audio/pcm")]
    Pcm {
        /// Samples per second.
        rate: u32,
    },
    /// G.711 µ-law 8 kHz.
    #[serde(rename = "audio/pcmu")]
    Pcmu,
    /// G.711 A-law 8 kHz.
    #[serde(rename = "audio/pcma")]
    Pcma,
}

/// Server-side turn detection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnDetection {
    /// `server_vad` (or `semantic_vad`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Start a response automatically at the end of speech.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_response: Option<bool>,
    /// Cancel the response in progress when the caller starts speaking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt_response: Option<bool>,
    /// Silence that ends a turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_duration_ms: Option<u32>,
}

/// Input transcription settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcription {
    /// Transcription model.
    pub model: String,
    /// Expected language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// GA `session.audio.input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioInput {
    /// Format of the audio we append.
    pub format: AudioFormat,
    /// `null` turns server turn detection off (we commit ourselves).
    pub turn_detection: Option<TurnDetection>,
    /// Transcription of the caller's audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<Transcription>,
}

/// GA `session.audio.output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioOutput {
    /// Format of the audio the server sends.
    pub format: AudioFormat,
    /// Voice name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

/// GA `session.audio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionAudio {
    /// What we send.
    pub input: AudioInput,
    /// What we receive.
    pub output: AudioOutput,
}

/// The `session` object of `session.update`, GA or beta shape (unused fields are
/// skipped, so each dialect serialises exactly its documented fields).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionSettings {
    /// GA: always `"realtime"`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// GA: the model (beta sets it in the URL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// System instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// GA: `["audio"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<String>>,
    /// GA: audio settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<SessionAudio>,
    /// Beta: `["audio","text"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<Vec<String>>,
    /// Beta: voice name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Beta: `pcm16` | `g711_ulaw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_audio_format: Option<String>,
    /// Beta: `pcm16` | `g711_ulaw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_audio_format: Option<String>,
    /// Beta: turn detection; `null` (serialised) turns it off.
    #[serde(default, skip_serializing_if = "BetaTurnDetection::is_absent")]
    pub turn_detection: BetaTurnDetection,
    /// Beta: input transcription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_audio_transcription: Option<Transcription>,
}

/// Beta `turn_detection`: absent, explicitly `null`, or set.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum BetaTurnDetection {
    /// Not part of this message.
    #[default]
    Absent,
    /// `null`: turn detection off.
    Off,
    /// Server VAD settings.
    On(TurnDetection),
}

impl BetaTurnDetection {
    fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }
}

impl Serialize for BetaTurnDetection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Absent | Self::Off => s.serialize_none(),
            Self::On(t) => t.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BetaTurnDetection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<TurnDetection>::deserialize(d)? {
            None => Self::Off,
            Some(t) => Self::On(t),
        })
    }
}

/// What the client asks of the session, independent of dialect.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRequest {
    /// Model name (GA puts it in the session too).
    pub model: String,
    /// System instructions.
    pub instructions: String,
    /// Voice name.
    pub voice: String,
    /// Audio format both ways.
    pub audio: WireAudio,
    /// Let the server detect turns (otherwise we commit ourselves).
    pub server_vad: bool,
    /// Transcription model for the caller's audio (`None`: no caller transcript).
    pub transcription_model: Option<String>,
    /// Caller's language.
    pub language: Option<String>,
}

impl SessionRequest {
    /// The `session` object for `dialect`.
    pub fn settings(&self, dialect: Dialect) -> SessionSettings {
        let turn_detection = self.server_vad.then(|| TurnDetection {
            kind: "server_vad".into(),
            create_response: Some(true),
            interrupt_response: Some(true),
            silence_duration_ms: None,
        });
        let transcription = self
            .transcription_model
            .as_ref()
            .map(|model| Transcription {
                model: model.clone(),
                language: self.language.clone(),
            });
        match dialect {
            Dialect::Ga => SessionSettings {
                kind: Some("realtime".into()),
                model: Some(self.model.clone()),
                instructions: Some(self.instructions.clone()),
                output_modalities: Some(vec!["audio".into()]),
                audio: Some(SessionAudio {
                    input: AudioInput {
                        format: self.audio.ga(),
                        turn_detection,
                        transcription,
                    },
                    output: AudioOutput {
                        format: self.audio.ga(),
                        voice: Some(self.voice.clone()),
                    },
                }),
                ..SessionSettings::default()
            },
            Dialect::Beta => SessionSettings {
                instructions: Some(self.instructions.clone()),
                modalities: Some(vec!["audio".into(), "text".into()]),
                voice: Some(self.voice.clone()),
                input_audio_format: Some(self.audio.beta().into()),
                output_audio_format: Some(self.audio.beta().into()),
                turn_detection: turn_detection
                    .map_or(BetaTurnDetection::Off, BetaTurnDetection::On),
                input_audio_transcription: transcription,
                ..SessionSettings::default()
            },
        }
    }
}

impl SessionSettings {
    /// The audio format these settings ask for (input side), whichever dialect.
    pub fn wire_audio(&self) -> Option<WireAudio> {
        if let Some(audio) = &self.audio {
            return WireAudio::from_ga(&audio.input.format);
        }
        self.input_audio_format
            .as_deref()
            .and_then(WireAudio::from_beta)
    }

    /// Whether these settings turn server turn detection on.
    pub fn server_vad(&self) -> Option<bool> {
        if let Some(audio) = &self.audio {
            return Some(audio.input.turn_detection.is_some());
        }
        match &self.turn_detection {
            BetaTurnDetection::Absent => None,
            BetaTurnDetection::Off => Some(false),
            BetaTurnDetection::On(_) => Some(true),
        }
    }
}

/// A text part of a conversation item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ContentPart {
    /// Text the user said (or typed).
    #[serde(rename = "input_text")]
    InputText {
        /// The text.
        text: String,
    },
    /// Text the assistant said (GA).
    #[serde(rename = "output_text")]
    OutputText {
        /// The text.
        text: String,
    },
    /// Text the assistant said (beta: the only type it accepts for assistant content).
    #[serde(rename = "text")]
    Text {
        /// The text.
        text: String,
    },
}

/// A conversation item we create (history carried over from the local pipeline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageItem {
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: Vec<ContentPart>,
}

impl MessageItem {
    /// A caller turn.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            kind: "message".into(),
            role: "user".into(),
            content: vec![ContentPart::InputText { text: text.into() }],
        }
    }

    /// One of our turns, in the content type `dialect` accepts.
    pub fn assistant(text: impl Into<String>, dialect: Dialect) -> Self {
        let text = text.into();
        let part = match dialect {
            Dialect::Ga => ContentPart::OutputText { text },
            Dialect::Beta => ContentPart::Text { text },
        };
        Self {
            kind: "message".into(),
            role: "assistant".into(),
            content: vec![part],
        }
    }
}

/// Events the client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    /// Configure the session.
    #[serde(rename = "session.update")]
    SessionUpdate {
        /// The settings.
        session: Box<SessionSettings>,
    },
    /// Caller audio, base64 of the wire format.
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioAppend {
        /// Base64 audio.
        audio: String,
    },
    /// End of the caller's turn (without server VAD).
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioCommit {},
    /// Drop audio appended since the last commit.
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioClear {},
    /// Ask for a reply.
    #[serde(rename = "response.create")]
    ResponseCreate {},
    /// Stop the reply in progress.
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        /// Which response (optional: the current one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_id: Option<String>,
    },
    /// Cut an assistant audio item at what the caller actually heard.
    #[serde(rename = "conversation.item.truncate")]
    ItemTruncate {
        /// The assistant item.
        item_id: String,
        /// Always 0 (the audio part).
        content_index: u32,
        /// Audio heard, in ms; must not exceed the audio the server sent.
        audio_end_ms: u64,
    },
    /// Add a message to the conversation.
    #[serde(rename = "conversation.item.create")]
    ItemCreate {
        /// The message.
        item: MessageItem,
    },
}

/// The `error` object of an `error` event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `server_error`, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// A machine-readable code (`rate_limit_exceeded`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// The client event that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// Input token details of a response's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InputTokenDetails {
    /// Cached tokens.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Text tokens.
    #[serde(default)]
    pub text_tokens: u64,
    /// Audio tokens.
    #[serde(default)]
    pub audio_tokens: u64,
}

/// Output token details of a response's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputTokenDetails {
    /// Text tokens.
    #[serde(default)]
    pub text_tokens: u64,
    /// Audio tokens.
    #[serde(default)]
    pub audio_tokens: u64,
}

/// `response.usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseUsage {
    /// All tokens.
    #[serde(default)]
    pub total_tokens: u64,
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Breakdown of the input.
    #[serde(default)]
    pub input_token_details: InputTokenDetails,
    /// Breakdown of the output.
    #[serde(default)]
    pub output_token_details: OutputTokenDetails,
}

/// `response.status_details`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusDetails {
    /// `completed`, `cancelled`, `incomplete`, `failed`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Why (e.g. `turn_detected`, `client_cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The error of a failed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The parts of a `response` object we use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseInfo {
    /// Response id.
    pub id: String,
    /// `in_progress`, `completed`, `cancelled`, `failed`, `incomplete`.
    #[serde(default)]
    pub status: String,
    /// Why it ended that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    /// Token usage (on `response.done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResponseUsage>,
}

/// The parts of an output item we use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ItemInfo {
    /// Item id (what `conversation.item.truncate` names).
    pub id: String,
    /// `message`, `function_call`, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `assistant` for our replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One entry of `rate_limits.updated`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RateLimit {
    /// `requests` or `tokens`.
    #[serde(default)]
    pub name: String,
    /// The limit.
    #[serde(default)]
    pub limit: u64,
    /// What is left.
    #[serde(default)]
    pub remaining: u64,
    /// Seconds until it resets.
    #[serde(default)]
    pub reset_seconds: f64,
}

/// Events the server sends that the client acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    /// Something went wrong.
    #[serde(rename = "error")]
    Error {
        /// What.
        error: ErrorDetail,
    },
    /// The session exists (first event after connecting).
    #[serde(rename = "session.created")]
    SessionCreated {
        /// The session as the server sees it.
        #[serde(default)]
        session: serde_json::Value,
    },
    /// `session.update` was applied.
    #[serde(rename = "session.updated")]
    SessionUpdated {
        /// The session as the server sees it.
        #[serde(default)]
        session: serde_json::Value,
    },
    /// Server VAD heard speech start.
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted {
        /// Offset into the session's input audio.
        #[serde(default)]
        audio_start_ms: u64,
        /// The user item being created.
        #[serde(default)]
        item_id: Option<String>,
    },
    /// Server VAD heard speech stop.
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped {
        /// Offset into the session's input audio.
        #[serde(default)]
        audio_end_ms: u64,
        /// The user item being created.
        #[serde(default)]
        item_id: Option<String>,
    },
    /// The input buffer became a user item.
    #[serde(rename = "input_audio_buffer.committed")]
    InputCommitted {
        /// The new user item.
        #[serde(default)]
        item_id: Option<String>,
    },
    /// Transcript of the caller's audio.
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    InputTranscript {
        /// The user item.
        #[serde(default)]
        item_id: Option<String>,
        /// What the caller said.
        transcript: String,
    },
    /// A response started.
    #[serde(rename = "response.created")]
    ResponseCreated {
        /// The response.
        response: ResponseInfo,
    },
    /// An output item (the assistant message) was added.
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        /// The response.
        #[serde(default)]
        response_id: String,
        /// The item.
        item: ItemInfo,
    },
    /// A piece of reply audio.
    #[serde(rename = "response.output_audio.delta", alias = "response.audio.delta")]
    AudioDelta {
        /// The response.
        #[serde(default)]
        response_id: String,
        /// The assistant item.
        #[serde(default)]
        item_id: String,
        /// Base64 audio in the output format.
        delta: String,
    },
    /// The reply audio is complete.
    #[serde(rename = "response.output_audio.done", alias = "response.audio.done")]
    AudioDone {
        /// The response.
        #[serde(default)]
        response_id: String,
    },
    /// A piece of the reply's spoken text.
    #[serde(
        rename = "response.output_audio_transcript.delta",
        alias = "response.audio_transcript.delta"
    )]
    TranscriptDelta {
        /// The response.
        #[serde(default)]
        response_id: String,
        /// Text.
        delta: String,
    },
    /// The reply's spoken text is complete.
    #[serde(
        rename = "response.output_audio_transcript.done",
        alias = "response.audio_transcript.done"
    )]
    TranscriptDone {
        /// The response.
        #[serde(default)]
        response_id: String,
        /// The whole text.
        #[serde(default)]
        transcript: String,
    },
    /// A piece of the reply's text (text modality).
    #[serde(rename = "response.output_text.delta", alias = "response.text.delta")]
    TextDelta {
        /// The response.
        #[serde(default)]
        response_id: String,
        /// Text.
        delta: String,
    },
    /// The response is finished (completed, cancelled, failed, incomplete).
    #[serde(rename = "response.done")]
    ResponseDone {
        /// The response with status and usage.
        response: ResponseInfo,
    },
    /// Rate limits after this response.
    #[serde(rename = "rate_limits.updated")]
    RateLimitsUpdated {
        /// The limits.
        #[serde(default)]
        rate_limits: Vec<RateLimit>,
    },
    /// A `conversation.item.truncate` was applied.
    #[serde(rename = "conversation.item.truncated")]
    ItemTruncated {
        /// The item.
        item_id: String,
        /// Where it was cut.
        #[serde(default)]
        audio_end_ms: u64,
    },
    /// Any event type we do not act on (there are many; new ones appear).
    #[serde(other)]
    Unknown,
}

/// Why a server message could not be read. Its message is clipped: serde quotes the
/// offending value, which a hostile peer can make megabytes long.
#[derive(Debug, thiserror::Error)]
#[error("unparseable realtime event{}: {}", event_type.as_ref().map(|t| format!(" {t:?}")).unwrap_or_default(), clip(&source.to_string()))]
pub struct ParseError {
    /// The `type` field, if there was one.
    pub event_type: Option<String>,
    /// What serde said.
    #[source]
    pub source: serde_json::Error,
}

/// At most 200 characters of `text`, marked when cut.
fn clip(text: &str) -> String {
    const LIMIT: usize = 200;
    match text.char_indices().nth(LIMIT) {
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

/// Parses one server text message.
pub fn parse_server_event(text: &str) -> Result<ServerEvent, ParseError> {
    serde_json::from_str(text).map_err(|source| ParseError {
        event_type: event_type_of(text),
        source,
    })
}

/// Parses one client text message (what `provider-sim` receives).
pub fn parse_client_event(text: &str) -> Result<ClientEvent, ParseError> {
    serde_json::from_str(text).map_err(|source| ParseError {
        event_type: event_type_of(text),
        source,
    })
}

fn event_type_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Tagged {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Tagged>(text)
        .ok()
        .map(|t| t.kind.chars().take(80).collect())
}

/// Base64 of audio bytes (standard alphabet, padded, as the API expects).
pub fn encode_audio(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Audio bytes from base64.
pub fn decode_audio(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text)
}
