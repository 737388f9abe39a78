//! Piper text to speech: espeak-ng phonemes (the linked Debian `libespeak-ng`) → the
//! voice's phoneme ids → the VITS model in ONNX Runtime (`ort`, loading the library from
//! the model cache) → 16-bit audio at the voice's rate, sentence by sentence so the
//! first sentence can play while the rest is synthesized. Static phrases come from an
//! on-disk [`PhraseCache`].
//!
//! ```no_run
//! use engine::backend::local::tts::{PiperVoice, PhraseCache, DEFAULT_VOICE_ID};
//! # fn main() -> Result<(), engine::backend::local::tts::TtsError> {
//! let voice = PiperVoice::load(&engine::models::models_dir(), DEFAULT_VOICE_ID)?;
//! for sentence in voice.sentence_audio("Hello. How can I help?") {
//!     let audio = sentence?; // play audio.pcm now
//! #   let _ = audio;
//! }
//! let cache = PhraseCache::open(&engine::backend::local::tts::phrase_cache::default_root(), voice.cache_key())?;
//! let (greeting, _source) = cache.get_or_synthesize("Hello, how can I help?", |t| voice.synthesize(t))?;
//! # let _ = greeting;
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;

pub mod espeak_voice;
pub mod phonemize;
pub mod phrase_cache;
pub mod piper;

pub use phonemize::{sentences, PhonemeIdMap, PhonemeIds};
pub use phrase_cache::{PhraseCache, Source};
pub use piper::{
    init_onnxruntime, ort_dylib, PiperOptions, PiperVoice, SentenceAudio, SentenceIter,
    DEFAULT_VOICE_ID, ORT_ID,
};

use crate::audio::wav::WavError;
use crate::models::ModelError;

/// Why speech could not be synthesized.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// A model file (voice or ONNX Runtime) is missing or unusable.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// espeak-ng could not be initialised or does not know the voice.
    #[error("espeak-ng: {0} (install the Debian packages espeak-ng and libespeak-ng-dev: scripts/bootstrap.sh)")]
    Espeak(String),
    /// ONNX Runtime failed on this input.
    #[error("voice {voice}: synthesis failed: {reason}")]
    Inference {
        /// The voice id.
        voice: String,
        /// What ONNX Runtime said.
        reason: String,
    },
    /// The phrase cache directory could not be written.
    #[error("phrase cache {path}: {source}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A cached phrase could not be written as WAV.
    #[error(transparent)]
    Wav(#[from] WavError),
}

/// The static phrases every call may need at once; warm them at startup.
pub const STATIC_PHRASES: &[&str] = &[
    "Hello, thank you for calling. How can I help you?",
    "One moment, please.",
    "I'm sorry, something went wrong on our side. Please bear with me.",
    "I'm sorry, I didn't catch that. Could you say it again?",
    "Let me transfer you to a colleague. Please hold.",
    "Thank you for calling. Goodbye!",
];

/// The voice a call speaks with: a Piper voice, or espeak-ng for a language that has none.
#[derive(Debug)]
pub enum Voice {
    /// A neural Piper voice.
    Piper(Box<PiperVoice>),
    /// espeak-ng's formant voice (the fallback, robotic).
    Espeak(espeak_voice::EspeakVoice),
}

impl Voice {
    /// A name for logs and the phrase cache: changes when the voice does.
    pub fn cache_key(&self) -> String {
        match self {
            Self::Piper(voice) => voice.cache_key().to_owned(),
            Self::Espeak(voice) => format!("espeak-ng-{}", voice.language()),
        }
    }

    /// Speaks one sentence (blocking: run it on a worker thread).
    pub fn synthesize_sentence(&self, sentence: &str) -> Result<crate::audio::wav::Pcm, TtsError> {
        match self {
            Self::Piper(voice) => voice.synthesize_sentence(sentence),
            Self::Espeak(voice) => voice.synthesize(sentence),
        }
    }
}
