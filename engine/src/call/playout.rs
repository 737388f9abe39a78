//! The reply audio waiting to be played, and what of it the caller has heard.
//!
//! The media leg's sender paces frames at 20 ms; the call task keeps it only a few
//! frames ahead (so a barge-in flush throws away little) and holds the rest here. Sans-IO:
//! the call task moves frames from here to the sender and reports what the sender still
//! had queued when a reply is interrupted.

use std::collections::VecDeque;
use std::time::Duration;

/// Reply audio at the call's rate, cut into 20 ms frames on the way out.
#[derive(Debug)]
pub struct Playout {
    samples: VecDeque<i16>,
    frame: usize,
    rate: u32,
    /// Frames handed to the sender since the current reply began.
    handed: u64,
}

impl Playout {
    /// A buffer for `rate` Hz audio in 20 ms frames.
    pub fn new(rate: u32) -> Self {
        Self {
            samples: VecDeque::new(),
            frame: (rate / 50) as usize,
            rate,
            handed: 0,
        }
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.frame
    }

    /// Queues reply audio.
    pub fn push(&mut self, pcm: &[i16]) {
        self.samples.extend(pcm);
    }

    /// True when nothing is waiting here.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Audio waiting here.
    pub fn pending(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.rate))
    }

    /// Fills `out` with the next frame (the last one padded with silence); `false` when
    /// nothing is waiting.
    pub fn next_frame(&mut self, out: &mut Vec<i16>) -> bool {
        if self.samples.is_empty() {
            return false;
        }
        out.clear();
        let take = self.frame.min(self.samples.len());
        out.extend(self.samples.drain(..take));
        out.resize(self.frame, 0);
        self.handed += 1;
        true
    }

    /// A new reply begins: what the caller has heard is counted from here.
    pub fn start_reply(&mut self) {
        self.handed = 0;
    }

    /// How much of the current reply the caller has heard, given the frames the sender
    /// still had queued (handed over but not yet sent).
    pub fn heard(&self, still_queued: usize) -> Duration {
        let sent = self.handed.saturating_sub(still_queued as u64);
        Duration::from_millis(sent * 20)
    }

    /// Barge-in: drops everything waiting; returns how much was dropped.
    pub fn clear(&mut self) -> Duration {
        let dropped = self.pending();
        self.samples.clear();
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_whole_and_the_tail_is_padded() {
        let mut p = Playout::new(8000);
        p.push(&[7; 400]);
        let mut frame = Vec::new();
        let mut frames = Vec::new();
        while p.next_frame(&mut frame) {
            frames.push(frame.clone());
        }
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.len() == 160));
        assert_eq!(&frames[2][..80], &[7; 80][..]);
        assert_eq!(&frames[2][80..], &[0; 80][..]);
    }

    #[test]
    fn heard_counts_frames_sent_not_frames_queued() {
        let mut p = Playout::new(8000);
        p.push(&[1; 160 * 10]);
        p.start_reply();
        let mut frame = Vec::new();
        for _ in 0..6 {
            assert!(p.next_frame(&mut frame));
        }
        // Six handed over, two still in the sender's queue: 80 ms heard.
        assert_eq!(p.heard(2), Duration::from_millis(80));
        assert_eq!(p.clear(), Duration::from_millis(80));
        assert!(p.is_empty());
        assert_eq!(p.heard(10), Duration::ZERO);
    }
}
