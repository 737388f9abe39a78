//! The sans-IO playout schedule: when may the next frame go to FreeSWITCH?
//!
//! FreeSWITCH writes every datagram that reaches its unicast port to the channel at once,
//! with no jitter buffer, so the only thing that keeps the caller's audio smooth is our
//! send timing. The schedule is anchored at one instant and frame `n` is due at
//! `anchor + n · period`, computed from `n` (never by adding periods up), so timer
//! rounding cannot accumulate into drift.

use std::time::{Duration, Instant};

/// What the sender should do now, given that a frame is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacerPoll {
    /// Send one frame now. `late` is set when the sender woke a whole period or more after
    /// the frame's due time; the schedule was re-anchored at `now` instead of bursting the
    /// missed frames (a burst would be played instantly, i.e. sped up).
    Send {
        /// The send was a whole frame period (or more) late.
        late: bool,
    },
    /// Nothing may be sent before this instant; wake then and poll again.
    WaitUntil(Instant),
}

/// Real-time playout schedule for one stream of fixed-length frames.
///
/// Pure function of the `now` it is given; the async shell only sleeps until the instant
/// it returns. Rules:
///
/// * frame `n` after the anchor is due at `anchor + n · period`;
/// * waking late by less than a period sends at once and keeps the schedule (the next
///   frame catches up), so lateness does not accumulate;
/// * waking late by a period or more counts as late and re-anchors at `now` (no burst);
/// * when the queue runs dry ([`Pacer::idle`]), the schedule restarts with the next frame,
///   but never less than one period after the previous frame's slot, so two frames never
///   overlap at the caller (FreeSWITCH would play the second one over the first's time).
///
/// ```
/// use std::time::{Duration, Instant};
/// use esl_bridge::media::{Pacer, PacerPoll};
///
/// let t0 = Instant::now();
/// let ms = |n| t0 + Duration::from_millis(n);
/// let mut pacer = Pacer::new(Duration::from_millis(20));
/// assert_eq!(pacer.poll(ms(0)), PacerPoll::Send { late: false });
/// assert_eq!(pacer.poll(ms(1)), PacerPoll::WaitUntil(ms(20)));
/// assert_eq!(pacer.poll(ms(20)), PacerPoll::Send { late: false });
/// // Starved for 65 ms: one late frame, then a fresh schedule from the late send.
/// assert_eq!(pacer.poll(ms(105)), PacerPoll::Send { late: true });
/// assert_eq!(pacer.poll(ms(105)), PacerPoll::WaitUntil(ms(125)));
/// ```
#[derive(Debug, Clone)]
pub struct Pacer {
    period: Duration,
    /// Start of the current schedule; `None` while idle.
    anchor: Option<Instant>,
    /// Frames sent since `anchor`.
    sent: u32,
    /// Slot of the last frame sent, to keep restarts one period apart.
    last_slot: Option<Instant>,
}

