//! The verdict: one exit code from the summary, the thresholds and the expectations.

use std::fmt;

use serde::Serialize;

use super::report::Summary;

/// The figure that is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Caller's last voiced frame sent → first reply audio received.
    #[value(name = "e2e_ms")]
    E2eMs,
    /// The engine's `first_audio` mark.
    #[value(name = "first_audio_ms")]
    FirstAudioMs,
    /// The engine's `first_token` mark.
    #[value(name = "first_token_ms")]
    FirstTokenMs,
}

impl Metric {
    /// The DESIGN.md name.
    pub fn name(self) -> &'static str {
        match self {
            Self::E2eMs => "e2e_ms",
            Self::FirstAudioMs => "first_audio_ms",
            Self::FirstTokenMs => "first_token_ms",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which statistic of the judged figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    /// Median.
    P50,
    /// 95th percentile.
    P95,
    /// Worst run.
    Max,
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::P50 => "p50",
            Self::P95 => "p95",
            Self::Max => "max",
        })
    }
}

/// The backend that answered, as the engine names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The cloud speech-to-speech provider.
    Provider,
    /// The local pipeline.
    Local,
}

impl Backend {
    /// The engine's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Local => "local",
        }
    }
}

/// The probe's exit codes (a contract with CI scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "i32")]
pub enum ExitCode {
    /// 0: the judged latency is below `--warn-ms`.
    Good,
    /// 1: at or above `--warn-ms`, below `--fail-ms`.
    Warn,
    /// 2: at or above `--fail-ms`.
    Fail,
    /// 3: the probe could not measure (connection refused, auth rejected, no answer,
    /// more failed runs than `--allow-failures`, the judged figure missing).
    NoMeasurement,
    /// 4: a run was answered by another backend than `--expect-backend`.
    WrongBackend,
    /// 64: bad command line (nothing was measured).
    Usage,
}

impl ExitCode {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            Self::Good => 0,
            Self::Warn => 1,
            Self::Fail => 2,
            Self::NoMeasurement => 3,
            Self::WrongBackend => 4,
            Self::Usage => 64,
        }
    }
}

impl From<ExitCode> for i32 {
    fn from(code: ExitCode) -> Self {
        code.code()
    }
}

/// A bad judging setup.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeError {
    /// Thresholds that cannot order the verdicts.
    #[error("--warn-ms {warn} must be positive and not above --fail-ms {fail}")]
    Thresholds {
        /// `--warn-ms`.
        warn: f64,
        /// `--fail-ms`.
        fail: f64,
    },
}

/// How a probe run is judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judge {
    /// The judged figure.
    pub metric: Metric,
    /// Its statistic.
    pub stat: Stat,
    /// Below this: exit 0.
    pub warn_ms: f64,
    /// At or above this: exit 2.
    pub fail_ms: f64,
    /// Failed runs tolerated before the probe says it could not measure.
    pub allow_failures: usize,
    /// Every measured run must have been answered by this backend.
    pub expect_backend: Option<Backend>,
}

