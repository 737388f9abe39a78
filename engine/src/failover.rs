//! The failover policy (sans-IO): which backend serves new calls and new turns, and why.
//!
//! Two plain structs, fed with events and a `now: Instant`, returning typed decisions
//! that carry their reason. Nothing here reads a clock, spawns a task or touches a
//! socket; the async shell (engine issue) feeds them and turns their outputs into
//! metrics, log lines and session switches. See `docs/failover.md` for the operator's
//! view and a worked timeline.
//!
//! - [`FailoverPolicy`], one per provider for the whole engine (the fleet scope): a
//!   circuit breaker `Closed` → `Open { until }` → `HalfOpen` → `Closed` | `Open`.
//! - [`CallPolicy`], one per call, owned by the call task: first-audio deadline, slow
//!   turns, hard failures, and when a call that left the provider may go back.
//!
//! Every latency here is the backend's response time: from the end of the caller's turn
//! (the endpointer's decision, when the turn is committed) to the first reply audio.
//! Turns, probes and the per-call rules use that one yardstick, so the trip and recovery
//! thresholds compare like with like and do not move when the endpointer's hangover is
//! tuned; the caller's e2e adds the hangover (docs/decisions/0008-failover-yardstick.md).
//!
//! Thresholds compare strictly: the fleet trips when p95 is *over* `trip_ms` (800 ms
//! exactly does not trip) and a probe is healthy when *below* `recover_ms` (600 ms
//! exactly is not healthy). Time windows are half-open: an event exactly `window` old
//! has left the window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backend::{BackendKind, ErrorKind};

/// Longest duration any time setting may have: keeps `Instant` arithmetic far from
/// overflow, and nothing sensible waits longer than a week.
const MAX_SECS: u64 = 7 * 24 * 3600;

/// Most samples the p95 window may keep.
const MAX_SAMPLES: u64 = 100_000;

/// Largest error burst: the burst deque holds at most this many instants.
const MAX_BURST: u64 = 100_000;

// ---------------------------------------------------------------------------------------
// Settings

/// Failover settings: the `[failover]` section of the settings file; the operator-facing
/// ones also come from the environment ([`Self::from_lookup`]).
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverConfig {
    /// The fleet trips when the provider's p95 response time (end of turn → first reply
    /// audio) is over this (`FALLBACK_TRIGGER_MS`); also the per-call "slow turn"
    /// threshold.
    pub trip_ms: u64,
    /// A probe is healthy when its response time is below this. `None` = 3/4 of `trip_ms` (600 for 800), so an
    /// operator who moves the trigger keeps a hysteresis gap without a second setting.
    pub recover_ms: Option<u64>,
    /// Sliding window of provider turns for the fleet p95, in seconds.
    pub window_s: u64,
    /// Turns the window must hold before p95 may trip. With nearest rank, p95 of fewer
    /// than 20 samples is their maximum, so a lower value lets one outlier trip the
    /// fleet; 20 is the smallest count where p95 ignores a single slow turn.
    pub min_turns: u32,
    /// At most this many samples are kept (the newest), bounding memory and sort time.
    pub max_samples: u32,
    /// Errors within `error_window_s` that trip the fleet (`FALLBACK_ERROR_BURST`).
    pub error_burst: u32,
    /// The error burst window, in seconds (`FALLBACK_ERROR_WINDOW`).
    pub error_window_s: u64,
    /// Time on local after a first trip, in seconds (`FALLBACK_COOLDOWN`); doubles with
    /// each consecutive trip.
    pub cooldown_s: u64,
    /// Cap of the grown cooldown, in seconds (never below `cooldown_s`).
    pub cooldown_max_s: u64,
    /// Up to this percentage is added to each cooldown at random, so engines that
    /// tripped on the same outage do not all probe the provider at the same second.
    pub cooldown_jitter_pct: u32,
    /// Consecutive provider connect failures that trip the fleet at once.
    pub connect_failures_to_trip: u32,
    /// A provider turn with no audio this long after the end of the turn is answered
    /// locally.
    pub first_audio_deadline_ms: u64,
    /// Consecutive slow provider turns that move a call to local.
    pub slow_turns_to_move_call: u32,
    /// Consecutive healthy probes that close the circuit again.
    pub probes_to_recover: u32,
    /// Time between the starts of two probes while half-open.
    pub probe_interval_ms: u64,
    /// A probe without a result after this long has failed (a stuck shell must not keep
    /// the circuit half-open for ever).
    pub probe_timeout_ms: u64,
    /// After failback, the share (percent) of new calls sent to the provider, one entry
    /// per ramp step; 100% after the last step. Empty: no ramp.
    pub ramp_percent: Vec<u8>,
    /// Length of one ramp step, in seconds.
    pub ramp_step_s: u64,
    /// `false` (the default): local only, the provider is never used (`ALLOW_EGRESS`).
    /// Not a `[failover]` key: the top-level `allow_egress` sets it, so the client and the
    /// policy can never disagree.
    #[serde(skip)]
    pub allow_egress: bool,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            trip_ms: 800,
            recover_ms: None,
            window_s: 60,
            min_turns: 20,
            max_samples: 1000,
            error_burst: 3,
            error_window_s: 60,
            cooldown_s: 600,
            cooldown_max_s: 3600,
            cooldown_jitter_pct: 10,
            connect_failures_to_trip: 2,
            first_audio_deadline_ms: 1200,
            slow_turns_to_move_call: 2,
            probes_to_recover: 3,
            probe_interval_ms: 5000,
            probe_timeout_ms: 10_000,
            ramp_percent: vec![25, 50],
            ramp_step_s: 60,
            allow_egress: false,
        }
    }
}

/// A failover setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailoverConfigError {
    /// An environment variable does not parse.
    #[error("{name}: expected {expected}, got {value:?}")]
    BadValue {
        /// The environment variable.
        name: &'static str,
        /// What it held.
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// A value parses but is out of range or contradicts another.
    #[error("{setting}: {problem}")]
    Invalid {
        /// The environment variable, or the config key when it has none.
        setting: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl FailoverConfig {
    /// Defaults overridden by the process environment, validated.
    pub fn from_env() -> Result<Self, FailoverConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Defaults overridden through `lookup` (tests pass a map), validated.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, FailoverConfigError> {
        Self::default().with_env(lookup)
    }

    /// These settings overridden by the operator-facing variables, validated (so a file
    /// layer can go first and the environment still wins). Empty values count as unset.
    pub fn with_env(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, FailoverConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let integer = |name: &'static str, expected: &'static str| -> Result<Option<u64>, _> {
            get(name)
                .map(|value| {
                    value
                        .parse::<u64>()
                        .map_err(|_| FailoverConfigError::BadValue {
                            name,
                            value,
                            expected,
                        })
                })
                .transpose()
        };
        if let Some(ms) = integer("FALLBACK_TRIGGER_MS", "milliseconds (an integer)")? {
            self.trip_ms = ms;
        }
        if let Some(count) = integer("FALLBACK_ERROR_BURST", "a count (an integer)")? {
            self.error_burst = u32::try_from(count).map_err(|_| FailoverConfigError::Invalid {
                setting: "FALLBACK_ERROR_BURST",
                problem: format!("must be between 1 and {MAX_BURST}, got {count}"),
            })?;
        }
        if let Some(s) = integer("FALLBACK_ERROR_WINDOW", "seconds (an integer)")? {
            self.error_window_s = s;
        }
        if let Some(s) = integer("FALLBACK_COOLDOWN", "seconds (an integer)")? {
            self.cooldown_s = s;
        }
        if let Some(value) = get("ALLOW_EGRESS") {
            self.allow_egress = crate::backend::provider::config::parse_bool(&value).ok_or(
                FailoverConfigError::BadValue {
                    name: "ALLOW_EGRESS",
                    value,
                    expected: "true or false",
                },
            )?;
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks ranges and the relations between settings.
    pub fn validate(&self) -> Result<(), FailoverConfigError> {
        fn invalid(setting: &'static str, problem: String) -> Result<(), FailoverConfigError> {
            Err(FailoverConfigError::Invalid { setting, problem })
        }
        fn within(setting: &'static str, value: u64, max: u64) -> Result<(), FailoverConfigError> {
            if value == 0 || value > max {
                return invalid(setting, format!("must be between 1 and {max}, got {value}"));
            }
            Ok(())
        }
        let max_ms = MAX_SECS * 1000;
        within("FALLBACK_TRIGGER_MS", self.trip_ms, max_ms)?;
        if let Some(recover) = self.recover_ms {
            if recover == 0 || recover >= self.trip_ms {
                return invalid(
                    "recover_ms",
                    format!(
                        "must be above 0 and below the trigger FALLBACK_TRIGGER_MS ({} ms), got {recover}",
                        self.trip_ms
                    ),
                );
            }
        } else if self.recover_ms() == 0 {
            return invalid(
                "FALLBACK_TRIGGER_MS",
                format!(
                    "too small to leave a recovery threshold below it, got {}",
                    self.trip_ms
                ),
            );
        }
        within("window_s", self.window_s, MAX_SECS)?;
        within("min_turns", u64::from(self.min_turns), u64::from(u32::MAX))?;
        // The p95 copies the samples on each turn: keep that small.
        within("max_samples", u64::from(self.max_samples), MAX_SAMPLES)?;
        if self.max_samples < self.min_turns {
            return invalid(
                "max_samples",
                format!(
                    "must be at least min_turns ({}), got {}",
                    self.min_turns, self.max_samples
                ),
            );
        }
        within(
            "FALLBACK_ERROR_BURST",
            u64::from(self.error_burst),
            MAX_BURST,
        )?;
        within("FALLBACK_ERROR_WINDOW", self.error_window_s, MAX_SECS)?;
        within("FALLBACK_COOLDOWN", self.cooldown_s, MAX_SECS)?;
        within("cooldown_max_s", self.cooldown_max_s, MAX_SECS)?;
        if self.cooldown_jitter_pct > 100 {
            return invalid(
                "cooldown_jitter_pct",
                format!("must be at most 100, got {}", self.cooldown_jitter_pct),
            );
        }
        within(
            "connect_failures_to_trip",
            u64::from(self.connect_failures_to_trip),
            u64::from(u32::MAX),
        )?;
        within(
            "first_audio_deadline_ms",
            self.first_audio_deadline_ms,
            max_ms,
        )?;
        within(
            "slow_turns_to_move_call",
            u64::from(self.slow_turns_to_move_call),
            u64::from(u32::MAX),
        )?;
        within(
            "probes_to_recover",
            u64::from(self.probes_to_recover),
            u64::from(u32::MAX),
        )?;
        within("probe_interval_ms", self.probe_interval_ms, max_ms)?;
        within("probe_timeout_ms", self.probe_timeout_ms, max_ms)?;
        if !self.ramp_percent.is_empty() {
            within("ramp_step_s", self.ramp_step_s, MAX_SECS)?;
        }
        let mut previous = 0;
        for &step in &self.ramp_percent {
            if step == 0 || step > 100 || step < previous {
                return invalid(
                    "ramp_percent",
                    format!(
                        "steps must be 1..=100 and never decrease, got {:?}",
                        self.ramp_percent
                    ),
                );
            }
            previous = step;
        }
        Ok(())
    }

    /// The effective recovery threshold (`recover_ms`, or 3/4 of `trip_ms`).
    pub fn recover_ms(&self) -> u64 {
        self.recover_ms
            .unwrap_or_else(|| self.trip_ms.saturating_mul(3) / 4)
    }

    /// The cooldown after `trips` consecutive trips (1 = the first): `cooldown_s`
    /// doubled per further trip, capped at `cooldown_max_s` (never below `cooldown_s`),
    /// plus up to `cooldown_jitter_pct` percent drawn from `random`. The cap bounds the
    /// grown value before jitter, so the longest wait is cap × (1 + jitter).
    pub fn cooldown(&self, trips: u32, random: u64) -> Duration {
        let base = self.cooldown_s.saturating_mul(1000);
        let cap = self
            .cooldown_max_s
            .max(self.cooldown_s)
            .saturating_mul(1000);
        let doublings = trips.saturating_sub(1).min(40);
        let grown = base.saturating_mul(1u64 << doublings).min(cap);
        let spread = grown.saturating_mul(u64::from(self.cooldown_jitter_pct)) / 100;
        let jitter = if spread == 0 {
            0
        } else {
            random % (spread + 1)
        };
        Duration::from_millis(grown.saturating_add(jitter))
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.window_s)
    }

    fn error_window(&self) -> Duration {
        Duration::from_secs(self.error_window_s)
    }

    fn first_audio_deadline(&self) -> Duration {
        Duration::from_millis(self.first_audio_deadline_ms)
    }
}

// ---------------------------------------------------------------------------------------
// Reasons, decisions, transitions

/// Why a call, a turn or the fleet left the provider. [`Self::as_str`] is the `reason`
/// label of `tom_provider_failover_total`; serialized (for the cost log and structured
/// logs) the tag `reason` carries the same label next to the numbers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FailoverReason {
    /// Fleet: provider p95 over the trigger across enough turns in the window.
    Latency {
        /// The p95 (nearest rank), ms.
        p95_ms: u64,
        /// Provider turns in the window.
        turns: u32,
        /// The trigger it passed, ms.
        trip_ms: u64,
        /// The window, seconds.
        window_s: u64,
    },
    /// Fleet: an error burst.
    Errors {
        /// Errors in the window.
        errors: u32,
        /// The window, seconds.
        window_s: u64,
        /// The error that completed the burst.
        last: ErrorKind,
        /// How many of them were `invalid_request` (our request is wrong: alert).
        invalid_requests: u32,
    },
    /// Fleet: consecutive connect failures (the fast trip).
    #[serde(rename = "connect")]
    ConnectFailures {
        /// How many in a row.
        consecutive: u32,
    },
    /// Fleet: the provider refused our credentials. Needs an operator.
    Auth,
    /// Fleet: the provider is rate limiting us (429).
    RateLimit,
    /// Turn: no provider audio by the first-audio deadline; this turn is answered locally.
    FirstAudioDeadline {
        /// The deadline, ms after end of speech.
        deadline_ms: u64,
    },
    /// Call: consecutive slow provider turns moved the call to local.
    SlowTurns {
        /// Slow turns in a row.
        turns: u32,
        /// First audio of the last one, ms (the deadline if it never came).
        last_ms: u64,
        /// The threshold they passed, ms.
        trip_ms: u64,
    },
    /// Call: a hard provider failure moved the call to local within the turn.
    ProviderFailedMidCall {
        /// The error class.
        kind: ErrorKind,
    },
}

impl FailoverReason {
    /// The `reason` label of `tom_provider_failover_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::Errors { .. } => "errors",
            Self::ConnectFailures { .. } => "connect",
            Self::Auth => "auth",
            Self::RateLimit => "rate_limit",
            Self::FirstAudioDeadline { .. } => "first_audio_deadline",
            Self::SlowTurns { .. } => "slow_turns",
            Self::ProviderFailedMidCall { .. } => "provider_failed_mid_call",
        }
    }

    /// A human must look (credentials, or requests the provider calls wrong): waiting
    /// out a cooldown will not fix it.
    pub fn needs_alert(&self) -> bool {
        match self {
            Self::Auth => true,
            Self::Errors {
                invalid_requests, ..
            } => *invalid_requests > 0,
            Self::ProviderFailedMidCall { kind } => {
                matches!(kind, ErrorKind::Auth | ErrorKind::InvalidRequest)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for FailoverReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latency {
                p95_ms,
                turns,
                trip_ms,
                window_s,
            } => write!(
                f,
                "provider p95 response {p95_ms} ms > {trip_ms} ms over {turns} turns in the last {window_s} s"
            ),
            Self::Errors {
                errors,
                window_s,
                last,
                invalid_requests,
            } => write!(
                f,
                "{errors} provider errors within {window_s} s (last: {}, invalid_request: {invalid_requests})",
                last.as_str()
            ),
            Self::ConnectFailures { consecutive } => {
                write!(f, "{consecutive} consecutive provider connect failures")
            }
            Self::Auth => f.write_str("the provider refused our credentials (auth): needs an operator"),
            Self::RateLimit => f.write_str("the provider is rate limiting us (429)"),
            Self::FirstAudioDeadline { deadline_ms } => {
                write!(f, "no provider audio {deadline_ms} ms after end of speech")
            }
            Self::SlowTurns {
                turns,
                last_ms,
                trip_ms,
            } => write!(
                f,
                "{turns} slow provider turns in a row (last first audio {last_ms} ms > {trip_ms} ms)"
            ),
            Self::ProviderFailedMidCall { kind } => {
                write!(f, "the provider failed mid-call ({})", kind.as_str())
            }
        }
    }
}

/// The fleet circuit for one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetState {
    /// `ALLOW_EGRESS=false`: local only, for good; no input changes it.
    Disabled,
    /// The provider serves new calls (possibly ramping up after a failback).
    Closed,
    /// Local serves new calls until `until`, then probing starts.
    Open {
        /// End of the cooldown.
        until: Instant,
    },
    /// Local still serves new calls; synthetic probes test the provider.
    HalfOpen,
}

