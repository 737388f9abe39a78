//! A crude energy detector standing in for the provider's server VAD.
//!
//! It only has to turn the engine's caller audio into `speech_started` /
//! `speech_stopped` at plausible moments; it is not a speech detector. Time is the
//! audio's own (ms of input received), never the wall clock, so it is deterministic.

use engine::audio::g711;
use engine::backend::provider::protocol::WireAudio;

/// RMS above which a frame counts as speech: about -34 dBFS, above line noise, well
/// below any voice or test tone.
const SPEECH_RMS: f64 = 650.0;
/// Analysis frame.
const FRAME_MS: u64 = 10;
/// Audio before the onset that the API counts into the turn (its `prefix_padding_ms`).
const PREFIX_PADDING_MS: u64 = 300;
/// The API's default silence that ends a turn.
pub const DEFAULT_SILENCE_MS: u64 = 500;

/// A change of the caller's state, at an offset into the session's input audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began (`audio_start_ms`, prefix padding included).
    Started(u64),
    /// Speech ended (`audio_end_ms`).
    Stopped(u64),
}

/// The detector's state for one session.
#[derive(Debug, Clone)]
pub struct EnergyVad {
    silence_ms: u64,
    speaking: bool,
    /// ms of input audio analysed so far.
    pos_ms: u64,
    /// Silence since the last voiced frame, while speaking.
    quiet_ms: u64,
    /// Samples waiting to fill a frame.
    pending: Vec<i16>,
    /// An odd trailing byte of PCM16 waiting for its partner.
    odd_byte: Option<u8>,
}

impl EnergyVad {
    /// A detector that ends a turn after `silence_ms` of quiet.
    pub fn new(silence_ms: u64) -> Self {
        Self {
            silence_ms: silence_ms.max(FRAME_MS),
            speaking: false,
            pos_ms: 0,
            quiet_ms: 0,
            pending: Vec::new(),
            odd_byte: None,
        }
    }

    /// Whether the caller is speaking now.
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Forgets a turn in progress (`input_audio_buffer.clear`, a commit); the audio
    /// clock runs on.
    pub fn reset_turn(&mut self) {
        self.speaking = false;
        self.quiet_ms = 0;
    }

    /// Feeds appended wire audio; returns what changed.
    pub fn push(&mut self, wire: WireAudio, bytes: &[u8]) -> Vec<VadEvent> {
        match wire {
            WireAudio::Pcmu => g711::ulaw_decode_into(bytes, &mut self.pending),
            WireAudio::Pcm24k => {
                let mut rest = bytes;
                if let (Some(low), Some((&high, tail))) = (self.odd_byte, rest.split_first()) {
                    self.pending.push(i16::from_le_bytes([low, high]));
                    self.odd_byte = None;
                    rest = tail;
                }
                let mut pairs = rest.chunks_exact(2);
                self.pending
                    .extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
                if let Some(&b) = pairs.remainder().first() {
                    self.odd_byte = Some(b);
                }
            }
        }
        let frame = usize::try_from(u64::from(wire.rate()) * FRAME_MS / 1000).unwrap_or(80);
        let mut events = Vec::new();
        let mut start = 0;
        while self.pending.len() - start >= frame {
            let voiced = rms(&self.pending[start..start + frame]) > SPEECH_RMS;
            start += frame;
            self.pos_ms += FRAME_MS;
            if voiced {
                self.quiet_ms = 0;
                if !self.speaking {
                    self.speaking = true;
                    let onset = self.pos_ms - FRAME_MS;
                    events.push(VadEvent::Started(onset.saturating_sub(PREFIX_PADDING_MS)));
                }
            } else if self.speaking {
                self.quiet_ms += FRAME_MS;
                if self.quiet_ms >= self.silence_ms {
                    self.speaking = false;
                    self.quiet_ms = 0;
                    events.push(VadEvent::Stopped(self.pos_ms));
                }
            }
        }
        self.pending.drain(..start);
        events
    }
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(ms: u64, loud: bool) -> Vec<u8> {
        let n = 24 * ms;
        (0..n)
            .flat_map(|i| {
                let v: i16 = if loud && i % 24 < 12 { 8000 } else { 0 };
                v.to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn speech_then_silence_gives_start_and_stop() {
        let mut vad = EnergyVad::new(500);
        assert!(vad.push(WireAudio::Pcm24k, &pcm(1000, false)).is_empty());
        let ev = vad.push(WireAudio::Pcm24k, &pcm(800, true));
        assert_eq!(ev, vec![VadEvent::Started(700)]);
        assert!(vad.speaking());
        assert!(vad.push(WireAudio::Pcm24k, &pcm(400, false)).is_empty());
        let ev = vad.push(WireAudio::Pcm24k, &pcm(200, false));
        assert_eq!(ev, vec![VadEvent::Stopped(2300)]);
    }

    #[test]
    fn odd_splits_and_mulaw_are_handled() {
        let mut vad = EnergyVad::new(100);
        let loud = pcm(100, true);
        let (a, b) = loud.split_at(1001);
        assert!(vad.push(WireAudio::Pcm24k, a).len() == 1);
        assert!(vad.push(WireAudio::Pcm24k, b).is_empty());
        let mut silence = Vec::new();
        g711::ulaw_encode_into(&[0; 800], &mut silence);
        let mut vad = EnergyVad::new(100);
        assert!(vad.push(WireAudio::Pcmu, &silence).is_empty());
        let mut tone = Vec::new();
        g711::ulaw_encode_into(&[9000, -9000].repeat(400), &mut tone);
        assert_eq!(vad.push(WireAudio::Pcmu, &tone), vec![VadEvent::Started(0)]);
    }
}
