//! A Piper (VITS) voice run by ONNX Runtime through `ort`, loaded once and shared.
//!
//! ONNX Runtime is the shared library from the onnxruntime PyPI wheel in the model cache
//! (`ort`'s `load-dynamic`), never a download at build time. `ort` 2.0.0-rc.10 panics
//! when that library cannot be loaded, so [`init_onnxruntime`] checks the file first
//! and turns any remaining panic into a [`ModelError`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::phonemize::{self, Espeak, PhonemeIdMap, PhonemeIds};
use super::TtsError;
use crate::audio::wav::Pcm;
use crate::models::ModelError;

/// Artefact id of the ONNX Runtime library in the model cache.
pub const ORT_ID: &str = "onnxruntime";
/// Artefact id of the default English voice.
pub const DEFAULT_VOICE_ID: &str = "piper-en-joe-medium";

/// How a voice runs.
#[derive(Debug, Clone)]
pub struct PiperOptions {
    /// ONNX Runtime intra-op threads for this voice's session.
    pub intra_threads: usize,
    /// Silence appended after every sentence but the last (Piper's default: 0.2 s).
    pub sentence_silence: Duration,
}

impl Default for PiperOptions {
    fn default() -> Self {
        Self {
            intra_threads: 1,
            sentence_silence: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Deserialize)]
struct VoiceFile {
    audio: AudioSection,
    espeak: EspeakSection,
    inference: InferenceSection,
    #[serde(default)]
    phoneme_type: Option<String>,
    #[serde(default = "one")]
    num_speakers: u32,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
struct AudioSection {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakSection {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct InferenceSection {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

/// The library path of artefact [`ORT_ID`] under `root` (`libonnxruntime.so*`).
pub fn ort_dylib(root: &Path) -> Result<PathBuf, ModelError> {
    let dir = root.join(ORT_ID);
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .max()
    });
    found.ok_or_else(|| ModelError::Missing {
        id: ORT_ID.to_owned(),
        path: dir.join("libonnxruntime.so.1.32.0"),
    })
}

/// What happened the first time ONNX Runtime was loaded in this process.
static ORT_STATE: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);

/// Loads ONNX Runtime from `dylib` once per process, as an error rather than a panic
/// when the file is missing or is not a usable ONNX Runtime. After a failed load the
/// process cannot load another library (`ort` keeps the first path): restart it.
pub fn init_onnxruntime(dylib: &Path) -> Result<(), ModelError> {
    let corrupt = |reason: String| ModelError::Corrupt {
        id: ORT_ID.to_owned(),
        path: dylib.to_owned(),
        reason,
    };
    if !dylib.is_file() {
        return Err(ModelError::Missing {
            id: ORT_ID.to_owned(),
            path: dylib.to_owned(),
        });
    }
    let mut magic = [0u8; 4];
    let elf = std::fs::File::open(dylib)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .map(|()| &magic == b"\x7fELF");
    match elf {
        Ok(true) => {}
        Ok(false) => return Err(corrupt("not a shared library (no ELF header)".into())),
        Err(e) => return Err(corrupt(e.to_string())),
    }
    let mut state = ORT_STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &*state {
        Some(Ok(loaded)) => {
            if loaded != dylib {
                tracing::warn!(loaded = %loaded.display(), requested = %dylib.display(), "ONNX Runtime is already loaded from another file; using it");
            }
            return Ok(());
        }
        Some(Err(reason)) => return Err(corrupt(reason.clone())),
        None => {}
    }
    let path = dylib.to_string_lossy().into_owned();
    // `ort` panics inside `commit` if the library does not load or lacks its entry
    // point; catch that here so it is a startup error, not a crash.
    let outcome = std::panic::catch_unwind(move || ort::init_from(path).with_name("tom").commit());
    let result = match outcome {
        Ok(Ok(_)) => Ok(dylib.to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "ONNX Runtime failed to load".to_owned())),
    };
    *state = Some(result.clone());
    result.map(|_| ()).map_err(corrupt)
}

/// A loaded Piper voice: phonemizer, id table and ONNX session. `Send + Sync`; share it
/// with an `Arc`. Inference is blocking: run it on a blocking pool.
pub struct PiperVoice {
    id: String,
    key: String,
    rate: u32,
    scales: [f32; 3],
    multi_speaker: bool,
    espeak: Espeak,
    ids: PhonemeIdMap,
    session: Mutex<Session>,
    options: PiperOptions,
    skipped_phonemes: AtomicU64,
}

impl std::fmt::Debug for PiperVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperVoice")
            .field("id", &self.id)
            .field("rate", &self.rate)
            .field("espeak", &self.espeak.voice())
            .finish_non_exhaustive()
    }
}

/// The audio of one sentence, with timing.
#[derive(Debug, Clone)]
pub struct SentenceAudio {
    /// The sentence as split from the text.
    pub text: String,
    /// Its audio (with the inter-sentence silence unless it is the last).
    pub pcm: Pcm,
    /// Phonemizing plus inference time.
    pub elapsed: Duration,
}