impl FleetState {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Why [`FailoverPolicy::backend_for_new_call`] chose what it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionReason {
    /// `ALLOW_EGRESS=false`.
    EgressDisabled,
    /// Closed, not ramping: the provider serves.
    Healthy,
    /// Closed and ramping after a failback: this share of new calls goes to the provider.
    Ramp {
        /// Percent of new calls sent to the provider in this ramp step.
        percent: u8,
    },
    /// Open: failed over, cooling down.
    FailedOver {
        /// End of the cooldown.
        until: Instant,
    },
    /// Half-open: probing the provider; calls stay local until it proves healthy.
    Probing,
}

impl DecisionReason {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EgressDisabled => "egress_disabled",
            Self::Healthy => "healthy",
            Self::Ramp { .. } => "ramp",
            Self::FailedOver { .. } => "failed_over",
            Self::Probing => "probing",
        }
    }
}

/// Which backend a new call starts on, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The backend.
    pub backend: BackendKind,
    /// Why.
    pub reason: DecisionReason,
}

/// Why a probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "failure", rename_all = "snake_case")]
pub enum ProbeFailure {
    /// It answered, but not below the recovery threshold.
    Slow {
        /// Its latency, ms.
        latency_ms: u64,
        /// The threshold, ms.
        recover_ms: u64,
    },
    /// It failed (a probe that never reported counts as `timeout`).
    Error {
        /// The error class.
        kind: ErrorKind,
    },
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Slow {
                latency_ms,
                recover_ms,
            } => write!(f, "probe took {latency_ms} ms, not below {recover_ms} ms"),
            Self::Error { kind } => write!(f, "probe failed ({})", kind.as_str()),
        }
    }
}

/// A change of the fleet circuit, queued once for the shell (metric, log line, cost-log
/// field). Every change of [`FailoverPolicy::state`] produces exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Closed → Open: new calls go local. Counts in `tom_provider_failover_total{reason}`.
    Failover {
        /// When.
        at: Instant,
        /// Why, with the numbers.
        reason: FailoverReason,
        /// The reason as a sentence for the log line.
        detail: String,
        /// How long local serves before probing.
        cooldown: Duration,
        /// Consecutive trips so far (1 = first); the cooldown grew with it.
        trips: u32,
    },
    /// Open → HalfOpen: the cooldown is over, probing starts.
    HalfOpen {
        /// When the cooldown ended.
        at: Instant,
    },
    /// HalfOpen → Open: a probe failed; a longer cooldown starts. Not a failover (the
    /// provider was not serving), so not counted in `tom_provider_failover_total`.
    ProbeFailed {
        /// When.
        at: Instant,
        /// Why.
        failure: ProbeFailure,
        /// As a sentence.
        detail: String,
        /// The new cooldown.
        cooldown: Duration,
        /// Consecutive trips so far, this one included.
        trips: u32,
    },
    /// HalfOpen → Closed: enough healthy probes; new calls ramp back to the provider.
    /// Counts in `tom_failback_total`.
    Failback {
        /// When.
        at: Instant,
        /// The healthy probes in a row that closed the circuit.
        probes: u32,
        /// As a sentence.
        detail: String,
    },
}

impl Transition {
    /// For logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Failover { .. } => "failover",
            Self::HalfOpen { .. } => "half_open",
            Self::ProbeFailed { .. } => "probe_failed",
            Self::Failback { .. } => "failback",
        }
    }

    /// An operator must act (see [`FailoverReason::needs_alert`]; a probe refused for
    /// credentials too).
    pub fn needs_alert(&self) -> bool {
        match self {
            Self::Failover { reason, .. } => reason.needs_alert(),
            Self::ProbeFailed {
                failure: ProbeFailure::Error { kind },
                ..
            } => matches!(kind, ErrorKind::Auth | ErrorKind::InvalidRequest),
            _ => false,
        }
    }
}

/// Identifies a probe between [`FailoverPolicy::start_probe`] and its result, so a late
/// result of a probe that already timed out is never taken for the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeId(u64);

// ---------------------------------------------------------------------------------------
// Fleet policy

/// Ramp state after a failback.
#[derive(Debug, Clone, Copy)]
struct Ramp {
    since: Instant,
    calls: u64,
}

/// The fleet circuit breaker for one provider. See the module docs.
///
/// Every input takes `now`; time-driven changes (cooldown over, probe timed out) happen
/// in whichever input comes first at or after their instant, so calling [`Self::tick`]
/// is only needed when nothing else happens. Time never runs backwards inside: an input
/// older than the newest seen counts as happening at the newest (events from many call
/// tasks may arrive slightly out of order).
#[derive(Debug, Clone)]
pub struct FailoverPolicy {
    config: FailoverConfig,
    recover_ms: u64,
    state: FleetState,
    last_now: Option<Instant>,
    /// Provider turn latencies (ms) in the window, oldest first.
    samples: VecDeque<(Instant, u64)>,
    /// Reused for the p95 selection so a turn does not allocate.
    scratch: Vec<u64>,
    /// Provider errors in the error window, oldest first.
    errors: VecDeque<(Instant, ErrorKind)>,
    connect_failures: u32,
    /// Consecutive trips (first trip = 1); drives the cooldown growth.
    trips: u32,
    closed_since: Option<Instant>,
    ramp: Option<Ramp>,
    healthy_probes: u32,
    next_probe_at: Option<Instant>,
    probe_in_flight: Option<(ProbeId, Instant)>,
    next_probe_id: u64,
    rng: u64,
    transitions: VecDeque<Transition>,
}