impl Pacer {
    /// A schedule with one frame every `period` (normally [`super::FRAME_DURATION`]).
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            anchor: None,
            sent: 0,
            last_slot: None,
        }
    }

    /// The frame period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Decide for the frame at the head of the queue. Call only when a frame is waiting;
    /// on [`PacerPoll::Send`] the caller must send exactly one frame.
    pub fn poll(&mut self, now: Instant) -> PacerPoll {
        let anchor = match self.anchor {
            Some(anchor) => anchor,
            None => {
                // Restart: at once, unless the previous frame's slot is still playing.
                let start = match self.last_slot {
                    Some(last) => (last + self.period).max(now),
                    None => now,
                };
                self.anchor = Some(start);
                self.sent = 0;
                start
            }
        };
        let due = self.due(anchor, self.sent);
        if now < due {
            return PacerPoll::WaitUntil(due);
        }
        if now.duration_since(due) >= self.period {
            // Starved: sending the missed frames back to back would play them instantly,
            // so start a new schedule here instead.
            self.anchor = Some(now);
            self.sent = 1;
            self.last_slot = Some(now);
            return PacerPoll::Send { late: true };
        }
        self.sent = self.sent.saturating_add(1);
        self.last_slot = Some(due);
        if self.sent == u32::MAX {
            // ~2.7 years of continuous audio: re-anchor on the exact slot, no drift.
            self.anchor = Some(due + self.period);
            self.sent = 0;
        }
        PacerPoll::Send { late: false }
    }

    /// The queue ran dry: the next frame starts a new schedule.
    pub fn idle(&mut self) {
        self.anchor = None;
        self.sent = 0;
    }

    /// Forget everything, including the last slot (a new stream).
    pub fn reset(&mut self) {
        self.idle();
        self.last_slot = None;
    }

    fn due(&self, anchor: Instant, n: u32) -> Instant {
        anchor + self.period * n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_millis(20);

    fn at(t0: Instant, us: u64) -> Instant {
        t0 + Duration::from_micros(us)
    }

    /// Drive the pacer like the shell does: sleep exactly until the instant it names,
    /// optionally waking `jitter(n)` µs late.
    fn run(frames: usize, jitter: impl Fn(usize) -> u64) -> (Vec<Instant>, usize, Instant) {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(P);
        let mut now = t0;
        let mut sends = Vec::new();
        let mut late = 0;
        while sends.len() < frames {
            match pacer.poll(now) {
                PacerPoll::Send { late: l } => {
                    late += usize::from(l);
                    sends.push(now);
                }
                PacerPoll::WaitUntil(t) => {
                    assert!(t > now);
                    now = t + Duration::from_micros(jitter(sends.len()));
                }
            }
        }
        (sends, late, t0)
    }

    #[test]
    fn exact_wakes_give_exact_slots() {
        let (sends, late, t0) = run(500, |_| 0);
        assert_eq!(late, 0);
        for (n, t) in sends.iter().enumerate() {
            assert_eq!(*t, t0 + P * n as u32);
        }
    }

    #[test]
    fn timer_rounding_does_not_drift() {
        // Every wake up to 999 µs late (like a 1 ms timer wheel): no drift after 10 s.
        let (sends, late, t0) = run(500, |n| (n as u64 * 7919) % 1000);
        assert_eq!(late, 0);
        let last = sends[sends.len() - 1];
        let ideal = t0 + P * 499;
        assert!(last >= ideal && last < ideal + Duration::from_millis(1));
        for w in sends.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap > Duration::from_millis(19) && gap < Duration::from_millis(21),
                "{gap:?}"
            );
        }
    }

    #[test]
    fn late_by_less_than_a_period_keeps_the_schedule() {
        let t0 = Instant::now();
        let mut p = Pacer::new(P);
        assert_eq!(p.poll(t0), PacerPoll::Send { late: false });
        // Due at 20 ms, woke at 35 ms: send, and the next is still due at 40 ms.
        assert_eq!(p.poll(at(t0, 35_000)), PacerPoll::Send { late: false });
        assert_eq!(p.poll(at(t0, 35_000)), PacerPoll::WaitUntil(at(t0, 40_000)));
    }

    #[test]
    fn starvation_reanchors_without_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(P);
        assert_eq!(p.poll(t0), PacerPoll::Send { late: false });
        // Due at 20 ms, starved until 85 ms (3 slots missed): exactly one send.
        let now = at(t0, 85_000);
        assert_eq!(p.poll(now), PacerPoll::Send { late: true });
        assert_eq!(p.poll(now), PacerPoll::WaitUntil(at(t0, 105_000)));
        assert_eq!(p.poll(at(t0, 105_000)), PacerPoll::Send { late: false });
        // Exactly one period late also counts (the threshold is inclusive).
        assert_eq!(p.poll(at(t0, 145_000)), PacerPoll::Send { late: true });
    }

    #[test]
    fn idle_restart_is_immediate_but_not_overlapping() {
        let t0 = Instant::now();
        let mut p = Pacer::new(P);
        assert_eq!(p.poll(t0), PacerPoll::Send { late: false });
        p.idle();
        // A frame queued 5 ms later waits for the previous slot to end.
        assert_eq!(p.poll(at(t0, 5_000)), PacerPoll::WaitUntil(at(t0, 20_000)));
        assert_eq!(p.poll(at(t0, 20_000)), PacerPoll::Send { late: false });
        p.idle();
        // Long idle: the next frame goes at once and anchors a new schedule.
        let t1 = at(t0, 1_000_000);
        assert_eq!(p.poll(t1), PacerPoll::Send { late: false });
        assert_eq!(p.poll(t1), PacerPoll::WaitUntil(at(t0, 1_020_000)));
        p.reset();
        assert_eq!(p.poll(at(t0, 1_001_000)), PacerPoll::Send { late: false });
    }
}
