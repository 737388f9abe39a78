//! The question the probe asks: a WAV file (or the bundled one) as mono PCM16 at the
//! stream rate, cut into 20 ms frames, with its last voiced frame found once.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use engine::audio::resample::resample_clip;

/// The bundled question ("Hello, could I book a table for two people tomorrow
/// evening?", espeak-ng, 16 kHz mono; see `probes/data/README.md`).
pub const BUNDLED_QUESTION: &[u8] = include_bytes!("../../data/question.wav");

/// Frames per second of every stream the probe speaks (20 ms frames).
pub const FRAMES_PER_SECOND: u32 = 50;

/// A frame is voiced when its RMS is within this factor of the loudest frame's
/// (-30 dB): the decaying end of the last word still counts, room tone and the
/// synthesiser's trailing silence do not.
const VOICED_RELATIVE: f64 = 0.031_6;

/// ... and above this absolute RMS (about -50 dBFS), so a near-silent file has no voice.
pub const VOICED_FLOOR_RMS: f64 = 100.0;

/// Why a WAV cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a WAV file, or one hound cannot parse.
    #[error("{source_name}: not a readable WAV file: {reason}")]
    Format {
        /// The file (or "the bundled question").
        source_name: String,
        /// hound's reason.
        reason: String,
    },
    /// A WAV whose samples are not linear PCM (µ-law, A-law, ADPCM, 64-bit float, …).
    #[error("{source_name}: {what} is not supported; give linear PCM (8/16/24/32-bit integer or 32-bit float)")]
    NotPcm {
        /// The file.
        source_name: String,
        /// What it holds.
        what: String,
    },
    /// No frame rises above the voice threshold.
    #[error("{source_name}: no voiced audio (every 20 ms frame is below RMS {floor})")]
    Silent {
        /// The file.
        source_name: String,
        /// The absolute floor.
        floor: f64,
    },
    /// The stream rate is not one the probe speaks.
    #[error("unsupported rate {0} Hz (8000, 16000 or 24000)")]
    Rate(u32),
    /// Resampling failed.
    #[error("{source_name}: resampling to {rate} Hz failed: {reason}")]
    Resample {
        /// The file.
        source_name: String,
        /// The target rate.
        rate: u32,
        /// The resampler's reason.
        reason: String,
    },
}

/// Mono PCM16 at its own rate, before framing.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// Where it came from (a path or "bundled question"), for messages.
    pub source_name: String,
    /// Samples per second.
    pub rate: u32,
    /// The samples (channels mixed down).
    pub samples: Vec<i16>,
}

impl Clip {
    /// The bundled question.
    pub fn bundled() -> Result<Self, WavError> {
        Self::from_wav_bytes(BUNDLED_QUESTION, "bundled question")
    }

    /// Reads a WAV file.
    pub fn from_file(path: &Path) -> Result<Self, WavError> {
        let bytes = std::fs::read(path).map_err(|source| WavError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_wav_bytes(&bytes, &path.display().to_string())
    }

    /// Parses WAV bytes: integer PCM of 8 to 32 bits or 32-bit float, any number of
    /// channels (averaged into one), any rate.
    pub fn from_wav_bytes(bytes: &[u8], source_name: &str) -> Result<Self, WavError> {
        let format_error = |reason: String| WavError::Format {
            source_name: source_name.to_owned(),
            reason,
        };
        let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
            // hound reads only PCM and IEEE float; everything else is this error.
            hound::Error::Unsupported => WavError::NotPcm {
                source_name: source_name.to_owned(),
                what: "a non-PCM encoding (e.g. µ-law, A-law or ADPCM)".into(),
            },
            other => format_error(other.to_string()),
        })?;
        let spec = reader.spec();
        let channels = usize::from(spec.channels.max(1));
        let not_pcm = |what: String| WavError::NotPcm {
            source_name: source_name.to_owned(),
            what,
        };
        // Every sample as f64 in [-1, 1), to mix channels and convert widths alike.
        let values: Vec<f64> = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, bits @ 1..=32) => {
                let scale = f64::from(1u32 << (bits - 1));
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|v| f64::from(v) / scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format_error(e.to_string()))?
            }
            (hound::SampleFormat::Float, 32) => reader
                .into_samples::<f32>()
                .map(|s| s.map(f64::from))
                .collect::<Result<_, _>>()
                .map_err(|e| format_error(e.to_string()))?,
            (format, bits) => return Err(not_pcm(format!("{bits}-bit {format:?} samples"))),
        };
        let samples = values
            .chunks(channels)
            .map(|frame| {
                let mean = frame.iter().sum::<f64>() / frame.len() as f64;
                to_i16(mean)
            })
            .collect();
        Ok(Self {
            source_name: source_name.to_owned(),
            rate: spec.sample_rate,
            samples,
        })
    }

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate.max(1))
    }
}

