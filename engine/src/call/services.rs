//! What every call shares: settings, metrics, the loaded local pipeline, the provider
//! client, static phrases, the cost log. Built once at startup (`tom serve`); calls
//! hold an `Arc` to it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};

use super::slots::{CallSlot, CallSlots};
use crate::audio::resample::resample_clip;
use crate::audio::silero::SileroModel;
use crate::audio::wav::Pcm;
use crate::auth::{Authenticator, MemoryStore, ReplayStore};
use crate::backend::local::brain::{Brain, LlmConfig, OpenAiCompatBrain, ScriptedBrain};
use crate::backend::local::session::{LanguageVoice, LocalPipeline};
use crate::backend::local::stt::{SttPool, WhisperModel};
use crate::backend::local::tts::espeak_voice::EspeakVoice;
use crate::backend::local::tts::phrase_cache::{self, PhraseCache};
use crate::backend::local::tts::{PiperVoice, Voice, STATIC_PHRASES};
use crate::backend::provider::ProviderBackend;
use crate::config::{BrainChoice, Config};
use crate::failover::FailoverPolicy;
use crate::fleet::{Fleet, ProviderProber};
use crate::models::model_file;
use crate::pii::NumberHasher;
use crate::telemetry::call_record::CallRecordLog;
use crate::telemetry::cost_log::CostLog;
use crate::telemetry::Metrics;

/// Static phrases in memory, per language, at the voice's rate.
#[derive(Debug, Default)]
pub struct Phrases {
    audio: HashMap<(String, String), Pcm>,
}

impl Phrases {
    fn key(language: &str, text: &str) -> (String, String) {
        (
            language.to_owned(),
            text.split_whitespace().collect::<Vec<_>>().join(" "),
        )
    }

    /// Adds a phrase spoken in `language`'s voice.
    pub fn insert(&mut self, language: &str, text: &str, pcm: Pcm) {
        self.audio.insert(Self::key(language, text), pcm);
    }

    /// The phrase in `language`'s voice at `rate`, if it was warmed.
    pub fn get(&self, language: &str, text: &str, rate: u32) -> Option<Vec<i16>> {
        let pcm = self.audio.get(&Self::key(language, text))?;
        resample_clip(&pcm.samples, pcm.rate, rate).ok()
    }
}

/// The voice for calls in `language`: the configured Piper voice or `espeak:<lang>`, or
/// espeak-ng's robotic voice when none is configured (said at startup).
fn language_voice(models: &Path, language: &str, spec: Option<&String>) -> anyhow::Result<Voice> {
    Ok(match spec.map(String::as_str) {
        Some(spec) if spec.starts_with("espeak:") => {
            Voice::Espeak(EspeakVoice::new(spec.trim_start_matches("espeak:"))?)
        }
        Some(id) => Voice::Piper(Box::new(PiperVoice::load(models, id)?)),
        None => {
            warn!(
                %language,
                "no Piper voice configured for this language (local.voices): its calls use espeak-ng's robotic voice"
            );
            Voice::Espeak(EspeakVoice::new(language)?)
        }
    })
}