impl FailoverPolicy {
    /// A closed circuit (or a disabled one without egress). `seed` drives the cooldown
    /// jitter: the shell passes something random, tests a constant.
    pub fn new(config: FailoverConfig, seed: u64) -> Result<Self, FailoverConfigError> {
        config.validate()?;
        let state = if config.allow_egress {
            FleetState::Closed
        } else {
            FleetState::Disabled
        };
        Ok(Self {
            recover_ms: config.recover_ms(),
            scratch: Vec::with_capacity(config.max_samples as usize),
            config,
            state,
            last_now: None,
            samples: VecDeque::new(),
            errors: VecDeque::new(),
            connect_failures: 0,
            trips: 0,
            closed_since: None,
            ramp: None,
            healthy_probes: 0,
            next_probe_at: None,
            probe_in_flight: None,
            next_probe_id: 0,
            rng: seed,
            transitions: VecDeque::new(),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &FailoverConfig {
        &self.config
    }

    /// The circuit as of the last input.
    pub fn state(&self) -> FleetState {
        self.state
    }

    /// The backend new calls prefer, for the `tom_realtime_backend{backend}` gauge: the
    /// provider while closed (ramping included), local otherwise.
    pub fn live_backend(&self) -> BackendKind {
        match self.state {
            FleetState::Closed => BackendKind::Provider,
            FleetState::Disabled | FleetState::Open { .. } | FleetState::HalfOpen => {
                BackendKind::Local
            }
        }
    }

    /// Consecutive trips so far, failed probes included (0 before the first). The
    /// streak is judged at the next trip: if the provider held for `cooldown_s` since
    /// the failback, that trip starts over at 1.
    pub fn trips(&self) -> u32 {
        self.trips
    }

    /// Applies time-driven changes due at `now`.
    pub fn tick(&mut self, now: Instant) {
        self.advance(now);
    }

    /// The next transition since the last poll, oldest first.
    pub fn poll_transition(&mut self) -> Option<Transition> {
        self.transitions.pop_front()
    }

    /// A provider or local turn finished; `latency` is its response time (end of turn →
    /// first reply audio). Only provider turns while closed count.
    pub fn record_turn(&mut self, now: Instant, backend: BackendKind, latency: Duration) {
        let now = self.advance(now);
        if self.state != FleetState::Closed || backend != BackendKind::Provider {
            return;
        }
        // A finished turn proves the provider is reachable.
        self.connect_failures = 0;
        if self.samples.len() >= self.config.max_samples as usize {
            self.samples.pop_front();
        }
        self.samples.push_back((now, millis(latency)));
        if let Some((p95_ms, turns)) = self.p95_at(now) {
            if turns >= self.config.min_turns && p95_ms > self.config.trip_ms {
                self.trip(
                    now,
                    FailoverReason::Latency {
                        p95_ms,
                        turns,
                        trip_ms: self.config.trip_ms,
                        window_s: self.config.window_s,
                    },
                );
            }
        }
    }

    /// A provider session connected (resets the consecutive connect failures).
    pub fn record_connected(&mut self, now: Instant) {
        self.advance(now);
        self.connect_failures = 0;
    }

    /// A classified backend error. Only provider errors while closed count: `auth` and
    /// `rate_limit` trip at once; consecutive `connect` failures trip fast; `connect`,
    /// `timeout`, `server`, `protocol`, `closed_mid_response` and `invalid_request` count
    /// toward the burst. The shell reports transient errors only once retries in place
    /// are exhausted.
    pub fn record_error(&mut self, now: Instant, backend: BackendKind, kind: ErrorKind) {
        let now = self.advance(now);
        if self.state != FleetState::Closed || backend != BackendKind::Provider {
            return;
        }
        match kind {
            ErrorKind::Auth => self.trip(now, FailoverReason::Auth),
            ErrorKind::RateLimit => self.trip(now, FailoverReason::RateLimit),
            ErrorKind::Connect => {
                self.connect_failures = self.connect_failures.saturating_add(1);
                if self.connect_failures >= self.config.connect_failures_to_trip {
                    let consecutive = self.connect_failures;
                    self.trip(now, FailoverReason::ConnectFailures { consecutive });
                } else {
                    self.count_error(now, kind);
                }
            }
            // An invalid request is counted, not tripped on at once: the client reports
            // non-fatal `invalid_request` events (a truncate racing a finished reply)
            // that say nothing about the provider's health. A systematic one (a wrong
            // model name) repeats on every call and completes a burst within seconds,
            // and the burst then asks for an operator.
            ErrorKind::Timeout
            | ErrorKind::Server
            | ErrorKind::Protocol
            | ErrorKind::ClosedMidResponse
            | ErrorKind::InvalidRequest => self.count_error(now, kind),
            // Not about the provider's health.
            ErrorKind::EgressDisabled | ErrorKind::Local => {}
        }
    }

    /// Which backend a new call starts on. Advances the ramp counter, so call it once
    /// per call (a live call asking to return to the provider may use it too, so that
    /// returns share the ramp).
    pub fn backend_for_new_call(&mut self, now: Instant) -> Decision {
        let now = self.advance(now);
        let (backend, reason) = match self.state {
            FleetState::Disabled => (BackendKind::Local, DecisionReason::EgressDisabled),
            FleetState::Open { until } => {
                (BackendKind::Local, DecisionReason::FailedOver { until })
            }
            FleetState::HalfOpen => (BackendKind::Local, DecisionReason::Probing),
            FleetState::Closed => self.ramp_decision(now),
        };
        Decision { backend, reason }
    }

    /// A probe may start now (half-open, none in flight, interval passed; or a cooldown
    /// that is over, which the next input turns into half-open).
    pub fn probe_due(&self, now: Instant) -> bool {
        self.next_probe_at().is_some_and(|at| now >= at)
    }

    /// When the next probe may start: the end of the cooldown while open, the next slot
    /// while half-open and idle; `None` otherwise (closed, disabled, a probe in flight).
    pub fn next_probe_at(&self) -> Option<Instant> {
        match self.state {
            FleetState::Open { until } => Some(until),
            FleetState::HalfOpen if self.probe_in_flight.is_none() => self.next_probe_at,
            _ => None,
        }
    }

    /// The next instant at which [`Self::tick`] would change something (cooldown end,
    /// probe slot, probe timeout): what the shell's timer sleeps until.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.state, self.probe_in_flight) {
            (FleetState::HalfOpen, Some((_, started))) => Some(later(
                started,
                Duration::from_millis(self.config.probe_timeout_ms),
            )),
            _ => self.next_probe_at(),
        }
    }

    /// Starts a probe if one is due: the shell then runs a synthetic probe turn and
    /// reports it with [`Self::record_probe`] under the returned id.
    pub fn start_probe(&mut self, now: Instant) -> Option<ProbeId> {
        let now = self.advance(now);
        if self.state != FleetState::HalfOpen || !self.probe_due(now) {
            return None;
        }
        let id = ProbeId(self.next_probe_id);
        self.next_probe_id = self.next_probe_id.wrapping_add(1);
        self.probe_in_flight = Some((id, now));
        Some(id)
    }

    /// The result of probe `id`: its latency, or the error class. A healthy probe
    /// (below the recovery threshold) extends the streak; `probes_to_recover` of them
    /// in a row close the circuit; anything else opens it again with a longer cooldown.
    /// Returns false when the result was ignored (not the probe in flight: late, stale or
    /// unknown).
    pub fn record_probe(
        &mut self,
        now: Instant,
        id: ProbeId,
        result: Result<Duration, ErrorKind>,
    ) -> bool {
        let now = self.advance(now);
        match self.probe_in_flight {
            Some((current, _)) if current == id && self.state == FleetState::HalfOpen => {}
            _ => return false,
        }
        let started = match self.probe_in_flight.take() {
            Some((_, started)) => started,
            None => now,
        };
        match result {
            Ok(latency) if millis(latency) < self.recover_ms => {
                self.healthy_probes = self.healthy_probes.saturating_add(1);
                if self.healthy_probes >= self.config.probes_to_recover {
                    self.failback(now);
                } else {
                    // Counted from the previous start: a steady cadence whatever the
                    // probe's own duration (a probe longer than the interval is followed
                    // at once).
                    self.next_probe_at = Some(later(
                        started,
                        Duration::from_millis(self.config.probe_interval_ms),
                    ));
                }
            }
            Ok(latency) => self.reopen(
                now,
                ProbeFailure::Slow {
                    latency_ms: millis(latency),
                    recover_ms: self.recover_ms,
                },
            ),
            Err(kind) => self.reopen(now, ProbeFailure::Error { kind }),
        }
        true
    }

    /// The fleet p95 (ms) and the number of provider turns it covers, as of `now`;
    /// `None` without samples. Only meaningful while closed (samples are dropped on a
    /// trip).
    pub fn p95_ms(&mut self, now: Instant) -> Option<(u64, u32)> {
        let now = self.advance(now);
        self.p95_at(now)
    }

    /// Clamps `now` to the newest instant seen and applies time-driven changes.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = match self.last_now {
            Some(last) if last > now => last,
            _ => now,
        };
        self.last_now = Some(now);
        match self.state {
            FleetState::Open { until } if now >= until => {
                self.state = FleetState::HalfOpen;
                self.healthy_probes = 0;
                self.probe_in_flight = None;
                // The first probe is due as soon as the cooldown ends.
                self.next_probe_at = Some(until);
                self.transitions
                    .push_back(Transition::HalfOpen { at: until });
            }
            FleetState::HalfOpen => {
                if let Some((_, started)) = self.probe_in_flight {
                    let timeout = Duration::from_millis(self.config.probe_timeout_ms);
                    if now.saturating_duration_since(started) >= timeout {
                        self.probe_in_flight = None;
                        self.reopen(
                            now,
                            ProbeFailure::Error {
                                kind: ErrorKind::Timeout,
                            },
                        );
                    }
                }
            }
            _ => {}
        }
        now
    }

    fn p95_at(&mut self, now: Instant) -> Option<(u64, u32)> {
        let window = self.config.window();
        while let Some(&(at, _)) = self.samples.front() {
            if now.saturating_duration_since(at) >= window {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        self.scratch.clear();
        self.scratch.extend(self.samples.iter().map(|&(_, ms)| ms));
        let p95 = nearest_rank_p95(&mut self.scratch)?;
        Some((p95, u32::try_from(self.samples.len()).unwrap_or(u32::MAX)))
    }

    fn count_error(&mut self, now: Instant, kind: ErrorKind) {
        let window = self.config.error_window();
        while let Some(&(at, _)) = self.errors.front() {
            if now.saturating_duration_since(at) >= window {
                self.errors.pop_front();
            } else {
                break;
            }
        }
        self.errors.push_back((now, kind));
        // The burst threshold trips before the deque can outgrow it.
        let errors = u32::try_from(self.errors.len()).unwrap_or(u32::MAX);
        if errors >= self.config.error_burst {
            let invalid_requests = self
                .errors
                .iter()
                .filter(|(_, k)| *k == ErrorKind::InvalidRequest)
                .count();
            self.trip(
                now,
                FailoverReason::Errors {
                    errors,
                    window_s: self.config.error_window_s,
                    last: kind,
                    invalid_requests: u32::try_from(invalid_requests).unwrap_or(u32::MAX),
                },
            );
        }
    }

    /// Closed → Open.
    fn trip(&mut self, now: Instant, reason: FailoverReason) {
        // A trip soon after a failback is "consecutive": the provider did not hold, so
        // the cooldown keeps growing. Having held for a whole base cooldown starts over.
        if let Some(since) = self.closed_since {
            if now.saturating_duration_since(since) >= Duration::from_secs(self.config.cooldown_s) {
                self.trips = 0;
            }
        }
        self.trips = self.trips.saturating_add(1);
        let cooldown = self.open(now);
        self.transitions.push_back(Transition::Failover {
            at: now,
            detail: reason.to_string(),
            reason,
            cooldown,
            trips: self.trips,
        });
    }

    /// HalfOpen → Open after a failed probe.
    fn reopen(&mut self, now: Instant, failure: ProbeFailure) {
        self.trips = self.trips.saturating_add(1);
        let cooldown = self.open(now);
        self.transitions.push_back(Transition::ProbeFailed {
            at: now,
            failure,
            detail: failure.to_string(),
            cooldown,
            trips: self.trips,
        });
    }

    /// Enters Open with the cooldown for the current trip count; clears what was
    /// measured while closed, so stale samples cannot trip the circuit again right
    /// after a failback.
    fn open(&mut self, now: Instant) -> Duration {
        let random = self.next_random();
        let cooldown = self.config.cooldown(self.trips, random);
        self.state = FleetState::Open {
            until: later(now, cooldown),
        };
        self.samples.clear();
        self.errors.clear();
        self.connect_failures = 0;
        self.closed_since = None;
        self.ramp = None;
        self.healthy_probes = 0;
        self.next_probe_at = None;
        self.probe_in_flight = None;
        cooldown
    }

    /// HalfOpen → Closed.
    fn failback(&mut self, now: Instant) {
        let probes = self.healthy_probes;
        self.state = FleetState::Closed;
        self.closed_since = Some(now);
        self.healthy_probes = 0;
        self.next_probe_at = None;
        self.probe_in_flight = None;
        self.ramp = (!self.config.ramp_percent.is_empty()).then_some(Ramp {
            since: now,
            calls: 0,
        });
        self.transitions.push_back(Transition::Failback {
            at: now,
            probes,
            detail: format!(
                "{probes} healthy probes in a row below {} ms",
                self.recover_ms
            ),
        });
    }

    /// Closed: the provider, unless a ramp step keeps this call local.
    fn ramp_decision(&mut self, now: Instant) -> (BackendKind, DecisionReason) {
        let Some(ramp) = self.ramp.as_mut() else {
            return (BackendKind::Provider, DecisionReason::Healthy);
        };
        let step_len = Duration::from_secs(self.config.ramp_step_s).as_millis();
        let step = now.saturating_duration_since(ramp.since).as_millis() / step_len.max(1);
        let percent = usize::try_from(step)
            .ok()
            .and_then(|step| self.config.ramp_percent.get(step))
            .copied();
        let Some(percent) = percent else {
            self.ramp = None;
            return (BackendKind::Provider, DecisionReason::Healthy);
        };
        // Deterministic spreading (Bresenham): call n goes to the provider when
        // n·p mod 100 < p, exactly p of every 100 calls, the first call included so the
        // provider sees traffic at once.
        let p = u64::from(percent);
        let backend = if ramp.calls.wrapping_mul(p) % 100 < p {
            BackendKind::Provider
        } else {
            BackendKind::Local
        };
        ramp.calls = ramp.calls.wrapping_add(1);
        (backend, DecisionReason::Ramp { percent })
    }

    /// splitmix64: tiny, deterministic per seed, good enough to spread cooldowns.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Nearest-rank p95: the smallest sample with at least 95% of samples at or below it
/// (rank ⌈0.95·n⌉). Reorders `samples`.
fn nearest_rank_p95(samples: &mut [u64]) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let rank = (samples.len() * 95).div_ceil(100);
    let (_, value, _) = samples.select_nth_unstable(rank.saturating_sub(1));
    Some(*value)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `at + d`. The settings are validated to at most a week, so the sum cannot overflow
/// an `Instant`; the fallback only keeps this function total.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or(at)
}

// ---------------------------------------------------------------------------------------
// Per-call policy

/// What the call loop should do after a per-call input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallDecision {
    /// Nothing changes.
    Stay,
    /// Answer the current turn locally; the call stays on the provider.
    AnswerTurnLocally(FailoverReason),
    /// Move the whole call to local now, carrying the transcript so far; the current
    /// turn is answered locally.
    MoveToLocal(FailoverReason),
}