impl PiperVoice {
    /// Loads voice `voice_id` (a directory `<root>/<voice_id>/` with one `*.onnx` and its
    /// `*.onnx.json`) and ONNX Runtime from `<root>/onnxruntime/`.
    pub fn load(root: &Path, voice_id: &str) -> Result<Self, TtsError> {
        Self::load_with(root, voice_id, &PiperOptions::default())
    }

    /// [`PiperVoice::load`] with options.
    pub fn load_with(
        root: &Path,
        voice_id: &str,
        options: &PiperOptions,
    ) -> Result<Self, TtsError> {
        let onnx = find_onnx(root, voice_id)?;
        let json = PathBuf::from(format!("{}.json", onnx.display()));
        if !json.is_file() {
            return Err(ModelError::Missing {
                id: voice_id.to_owned(),
                path: json,
            }
            .into());
        }
        let dylib = ort_dylib(root)?;
        Self::load_files(voice_id, &onnx, &dylib, options)
    }

    /// Loads a voice from explicit files (an operator-installed voice); `id` names it in
    /// errors and cache keys. The config is `<onnx>.json`.
    pub fn load_files(
        id: &str,
        onnx: &Path,
        dylib: &Path,
        options: &PiperOptions,
    ) -> Result<Self, TtsError> {
        let missing = |path: &Path| ModelError::Missing {
            id: id.to_owned(),
            path: path.to_owned(),
        };
        if !onnx.is_file() {
            return Err(missing(onnx).into());
        }
        let json_path = PathBuf::from(format!("{}.json", onnx.display()));
        let json = std::fs::read(&json_path).map_err(|_| missing(&json_path))?;
        let corrupt = |path: &Path, reason: String| ModelError::Corrupt {
            id: id.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let config: VoiceFile =
            serde_json::from_slice(&json).map_err(|e| corrupt(&json_path, e.to_string()))?;
        if let Some(kind) = config.phoneme_type.as_deref() {
            if kind != "espeak" {
                return Err(corrupt(
                    &json_path,
                    format!("phoneme_type {kind:?} is not supported (only espeak)"),
                )
                .into());
            }
        }
        let ids = PhonemeIdMap::new(&config.phoneme_id_map).map_err(|e| corrupt(&json_path, e))?;
        let espeak = Espeak::new(&config.espeak.voice)?;
        init_onnxruntime(dylib)?;
        let session = Session::builder()
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
            .and_then(|b| b.with_intra_threads(options.intra_threads.max(1)))
            .and_then(|b| b.with_inter_threads(1))
            .and_then(|b| b.commit_from_file(onnx))
            .map_err(|e| corrupt(onnx, e.to_string()))?;
        for name in ["input", "input_lengths", "scales"] {
            if !session.inputs.iter().any(|i| i.name == name) {
                return Err(corrupt(
                    onnx,
                    format!("the model has no input {name:?}; is it a Piper voice?"),
                )
                .into());
            }
        }
        let multi_speaker =
            config.num_speakers > 1 && session.inputs.iter().any(|i| i.name == "sid");
        let onnx_len = std::fs::metadata(onnx).map(|m| m.len()).unwrap_or(0);
        let mut hash = Sha256::new();
        hash.update(&json);
        hash.update(onnx_len.to_le_bytes());
        let digest = hash.finalize();
        let key = format!("{}-{}", sanitize(id), hex(&digest[..6]));
        Ok(Self {
            id: id.to_owned(),
            key,
            rate: config.audio.sample_rate,
            scales: [
                config.inference.noise_scale,
                config.inference.length_scale,
                config.inference.noise_w,
            ],
            multi_speaker,
            espeak,
            ids,
            session: Mutex::new(session),
            options: options.clone(),
            skipped_phonemes: AtomicU64::new(0),
        })
    }

    /// The artefact id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A key naming this voice and its config, for the phrase cache: changes when the
    /// voice's files do.
    pub fn cache_key(&self) -> &str {
        &self.key
    }

    /// Output sample rate (22050 Hz for "medium" voices).
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Phonemes the voice did not know, skipped so far.
    pub fn skipped_phonemes(&self) -> u64 {
        self.skipped_phonemes.load(Ordering::Relaxed)
    }

    /// The model input for one sentence.
    pub fn phoneme_ids(&self, sentence: &str) -> Result<PhonemeIds, TtsError> {
        let phonemized = self.espeak.phonemize(sentence)?;
        let ids = self.ids.ids(&phonemized.phonemes);
        if ids.skipped > 0 {
            self.skipped_phonemes
                .fetch_add(ids.skipped as u64, Ordering::Relaxed);
            tracing::debug!(voice = %self.id, skipped = ids.skipped, "phonemes not in the voice's map");
        }
        Ok(ids)
    }

    /// Synthesizes one sentence (no trailing silence). Empty or wordless text gives
    /// empty audio.
    pub fn synthesize_sentence(&self, sentence: &str) -> Result<Pcm, TtsError> {
        let ids = self.phoneme_ids(sentence)?;
        // BOS, PAD, EOS only: nothing to say.
        if ids.ids.len() <= 3 {
            return Ok(self.empty());
        }
        let samples = self.infer(ids.ids)?;
        Ok(Pcm {
            rate: self.rate,
            samples,
        })
    }

    fn infer(&self, ids: Vec<i64>) -> Result<Vec<i16>, TtsError> {
        let fail = |reason: String| TtsError::Inference {
            voice: self.id.clone(),
            reason,
        };
        let len = ids.len();
        let n = i64::try_from(len).map_err(|e| fail(e.to_string()))?;
        let input = Tensor::from_array(([1usize, len], ids)).map_err(|e| fail(e.to_string()))?;
        let lengths = Tensor::from_array(([1usize], vec![n])).map_err(|e| fail(e.to_string()))?;
        let scales = Tensor::from_array(([3usize], self.scales.to_vec()))
            .map_err(|e| fail(e.to_string()))?;
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = if self.multi_speaker {
            let sid =
                Tensor::from_array(([1usize], vec![0i64])).map_err(|e| fail(e.to_string()))?;
            session.run(ort::inputs![
                "input" => input,
                "input_lengths" => lengths,
                "scales" => scales,
                "sid" => sid,
            ])
        } else {
            session.run(ort::inputs![
                "input" => input,
                "input_lengths" => lengths,
                "scales" => scales,
            ])
        }
        .map_err(|e| fail(e.to_string()))?;
        // An operator-installed voice may be malformed: no output is an error, not a panic.
        if outputs.len() == 0 {
            return Err(fail("the voice model produced no output".to_owned()));
        }
        let (_, audio) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(e.to_string()))?;
        Ok(to_i16(audio))
    }

