//! The engine's Prometheus metrics. Names and labels are a contract with the operators'
//! dashboards and alerts (DESIGN.md "Metrics"); change them only with those.
//!
//! Label sets that dashboards expect to see before anything happened (both backends,
//! every failover reason, both media directions) are created at zero up front: a series
//! that does not exist yet cannot be graphed or alerted on.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use std::sync::{Arc, Mutex};

use esl_bridge::media::MediaCountersSnapshot;
use esl_bridge::outbound::ServerCounters;

use crate::backend::{BackendKind, ErrorKind, Stage};

/// Latency buckets (ms): fine between 50 and 2000 ms, where the 500/800 ms lines are.
pub const LATENCY_BUCKETS_MS: &[f64] = &[
    25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0, 500.0, 600.0, 700.0,
    800.0, 900.0, 1000.0, 1200.0, 1500.0, 2000.0, 3000.0, 5000.0,
];

/// Failover reasons known up front (the policy may add detail, not labels).
pub const FAILOVER_REASONS: &[&str] = &[
    "latency",
    "errors",
    "connect",
    "auth",
    "rate_limit",
    "first_audio_deadline",
    "slow_turns",
    "provider_failed_mid_call",
];

/// How a call ended, for `tom_calls_total{outcome}`.
pub const CALL_OUTCOMES: &[&str] = &[
    "completed",
    "caller_hangup",
    "max_turns",
    "max_duration",
    "error",
    "rejected",
    "busy",
    "shutdown",
];

/// Cost components of `tom_cost_eur_total{component}`.
pub const COST_COMPONENTS: &[&str] = &["stt", "llm", "tts", "provider"];

/// Why the engine refused or dropped something from outside.
pub const BAD_INPUT_SOURCES: &[&str] = &["esl", "media", "config", "provider", "websocket"];

/// How FreeSWITCH's outbound ESL connections went (`tom_esl_connections_total{result}`).
pub const ESL_CONNECTION_RESULTS: &[&str] =
    &["accepted", "rejected_peer", "handshake_failed", "dropped"];

/// Why a `/v1/stream` connection was refused or closed early
/// (`tom_stream_rejected_total{reason}`); the authentication reasons come from
/// `auth::AuthError::reason`.
pub const STREAM_REJECT_REASONS: &[&str] = &[
    "missing_token",
    "malformed",
    "bad_signature",
    "wrong_alg",
    "expired",
    "not_yet_valid",
    "bad_audience",
    "bad_issuer",
    "missing_exp",
    "missing_jti",
    "replayed",
    "store_unavailable",
    "store_full",
    "not_configured",
    "draining",
    "busy",
    "bad_start",
    "protocol",
    "rate_limited",
    "too_big",
];

/// Why media frames were dropped (`tom_media_frames_dropped_total{reason}`).
pub const DROP_REASONS: &[&str] = &[
    "bad_frame",
    "stream_overflow",
    "queue_overflow",
    "bad_size",
    "send_error",
];

/// Error classes per backend that can happen (`tom_backend_errors_total{backend,kind}`).
const BACKEND_ERROR_SERIES: &[(BackendKind, ErrorKind)] = &[
    (BackendKind::Provider, ErrorKind::Connect),
    (BackendKind::Provider, ErrorKind::Timeout),
    (BackendKind::Provider, ErrorKind::Auth),
    (BackendKind::Provider, ErrorKind::RateLimit),
    (BackendKind::Provider, ErrorKind::Server),
    (BackendKind::Provider, ErrorKind::Protocol),
    (BackendKind::Provider, ErrorKind::ClosedMidResponse),
    (BackendKind::Provider, ErrorKind::InvalidRequest),
    (BackendKind::Local, ErrorKind::Local),
];

