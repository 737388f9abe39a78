//! Typed settings: a TOML file (`tom serve --config FILE`) with environment overrides
//! whose names are a contract with operators (DESIGN.md), validated once at startup.
//! `tom config check` prints the effective settings with secrets masked.
//!
//! Every setting has a default that works on a laptop: local backend only, loopback
//! listeners, costs in `data/cost_logs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backend::provider::config::{ConfigError as ProviderConfigError, ProviderConfig};
use crate::failover::{FailoverConfig, FailoverConfigError};
use crate::telemetry::cost_log::Prices;

/// A secret string: read from config, printed as `********`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("********")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "********" })
    }
}

/// Listeners and per-process settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where FreeSWITCH's `socket` application connects (`TOM_ESL_LISTEN`).
    pub esl_listen: SocketAddr,
    /// FreeSWITCH hosts allowed to connect (`TOM_ESL_ALLOW`, comma-separated CIDRs).
    #[schemars(with = "Vec<String>")]
    pub esl_allow: Vec<IpNet>,
    /// `/metrics`, `/health`, `/ready` (`TOM_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// IP of the media sockets, both ends of the unicast stream (`TOM_MEDIA_IP`).
    pub media_ip: IpAddr,
    /// Calls are hung up after this long (`TOM_MAX_CALL_SECS`).
    pub max_call_secs: u64,
    /// Live calls (FreeSWITCH and `/v1/stream` together) beyond which new ones are turned
    /// away (`TOM_MAX_CALLS`); 0: no cap. A FreeSWITCH call over the cap gets its socket
    /// closed unanswered, so FreeSWITCH's `socket_resume` sends it to the dialplan's
    /// fallback; a stream gets 503 `busy`; `/ready` fails while full. The local pipeline
    /// holds about 4-8 talking calls per 2 cores (docs/operations.md).
    pub max_calls: u32,
    /// Cost log directory (`TOM_COST_LOG_DIR`).
    pub cost_log_dir: PathBuf,
    /// Write a call record (the transcript) per call (`TOM_CALL_RECORDS`). It holds what
    /// callers said: personal data.
    pub call_records: bool,
    /// Call-record directory (`TOM_CALL_RECORD_DIR`); unset: beside the cost log.
    pub call_record_dir: Option<PathBuf>,
    /// Salt for hashing caller numbers (`TOM_PII_SALT`). The default is a public
    /// development salt, refused when a listener is beyond loopback: set your own.
    #[schemars(with = "String")]
    pub pii_salt: Secret,
    /// On SIGTERM, how long live calls may finish before they are ended (file only).
    pub drain_secs: u64,
    /// First UDP port FreeSWITCH may be told to bind for a call's unicast stream (file
    /// only). Keep the range clear of the kernel's ephemeral ports and FreeSWITCH's RTP
    /// ports: each live call holds one port of it.
    pub fs_media_port_min: u16,
    /// Last port of that range (file only).
    pub fs_media_port_max: u16,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            esl_listen: SocketAddr::from(([127, 0, 0, 1], 8084)),
            esl_allow: vec![loopback_v4(), loopback_v6()],
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            media_ip: IpAddr::from([127, 0, 0, 1]),
            max_call_secs: 300,
            max_calls: 0,
            cost_log_dir: PathBuf::from("data/cost_logs"),
            call_records: true,
            call_record_dir: None,
            pii_salt: Secret::new(DEV_PII_SALT),
            drain_secs: 30,
            fs_media_port_min: *esl_bridge::media::DEFAULT_PORT_RANGE.start(),
            fs_media_port_max: *esl_bridge::media::DEFAULT_PORT_RANGE.end(),
        }
    }
}

/// The default caller-number salt: public (it is in this source), so hashes made with it
/// can be reversed by trying numbers. Good for a laptop, refused beyond loopback.
pub const DEV_PII_SALT: &str = "tom-dev-salt";

fn loopback_v4() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::new_assert(
        std::net::Ipv4Addr::new(127, 0, 0, 0),
        8,
    ))
}

fn loopback_v6() -> IpNet {
    IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
}

/// Which reply generator the local pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BrainChoice {
    /// Keyword intents → fixed replies (deterministic; the embedded default).
    Scripted,
    /// Any OpenAI-compatible chat-completions server at `llm_url`.
    OpenaiCompatible,
    /// SmolLM2 in `tom-llm`, started and supervised by the engine (ADR 0006).
    Smollm2,
}

