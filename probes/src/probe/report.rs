//! What the probe measured: one record per run, the summary, the JSON report and the
//! human summary line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::judge::{Judge, Verdict};
use super::stats::Spread;

/// One run (one call).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// 1-based, in the order the runs started.
    pub index: usize,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// Caller's last voiced frame sent → first reply audio frame received.
    pub e2e_ms: Option<f64>,
    /// The engine's `first_token` mark (end of speech → first reply token).
    pub first_token_ms: Option<f64>,
    /// The engine's `first_audio` mark (end of speech → first reply audio handed to the
    /// media leg).
    pub first_audio_ms: Option<f64>,
    /// The backend that answered (`provider` / `local`), when the target says.
    pub backend: Option<String>,
    /// The engine's call id (`started`), or the channel UUID on ESL targets.
    pub call_id: Option<String>,
    /// How long the greeting played (first to last loud frame), if one was heard.
    pub greeting_ms: Option<f64>,
    /// Why the run could not be measured.
    pub error: Option<RunErrorRecord>,
}

/// A failed run's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunErrorRecord {
    /// A stable short name (`refused`, `rejected`, `no_answer`, …; see docs).
    pub kind: String,
    /// The message.
    pub message: String,
}

/// The figures over all runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Runs made.
    pub runs: usize,
    /// Runs that measured `e2e_ms`.
    pub ok: usize,
    /// Runs that failed.
    pub failed: usize,
    /// Spread of `e2e_ms` over the measured runs.
    pub e2e_ms: Option<Spread>,
    /// Spread of `first_token_ms`.
    pub first_token_ms: Option<Spread>,
    /// Spread of `first_audio_ms`.
    pub first_audio_ms: Option<Spread>,
    /// Measured runs per answering backend (`unknown` when the target does not say).
    pub backends: BTreeMap<String, usize>,
}

impl Summary {
    /// Summarises the runs; only runs without an error count in the figures.
    pub fn of(runs: &[RunRecord]) -> Self {
        let ok: Vec<&RunRecord> = runs.iter().filter(|r| r.error.is_none()).collect();
        let mut backends = BTreeMap::new();
        for run in &ok {
            let name = run.backend.clone().unwrap_or_else(|| "unknown".into());
            *backends.entry(name).or_insert(0) += 1;
        }
        Self {
            runs: runs.len(),
            ok: ok.len(),
            failed: runs.len() - ok.len(),
            e2e_ms: Spread::of(ok.iter().filter_map(|r| r.e2e_ms)),
            first_token_ms: Spread::of(ok.iter().filter_map(|r| r.first_token_ms)),
            first_audio_ms: Spread::of(ok.iter().filter_map(|r| r.first_audio_ms)),
            backends,
        }
    }
}

/// Where the probe called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetInfo {
    /// `stream`, `via_esl` or `freeswitch`.
    pub kind: &'static str,
    /// The URL (without query) or address.
    pub address: String,
}

/// The question asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionInfo {
    /// A path, or `bundled`.
    pub source: String,
    /// Its length.
    pub seconds: f64,
    /// From its first frame to the end of its last voiced frame.
    pub voiced_ms: u64,
}

/// Everything `--json` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `realtime-probe`.
    pub tool: &'static str,
    /// The probe's version.
    pub version: &'static str,
    /// When the probe started (RFC 3339, UTC).
    pub started_at: String,
    /// Where it called.
    pub target: TargetInfo,
    /// Stream rate in Hz (on `--freeswitch`, the channel's rate may differ per run).
    pub rate: u32,
    /// `--runs`.
    pub runs_requested: usize,
    /// `--concurrency`.
    pub concurrency: usize,
    /// SHA-256 + salt pseudonym of the caller number (never the number itself).
    pub caller_hash: String,
    /// The question.
    pub question: QuestionInfo,
    /// Every run, by index.
    pub runs: Vec<RunRecord>,
    /// Figures over the measured runs.
    pub summary: Summary,
    /// How it was judged.
    pub judge: Judge,
    /// The verdict and exit code.
    pub verdict: Verdict,
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(path, text)
    }

    /// The one human line, e.g. `realtime-probe: 20/20 runs, e2e_ms p50 512 p95 561 max
    /// 580, first_audio_ms p50 … , backend local → exit 1 (p95 e2e_ms 561 ≥ 500)`.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        let mut line = format!("realtime-probe: {}/{} runs", s.ok, self.runs_requested);
        if s.failed > 0 {
            line.push_str(&format!(" ({} failed)", s.failed));
        }
        for (name, spread) in [
            ("e2e_ms", s.e2e_ms),
            ("first_audio_ms", s.first_audio_ms),
            ("first_token_ms", s.first_token_ms),
        ] {
            match spread {
                Some(v) => line.push_str(&format!(
                    ", {name} p50 {:.0} p95 {:.0} max {:.0}",
                    v.p50, v.p95, v.max
                )),
                None => line.push_str(&format!(", {name} n/a")),
            }
        }
        let backends: Vec<String> = s.backends.keys().cloned().collect();
        match backends.as_slice() {
            [] => line.push_str(", backend n/a"),
            [one] => line.push_str(&format!(", backend {one}")),
            _ => {
                let counts: Vec<String> =
                    s.backends.iter().map(|(b, n)| format!("{b} {n}")).collect();
                line.push_str(&format!(", backends {}", counts.join(" ")));
            }
        }
        line.push_str(&format!(
            " → exit {} ({})",
            self.verdict.exit_code.code(),
            self.verdict.reason
        ));
        line
    }
}

