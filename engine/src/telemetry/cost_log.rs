//! The per-call cost record: one JSON line per call in
//! `<dir>/costs_YYYYMMDD.jsonl` (UTC date of the call's end), appended and synced to disk
//! when the call ends, so it survives a crash or restart right after.
//!
//! Prices are informational (configured, not billed): the local pipeline's stages are
//! priced per minute of work, the provider per million tokens by kind.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::daily_jsonl::{DailyJsonl, JsonlError};
use crate::backend::{BackendKind, Usage};

/// Informational prices (EUR).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    /// Local speech recognition, per minute of processing.
    pub stt_eur_per_min: f64,
    /// Local reply generation, per minute of processing.
    pub llm_eur_per_min: f64,
    /// Local speech synthesis, per minute of processing.
    pub tts_eur_per_min: f64,
    /// Provider audio input, per million tokens.
    pub provider_audio_in_eur_per_mtok: f64,
    /// Provider cached input, per million tokens.
    pub provider_cached_in_eur_per_mtok: f64,
    /// Provider text input, per million tokens.
    pub provider_text_in_eur_per_mtok: f64,
    /// Provider audio output, per million tokens.
    pub provider_audio_out_eur_per_mtok: f64,
    /// Provider text output, per million tokens.
    pub provider_text_out_eur_per_mtok: f64,
}

impl Default for Prices {
    /// Local work at a nominal compute price; the provider at gpt-realtime's published
    /// list prices converted at 0.92 EUR/USD (informational only).
    fn default() -> Self {
        Self {
            stt_eur_per_min: 0.0005,
            llm_eur_per_min: 0.0005,
            tts_eur_per_min: 0.0005,
            provider_audio_in_eur_per_mtok: 29.44,
            provider_cached_in_eur_per_mtok: 0.37,
            provider_text_in_eur_per_mtok: 3.68,
            provider_audio_out_eur_per_mtok: 58.88,
            provider_text_out_eur_per_mtok: 14.72,
        }
    }
}

impl Prices {
    /// The provider's cost of `usage`. Cached tokens are billed at the cached price and
    /// not again as audio/text input.
    pub fn provider_cost(&self, usage: &Usage) -> f64 {
        let per = |tokens: u64, price: f64| tokens as f64 * price / 1e6;
        let uncached_audio = usage
            .input_audio_tokens
            .saturating_sub(usage.input_cached_tokens);
        per(uncached_audio, self.provider_audio_in_eur_per_mtok)
            + per(
                usage.input_cached_tokens,
                self.provider_cached_in_eur_per_mtok,
            )
            + per(usage.input_text_tokens, self.provider_text_in_eur_per_mtok)
            + per(
                usage.output_audio_tokens,
                self.provider_audio_out_eur_per_mtok,
            )
            + per(
                usage.output_text_tokens,
                self.provider_text_out_eur_per_mtok,
            )
    }
}

/// A backend switch within a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSwitch {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// From which backend.
    pub from: BackendKind,
    /// To which backend.
    pub to: BackendKind,
    /// Why (the failover reason label).
    pub reason: String,
}

/// Token usage summed over a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Input audio tokens.
    pub input_audio_tokens: u64,
    /// Input text tokens.
    pub input_text_tokens: u64,
    /// Input tokens served from cache.
    pub input_cached_tokens: u64,
    /// Output audio tokens.
    pub output_audio_tokens: u64,
    /// Output text tokens.
    pub output_text_tokens: u64,
}

/// One line of the cost log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRecord {
    /// The call (FreeSWITCH channel UUID or stream id).
    pub call_id: String,
    /// The backend that answered the last turn.
    pub backend: BackendKind,
    /// Call start, RFC 3339 UTC.
    pub start_time: String,
    /// Call end, RFC 3339 UTC.
    pub end_time: String,
    /// Local speech recognition time.
    pub stt_duration_s: f64,
    /// Local reply generation time.
    pub llm_duration_s: f64,
    /// Local synthesis time.
    pub tts_duration_s: f64,
    /// Cost of the local recognition.
    pub stt_cost_eur: f64,
    /// Cost of the local reply generation.
    pub llm_cost_eur: f64,
    /// Cost of the local synthesis.
    pub tts_cost_eur: f64,
    /// Cost of the provider's tokens.
    pub provider_cost_eur: f64,
    /// Everything.
    pub total_cost_eur: f64,
    /// Prices are configured estimates, not a bill.
    pub prices_informational: bool,
    /// Caller turns answered.
    pub turns: u32,
    /// How the call ended (`tom_calls_total` outcome).
    pub outcome: String,
    /// The caller's number, hashed (never the number).
    pub caller_hash: String,
    /// Backend switches with reasons.
    pub switches: Vec<BackendSwitch>,
    /// Provider token usage.
    pub provider_usage: TokenUsage,
}

