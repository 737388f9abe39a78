//! `realtime-probe`: call an engine, ask a spoken question in real time, measure
//! `e2e_ms`, `first_token_ms` and `first_audio_ms`, and exit 0/1/2 on the latency
//! (3: could not measure, 4: wrong backend, 64: bad command line).
//! See docs/realtime-probe.md.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use engine::pii::NumberHasher;
use esl_bridge::command::Password;
use probes::probe::auth::{Credentials, Secret, DEFAULT_TTL};
use probes::probe::esl_target::ViaEslTarget;
use probes::probe::fs_target::{validate_extension, FreeSwitchTarget};
use probes::probe::judge::{Backend, ExitCode, Judge, Metric, Stat};
use probes::probe::report::progress_line;
use probes::probe::session::Timing;
use probes::probe::wav::{Clip, Questions};
use probes::probe::ws_target::StreamTarget;
use probes::probe::{ProbeConfig, Target, DEFAULT_CALLER, DEFAULT_PII_SALT};

#[derive(Parser, Debug)]
#[command(
    name = "realtime-probe",
    version,
    about = "Call a TOM engine, ask a spoken question in real time and measure its latency",
    long_about = "Call a TOM engine, ask a spoken question in real time and measure e2e_ms, \
                  first_token_ms and first_audio_ms.\n\nExit codes: 0 judged latency < \
                  --warn-ms; 1 < --fail-ms; 2 ≥ --fail-ms; 3 could not measure; 4 answered \
                  by another backend than --expect-backend; 64 bad command line.",
    group = clap::ArgGroup::new("where").required(true).args(["target", "via_esl", "freeswitch"])
)]
struct Cli {
    /// The engine's stream endpoint, e.g. ws://127.0.0.1:9090/v1/stream (or wss://).
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Bearer token for --target, sent as `Authorization: Bearer T`.
    #[arg(
        long,
        env = "TOM_PROBE_TOKEN",
        value_name = "T",
        hide_env_values = true
    )]
    token: Option<String>,
    /// HS256 secret: mint a fresh token per run (exp now+300 s, jti uuid v4).
    #[arg(
        long,
        env = "TOM_JWT_HS256_SECRET",
        value_name = "S",
        hide_env_values = true
    )]
    jwt_secret: Option<String>,
    /// `aud` claim of minted tokens.
    #[arg(long, env = "TOM_JWT_AUDIENCE", value_name = "AUD")]
    jwt_aud: Option<String>,
    /// `iss` claim of minted tokens.
    #[arg(long, env = "TOM_JWT_ISSUER", value_name = "ISS")]
    jwt_iss: Option<String>,
    /// Play FreeSWITCH against the engine's ESL outbound listener (TOM_ESL_LISTEN).
    #[arg(long, value_name = "ADDR")]
    via_esl: Option<SocketAddr>,
    /// Originate a real call through FreeSWITCH's inbound event socket (host:port).
    #[arg(long, value_name = "HOST:PORT", requires = "extension")]
    freeswitch: Option<String>,
    /// Event socket password for --freeswitch.
    #[arg(
        long,
        env = "TOM_FS_PASSWORD",
        default_value = "ClueCon",
        hide_env_values = true,
        hide_default_value = true
    )]
    password: String,
    /// Dial string --freeswitch calls, e.g. loopback/9999 (an extension that reaches the engine).
    #[arg(long, value_name = "DIALSTRING")]
    extension: Option<String>,
    /// Our address FreeSWITCH sends the caller leg's audio to (default: the route to it).
    #[arg(long, value_name = "IP")]
    media_ip: Option<IpAddr>,
    /// Question to ask (any WAV: PCM or float, any rate, channels mixed down);
    /// default: the bundled "Hello, could I book a table for two people tomorrow evening?".
    #[arg(long, value_name = "FILE")]
    wav: Option<PathBuf>,
    /// Stream rate in Hz: 8000, 16000 or 24000 (--via-esl: 8000 or 16000).
    #[arg(long, default_value_t = 16_000, value_parser = stream_rate)]
    rate: u32,
    /// Number of calls.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    runs: u32,
    /// Calls at once.
    #[arg(long, value_name = "C", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    concurrency: u32,
    /// Write every run and the summary as pretty JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Exit 4 if any run was answered by another backend (--target only).
    #[arg(long, value_enum, value_name = "BACKEND")]
    expect_backend: Option<Backend>,
    /// The figure that is judged.
    #[arg(long, value_enum, default_value = "e2e_ms")]
    judge_metric: Metric,
    /// Its statistic.
    #[arg(long, value_enum, default_value = "p95")]
    judge_stat: Stat,
    /// Below this: exit 0.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    warn_ms: u64,
    /// At or above this: exit 2 (between: 1).
    #[arg(long, default_value_t = 800, value_name = "MS")]
    fail_ms: u64,
    /// Failed runs tolerated before exit 3.
    #[arg(long, default_value_t = 0, value_name = "K")]
    allow_failures: usize,
    /// After the question's last voiced frame, the reply must begin within this.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    answer_timeout_ms: u64,
    /// Bound on the greeting (begin and end); none heard by then: ask anyway.
    #[arg(long, default_value_t = 15_000, value_name = "MS")]
    greeting_timeout_ms: u64,
    /// The greeting is over after this long without reply audio.
    #[arg(long, default_value_t = 600, value_name = "MS")]
    greeting_quiet_ms: u64,
    /// Do not wait for a greeting (for a call profile without one).
    #[arg(long)]
    no_greeting: bool,
    /// Connect (TCP, TLS, upgrade or ESL login) and setup steps.
    #[arg(long, default_value_t = 5_000, value_name = "MS")]
    connect_timeout_ms: u64,
    /// --freeswitch: until the originated call is answered.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    originate_timeout_ms: u64,
    /// RMS (sample units) above which a received frame counts as reply audio.
    #[arg(long, default_value_t = 100.0, value_name = "RMS")]
    reply_rms: f64,
    /// Caller number, sent only in the call setup (never printed; reports show its hash).
    #[arg(long, default_value = DEFAULT_CALLER, hide_default_value = true)]
    caller: String,
    /// Salt of the caller-number hash (the engine's TOM_PII_SALT).
    #[arg(long, env = "TOM_PII_SALT", default_value = DEFAULT_PII_SALT, hide_env_values = true, hide_default_value = true)]
    pii_salt: String,
    /// Dialled number / call profile (`did` of the start message; the double's DID).
    #[arg(long, value_name = "DID")]
    did: Option<String>,
    /// No progress line per run on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn stream_rate(s: &str) -> Result<u32, String> {
    match s.parse() {
        Ok(rate @ (8_000 | 16_000 | 24_000)) => Ok(rate),
        _ => Err("8000, 16000 or 24000".into()),
    }
}