/// The progress line for one finished run (stderr).
pub fn progress_line(run: &RunRecord, total: usize) -> String {
    let fmt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"));
    match &run.error {
        None => format!(
            "run {}/{}: e2e_ms {}, first_audio_ms {}, first_token_ms {}, backend {}",
            run.index,
            total,
            fmt(run.e2e_ms),
            fmt(run.first_audio_ms),
            fmt(run.first_token_ms),
            run.backend.as_deref().unwrap_or("unknown")
        ),
        Some(e) => format!(
            "run {}/{}: failed ({}): {}",
            run.index, total, e.kind, e.message
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::judge::ExitCode;
    use super::*;

    fn run(
        index: usize,
        e2e: Option<f64>,
        backend: Option<&str>,
        error: Option<&str>,
    ) -> RunRecord {
        RunRecord {
            index,
            started_at: "2026-01-01T00:00:00Z".into(),
            e2e_ms: e2e,
            first_token_ms: e2e.map(|v| v / 2.0),
            first_audio_ms: e2e.map(|v| v - 100.0),
            backend: backend.map(str::to_owned),
            call_id: None,
            greeting_ms: None,
            error: error.map(|m| RunErrorRecord {
                kind: "no_answer".into(),
                message: m.into(),
            }),
        }
    }

    #[test]
    fn summary_counts_only_measured_runs() {
        let runs = vec![
            run(1, Some(500.0), Some("local"), None),
            run(2, Some(600.0), Some("local"), None),
            run(3, None, Some("local"), Some("no reply")),
            run(4, Some(700.0), None, None),
        ];
        let s = Summary::of(&runs);
        assert_eq!((s.runs, s.ok, s.failed), (4, 3, 1));
        assert_eq!(s.e2e_ms.unwrap().max, 700.0);
        assert_eq!(s.e2e_ms.unwrap().p50, 600.0);
        assert_eq!(s.backends.get("local"), Some(&2));
        assert_eq!(s.backends.get("unknown"), Some(&1));
    }

    #[test]
    fn the_summary_line_and_json_shape() {
        let runs: Vec<RunRecord> = (1..=20)
            .map(|i| run(i, Some(500.0 + i as f64 * 4.0), Some("local"), None))
            .collect();
        let summary = Summary::of(&runs);
        let judge = Judge::default();
        let verdict = judge.verdict(&summary);
        assert_eq!(verdict.exit_code, ExitCode::Warn);
        let report = Report {
            tool: "realtime-probe",
            version: "0.1.0",
            started_at: "2026-01-01T00:00:00Z".into(),
            target: TargetInfo {
                kind: "stream",
                address: "ws://127.0.0.1:9090/v1/stream".into(),
            },
            rate: 16_000,
            runs_requested: 20,
            concurrency: 1,
            caller_hash: "0123456789abcdef".into(),
            question: QuestionInfo {
                source: "bundled".into(),
                seconds: 3.7,
                voiced_ms: 3460,
            },
            runs,
            summary,
            judge,
            verdict,
        };
        assert_eq!(
            report.summary_line(),
            "realtime-probe: 20/20 runs, e2e_ms p50 540 p95 576 max 580, \
             first_audio_ms p50 440 p95 476 max 480, first_token_ms p50 270 p95 288 max 290, \
             backend local → exit 1 (p95 e2e_ms 576 ≥ 500)"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["verdict"]["exit_code"], 1);
        assert_eq!(json["judge"]["metric"], "e2e_ms");
        assert_eq!(json["judge"]["stat"], "p95");
        assert_eq!(json["runs"][0]["index"], 1);
        assert_eq!(json["runs"][0]["error"], serde_json::Value::Null);
        assert_eq!(json["summary"]["e2e_ms"]["p95"], 576.0);
        assert_eq!(json["summary"]["backends"]["local"], 20);
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line(&run(3, Some(512.4), Some("provider"), None), 20),
            "run 3/20: e2e_ms 512, first_audio_ms 412, first_token_ms 256, backend provider"
        );
        assert_eq!(
            progress_line(
                &run(4, None, None, Some("no reply audio within 10000 ms")),
                20
            ),
            "run 4/20: failed (no_answer): no reply audio within 10000 ms"
        );
    }
}
