//! Fault settings and their sampling.
//!
//! One struct serves three front doors: the `provider-sim` flags (clap), the admin
//! API's `GET`/`PUT /faults` body (serde) and [`super::SimHandle::set_faults`], so a
//! fault has the same name and meaning everywhere. Settings are read when a connection
//! or a response starts; a response already streaming keeps the settings it started with.

use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// First-audio delay when nothing else is said: a healthy provider's typical figure.
pub const DEFAULT_FIRST_AUDIO_MS: u64 = 300;

/// Upper bound of every delay setting. Bounded so no setting can overflow the clock
/// (a hostile `PUT /faults` must not panic the sim); an hour is far beyond any drill.
pub const MAX_DELAY_MS: u64 = 3_600_000;

/// How a rate limit shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitMode {
    /// No rate limiting.
    #[default]
    Off,
    /// Refuse the WebSocket upgrade with HTTP 429 (as OpenAI does when a key is over its limit).
    Http,
    /// Accept connections, but fail every response with an `error` event
    /// (type and code `rate_limit_exceeded`) and `response.done` status `failed`.
    Event,
}

/// Injected faults. Every field is optional in JSON; a missing one takes its default
/// (so `PUT /faults` with `{}` restores a healthy provider).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay in ms from `response.create` (or the server-VAD auto-commit) to the first
    /// audio delta of the reply.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_FIRST_AUDIO_MS)]
    pub first_audio_ms: u64,
    /// Jitter on --first-audio-ms: each response's delay is drawn uniformly from
    /// [first_audio_ms - N, first_audio_ms + N] ms (never below 0).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub first_audio_jitter_ms: u64,
    /// Lateness of each later audio delta: each is late by a uniform draw from [0, N] ms
    /// against its real-time slot (the stream never runs ahead of real time).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub delta_jitter_ms: u64,
    /// Chance (0..1) per response of an `error` event (type `server_error`) in place of
    /// the first audio, after which the response ends with `response.done` status `failed`.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub error_rate: f64,
    /// Accept TCP connections and close them at once, before the WebSocket handshake.
    #[arg(long)]
    pub refuse_connections: bool,
    /// Answer every WebSocket upgrade with HTTP 401, whatever key is presented.
    #[arg(long)]
    pub reject_auth: bool,
    /// Rate limiting: `off`, `http` (HTTP 429 on upgrade) or `event` (every response fails
    /// with a `rate_limit_exceeded` error event).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = RateLimitMode::Off)]
    pub rate_limit: RateLimitMode,
    /// Drop the connection (no WebSocket close frame) this many ms after a response
    /// starts, if it is still streaming then.
    #[arg(long, value_name = "MS")]
    pub close_after_ms: Option<u64>,
    /// Never answer `input_audio_buffer.commit` or `response.create` (nor the server-VAD
    /// auto-commit): no `committed`, no `response.created`, no audio. The connection stays
    /// open and other events are still answered.
    #[arg(long)]
    pub stall: bool,
    /// Seed for the random draws (jitter, error_rate); each connection gets its own
    /// stream derived from the seed and its connection number. Unset: seeded from the OS.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            first_audio_ms: DEFAULT_FIRST_AUDIO_MS,
            first_audio_jitter_ms: 0,
            delta_jitter_ms: 0,
            error_rate: 0.0,
            refuse_connections: false,
            reject_auth: false,
            rate_limit: RateLimitMode::Off,
            close_after_ms: None,
            stall: false,
            seed: None,
        }
    }
}

/// A fault setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultsError {
    /// `error_rate` is not a probability.
    #[error("error_rate must be between 0 and 1, got {0}")]
    ErrorRate(f64),
    /// A delay is longer than [`MAX_DELAY_MS`].
    #[error("{name} must be at most {MAX_DELAY_MS} ms, got {value}")]
    Delay {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: u64,
    },
}

