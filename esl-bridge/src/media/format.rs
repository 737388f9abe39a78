//! What one unicast datagram holds: encoding, rate, and the 20 ms frame size.

use std::time::Duration;

use super::MediaError;

/// Duration of one unicast frame.
///
/// FreeSWITCH sends one datagram per read of the channel, i.e. per packetisation interval;
/// every recorded capture (PCMU, G722, OPUS) used 20 ms, which is also what the engine
/// produces. Other ptimes are not supported by this leg.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// Frames per second at [`FRAME_DURATION`].
const FRAMES_PER_SECOND: u32 = 50;

/// Payload encoding of the unicast stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Signed 16-bit PCM, little-endian, mono, no header (the default, no `flags`).
    L16,
    /// G.711 µ-law, 8 kHz (`flags: native` on a PCMU channel).
    Pcmu,
    /// G.711 A-law, 8 kHz (`flags: native` on a PCMA channel).
    Pcma,
}

/// The format of the unicast stream in both directions.
///
/// FreeSWITCH picks the rate from the channel's read codec (PCMU/PCMA 8 kHz, G722 16 kHz,
/// OPUS 48 kHz), so the engine must know the negotiated codec (e.g. from `read_codec` /
/// `read_rate` channel variables) before it opens the leg.
///
/// ```
/// use esl_bridge::media::MediaFormat;
///
/// assert_eq!(MediaFormat::L16_8K.frame_bytes(), 320);
/// assert_eq!(MediaFormat::L16_16K.frame_bytes(), 640);
/// assert_eq!(MediaFormat::L16_48K.frame_bytes(), 1920);
/// assert_eq!(MediaFormat::PCMU.frame_bytes(), 160);
/// assert_eq!(MediaFormat::l16(24_000).unwrap().samples_per_frame(), 480);
/// assert!(MediaFormat::l16(11_025).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaFormat {
    encoding: Encoding,
    rate: u32,
}

impl MediaFormat {
    /// L16 at 8 kHz: PCMU/PCMA channels without `flags: native` (320 B per frame).
    pub const L16_8K: Self = Self {
        encoding: Encoding::L16,
        rate: 8_000,
    };
    /// L16 at 16 kHz: G722 channels (640 B per frame).
    pub const L16_16K: Self = Self {
        encoding: Encoding::L16,
        rate: 16_000,
    };
    /// L16 at 48 kHz: OPUS channels (1920 B per frame).
    pub const L16_48K: Self = Self {
        encoding: Encoding::L16,
        rate: 48_000,
    };
    /// Native µ-law (160 B per frame).
    pub const PCMU: Self = Self {
        encoding: Encoding::Pcmu,
        rate: 8_000,
    };
    /// Native A-law (160 B per frame).
    pub const PCMA: Self = Self {
        encoding: Encoding::Pcma,
        rate: 8_000,
    };

    /// L16 at `rate` Hz.
    ///
    /// # Errors
    /// [`MediaError::UnsupportedRate`] unless `rate` is within 8000..=48000 and a whole
    /// number of samples fits in 20 ms.
    pub fn l16(rate: u32) -> Result<Self, MediaError> {
        if (8_000..=48_000).contains(&rate) && rate.is_multiple_of(FRAMES_PER_SECOND) {
            Ok(Self {
                encoding: Encoding::L16,
                rate,
            })
        } else {
            Err(MediaError::UnsupportedRate(rate))
        }
    }

    /// The payload encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Sample rate in Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Whether the `unicast` sendmsg needs `flags: native`.
    pub fn is_native(&self) -> bool {
        self.encoding != Encoding::L16
    }

    /// Samples in one 20 ms frame.
    pub fn samples_per_frame(&self) -> usize {
        (self.rate / FRAMES_PER_SECOND) as usize
    }

    /// Bytes in one 20 ms datagram, both directions.
    pub fn frame_bytes(&self) -> usize {
        match self.encoding {
            Encoding::L16 => self.samples_per_frame() * 2,
            Encoding::Pcmu | Encoding::Pcma => self.samples_per_frame(),
        }
    }

    /// Size of the decoded (L16) frame. FreeSWITCH's "no media yet" frames have this size
    /// even in native mode (320 B of `0xFF` on a native PCMU channel).
    pub fn decoded_frame_bytes(&self) -> usize {
        self.samples_per_frame() * 2
    }

    /// The byte that encodes silence, used to replace native-mode CNG frames.
    pub(crate) fn silence_byte(&self) -> u8 {
        match self.encoding {
            Encoding::L16 => 0x00,
            // µ-law 0xFF decodes to 0; A-law's zero is 0xD5 (0x80 ^ 0x55).
            Encoding::Pcmu => 0xFF,
            Encoding::Pcma => 0xD5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_fixtures() {
        assert_eq!(MediaFormat::L16_8K.frame_bytes(), 320);
        assert_eq!(MediaFormat::L16_16K.frame_bytes(), 640);
        assert_eq!(MediaFormat::L16_48K.frame_bytes(), 1920);
        assert_eq!(MediaFormat::PCMU.frame_bytes(), 160);
        assert_eq!(MediaFormat::PCMU.decoded_frame_bytes(), 320);
        assert!(MediaFormat::PCMU.is_native());
        assert!(!MediaFormat::L16_48K.is_native());
    }

    #[test]
    fn rejects_odd_rates() {
        for rate in [0, 7_999, 11_025, 22_010, 48_001, 96_000] {
            assert!(MediaFormat::l16(rate).is_err(), "{rate}");
        }
        assert_eq!(MediaFormat::l16(16_000).ok(), Some(MediaFormat::L16_16K));
    }
}
