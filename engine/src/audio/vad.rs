//! Voice-activity detection: one decision per 20 ms frame, fed to the
//! [`Endpointer`](super::endpointer::Endpointer).
//!
//! [`WebrtcVad`] is WebRTC's GMM detector in pure Rust (`earshot` 0.1): `Send`, no C code,
//! no panics on odd input (see `docs/decisions/0003-vad-crate.md`). A Silero (ONNX) detector
//! joins it behind [`VoiceDetector`] with the local models.

use super::resample::FrameResampler;

/// Why a frame could not be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VadError {
    /// WebRTC's detector takes 8, 16, 32 or 48 kHz.
    #[error("unsupported VAD rate {0} Hz (8000, 16000, 32000 or 48000)")]
    UnsupportedRate(u32),
    /// Frames must be 10, 20 or 30 ms long.
    #[error("VAD frame of {got} samples at {rate} Hz (10, 20 or 30 ms expected)")]
    FrameSize {
        /// Samples given.
        got: usize,
        /// The detector's rate.
        rate: u32,
    },
}

/// A voice-activity detector: one decision per frame, frames in order.
pub trait VoiceDetector: Send {
    /// True if the frame holds speech.
    fn is_voiced(&mut self, frame: &[i16]) -> Result<bool, VadError>;
    /// The sample rate the detector expects.
    fn rate(&self) -> u32;
    /// Forgets the history (between calls, or after a long gap).
    fn reset(&mut self);
    /// A short name for logs and metric labels (`silero`, `neural`, `webrtc`).
    fn name(&self) -> &'static str;
}

/// How eager WebRTC's detector is to call something speech (its four modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggressiveness {
    /// Mode 0: most speech kept, most noise let through.
    Quality,
    /// Mode 1.
    LowBitrate,
    /// Mode 2.
    #[default]
    Aggressive,
    /// Mode 3: least noise let through, soft speech may be missed.
    VeryAggressive,
}

/// WebRTC's detector.
///
/// ```
/// use engine::audio::vad::{Aggressiveness, VoiceDetector, WebrtcVad};
/// let mut vad = WebrtcVad::new(8000, Aggressiveness::Aggressive).unwrap();
/// assert_eq!(vad.is_voiced(&[0i16; 160]), Ok(false));
/// assert!(vad.is_voiced(&[0i16; 100]).is_err());
/// ```
pub struct WebrtcVad {
    inner: earshot::VoiceActivityDetector,
    rate: u32,
}

impl std::fmt::Debug for WebrtcVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebrtcVad")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl WebrtcVad {
    /// A detector for `rate` Hz.
    pub fn new(rate: u32, aggressiveness: Aggressiveness) -> Result<Self, VadError> {
        if ![8000, 16000, 32000, 48000].contains(&rate) {
            return Err(VadError::UnsupportedRate(rate));
        }
        let profile = match aggressiveness {
            Aggressiveness::Quality => earshot::VoiceActivityProfile::QUALITY,
            Aggressiveness::LowBitrate => earshot::VoiceActivityProfile::LBR,
            Aggressiveness::Aggressive => earshot::VoiceActivityProfile::AGGRESSIVE,
            Aggressiveness::VeryAggressive => earshot::VoiceActivityProfile::VERY_AGGRESSIVE,
        };
        Ok(Self {
            inner: earshot::VoiceActivityDetector::new(profile),
            rate,
        })
    }
}

impl VoiceDetector for WebrtcVad {
    fn is_voiced(&mut self, frame: &[i16]) -> Result<bool, VadError> {
        let per_10ms = self.rate as usize / 100;
        let valid = [per_10ms, 2 * per_10ms, 3 * per_10ms];
        if !valid.contains(&frame.len()) {
            return Err(VadError::FrameSize {
                got: frame.len(),
                rate: self.rate,
            });
        }
        let decision = match self.rate {
            8000 => self.inner.predict_8khz(frame),
            16000 => self.inner.predict_16khz(frame),
            32000 => self.inner.predict_32khz(frame),
            _ => self.inner.predict_48khz(frame),
        };
        // The length was checked above, the only error earshot reports.
        decision.map_err(|_| VadError::FrameSize {
            got: frame.len(),
            rate: self.rate,
        })
    }

    fn rate(&self) -> u32 {
        self.rate
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    fn name(&self) -> &'static str {
        "webrtc"
    }
}

/// A small neural detector (`earshot` 1.x: 16 kHz, 16 ms hops), fed 20 ms frames at
/// the call's rate. Each frame is resampled to 16 kHz; its decision is the highest score
/// of the hops it completes (a 20 ms frame always completes at least one 16 ms hop).
pub struct NeuralVad {
    detector: Box<earshot_nn::Detector>,
    resampler: Option<FrameResampler>,
    rate: u32,
    threshold: f32,
    wide: Vec<i16>,
    pending: Vec<i16>,
}