/// The local pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// Whisper model id from models/models.toml (`TOM_STT_MODEL`).
    pub stt_model: String,
    /// Whisper worker threads (each runs one utterance at a time).
    pub stt_workers: usize,
    /// Utterances that may wait for a worker before new ones are refused.
    pub stt_queue: usize,
    /// The Piper voice id for English.
    pub voice: String,
    /// Voices for other languages: language → Piper voice id, or `espeak:<lang>`.
    pub voices: BTreeMap<String, String>,
    /// Reply generator (`TOM_BRAIN`: `scripted` | `openai-compatible` | `smollm2`).
    pub brain: BrainChoice,
    /// Base URL of the chat-completions server (`TOM_LLM_URL`).
    pub llm_url: String,
    /// Model name to ask that server for.
    pub llm_model: String,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            stt_model: "whisper-tiny-en-ggml".into(),
            stt_workers: 1,
            stt_queue: 4,
            voice: crate::backend::local::tts::DEFAULT_VOICE_ID.into(),
            voices: BTreeMap::new(),
            brain: BrainChoice::Scripted,
            llm_url: "http://127.0.0.1:8091/v1".into(),
            llm_model: "smollm2".into(),
        }
    }
}

/// Provider settings a file may hold (the key comes from the environment or a file).
/// Unset fields take the provider client's defaults; the environment wins over the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderFile {
    /// WebSocket URL of the realtime endpoint (`TOM_PROVIDER_URL`): `wss://`, or `ws://`
    /// to a loopback host only; unset: `wss://api.openai.com/v1/realtime`.
    pub url: Option<String>,
    /// Realtime model, added as `?model=` unless the URL names one (`TOM_PROVIDER_MODEL`);
    /// unset: `gpt-realtime`.
    pub model: Option<String>,
    /// File holding the API key (`TOM_PROVIDER_KEY_FILE`). The key may instead come from
    /// `OPENAI_API_KEY` (environment only, never from this file); setting both is
    /// refused at startup.
    pub key_file: Option<PathBuf>,
    /// Session schema, `ga` or `beta` (`TOM_PROVIDER_DIALECT`); unset: `ga`.
    pub dialect: Option<String>,
    /// How the key is sent: `bearer` (OpenAI) or `api-key` (Azure) (`TOM_PROVIDER_AUTH`);
    /// unset: `bearer`.
    pub auth: Option<String>,
    /// Provider voice (`TOM_PROVIDER_VOICE`); unset: `marin`.
    pub voice: Option<String>,
    /// `none` (our endpointer decides turns for both backends) or `server_vad`
    /// (`TOM_PROVIDER_TURN_DETECTION`); unset: `none`.
    pub turn_detection: Option<String>,
    /// Model transcribing the caller for the transcript, `none` to turn it off
    /// (`TOM_PROVIDER_TRANSCRIPTION`); unset: `gpt-4o-mini-transcribe`.
    pub transcription: Option<String>,
}

impl ProviderFile {
    /// Each text setting with its environment variable: the one table through which
    /// both the provider client and `tom config check` read them (the key file, a path,
    /// is handled beside it).
    fn by_env_name(&mut self) -> [(&'static str, &mut Option<String>); 7] {
        [
            ("TOM_PROVIDER_URL", &mut self.url),
            ("TOM_PROVIDER_MODEL", &mut self.model),
            ("TOM_PROVIDER_DIALECT", &mut self.dialect),
            ("TOM_PROVIDER_AUTH", &mut self.auth),
            ("TOM_PROVIDER_VOICE", &mut self.voice),
            ("TOM_PROVIDER_TURN_DETECTION", &mut self.turn_detection),
            ("TOM_PROVIDER_TRANSCRIPTION", &mut self.transcription),
        ]
    }
}

/// How a call goes: greeting, language, persona, limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CallProfile {
    /// Played from the phrase cache when the call is answered.
    pub greeting: String,
    /// Played before hanging up (max turns, caller said goodbye).
    pub goodbye: String,
    /// Played when a reply is late (failover, slow backend).
    pub filler: String,
    /// Language of the call.
    pub language: String,
    /// Persona/instructions for the reply generator.
    pub instructions: String,
    /// Caller turns answered before the goodbye.
    pub max_turns: u32,
    /// Silence that ends the caller's turn, in ms (a multiple of 20, 200..=3000). Every
    /// reply waits at least this long after the caller's last word: shorter is snappier
    /// but cuts slow talkers between words.
    pub end_of_turn_ms: u32,
}