/// A bad command line: printed, exit 64.
struct Usage(String);

fn main() {
    let code = match Cli::command().try_get_matches() {
        Ok(matches) => run(&matches),
        Err(e) => {
            use clap::error::ErrorKind;
            // clap exits 2 on a usage error, which here would read as "latency ≥ fail".
            let _ = e.print();
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => ExitCode::Usage.code(),
            }
        }
    };
    std::process::exit(code);
}

fn run(matches: &ArgMatches) -> i32 {
    let cli = match Cli::from_arg_matches(matches) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::Usage.code();
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let config = match configure(&cli, matches) {
        Ok(config) => config,
        Err(Usage(message)) => {
            eprintln!("realtime-probe: {message}");
            return ExitCode::Usage.code();
        }
    };
    if let Target::Stream(StreamTarget {
        credentials: Credentials::None,
        ..
    }) = &config.target
    {
        eprintln!(
            "realtime-probe: warning: no --token or --jwt-secret; the engine will refuse the stream"
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("realtime-probe: cannot start the async runtime: {e}");
            return ExitCode::NoMeasurement.code();
        }
    };
    let total = config.runs;
    let quiet = cli.quiet;
    let report = runtime.block_on(probes::probe::run(Arc::new(config), |record| {
        if !quiet {
            eprintln!("{}", progress_line(record, total));
        }
    }));
    for run in report.runs.iter().filter(|r| r.error.is_some()) {
        if let Some(e) = &run.error {
            eprintln!(
                "realtime-probe: error: run {} failed: {}",
                run.index, e.message
            );
        }
    }
    let mut code = report.verdict.exit_code.code();
    if report.verdict.exit_code == ExitCode::WrongBackend {
        eprintln!("realtime-probe: error: {}", report.verdict.reason);
    }
    if let Some(path) = &cli.json {
        if let Err(e) = report.write_json(path) {
            eprintln!(
                "realtime-probe: error: cannot write {}: {e}",
                path.display()
            );
            code = ExitCode::NoMeasurement.code();
        }
    }
    println!("{}", report.summary_line());
    code
}

fn from_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

fn credentials(cli: &Cli, matches: &ArgMatches) -> Result<Credentials, Usage> {
    let token = cli.token.as_ref().filter(|t| !t.is_empty());
    let secret = cli.jwt_secret.as_ref().filter(|s| !s.is_empty());
    // Both may come from the environment (an engine's env file has the secret); the
    // command line wins, and two on the command line are a mistake.
    let use_token = match (token, secret) {
        (Some(_), Some(_)) => {
            let (t, s) = (
                from_command_line(matches, "token"),
                from_command_line(matches, "jwt_secret"),
            );
            if t == s {
                return Err(Usage(
                    "give either --token or --jwt-secret (or TOM_PROBE_TOKEN / TOM_JWT_HS256_SECRET), not both"
                        .into(),
                ));
            }
            t
        }
        (Some(_), None) => true,
        _ => false,
    };
    Ok(match (token, secret) {
        (Some(t), _) if use_token => Credentials::Bearer(Secret::new(t.clone())),
        (_, Some(s)) => Credentials::Hs256 {
            secret: Secret::new(s.clone()),
            audience: cli.jwt_aud.clone().filter(|a| !a.is_empty()),
            issuer: cli.jwt_iss.clone().filter(|i| !i.is_empty()),
            ttl: DEFAULT_TTL,
        },
        _ => Credentials::None,
    })
}

