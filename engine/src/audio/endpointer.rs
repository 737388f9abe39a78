//! Endpointing (sans-IO): turns per-frame voice-activity decisions into "the caller
//! started speaking" and "the caller finished speaking" events.
//!
//! A single voiced frame is usually noise, a click or our own echo, so onset needs
//! `min_speech` of consecutive voiced frames; a pause between words is not the end, so
//! end of speech needs `hangover` of consecutive unvoiced frames. Events carry the index
//! of the frame where the thing really happened (first voiced frame of the onset run, last
//! voiced frame before the hangover), so latency is measured from what the caller did,
//! not from when we became sure of it. The caller of this type maps frame indices to
//! instants; nothing here reads a clock.

/// Endpointer settings, in frames (20 ms each on the media path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointerConfig {
    /// Consecutive voiced frames needed to declare speech onset.
    pub min_speech: u32,
    /// Consecutive unvoiced frames after speech that end the utterance.
    pub hangover: u32,
    /// Consecutive unvoiced frames after speech that announce a [`EndpointEvent::Pause`]
    /// (the turn may be over: start speculative work). 0, or not below `hangover`: off.
    pub pause: u32,
}

impl Default for EndpointerConfig {
    /// 100 ms to start (5 frames), 500 ms of silence to end (25 frames): short enough
    /// for a snappy reply, long enough not to cut a caller between words. A pause is
    /// announced after 160 ms (8 frames), so whisper can run during the rest of the
    /// hangover.
    fn default() -> Self {
        Self {
            min_speech: 5,
            hangover: 25,
            pause: 8,
        }
    }
}

/// What the endpointer concluded from a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Speech began at this frame (the first of the voiced run that confirmed it).
    SpeechStart {
        /// Index of the first voiced frame.
        frame: u64,
    },
    /// The caller has been silent for `pause` frames: speech may have ended at
    /// `last_voiced`. A `SpeechEnd` with the same `last_voiced` confirms it; more voiced
    /// frames cancel it (and a later pause may follow).
    Pause {
        /// Index of the first frame of this utterance.
        start: u64,
        /// Index of the last voiced frame so far.
        last_voiced: u64,
    },
    /// Speech ended: `last_voiced` is the caller's last voiced frame (`end_of_speech`).
    SpeechEnd {
        /// Index of the first frame of this utterance.
        start: u64,
        /// Index of the last voiced frame.
        last_voiced: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Silence,
    /// Voiced frames seen since `since`, not yet enough for onset.
    Rising {
        since: u64,
        count: u32,
    },
    Speech {
        start: u64,
        last_voiced: u64,
    },
}

/// The endpointer state machine. Feed one decision per frame, in order.
///
/// ```
/// use engine::audio::endpointer::{Endpointer, EndpointerConfig, EndpointEvent};
/// let mut ep = Endpointer::new(EndpointerConfig { min_speech: 2, hangover: 3, pause: 0 });
/// let events: Vec<_> = [false, true, true, true, false, false, false]
///     .into_iter()
///     .filter_map(|voiced| ep.push(voiced))
///     .collect();
/// assert_eq!(events, [
///     EndpointEvent::SpeechStart { frame: 1 },
///     EndpointEvent::SpeechEnd { start: 1, last_voiced: 3 },
/// ]);
/// ```
#[derive(Debug, Clone)]
pub struct Endpointer {
    config: EndpointerConfig,
    state: State,
    next_frame: u64,
}

impl Endpointer {
    /// A new endpointer in silence. Zero thresholds are treated as one frame.
    pub fn new(config: EndpointerConfig) -> Self {
        Self {
            config: EndpointerConfig {
                min_speech: config.min_speech.max(1),
                hangover: config.hangover.max(1),
                pause: config.pause,
            },
            state: State::Silence,
            next_frame: 0,
        }
    }

    /// Feeds the VAD decision of the next frame.
    pub fn push(&mut self, voiced: bool) -> Option<EndpointEvent> {
        let frame = self.next_frame;
        self.next_frame += 1;
        let (state, event) = match (self.state, voiced) {
            (State::Silence, false) => (State::Silence, None),
            (State::Silence, true) => self.rising(frame, 1),
            (State::Rising { .. }, false) => (State::Silence, None),
            (State::Rising { since, count }, true) => self.rising(since, count + 1),
            (State::Speech { start, .. }, true) => (
                State::Speech {
                    start,
                    last_voiced: frame,
                },
                None,
            ),
            (State::Speech { start, last_voiced }, false) => {
                let silent = frame - last_voiced;
                if silent >= u64::from(self.config.hangover) {
                    (
                        State::Silence,
                        Some(EndpointEvent::SpeechEnd { start, last_voiced }),
                    )
                } else if self.config.pause > 0 && silent == u64::from(self.config.pause) {
                    (
                        State::Speech { start, last_voiced },
                        Some(EndpointEvent::Pause { start, last_voiced }),
                    )
                } else {
                    (State::Speech { start, last_voiced }, None)
                }
            }
        };
        self.state = state;
        event
    }

    fn rising(&self, since: u64, count: u32) -> (State, Option<EndpointEvent>) {
        if count >= self.config.min_speech {
            let speech = State::Speech {
                start: since,
                last_voiced: since + u64::from(count) - 1,
            };
            (speech, Some(EndpointEvent::SpeechStart { frame: since }))
        } else {
            (State::Rising { since, count }, None)
        }
    }

    /// True while an utterance is in progress (after onset, before its end).
    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    /// Forgets any utterance in progress (e.g. after a barge-in was handled) and keeps
    /// counting frames.
    pub fn reset(&mut self) {
        self.state = State::Silence;
    }