impl Default for CallProfile {
    fn default() -> Self {
        Self {
            greeting: "Hello, thank you for calling. How can I help you?".into(),
            goodbye: "Thank you for calling. Goodbye!".into(),
            filler: "One moment, please.".into(),
            language: "en".into(),
            instructions: "You are a friendly restaurant assistant on the phone. Answer in one or two short sentences.".into(),
            max_turns: 20,
            end_of_turn_ms: 500,
        }
    }
}

/// Call profiles: a default and per-DID overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// For every DID without its own entry.
    pub default: CallProfile,
    /// Per dialled number (as FreeSWITCH signals it).
    pub did: BTreeMap<String, CallProfile>,
}

impl CallsConfig {
    /// The profile for a dialled number.
    pub fn for_did(&self, did: &str) -> &CallProfile {
        self.did.get(did).unwrap_or(&self.default)
    }
}

/// Who may open a `/v1/stream` (docs/stream.md, "Opening a stream"): the JWT key that
/// pins the algorithm, the claims checked, and where used token ids are remembered.
///
/// No key means streams are disabled, not open: there is no unauthenticated mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Shared secret for HS256, at least 32 bytes (`TOM_JWT_HS256_SECRET`).
    #[schemars(with = "Option<String>")]
    pub hs256_secret: Option<Secret>,
    /// PEM file with the RSA public key for RS256 (`TOM_JWT_RS256_PUBLIC_KEY_FILE`).
    pub rs256_public_key_file: Option<PathBuf>,
    /// Required `aud` when set (`TOM_JWT_AUDIENCE`).
    pub audience: Option<String>,
    /// Required `iss` when set (`TOM_JWT_ISSUER`).
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (`TOM_JWT_LEEWAY_SECS`).
    pub leeway_secs: u64,
    /// Redis shared by every engine for `jti` replay protection (`REDIS_URL`); unset
    /// keeps used ids in this process only.
    #[schemars(with = "Option<String>")]
    pub redis_url: Option<RedisUrl>,
    /// Bound on one Redis connect or command: a dead Redis must not hold an upgrade.
    pub redis_timeout_ms: u64,
    /// Bound on the in-memory replay store; when it is full of live ids, streams are
    /// refused rather than forgetting ids early.
    pub memory_max_entries: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            rs256_public_key_file: None,
            audience: None,
            issuer: None,
            leeway_secs: 30,
            redis_url: None,
            redis_timeout_ms: 500,
            memory_max_entries: 100_000,
        }
    }
}

/// Largest `leeway_secs`: beyond an hour it is a unit mistake (milliseconds), and it
/// would make `exp` meaningless.
const MAX_LEEWAY_SECS: u64 = 3600;

/// A Redis URL; printed with its password masked, since `REDIS_URL` commonly carries one.
///
/// Read from a file unchecked and checked in validation: a deserialisation error would
/// quote the line, password and all.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Checks the form without connecting. The problem never quotes the URL: it may hold
    /// a password.
    pub fn parse(value: &str) -> Result<Self, String> {
        const FORM: &str = "expected redis://[[user]:password@]host[:port][/db]";
        let url = url::Url::parse(value).map_err(|e| format!("not a URL ({e}); {FORM}"))?;
        match url.scheme() {
            "redis" | "redis+unix" | "unix" => {}
            "rediss" => {
                return Err(format!(
                    "rediss:// (TLS) is not built into this engine; {FORM} on a trusted network"
                ))
            }
            other => return Err(format!("scheme {other:?} is not Redis; {FORM}")),
        }
        redis::Client::open(value)
            .map_err(|_| format!("not a Redis URL the client accepts; {FORM}"))?;
        Ok(Self(value.to_owned()))
    }

    /// The URL, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password (userinfo, or `pass`/`password` query parameter)
    /// replaced by `********`.
    pub fn masked(&self) -> String {
        const MASK: &str = "********";
        let Ok(mut url) = url::Url::parse(&self.0) else {
            return MASK.to_owned();
        };
        if url.password().is_some() && url.set_password(Some(MASK)).is_err() {
            return MASK.to_owned();
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if matches!(k.as_ref(), "pass" | "password") {
                        MASK.to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({})", self.masked())
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

/// Everything `tom serve` needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners and process settings.
    pub server: ServerConfig,
    /// The local pipeline.
    pub local: LocalConfig,
    /// Whether the provider may be used at all (`ALLOW_EGRESS`).
    pub allow_egress: bool,
    /// The cloud provider.
    pub provider: ProviderFile,
    /// When to fail over to the local backend and back (`FALLBACK_*`).
    pub failover: FailoverConfig,
    /// Informational prices for the cost log.
    pub prices: Prices,
    /// Call profiles.
    pub calls: CallsConfig,
    /// The `/v1/stream` WebSocket endpoint's limits.
    pub stream: StreamConfig,
    /// Authentication of `/v1/stream`.
    pub auth: AuthConfig,
}

/// Limits of the `/v1/stream` WebSocket endpoint (docs/stream.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Messages per second a connection may send (`TOM_RATE_LIMIT_MSGS`); excess closes
    /// it with a policy violation.
    pub rate_limit_msgs: u32,
    /// The largest message (and frame) accepted, in bytes.
    pub max_message_bytes: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            rate_limit_msgs: 120,
            max_message_bytes: 64 * 1024,
        }
    }
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said (line, column, key).
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("{name}: {problem}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The settings contradict each other or are out of range.
    #[error("invalid setting {key}: {problem}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl From<FailoverConfigError> for ConfigError {
    fn from(e: FailoverConfigError) -> Self {
        Self::Invalid {
            key: "failover",
            problem: e.to_string(),
        }
    }
}

