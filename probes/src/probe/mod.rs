//! `realtime-probe` as a library: place calls into an engine, ask a spoken question in
//! real time, and measure `e2e_ms`, `first_token_ms` and `first_audio_ms` (DESIGN.md's
//! latency names), then judge them into an exit code.
//!
//! * [`wav`]: the question (bundled or `--wav`), resampled, framed, its last voiced frame;
//! * [`session`]: one conversation over any transport (greeting, question, reply);
//! * [`ws_target`] (`/v1/stream`), [`esl_target`] (`--via-esl`, the FreeSWITCH double),
//!   [`fs_target`] (`--freeswitch`, a real FreeSWITCH over inbound ESL);
//! * [`auth`]: bearer tokens and per-run HS256 JWTs;
//! * [`stats`], [`judge`], [`report`]: percentiles, the verdict, the JSON and the
//!   summary line.
//!
//! [`run`] runs the calls (`concurrency` at once) and returns the [`report::Report`].

pub mod auth;
pub mod esl_target;
pub mod fs_target;
pub mod judge;
pub mod report;
pub mod session;
pub mod stats;
pub mod wav;
pub mod ws_target;

use std::sync::Arc;

use engine::pii::NumberHasher;
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinSet;

use crate::fs_double::FsDouble;
use esl_target::ViaEslTarget;
use fs_target::FreeSwitchTarget;
use judge::Judge;
use report::{QuestionInfo, Report, RunErrorRecord, RunRecord, Summary, TargetInfo};
use session::{Measured, Timing};
use wav::{Questions, WavError};
use ws_target::StreamTarget;

/// The caller number when none is given: a fictional (555-01xx) number.
pub const DEFAULT_CALLER: &str = "+15550100";

/// The engine's default `TOM_PII_SALT`, so a dev engine's logs show the same hash.
pub const DEFAULT_PII_SALT: &str = engine::config::DEV_PII_SALT;

/// Why one run could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Nothing listens there.
    #[error("connection refused by {target}")]
    Refused {
        /// Where.
        target: String,
    },
    /// The connection failed otherwise (DNS, TLS, reset, …).
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// Where.
        target: String,
        /// Why.
        reason: String,
    },
    /// The engine refused the WebSocket upgrade (401: token; 503: draining or no key).
    #[error("the engine refused the stream: HTTP {status} {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The short JSON body.
        body: String,
    },
    /// FreeSWITCH refused the event socket password.
    #[error("FreeSWITCH refused the event socket password: {0}")]
    EslAuth(String),
    /// A setup step did not finish in time.
    #[error("timed out after {ms} ms waiting for {what}")]
    Timeout {
        /// The step.
        what: &'static str,
        /// The limit.
        ms: u64,
    },
    /// No reply audio after the question.
    #[error("no reply audio within {ms} ms of the question's last voiced frame")]
    NoAnswer {
        /// `--answer-timeout-ms`.
        ms: u64,
    },
    /// The greeting went on past `--greeting-timeout-ms`.
    #[error("the greeting did not end within {ms} ms")]
    GreetingTooLong {
        /// `--greeting-timeout-ms`.
        ms: u64,
    },
    /// The engine ended the call before replying.
    #[error("the engine ended the call before replying (outcome {0})")]
    Ended(String),
    /// The engine closed the connection before replying.
    #[error("{0} before replying")]
    Closed(String),
    /// The engine sent an `error` event before replying.
    #[error("the engine reported error {0:?}")]
    Engine(String),
    /// The engine broke the protocol, or the probe could not follow it.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A WebSocket error after the upgrade.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// An ESL error (FreeSWITCH or the engine's listener).
    #[error("ESL: {0}")]
    Esl(String),
    /// The unicast media leg failed.
    #[error("media: {0}")]
    Media(String),
    /// The question cannot be made at the channel's rate.
    #[error(transparent)]
    Question(#[from] WavError),
    /// The token cannot be minted.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// A local socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl RunError {
    /// A stable short name for the JSON report.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "refused",
            Self::Connect { .. } => "connect",
            Self::Rejected { .. } | Self::EslAuth(_) => "rejected",
            Self::Timeout { .. } => "timeout",
            Self::NoAnswer { .. } => "no_answer",
            Self::GreetingTooLong { .. } => "greeting_too_long",
            Self::Ended(_) | Self::Closed(_) => "ended",
            Self::Engine(_) => "engine_error",
            Self::Protocol(_) | Self::WebSocket(_) | Self::Esl(_) => "protocol",
            Self::Media(_) | Self::Io(_) => "media",
            Self::Question(_) => "question",
            Self::Auth(_) => "auth",
        }
    }
}

/// Where the calls go.
#[derive(Debug, Clone)]
pub enum Target {
    /// The engine's `/v1/stream` WebSocket.
    Stream(StreamTarget),
    /// The engine's ESL outbound listener, with the probe as FreeSWITCH.
    ViaEsl(ViaEslTarget),
    /// A real FreeSWITCH, over its inbound event socket.
    FreeSwitch(FreeSwitchTarget),
}

impl Target {
    fn info(&self) -> TargetInfo {
        match self {
            Self::Stream(t) => TargetInfo {
                kind: "stream",
                address: ws_target::without_query(&t.url),
            },
            Self::ViaEsl(t) => TargetInfo {
                kind: "via_esl",
                address: t.addr.to_string(),
            },
            Self::FreeSwitch(t) => TargetInfo {
                kind: "freeswitch",
                address: format!("{} {}", t.addr, t.extension),
            },
        }
    }
}