/// The per-process state calls share.
pub struct Services {
    /// Effective settings.
    pub config: Config,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Caller-number hashing.
    pub hasher: NumberHasher,
    /// The local pipeline (models loaded).
    pub local: LocalPipeline,
    /// Silero VAD, when installed (else the built-in detector).
    pub silero: Option<Arc<SileroModel>>,
    /// Static phrases (greeting, goodbye, filler, apology).
    pub phrases: Phrases,
    /// The provider client, when egress is allowed.
    pub provider: Option<ProviderBackend>,
    /// Where cost records go.
    pub cost_log: Arc<CostLog>,
    /// Where call records (transcripts) go, unless switched off.
    pub call_records: Option<Arc<CallRecordLog>>,
    /// Which backend serves, fleet-wide.
    pub fleet: Fleet,
    /// The `/v1/stream` calls, so a shutdown can wait for them like for FreeSWITCH calls.
    pub streams: tokio_util::task::TaskTracker,
    /// Who may open a stream. Loading leaves streams disabled; `tom serve` sets the
    /// configured one (it needs the runtime for Redis).
    pub auth: Authenticator,
    /// FreeSWITCH's unicast ports, one per live FreeSWITCH call.
    pub fs_media_ports: esl_bridge::media::PortPool,
    call_slots: CallSlots,
    draining: tokio::sync::watch::Sender<bool>,
    end_calls: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// Played to calls that arrive while the engine shuts down.
pub const DRAINING: &str =
    "I'm sorry, we cannot take your call right now. Please call again in a few minutes. Goodbye.";

/// The apology played when a reply cannot be produced.
pub const APOLOGY: &str = "I'm sorry, something went wrong on our side. Please bear with me.";

impl Services {
    /// Loads models and warms phrases (blocking: seconds; run it off the runtime).
    /// Missing models fail here with the file and the fix command.
    /// `llm` is the supervised `tom-llm` when the brain is `smollm2`.
    pub fn load(config: Config, models: &Path, llm: Option<LlmConfig>) -> anyhow::Result<Self> {
        let metrics = Metrics::new().context("metrics registry")?;
        let hasher = NumberHasher::new(config.server.pii_salt.expose());
        let local_cfg = &config.local;
        let whisper_file =
            crate::models::whisper_ggml_file(&local_cfg.stt_model).map_err(anyhow::Error::msg)?;
        let whisper_path = model_file(models, &local_cfg.stt_model, &whisper_file)?;
        let whisper = WhisperModel::load(&whisper_path, &local_cfg.stt_model, 2)?;
        let stt = SttPool::start(
            Arc::new(whisper),
            local_cfg.stt_workers,
            local_cfg.stt_queue,
        );
        let voice = Arc::new(Voice::Piper(Box::new(PiperVoice::load(
            models,
            &local_cfg.voice,
        )?)));
        let cache = Arc::new(PhraseCache::open(
            &phrase_cache::default_root(),
            &voice.cache_key(),
        )?);
        let brain: Arc<dyn Brain> = match local_cfg.brain {
            BrainChoice::Scripted => Arc::new(ScriptedBrain::restaurant_demo()),
            BrainChoice::OpenaiCompatible => Arc::new(OpenAiCompatBrain::new(LlmConfig::local(
                local_cfg.llm_url.clone(),
                local_cfg.llm_model.clone(),
            ))),
            BrainChoice::Smollm2 => Arc::new(OpenAiCompatBrain::new(
                llm.context("the smollm2 brain needs tom-llm running")?,
            )),
        };
        let silero = match SileroModel::load(models) {
            Ok(model) => Some(model),
            Err(e) => {
                warn!(error = %e, "Silero VAD not installed: using the built-in detector");
                None
            }
        };
        // English (the default voice) plus every other language a profile speaks.
        let profiles: Vec<&crate::config::CallProfile> = std::iter::once(&config.calls.default)
            .chain(config.calls.did.values())
            .collect();
        let mut languages: Vec<String> = profiles.iter().map(|p| p.language.clone()).collect();
        languages.extend(local_cfg.voices.keys().cloned());
        languages.sort();
        languages.dedup();
        languages.retain(|l| l != "en");
        let mut by_language = HashMap::new();
        for language in &languages {
            let voice = Arc::new(language_voice(
                models,
                language,
                local_cfg.voices.get(language),
            )?);
            let cache = Arc::new(PhraseCache::open(
                &phrase_cache::default_root(),
                &voice.cache_key(),
            )?);
            info!(%language, voice = %voice.cache_key(), "voice for calls in this language");
            by_language.insert(
                language.clone(),
                LanguageVoice {
                    voice,
                    phrases: Some(cache),
                },
            );
        }
        let mut phrases = Phrases::default();
        let mut made = 0;
        for language in std::iter::once("en").chain(languages.iter().map(String::as_str)) {
            let (speaker, store) = match by_language.get(language) {
                Some(LanguageVoice {
                    voice,
                    phrases: Some(cache),
                }) => (voice.clone(), cache.clone()),
                _ => (voice.clone(), cache.clone()),
            };
            let mut texts: Vec<&str> = Vec::new();
            if language == "en" {
                texts.extend(STATIC_PHRASES);
                texts.extend([APOLOGY, DRAINING]);
            }
            for profile in profiles.iter().filter(|p| p.language == language) {
                texts.extend([
                    profile.greeting.as_str(),
                    profile.goodbye.as_str(),
                    profile.filler.as_str(),
                ]);
            }
            made += store.warm(&texts, |t| speaker.synthesize_sentence(t))?;
            for text in &texts {
                if let Some(pcm) = store.get(text) {
                    phrases.insert(language, text, pcm);
                }
            }
        }
        info!(synthesized = made, "static phrases ready");
        let local =
            LocalPipeline::new(stt, brain, voice, Some(cache)).with_language_voices(by_language);
        let provider = if config.allow_egress {
            Some(ProviderBackend::new(config.provider_config()?))
        } else {
            info!("ALLOW_EGRESS=false: local backend only, the provider is never contacted");
            None
        };
        let cost_log = Arc::new(CostLog::open(&config.server.cost_log_dir)?);
        let call_records = if config.server.call_records {
            let dir = config
                .server
                .call_record_dir
                .as_ref()
                .unwrap_or(&config.server.cost_log_dir);
            Some(Arc::new(CallRecordLog::open(dir)?))
        } else {
            info!("call records (transcripts) are switched off");
            None
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let policy = FailoverPolicy::new(config.failover.clone(), seed)?;
        let fleet = Fleet::new(policy, metrics.clone());
        let fs_media_ports = esl_bridge::media::PortPool::new(
            config.server.fs_media_port_min..=config.server.fs_media_port_max,
        )?;
        let call_slots = CallSlots::new(config.server.max_calls);
        Ok(Self {
            config,
            metrics,
            hasher,
            local,
            silero,
            phrases,
            provider,
            cost_log,
            call_records,
            fleet,
            streams: tokio_util::task::TaskTracker::new(),
            auth: Authenticator::new(None, ReplayStore::Memory(MemoryStore::new(1))),
            fs_media_ports,
            call_slots,
            draining: tokio::sync::watch::channel(false).0,
            end_calls: tokio::sync::watch::channel(false).0,
        })
    }

    /// The prober of the half-open state, when the provider may be used: the greeting
    /// as the caller's speech.
    pub fn prober(&self) -> Option<ProviderProber> {
        let provider = self.provider.clone()?;
        let default = &self.config.calls.default;
        let audio = self
            .phrases
            .get(&default.language, &default.greeting, 8000)?;
        let timeout = std::time::Duration::from_millis(self.config.failover.probe_timeout_ms);
        Some(ProviderProber::new(provider, audio, timeout))
    }

    /// Stop taking calls (SIGTERM).
    pub fn start_draining(&self) {
        self.draining.send_replace(true);
    }

    /// Resolves once the engine drains.
    pub async fn draining(&self) {
        let mut draining = self.draining.subscribe();
        let _ = draining.wait_for(|d| *d).await;
    }

    /// Ends every live call now (the drain time is over).
    pub fn end_all_calls(&self) {
        self.end_calls.send_replace(true);
    }

    /// Resolves when [`Services::end_all_calls`] has been called.
    pub fn calls_ended(&self) -> tokio::sync::watch::Receiver<bool> {
        self.end_calls.subscribe()
    }

    /// A place for a new call, or `None` when `max_calls` calls are live.
    pub fn try_admit(&self) -> Option<CallSlot> {
        self.call_slots.try_admit()
    }

    /// `max_calls` calls are live: new ones are turned away.
    pub fn is_full(&self) -> bool {
        self.call_slots.is_full()
    }

    /// Draining: `/ready` fails and new calls get a polite refusal.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }
}
