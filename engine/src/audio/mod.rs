//! Audio basics: codecs and sans-IO speech detection, independent of sockets and models.

pub mod endpointer;
pub mod g711;
pub mod resample;
pub mod silero;
pub mod vad;
pub mod wav;

/// A float sample in [-1, 1] to 16-bit PCM, rounded and clamped.
pub(crate) fn f32_to_i16(v: f32) -> i16 {
    (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}