#[derive(Debug, Clone, Copy)]
struct OpenTurn {
    end_of_turn: Instant,
    deadline_missed: bool,
}

/// Per-call failover rules, one per call, owned by the call task.
///
/// A call that left the provider for its own reasons (slow turns, a hard failure)
/// returns only after the fleet has been seen open or half-open and closed again: the
/// provider then has passed probes since. Otherwise one bad call would bounce between
/// backends on a fleet that never tripped.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    trip_ms: u64,
    deadline: Duration,
    slow_turns_to_move: u32,
    backend: BackendKind,
    turn: Option<OpenTurn>,
    slow_streak: u32,
    moved: Option<FailoverReason>,
    may_return: bool,
}

impl CallPolicy {
    /// A call starting on `backend` (from [`FailoverPolicy::backend_for_new_call`]). A
    /// call that starts local because the fleet is open may go to the provider once the
    /// fleet is closed.
    pub fn new(config: &FailoverConfig, backend: BackendKind) -> Self {
        Self {
            trip_ms: config.trip_ms,
            deadline: config.first_audio_deadline(),
            slow_turns_to_move: config.slow_turns_to_move_call.max(1),
            backend,
            turn: None,
            slow_streak: 0,
            moved: None,
            may_return: true,
        }
    }

    /// The backend serving this call.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// Why the call left the provider, while it is on local for its own reasons.
    pub fn moved_because(&self) -> Option<&FailoverReason> {
        self.moved.as_ref()
    }

    /// Slow provider turns in a row so far.
    pub fn slow_streak(&self) -> u32 {
        self.slow_streak
    }

    /// The caller's turn ended (was committed) at `end_of_turn`; a reply is owed.
    pub fn turn_started(&mut self, end_of_turn: Instant) {
        self.turn = Some(OpenTurn {
            end_of_turn,
            deadline_missed: false,
        });
    }

    /// When the provider's first audio for the open turn is due (end of turn +
    /// `first_audio_deadline_ms`); `None` on local, between turns, or once missed.
    pub fn first_audio_due(&self) -> Option<Instant> {
        match (self.backend, self.turn) {
            (BackendKind::Provider, Some(turn)) if !turn.deadline_missed => {
                Some(later(turn.end_of_turn, self.deadline))
            }
            _ => None,
        }
    }

    /// The deadline timer fired without first audio. The turn is answered locally; it
    /// is a slow turn, and the last of `slow_turns_to_move_call` moves the call. A timer
    /// that fires early or twice changes nothing.
    pub fn deadline_missed(&mut self, now: Instant) -> CallDecision {
        let Some(due) = self.first_audio_due() else {
            return CallDecision::Stay;
        };
        if now < due {
            return CallDecision::Stay;
        }
        if let Some(turn) = self.turn.as_mut() {
            turn.deadline_missed = true;
        }
        let deadline_ms = millis(self.deadline);
        match self.slow_turn(deadline_ms) {
            Some(moved) => moved,
            None => {
                CallDecision::AnswerTurnLocally(FailoverReason::FirstAudioDeadline { deadline_ms })
            }
        }
    }

    /// The turn is over (its reply done or cancelled): `backend` answered it, its first
    /// audio `response` after the end of the turn (`None`: no audio, e.g. barge-in
    /// before the reply). This is a turn boundary.
    pub fn turn_finished(
        &mut self,
        backend: BackendKind,
        response: Option<Duration>,
    ) -> CallDecision {
        let turn = self.turn.take();
        let counted_already = turn.is_some_and(|t| t.deadline_missed);
        if backend != BackendKind::Provider
            || self.backend != BackendKind::Provider
            || counted_already
        {
            return CallDecision::Stay;
        }
        match response.map(millis) {
            Some(ms) if ms > self.trip_ms => self.slow_turn(ms).unwrap_or(CallDecision::Stay),
            Some(_) => {
                self.slow_streak = 0;
                CallDecision::Stay
            }
            None => CallDecision::Stay,
        }
    }

    /// The provider session failed hard (connect refused, socket closed, auth, 5xx,
    /// 429...): move to local at once, within the turn.
    pub fn hard_failure(&mut self, kind: ErrorKind) -> CallDecision {
        if self.backend != BackendKind::Provider || kind == ErrorKind::Local {
            return CallDecision::Stay;
        }
        self.move_to_local(FailoverReason::ProviderFailedMidCall { kind })
    }

    /// Asked at a turn boundary while on local: may the call go (back) to the provider?
    /// Only between turns, only with the fleet closed, and — for a call that left the
    /// provider for its own reasons — only after the fleet was seen down and recovered.
    /// `true` switches this policy to the provider (the caller opens the session with
    /// the history; if that fails, report [`Self::hard_failure`]).
    pub fn may_return_to_provider(&mut self, fleet: FleetState) -> bool {
        if self.backend == BackendKind::Provider || self.turn.is_some() {
            return false;
        }
        match fleet {
            FleetState::Closed => {}
            FleetState::Open { .. } | FleetState::HalfOpen => {
                self.may_return = true;
                return false;
            }
            FleetState::Disabled => return false,
        }
        if !self.may_return {
            return false;
        }
        self.backend = BackendKind::Provider;
        self.moved = None;
        self.slow_streak = 0;
        true
    }

    /// Counts a slow provider turn; `Some` when it moves the call.
    fn slow_turn(&mut self, last_ms: u64) -> Option<CallDecision> {
        self.slow_streak = self.slow_streak.saturating_add(1);
        (self.slow_streak >= self.slow_turns_to_move).then(|| {
            self.move_to_local(FailoverReason::SlowTurns {
                turns: self.slow_streak,
                last_ms,
                trip_ms: self.trip_ms,
            })
        })
    }

