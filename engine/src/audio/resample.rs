//! Sample-rate conversion (rubato's FFT resampler) between the rates the engine meets:
//! 8 kHz (G.711 calls), 16 kHz (G.722, whisper), 22.05 kHz (Piper voices), 24 kHz
//! (the provider's pcm16), 48 kHz (Opus).

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::f32_to_i16;

/// Why a resampler could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// The rates or frame size are not usable.
    #[error("cannot resample {from} Hz → {to} Hz in frames of {frame} samples: {reason}")]
    Construction {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// Input frame size.
        frame: usize,
        /// rubato's reason.
        reason: String,
    },
    /// A frame of the wrong size was given.
    #[error("frame has {got} samples, this resampler takes {expected}")]
    FrameSize {
        /// Samples given.
        got: usize,
        /// Samples expected.
        expected: usize,
    },
    /// rubato failed while processing.
    #[error("resampling failed: {0}")]
    Process(String),
}

/// A streaming mono resampler for fixed-size input frames (e.g. 20 ms of caller audio).
/// Buffers are allocated once; `process` does not allocate once `out` has capacity.
pub struct FrameResampler {
    inner: Fft<f32>,
    from: u32,
    to: u32,
    frame: usize,
    input: Vec<f32>,
    output: Vec<f32>,
}

impl std::fmt::Debug for FrameResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}

impl FrameResampler {
    /// A resampler from `from` Hz to `to` Hz taking `frame` input samples per call.
    pub fn new(from: u32, to: u32, frame: usize) -> Result<Self, ResampleError> {
        let inner = Fft::<f32>::new(from as usize, to as usize, frame, 1, 1, FixedSync::Input)
            .map_err(|e| ResampleError::Construction {
                from,
                to,
                frame,
                reason: e.to_string(),
            })?;
        let output = vec![0.0; inner.output_frames_max()];
        Ok(Self {
            input: vec![0.0; inner.input_frames_next()],
            inner,
            from,
            to,
            frame,
            output,
        })
    }

    /// Resamples one frame and appends the output samples to `out`. Early calls yield
    /// fewer samples while the filter fills (see [`delay`](Self::delay)).
    pub fn process(&mut self, frame: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        if frame.len() != self.frame {
            return Err(ResampleError::FrameSize {
                got: frame.len(),
                expected: self.frame,
            });
        }
        for (dst, &s) in self.input.iter_mut().zip(frame) {
            *dst = f32::from(s) / 32768.0;
        }
        let frames_out = self.inner.output_frames_next();
        let process = |e: String| ResampleError::Process(e);
        let input = InterleavedSlice::new(&self.input, 1, self.frame)
            .map_err(|e| process(e.to_string()))?;
        let mut output = InterleavedSlice::new_mut(&mut self.output, 1, frames_out)
            .map_err(|e| process(e.to_string()))?;
        let (_, written) = self
            .inner
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| process(e.to_string()))?;
        out.extend(self.output[..written].iter().map(|&v| f32_to_i16(v)));
        Ok(())
    }

    /// The resampler's latency in output samples.
    pub fn delay(&self) -> usize {
        self.inner.output_delay()
    }
}

/// Resamples a whole clip (prompts, test audio, TTS output), trimming the filter delay
/// so the output lines up with the input.
pub fn resample_clip(samples: &[i16], from: u32, to: u32) -> Result<Vec<i16>, ResampleError> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let chunk = (from as usize / 50).max(1);
    let construction = |e: String| ResampleError::Construction {
        from,
        to,
        frame: chunk,
        reason: e,
    };
    let mut inner = Fft::<f32>::new(from as usize, to as usize, chunk, 1, 1, FixedSync::Input)
        .map_err(|e| construction(e.to_string()))?;
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let mut output = vec![0.0; inner.process_all_needed_output_len(input.len())];
    let process = |e: String| ResampleError::Process(e);
    let input_adapter =
        InterleavedSlice::new(&input, 1, input.len()).map_err(|e| process(e.to_string()))?;
    let out_len = output.len();
    let mut output_adapter =
        InterleavedSlice::new_mut(&mut output, 1, out_len).map_err(|e| process(e.to_string()))?;
    let (_, written) = inner
        .process_all_into_buffer(&input_adapter, &mut output_adapter, input.len(), None)
        .map_err(|e| process(e.to_string()))?;
    Ok(output[..written].iter().map(|&v| f32_to_i16(v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
    }

    /// Frequency estimated from zero crossings of the steady middle part.
    fn frequency(s: &[i16], rate: u32) -> f64 {
        let mid = &s[s.len() / 4..3 * s.len() / 4];
        let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f64 / 2.0 / (mid.len() as f64 / f64::from(rate))
    }

    #[test]
    fn clip_keeps_pitch_level_and_length_for_every_engine_rate() {
        let rates = [8000, 16000, 22050, 24000, 48000];
        for &from in &rates {
            for &to in &rates {
                let input = sine(440.0, from, 1.0, 10000.0);
                let out = resample_clip(&input, from, to).expect("resample");
                let expected_len = (input.len() as f64 * f64::from(to) / f64::from(from)).round();
                assert!(
                    (out.len() as f64 - expected_len).abs() <= 2.0,
                    "{from}->{to}: {}",
                    out.len()
                );
                assert!(
                    (frequency(&out, to) - 440.0).abs() < 3.0,
                    "{from}->{to} pitch"
                );
                assert!(
                    (rms(&out) / rms(&input) - 1.0).abs() < 0.03,
                    "{from}->{to} level"
                );
            }
        }
    }

    #[test]
    fn downsampling_removes_what_the_new_rate_cannot_carry() {
        // 6 kHz is above 8 kHz's Nyquist (4 kHz): it must not alias into the band.
        let input = sine(6000.0, 48000, 1.0, 10000.0);
        let out = resample_clip(&input, 48000, 8000).expect("resample");
        assert!(rms(&out) < 0.02 * rms(&input), "alias energy {}", rms(&out));
    }

    #[test]
    fn streaming_frames_match_the_clip_rate() {
        let mut r = FrameResampler::new(8000, 16000, 160).expect("resampler");
        let input = sine(300.0, 8000, 2.0, 8000.0);
        let mut out = Vec::with_capacity(64000);
        for frame in input.chunks_exact(160) {
            r.process(frame, &mut out).expect("frame");
        }
        assert_eq!(out.len(), 2 * input.len());
        let steady = &out[r.delay()..];
        assert!((frequency(steady, 16000) - 300.0).abs() < 3.0);
        assert!(matches!(
            r.process(&[0; 100], &mut out),
            Err(ResampleError::FrameSize {
                got: 100,
                expected: 160
            })
        ));
    }

    #[test]
    fn impossible_settings_are_errors() {
        assert!(FrameResampler::new(0, 16000, 160).is_err());
        assert!(FrameResampler::new(8000, 16000, 0).is_err());
    }
}