fn to_i16(v: f64) -> i16 {
    (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// The question at every rate a run asks for, each made once from the clip (a
/// `--freeswitch` channel's rate is known only once the call is up).
#[derive(Debug)]
pub struct Questions {
    clip: Clip,
    by_rate: Mutex<BTreeMap<u32, Arc<Question>>>,
}

impl Questions {
    /// Prepares `clip` at `rate` now (so a bad clip is a usage error, before any call).
    pub fn new(clip: Clip, rate: u32) -> Result<Self, WavError> {
        let first = Question::new(&clip, rate)?;
        Ok(Self {
            clip,
            by_rate: Mutex::new(BTreeMap::from([(rate, Arc::new(first))])),
        })
    }

    /// The clip.
    pub fn clip(&self) -> &Clip {
        &self.clip
    }

    /// The question at `rate` (8, 16 or 24 kHz, or another L16 rate FreeSWITCH uses).
    pub fn at(&self, rate: u32) -> Result<Arc<Question>, WavError> {
        let mut by_rate = self.by_rate.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(q) = by_rate.get(&rate) {
            return Ok(q.clone());
        }
        let q = Arc::new(Question::build(&self.clip, rate)?);
        by_rate.insert(rate, q.clone());
        Ok(q)
    }
}

/// Root mean square of a frame, in sample units.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// RMS of little-endian PCM16 bytes (a received binary frame); an odd last byte is
/// ignored.
pub fn rms_le_bytes(bytes: &[u8]) -> f64 {
    let n = bytes.len() / 2;
    if n == 0 {
        return 0.0;
    }
    let sum: f64 = bytes
        .chunks_exact(2)
        .map(|p| f64::from(i16::from_le_bytes([p[0], p[1]])).powi(2))
        .sum();
    (sum / n as f64).sqrt()
}

/// The question at one stream rate, in 20 ms frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// Samples per second.
    pub rate: u32,
    /// 20 ms frames; the last one padded with silence.
    pub frames: Vec<Vec<i16>>,
    /// Index of the last voiced frame: `e2e_ms` starts when it has been sent.
    pub last_voiced: usize,
    /// The RMS above which a frame counted as voiced.
    pub voiced_threshold: f64,
}

impl Question {
    /// Resamples `clip` to `rate` (8, 16 or 24 kHz, the stream rates), frames it and
    /// finds the last voiced frame.
    pub fn new(clip: &Clip, rate: u32) -> Result<Self, WavError> {
        if !matches!(rate, 8_000 | 16_000 | 24_000) {
            return Err(WavError::Rate(rate));
        }
        Self::build(clip, rate)
    }

    /// Like [`new`](Self::new) for any rate in whole samples per 20 ms.
    fn build(clip: &Clip, rate: u32) -> Result<Self, WavError> {
        if rate == 0 || !rate.is_multiple_of(FRAMES_PER_SECOND) {
            return Err(WavError::Rate(rate));
        }
        let samples =
            resample_clip(&clip.samples, clip.rate, rate).map_err(|e| WavError::Resample {
                source_name: clip.source_name.clone(),
                rate,
                reason: e.to_string(),
            })?;
        let per_frame = (rate / FRAMES_PER_SECOND) as usize;
        let frames: Vec<Vec<i16>> = samples
            .chunks(per_frame)
            .map(|chunk| {
                let mut frame = chunk.to_vec();
                frame.resize(per_frame, 0);
                frame
            })
            .collect();
        let (last_voiced, voiced_threshold) =
            last_voiced_frame(&frames).ok_or_else(|| WavError::Silent {
                source_name: clip.source_name.clone(),
                floor: VOICED_FLOOR_RMS,
            })?;
        Ok(Self {
            rate,
            frames,
            last_voiced,
            voiced_threshold,
        })
    }

    /// Milliseconds from the first frame to the end of the last voiced one.
    pub fn voiced_ms(&self) -> u64 {
        (self.last_voiced as u64 + 1) * 20
    }

    /// Samples in one frame.
    pub fn samples_per_frame(&self) -> usize {
        (self.rate / FRAMES_PER_SECOND) as usize
    }
}

/// The index of the last voiced frame and the threshold used: RMS above both
/// [`VOICED_FLOOR_RMS`] and -30 dB below the loudest frame. `None` when nothing is voiced.
pub fn last_voiced_frame(frames: &[Vec<i16>]) -> Option<(usize, f64)> {
    let loudest = frames.iter().map(|f| rms(f)).fold(0.0, f64::max);
    let threshold = (loudest * VOICED_RELATIVE).max(VOICED_FLOOR_RMS);
    frames
        .iter()
        .rposition(|f| rms(f) > threshold)
        .map(|i| (i, threshold))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn wav(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
            write(&mut w);
            w.finalize().unwrap();
        }
        cursor.into_inner()
    }

    fn tone(n: usize, rate: u32, amplitude: f64) -> impl Iterator<Item = f64> {
        (0..n).map(move |i| {
            amplitude * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin()
        })
    }

    fn spec(channels: u16, rate: u32, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    #[test]
    fn the_bundled_question_is_speech_with_a_voiced_end() {
        let clip = Clip::bundled().unwrap();
        assert_eq!(clip.rate, 16_000);
        assert!((3.5..4.0).contains(&clip.seconds()), "{}", clip.seconds());
        for rate in [8_000, 16_000, 24_000] {
            let q = Question::new(&clip, rate).unwrap();
            assert_eq!(q.frames[0].len(), (rate / 50) as usize);
            // The voice ends in the last few hundred ms, not at the first frame.
            assert!(
                q.last_voiced > 100 && q.last_voiced < q.frames.len(),
                "{}",
                q.last_voiced
            );
            assert!(q.frames.len() - q.last_voiced < 25);
            // After it, nothing is voiced.
            assert!(q.frames[q.last_voiced + 1..]
                .iter()
                .all(|f| rms(f) <= q.voiced_threshold));
        }
    }

    #[test]
    fn last_voiced_frame_is_the_last_above_the_threshold() {
        let loud = vec![10_000i16; 160];
        let quiet_tail = vec![200i16; 160]; // -34 dB below the loud frames: not voiced
        let decay = vec![1_000i16; 160]; // -20 dB: still the word's end
        let silence = vec![0i16; 160];
        let frames = vec![
            silence.clone(),
            loud.clone(),
            loud,
            decay,
            quiet_tail,
            silence.clone(),
        ];
        let (i, threshold) = last_voiced_frame(&frames).unwrap();
        assert_eq!(i, 3);
        assert!((threshold - 316.0).abs() < 1.0);
        assert_eq!(last_voiced_frame(&[silence.clone(), silence]), None);
        // Quiet but above the floor: relative to its own loudest frame.
        let soft = vec![vec![150i16; 160], vec![0; 160]];
        assert_eq!(last_voiced_frame(&soft).map(|v| v.0), Some(0));
        assert_eq!(last_voiced_frame(&[vec![90i16; 160]]), None);
        assert_eq!(last_voiced_frame(&[]), None);
    }

    #[test]
    fn stereo_is_mixed_down_and_other_rates_resampled() {
        // Left: tone for 0.5 s; right: its negation for the first half, silence after.
        let rate = 44_100;
        let n = rate as usize / 2;
        let left: Vec<f64> = tone(n, rate, 0.5).collect();
        let bytes = wav(spec(2, rate, 16, hound::SampleFormat::Int), |w| {
            for (i, l) in left.iter().enumerate() {
                let l = to_i16(*l);
                let r = if i < n / 2 { -l } else { 0 };
                w.write_sample(l).unwrap();
                w.write_sample(r).unwrap();
            }
        });
        let clip = Clip::from_wav_bytes(&bytes, "stereo.wav").unwrap();
        assert_eq!((clip.rate, clip.samples.len()), (rate, n));
        // First half cancels out, second half is half the left channel.
        assert!(clip.samples[..n / 2].iter().all(|s| s.abs() <= 1));
        let expected = rms(&left[n / 2..]
            .iter()
            .map(|v| to_i16(v / 2.0))
            .collect::<Vec<_>>());
        assert!((rms(&clip.samples[n / 2..]) - expected).abs() < 2.0);

        let q = Question::new(&clip, 8_000).unwrap();
        assert_eq!(q.frames.len(), 25, "0.5 s at 8 kHz");
        assert!(q.frames.iter().all(|f| f.len() == 160));
        assert_eq!(q.last_voiced, 24);
        assert_eq!(q.voiced_ms(), 500);
    }

    #[test]
    fn widths_and_float_convert_to_the_same_level() {
        let rate = 16_000;
        let reference: Vec<f64> = tone(1600, rate, 0.25).collect();
        let mut levels = Vec::new();
        for (bits, format) in [
            (8, hound::SampleFormat::Int),
            (16, hound::SampleFormat::Int),
            (24, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Float),
        ] {
            let bytes = wav(spec(1, rate, bits, format), |w| {
                for v in &reference {
                    match format {
                        hound::SampleFormat::Float => w.write_sample(*v as f32).unwrap(),
                        hound::SampleFormat::Int => {
                            let scale = f64::from(1u32 << (bits - 1));
                            let s = (v * scale).round() as i32;
                            if bits == 8 {
                                w.write_sample(s as i8).unwrap()
                            } else {
                                w.write_sample(s).unwrap()
                            }
                        }
                    }
                }
            });
            let clip = Clip::from_wav_bytes(&bytes, "x.wav").unwrap();
            levels.push(rms(&clip.samples));
        }
        let want = 0.25 / 2f64.sqrt() * 32768.0;
        for level in levels {
            assert!((level - want).abs() / want < 0.02, "{level} vs {want}");
        }
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let err = Clip::from_wav_bytes(b"RIFF\x04\x00\x00\x00WAVE", "broken.wav").unwrap_err();
        assert!(matches!(err, WavError::Format { .. }), "{err}");
        assert!(err.to_string().contains("broken.wav"));
        let err = Clip::from_wav_bytes(b"not a wav at all", "text.wav").unwrap_err();
        assert!(matches!(err, WavError::Format { .. }), "{err}");

        // A µ-law WAV (format tag 7): hound refuses it, we say why.
        let mut ulaw = wav(spec(1, 8_000, 16, hound::SampleFormat::Int), |w| {
            for _ in 0..80 {
                w.write_sample(0i16).unwrap();
            }
        });
        ulaw[20] = 7; // fmt chunk's format tag
        ulaw[34] = 8; // bits per sample
        let err = Clip::from_wav_bytes(&ulaw, "ulaw.wav").unwrap_err();
        assert!(matches!(err, WavError::NotPcm { .. }), "{err}");
        assert!(err.to_string().contains("ulaw.wav"));

        let missing = Clip::from_file(Path::new("/nonexistent/q.wav")).unwrap_err();
        assert!(matches!(missing, WavError::Read { .. }), "{missing}");

        let silent = Clip {
            source_name: "silence.wav".into(),
            rate: 16_000,
            samples: vec![0; 16_000],
        };
        let err = Question::new(&silent, 16_000).unwrap_err();
        assert!(matches!(err, WavError::Silent { .. }), "{err}");
        let clip = Clip::bundled().unwrap();
        assert!(matches!(
            Question::new(&clip, 44_100),
            Err(WavError::Rate(44_100))
        ));
    }

    #[test]
    fn rms_of_bytes_matches_rms_of_samples() {
        let samples = [1000i16, -1000, 500, -500];
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        assert!((rms_le_bytes(&bytes) - rms(&samples)).abs() < 1e-9);
        assert_eq!(rms_le_bytes(&[]), 0.0);
        assert_eq!(rms(&[]), 0.0);
    }
}
