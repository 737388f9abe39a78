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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where FreeSWITCH's `socket` application connects (`TOM_ESL_LISTEN`).
    pub esl_listen: SocketAddr,
    /// FreeSWITCH hosts allowed to connect (`TOM_ESL_ALLOW`, comma-separated CIDRs).
    pub esl_allow: Vec<IpNet>,
    /// `/metrics`, `/health`, `/ready` (`TOM_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// IP of the media sockets, both ends of the unicast stream (`TOM_MEDIA_IP`).
    pub media_ip: IpAddr,
    /// Calls are hung up after this long (`TOM_MAX_CALL_SECS`).
    pub max_call_secs: u64,
    /// Cost log directory (`TOM_COST_LOG_DIR`).
    pub cost_log_dir: PathBuf,
    /// Write a call record (the transcript) per call (`TOM_CALL_RECORDS`). It holds what
    /// callers said: personal data.
    pub call_records: bool,
    /// Call-record directory (`TOM_CALL_RECORD_DIR`); unset: beside the cost log.
    pub call_record_dir: Option<PathBuf>,
    /// Salt for hashing caller numbers (`TOM_PII_SALT`).
    pub pii_salt: Secret,
    /// On SIGTERM, how long live calls may finish before they are ended.
    pub drain_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            esl_listen: SocketAddr::from(([127, 0, 0, 1], 8084)),
            esl_allow: vec![loopback_v4(), loopback_v6()],
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            media_ip: IpAddr::from([127, 0, 0, 1]),
            max_call_secs: 300,
            cost_log_dir: PathBuf::from("data/cost_logs"),
            call_records: true,
            call_record_dir: None,
            pii_salt: Secret::new("tom-dev-salt"),
            drain_secs: 30,
        }
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderFile {
    /// `TOM_PROVIDER_URL`.
    pub url: Option<String>,
    /// `TOM_PROVIDER_MODEL`.
    pub model: Option<String>,
    /// `TOM_PROVIDER_KEY_FILE`.
    pub key_file: Option<PathBuf>,
    /// `TOM_PROVIDER_DIALECT`.
    pub dialect: Option<String>,
    /// `TOM_PROVIDER_AUTH`.
    pub auth: Option<String>,
    /// `TOM_PROVIDER_VOICE`.
    pub voice: Option<String>,
    /// `TOM_PROVIDER_TURN_DETECTION`.
    pub turn_detection: Option<String>,
    /// `TOM_PROVIDER_TRANSCRIPTION`.
    pub transcription: Option<String>,
}

/// How a call goes: greeting, language, persona, limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        }
    }
}

/// Call profiles: a default and per-DID overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// Everything `tom serve` needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
}

/// Limits of the `/v1/stream` WebSocket endpoint (docs/stream.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        Ok(())
    }

    /// The provider client's settings: environment first, then the file.
    pub fn provider_config(&self) -> Result<ProviderConfig, ConfigError> {
        self.provider_config_with(&|name: &str| std::env::var(name).ok())
    }

    fn provider_config_with(
        &self,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<ProviderConfig, ConfigError> {
        let file = &self.provider;
        let allow = self.allow_egress;
        let from_file = |name: &str| -> Option<String> {
            match name {
                "TOM_PROVIDER_URL" => file.url.clone(),
                "TOM_PROVIDER_MODEL" => file.model.clone(),
                "TOM_PROVIDER_KEY_FILE" => file.key_file.as_ref().map(|p| p.display().to_string()),
                "TOM_PROVIDER_DIALECT" => file.dialect.clone(),
                "TOM_PROVIDER_AUTH" => file.auth.clone(),
                "TOM_PROVIDER_VOICE" => file.voice.clone(),
                "TOM_PROVIDER_TURN_DETECTION" => file.turn_detection.clone(),
                "TOM_PROVIDER_TRANSCRIPTION" => file.transcription.clone(),
                "ALLOW_EGRESS" => Some(allow.to_string()),
                _ => None,
            }
        };
        Ok(ProviderConfig::from_lookup(|name| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| from_file(name))
        })?)
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
        let cases: [Case; 7] = [
            (None, &[("TOM_ESL_LISTEN", "nowhere")], "TOM_ESL_LISTEN"),
            (None, &[("ALLOW_EGRESS", "perhaps")], "ALLOW_EGRESS"),
            (None, &[("TOM_BRAIN", "genius")], "TOM_BRAIN"),
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
}
