//! Provider settings from the environment (names are a contract with operators, see
//! DESIGN.md), with the API key held as a secret that never prints.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::protocol::Dialect;

/// The OpenAI Realtime endpoint.
pub const DEFAULT_URL: &str = "wss://api.openai.com/v1/realtime";
/// The GA realtime model.
pub const DEFAULT_MODEL: &str = "gpt-realtime";

/// The provider's API key. `Debug` shows `[REDACTED]`; there is no `Display`.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(SecretString::from(key.into()))
    }

    /// The key, for the one header that carries it.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// How the key is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY` (OpenAI and most compatible servers).
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKeyHeader,
}

/// Everything the provider client needs.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// WebSocket URL of the realtime endpoint (`TOM_PROVIDER_URL`).
    pub url: String,
    /// Model (`TOM_PROVIDER_MODEL`); added as `?model=` unless the URL names one.
    pub model: String,
    /// API key (`OPENAI_API_KEY`, or the file named by `TOM_PROVIDER_KEY_FILE`).
    pub api_key: Option<ApiKey>,
    /// Whether the engine may contact the provider at all (`ALLOW_EGRESS`, default false).
    pub allow_egress: bool,
    /// Session schema (`TOM_PROVIDER_DIALECT`: `ga` | `beta`).
    pub dialect: Dialect,
    /// Key header (`TOM_PROVIDER_AUTH`: `bearer` | `api-key`).
    pub auth: AuthStyle,
    /// Voice (`TOM_PROVIDER_VOICE`).
    pub voice: String,
    /// Let the provider detect turns (`TOM_PROVIDER_TURN_DETECTION=server_vad`) instead of
    /// our endpointer (`none`, the default: one endpointer for both backends).
    pub server_vad: bool,
    /// Model transcribing the caller for the transcript (`TOM_PROVIDER_TRANSCRIPTION`,
    /// `none` to turn off).
    pub transcription_model: Option<String>,
    /// Limit for one connection attempt, handshake included.
    pub connect_timeout: Duration,
    /// Attempts for transient connect failures (with exponential backoff and jitter).
    pub connect_attempts: usize,
    /// No server event for this long while a reply is owed: the provider has stalled.
    pub response_timeout: Duration,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.into(),
            model: DEFAULT_MODEL.into(),
            api_key: None,
            allow_egress: false,
            dialect: Dialect::Ga,
            auth: AuthStyle::Bearer,
            voice: "marin".into(),
            server_vad: false,
            transcription_model: Some("gpt-4o-mini-transcribe".into()),
            connect_timeout: Duration::from_secs(5),
            connect_attempts: 3,
            response_timeout: Duration::from_secs(5),
        }
    }
}

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// What is wrong (never the value of a secret).
    pub problem: String,
}

/// Whether the URL's host is this machine (`localhost` or a loopback address).
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl ProviderConfig {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(url) = get("TOM_PROVIDER_URL") {
            let parsed = url::Url::parse(&url).map_err(|e| ConfigError {
                name: "TOM_PROVIDER_URL",
                problem: format!("not a URL ({e})"),
            })?;
            if !matches!(parsed.scheme(), "ws" | "wss") {
                return Err(ConfigError {
                    name: "TOM_PROVIDER_URL",
                    problem: format!("scheme must be ws or wss, not {:?}", parsed.scheme()),
                });
            }
            // The API key goes in the upgrade's headers: in clear text only as far as
            // this host (provider-sim, a local proxy), never across a network.
            if parsed.scheme() == "ws" && !is_loopback(&parsed) {
                return Err(ConfigError {
                    name: "TOM_PROVIDER_URL",
                    problem: format!(
                        "ws:// would send the API key unencrypted to {}: use wss:// \
                         (plain ws:// is allowed only to a loopback address)",
                        parsed.host_str().unwrap_or("?")
                    ),
                });
            }
            config.url = url;
        }
        if let Some(model) = get("TOM_PROVIDER_MODEL") {
            config.model = model;
        }
        if let Some(allow) = get("ALLOW_EGRESS") {
            config.allow_egress = parse_bool(&allow).ok_or_else(|| ConfigError {
                name: "ALLOW_EGRESS",
                problem: format!("expected true or false, got {allow:?}"),
            })?;
        }
        config.api_key = match (get("OPENAI_API_KEY"), get("TOM_PROVIDER_KEY_FILE")) {
            // Refused rather than ranked: a key left behind in the environment would
            // otherwise silently win over the file an operator just rotated.
            (Some(_), Some(file)) => {
                return Err(ConfigError {
                    name: "OPENAI_API_KEY",
                    problem: format!(
                        "set together with a key file ({file}); set only one of \
                         OPENAI_API_KEY and TOM_PROVIDER_KEY_FILE / provider.key_file"
                    ),
                })
            }
            (Some(key), None) => Some(ApiKey::new(key)),
            (None, Some(file)) => Some(read_key_file(PathBuf::from(file))?),
            (None, None) => None,
        };
        if let Some(dialect) = get("TOM_PROVIDER_DIALECT") {
            config.dialect = match dialect.as_str() {
                "ga" => Dialect::Ga,
                "beta" => Dialect::Beta,
                other => {
                    return Err(ConfigError {
                        name: "TOM_PROVIDER_DIALECT",
                        problem: format!("expected ga or beta, got {other:?}"),
                    })
                }
            };
        }
        if let Some(auth) = get("TOM_PROVIDER_AUTH") {
            config.auth = match auth.as_str() {
                "bearer" => AuthStyle::Bearer,
                "api-key" => AuthStyle::ApiKeyHeader,
                other => {
                    return Err(ConfigError {
                        name: "TOM_PROVIDER_AUTH",
                        problem: format!("expected bearer or api-key, got {other:?}"),
                    })
                }
            };
        }
        if let Some(voice) = get("TOM_PROVIDER_VOICE") {
            config.voice = voice;
        }
        if let Some(detection) = get("TOM_PROVIDER_TURN_DETECTION") {
            config.server_vad = match detection.as_str() {
                "server_vad" => true,
                "none" => false,
                other => {
                    return Err(ConfigError {
                        name: "TOM_PROVIDER_TURN_DETECTION",
                        problem: format!("expected server_vad or none, got {other:?}"),
                    })
                }
            };
        }
        if let Some(model) = get("TOM_PROVIDER_TRANSCRIPTION") {
            config.transcription_model = (model != "none").then_some(model);
        }
        Ok(config)
    }
}