    fn move_to_local(&mut self, reason: FailoverReason) -> CallDecision {
        self.backend = BackendKind::Local;
        self.slow_streak = 0;
        self.may_return = false;
        self.moved = Some(reason.clone());
        CallDecision::MoveToLocal(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const P: BackendKind = BackendKind::Provider;
    const L: BackendKind = BackendKind::Local;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn secs(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    /// Egress on, no jitter, no ramp: the bare state machine with default thresholds.
    fn plain() -> FailoverConfig {
        FailoverConfig {
            allow_egress: true,
            cooldown_jitter_pct: 0,
            ramp_percent: vec![],
            ..FailoverConfig::default()
        }
    }

    fn policy(config: FailoverConfig) -> FailoverPolicy {
        FailoverPolicy::new(config, 7).expect("valid config")
    }

    fn drain(p: &mut FailoverPolicy) -> Vec<Transition> {
        std::iter::from_fn(|| p.poll_transition()).collect()
    }

    /// The one transition queued since the last poll.
    fn only(p: &mut FailoverPolicy) -> Transition {
        let mut all = drain(p);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn env(vars: &[(&str, &str)]) -> Result<FailoverConfig, FailoverConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        FailoverConfig::from_lookup(|name| map.get(name).cloned())
    }

    /// `n` provider turns of `latency_ms`, 100 ms apart from `t`; returns the last instant.
    fn turns(p: &mut FailoverPolicy, t: Instant, n: u64, latency_ms: u64) -> Instant {
        let mut at = t;
        for i in 0..n {
            at = t + ms(100 * i);
            p.record_turn(at, P, ms(latency_ms));
        }
        at
    }

    /// Starts a probe at `t` (it must be due) and reports `result` at once.
    fn probe(p: &mut FailoverPolicy, t: Instant, result: Result<Duration, ErrorKind>) -> bool {
        let id = p.start_probe(t).expect("a probe is due");
        p.record_probe(t, id, result)
    }

    /// From Open: waits out the cooldown and passes `probes_to_recover` healthy probes.
    /// Returns the failback instant.
    fn recover(p: &mut FailoverPolicy) -> Instant {
        let FleetState::Open { until } = p.state() else {
            panic!("not open: {:?}", p.state());
        };
        let interval = ms(p.config().probe_interval_ms);
        let mut t = until;
        for i in 0..p.config().probes_to_recover {
            if i > 0 {
                t += interval;
            }
            assert!(probe(p, t, Ok(ms(300))));
        }
        assert_eq!(p.state(), FleetState::Closed);
        t
    }

    fn until(p: &FailoverPolicy) -> Instant {
        match p.state() {
            FleetState::Open { until } => until,
            other => panic!("not open: {other:?}"),
        }
    }

    // -- settings ------------------------------------------------------------------------

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = FailoverConfig::default();
        assert_eq!(c.trip_ms, 800);
        assert_eq!(c.recover_ms(), 600);
        assert_eq!((c.window_s, c.min_turns, c.max_samples), (60, 20, 1000));
        assert_eq!((c.error_burst, c.error_window_s), (3, 60));
        assert_eq!(
            (c.cooldown_s, c.cooldown_max_s, c.cooldown_jitter_pct),
            (600, 3600, 10)
        );
        assert_eq!(c.connect_failures_to_trip, 2);
        assert_eq!(c.first_audio_deadline_ms, 1200);
        assert_eq!(c.slow_turns_to_move_call, 2);
        assert_eq!(c.probes_to_recover, 3);
        assert_eq!((c.probe_interval_ms, c.probe_timeout_ms), (5000, 10_000));
        assert_eq!(
            (c.ramp_percent.as_slice(), c.ramp_step_s),
            (&[25, 50][..], 60)
        );
        assert!(!c.allow_egress);
        c.validate().expect("defaults are valid");
        assert_eq!(env(&[]).expect("no variables"), c);
    }

    #[test]
    fn env_overrides_the_operator_settings() {
        let c = env(&[
            ("FALLBACK_TRIGGER_MS", " 1000 "),
            ("FALLBACK_ERROR_BURST", "5"),
            ("FALLBACK_ERROR_WINDOW", "30"),
            ("FALLBACK_COOLDOWN", "120"),
            ("ALLOW_EGRESS", "true"),
        ])
        .expect("valid");
        assert_eq!(c.trip_ms, 1000);
        assert_eq!(c.recover_ms(), 750, "recovery follows the trigger");
        assert_eq!(
            (c.error_burst, c.error_window_s, c.cooldown_s),
            (5, 30, 120)
        );
        assert!(c.allow_egress);
        assert!(!env(&[("ALLOW_EGRESS", "off")]).expect("off").allow_egress);
    }

    #[test]
    fn empty_env_values_count_as_unset() {
        let c = env(&[("FALLBACK_TRIGGER_MS", ""), ("ALLOW_EGRESS", "  ")]).expect("valid");
        assert_eq!(c, FailoverConfig::default());
    }

    #[test]
    fn unparsable_env_values_name_the_variable() {
        for (name, value, needle) in [
            ("FALLBACK_TRIGGER_MS", "800ms", "milliseconds"),
            ("FALLBACK_TRIGGER_MS", "-1", "milliseconds"),
            ("FALLBACK_TRIGGER_MS", "0.8", "milliseconds"),
            ("FALLBACK_ERROR_BURST", "three", "count"),
            ("FALLBACK_ERROR_WINDOW", "1m", "seconds"),
            ("FALLBACK_COOLDOWN", "99999999999999999999999", "seconds"),
            ("ALLOW_EGRESS", "maybe", "true or false"),
        ] {
            let err = env(&[(name, value)]).expect_err(name);
            let FailoverConfigError::BadValue { name: got, .. } = &err else {
                panic!("{name}={value}: {err:?}");
            };
            assert_eq!(*got, name);
            let shown = err.to_string();
            assert!(shown.contains(name) && shown.contains(needle), "{shown}");
            assert!(shown.contains(value), "{shown}");
        }
    }

    #[test]
    fn out_of_range_env_values_name_the_variable() {
        for (name, value) in [
            ("FALLBACK_TRIGGER_MS", "0"),
            ("FALLBACK_TRIGGER_MS", "1"),
            ("FALLBACK_TRIGGER_MS", "604800001"),
            ("FALLBACK_ERROR_BURST", "0"),
            ("FALLBACK_ERROR_BURST", "5000000000"),
            ("FALLBACK_ERROR_WINDOW", "0"),
            ("FALLBACK_COOLDOWN", "0"),
            ("FALLBACK_COOLDOWN", "604801"),
        ] {
            let err = env(&[(name, value)]).expect_err(name);
            let FailoverConfigError::Invalid { setting, .. } = &err else {
                panic!("{name}={value}: {err:?}");
            };
            assert_eq!(*setting, name, "{err}");
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn env_applies_over_a_file_layer() {
        let file = FailoverConfig {
            min_turns: 10,
            trip_ms: 900,
            ..FailoverConfig::default()
        };
        let c = file
            .with_env(|name| (name == "FALLBACK_TRIGGER_MS").then(|| "1200".to_owned()))
            .expect("valid");
        assert_eq!((c.trip_ms, c.min_turns), (1200, 10));
    }

    #[test]
    fn a_cooldown_longer_than_the_cap_raises_the_cap() {
        let c = env(&[("FALLBACK_COOLDOWN", "7200")]).expect("valid");
        assert_eq!(c.cooldown(1, 0), secs(7200));
        assert_eq!(c.cooldown(5, 0), secs(7200));
    }

    #[test]
    fn validate_checks_ranges_and_relations() {
        type Edit = fn(&mut FailoverConfig);
        let edits: [(&str, Edit); 18] = [
            ("recover_ms", |c| c.recover_ms = Some(800)),
            ("recover_ms", |c| c.recover_ms = Some(0)),
            ("min_turns", |c| c.min_turns = 0),
            ("max_samples", |c| c.max_samples = 19),
            ("max_samples", |c| c.max_samples = 100_001),
            ("window_s", |c| c.window_s = 0),
            ("cooldown_max_s", |c| c.cooldown_max_s = 0),
            ("cooldown_jitter_pct", |c| c.cooldown_jitter_pct = 101),
            ("connect_failures_to_trip", |c| {
                c.connect_failures_to_trip = 0
            }),
            ("first_audio_deadline_ms", |c| c.first_audio_deadline_ms = 0),
            ("slow_turns_to_move_call", |c| c.slow_turns_to_move_call = 0),
            ("probes_to_recover", |c| c.probes_to_recover = 0),
            ("probe_interval_ms", |c| c.probe_interval_ms = 0),
            ("probe_timeout_ms", |c| c.probe_timeout_ms = 0),
            ("ramp_step_s", |c| c.ramp_step_s = 0),
            ("ramp_percent", |c| c.ramp_percent = vec![0]),
            ("ramp_percent", |c| c.ramp_percent = vec![101]),
            ("ramp_percent", |c| c.ramp_percent = vec![50, 25]),
        ];
        let d = FailoverConfig::default;
        let cases = edits.map(|(setting, edit)| {
            let mut config = d();
            edit(&mut config);
            (config, setting)
        });
        for (config, setting) in cases {
            match config.validate() {
                Err(FailoverConfigError::Invalid { setting: got, .. }) => {
                    assert_eq!(got, setting)
                }
                other => panic!("{setting}: {other:?}"),
            }
            assert!(FailoverPolicy::new(config, 0).is_err(), "{setting}");
        }
        // A zero step length is fine when there is no ramp to step through.
        FailoverConfig {
            ramp_step_s: 0,
            ramp_percent: vec![],
            ..d()
        }
        .validate()
        .expect("no ramp");
        FailoverConfig {
            recover_ms: Some(799),
            ..d()
        }
        .validate()
        .expect("just below");
    }

    #[test]
    fn a_toml_section_deserializes_over_defaults_and_refuses_unknown_keys() {
        let c: FailoverConfig =
            toml::from_str("trip_ms = 900\nrecover_ms = 500\nramp_percent = [10, 100]\n")
                .expect("toml");
        assert_eq!((c.trip_ms, c.recover_ms(), c.min_turns), (900, 500, 20));
        assert_eq!(c.ramp_percent, [10, 100]);
        assert!(toml::from_str::<FailoverConfig>("trip = 900").is_err());
    }

    // -- p95 ------------------------------------------------------------------------------

    #[test]
    fn p95_is_nearest_rank() {
        let p95 = |v: &mut Vec<u64>| nearest_rank_p95(v);
        assert_eq!(p95(&mut vec![]), None);
        assert_eq!(p95(&mut vec![42]), Some(42));
        assert_eq!(p95(&mut (1..=5).rev().collect()), Some(5));
        assert_eq!(p95(&mut (1..=19).rev().collect()), Some(19));
        assert_eq!(p95(&mut (1..=20).rev().collect()), Some(19));
        assert_eq!(p95(&mut (1..=21).collect()), Some(20));
        assert_eq!(p95(&mut (1..=100).rev().collect()), Some(95));
        assert_eq!(p95(&mut (1..=1000).collect()), Some(950));
    }

    // -- fleet: latency -------------------------------------------------------------------

    #[test]
    fn p95_trips_only_with_min_turns() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        let last = turns(&mut p, t0, 19, 2000);
        assert_eq!(p.state(), FleetState::Closed);
        assert_eq!(p.p95_ms(last), Some((2000, 19)));
        assert!(drain(&mut p).is_empty());
        let at = last + ms(100);
        p.record_turn(at, P, ms(2000));
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: at + secs(600)
            }
        );
        let reason = FailoverReason::Latency {
            p95_ms: 2000,
            turns: 20,
            trip_ms: 800,
            window_s: 60,
        };
        assert_eq!(
            drain(&mut p),
            [Transition::Failover {
                at,
                detail: reason.to_string(),
                reason,
                cooldown: secs(600),
                trips: 1,
            }]
        );
        assert_eq!(p.live_backend(), L);
    }

    #[test]
    fn exactly_the_trigger_does_not_trip_one_ms_over_does() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        let last = turns(&mut p, t0, 100, 800);
        assert_eq!(p.state(), FleetState::Closed, "800 is not over 800");
        assert_eq!(p.p95_ms(last), Some((800, 100)));

        let mut p = policy(plain());
        turns(&mut p, t0, 20, 801);
        assert!(matches!(p.state(), FleetState::Open { .. }));
    }

