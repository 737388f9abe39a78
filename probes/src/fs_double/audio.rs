//! The caller's audio as the unicast stream carries it: 20 ms frames of L16 little-endian
//! or, with `flags: native` on a PCMU channel, G.711 µ-law.
//!
//! The µ-law codec is here rather than borrowed from the engine on purpose: the double
//! treats the engine as a black box, and a shared codec bug would cancel itself out.

/// Frames per second of the unicast stream (20 ms frames, as in every recorded capture).
pub const FRAMES_PER_SECOND: u32 = 50;

/// How the unicast datagrams are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaFormat {
    /// Signed 16-bit little-endian PCM at the channel rate (no `flags`).
    L16,
    /// G.711 µ-law, 8 kHz (`flags: native` on a PCMU channel).
    PcmuNative,
}

impl MediaFormat {
    /// Whether the engine's `unicast` sendmsg carries `flags: native` for this format.
    pub fn is_native(self) -> bool {
        self == Self::PcmuNative
    }
}

/// Encoding of one stream: format and channel rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameCodec {
    pub format: MediaFormat,
    pub rate: u32,
}

impl FrameCodec {
    pub fn samples_per_frame(self) -> usize {
        (self.rate / FRAMES_PER_SECOND) as usize
    }

    /// Bytes of one datagram in this format.
    pub fn frame_bytes(self) -> usize {
        match self.format {
            MediaFormat::L16 => self.samples_per_frame() * 2,
            MediaFormat::PcmuNative => self.samples_per_frame(),
        }
    }

    /// FreeSWITCH's "no media yet" frame: all `0xFF` at the *decoded* (L16) size, even in
    /// native mode (3 of them open every recorded capture).
    pub fn cng_frame(self) -> Vec<u8> {
        vec![0xFF; self.samples_per_frame() * 2]
    }

    /// Encodes one frame of samples (`samples_per_frame` of them).
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self.format {
            MediaFormat::L16 => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
            MediaFormat::PcmuNative => samples.iter().map(|&s| ulaw_encode(s)).collect(),
        }
    }

    /// Decodes one datagram. FreeSWITCH plays whatever length arrives (`samples = len/2`
    /// in L16), so any length is accepted; an odd trailing byte of L16 is ignored.
    pub fn decode(self, bytes: &[u8]) -> Vec<i16> {
        match self.format {
            MediaFormat::L16 => bytes
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                .collect(),
            MediaFormat::PcmuNative => bytes.iter().map(|&b| ulaw_decode(b)).collect(),
        }
    }

    /// Cuts `pcm` into frames, padding the last one with silence.
    pub fn frames(self, pcm: &[i16]) -> Vec<Vec<i16>> {
        let n = self.samples_per_frame();
        pcm.chunks(n)
            .map(|chunk| {
                let mut frame = chunk.to_vec();
                frame.resize(n, 0);
                frame
            })
            .collect()
    }
}

/// Root mean square of `samples` (0 for none), in sample units.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

/// G.711 µ-law encoding of one sample (the classic segment/mantissa form).
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(ULAW_CLIP) + ULAW_BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && pcm & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    // Bounded to 0..=0xFF by construction: sign 0x80, exponent < 8, mantissa < 16.
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// G.711 µ-law decoding of one byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    // |magnitude| <= 32124, inside i16.
    if u & 0x80 != 0 {
        (-magnitude) as i16
    } else {
        magnitude as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_silence_and_round_trip() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(ulaw_decode(0x80), 32_124);
        for b in 0..=255u8 {
            let s = ulaw_decode(b);
            assert_eq!(ulaw_decode(ulaw_encode(s)), s, "byte {b:#04x}");
        }
        assert_eq!(ulaw_encode(i16::MIN), ulaw_encode(-32_635));
    }

    #[test]
    fn frame_sizes_match_the_captures() {
        let pcmu = FrameCodec {
            format: MediaFormat::L16,
            rate: 8_000,
        };
        let g722 = FrameCodec {
            format: MediaFormat::L16,
            rate: 16_000,
        };
        let native = FrameCodec {
            format: MediaFormat::PcmuNative,
            rate: 8_000,
        };
        assert_eq!(pcmu.frame_bytes(), 320);
        assert_eq!(g722.frame_bytes(), 640);
        assert_eq!(native.frame_bytes(), 160);
        assert_eq!(native.cng_frame().len(), 320);
        assert_eq!(pcmu.frames(&[1; 161]).len(), 2);
        assert_eq!(pcmu.frames(&[1; 161])[1][..2], [1, 0]);
        assert_eq!(pcmu.decode(&pcmu.encode(&[-2, 300])), vec![-2, 300]);
    }

    #[test]
    fn rms_of_constant_signal() {
        assert_eq!(rms(&[]), 0.0);
        assert!((rms(&[-300, 300]) - 300.0).abs() < 1e-9);
    }
}