/// `true`/`false` and the usual spellings (1/0, yes/no, on/off), any case.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn read_key_file(path: PathBuf) -> Result<ApiKey, ConfigError> {
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
        name: "TOM_PROVIDER_KEY_FILE",
        problem: format!("cannot read {}: {e}", path.display()),
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(ConfigError {
            name: "TOM_PROVIDER_KEY_FILE",
            problem: format!("{} is empty", path.display()),
        });
    }
    Ok(ApiKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<ProviderConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ProviderConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_never_reach_the_cloud() {
        let c = config(&[]).expect("defaults");
        assert!(!c.allow_egress);
        assert!(c.api_key.is_none());
        assert_eq!(c.url, DEFAULT_URL);
        assert!(!c.server_vad);
    }

    #[test]
    fn the_key_never_prints() {
        let c = config(&[
            ("OPENAI_API_KEY", "sk-very-secret"),
            ("ALLOW_EGRESS", "true"),
        ])
        .expect("config");
        assert!(c.allow_egress);
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert_eq!(
            c.api_key.as_ref().map(ApiKey::expose),
            Some("sk-very-secret")
        );
    }

    #[test]
    fn key_file_is_read_trimmed_and_its_errors_name_the_file_not_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-from-file\n").expect("write");
        let c = config(&[("TOM_PROVIDER_KEY_FILE", path.to_str().expect("utf8"))]).expect("config");
        assert_eq!(c.api_key.as_ref().map(ApiKey::expose), Some("sk-from-file"));
        let missing = dir.path().join("absent");
        let err = config(&[("TOM_PROVIDER_KEY_FILE", missing.to_str().expect("utf8"))])
            .expect_err("missing file");
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn a_key_in_the_environment_and_a_key_file_are_refused_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-from-file\n").expect("write");
        let err = config(&[
            ("OPENAI_API_KEY", "sk-stale-env"),
            ("TOM_PROVIDER_KEY_FILE", path.to_str().expect("utf8")),
        ])
        .expect_err("two keys");
        let shown = err.to_string();
        assert!(shown.contains("OPENAI_API_KEY"), "{shown}");
        assert!(shown.contains("TOM_PROVIDER_KEY_FILE"), "{shown}");
        assert!(!shown.contains("sk-stale-env"), "{shown}");
        assert!(!shown.contains("sk-from-file"), "{shown}");
    }

    #[test]
    fn plain_ws_is_allowed_only_to_this_machine() {
        for url in [
            "ws://127.0.0.1:8765/v1/realtime",
            "ws://localhost:8765/v1/realtime",
            "ws://[::1]:8765/v1/realtime",
            "wss://api.openai.com/v1/realtime",
            "wss://10.0.0.5/v1/realtime",
        ] {
            assert!(config(&[("TOM_PROVIDER_URL", url)]).is_ok(), "{url}");
        }
        for url in [
            "ws://api.openai.com/v1/realtime",
            "ws://10.0.0.5:8765/v1/realtime",
            "ws://provider-sim:8765/v1/realtime",
        ] {
            let err = config(&[("TOM_PROVIDER_URL", url)]).expect_err(url);
            assert_eq!(err.name, "TOM_PROVIDER_URL");
            assert!(err.problem.contains("wss://"), "{err}");
        }
    }

    #[test]
    fn bad_values_are_clear_errors() {
        for (name, value, needle) in [
            ("ALLOW_EGRESS", "maybe", "true or false"),
            (
                "TOM_PROVIDER_URL",
                "https://api.openai.com/v1/realtime",
                "ws or wss",
            ),
            ("TOM_PROVIDER_URL", "not a url", "not a URL"),
            ("TOM_PROVIDER_DIALECT", "v2", "ga or beta"),
            ("TOM_PROVIDER_AUTH", "basic", "bearer or api-key"),
            (
                "TOM_PROVIDER_TURN_DETECTION",
                "semantic",
                "server_vad or none",
            ),
        ] {
            let err = config(&[(name, value)]).expect_err(name);
            assert_eq!(err.name, name);
            assert!(err.problem.contains(needle), "{err}");
        }
    }
}