    /// The audio of `text`, sentence by sentence, synthesized lazily: the first item is
    /// ready after the first sentence's inference. Drop the iterator to stop (barge-in).
    pub fn sentence_audio<'a>(&'a self, text: &'a str) -> SentenceIter<'a> {
        SentenceIter {
            voice: self,
            sentences: phonemize::sentences(text).into_iter(),
        }
    }

    /// Calls `on_sentence` with each sentence's audio as soon as it is ready.
    pub fn synthesize_stream(
        &self,
        text: &str,
        mut on_sentence: impl FnMut(SentenceAudio),
    ) -> Result<(), TtsError> {
        for audio in self.sentence_audio(text) {
            on_sentence(audio?);
        }
        Ok(())
    }

    /// The whole text as one clip (sentences joined with the sentence silence).
    pub fn synthesize(&self, text: &str) -> Result<Pcm, TtsError> {
        let mut pcm = self.empty();
        for audio in self.sentence_audio(text) {
            pcm.samples.extend_from_slice(&audio?.pcm.samples);
        }
        Ok(pcm)
    }

    fn empty(&self) -> Pcm {
        Pcm {
            rate: self.rate,
            samples: Vec::new(),
        }
    }
}

/// Sentence-by-sentence synthesis; see [`PiperVoice::sentence_audio`].
#[derive(Debug)]
pub struct SentenceIter<'a> {
    voice: &'a PiperVoice,
    sentences: std::vec::IntoIter<&'a str>,
}

impl Iterator for SentenceIter<'_> {
    type Item = Result<SentenceAudio, TtsError>;

    fn next(&mut self) -> Option<Self::Item> {
        let sentence = self.sentences.next()?;
        let started = Instant::now();
        let result = self.voice.synthesize_sentence(sentence).map(|mut pcm| {
            if self.sentences.len() > 0 && !pcm.samples.is_empty() {
                let silence = (self.voice.options.sentence_silence.as_secs_f64()
                    * f64::from(self.voice.rate)) as usize;
                pcm.samples.resize(pcm.samples.len() + silence, 0);
            }
            SentenceAudio {
                text: sentence.to_owned(),
                pcm,
                elapsed: started.elapsed(),
            }
        });
        Some(result)
    }
}

/// Piper's float audio to 16-bit, peak-normalised per sentence like Piper does
/// (`32767 / max(0.01, peak)`), but to 90 % of full scale to leave headroom for
/// resampling.
fn to_i16(audio: &[f32]) -> Vec<i16> {
    let peak = audio.iter().fold(0.0f32, |m, s| m.max(s.abs())).max(0.01);
    let gain = 0.9 * 32767.0 / peak;
    audio
        .iter()
        .map(|&s| (s * gain).clamp(-32767.0, 32767.0) as i16)
        .collect()
}

fn find_onnx(root: &Path, voice_id: &str) -> Result<PathBuf, ModelError> {
    let dir = root.join(voice_id);
    let missing = || ModelError::Missing {
        id: voice_id.to_owned(),
        path: dir.join(format!("{voice_id}.onnx")),
    };
    let entries = std::fs::read_dir(&dir).map_err(|_| missing())?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "onnx"))
        .min()
        .ok_or_else(missing)
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_is_shareable() {
        fn check<T: Send + Sync>() {}
        check::<PiperVoice>();
    }

    #[test]
    fn float_audio_is_clipped() {
        assert_eq!(to_i16(&[0.0, 0.5, -0.25]), vec![0, 29490, -14745]);
        // Near-silence is not blown up to full scale.
        assert_eq!(to_i16(&[0.001]), vec![2949]);
    }
}