/// Accumulates one call's costs; the call task owns it.
#[derive(Debug, Clone)]
pub struct CallCost {
    call_id: String,
    caller_hash: String,
    started: SystemTime,
    backend: BackendKind,
    stt: Duration,
    llm: Duration,
    tts: Duration,
    usage: TokenUsage,
    turns: u32,
    switches: Vec<BackendSwitch>,
}

pub(crate) fn rfc3339(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl CallCost {
    /// A call starting now on `backend`.
    pub fn start(
        call_id: impl Into<String>,
        caller_hash: impl Into<String>,
        backend: BackendKind,
    ) -> Self {
        Self::start_at(call_id, caller_hash, backend, SystemTime::now())
    }

    /// A call that started at `started`.
    pub fn start_at(
        call_id: impl Into<String>,
        caller_hash: impl Into<String>,
        backend: BackendKind,
        started: SystemTime,
    ) -> Self {
        Self {
            call_id: call_id.into(),
            caller_hash: caller_hash.into(),
            started,
            backend,
            stt: Duration::ZERO,
            llm: Duration::ZERO,
            tts: Duration::ZERO,
            usage: TokenUsage::default(),
            turns: 0,
            switches: Vec::new(),
        }
    }

    /// Local recognition work.
    pub fn add_stt(&mut self, took: Duration) {
        self.stt += took;
    }

    /// Local reply generation work.
    pub fn add_llm(&mut self, took: Duration) {
        self.llm += took;
    }

    /// Local synthesis work.
    pub fn add_tts(&mut self, took: Duration) {
        self.tts += took;
    }

    /// Provider tokens of one response.
    pub fn add_usage(&mut self, usage: &Usage) {
        self.usage.input_audio_tokens += usage.input_audio_tokens;
        self.usage.input_text_tokens += usage.input_text_tokens;
        self.usage.input_cached_tokens += usage.input_cached_tokens;
        self.usage.output_audio_tokens += usage.output_audio_tokens;
        self.usage.output_text_tokens += usage.output_text_tokens;
    }

    /// One caller turn answered.
    pub fn turn(&mut self) {
        self.turns += 1;
    }

    /// The call moved to `to` at `at` because of `reason`.
    pub fn switch(&mut self, to: BackendKind, reason: impl Into<String>, at: SystemTime) {
        self.switches.push(BackendSwitch {
            at: rfc3339(at),
            from: self.backend,
            to,
            reason: reason.into(),
        });
        self.backend = to;
    }

    /// The record of the call ending at `ended` with `outcome`.
    pub fn finish(&self, outcome: &str, ended: SystemTime, prices: &Prices) -> CostRecord {
        let per_min = |d: Duration, price: f64| d.as_secs_f64() / 60.0 * price;
        let usage = Usage {
            input_audio_tokens: self.usage.input_audio_tokens,
            input_text_tokens: self.usage.input_text_tokens,
            input_cached_tokens: self.usage.input_cached_tokens,
            output_audio_tokens: self.usage.output_audio_tokens,
            output_text_tokens: self.usage.output_text_tokens,
        };
        let stt_cost_eur = per_min(self.stt, prices.stt_eur_per_min);
        let llm_cost_eur = per_min(self.llm, prices.llm_eur_per_min);
        let tts_cost_eur = per_min(self.tts, prices.tts_eur_per_min);
        let provider_cost_eur = prices.provider_cost(&usage);
        CostRecord {
            call_id: self.call_id.clone(),
            backend: self.backend,
            start_time: rfc3339(self.started),
            end_time: rfc3339(ended),
            stt_duration_s: self.stt.as_secs_f64(),
            llm_duration_s: self.llm.as_secs_f64(),
            tts_duration_s: self.tts.as_secs_f64(),
            stt_cost_eur,
            llm_cost_eur,
            tts_cost_eur,
            provider_cost_eur,
            total_cost_eur: stt_cost_eur + llm_cost_eur + tts_cost_eur + provider_cost_eur,
            prices_informational: true,
            turns: self.turns,
            outcome: outcome.to_owned(),
            caller_hash: self.caller_hash.clone(),
            switches: self.switches.clone(),
            provider_usage: self.usage,
        }
    }
}

/// Why a record could not be written.
pub type CostLogError = JsonlError;

/// Appends cost records to `costs_YYYYMMDD.jsonl`. Blocking I/O: call it from a blocking
/// task.
#[derive(Debug)]
pub struct CostLog(DailyJsonl);

impl CostLog {
    /// A log in `dir` (created when missing).
    pub fn open(dir: &Path) -> Result<Self, CostLogError> {
        DailyJsonl::open(dir, "costs", "cost log").map(Self)
    }

    /// The file a call ending at `ended` goes to.
    pub fn file_for(&self, ended: SystemTime) -> PathBuf {
        self.0.file_for(ended)
    }

    /// Appends `record` (one line) and syncs it to disk.
    pub fn append(&self, record: &CostRecord, ended: SystemTime) -> Result<PathBuf, CostLogError> {
        self.0.append(record, ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_call_record_sums_work_usage_and_switches() {
        let mut cost =
            CallCost::start_at("uuid-1", "hash", BackendKind::Provider, at(1_764_028_800));
        cost.add_usage(&Usage {
            input_audio_tokens: 1_000_000,
            input_cached_tokens: 500_000,
            output_audio_tokens: 1_000_000,
            ..Usage::default()
        });
        cost.turn();
        cost.switch(BackendKind::Local, "latency", at(1_764_028_830));
        cost.add_stt(Duration::from_secs(60));
        cost.turn();
        let prices = Prices::default();
        let record = cost.finish("completed", at(1_764_028_860), &prices);
        assert_eq!(record.backend, BackendKind::Local);
        assert_eq!(record.start_time, "2025-11-25T00:00:00Z");
        assert_eq!(record.end_time, "2025-11-25T00:01:00Z");
        assert_eq!(record.turns, 2);
        assert_eq!(record.switches.len(), 1);
        assert_eq!(record.switches[0].reason, "latency");
        let provider = 0.5 * 29.44 + 0.5 * 0.37 + 58.88;
        assert!((record.provider_cost_eur - provider).abs() < 1e-9);
        assert!((record.stt_cost_eur - 0.0005).abs() < 1e-12);
        let total = record.stt_cost_eur + record.provider_cost_eur;
        assert!((record.total_cost_eur - total).abs() < 1e-9);
        assert!(record.prices_informational);
    }

    #[test]
    fn records_append_to_the_day_of_the_call_end_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = CostLog::open(&dir.path().join("cost_logs")).expect("open");
        let prices = Prices::default();
        let ended = at(1_764_028_860);
        for id in ["a", "b"] {
            let cost = CallCost::start_at(id, "h", BackendKind::Local, at(1_764_028_800));
            let path = log
                .append(&cost.finish("completed", ended, &prices), ended)
                .expect("append");
            assert!(path.ends_with("costs_20251125.jsonl"), "{}", path.display());
        }
        let text = std::fs::read_to_string(log.file_for(ended)).expect("read");
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<CostRecord>(l)
                    .expect("a record per line")
                    .call_id
            })
            .collect();
        assert_eq!(ids, ["a", "b"]);
        // Every field the operators' spec names is present.
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("line")).expect("json");
        for field in [
            "call_id",
            "backend",
            "start_time",
            "end_time",
            "stt_duration_s",
            "llm_duration_s",
            "tts_duration_s",
            "stt_cost_eur",
            "llm_cost_eur",
            "tts_cost_eur",
            "total_cost_eur",
            "switches",
            "turns",
            "provider_usage",
        ] {
            assert!(first.get(field).is_some(), "{field} missing");
        }
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").expect("write");
        let err = CostLog::open(&blocker.join("sub")).expect_err("not a directory");
        assert!(err.to_string().contains("cost log"), "{err}");
    }
}
