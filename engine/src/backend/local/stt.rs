//! Speech to text with whisper.cpp (whisper-rs), fed by the converted ggml models of
//! `scripts/fetch-models.sh`.
//!
//! The model is loaded once and shared; inference runs on a small pool of dedicated
//! threads fed through a bounded queue, never on the async runtime. A full queue is an
//! immediate [`SttError::Busy`], so a call's task never waits behind other calls.
//!
//! Whisper's encoder is built for 30 s windows (1500 frames). A shorter `audio_ctx` cuts
//! the encoder's work, but too short a window costs accuracy: measured on tiny.en with a
//! 2.8 s sentence (engine/tests/stt.rs), 1500 frames took 1.53 s, 512 took 0.45 s with
//! the same words, 200–300 took 0.22–0.36 s but misheard "book a" as "work at". So the
//! window follows the utterance but never drops below 512 frames (~10 s).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use crate::audio::resample::{resample_clip, ResampleError};
use crate::audio::wav::Pcm;
use crate::models::ModelError;

/// Whisper's sample rate.
pub const WHISPER_RATE: u32 = 16_000;
/// Encoder frames per second of audio (whisper's 30 s window is 1500 frames).
const ENCODER_FRAMES_PER_SECOND: f64 = 50.0;
const MAX_AUDIO_CTX: i32 = 1500;
/// The smallest window that kept tiny.en's accuracy in our measurement.
const MIN_AUDIO_CTX: i32 = 512;
/// Extra encoder frames beyond the audio: whisper needs a little context after the
/// last word to emit the end of the sentence.
const AUDIO_CTX_MARGIN: i32 = 64;

/// Why speech could not be transcribed.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    /// The model file is missing or unusable.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Audio could not be brought to 16 kHz.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// whisper.cpp failed on this audio.
    #[error("transcription failed: {0}")]
    Whisper(String),
    /// Every worker is busy and the queue is full.
    #[error("speech recognition is saturated ({queued} requests queued)")]
    Busy {
        /// The queue's capacity.
        queued: usize,
    },
    /// The pool has stopped.
    #[error("speech recognition pool has stopped")]
    Stopped,
}

/// A loaded whisper model, shareable across threads.
pub struct WhisperModel {
    context: WhisperContext,
    /// English-only models (`*.en`) cannot be told another language.
    english_only: bool,
    threads: i32,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel")
            .field("english_only", &self.english_only)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// What was said.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The text, trimmed.
    pub text: String,
    /// Seconds of audio transcribed.
    pub audio_seconds: f64,
    /// Wall time of the inference.
    pub elapsed: Duration,
}