impl From<ProviderConfigError> for ConfigError {
    fn from(e: ProviderConfigError) -> Self {
        Self::Env {
            name: e.name,
            problem: e.problem,
        }
    }
}

impl Config {
    /// Reads `file` (if any), applies the environment, validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, |name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], with the environment given by `lookup` (tests).
    pub fn load_with(
        file: Option<&Path>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(&lookup)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, lookup: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                name,
                problem: format!("{value:?}: {e}"),
            })
        }
        let s = &mut self.server;
        if let Some(v) = get("TOM_ESL_LISTEN") {
            s.esl_listen = parse("TOM_ESL_LISTEN", &v)?;
        }
        if let Some(v) = get("TOM_ESL_ALLOW") {
            s.esl_allow = v
                .split(',')
                .map(|n| parse("TOM_ESL_ALLOW", n.trim()))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = get("TOM_HTTP_ADDR") {
            s.http_addr = parse("TOM_HTTP_ADDR", &v)?;
        }
        if let Some(v) = get("TOM_MEDIA_IP") {
            s.media_ip = parse("TOM_MEDIA_IP", &v)?;
        }
        if let Some(v) = get("TOM_MAX_CALL_SECS") {
            s.max_call_secs = parse("TOM_MAX_CALL_SECS", &v)?;
        }
        if let Some(v) = get("TOM_MAX_CALLS") {
            s.max_calls = parse("TOM_MAX_CALLS", &v)?;
        }
        if let Some(v) = get("TOM_COST_LOG_DIR") {
            s.cost_log_dir = PathBuf::from(v);
        }
        if let Some(v) = get("TOM_CALL_RECORDS") {
            s.call_records = parse("TOM_CALL_RECORDS", &v)?;
        }
        if let Some(v) = get("TOM_CALL_RECORD_DIR") {
            s.call_record_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("TOM_PII_SALT") {
            s.pii_salt = Secret::new(v);
        }
        if let Some(v) = get("TOM_STT_MODEL") {
            self.local.stt_model = v;
        }
        if let Some(v) = get("TOM_BRAIN") {
            self.local.brain = match v.as_str() {
                "scripted" => BrainChoice::Scripted,
                "openai-compatible" => BrainChoice::OpenaiCompatible,
                "smollm2" => BrainChoice::Smollm2,
                other => {
                    return Err(ConfigError::Env {
                        name: "TOM_BRAIN",
                        problem: format!(
                            "expected scripted, openai-compatible or smollm2, got {other:?}"
                        ),
                    })
                }
            };
        }
        if let Some(v) = get("TOM_LLM_URL") {
            self.local.llm_url = v;
        }
        if let Some(v) = get("TOM_RATE_LIMIT_MSGS") {
            self.stream.rate_limit_msgs = parse("TOM_RATE_LIMIT_MSGS", &v)?;
        }
        let a = &mut self.auth;
        if let Some(v) = get("TOM_JWT_HS256_SECRET") {
            a.hs256_secret = Some(Secret::new(v));
        }
        if let Some(v) = get("TOM_JWT_RS256_PUBLIC_KEY_FILE") {
            a.rs256_public_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("TOM_JWT_AUDIENCE") {
            a.audience = Some(v);
        }
        if let Some(v) = get("TOM_JWT_ISSUER") {
            a.issuer = Some(v);
        }
        if let Some(v) = get("TOM_JWT_LEEWAY_SECS") {
            a.leeway_secs = parse("TOM_JWT_LEEWAY_SECS", &v)?;
        }
        if let Some(v) = get("REDIS_URL") {
            // Not `parse`: its message quotes the value, and this one may hold a password.
            a.redis_url = Some(RedisUrl::parse(&v).map_err(|problem| ConfigError::Env {
                name: "REDIS_URL",
                problem,
            })?);
        }
        // The provider's own reader validates its variables; checked here so a bad value
        // fails at startup even while egress is off.
        self.allow_egress = self.provider_config_with(lookup)?.allow_egress;
        // One ALLOW_EGRESS for both: the policy never probes what the client may not reach.
        let mut failover = std::mem::take(&mut self.failover).with_env(|name| lookup(name))?;
        failover.allow_egress = self.allow_egress;
        self.failover = failover;
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        if self.server.esl_allow.is_empty() {
            return invalid("server.esl_allow", "no FreeSWITCH host could connect");
        }
        let exposed = [self.server.esl_listen.ip(), self.server.http_addr.ip()]
            .into_iter()
            .any(|ip| !ip.is_loopback());
        if exposed && self.server.pii_salt.expose() == DEV_PII_SALT {
            return invalid(
                "server.pii_salt (TOM_PII_SALT)",
                "the default salt is public and a listener is beyond loopback: set your own \
                 (e.g. `openssl rand -hex 32`)",
            );
        }
        if let Err(e) = esl_bridge::media::PortPool::new(
            self.server.fs_media_port_min..=self.server.fs_media_port_max,
        ) {
            return invalid("server.fs_media_port_min/max", &e.to_string());
        }
        if self.server.max_call_secs == 0 {
            return invalid("server.max_call_secs", "must be at least 1");
        }
        if self.stream.rate_limit_msgs == 0 {
            return invalid("stream.rate_limit_msgs", "must be at least 1");
        }
        if self.stream.max_message_bytes < 1024 {
            return invalid("stream.max_message_bytes", "must be at least 1024");
        }
        if self.local.stt_workers == 0 {
            return invalid("local.stt_workers", "must be at least 1");
        }
        for (did, profile) in std::iter::once(("default", &self.calls.default))
            .chain(self.calls.did.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if !(200..=3000).contains(&profile.end_of_turn_ms) || profile.end_of_turn_ms % 20 != 0 {
                return Err(ConfigError::Invalid {
                    key: "calls.*.end_of_turn_ms",
                    problem: format!(
                        "{did}: {} is not a multiple of 20 ms between 200 and 3000",
                        profile.end_of_turn_ms
                    ),
                });
            }
            if profile.max_turns == 0 {
                return Err(ConfigError::Invalid {
                    key: "calls.*.max_turns",
                    problem: format!("{did}: must be at least 1"),
                });
            }
            if profile.language.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "calls.*.language",
                    problem: format!("{did}: empty"),
                });
            }
        }
        self.validate_auth()
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        if a.leeway_secs > MAX_LEEWAY_SECS {
            return invalid(
                "auth.leeway_secs (TOM_JWT_LEEWAY_SECS)",
                format!("{} s is more than {MAX_LEEWAY_SECS} s", a.leeway_secs),
            );
        }
        if a.audience.as_deref().is_some_and(str::is_empty) {
            return invalid("auth.audience (TOM_JWT_AUDIENCE)", "empty".into());
        }
        if a.issuer.as_deref().is_some_and(str::is_empty) {
            return invalid("auth.issuer (TOM_JWT_ISSUER)", "empty".into());
        }
        if a.redis_timeout_ms == 0 {
            return invalid("auth.redis_timeout_ms", "must be at least 1".into());
        }
        if let Some(url) = &a.redis_url {
            if let Err(problem) = RedisUrl::parse(url.expose()) {
                return invalid("auth.redis_url (REDIS_URL)", problem);
            }
        }
        if a.memory_max_entries == 0 {
            return invalid("auth.memory_max_entries", "must be at least 1".into());
        }
        // Reads the key now (and refuses two keys), so `tom config check` and startup
        // report a bad key rather than every stream failing later.
        crate::auth::JwtVerifier::from_config(a).map(drop)
    }

    /// The provider client's settings: environment first, then the file.
    pub fn provider_config(&self) -> Result<ProviderConfig, ConfigError> {
        self.provider_config_with(&|name: &str| std::env::var(name).ok())
    }

    fn provider_config_with(
        &self,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<ProviderConfig, ConfigError> {
        let mut provider = self.with_effective_provider(lookup).provider;
        let key_file = provider.key_file.as_ref().map(|p| p.display().to_string());
        let settings: Vec<(&str, Option<String>)> = provider
            .by_env_name()
            .into_iter()
            .map(|(name, value)| (name, value.clone()))
            .collect();
        let allow = self.allow_egress.to_string();
        Ok(ProviderConfig::from_lookup(|name| match name {
            "TOM_PROVIDER_KEY_FILE" => key_file.clone(),
            "ALLOW_EGRESS" => lookup(name)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| Some(allow.clone())),
            _ => match settings.iter().find(|(setting, _)| *setting == name) {
                Some((_, value)) => value.clone(),
                // `OPENAI_API_KEY`: the environment only.
                None => lookup(name),
            },
        })?)
    }

    /// This config with `[provider]` as the provider client will read it: each setting
    /// from `lookup` (the environment) when set there, else from the file. The other
    /// sections already hold their environment overrides; the provider's are read when
    /// the backend is built, so `tom config check` needs this to show them.
    pub fn with_effective_provider(&self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut effective = self.clone();
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let p = &mut effective.provider;
        for (name, field) in p.by_env_name() {
            if let Some(value) = get(name) {
                *field = Some(value);
            }
        }
        if let Some(file) = get("TOM_PROVIDER_KEY_FILE") {
            p.key_file = Some(PathBuf::from(file));
        }
        effective
    }

    /// The effective settings as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print the config: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tom.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).expect("write");
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::load_with(file.map(|_| path.as_path()), |k| env.get(k).cloned())
    }

    #[test]
    fn the_effective_provider_settings_take_the_environment_over_the_file() {
        let env: HashMap<String, String> = [
            ("TOM_PROVIDER_URL", "ws://127.0.0.1:8765/v1/realtime"),
            ("TOM_PROVIDER_KEY_FILE", "/run/secrets/provider.key"),
            ("TOM_PROVIDER_MODEL", "  "),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
        let config = load(
            Some("[provider]\nvoice = \"cedar\"\nmodel = \"gpt-realtime-mini\"\n"),
            &[],
        )
        .expect("config")
        .with_effective_provider(|k| env.get(k).cloned());
        assert_eq!(
            config.provider.url.as_deref(),
            Some("ws://127.0.0.1:8765/v1/realtime")
        );
        assert_eq!(
            config.provider.key_file.as_deref(),
            Some(Path::new("/run/secrets/provider.key"))
        );
        assert_eq!(config.provider.voice.as_deref(), Some("cedar"));
        assert_eq!(
            config.provider.model.as_deref(),
            Some("gpt-realtime-mini"),
            "a blank variable does not hide the file's value"
        );
        let shown = config.to_masked_toml();
        assert!(shown.contains("ws://127.0.0.1:8765/v1/realtime"), "{shown}");
    }

    #[test]
    fn a_bad_freeswitch_media_port_range_is_refused() {
        for range in [
            "fs_media_port_min = 5000\nfs_media_port_max = 4000",
            "fs_media_port_min = 80\nfs_media_port_max = 90",
        ] {
            let err = load(Some(&format!("[server]\n{range}\n")), &[]).expect_err(range);
            assert!(err.to_string().contains("fs_media_port"), "{err}");
        }
    }

    #[test]
    fn the_public_dev_salt_is_refused_beyond_loopback() {
        let err = load(None, &[("TOM_HTTP_ADDR", "0.0.0.0:9090")]).expect_err("dev salt");
        assert!(err.to_string().contains("TOM_PII_SALT"), "{err}");
        let err = load(None, &[("TOM_ESL_LISTEN", "10.0.0.5:8084")]).expect_err("dev salt");
        assert!(err.to_string().contains("TOM_PII_SALT"), "{err}");
        load(
            None,
            &[
                ("TOM_HTTP_ADDR", "0.0.0.0:9090"),
                ("TOM_PII_SALT", "a-real-salt"),
            ],
        )
        .expect("own salt");
        load(None, &[("TOM_HTTP_ADDR", "[::1]:9090")]).expect("loopback");
    }

    #[test]
    fn the_default_is_local_only_on_loopback() {
        let c = load(None, &[]).expect("defaults");
        assert!(!c.allow_egress);
        assert_eq!(c.server.esl_listen.to_string(), "127.0.0.1:8084");
        assert_eq!(c.server.http_addr.to_string(), "127.0.0.1:9090");
        assert!(c
            .server
            .esl_allow
            .iter()
            .any(|n| n.contains(&IpAddr::from([127, 0, 0, 1]))));
        assert_eq!(c.local.brain, BrainChoice::Scripted);
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let c = load(
            Some("[server]\nhttp_addr = \"127.0.0.1:9999\"\nmax_call_secs = 60\n[calls.did.\"4930555\"]\ngreeting = \"Hallo\"\nlanguage = \"de\"\n"),
            &[("TOM_HTTP_ADDR", "127.0.0.1:9191"), ("TOM_COST_LOG_DIR", "/tmp/costs")],
        )
        .expect("config");
        assert_eq!(c.server.http_addr.to_string(), "127.0.0.1:9191");
        assert_eq!(c.server.max_call_secs, 60);
        assert_eq!(c.server.cost_log_dir, PathBuf::from("/tmp/costs"));
        assert_eq!(c.calls.for_did("4930555").greeting, "Hallo");
        assert_eq!(c.calls.for_did("other").language, "en");
    }

    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn bad_values_name_the_setting() {
        let cases: [Case; 9] = [
            (None, &[("TOM_ESL_LISTEN", "nowhere")], "TOM_ESL_LISTEN"),
            (None, &[("ALLOW_EGRESS", "perhaps")], "ALLOW_EGRESS"),
            (None, &[("TOM_BRAIN", "genius")], "TOM_BRAIN"),
            (
                Some("[calls.default]\nend_of_turn_ms = 150\n"),
                &[],
                "end_of_turn_ms",
            ),
            (
                Some("[calls.did.\"100\"]\nend_of_turn_ms = 310\n"),
                &[],
                "end_of_turn_ms",
            ),
            (
                None,
                &[("FALLBACK_TRIGGER_MS", "fast")],
                "FALLBACK_TRIGGER_MS",
            ),
            (Some("[server]\nesl_listen = 5\n"), &[], "esl_listen"),
            (
                Some("[server]\nno_such_setting = 1\n"),
                &[],
                "no_such_setting",
            ),
            (Some("[calls.default]\nmax_turns = 0\n"), &[], "max_turns"),
        ];
        for (file, env, needle) in cases {
            let err = load(file, env).expect_err(needle);
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let c = load(
            None,
            &[("TOM_PII_SALT", "pepper-123"), ("OPENAI_API_KEY", "sk-abc")],
        )
        .expect("config");
        let shown = c.to_masked_toml();
        assert!(!shown.contains("pepper-123"), "{shown}");
        assert!(!shown.contains("sk-abc"), "{shown}");
        assert!(shown.contains("********"));
        assert!(!format!("{c:?}").contains("pepper-123"));
        // The printed config reads back.
        let back: Config = toml::from_str(&shown).expect("round trip");
        assert_eq!(back.server.esl_listen, c.server.esl_listen);
    }

    const HS256_SECRET: &str = "an-hs256-test-secret-of-32-bytes!";

    fn test_key(name: &str) -> String {
        format!("{}/tests/data/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn streams_are_disabled_until_a_key_is_configured() {
        let c = load(None, &[]).expect("defaults");
        assert_eq!(c.auth, AuthConfig::default());
        assert_eq!(c.auth.leeway_secs, 30);
        assert!(c.auth.redis_url.is_none());
        assert!(crate::auth::JwtVerifier::from_config(&c.auth)
            .expect("no key is not an error")
            .is_none());
    }

    #[test]
    fn auth_settings_come_from_the_environment() {
        let c = load(
            Some("[auth]\nleeway_secs = 5\nissuer = \"file-issuer\"\nredis_timeout_ms = 250\n"),
            &[
                ("TOM_JWT_HS256_SECRET", HS256_SECRET),
                ("TOM_JWT_AUDIENCE", "tom"),
                ("TOM_JWT_ISSUER", "https://idp.example"),
                ("TOM_JWT_LEEWAY_SECS", "10"),
                ("REDIS_URL", "redis://:pw@127.0.0.1:6390/2"),
            ],
        )
        .expect("config");
        let a = &c.auth;
        assert_eq!(
            a.hs256_secret.as_ref().map(Secret::expose),
            Some(HS256_SECRET)
        );
        assert_eq!(a.audience.as_deref(), Some("tom"));
        assert_eq!(a.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(a.leeway_secs, 10);
        assert_eq!(a.redis_timeout_ms, 250);
        assert_eq!(
            a.redis_url.as_ref().map(RedisUrl::expose),
            Some("redis://:pw@127.0.0.1:6390/2")
        );
        let rs = load(
            None,
            &[(
                "TOM_JWT_RS256_PUBLIC_KEY_FILE",
                &test_key("rs256-public.pem"),
            )],
        )
        .expect("rs256 config");
        let verifier = crate::auth::JwtVerifier::from_config(&rs.auth)
            .expect("key")
            .expect("configured");
        assert_eq!(verifier.algorithm(), crate::auth::PinnedAlg::Rs256);
    }

    #[test]
    fn bad_auth_values_name_the_variable() {
        let missing = test_key("no-such-key.pem");
        let private = test_key("rs256-private.pem");
        let cases: &[Case] = &[
            (
                None,
                &[("TOM_JWT_LEEWAY_SECS", "soon")],
                "TOM_JWT_LEEWAY_SECS",
            ),
            (
                None,
                &[("TOM_JWT_LEEWAY_SECS", "30000")],
                "TOM_JWT_LEEWAY_SECS",
            ),
            (
                None,
                &[("TOM_JWT_HS256_SECRET", "short")],
                "TOM_JWT_HS256_SECRET",
            ),
            (
                None,
                &[("TOM_JWT_RS256_PUBLIC_KEY_FILE", &missing)],
                "TOM_JWT_RS256_PUBLIC_KEY_FILE",
            ),
            (
                None,
                &[("TOM_JWT_RS256_PUBLIC_KEY_FILE", &private)],
                "TOM_JWT_RS256_PUBLIC_KEY_FILE",
            ),
            (
                None,
                &[
                    ("TOM_JWT_HS256_SECRET", HS256_SECRET),
                    ("TOM_JWT_RS256_PUBLIC_KEY_FILE", &private),
                ],
                "both set",
            ),
            (
                None,
                &[("REDIS_URL", "http://:hunter2@cache:6379")],
                "REDIS_URL",
            ),
            (
                None,
                &[("REDIS_URL", "rediss://:hunter2@cache:6379")],
                "REDIS_URL",
            ),
            (None, &[("REDIS_URL", "hunter2")], "REDIS_URL"),
            (
                Some("[auth]\nredis_url = \"ftp://:hunter2@x\"\n"),
                &[],
                "redis_url",
            ),
            (
                Some("[auth]\nmemory_max_entries = 0\n"),
                &[],
                "memory_max_entries",
            ),
            (
                Some("[auth]\nno_such_setting = 1\n"),
                &[],
                "no_such_setting",
            ),
        ];
        for (file, env, needle) in cases {
            let err = load(*file, env).expect_err(needle);
            let shown = err.to_string();
            assert!(shown.contains(needle), "{needle}: {shown}");
            assert!(!shown.contains("hunter2"), "the password leaked: {shown}");
        }
    }

    #[test]
    fn auth_secrets_are_masked_when_printed() {
        let c = load(
            None,
            &[
                ("TOM_JWT_HS256_SECRET", HS256_SECRET),
                ("REDIS_URL", "redis://tom:hunter2@127.0.0.1:6390/0"),
            ],
        )
        .expect("config");
        let shown = c.to_masked_toml();
        assert!(!shown.contains(HS256_SECRET), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("redis://tom:********@127.0.0.1:6390/0"),
            "{shown}"
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains(HS256_SECRET) && !debug.contains("hunter2"),
            "{debug}"
        );
        // The password of a unix-socket URL is a query parameter.
        let unix =
            RedisUrl::parse("redis+unix:///run/redis.sock?db=1&pass=hunter2").expect("unix url");
        assert!(!unix.masked().contains("hunter2"), "{}", unix.masked());
        assert!(unix.masked().contains("db=1"), "{}", unix.masked());
        // The printed config reads back.
        let back: Config = toml::from_str(&shown).expect("round trip");
        assert_eq!(back.auth.leeway_secs, c.auth.leeway_secs);
        assert!(back.auth.redis_url.is_some());
    }
}