fn valid_caller(caller: &str) -> bool {
    !caller.is_empty()
        && caller.len() <= 32
        && caller.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric()
                || matches!(c, '*' | '#' | '.' | '-' | '_')
                || (i == 0 && c == '+')
        })
}

fn configure(cli: &Cli, matches: &ArgMatches) -> Result<ProbeConfig, Usage> {
    let usage = |m: String| Usage(m);
    let connect_timeout = Duration::from_millis(cli.connect_timeout_ms);
    let target = if let Some(url) = &cli.target {
        let target = StreamTarget {
            url: url.clone(),
            credentials: credentials(cli, matches)?,
            did: cli.did.clone(),
            connect_timeout,
        };
        target.validate().map_err(|e| usage(e.to_string()))?;
        Target::Stream(target)
    } else {
        if cli.expect_backend.is_some() {
            return Err(usage(
                "--expect-backend needs --target: over ESL the backend that answered is unknown"
                    .into(),
            ));
        }
        if cli.judge_metric != Metric::E2eMs {
            return Err(usage(format!(
                "--judge-metric {} needs --target: over ESL only e2e_ms is measured",
                cli.judge_metric
            )));
        }
        if let Some(addr) = cli.via_esl {
            if cli.rate == 24_000 {
                return Err(usage(
                    "--via-esl calls are 8000 or 16000 Hz (--rate)".into(),
                ));
            }
            Target::ViaEsl(ViaEslTarget {
                addr,
                did: cli.did.clone().unwrap_or_else(|| "9999".into()),
                connect_timeout,
            })
        } else if let Some(addr) = &cli.freeswitch {
            let extension = cli.extension.clone().unwrap_or_default();
            validate_extension(&extension).map_err(usage)?;
            Target::FreeSwitch(FreeSwitchTarget {
                addr: addr.clone(),
                password: Password::new(cli.password.clone()),
                extension,
                media_ip: cli.media_ip,
                connect_timeout,
                originate_timeout: Duration::from_millis(cli.originate_timeout_ms),
            })
        } else {
            return Err(usage("give --target, --via-esl or --freeswitch".into()));
        }
    };
    if let Some(did) = &cli.did {
        if did.is_empty() || did.contains(char::is_whitespace) {
            return Err(usage("--did must be one word".into()));
        }
    }
    // Checked here so that no later error message can carry the number.
    if !valid_caller(&cli.caller) {
        return Err(usage(
            "--caller must be a phone number or SIP user (digits, letters, * # . - _, a leading +; at most 32)".into(),
        ));
    }
    let judge = Judge {
        metric: cli.judge_metric,
        stat: cli.judge_stat,
        warn_ms: cli.warn_ms as f64,
        fail_ms: cli.fail_ms as f64,
        allow_failures: cli.allow_failures,
        expect_backend: cli.expect_backend,
    };
    judge.validate().map_err(|e| usage(e.to_string()))?;
    if !(cli.reply_rms.is_finite() && cli.reply_rms >= 0.0) {
        return Err(usage("--reply-rms must be a non-negative number".into()));
    }
    if cli.answer_timeout_ms == 0 || cli.greeting_timeout_ms == 0 || cli.connect_timeout_ms == 0 {
        return Err(usage("timeouts must be positive".into()));
    }
    // Checked now, not after minutes of calls.
    if let Some(dir) = cli.json.as_deref().and_then(std::path::Path::parent) {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return Err(usage(format!("--json: no directory {}", dir.display())));
        }
    }
    let (clip, source) = match &cli.wav {
        Some(path) => (Clip::from_file(path), path.display().to_string()),
        None => (Clip::bundled(), "bundled".to_owned()),
    };
    let clip = clip.map_err(|e| usage(e.to_string()))?;
    let questions = Questions::new(clip, cli.rate).map_err(|e| usage(e.to_string()))?;
    Ok(ProbeConfig {
        target,
        questions,
        question_source: source,
        rate: cli.rate,
        runs: cli.runs as usize,
        concurrency: cli.concurrency as usize,
        caller: Some(cli.caller.clone()),
        hasher: NumberHasher::new(cli.pii_salt.clone()),
        timing: Timing {
            greeting_timeout: Duration::from_millis(cli.greeting_timeout_ms),
            greeting_quiet: Duration::from_millis(cli.greeting_quiet_ms),
            no_greeting: cli.no_greeting,
            answer_timeout: Duration::from_millis(cli.answer_timeout_ms),
            mark_grace: Duration::from_secs(1),
        },
        reply_rms: cli.reply_rms,
        judge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn caller_numbers() {
        assert!(valid_caller("+15550100"));
        assert!(valid_caller("alice"));
        assert!(!valid_caller(""));
        assert!(!valid_caller("+1 555"));
        assert!(!valid_caller("1+5"));
        assert!(!valid_caller("a\nb"));
    }
}