    /// Index the next pushed frame will get.
    pub fn next_frame(&self) -> u64 {
        self.next_frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: EndpointerConfig, pattern: &str) -> Vec<EndpointEvent> {
        let mut ep = Endpointer::new(config);
        pattern
            .chars()
            .filter(|c| !c.is_whitespace())
            .filter_map(|c| ep.push(c == '#'))
            .collect()
    }

    const CFG: EndpointerConfig = EndpointerConfig {
        min_speech: 3,
        hangover: 4,
        pause: 0,
    };

    #[test]
    fn onset_and_end_at_exact_frames() {
        // frames:     0123456789012345
        let events = run(CFG, "..####......");
        assert_eq!(
            events,
            [
                EndpointEvent::SpeechStart { frame: 2 },
                EndpointEvent::SpeechEnd {
                    start: 2,
                    last_voiced: 5
                },
            ]
        );
    }

    #[test]
    fn short_bursts_never_start_speech() {
        assert!(run(CFG, "#.##.#..##...#.##.").is_empty());
    }

    #[test]
    fn pauses_shorter_than_the_hangover_do_not_end_speech() {
        let events = run(CFG, "###...###...####.....");
        assert_eq!(
            events,
            [
                EndpointEvent::SpeechStart { frame: 0 },
                EndpointEvent::SpeechEnd {
                    start: 0,
                    last_voiced: 15
                },
            ]
        );
    }

    #[test]
    fn end_is_reported_on_the_hangover_frame_not_later() {
        let mut ep = Endpointer::new(CFG);
        for voiced in [true, true, true, false, false, false] {
            assert!(!matches!(
                ep.push(voiced),
                Some(EndpointEvent::SpeechEnd { .. })
            ));
        }
        assert_eq!(
            ep.push(false),
            Some(EndpointEvent::SpeechEnd {
                start: 0,
                last_voiced: 2
            })
        );
        assert!(!ep.in_speech());
    }

    #[test]
    fn utterances_follow_one_another() {
        let events = run(CFG, "###.... ###....");
        assert_eq!(events.len(), 4);
        assert_eq!(events[2], EndpointEvent::SpeechStart { frame: 7 });
    }

    #[test]
    fn a_pause_is_announced_once_per_silence_and_confirmed_by_the_end() {
        let config = EndpointerConfig {
            min_speech: 2,
            hangover: 4,
            pause: 2,
        };
        // Speech, a short gap (pause announced, then speech resumes), speech, the end.
        let events = run(config, "###..##....");
        assert_eq!(
            events,
            [
                EndpointEvent::SpeechStart { frame: 0 },
                EndpointEvent::Pause {
                    start: 0,
                    last_voiced: 2
                },
                EndpointEvent::Pause {
                    start: 0,
                    last_voiced: 6
                },
                EndpointEvent::SpeechEnd {
                    start: 0,
                    last_voiced: 6
                },
            ]
        );
        // Off when 0 or not below the hangover.
        for pause in [0, 4, 9] {
            let events = run(EndpointerConfig { pause, ..config }, "###....");
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, EndpointEvent::Pause { .. })),
                "pause {pause}: {events:?}"
            );
        }
    }

    #[test]
    fn reset_drops_an_utterance_in_progress() {
        let mut ep = Endpointer::new(CFG);
        for _ in 0..3 {
            ep.push(true);
        }
        assert!(ep.in_speech());
        ep.reset();
        assert!(!ep.in_speech());
        assert_eq!(ep.next_frame(), 3);
        for _ in 0..10 {
            assert_eq!(ep.push(false), None);
        }
    }

    #[test]
    fn zero_thresholds_mean_one_frame() {
        let events = run(
            EndpointerConfig {
                min_speech: 0,
                hangover: 0,
                pause: 0,
            },
            "#.",
        );
        assert_eq!(
            events,
            [
                EndpointEvent::SpeechStart { frame: 0 },
                EndpointEvent::SpeechEnd {
                    start: 0,
                    last_voiced: 0
                }
            ]
        );
    }

    proptest::proptest! {
        /// Starts and ends alternate, ends follow their start, and an end's last voiced
        /// frame is voiced in the input.
        #[test]
        fn events_are_well_formed(pattern in proptest::collection::vec(proptest::bool::ANY, 0..400),
                                  min_speech in 1u32..8, hangover in 1u32..30, pause in 0u32..30) {
            let mut ep = Endpointer::new(EndpointerConfig { min_speech, hangover, pause });
            let mut open: Option<u64> = None;
            for (i, &voiced) in pattern.iter().enumerate() {
                match ep.push(voiced) {
                    Some(EndpointEvent::SpeechStart { frame }) => {
                        proptest::prop_assert!(open.is_none());
                        proptest::prop_assert!(frame <= i as u64);
                        let run = &pattern[frame as usize..=i];
                        proptest::prop_assert!(run.iter().all(|&v| v));
                        proptest::prop_assert_eq!(run.len() as u32, min_speech);
                        open = Some(frame);
                    }
                    Some(EndpointEvent::Pause { start, last_voiced }) => {
                        proptest::prop_assert_eq!(open, Some(start));
                        proptest::prop_assert!(pause > 0 && pause < hangover);
                        proptest::prop_assert!(pattern[last_voiced as usize]);
                        proptest::prop_assert_eq!(i as u64 - last_voiced, u64::from(pause));
                    }
                    Some(EndpointEvent::SpeechEnd { start, last_voiced }) => {
                        proptest::prop_assert_eq!(open.take(), Some(start));
                        proptest::prop_assert!(pattern[last_voiced as usize]);
                        proptest::prop_assert_eq!(i as u64 - last_voiced, u64::from(hangover));
                        let tail = &pattern[last_voiced as usize + 1..=i];
                        proptest::prop_assert!(tail.iter().all(|&v| !v));
                    }
                    None => {}
                }
            }
        }
    }
}
