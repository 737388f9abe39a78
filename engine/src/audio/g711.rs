//! G.711 µ-law and A-law (ITU-T G.711), the codecs of PCMU/PCMA calls: FreeSWITCH's
//! `unicast` with `flags: native` and the provider's `audio/pcmu` carry these bytes.

/// Encodes one linear sample as µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    let pcm = pcm.min(CLIP) + BIAS;
    let exponent = 7 - (pcm as u32).leading_zeros().saturating_sub(17).min(7) as i32;
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Decodes one µ-law byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    let byte = !byte;
    let sign = byte & 0x80;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// Encodes one linear sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3; // A-law works on 13-bit magnitudes
    let sign = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let pcm = pcm.min(0x0FFF);
    let encoded = if pcm < 32 {
        (pcm >> 1) as u8
    } else {
        let exponent = 31 - (pcm as u32).leading_zeros() - 4; // 1..=7
        let mantissa = (pcm >> exponent) & 0x0F;
        ((exponent as u8) << 4) | mantissa as u8
    };
    encoded ^ sign
}

/// Decodes one A-law byte.
pub fn alaw_decode(byte: u8) -> i16 {
    let byte = byte ^ 0x55;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if byte & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }) as i16
}

/// Decodes a µ-law buffer into `out` (cleared first; no allocation once it has capacity).
pub fn ulaw_decode_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(bytes.iter().map(|&b| ulaw_decode(b)));
}

/// Encodes samples as µ-law into `out` (cleared first).
pub fn ulaw_encode_into(samples: &[i16], out: &mut Vec<u8>) {
    out.clear();
    out.extend(samples.iter().map(|&s| ulaw_encode(s)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_points() {
        // Silence codes: what FreeSWITCH's CNG frames and codec silence look like.
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        // Full scale.
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn every_code_round_trips_through_linear() {
        for code in 0..=255u8 {
            let u = ulaw_decode(code);
            // 0x7F and 0xFF both mean zero; everything else is unique.
            let back = ulaw_encode(u);
            assert!(
                back == code || (u == 0 && back == 0xFF),
                "µ-law {code:#04x} → {u} → {back:#04x}"
            );
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded_by_the_segment() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ulaw_decode(ulaw_encode(s)));
            let a = i32::from(alaw_decode(alaw_encode(s)));
            let x = i32::from(s);
            // Each segment doubles the step; the error stays under ~1/16 of the magnitude.
            let bound = (x.abs() / 16).max(8) + 132;
            assert!((u - x).abs() <= bound, "µ-law {x} → {u}");
            assert!((a - x).abs() <= bound, "A-law {x} → {a}");
        }
    }

    #[test]
    fn buffer_helpers_reuse_capacity() {
        let mut pcm = Vec::with_capacity(160);
        let mut law = Vec::with_capacity(160);
        ulaw_encode_into(&[1000i16; 160], &mut law);
        ulaw_decode_into(&law, &mut pcm);
        assert_eq!(pcm.len(), 160);
        assert!(pcm.iter().all(|&s| (s - 1000).abs() < 64));
        assert_eq!(pcm.capacity(), 160);
    }
}