    #[test]
    fn one_slow_turn_in_twenty_does_not_trip_two_do() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        let last = turns(&mut p, t0, 19, 300);
        p.record_turn(last + ms(100), P, ms(5000));
        assert_eq!(p.state(), FleetState::Closed);
        assert_eq!(p.p95_ms(last + ms(100)), Some((300, 20)));
        p.record_turn(last + ms(200), P, ms(5000));
        assert!(matches!(p.state(), FleetState::Open { .. }));
    }

    #[test]
    fn turns_leave_the_window_when_it_has_passed() {
        let t0 = Instant::now();
        // 19 slow turns at t0, the 20th exactly one window later: the 19 have left.
        let mut p = policy(plain());
        for _ in 0..19 {
            p.record_turn(t0, P, ms(2000));
        }
        p.record_turn(t0 + secs(60), P, ms(2000));
        assert_eq!(p.state(), FleetState::Closed);
        assert_eq!(p.p95_ms(t0 + secs(60)), Some((2000, 1)));
        // One millisecond earlier they are all inside.
        let mut p = policy(plain());
        for _ in 0..19 {
            p.record_turn(t0, P, ms(2000));
        }
        p.record_turn(t0 + secs(60) - ms(1), P, ms(2000));
        assert!(matches!(p.state(), FleetState::Open { .. }));
    }

    #[test]
    fn samples_are_capped() {
        let t0 = Instant::now();
        let mut p = policy(FailoverConfig {
            max_samples: 50,
            ..plain()
        });
        for i in 0..5000 {
            p.record_turn(t0 + ms(i), P, ms(100));
        }
        assert_eq!(p.p95_ms(t0 + ms(5000)), Some((100, 50)));
        assert!(p.samples.len() <= 50);
    }

    #[test]
    fn local_turns_and_errors_that_are_not_the_providers_do_not_count() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        for i in 0..100 {
            let t = t0 + ms(i * 10);
            p.record_turn(t, L, ms(5000));
            p.record_error(t, L, ErrorKind::Server);
            p.record_error(t, L, ErrorKind::Auth);
            p.record_error(t, P, ErrorKind::Local);
            p.record_error(t, P, ErrorKind::EgressDisabled);
        }
        assert_eq!(p.state(), FleetState::Closed);
        assert!(drain(&mut p).is_empty());
        assert_eq!(p.p95_ms(t0 + secs(1)), None);
    }

    // -- fleet: errors --------------------------------------------------------------------

    #[test]
    fn an_error_burst_within_the_window_trips() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Server);
        p.record_error(t0 + secs(20), P, ErrorKind::Protocol);
        assert_eq!(p.state(), FleetState::Closed);
        let at = t0 + secs(60) - ms(1);
        p.record_error(at, P, ErrorKind::ClosedMidResponse);
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: at + secs(600)
            }
        );
        let Transition::Failover { reason, detail, .. } = only(&mut p) else {
            panic!("not a failover");
        };
        assert_eq!(
            reason,
            FailoverReason::Errors {
                errors: 3,
                window_s: 60,
                last: ErrorKind::ClosedMidResponse,
                invalid_requests: 0,
            }
        );
        assert_eq!(reason.as_str(), "errors");
        assert!(!reason.needs_alert());
        assert!(detail.contains("3 provider errors within 60 s"), "{detail}");
    }

    #[test]
    fn errors_spread_wider_than_the_window_do_not_trip() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        for s in [0, 30, 60, 90, 120, 150] {
            p.record_error(t0 + secs(s), P, ErrorKind::Server);
        }
        assert_eq!(p.state(), FleetState::Closed);
        assert!(drain(&mut p).is_empty());
    }

    #[test]
    fn timeouts_and_invalid_requests_count_and_invalid_requests_alert() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Timeout);
        p.record_error(t0, P, ErrorKind::InvalidRequest);
        assert_eq!(
            p.state(),
            FleetState::Closed,
            "an invalid request alone does not trip"
        );
        p.record_error(t0, P, ErrorKind::Timeout);
        let transition = only(&mut p);
        let Transition::Failover { reason, .. } = &transition else {
            panic!("{transition:?}");
        };
        assert!(matches!(
            reason,
            FailoverReason::Errors {
                invalid_requests: 1,
                last: ErrorKind::Timeout,
                ..
            }
        ));
        assert!(transition.needs_alert());
    }

    #[test]
    fn consecutive_connect_failures_trip_fast() {
        let t0 = Instant::now();
        let mut p = policy(FailoverConfig {
            error_burst: 10,
            ..plain()
        });
        p.record_error(t0, P, ErrorKind::Connect);
        assert_eq!(p.state(), FleetState::Closed);
        p.record_error(t0 + secs(1), P, ErrorKind::Connect);
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: t0 + secs(601)
            }
        );
        let Transition::Failover { reason, .. } = only(&mut p) else {
            panic!("not a failover");
        };
        assert_eq!(reason, FailoverReason::ConnectFailures { consecutive: 2 });
        assert_eq!(reason.as_str(), "connect");
    }

    #[test]
    fn a_success_between_connect_failures_resets_the_streak() {
        let t0 = Instant::now();
        let mut p = policy(FailoverConfig {
            error_burst: 10,
            ..plain()
        });
        p.record_error(t0, P, ErrorKind::Connect);
        p.record_connected(t0 + secs(1));
        p.record_error(t0 + secs(2), P, ErrorKind::Connect);
        p.record_turn(t0 + secs(3), P, ms(300));
        p.record_error(t0 + secs(4), P, ErrorKind::Connect);
        assert_eq!(p.state(), FleetState::Closed);
        // Other errors neither reset nor extend the streak.
        p.record_error(t0 + secs(5), P, ErrorKind::Server);
        p.record_error(t0 + secs(6), P, ErrorKind::Connect);
        assert!(matches!(p.state(), FleetState::Open { .. }));
    }

    #[test]
    fn connect_failures_also_count_toward_the_burst() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Connect);
        p.record_connected(t0);
        p.record_error(t0, P, ErrorKind::Connect);
        p.record_connected(t0);
        p.record_error(t0, P, ErrorKind::Connect);
        let Transition::Failover { reason, .. } = only(&mut p) else {
            panic!("not a failover");
        };
        assert_eq!(reason.as_str(), "errors");
    }

    #[test]
    fn auth_trips_at_once_and_asks_for_an_operator() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: t0 + secs(600)
            }
        );
        let transition = only(&mut p);
        assert!(transition.needs_alert());
        let Transition::Failover { reason, detail, .. } = transition else {
            panic!("not a failover");
        };
        assert_eq!(reason, FailoverReason::Auth);
        assert!(detail.contains("credentials"), "{detail}");
    }

    #[test]
    fn rate_limiting_sends_new_calls_local_without_an_alert() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::RateLimit);
        let transition = only(&mut p);
        assert!(!transition.needs_alert());
        assert!(matches!(
            transition,
            Transition::Failover {
                reason: FailoverReason::RateLimit,
                ..
            }
        ));
        assert_eq!(
            p.backend_for_new_call(t0 + secs(1)),
            Decision {
                backend: L,
                reason: DecisionReason::FailedOver {
                    until: t0 + secs(600)
                }
            }
        );
    }

    #[test]
    fn inputs_while_open_change_nothing() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        drain(&mut p);
        for i in 0..100 {
            let t = t0 + secs(i);
            p.record_turn(t, P, ms(5000));
            p.record_error(t, P, ErrorKind::Auth);
            p.record_error(t, P, ErrorKind::Connect);
        }
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: t0 + secs(600)
            }
        );
        assert!(drain(&mut p).is_empty());
    }

    #[test]
    fn inputs_from_the_past_count_as_now() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0 + secs(10), P, ErrorKind::Server);
        p.record_error(t0, P, ErrorKind::Server);
        p.record_error(t0 + secs(5), P, ErrorKind::Server);
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: t0 + secs(610)
            }
        );
        p.tick(t0);
        p.record_turn(t0, P, ms(1));
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: t0 + secs(610)
            }
        );
    }

    // -- fleet: cooldown ------------------------------------------------------------------

    #[test]
    fn cooldown_doubles_per_consecutive_trip_and_is_capped() {
        let c = plain();
        let grown: Vec<_> = [0, 1, 2, 3, 4, 5, 40, u32::MAX]
            .into_iter()
            .map(|trips| c.cooldown(trips, 0).as_secs())
            .collect();
        assert_eq!(grown, [600, 600, 1200, 2400, 3600, 3600, 3600, 3600]);
    }

    #[test]
    fn jitter_adds_at_most_its_percentage() {
        let c = FailoverConfig::default();
        for random in [0, 1, 12_345, 59_999, 60_000, u64::MAX] {
            let d = c.cooldown(1, random);
            assert!(d >= secs(600) && d <= secs(660), "{d:?}");
            let d = c.cooldown(9, random);
            assert!(d >= secs(3600) && d <= secs(3960), "{d:?}");
        }
        assert_eq!(c.cooldown(1, 60_000), secs(660));
        assert_eq!(c.cooldown(1, 0), secs(600));
    }

    #[test]
    fn jitter_is_deterministic_per_seed() {
        let t0 = Instant::now();
        let config = FailoverConfig {
            allow_egress: true,
            ..FailoverConfig::default()
        };
        let until_with = |seed| {
            let mut p = FailoverPolicy::new(config.clone(), seed).expect("valid");
            p.record_error(t0, P, ErrorKind::Auth);
            until(&p)
        };
        assert_eq!(until_with(1), until_with(1));
        assert_ne!(until_with(1), until_with(2));
        for seed in 0..50 {
            let u = until_with(seed);
            assert!(u >= t0 + secs(600) && u <= t0 + secs(660));
        }
    }

    #[test]
    fn failed_probes_grow_the_cooldown_up_to_the_cap() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        let mut seen = vec![];
        for result in [
            Ok(ms(700)),
            Err(ErrorKind::Connect),
            Err(ErrorKind::Server),
            Ok(ms(5000)),
        ] {
            let u = until(&p);
            assert!(probe(&mut p, u, result));
            seen.push((until(&p) - u).as_secs());
        }
        assert_eq!(seen, [1200, 2400, 3600, 3600]);
        assert_eq!(p.trips(), 5);
    }

    #[test]
    fn a_trip_soon_after_failback_is_consecutive_a_stable_one_starts_over() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        let back = recover(&mut p);
        p.record_error(back + secs(599), P, ErrorKind::Auth);
        assert_eq!(until(&p), back + secs(599) + secs(1200));
        assert_eq!(p.trips(), 2);
        let back = recover(&mut p);
        p.record_error(back + secs(600), P, ErrorKind::Auth);
        assert_eq!(until(&p), back + secs(600) + secs(600));
        assert_eq!(p.trips(), 1);
    }

    // -- fleet: half-open -----------------------------------------------------------------

    #[test]
    fn the_cooldown_ends_in_half_open_queued_once() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        let end = t0 + secs(600);
        assert_eq!(p.next_probe_at(), Some(end));
        assert_eq!(p.next_deadline(), Some(end));
        p.tick(end - ms(1));
        assert!(!p.probe_due(end - ms(1)));
        assert!(matches!(p.state(), FleetState::Open { .. }));
        assert!(
            p.probe_due(end),
            "due as the cooldown ends, even before a tick"
        );
        p.tick(end);
        assert_eq!(p.state(), FleetState::HalfOpen);
        p.tick(end + secs(1));
        let kinds: Vec<_> = drain(&mut p).iter().map(Transition::as_str).collect();
        assert_eq!(kinds, ["failover", "half_open"]);
        assert_eq!(p.live_backend(), L);
        assert_eq!(
            p.backend_for_new_call(end),
            Decision {
                backend: L,
                reason: DecisionReason::Probing
            }
        );
    }

    #[test]
    fn half_open_needs_consecutive_healthy_probes() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        let h = t0 + secs(600);
        assert!(probe(&mut p, h, Ok(ms(300))));
        assert_eq!(p.state(), FleetState::HalfOpen);
        assert!(!p.probe_due(h + ms(4999)));
        assert_eq!(p.start_probe(h + ms(4999)), None);
        assert_eq!(p.next_probe_at(), Some(h + secs(5)));
        assert!(probe(&mut p, h + secs(5), Ok(ms(599))));
        assert_eq!(p.state(), FleetState::HalfOpen);
        assert!(probe(&mut p, h + secs(10), Ok(ms(10))));
        assert_eq!(p.state(), FleetState::Closed);
        assert_eq!(p.live_backend(), P);
        let transitions = drain(&mut p);
        let Some(Transition::Failback { at, probes, detail }) = transitions.last() else {
            panic!("{transitions:?}");
        };
        assert_eq!((*at, *probes), (h + secs(10), 3));
        assert!(detail.contains("below 600 ms"), "{detail}");
        assert_eq!(p.next_probe_at(), None);
        assert!(!p.probe_due(h + secs(100)));
    }

    #[test]
    fn a_probe_at_the_recovery_threshold_or_over_resets_and_reopens() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        let h = t0 + secs(600);
        assert!(probe(&mut p, h, Ok(ms(300))));
        assert!(probe(&mut p, h + secs(5), Ok(ms(300))));
        assert!(probe(&mut p, h + secs(10), Ok(ms(600))));
        let reopened = h + secs(10);
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: reopened + secs(1200)
            }
        );
        let last = drain(&mut p).pop().expect("a transition");
        assert_eq!(
            last,
            Transition::ProbeFailed {
                at: reopened,
                failure: ProbeFailure::Slow {
                    latency_ms: 600,
                    recover_ms: 600
                },
                detail: "probe took 600 ms, not below 600 ms".into(),
                cooldown: secs(1200),
                trips: 2,
            }
        );
        // The streak starts over: two healthy probes are not enough.
        let h = reopened + secs(1200);
        assert!(probe(&mut p, h, Ok(ms(300))));
        assert!(probe(&mut p, h + secs(5), Ok(ms(300))));
        assert_eq!(p.state(), FleetState::HalfOpen);
        // A 700 ms probe is under the trigger but not under the recovery threshold.
        assert!(probe(&mut p, h + secs(10), Ok(ms(700))));
        assert!(matches!(p.state(), FleetState::Open { .. }));
    }

    #[test]
    fn a_failed_probe_reopens_and_an_auth_refusal_alerts() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Server);
        p.record_error(t0, P, ErrorKind::Server);
        p.record_error(t0, P, ErrorKind::Server);
        let u = until(&p);
        assert!(probe(&mut p, u, Err(ErrorKind::Server)));
        let last = drain(&mut p).pop().expect("a transition");
        assert!(matches!(
            last,
            Transition::ProbeFailed {
                failure: ProbeFailure::Error {
                    kind: ErrorKind::Server
                },
                ..
            }
        ));
        assert!(!last.needs_alert());
        let u = until(&p);
        assert!(probe(&mut p, u, Err(ErrorKind::Auth)));
        assert!(drain(&mut p).pop().expect("a transition").needs_alert());
    }

    #[test]
    fn probes_run_one_at_a_time_and_stale_results_are_ignored() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        let h = t0 + secs(600);
        let first = p.start_probe(h).expect("due");
        assert_eq!(p.start_probe(h), None, "one in flight");
        assert!(!p.probe_due(h + secs(60)));
        assert_eq!(p.next_probe_at(), None);
        assert_eq!(p.next_deadline(), Some(h + secs(10)), "its timeout");
        assert!(!p.record_probe(h + secs(1), ProbeId(999), Ok(ms(10))));
        assert_eq!(p.state(), FleetState::HalfOpen);
        // It never reports: timed out, reopened.
        p.tick(h + secs(10));
        let last = drain(&mut p).pop().expect("a transition");
        assert!(matches!(
            last,
            Transition::ProbeFailed {
                failure: ProbeFailure::Error {
                    kind: ErrorKind::Timeout
                },
                ..
            }
        ));
        assert!(!p.record_probe(h + secs(11), first, Ok(ms(10))), "too late");
        // Its late result is not taken for the next half-open's probe either.
        let h2 = until(&p);
        let second = p.start_probe(h2).expect("due");
        assert_ne!(first, second);
        assert!(!p.record_probe(h2, first, Ok(ms(10))));
        assert!(p.record_probe(h2, second, Ok(ms(10))));
    }

    #[test]
    fn a_slow_probe_is_followed_at_once() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        let h = t0 + secs(600);
        let id = p.start_probe(h).expect("due");
        assert!(p.record_probe(h + secs(7), id, Ok(ms(400))));
        assert!(
            p.probe_due(h + secs(7)),
            "the interval counts from the start"
        );
    }

    // -- fleet: hysteresis and ramp -------------------------------------------------------

    #[test]
    fn after_failback_old_samples_are_gone_and_700_does_not_trip_again() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        turns(&mut p, t0, 20, 2000);
        let back = recover(&mut p);
        drain(&mut p);
        // The window was emptied on the trip: one slow turn cannot trip again at once.
        p.record_turn(back, P, ms(2000));
        assert_eq!(p.state(), FleetState::Closed);
        // 700 ms: too slow to recover from half-open, not slow enough to trip.
        turns(&mut p, back + ms(100), 200, 700);
        assert_eq!(p.state(), FleetState::Closed);
        assert!(drain(&mut p).is_empty());
    }

    #[test]
    fn new_calls_ramp_back_after_failback() {
        let t0 = Instant::now();
        let mut p = policy(FailoverConfig {
            ramp_percent: vec![25, 50],
            ..plain()
        });
        p.record_error(t0, P, ErrorKind::Auth);
        let back = recover(&mut p);
        let pick =
            |p: &mut FailoverPolicy, t: Instant, n: usize| -> Vec<(BackendKind, DecisionReason)> {
                (0..n)
                    .map(|_| {
                        let d = p.backend_for_new_call(t);
                        (d.backend, d.reason)
                    })
                    .collect()
            };
        let r25 = DecisionReason::Ramp { percent: 25 };
        assert_eq!(
            pick(&mut p, back, 8),
            [P, L, L, L, P, L, L, L].map(|b| (b, r25))
        );
        assert_eq!(p.live_backend(), P);
        let r50 = DecisionReason::Ramp { percent: 50 };
        assert_eq!(
            pick(&mut p, back + secs(60), 4),
            [P, L, P, L].map(|b| (b, r50))
        );
        assert_eq!(
            pick(&mut p, back + secs(120), 3),
            [(P, DecisionReason::Healthy); 3]
        );
        assert!(p.ramp.is_none());
    }

    #[test]
    fn a_trip_during_the_ramp_ends_it_and_the_next_failback_ramps_from_the_start() {
        let t0 = Instant::now();
        let mut p = policy(FailoverConfig {
            ramp_percent: vec![25, 50],
            ..plain()
        });
        p.record_error(t0, P, ErrorKind::Auth);
        let back = recover(&mut p);
        p.backend_for_new_call(back);
        p.record_error(back + secs(70), P, ErrorKind::RateLimit);
        assert_eq!(p.backend_for_new_call(back + secs(71)).backend, L);
        let back = recover(&mut p);
        let d = p.backend_for_new_call(back);
        assert_eq!(
            (d.backend, d.reason),
            (P, DecisionReason::Ramp { percent: 25 })
        );
        assert_eq!(p.backend_for_new_call(back).backend, L);
    }

    #[test]
    fn without_a_ramp_all_new_calls_return_at_once() {
        let t0 = Instant::now();
        let mut p = policy(plain());
        p.record_error(t0, P, ErrorKind::Auth);
        let back = recover(&mut p);
        for _ in 0..10 {
            assert_eq!(
                p.backend_for_new_call(back),
                Decision {
                    backend: P,
                    reason: DecisionReason::Healthy
                }
            );
        }
    }

    // -- fleet: egress, transitions -------------------------------------------------------

    #[test]
    fn without_egress_everything_is_local_and_nothing_probes() {
        let t0 = Instant::now();
        let mut p = policy(FailoverConfig::default());
        assert_eq!(p.state(), FleetState::Disabled);
        assert_eq!(p.live_backend(), L);
        for i in 0..200 {
            let t = t0 + secs(i * 60);
            p.record_turn(t, P, ms(5000));
            p.record_error(t, P, ErrorKind::Auth);
            p.record_error(t, P, ErrorKind::Connect);
            p.tick(t);
            assert!(!p.probe_due(t));
            assert_eq!(p.start_probe(t), None);
            assert!(!p.record_probe(t, ProbeId(0), Ok(ms(1))));
            assert_eq!(
                p.backend_for_new_call(t),
                Decision {
                    backend: L,
                    reason: DecisionReason::EgressDisabled
                }
            );
        }
        assert_eq!(p.state(), FleetState::Disabled);
        assert_eq!((p.next_probe_at(), p.next_deadline()), (None, None));
        assert!(drain(&mut p).is_empty());
    }

    /// The worked timeline of docs/failover.md, step by step.
    #[test]
    fn the_documented_timeline() {
        let t0 = Instant::now(); // 10:00:00
        let mut p = policy(FailoverConfig {
            ramp_percent: vec![25, 50],
            ..plain()
        });
        // 10:00:00–10:00:38: 20 provider turns, 2 s apart; three of them slow.
        for i in 0..20u64 {
            let latency = if [5, 12, 19].contains(&i) { 950 } else { 420 };
            p.record_turn(t0 + secs(2 * i), P, ms(latency));
        }
        // p95 of 20 is the 19th smallest: 950 > 800 → failover at 10:00:38.
        let tripped = t0 + secs(38);
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: tripped + secs(600)
            }
        );
        let Some(Transition::Failover { reason, detail, .. }) = p.poll_transition() else {
            panic!("no failover");
        };
        assert_eq!(reason.as_str(), "latency");
        assert_eq!(
            detail,
            "provider p95 response 950 ms > 800 ms over 20 turns in the last 60 s"
        );
        assert_eq!(p.backend_for_new_call(tripped).backend, L);
        // 10:10:38: half-open; probe 450 ms (healthy), 10:10:43: 700 ms (not below 600).
        let h = tripped + secs(600);
        assert!(probe(&mut p, h, Ok(ms(450))));
        assert!(probe(&mut p, h + secs(5), Ok(ms(700))));
        assert_eq!(
            p.state(),
            FleetState::Open {
                until: h + secs(5) + secs(1200)
            }
        );
        // 10:30:43: half-open again; 3 healthy probes → failback at 10:30:53.
        let h = h + secs(5) + secs(1200);
        for (i, latency) in [420, 380, 410].into_iter().enumerate() {
            assert!(probe(&mut p, h + secs(5 * i as u64), Ok(ms(latency))));
        }
        let back = h + secs(10);
        assert_eq!(p.state(), FleetState::Closed);
        let kinds: Vec<_> = drain(&mut p).iter().map(Transition::as_str).collect();
        assert_eq!(
            kinds,
            ["half_open", "probe_failed", "half_open", "failback"]
        );
        // Ramp: 25% until 10:31:53, 50% until 10:32:53, then everything.
        assert_eq!(
            p.backend_for_new_call(back + secs(59)).reason,
            DecisionReason::Ramp { percent: 25 }
        );
        assert_eq!(
            p.backend_for_new_call(back + secs(60)).reason,
            DecisionReason::Ramp { percent: 50 }
        );
        assert_eq!(
            p.backend_for_new_call(back + secs(120)).reason,
            DecisionReason::Healthy
        );
        // A trip before 10:40:53 would wait 2400 s (third in a row); after, 600 s again.
        assert_eq!(p.trips(), 2);
    }

    #[test]
    fn labels_are_stable() {
        let reasons = [
            (
                FailoverReason::Latency {
                    p95_ms: 900,
                    turns: 20,
                    trip_ms: 800,
                    window_s: 60,
                },
                "latency",
            ),
            (
                FailoverReason::Errors {
                    errors: 3,
                    window_s: 60,
                    last: ErrorKind::Server,
                    invalid_requests: 0,
                },
                "errors",
            ),
            (
                FailoverReason::ConnectFailures { consecutive: 2 },
                "connect",
            ),
            (FailoverReason::Auth, "auth"),
            (FailoverReason::RateLimit, "rate_limit"),
            (
                FailoverReason::FirstAudioDeadline { deadline_ms: 1200 },
                "first_audio_deadline",
            ),
            (
                FailoverReason::SlowTurns {
                    turns: 2,
                    last_ms: 900,
                    trip_ms: 800,
                },
                "slow_turns",
            ),
            (
                FailoverReason::ProviderFailedMidCall {
                    kind: ErrorKind::ClosedMidResponse,
                },
                "provider_failed_mid_call",
            ),
        ];
        for (reason, label) in reasons {
            assert_eq!(reason.as_str(), label);
            let json = serde_json::to_value(&reason).expect("serializes");
            assert_eq!(json["reason"], label, "{json}");
            assert!(!reason.to_string().is_empty());
        }
        let json = serde_json::to_value(FailoverReason::Latency {
            p95_ms: 912,
            turns: 23,
            trip_ms: 800,
            window_s: 60,
        })
        .expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"reason": "latency", "p95_ms": 912, "turns": 23, "trip_ms": 800, "window_s": 60})
        );
        let t = Instant::now();
        assert_eq!(
            [
                FleetState::Disabled,
                FleetState::Closed,
                FleetState::Open { until: t },
                FleetState::HalfOpen
            ]
            .map(FleetState::as_str),
            ["disabled", "closed", "open", "half_open"]
        );
        assert_eq!(
            [
                DecisionReason::EgressDisabled,
                DecisionReason::Healthy,
                DecisionReason::Ramp { percent: 25 },
                DecisionReason::FailedOver { until: t },
                DecisionReason::Probing
            ]
            .map(DecisionReason::as_str),
            [
                "egress_disabled",
                "healthy",
                "ramp",
                "failed_over",
                "probing"
            ]
        );
    }

    // -- per call -------------------------------------------------------------------------

    fn call(backend: BackendKind) -> CallPolicy {
        CallPolicy::new(&FailoverConfig::default(), backend)
    }

    #[test]
    fn the_first_audio_deadline_is_1200_ms_after_the_end_of_the_turn() {
        let t0 = Instant::now();
        let mut c = call(P);
        assert_eq!(c.first_audio_due(), None, "between turns");
        c.turn_started(t0);
        assert_eq!(c.first_audio_due(), Some(t0 + ms(1200)));
        let mut local = call(L);
        local.turn_started(t0);
        assert_eq!(local.first_audio_due(), None, "no deadline on local");
        assert_eq!(local.deadline_missed(t0 + secs(5)), CallDecision::Stay);
    }

    #[test]
    fn a_missed_deadline_answers_the_turn_locally_once() {
        let t0 = Instant::now();
        let mut c = call(P);
        c.turn_started(t0);
        assert_eq!(
            c.deadline_missed(t0 + ms(1199)),
            CallDecision::Stay,
            "early timer"
        );
        assert_eq!(
            c.deadline_missed(t0 + ms(1200)),
            CallDecision::AnswerTurnLocally(FailoverReason::FirstAudioDeadline {
                deadline_ms: 1200
            })
        );
        assert_eq!(c.deadline_missed(t0 + ms(1300)), CallDecision::Stay, "once");
        assert_eq!(c.first_audio_due(), None);
        assert_eq!((c.backend(), c.slow_streak()), (P, 1));
        assert_eq!(c.turn_finished(L, Some(ms(1500))), CallDecision::Stay);
        assert_eq!((c.backend(), c.slow_streak()), (P, 1));
    }

    #[test]
    fn two_slow_turns_in_a_row_move_the_call() {
        let t0 = Instant::now();
        let mut c = call(P);
        c.turn_started(t0);
        assert_eq!(c.turn_finished(P, Some(ms(900))), CallDecision::Stay);
        c.turn_started(t0 + secs(5));
        let reason = FailoverReason::SlowTurns {
            turns: 2,
            last_ms: 850,
            trip_ms: 800,
        };
        assert_eq!(
            c.turn_finished(P, Some(ms(850))),
            CallDecision::MoveToLocal(reason.clone())
        );
        assert_eq!(c.backend(), L);
        assert_eq!(c.moved_because(), Some(&reason));
    }

    #[test]
    fn a_fast_turn_resets_the_slow_streak_and_800_is_not_slow() {
        let t0 = Instant::now();
        let mut c = call(P);
        for first_audio in [900, 800, 900] {
            c.turn_started(t0);
            assert_eq!(
                c.turn_finished(P, Some(ms(first_audio))),
                CallDecision::Stay
            );
        }
        assert_eq!((c.backend(), c.slow_streak()), (P, 1));
        // A turn without audio (barge-in before the reply) is neither slow nor fast.
        c.turn_started(t0);
        assert_eq!(c.turn_finished(P, None), CallDecision::Stay);
        assert_eq!(c.slow_streak(), 1);
    }

    #[test]
    fn a_slow_turn_and_a_missed_deadline_move_the_call_in_either_order() {
        let t0 = Instant::now();
        let mut c = call(P);
        c.turn_started(t0);
        c.turn_finished(P, Some(ms(1000)));
        c.turn_started(t0 + secs(5));
        assert_eq!(
            c.deadline_missed(t0 + secs(5) + ms(1200)),
            CallDecision::MoveToLocal(FailoverReason::SlowTurns {
                turns: 2,
                last_ms: 1200,
                trip_ms: 800
            })
        );
        assert_eq!(c.backend(), L);

        let mut c = call(P);
        c.turn_started(t0);
        c.deadline_missed(t0 + ms(1200));
        c.turn_finished(L, Some(ms(1400)));
        c.turn_started(t0 + secs(5));
        assert!(matches!(
            c.turn_finished(P, Some(ms(801))),
            CallDecision::MoveToLocal(FailoverReason::SlowTurns { turns: 2, .. })
        ));
    }

    #[test]
    fn a_hard_failure_moves_the_call_at_once() {
        let t0 = Instant::now();
        for kind in [
            ErrorKind::Connect,
            ErrorKind::ClosedMidResponse,
            ErrorKind::Auth,
            ErrorKind::Server,
            ErrorKind::RateLimit,
            ErrorKind::Timeout,
        ] {
            let mut c = call(P);
            c.turn_started(t0);
            let reason = FailoverReason::ProviderFailedMidCall { kind };
            assert_eq!(
                c.hard_failure(kind),
                CallDecision::MoveToLocal(reason.clone())
            );
            assert_eq!(reason.needs_alert(), kind == ErrorKind::Auth);
            assert_eq!(c.backend(), L);
            assert_eq!(c.first_audio_due(), None, "the turn is answered locally");
            assert_eq!(c.hard_failure(kind), CallDecision::Stay, "already local");
        }
        let mut c = call(P);
        assert_eq!(c.hard_failure(ErrorKind::Local), CallDecision::Stay);
        assert_eq!(c.backend(), P);
    }

    #[test]
    fn returning_waits_for_a_turn_boundary_and_a_closed_fleet() {
        let t0 = Instant::now();
        let mut c = call(L);
        c.turn_started(t0);
        assert!(!c.may_return_to_provider(FleetState::Closed), "mid-turn");
        c.turn_finished(L, Some(ms(700)));
        assert!(!c.may_return_to_provider(FleetState::Open { until: t0 }));
        assert!(!c.may_return_to_provider(FleetState::HalfOpen));
        assert!(c.may_return_to_provider(FleetState::Closed));
        assert_eq!(c.backend(), P);
        assert!(
            !c.may_return_to_provider(FleetState::Closed),
            "already there"
        );

        let mut c = call(L);
        assert!(!c.may_return_to_provider(FleetState::Disabled));
    }

    #[test]
    fn a_call_that_left_on_its_own_returns_only_after_the_fleet_recovered() {
        let t0 = Instant::now();
        let mut c = call(P);
        c.turn_started(t0);
        c.hard_failure(ErrorKind::Server);
        assert!(!c.may_return_to_provider(FleetState::Closed), "mid-turn");
        c.turn_finished(L, Some(ms(600)));
        assert!(
            !c.may_return_to_provider(FleetState::Closed),
            "fleet never went down"
        );
        assert!(!c.may_return_to_provider(FleetState::HalfOpen));
        assert!(c.may_return_to_provider(FleetState::Closed));
        assert_eq!(
            (c.backend(), c.slow_streak(), c.moved_because()),
            (P, 0, None)
        );
        // Back on the provider, the rules apply afresh.
        c.turn_started(t0 + secs(5));
        assert_eq!(c.first_audio_due(), Some(t0 + secs(5) + ms(1200)));
    }

    // -- properties -----------------------------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Wait(u64),
        Turn(bool, u64),
        Error(bool, usize),
        Connected,
        NewCall,
        StartProbe,
        Probe(bool, Result<u64, usize>),
        Tick,
    }

    const KINDS: [ErrorKind; 10] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Auth,
        ErrorKind::RateLimit,
        ErrorKind::Server,
        ErrorKind::Protocol,
        ErrorKind::ClosedMidResponse,
        ErrorKind::InvalidRequest,
        ErrorKind::EgressDisabled,
        ErrorKind::Local,
    ];

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u64..3_000).prop_map(Op::Wait),
            1 => (0u64..40_000).prop_map(Op::Wait),
            4 => (any::<bool>(), 0u64..2_000).prop_map(|(p, ms)| Op::Turn(p, ms)),
            2 => (any::<bool>(), 0..KINDS.len()).prop_map(|(p, k)| Op::Error(p, k)),
            1 => Just(Op::Connected),
            2 => Just(Op::NewCall),
            3 => Just(Op::StartProbe),
            3 => (any::<bool>(), prop_oneof![(0u64..1_200).prop_map(Ok), (0..KINDS.len()).prop_map(Err)])
                .prop_map(|(stale, r)| Op::Probe(stale, r)),
            1 => Just(Op::Tick),
        ]
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Disabled,
        Closed,
        Open,
        HalfOpen,
    }

    fn kind(state: FleetState) -> Kind {
        match state {
            FleetState::Disabled => Kind::Disabled,
            FleetState::Closed => Kind::Closed,
            FleetState::Open { .. } => Kind::Open,
            FleetState::HalfOpen => Kind::HalfOpen,
        }
    }

    proptest::proptest! {
        /// Never panics; every state change is queued once and is one of
        /// Closed→Open→HalfOpen→Closed|Open; open or half-open sends new calls local;
        /// without egress nothing ever changes.
        #[test]
        fn transitions_are_legal(
            ops in proptest::collection::vec(op(), 0..300),
            allow_egress: bool,
            min_turns in 1u32..6,
            error_burst in 1u32..5,
            probes_to_recover in 1u32..4,
            cooldown_s in 1u64..20,
            jitter in 0u32..30,
            ramp: bool,
            seed: u64,
        ) {
            use proptest::{prop_assert, prop_assert_eq};
            let config = FailoverConfig {
                allow_egress,
                min_turns,
                max_samples: 50,
                error_burst,
                probes_to_recover,
                cooldown_s,
                cooldown_max_s: cooldown_s * 4,
                cooldown_jitter_pct: jitter,
                window_s: 10,
                error_window_s: 10,
                probe_interval_ms: 1000,
                probe_timeout_ms: 3000,
                ramp_percent: if ramp { vec![25, 50] } else { vec![] },
                ramp_step_s: 5,
                ..FailoverConfig::default()
            };
            let mut p = FailoverPolicy::new(config, seed).expect("valid");
            let t0 = Instant::now();
            let mut now = t0;
            let mut expected = kind(p.state());
            let mut last_probe: Option<ProbeId> = None;
            for op in ops {
                match op {
                    Op::Wait(ms) => now += Duration::from_millis(ms),
                    Op::Turn(provider, ms) => {
                        p.record_turn(now, if provider { P } else { L }, Duration::from_millis(ms));
                    }
                    Op::Error(provider, k) => p.record_error(now, if provider { P } else { L }, KINDS[k]),
                    Op::Connected => p.record_connected(now),
                    Op::NewCall => {
                        let d = p.backend_for_new_call(now);
                        if !allow_egress {
                            prop_assert_eq!(d.reason, DecisionReason::EgressDisabled);
                        }
                    }
                    Op::StartProbe => {
                        let due = p.probe_due(now);
                        let id = p.start_probe(now);
                        if id.is_some() {
                            prop_assert!(due);
                            last_probe = id;
                        }
                    }
                    Op::Probe(stale, result) => {
                        let id = if stale { Some(ProbeId(u64::MAX)) } else { last_probe };
                        if let Some(id) = id {
                            let result = result.map(Duration::from_millis).map_err(|k| KINDS[k]);
                            let counted = p.record_probe(now, id, result);
                            prop_assert!(!(stale && counted));
                        }
                    }
                    Op::Tick => p.tick(now),
                }
                if matches!(p.state(), FleetState::Open { .. } | FleetState::HalfOpen) {
                    prop_assert_eq!(p.live_backend(), L);
                    prop_assert_eq!(p.backend_for_new_call(now).backend, L);
                }
                while let Some(t) = p.poll_transition() {
                    prop_assert!(allow_egress, "a transition without egress: {:?}", t);
                    expected = match (expected, &t) {
                        (Kind::Closed, Transition::Failover { cooldown, .. }) => {
                            prop_assert!(*cooldown >= Duration::from_secs(cooldown_s));
                            Kind::Open
                        }
                        (Kind::Open, Transition::HalfOpen { .. }) => Kind::HalfOpen,
                        (Kind::HalfOpen, Transition::Failback { probes, .. }) => {
                            prop_assert_eq!(*probes, probes_to_recover);
                            Kind::Closed
                        }
                        (Kind::HalfOpen, Transition::ProbeFailed { .. }) => Kind::Open,
                        (from, t) => {
                            return Err(proptest::test_runner::TestCaseError::fail(format!(
                                "illegal transition {t:?} from {from:?}"
                            )))
                        }
                    };
                }
                prop_assert_eq!(kind(p.state()), expected, "a state change without its transition");
                prop_assert_eq!(p.live_backend() == P, p.state() == FleetState::Closed);
                if !allow_egress {
                    prop_assert_eq!(p.state(), FleetState::Disabled);
                    prop_assert!(!p.probe_due(now));
                }
                if let FleetState::Open { until } = p.state() {
                    prop_assert!(until > t0);
                }
            }
        }
    }
}