/// The neural detector's threshold, chosen by measurement (docs/decisions/0003): the
/// lowest that neither false-starts on white noise nor misses the end of speech at
/// 10 dB and 5 dB SNR on G.711 telephone speech.
pub const DEFAULT_NEURAL_THRESHOLD: f32 = 0.7;

/// The detector that needs no model files: earshot's neural detector at its measured
/// threshold, for 20 ms frames at `rate`.
pub fn builtin_detector(rate: u32) -> Result<NeuralVad, VadError> {
    NeuralVad::new(rate, DEFAULT_NEURAL_THRESHOLD)
}

/// The detector a call uses (docs/decisions/0003): Silero at its default threshold when
/// its model is loaded (load it once per process and share it), else the built-in one.
pub fn detector_for_call(
    silero: Option<&std::sync::Arc<super::silero::SileroModel>>,
    rate: u32,
) -> Result<Box<dyn VoiceDetector>, VadError> {
    match silero {
        Some(model) => Ok(Box::new(super::silero::SileroVad::new(
            model.clone(),
            rate,
            super::silero::DEFAULT_SILERO_THRESHOLD,
        )?)),
        None => Ok(Box::new(builtin_detector(rate)?)),
    }
}

/// Samples per earshot hop (16 ms at 16 kHz).
const HOP: usize = 256;

impl std::fmt::Debug for NeuralVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralVad")
            .field("rate", &self.rate)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl NeuralVad {
    /// A detector for 20 ms frames at `rate` Hz; a frame is speech when its score
    /// reaches `threshold` (0..1; 0.5 is the model's suggested default).
    pub fn new(rate: u32, threshold: f32) -> Result<Self, VadError> {
        let resampler = match rate {
            16000 => None,
            8000 | 32000 | 48000 => Some(
                FrameResampler::new(rate, 16000, rate as usize / 50)
                    .map_err(|_| VadError::UnsupportedRate(rate))?,
            ),
            _ => return Err(VadError::UnsupportedRate(rate)),
        };
        Ok(Self {
            detector: earshot_nn::Detector::default_boxed(),
            resampler,
            rate,
            threshold,
            wide: Vec::with_capacity(640),
            pending: Vec::with_capacity(2 * HOP + 640),
        })
    }
}

impl VoiceDetector for NeuralVad {
    fn is_voiced(&mut self, frame: &[i16]) -> Result<bool, VadError> {
        let expected = self.rate as usize / 50;
        if frame.len() != expected {
            return Err(VadError::FrameSize {
                got: frame.len(),
                rate: self.rate,
            });
        }
        match &mut self.resampler {
            Some(r) => {
                self.wide.clear();
                r.process(frame, &mut self.wide)
                    .map_err(|_| VadError::FrameSize {
                        got: frame.len(),
                        rate: self.rate,
                    })?;
                self.pending.extend_from_slice(&self.wide);
            }
            None => self.pending.extend_from_slice(frame),
        }
        let mut best = 0.0f32;
        let mut used = 0;
        while self.pending.len() - used >= HOP {
            best = best.max(self.detector.predict_i16(&self.pending[used..used + HOP]));
            used += HOP;
        }
        self.pending.drain(..used);
        Ok(best >= self.threshold)
    }

    fn rate(&self) -> u32 {
        self.rate
    }

    fn reset(&mut self) {
        self.detector.reset();
        self.pending.clear();
    }

    fn name(&self) -> &'static str {
        "neural"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_rates_and_sizes_without_panicking() {
        assert_eq!(
            WebrtcVad::new(22050, Aggressiveness::Quality).err(),
            Some(VadError::UnsupportedRate(22050))
        );
        for rate in [8000, 16000, 32000, 48000] {
            let mut vad = WebrtcVad::new(rate, Aggressiveness::Aggressive).expect("rate");
            for len in [0, 1, 79, 81, 159, 161, 1000, 5000] {
                if len == rate as usize / 100 || len == rate as usize / 50 {
                    continue;
                }
                assert!(vad.is_voiced(&vec![1000; len]).is_err(), "{rate} Hz, {len}");
            }
        }
    }

    #[test]
    fn neural_detector_checks_rate_and_frame_size() {
        assert!(matches!(
            NeuralVad::new(22050, 0.7),
            Err(VadError::UnsupportedRate(22050))
        ));
        for rate in [8000, 16000, 32000, 48000] {
            let mut vad = builtin_detector(rate).expect("rate");
            assert!(vad.is_voiced(&vec![0; rate as usize / 100]).is_err());
            for _ in 0..20 {
                assert_eq!(vad.is_voiced(&vec![0; rate as usize / 50]), Ok(false));
            }
        }
    }

    #[test]
    fn silence_is_not_speech_at_any_rate() {
        for rate in [8000, 16000, 32000, 48000] {
            let mut vad = WebrtcVad::new(rate, Aggressiveness::Quality).expect("rate");
            let frame = vec![0i16; rate as usize / 50];
            for _ in 0..50 {
                assert_eq!(vad.is_voiced(&frame), Ok(false));
            }
        }
    }
}
