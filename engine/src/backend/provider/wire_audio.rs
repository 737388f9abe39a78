//! Call audio ↔ the provider's wire audio.
//!
//! A PCMU call at 8 kHz talks µ-law to the provider both ways: µ-law of µ-law-decoded
//! samples is the original byte, so telephony audio crosses unchanged. Any other call
//! goes as 16-bit PCM at 24 kHz, resampled in 20 ms frames (rubato, streaming: one filter
//! state per direction, no clicks at chunk edges).

use crate::audio::g711::{ulaw_decode, ulaw_encode};
use crate::audio::resample::{FrameResampler, ResampleError};

use super::protocol::WireAudio;

/// Picks the wire format for a call.
pub fn wire_format_for(rate: u32, telephony_ulaw: bool) -> WireAudio {
    if telephony_ulaw && rate == 8000 {
        WireAudio::Pcmu
    } else {
        WireAudio::Pcm24k
    }
}

/// A resampler that takes any number of samples, in 20 ms frames inside.
struct Stream {
    inner: FrameResampler,
    pending: Vec<i16>,
    frame: usize,
}

impl Stream {
    fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        let frame = (from / 50) as usize;
        Ok(Self {
            inner: FrameResampler::new(from, to, frame)?,
            pending: Vec::with_capacity(frame * 2),
            frame,
        })
    }

    fn process(&mut self, pcm: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        self.pending.extend_from_slice(pcm);
        let whole = self.pending.len() / self.frame * self.frame;
        for frame in self.pending[..whole].chunks_exact(self.frame) {
            self.inner.process(frame, out)?;
        }
        self.pending.drain(..whole);
        Ok(())
    }
}

/// Caller audio → wire bytes.
pub struct Uplink {
    format: WireAudio,
    resampler: Option<Stream>,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Uplink {
    /// For a call at `rate` sending `format`.
    pub fn new(rate: u32, format: WireAudio) -> Result<Self, ResampleError> {
        let resampler = match format {
            WireAudio::Pcmu if rate == 8000 => None,
            _ if rate == format.rate() => None,
            _ => Some(Stream::new(rate, format.rate())?),
        };
        Ok(Self {
            format,
            resampler,
            scratch: Vec::new(),
        })
    }

    /// Appends the wire bytes of `pcm` to `out` (may be fewer while a resampler fills).
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), ResampleError> {
        let samples = match &mut self.resampler {
            Some(stream) => {
                self.scratch.clear();
                stream.process(pcm, &mut self.scratch)?;
                &self.scratch[..]
            }
            None => pcm,
        };
        match self.format {
            WireAudio::Pcmu => out.extend(samples.iter().map(|&s| ulaw_encode(s))),
            WireAudio::Pcm24k => out.extend(samples.iter().flat_map(|s| s.to_le_bytes())),
        }
        Ok(())
    }
}

/// Wire bytes → call audio.
pub struct Downlink {
    format: WireAudio,
    resampler: Option<Stream>,
    odd_byte: Option<u8>,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for Downlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downlink")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Downlink {
    /// For `format` arriving for a call at `rate`.
    pub fn new(format: WireAudio, rate: u32) -> Result<Self, ResampleError> {
        let resampler = (format.rate() != rate)
            .then(|| Stream::new(format.rate(), rate))
            .transpose()?;
        Ok(Self {
            format,
            resampler,
            odd_byte: None,
            scratch: Vec::new(),
        })
    }

    /// Call-rate samples of `bytes` (a PCM16 sample split across deltas is kept).
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Vec<i16>, ResampleError> {
        self.scratch.clear();
        match self.format {
            WireAudio::Pcmu => self.scratch.extend(bytes.iter().map(|&b| ulaw_decode(b))),
            WireAudio::Pcm24k => {
                let mut rest = bytes;
                if let (Some(lo), Some((&hi, tail))) = (self.odd_byte, rest.split_first()) {
                    self.scratch.push(i16::from_le_bytes([lo, hi]));
                    self.odd_byte = None;
                    rest = tail;
                }
                let pairs = rest.chunks_exact(2);
                self.odd_byte = pairs.remainder().first().copied().or(self.odd_byte);
                self.scratch
                    .extend(pairs.map(|p| i16::from_le_bytes([p[0], p[1]])));
            }
        }
        match &mut self.resampler {
            Some(stream) => {
                let mut out = Vec::with_capacity(self.scratch.len());
                stream.process(&self.scratch, &mut out)?;
                Ok(out)
            }
            None => Ok(std::mem::take(&mut self.scratch)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcmu_calls_cross_the_wire_unchanged() {
        assert_eq!(wire_format_for(8000, true), WireAudio::Pcmu);
        assert_eq!(wire_format_for(8000, false), WireAudio::Pcm24k);
        assert_eq!(wire_format_for(16000, true), WireAudio::Pcm24k);
        // Samples as a PCMU call delivers them (already µ-law values). Every byte comes
        // back except µ-law's "negative zero" 0x7F, which decodes to 0 like 0xFF.
        let bytes: Vec<u8> = (0..=255u8).filter(|&b| b != 0x7F).collect();
        let call: Vec<i16> = bytes.iter().map(|&b| ulaw_decode(b)).collect();
        let mut up = Uplink::new(8000, WireAudio::Pcmu).expect("uplink");
        let mut wire = Vec::new();
        up.encode(&call, &mut wire).expect("encode");
        assert_eq!(wire, bytes);
        let mut down = Downlink::new(WireAudio::Pcmu, 8000).expect("downlink");
        assert_eq!(down.decode(&wire).expect("decode"), call);
    }

    #[test]
    fn pcm16_at_24k_is_resampled_in_both_directions_with_split_samples_kept() {
        // 1 s of a 440 Hz tone at 8 kHz goes up as 3 s worth of bytes at 24 kHz…
        let tone: Vec<i16> = (0..8000)
            .map(|i| ((i as f32 * 440.0 * std::f32::consts::TAU / 8000.0).sin() * 8000.0) as i16)
            .collect();
        let mut up = Uplink::new(8000, WireAudio::Pcm24k).expect("uplink");
        let mut wire = Vec::new();
        for chunk in tone.chunks(160) {
            up.encode(chunk, &mut wire).expect("encode");
        }
        assert_eq!(wire.len(), 24_000 * 2);
        // …and comes back as 1 s at 8 kHz even when deltas split samples.
        let mut down = Downlink::new(WireAudio::Pcm24k, 8000).expect("downlink");
        let mut back = Vec::new();
        for chunk in wire.chunks(777) {
            back.extend(down.decode(chunk).expect("decode"));
        }
        assert_eq!(back.len(), 8000);
        let rms = |s: &[i16]| {
            (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let (a, b) = (rms(&tone[2000..6000]), rms(&back[2000..6000]));
        assert!((a - b).abs() / a < 0.1, "tone level {a} came back as {b}");
    }
}