impl WhisperModel {
    /// Loads a ggml model; `id` is its artefact id, used in error messages.
    pub fn load(path: &Path, id: &str, threads: usize) -> Result<Self, SttError> {
        // whisper.cpp logs to stderr unless its hooks route it into `tracing`.
        static LOG_HOOKS: std::sync::Once = std::sync::Once::new();
        LOG_HOOKS.call_once(whisper_rs::install_logging_hooks);
        if !path.is_file() {
            return Err(ModelError::Missing {
                id: id.to_owned(),
                path: path.to_owned(),
            }
            .into());
        }
        let corrupt = |reason: String| ModelError::Corrupt {
            id: id.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let path_str = path
            .to_str()
            .ok_or_else(|| corrupt("path is not UTF-8".into()))?;
        let context =
            WhisperContext::new_with_params(path_str, WhisperContextParameters::default())
                .map_err(|e| corrupt(e.to_string()))?;
        let english_only = !context.is_multilingual();
        Ok(Self {
            context,
            english_only,
            threads: i32::try_from(threads.max(1)).unwrap_or(1),
        })
    }

    /// True for multilingual models.
    pub fn is_multilingual(&self) -> bool {
        !self.english_only
    }

    /// Transcribes `pcm` (any rate) in `language` (`None`: English for English-only
    /// models, detected otherwise). Blocking: call it from a worker thread.
    pub fn transcribe(&self, pcm: &Pcm, language: Option<&str>) -> Result<Transcript, SttError> {
        let started = Instant::now();
        let samples = resample_clip(&pcm.samples, pcm.rate, WHISPER_RATE)?;
        let mut audio: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let audio_seconds = audio.len() as f64 / f64::from(WHISPER_RATE);
        let mut state = self
            .context
            .create_state()
            .map_err(|e| SttError::Whisper(e.to_string()))?;
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        let language = match (self.english_only, language) {
            (true, _) => "en",
            (false, Some(lang)) => lang,
            (false, None) => "auto",
        };
        params.set_language(Some(language));
        params.set_n_threads(self.threads);
        params.set_audio_ctx(audio_ctx_for(audio_seconds));
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_no_timestamps(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        // Whisper pads to 1 s internally; shorter input gives "no audio" errors.
        let min_len = WHISPER_RATE as usize + WHISPER_RATE as usize / 10;
        if audio.len() < min_len {
            audio.resize(min_len, 0.0);
        }
        state
            .full(params, &audio)
            .map_err(|e| SttError::Whisper(e.to_string()))?;
        let text = state
            .as_iter()
            .map(|segment| segment.to_string())
            .collect::<String>()
            .trim()
            .to_owned();
        Ok(Transcript {
            text,
            audio_seconds,
            elapsed: started.elapsed(),
        })
    }
}

/// Encoder frames for `seconds` of audio, with a margin, capped at whisper's window.
pub fn audio_ctx_for(seconds: f64) -> i32 {
    let frames = (seconds * ENCODER_FRAMES_PER_SECOND).ceil() as i32 + AUDIO_CTX_MARGIN;
    frames.clamp(MIN_AUDIO_CTX, MAX_AUDIO_CTX)
}

struct Job {
    pcm: Pcm,
    language: Option<String>,
    reply: oneshot::Sender<Result<Transcript, SttError>>,
}

/// A bounded pool of threads running one shared [`WhisperModel`]. Clones share the
/// pool; when the last clone is dropped the workers finish their job and are joined, so
/// the process never exits (tearing down whisper's globals) under a running inference.
#[derive(Debug, Clone)]
pub struct SttPool {
    inner: Arc<PoolInner>,
    capacity: usize,
}

#[derive(Debug)]
struct PoolInner {
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Closing the queue ends each worker's loop after its current job.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl SttPool {
    /// Starts `workers` threads sharing `model`, with room for `queue` waiting requests.
    pub fn start(model: Arc<WhisperModel>, workers: usize, queue: usize) -> Self {
        let capacity = queue.max(1);
        let (jobs, rx) = mpsc::channel::<Job>(capacity);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut handles = Vec::new();
        for worker in 0..workers.max(1) {
            let (model, rx) = (model.clone(), rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("stt-{worker}"))
                .spawn(move || loop {
                    // One worker waits on the queue at a time; the lock is released
                    // before the (long) inference.
                    let job = {
                        let Ok(mut rx) = rx.lock() else { return };
                        rx.blocking_recv()
                    };
                    let Some(job) = job else { return };
                    let result = model.transcribe(&job.pcm, job.language.as_deref());
                    if let Ok(t) = &result {
                        debug!(
                            seconds = t.audio_seconds,
                            elapsed_ms = t.elapsed.as_millis() as u64,
                            "transcribed"
                        );
                    }
                    let _ = job.reply.send(result);
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => warn!(error = %e, "could not start a speech recognition thread"),
            }
        }
        Self {
            inner: Arc::new(PoolInner {
                jobs: Some(jobs),
                workers: handles,
            }),
            capacity,
        }
    }

    /// Transcribes on the pool; fails at once with [`SttError::Busy`] when saturated.
    pub async fn transcribe(
        &self,
        pcm: Pcm,
        language: Option<String>,
    ) -> Result<Transcript, SttError> {
        let (reply, result) = oneshot::channel();
        let jobs = self.inner.jobs.as_ref().ok_or(SttError::Stopped)?;
        jobs.try_send(Job {
            pcm,
            language,
            reply,
        })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SttError::Busy {
                queued: self.capacity,
            },
            mpsc::error::TrySendError::Closed(_) => SttError::Stopped,
        })?;
        result.await.map_err(|_| SttError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_follows_the_utterance() {
        assert_eq!(audio_ctx_for(0.0), MIN_AUDIO_CTX);
        assert_eq!(audio_ctx_for(2.0), MIN_AUDIO_CTX);
        assert_eq!(audio_ctx_for(12.0), 600 + AUDIO_CTX_MARGIN);
        assert_eq!(audio_ctx_for(29.0), MAX_AUDIO_CTX);
        assert_eq!(audio_ctx_for(600.0), MAX_AUDIO_CTX);
    }

    #[test]
    fn missing_model_is_a_typed_error_with_the_fix() {
        let err = WhisperModel::load(
            Path::new("/nonexistent/ggml-tiny.en.bin"),
            "whisper-tiny-en-ggml",
            2,
        )
        .expect_err("missing");
        assert!(err
            .to_string()
            .contains("scripts/fetch-models.sh --only whisper-tiny-en-ggml"));
    }

    #[test]
    fn corrupt_model_is_a_typed_error_not_a_panic() {
        let path = std::env::temp_dir().join(format!("tom-corrupt-{}.bin", std::process::id()));
        std::fs::write(&path, b"not a ggml model at all").expect("write");
        let err = WhisperModel::load(&path, "whisper-tiny-en-ggml", 1).expect_err("corrupt");
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(err, SttError::Model(ModelError::Corrupt { .. })),
            "{err}"
        );
    }
}