impl Default for Judge {
    fn default() -> Self {
        Self {
            metric: Metric::E2eMs,
            stat: Stat::P95,
            warn_ms: 500.0,
            fail_ms: 800.0,
            allow_failures: 0,
            expect_backend: None,
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The exit code.
    pub exit_code: ExitCode,
    /// The judged value, when there was one.
    pub value_ms: Option<f64>,
    /// Why, in a few words (e.g. `p95 e2e_ms 561 ≥ 500`).
    pub reason: String,
}

impl Judge {
    /// Checks the thresholds.
    pub fn validate(&self) -> Result<(), JudgeError> {
        let ok = self.warn_ms.is_finite()
            && self.fail_ms.is_finite()
            && self.warn_ms > 0.0
            && self.warn_ms <= self.fail_ms;
        if ok {
            Ok(())
        } else {
            Err(JudgeError::Thresholds {
                warn: self.warn_ms,
                fail: self.fail_ms,
            })
        }
    }

    /// The verdict on a summary. In order: no measured run, too many failed runs or no
    /// value for the judged figure → 3; a run answered by another (or an unknown)
    /// backend than expected → 4; else the latency → 0, 1 or 2.
    pub fn verdict(&self, summary: &Summary) -> Verdict {
        let no_measurement = |reason: String| Verdict {
            exit_code: ExitCode::NoMeasurement,
            value_ms: None,
            reason,
        };
        if summary.ok == 0 {
            return no_measurement(format!("no run measured, {} failed", summary.failed));
        }
        if summary.failed > self.allow_failures {
            return no_measurement(format!(
                "{} of {} runs failed, --allow-failures {}",
                summary.failed,
                summary.ok + summary.failed,
                self.allow_failures
            ));
        }
        let spread = match self.metric {
            Metric::E2eMs => summary.e2e_ms,
            Metric::FirstAudioMs => summary.first_audio_ms,
            Metric::FirstTokenMs => summary.first_token_ms,
        };
        let Some(spread) = spread else {
            return no_measurement(format!("no run reported {}", self.metric));
        };
        if let Some(expected) = self.expect_backend {
            let others: Vec<String> = summary
                .backends
                .iter()
                .filter(|(name, _)| name.as_str() != expected.name())
                .map(|(name, n)| format!("{n} by {name}"))
                .collect();
            if !others.is_empty() {
                return Verdict {
                    exit_code: ExitCode::WrongBackend,
                    value_ms: None,
                    reason: format!(
                        "expected backend {}, but runs were answered {}",
                        expected.name(),
                        others.join(", ")
                    ),
                };
            }
        }
        let value = match self.stat {
            Stat::P50 => spread.p50,
            Stat::P95 => spread.p95,
            Stat::Max => spread.max,
        };
        let what = format!("{} {} {:.0}", self.stat, self.metric, value);
        let (exit_code, reason) = if value < self.warn_ms {
            (ExitCode::Good, format!("{what} < {:.0}", self.warn_ms))
        } else if value < self.fail_ms {
            (ExitCode::Warn, format!("{what} ≥ {:.0}", self.warn_ms))
        } else {
            (ExitCode::Fail, format!("{what} ≥ {:.0}", self.fail_ms))
        };
        Verdict {
            exit_code,
            value_ms: Some(value),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::stats::Spread;
    use super::*;
    use std::collections::BTreeMap;

    fn summary(e2e: &[f64], failed: usize, backends: &[(&str, usize)]) -> Summary {
        Summary {
            runs: e2e.len() + failed,
            ok: e2e.len(),
            failed,
            e2e_ms: Spread::of(e2e.iter().copied()),
            first_token_ms: None,
            first_audio_ms: Spread::of(e2e.iter().map(|v| v - 50.0)),
            backends: backends
                .iter()
                .map(|(n, c)| ((*n).to_owned(), *c))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn thresholds_give_0_1_2() {
        let judge = Judge::default();
        let at = |v: f64| judge.verdict(&summary(&[v], 0, &[("local", 1)]));
        assert_eq!(at(499.9).exit_code, ExitCode::Good);
        assert_eq!(at(500.0).exit_code, ExitCode::Warn);
        assert_eq!(at(799.0).exit_code, ExitCode::Warn);
        assert_eq!(at(800.0).exit_code, ExitCode::Fail);
        let v = at(561.0);
        assert_eq!(v.reason, "p95 e2e_ms 561 ≥ 500");
        assert_eq!(v.value_ms, Some(561.0));
        assert_eq!(at(412.0).reason, "p95 e2e_ms 412 < 500");
        assert_eq!(at(900.0).reason, "p95 e2e_ms 900 ≥ 800");
        assert_eq!(
            [
                ExitCode::Good,
                ExitCode::Warn,
                ExitCode::Fail,
                ExitCode::NoMeasurement,
                ExitCode::WrongBackend,
                ExitCode::Usage
            ]
            .map(ExitCode::code),
            [0, 1, 2, 3, 4, 64]
        );
    }

    #[test]
    fn the_statistic_and_metric_are_chosen() {
        // 19 fast runs and one slow: p95 is the 19th, max the slow one.
        let mut runs = vec![100.0; 19];
        runs.push(900.0);
        let s = summary(&runs, 0, &[]);
        let judge = |metric, stat| Judge {
            metric,
            stat,
            ..Judge::default()
        };
        assert_eq!(
            judge(Metric::E2eMs, Stat::P95).verdict(&s).exit_code,
            ExitCode::Good
        );
        assert_eq!(
            judge(Metric::E2eMs, Stat::Max).verdict(&s).exit_code,
            ExitCode::Fail
        );
        assert_eq!(
            judge(Metric::E2eMs, Stat::P50).verdict(&s).value_ms,
            Some(100.0)
        );
        assert_eq!(
            judge(Metric::FirstAudioMs, Stat::Max).verdict(&s).value_ms,
            Some(850.0)
        );
        let missing = judge(Metric::FirstTokenMs, Stat::P95).verdict(&s);
        assert_eq!(missing.exit_code, ExitCode::NoMeasurement);
        assert_eq!(missing.reason, "no run reported first_token_ms");
    }

    #[test]
    fn failures_and_backends() {
        let judge = Judge::default();
        let none = judge.verdict(&summary(&[], 3, &[]));
        assert_eq!(none.exit_code, ExitCode::NoMeasurement);
        assert_eq!(none.reason, "no run measured, 3 failed");
        let some = judge.verdict(&summary(&[100.0, 100.0], 1, &[("local", 2)]));
        assert_eq!(some.exit_code, ExitCode::NoMeasurement);
        assert_eq!(some.reason, "1 of 3 runs failed, --allow-failures 0");
        let tolerant = Judge {
            allow_failures: 1,
            ..Judge::default()
        };
        assert_eq!(
            tolerant
                .verdict(&summary(&[100.0, 100.0], 1, &[("local", 2)]))
                .exit_code,
            ExitCode::Good
        );

        let provider = Judge {
            expect_backend: Some(Backend::Provider),
            ..Judge::default()
        };
        let wrong = provider.verdict(&summary(&[100.0; 3], 0, &[("local", 1), ("provider", 2)]));
        assert_eq!(wrong.exit_code, ExitCode::WrongBackend);
        assert_eq!(
            wrong.reason,
            "expected backend provider, but runs were answered 1 by local"
        );
        let unknown = provider.verdict(&summary(&[100.0], 0, &[("unknown", 1)]));
        assert_eq!(unknown.exit_code, ExitCode::WrongBackend);
        let right = provider.verdict(&summary(&[900.0; 2], 0, &[("provider", 2)]));
        assert_eq!(right.exit_code, ExitCode::Fail);
        // Could-not-measure wins over the backend check.
        let both = provider.verdict(&summary(&[100.0], 2, &[("local", 1)]));
        assert_eq!(both.exit_code, ExitCode::NoMeasurement);
    }

    #[test]
    fn bad_thresholds_are_refused() {
        let bad = |warn_ms, fail_ms| {
            Judge {
                warn_ms,
                fail_ms,
                ..Judge::default()
            }
            .validate()
        };
        assert!(bad(500.0, 800.0).is_ok());
        assert!(bad(500.0, 500.0).is_ok());
        assert!(bad(900.0, 800.0).is_err());
        assert!(bad(0.0, 800.0).is_err());
        assert!(bad(f64::NAN, 800.0).is_err());
    }
}