impl Faults {
    /// Checks every setting is usable.
    pub fn validate(&self) -> Result<(), FaultsError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(FaultsError::ErrorRate(self.error_rate));
        }
        let delays = [
            ("first_audio_ms", Some(self.first_audio_ms)),
            ("first_audio_jitter_ms", Some(self.first_audio_jitter_ms)),
            ("delta_jitter_ms", Some(self.delta_jitter_ms)),
            ("close_after_ms", self.close_after_ms),
        ];
        for (name, value) in delays {
            if let Some(value) = value.filter(|&v| v > MAX_DELAY_MS) {
                return Err(FaultsError::Delay { name, value });
            }
        }
        Ok(())
    }
}

/// The random draws of one connection.
#[derive(Debug)]
pub struct Sampler {
    rng: StdRng,
}

impl Sampler {
    /// A connection's sampler: deterministic for a given `seed` and connection number,
    /// so a seeded run replays the same faults whatever order connections interleave in.
    pub fn new(seed: Option<u64>, conn: u64) -> Self {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed.wrapping_add(conn)),
            None => StdRng::from_os_rng(),
        };
        Self { rng }
    }

    /// This response's delay before its first audio.
    pub fn first_audio(&mut self, faults: &Faults) -> Duration {
        let jitter = faults.first_audio_jitter_ms;
        let ms = if jitter == 0 {
            faults.first_audio_ms
        } else {
            let low = faults.first_audio_ms.saturating_sub(jitter);
            let high = faults.first_audio_ms.saturating_add(jitter);
            self.rng.random_range(low..=high)
        };
        Duration::from_millis(ms)
    }

    /// How late one audio delta is against its real-time slot.
    pub fn delta_lateness(&mut self, jitter_ms: u64) -> Duration {
        if jitter_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.rng.random_range(0..=jitter_ms))
    }

    /// Whether this response fails with a server error.
    pub fn fails(&mut self, faults: &Faults) -> bool {
        // random() is in [0, 1), so a rate of 1 always fails and 0 never does.
        faults.error_rate > 0.0 && self.rng.random::<f64>() < faults.error_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_defaults() {
        let f: Faults = serde_json::from_str(r#"{"first_audio_ms":1500}"#).unwrap();
        assert_eq!(
            f,
            Faults {
                first_audio_ms: 1500,
                ..Faults::default()
            }
        );
        let back: Faults = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        let empty: Faults = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, Faults::default());
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(serde_json::from_str::<Faults>(r#"{"first_audio":1}"#).is_err());
        assert!(serde_json::from_str::<Faults>(r#"{"rate_limit":"sometimes"}"#).is_err());
        let f: Faults = serde_json::from_str(r#"{"rate_limit":"event"}"#).unwrap();
        assert_eq!(f.rate_limit, RateLimitMode::Event);
        for bad in [
            Faults {
                error_rate: 1.5,
                ..Faults::default()
            },
            Faults {
                error_rate: f64::NAN,
                ..Faults::default()
            },
            Faults {
                first_audio_ms: u64::MAX,
                ..Faults::default()
            },
            Faults {
                close_after_ms: Some(MAX_DELAY_MS + 1),
                ..Faults::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(Faults::default().validate().is_ok());
    }

    #[test]
    fn seeded_samplers_repeat_and_respect_bounds() {
        let faults = Faults {
            first_audio_ms: 500,
            first_audio_jitter_ms: 200,
            error_rate: 0.5,
            ..Faults::default()
        };
        let draw = |conn| {
            let mut s = Sampler::new(Some(7), conn);
            (0..50)
                .map(|_| (s.first_audio(&faults), s.fails(&faults)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        for (delay, _) in draw(3) {
            assert!((300..=700).contains(&delay.as_millis()), "{delay:?}");
        }
        let mut s = Sampler::new(None, 1);
        let always = Faults {
            error_rate: 1.0,
            ..Faults::default()
        };
        assert!((0..100).all(|_| s.fails(&always)));
        assert!((0..100).all(|_| !s.fails(&Faults::default())));
        assert!((0..100).all(|_| s.delta_lateness(30) <= Duration::from_millis(30)));
    }
}
