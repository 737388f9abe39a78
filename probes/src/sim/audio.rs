//! The reply audio: a tone by default, or a WAV file, rendered once into each wire
//! format the session may ask for, so streaming a reply only slices bytes.

use std::path::{Path, PathBuf};

use engine::audio::{g711, resample, wav};
use engine::backend::provider::protocol::WireAudio;

/// Frequency of the default tone: mid telephone band, easy to recognise by ear.
const TONE_HZ: f64 = 440.0;
/// -10 dBFS: clearly audible, far from clipping after µ-law.
const TONE_AMPLITUDE: f64 = 0.316;
/// Fade in and out so the tone does not click at its edges.
const FADE_MS: u64 = 10;

/// Where the reply audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplySource {
    /// A sine tone this many ms long.
    Tone {
        /// Length in ms.
        ms: u64,
    },
    /// A WAV file (any rate, any channel count; mixed to mono and resampled).
    Wav(PathBuf),
}

impl Default for ReplySource {
    fn default() -> Self {
        Self::Tone { ms: 2000 }
    }
}

/// Why the reply audio could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The WAV file could not be read.
    #[error("reply audio: {0}")]
    Wav(#[from] wav::WavError),
    /// Resampling to a wire rate failed.
    #[error("reply audio {path}: cannot resample {from} Hz to {to} Hz: {source}")]
    Resample {
        /// The file.
        path: String,
        /// Its rate.
        from: u32,
        /// The wire rate.
        to: u32,
        /// What the resampler said.
        #[source]
        source: resample::ResampleError,
    },
    /// The source holds no audio (an empty file, a zero-length tone).
    #[error("reply audio {0} is empty")]
    Empty(String),
}

/// The reply, encoded for each wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyAudio {
    pcmu: Vec<u8>,
    pcm24k: Vec<u8>,
}

impl ReplyAudio {
    /// Renders `source` into both wire formats.
    pub fn load(source: &ReplySource) -> Result<Self, AudioError> {
        match source {
            ReplySource::Tone { ms } => {
                if *ms == 0 {
                    return Err(AudioError::Empty("tone".into()));
                }
                Ok(Self::from_samples(
                    &tone(WireAudio::Pcmu.rate(), *ms),
                    &tone(WireAudio::Pcm24k.rate(), *ms),
                ))
            }
            ReplySource::Wav(path) => Self::from_wav(path),
        }
    }

    fn from_wav(path: &Path) -> Result<Self, AudioError> {
        let pcm = wav::read(path, wav::Channels::Mix)?;
        if pcm.samples.is_empty() {
            return Err(AudioError::Empty(path.display().to_string()));
        }
        let at = |to: u32| {
            resample::resample_clip(&pcm.samples, pcm.rate, to).map_err(|source| {
                AudioError::Resample {
                    path: path.display().to_string(),
                    from: pcm.rate,
                    to,
                    source,
                }
            })
        };
        Ok(Self::from_samples(
            &at(WireAudio::Pcmu.rate())?,
            &at(WireAudio::Pcm24k.rate())?,
        ))
    }

    fn from_samples(at_8k: &[i16], at_24k: &[i16]) -> Self {
        let mut pcmu = Vec::with_capacity(at_8k.len());
        g711::ulaw_encode_into(at_8k, &mut pcmu);
        let pcm24k = at_24k.iter().flat_map(|s| s.to_le_bytes()).collect();
        Self { pcmu, pcm24k }
    }

    /// The whole reply in `wire` format.
    pub fn bytes(&self, wire: WireAudio) -> &[u8] {
        match wire {
            WireAudio::Pcmu => &self.pcmu,
            WireAudio::Pcm24k => &self.pcm24k,
        }
    }

    /// Length of the reply in ms.
    pub fn duration_ms(&self, wire: WireAudio) -> u64 {
        wire.ms_of(self.bytes(wire).len() as u64)
    }

    /// The reply cut into deltas of `chunk_ms` (the last one may be shorter).
    pub fn chunks(&self, wire: WireAudio, chunk_ms: u64) -> std::slice::Chunks<'_, u8> {
        // Whole samples only: a PCM16 delta must never split a sample in two.
        let sample_bytes = match wire {
            WireAudio::Pcmu => 1,
            WireAudio::Pcm24k => 2,
        };
        let bytes = (wire.bytes_per_second() * chunk_ms.max(1) / 1000).max(sample_bytes);
        let bytes = usize::try_from(bytes - bytes % sample_bytes).unwrap_or(usize::MAX);
        self.bytes(wire).chunks(bytes)
    }
}

fn tone(rate: u32, ms: u64) -> Vec<i16> {
    let n = rate as u64 * ms / 1000;
    let fade = (rate as u64 * FADE_MS / 1000).max(1);
    (0..n)
        .map(|i| {
            let edge = i.min(n - 1 - i);
            let gain = (edge as f64 / fade as f64).min(1.0);
            let phase = 2.0 * std::f64::consts::PI * TONE_HZ * i as f64 / f64::from(rate);
            (phase.sin() * TONE_AMPLITUDE * gain * f64::from(i16::MAX)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_has_the_asked_length_in_both_formats() {
        let audio = ReplyAudio::load(&ReplySource::Tone { ms: 1000 }).unwrap();
        assert_eq!(audio.bytes(WireAudio::Pcmu).len(), 8000);
        assert_eq!(audio.bytes(WireAudio::Pcm24k).len(), 48_000);
        assert_eq!(audio.duration_ms(WireAudio::Pcmu), 1000);
        let chunks: Vec<_> = audio.chunks(WireAudio::Pcm24k, 100).collect();
        assert_eq!(chunks.len(), 10);
        assert!(chunks.iter().all(|c| c.len() == 4800));
        assert!(ReplyAudio::load(&ReplySource::Tone { ms: 0 }).is_err());
    }

    #[test]
    fn wav_is_resampled_to_each_wire_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reply.wav");
        let pcm = wav::Pcm {
            rate: 16_000,
            samples: tone(16_000, 500),
        };
        wav::write(&path, &pcm).unwrap();
        let audio = ReplyAudio::load(&ReplySource::Wav(path)).unwrap();
        let ms = audio.duration_ms(WireAudio::Pcmu);
        assert!((490..=510).contains(&ms), "{ms}");
        let ms = audio.duration_ms(WireAudio::Pcm24k);
        assert!((490..=510).contains(&ms), "{ms}");
        assert!(ReplyAudio::load(&ReplySource::Wav(dir.path().join("missing.wav"))).is_err());
    }
}