/// Every metric the engine exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The ESL listener's own counters, folded into `tom_bad_input_total{source="esl"}`,
    /// `tom_esl_connections_total` and `tom_esl_events_dropped_total` at each scrape
    /// (esl-bridge stays free of Prometheus).
    /// Only this sync feeds those series, so each one's value is what was exported; the
    /// mutex keeps two scrapes from adding the same gain twice.
    esl: Arc<Mutex<Option<Arc<ServerCounters>>>>,
    /// `tom_realtime_backend{backend}`: 1 on the backend serving new calls.
    pub realtime_backend: IntGaugeVec,
    /// `tom_provider_failover_total{reason}`.
    pub provider_failover_total: IntCounterVec,
    /// `tom_failback_total`.
    pub failback_total: IntCounter,
    /// `tom_realtime_e2e_ms{backend}`.
    pub realtime_e2e_ms: HistogramVec,
    /// `tom_stage_latency_ms{stage,backend}`.
    pub stage_latency_ms: HistogramVec,
    /// `tom_bargein_ms`.
    pub bargein_ms: Histogram,
    /// `tom_calls_active`.
    pub calls_active: IntGauge,
    /// `tom_calls_total{outcome}`.
    pub calls_total: IntCounterVec,
    /// `tom_backend_errors_total{backend,kind}`.
    pub backend_errors_total: IntCounterVec,
    /// `tom_media_frames_total{direction}`.
    pub media_frames_total: IntCounterVec,
    /// `tom_media_frames_dropped_total{reason}`.
    pub media_frames_dropped_total: IntCounterVec,
    /// `tom_cost_eur_total{component}` (informational prices).
    pub cost_eur_total: prometheus::CounterVec,
    /// `tom_bad_input_total{source}`: malformed input from outside, refused.
    pub bad_input_total: IntCounterVec,
    /// `tom_stream_rejected_total{reason}`: `/v1/stream` connections refused or closed
    /// for what the client did.
    pub stream_rejected_total: IntCounterVec,
    /// `tom_esl_connections_total{result}`: FreeSWITCH's outbound connections.
    pub esl_connections_total: IntCounterVec,
    /// `tom_esl_events_dropped_total`: FreeSWITCH events a call did not take in time.
    pub esl_events_dropped_total: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered and known label sets at zero. The
    /// process collector (CPU seconds, resident memory) is included on Linux.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_MS.to_vec()),
                labels,
            )
        };
        let metrics = Self {
            esl: Arc::new(Mutex::new(None)),
            realtime_backend: IntGaugeVec::new(
                Opts::new("tom_realtime_backend", "1 on the backend serving new calls"),
                &["backend"],
            )?,
            provider_failover_total: IntCounterVec::new(
                Opts::new(
                    "tom_provider_failover_total",
                    "Switches from the provider to the local backend",
                ),
                &["reason"],
            )?,
            failback_total: IntCounter::new(
                "tom_failback_total",
                "Returns from the local backend to the provider",
            )?,
            realtime_e2e_ms: histogram(
                "tom_realtime_e2e_ms",
                "End of caller speech to first reply audio handed to the media leg, ms",
                &["backend"],
            )?,
            stage_latency_ms: histogram(
                "tom_stage_latency_ms",
                "Latency of one pipeline stage, ms",
                &["stage", "backend"],
            )?,
            bargein_ms: Histogram::with_opts(
                HistogramOpts::new(
                    "tom_bargein_ms",
                    "Caller speech onset to the last reply frame sent, ms",
                )
                .buckets(LATENCY_BUCKETS_MS.to_vec()),
            )?,
            calls_active: IntGauge::new("tom_calls_active", "Calls in progress")?,
            calls_total: IntCounterVec::new(
                Opts::new("tom_calls_total", "Calls ended, by outcome"),
                &["outcome"],
            )?,
            backend_errors_total: IntCounterVec::new(
                Opts::new("tom_backend_errors_total", "Backend failures by class"),
                &["backend", "kind"],
            )?,
            media_frames_total: IntCounterVec::new(
                Opts::new("tom_media_frames_total", "20 ms media frames moved"),
                &["direction"],
            )?,
            media_frames_dropped_total: IntCounterVec::new(
                Opts::new("tom_media_frames_dropped_total", "Media frames dropped"),
                &["reason"],
            )?,
            cost_eur_total: prometheus::CounterVec::new(
                Opts::new(
                    "tom_cost_eur_total",
                    "Informational cost in EUR at the configured prices",
                ),
                &["component"],
            )?,
            bad_input_total: IntCounterVec::new(
                Opts::new(
                    "tom_bad_input_total",
                    "Malformed input from outside, refused",
                ),
                &["source"],
            )?,
            stream_rejected_total: IntCounterVec::new(
                Opts::new(
                    "tom_stream_rejected_total",
                    "/v1/stream connections refused or closed for the client's fault",
                ),
                &["reason"],
            )?,
            esl_connections_total: IntCounterVec::new(
                Opts::new(
                    "tom_esl_connections_total",
                    "FreeSWITCH outbound ESL connections, by result",
                ),
                &["result"],
            )?,
            esl_events_dropped_total: IntCounter::new(
                "tom_esl_events_dropped_total",
                "FreeSWITCH events dropped because a call did not take them in time",
            )?,
            registry,
        };
        metrics.register_all()?;
        metrics.zero_known_series();
        Ok(metrics)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.realtime_backend.clone()))?;
        r.register(Box::new(self.provider_failover_total.clone()))?;
        r.register(Box::new(self.failback_total.clone()))?;
        r.register(Box::new(self.realtime_e2e_ms.clone()))?;
        r.register(Box::new(self.stage_latency_ms.clone()))?;
        r.register(Box::new(self.bargein_ms.clone()))?;
        r.register(Box::new(self.calls_active.clone()))?;
        r.register(Box::new(self.calls_total.clone()))?;
        r.register(Box::new(self.backend_errors_total.clone()))?;
        r.register(Box::new(self.media_frames_total.clone()))?;
        r.register(Box::new(self.media_frames_dropped_total.clone()))?;
        r.register(Box::new(self.cost_eur_total.clone()))?;
        r.register(Box::new(self.bad_input_total.clone()))?;
        r.register(Box::new(self.stream_rejected_total.clone()))?;
        r.register(Box::new(self.esl_connections_total.clone()))?;
        r.register(Box::new(self.esl_events_dropped_total.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(())
    }

    fn zero_known_series(&self) {
        for backend in [BackendKind::Provider, BackendKind::Local] {
            self.realtime_backend
                .with_label_values(&[backend.as_str()])
                .set(0);
            let _ = self.realtime_e2e_ms.with_label_values(&[backend.as_str()]);
            for stage in [
                Stage::Endpoint,
                Stage::Stt,
                Stage::LlmFirstToken,
                Stage::TtsFirstAudio,
            ] {
                let _ = self
                    .stage_latency_ms
                    .with_label_values(&[stage.as_str(), backend.as_str()]);
            }
        }
        for reason in FAILOVER_REASONS {
            let _ = self.provider_failover_total.with_label_values(&[reason]);
        }
        for outcome in CALL_OUTCOMES {
            let _ = self.calls_total.with_label_values(&[outcome]);
        }
        for direction in ["in", "out"] {
            let _ = self.media_frames_total.with_label_values(&[direction]);
        }
        for reason in DROP_REASONS {
            let _ = self.media_frames_dropped_total.with_label_values(&[reason]);
        }
        for (backend, kind) in BACKEND_ERROR_SERIES {
            let _ = self
                .backend_errors_total
                .with_label_values(&[backend.as_str(), kind.as_str()]);
        }
        for component in COST_COMPONENTS {
            let _ = self.cost_eur_total.with_label_values(&[component]);
        }
        for source in BAD_INPUT_SOURCES {
            let _ = self.bad_input_total.with_label_values(&[source]);
        }
        for reason in STREAM_REJECT_REASONS {
            let _ = self.stream_rejected_total.with_label_values(&[reason]);
        }
        for result in ESL_CONNECTION_RESULTS {
            let _ = self.esl_connections_total.with_label_values(&[result]);
        }
    }

    /// Marks `backend` as the one serving new calls (the gauge is 1 on it, 0 elsewhere).
    pub fn set_live_backend(&self, backend: BackendKind) {
        for other in [BackendKind::Provider, BackendKind::Local] {
            self.realtime_backend
                .with_label_values(&[other.as_str()])
                .set(i64::from(other == backend));
        }
    }

    /// Counts a backend failure.
    pub fn backend_error(&self, backend: BackendKind, kind: ErrorKind) {
        self.backend_errors_total
            .with_label_values(&[backend.as_str(), kind.as_str()])
            .inc();
    }

    /// Counts a refused or closed `/v1/stream` connection.
    pub fn stream_rejected(&self, reason: &str) {
        self.stream_rejected_total
            .with_label_values(&[reason])
            .inc();
    }

    /// Records one stage latency.
    pub fn stage(&self, stage: Stage, backend: BackendKind, ms: f64) {
        self.stage_latency_ms
            .with_label_values(&[stage.as_str(), backend.as_str()])
            .observe(ms);
    }

    /// Records one turn's end-to-end latency (engine side: end of speech → first audio).
    pub fn e2e(&self, backend: BackendKind, ms: f64) {
        self.realtime_e2e_ms
            .with_label_values(&[backend.as_str()])
            .observe(ms);
    }

    /// Exports the ESL listener's malformed-input counters from now on.
    pub fn watch_esl(&self, counters: Arc<ServerCounters>) {
        if let Ok(mut esl) = self.esl.lock() {
            *esl = Some(counters);
        }
    }

    /// Adds what a finished media leg dropped or refused.
    pub fn media_leg_ended(&self, leg: MediaCountersSnapshot) {
        let dropped = |reason: &str, n: u64| {
            self.media_frames_dropped_total
                .with_label_values(&[reason])
                .inc_by(n);
        };
        dropped("queue_overflow", leg.dropped_overflow);
        dropped("bad_size", leg.dropped_bad_size);
        dropped("send_error", leg.send_errors);
        self.bad_input_total
            .with_label_values(&["media"])
            .inc_by(leg.dropped_bad_size + leg.wrong_source);
    }

    fn sync_esl(&self) {
        let Ok(esl) = self.esl.lock() else {
            return;
        };
        let Some(c) = esl.as_ref() else {
            return;
        };
        let get = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        // Each series catches up with its counter.
        let export = |series: &IntCounter, now: u64| {
            series.inc_by(now.saturating_sub(series.get()));
        };
        let bad = get(&c.handshake_failures)
            + get(&c.connections.malformed_messages)
            + get(&c.connections.framing_errors);
        export(&self.bad_input_total.with_label_values(&["esl"]), bad);
        let connections = |result: &str| self.esl_connections_total.with_label_values(&[result]);
        export(&connections("accepted"), get(&c.accepted));
        export(&connections("rejected_peer"), get(&c.rejected_peers));
        export(&connections("handshake_failed"), get(&c.handshake_failures));
        export(&connections("dropped"), get(&c.calls_dropped));
        export(
            &self.esl_events_dropped_total,
            get(&c.connections.events_dropped),
        );
    }

    /// The text exposition of every metric (what `/metrics` serves).
    pub fn render(&self) -> String {
        self.sync_esl();
        let mut out = Vec::new();
        // Encoding into a Vec only fails on a malformed metric family, which the
        // registry already refused at registration.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn esl_and_media_bad_input_is_exported() {
        let m = Metrics::new().expect("metrics");
        let text = m.render();
        for series in [
            r#"tom_backend_errors_total{backend="local",kind="local"}"#,
            r#"tom_backend_errors_total{backend="provider",kind="rate_limit"}"#,
            r#"tom_media_frames_dropped_total{reason="queue_overflow"}"#,
        ] {
            assert_eq!(value_of(&text, series), Some(0.0), "{series}");
        }
        let esl = Arc::new(ServerCounters::default());
        m.watch_esl(esl.clone());
        esl.handshake_failures
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        esl.connections
            .framing_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let esl_series = r#"tom_bad_input_total{source="esl"}"#;
        assert_eq!(value_of(&m.render(), esl_series), Some(3.0));
        // A second scrape adds only what is new.
        esl.connections
            .malformed_messages
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(value_of(&m.render(), esl_series), Some(4.0));
        assert_eq!(value_of(&m.render(), esl_series), Some(4.0));
        // FreeSWITCH knocking from an address not allow-listed, and events a call lost.
        esl.rejected_peers
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        esl.connections
            .events_dropped
            .fetch_add(7, std::sync::atomic::Ordering::Relaxed);
        let text = m.render();
        assert_eq!(
            value_of(
                &text,
                r#"tom_esl_connections_total{result="rejected_peer"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value_of(
                &text,
                r#"tom_esl_connections_total{result="handshake_failed"}"#
            ),
            Some(2.0)
        );
        assert_eq!(value_of(&text, "tom_esl_events_dropped_total"), Some(7.0));
        assert_eq!(
            value_of(&m.render(), "tom_esl_events_dropped_total"),
            Some(7.0),
            "a second scrape adds nothing"
        );

        m.media_leg_ended(MediaCountersSnapshot {
            dropped_overflow: 5,
            dropped_bad_size: 2,
            wrong_source: 1,
            send_errors: 3,
            ..MediaCountersSnapshot::default()
        });
        let text = m.render();
        assert_eq!(
            value_of(
                &text,
                r#"tom_media_frames_dropped_total{reason="queue_overflow"}"#
            ),
            Some(5.0)
        );
        assert_eq!(
            value_of(
                &text,
                r#"tom_media_frames_dropped_total{reason="send_error"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            value_of(&text, r#"tom_bad_input_total{source="media"}"#),
            Some(3.0)
        );
    }

    #[test]
    fn contract_series_exist_from_the_start() {
        let m = Metrics::new().expect("metrics");
        m.set_live_backend(BackendKind::Local);
        let text = m.render();
        assert_eq!(
            value_of(&text, r#"tom_realtime_backend{backend="local"}"#),
            Some(1.0)
        );
        assert_eq!(
            value_of(&text, r#"tom_realtime_backend{backend="provider"}"#),
            Some(0.0)
        );
        assert_eq!(
            value_of(&text, r#"tom_provider_failover_total{reason="latency"}"#),
            Some(0.0)
        );
        assert_eq!(value_of(&text, "tom_failback_total"), Some(0.0));
        assert_eq!(value_of(&text, "tom_calls_active"), Some(0.0));
        for name in [
            "tom_realtime_e2e_ms_bucket",
            "tom_stage_latency_ms_bucket",
            "tom_bargein_ms_bucket",
            "tom_calls_total{",
            "tom_media_frames_total{",
            "tom_cost_eur_total{",
            "tom_bad_input_total{",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }

    #[test]
    fn the_live_backend_flips_and_observations_land_in_the_right_buckets() {
        let m = Metrics::new().expect("metrics");
        m.set_live_backend(BackendKind::Provider);
        m.provider_failover_total
            .with_label_values(&["latency"])
            .inc();
        m.set_live_backend(BackendKind::Local);
        m.e2e(BackendKind::Local, 430.0);
        m.backend_error(BackendKind::Provider, ErrorKind::RateLimit);
        let text = m.render();
        assert_eq!(
            value_of(&text, r#"tom_realtime_backend{backend="provider"}"#),
            Some(0.0)
        );
        assert_eq!(
            value_of(&text, r#"tom_realtime_backend{backend="local"}"#),
            Some(1.0)
        );
        assert_eq!(
            value_of(&text, r#"tom_provider_failover_total{reason="latency"}"#),
            Some(1.0)
        );
        assert_eq!(
            value_of(
                &text,
                r#"tom_realtime_e2e_ms_bucket{backend="local",le="450"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value_of(
                &text,
                r#"tom_realtime_e2e_ms_bucket{backend="local",le="400"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            value_of(
                &text,
                r#"tom_backend_errors_total{backend="provider",kind="rate_limit"}"#
            ),
            Some(1.0)
        );
    }
}