/// Everything one probe needs.
#[derive(Debug)]
pub struct ProbeConfig {
    /// Where the calls go.
    pub target: Target,
    /// The question, per rate.
    pub questions: Questions,
    /// Where it came from (a path or `bundled`), for the report.
    pub question_source: String,
    /// The stream rate.
    pub rate: u32,
    /// Calls to make.
    pub runs: usize,
    /// Calls at once.
    pub concurrency: usize,
    /// The caller number: sent in the call setup only, never printed or stored.
    pub caller: Option<String>,
    /// Hashes the caller number for the report.
    pub hasher: NumberHasher,
    /// Limits of each call.
    pub timing: Timing,
    /// RMS above which a received frame is reply audio.
    pub reply_rms: f64,
    /// How to judge.
    pub judge: Judge,
}

/// Runs the probe: `runs` calls, `concurrency` at once; `progress` sees each finished
/// run (in the order they finish).
pub async fn run(config: Arc<ProbeConfig>, mut progress: impl FnMut(&RunRecord)) -> Report {
    let started_at = now_rfc3339();
    // Built once: the double's recordings are parsed here, not per call.
    let double = match &config.target {
        Target::ViaEsl(_) => Some(FsDouble::embedded().map(Arc::new)),
        _ => None,
    };
    let mut records = Vec::with_capacity(config.runs);
    let mut tasks = JoinSet::new();
    let mut next = 0usize;
    let concurrency = config.concurrency.max(1);
    loop {
        while next < config.runs && tasks.len() < concurrency {
            next += 1;
            let config = config.clone();
            let double = match &double {
                Some(Ok(d)) => Some(Ok(d.clone())),
                Some(Err(e)) => Some(Err(e.to_string())),
                None => None,
            };
            tasks.spawn(one_run(config, next, double));
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let record = match done {
            Ok(record) => record,
            // A run task never panics by design; if one did, its index is lost with it.
            Err(e) => RunRecord {
                index: 0,
                started_at: now_rfc3339(),
                e2e_ms: None,
                first_token_ms: None,
                first_audio_ms: None,
                backend: None,
                call_id: None,
                greeting_ms: None,
                error: Some(RunErrorRecord {
                    kind: "internal".into(),
                    message: e.to_string(),
                }),
            },
        };
        progress(&record);
        records.push(record);
    }
    records.sort_by_key(|r| r.index);
    let summary = Summary::of(&records);
    let verdict = config.judge.verdict(&summary);
    let question = config.questions.at(config.rate).ok();
    Report {
        tool: "realtime-probe",
        version: env!("CARGO_PKG_VERSION"),
        started_at,
        target: config.target.info(),
        rate: config.rate,
        runs_requested: config.runs,
        concurrency,
        caller_hash: config
            .caller
            .as_deref()
            .map(|c| config.hasher.hash(c))
            .unwrap_or_default(),
        question: QuestionInfo {
            source: config.question_source.clone(),
            seconds: config.questions.clip().seconds(),
            voiced_ms: question.map_or(0, |q| q.voiced_ms()),
        },
        runs: records,
        summary,
        judge: config.judge.clone(),
        verdict,
    }
}

async fn one_run(
    config: Arc<ProbeConfig>,
    index: usize,
    double: Option<Result<Arc<FsDouble>, String>>,
) -> RunRecord {
    let started_at = now_rfc3339();
    let result = measure(&config, double).await;
    let mut record = RunRecord {
        index,
        started_at,
        e2e_ms: None,
        first_token_ms: None,
        first_audio_ms: None,
        backend: None,
        call_id: None,
        greeting_ms: None,
        error: None,
    };
    match result {
        Ok(m) => {
            if m.late_ticks > 0 {
                tracing::warn!(
                    run = index,
                    late = m.late_ticks,
                    "the sender missed 20 ms ticks (machine overloaded?)"
                );
            }
            record.e2e_ms = Some(round1(m.e2e_ms));
            record.first_token_ms = m.first_token_ms.map(round1);
            record.first_audio_ms = m.first_audio_ms.map(round1);
            record.backend = m.backend;
            record.call_id = m.call_id;
            record.greeting_ms = m.greeting_ms.map(round1);
        }
        Err(e) => {
            tracing::debug!(run = index, error = %e, "run failed");
            record.error = Some(RunErrorRecord {
                kind: e.kind().into(),
                message: e.to_string(),
            });
        }
    }
    record
}

async fn measure(
    config: &ProbeConfig,
    double: Option<Result<Arc<FsDouble>, String>>,
) -> Result<Measured, RunError> {
    let caller = config.caller.as_deref();
    match &config.target {
        Target::Stream(target) => {
            let question = config.questions.at(config.rate)?;
            ws_target::run(target, &question, caller, &config.timing, config.reply_rms).await
        }
        Target::ViaEsl(target) => {
            let double = match double {
                Some(Ok(d)) => d,
                Some(Err(e)) => return Err(RunError::Esl(e)),
                None => Arc::new(FsDouble::embedded().map_err(|e| RunError::Esl(e.to_string()))?),
            };
            let question = config.questions.at(config.rate)?;
            let caller = caller.unwrap_or(DEFAULT_CALLER);
            esl_target::run(
                target,
                &double,
                &question,
                caller,
                &config.timing,
                config.reply_rms,
            )
            .await
        }
        Target::FreeSwitch(target) => {
            let caller = caller.unwrap_or(DEFAULT_CALLER);
            fs_target::run(
                target,
                &config.questions,
                config.rate,
                caller,
                &config.timing,
                config.reply_rms,
            )
            .await
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
