//! One conversation, whatever the transport: let the greeting play out, ask the question
//! in real time, keep the line open with silence, and time the first reply audio.
//!
//! The transport is two halves: a [`CallerTx`] that sends one 20 ms frame per tick and a
//! [`CallerRx`] that delivers what the engine sends (audio levels and events). Both the
//! `/v1/stream` WebSocket and a FreeSWITCH unicast leg fit.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};

use super::wav::Question;
use super::RunError;

/// Duration of one frame.
pub const FRAME: Duration = Duration::from_millis(20);

/// The limits of one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Wait for the greeting to begin and end, at most this long from the start.
    /// A greeting that never begins is not an error: the question follows.
    pub greeting_timeout: Duration,
    /// The greeting is over once no loud frame has arrived for this long.
    pub greeting_quiet: Duration,
    /// Do not wait for a greeting at all.
    pub no_greeting: bool,
    /// After the last voiced frame is sent, the reply must begin within this.
    pub answer_timeout: Duration,
    /// After the reply begins, wait this long at most for marks not yet received.
    pub mark_grace: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            greeting_timeout: Duration::from_secs(15),
            greeting_quiet: Duration::from_millis(600),
            no_greeting: false,
            answer_timeout: Duration::from_secs(10),
            mark_grace: Duration::from_secs(1),
        }
    }
}

/// A text event from the engine (`docs/stream.md`); unknown ones are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EngineEvent {
    /// The call task runs.
    Started {
        /// The engine's call id.
        #[serde(default)]
        call_id: Option<String>,
        /// The backend serving the call.
        #[serde(default)]
        backend: Option<String>,
        /// The agreed rate.
        #[serde(default)]
        rate: Option<u32>,
    },
    /// The call moved to another backend.
    Backend {
        /// The new backend.
        #[serde(default)]
        backend: Option<String>,
    },
    /// A latency mark, measured from the caller's end of speech.
    Mark {
        /// `first_token` or `first_audio`.
        name: String,
        /// Milliseconds.
        ms: f64,
        /// The backend that produced it.
        #[serde(default)]
        backend: Option<String>,
    },
    /// A protocol or call error.
    Error {
        /// A short code.
        #[serde(default)]
        code: Option<String>,
    },
    /// The call is over.
    End {
        /// `tom_calls_total` outcome.
        #[serde(default)]
        outcome: Option<String>,
    },
    /// Anything else (`speech_started`, `transcript`, …).
    #[serde(other)]
    Other,
}

/// What arrived from the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// A frame of reply audio with this RMS.
    Audio {
        /// RMS in sample units.
        rms: f64,
    },
    /// A text event.
    Event(EngineEvent),
    /// The engine closed the connection.
    Closed(String),
}

/// Sends the caller's audio.
pub(crate) trait CallerTx {
    /// Sends one 20 ms frame now.
    async fn send_frame(&mut self, frame: &[i16]) -> Result<(), RunError>;
}

/// Receives what the engine sends. `next` must be cancel-safe (it sits in a `select!`).
pub(crate) trait CallerRx {
    /// The next audio frame, event or close.
    async fn next(&mut self) -> Result<Heard, RunError>;
}

/// What one conversation measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Last voiced frame sent → first loud reply frame received.
    pub e2e_ms: f64,
    /// `first_token` mark.
    pub first_token_ms: Option<f64>,
    /// `first_audio` mark.
    pub first_audio_ms: Option<f64>,
    /// The backend that answered.
    pub backend: Option<String>,
    /// The engine's call id.
    pub call_id: Option<String>,
    /// First to last loud frame of the greeting.
    pub greeting_ms: Option<f64>,
    /// Ticks the sender missed (the process was stalled for a frame or more).
    pub late_ticks: u64,
}

enum Phase {
    Greeting,
    Speaking { next: usize },
    Listening,
}

/// What is known so far.
#[derive(Default)]
struct State {
    greeting_began: Option<Instant>,
    last_loud: Option<Instant>,
    spoke_at: Option<Instant>,
    reply_at: Option<Instant>,
    backend: Option<String>,
    answered_by: Option<String>,
    call_id: Option<String>,
    first_token_ms: Option<f64>,
    first_audio_ms: Option<f64>,
    ended: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs one conversation: greeting, question, reply. `expect_rate` is checked against
/// the `started` event's rate, when it has one.
pub(crate) async fn converse<T: CallerTx, R: CallerRx>(
    tx: &mut T,
    rx: &mut R,
    question: &Question,
    timing: &Timing,
    reply_rms: f64,
) -> Result<Measured, RunError> {
    let silence = vec![0i16; question.samples_per_frame()];
    let start = Instant::now();
    let mut ticker = tokio::time::interval(FRAME);
    // A stalled process sends the next frame late and keeps the 20 ms grid: no burst of
    // catch-up frames (the engine would hear them sped up) and no drift.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_tick: Option<Instant> = None;
    let mut late_ticks = 0u64;
    let mut phase = if timing.no_greeting {
        Phase::Speaking { next: 0 }
    } else {
        Phase::Greeting
    };
    let mut s = State::default();
    loop {
        tokio::select! {
            heard = rx.next() => {
                let now = Instant::now();
                match heard? {
                    Heard::Audio { rms } if rms > reply_rms => match phase {
                        Phase::Greeting => {
                            s.greeting_began.get_or_insert(now);
                            s.last_loud = Some(now);
                        }
                        _ if s.spoke_at.is_some() => {
                            if s.reply_at.is_none() {
                                s.reply_at = Some(now);
                                if s.answered_by.is_none() {
                                    s.answered_by = s.backend.clone();
                                }
                                tracing::debug!(e2e_ms = s.spoke_at.map(|t| ms(now - t)), "reply audio");
                            }
                        }
                        // The engine talks over the question (an early reply or the
                        // greeting's very end): not the reply to it.
                        _ => tracing::debug!("loud audio while the question is being asked"),
                    },
                    Heard::Audio { .. } => {}
                    Heard::Event(event) => on_event(event, &phase, &mut s, question.rate)?,
                    Heard::Closed(why) => {
                        if s.reply_at.is_some() {
                            break;
                        }
                        return Err(RunError::Closed(why));
                    }
                }
                if let Some(outcome) = s.ended.take() {
                    if s.reply_at.is_some() {
                        break;
                    }
                    return Err(RunError::Ended(outcome));
                }
            }
            tick = ticker.tick() => {
                if let Some(last) = last_tick {
                    if tick.duration_since(last) >= FRAME * 2 {
                        late_ticks += 1;
                    }
                }
                last_tick = Some(tick);
                let now = Instant::now();
                if let Phase::Greeting = phase {
                    let quiet = s.last_loud.is_some_and(|t| now - t >= timing.greeting_quiet);
                    if quiet {
                        phase = Phase::Speaking { next: 0 };
                    } else if now - start >= timing.greeting_timeout {
                        if s.greeting_began.is_some() {
                            return Err(RunError::GreetingTooLong {
                                ms: timing.greeting_timeout.as_millis() as u64,
                            });
                        }
                        tracing::debug!("no greeting heard; asking anyway");
                        phase = Phase::Speaking { next: 0 };
                    }
                }
                match &mut phase {
                    Phase::Greeting | Phase::Listening => tx.send_frame(&silence).await?,
                    Phase::Speaking { next } => {
                        let i = *next;
                        if let Some(frame) = question.frames.get(i) {
                            tx.send_frame(frame).await?;
                            if i == question.last_voiced {
                                s.spoke_at = Some(Instant::now());
                            }
                        }
                        *next += 1;
                        if *next >= question.frames.len() {
                            phase = Phase::Listening;
                        }
                    }
                }
                if let Some(spoke) = s.spoke_at {
                    match s.reply_at {
                        None if now - spoke >= timing.answer_timeout => {
                            return Err(RunError::NoAnswer {
                                ms: timing.answer_timeout.as_millis() as u64,
                            });
                        }
                        Some(reply) => {
                            let marks_in = s.first_token_ms.is_some() && s.first_audio_ms.is_some();
                            if marks_in || now - reply >= timing.mark_grace {
                                break;
                            }
                        }
                        None => {}
                    }
                }
            }
        }
    }
    let (Some(spoke), Some(reply)) = (s.spoke_at, s.reply_at) else {
        return Err(RunError::Protocol(
            "the conversation ended without a reply".into(),
        ));
    };
    Ok(Measured {
        e2e_ms: ms(reply - spoke),
        first_token_ms: s.first_token_ms,
        first_audio_ms: s.first_audio_ms,
        backend: s.answered_by.or(s.backend),
        call_id: s.call_id,
        greeting_ms: s
            .greeting_began
            .zip(s.last_loud)
            .map(|(a, b)| ms(b.saturating_duration_since(a))),
        late_ticks,
    })
}

fn on_event(event: EngineEvent, phase: &Phase, s: &mut State, rate: u32) -> Result<(), RunError> {
    match event {
        EngineEvent::Started {
            call_id,
            backend,
            rate: agreed,
        } => {
            if let Some(agreed) = agreed.filter(|r| *r != rate) {
                return Err(RunError::Protocol(format!(
                    "the engine started the stream at {agreed} Hz, the probe asked for {rate} Hz"
                )));
            }
            s.call_id = call_id;
            s.backend = backend;
        }
        EngineEvent::Backend { backend } => {
            tracing::debug!(?backend, "the call moved to another backend");
            s.backend = backend;
        }
        // Marks before the question began belong to the greeting (there should be none).
        EngineEvent::Mark { name, ms, backend } if !matches!(phase, Phase::Greeting) => {
            let slot = match name.as_str() {
                "first_token" => &mut s.first_token_ms,
                "first_audio" => &mut s.first_audio_ms,
                _ => return Ok(()),
            };
            if slot.is_none() {
                *slot = Some(ms);
                if let Some(b) = backend {
                    // The marks say who produced the reply; first_audio's word is final.
                    if name == "first_audio" || s.answered_by.is_none() {
                        s.answered_by = Some(b);
                    }
                }
            }
        }
        EngineEvent::Mark { .. } | EngineEvent::Other => {}
        EngineEvent::Error { code } => {
            let code = code.unwrap_or_else(|| "unknown".into());
            if s.reply_at.is_none() {
                return Err(RunError::Engine(code));
            }
            tracing::debug!(code, "engine error after the reply began");
        }
        EngineEvent::End { outcome } => {
            s.ended = Some(outcome.unwrap_or_else(|| "unknown".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The conversation under paused tokio time: exact pacing and exact figures.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::sync::mpsc;

    struct ChanTx(mpsc::UnboundedSender<(Instant, Vec<i16>)>);

    impl CallerTx for ChanTx {
        async fn send_frame(&mut self, frame: &[i16]) -> Result<(), RunError> {
            let _ = self.0.send((Instant::now(), frame.to_vec()));
            Ok(())
        }
    }

    struct ChanRx(mpsc::UnboundedReceiver<Heard>);

    impl CallerRx for ChanRx {
        async fn next(&mut self) -> Result<Heard, RunError> {
            Ok(self.0.recv().await.unwrap_or(Heard::Closed("gone".into())))
        }
    }

    const LOUD: Heard = Heard::Audio { rms: 5_000.0 };

    /// 10 loud frames (200 ms) and 2 silent ones at 8 kHz.
    fn question() -> Question {
        let mut frames = vec![vec![4_000i16; 160]; 10];
        frames.extend([vec![0; 160], vec![0; 160]]);
        Question {
            rate: 8_000,
            frames,
            last_voiced: 9,
            voiced_threshold: 126.5,
        }
    }

    fn event(json: &str) -> Heard {
        Heard::Event(serde_json::from_str(json).unwrap())
    }

    /// A scripted engine: `started`, a 200 ms greeting, then (unless `mute`) after 100 ms
    /// of caller silence following voice, marks and reply audio `reply` later.
    async fn engine(
        mut heard: mpsc::UnboundedReceiver<(Instant, Vec<i16>)>,
        say: mpsc::UnboundedSender<Heard>,
        reply: Duration,
        greeting_frames: usize,
    ) -> Vec<Instant> {
        let _ = say.send(event(
            r#"{"type":"started","call_id":"c","backend":"local","rate":8000}"#,
        ));
        for _ in 0..greeting_frames {
            let _ = say.send(LOUD);
            tokio::time::sleep(FRAME).await;
        }
        let mut sent = Vec::new();
        let (mut voiced, mut silent) = (false, 0);
        while let Some((at, frame)) = heard.recv().await {
            sent.push(at);
            if frame.iter().any(|s| *s != 0) {
                voiced = true;
                silent = 0;
            } else if voiced {
                silent += 1;
                if silent == 5 {
                    voiced = false;
                    tokio::time::sleep(reply).await;
                    let _ = say.send(event(
                        r#"{"type":"mark","name":"first_token","ms":250,"backend":"provider"}"#,
                    ));
                    let _ = say.send(event(
                        r#"{"type":"mark","name":"first_audio","ms":300,"backend":"provider"}"#,
                    ));
                    let _ = say.send(LOUD);
                }
            }
        }
        sent
    }

    async fn run(
        reply: Duration,
        greeting_frames: usize,
        timing: Timing,
    ) -> (Result<Measured, RunError>, Vec<Instant>) {
        let (tx, heard) = mpsc::unbounded_channel();
        let (say, rx) = mpsc::unbounded_channel();
        let engine = tokio::spawn(engine(heard, say, reply, greeting_frames));
        let result = {
            let (mut tx, mut rx) = (ChanTx(tx), ChanRx(rx));
            converse(&mut tx, &mut rx, &question(), &timing, 100.0).await
        };
        (result, engine.await.unwrap())
    }

    fn timing() -> Timing {
        Timing {
            greeting_timeout: Duration::from_secs(5),
            greeting_quiet: Duration::from_millis(600),
            no_greeting: false,
            answer_timeout: Duration::from_secs(2),
            mark_grace: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_is_timed_from_the_last_voiced_frame() {
        let (result, sent) = run(Duration::from_millis(300), 10, timing()).await;
        let m = result.unwrap();
        // Five silent frames after the last voiced one (100 ms) end the turn; the reply
        // comes 300 ms later.
        assert_eq!(m.e2e_ms, 400.0);
        assert_eq!(
            (m.first_token_ms, m.first_audio_ms),
            (Some(250.0), Some(300.0))
        );
        assert_eq!(
            m.backend.as_deref(),
            Some("provider"),
            "the marks say who answered"
        );
        assert_eq!(m.call_id.as_deref(), Some("c"));
        assert_eq!(m.greeting_ms, Some(180.0));
        assert_eq!(m.late_ticks, 0);
        // Every frame on the 20 ms grid: no burst, no drift.
        for pair in sent.windows(2) {
            assert_eq!(pair[1] - pair[0], FRAME);
        }
        // The greeting (200 ms) plus 600 ms of quiet before the question.
        assert!(sent.len() > 40 + 12, "{}", sent.len());
    }

    #[tokio::test(start_paused = true)]
    async fn no_reply_is_no_answer() {
        let (result, _) = run(Duration::from_secs(60), 10, timing()).await;
        assert!(
            matches!(result, Err(RunError::NoAnswer { ms: 2000 })),
            "{result:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_greeting_that_never_ends_fails_and_none_at_all_is_skipped() {
        let (result, _) = run(Duration::from_millis(10), 1000, timing()).await;
        assert!(
            matches!(result, Err(RunError::GreetingTooLong { ms: 5000 })),
            "{result:?}"
        );
        let (result, sent) = run(Duration::from_millis(10), 0, timing()).await;
        let m = result.unwrap();
        assert_eq!(m.greeting_ms, None);
        // It waited the whole greeting bound before asking.
        assert!(sent.len() >= 250, "{}", sent.len());
        let quick = Timing {
            no_greeting: true,
            ..timing()
        };
        let (result, sent) = run(Duration::from_millis(10), 0, quick).await;
        assert!(result.is_ok());
        assert!(sent.len() < 30, "{}", sent.len());
    }

    #[tokio::test(start_paused = true)]
    async fn the_engine_ending_the_call_or_a_rate_mismatch_fails_the_run() {
        let (say, rx) = mpsc::unbounded_channel();
        let (tx, _heard) = mpsc::unbounded_channel();
        let _ = say.send(event(r#"{"type":"end","outcome":"error"}"#));
        let result = converse(
            &mut ChanTx(tx),
            &mut ChanRx(rx),
            &question(),
            &timing(),
            100.0,
        )
        .await;
        assert!(
            matches!(result, Err(RunError::Ended(ref o)) if o == "error"),
            "{result:?}"
        );

        let (say, rx) = mpsc::unbounded_channel();
        let (tx, _heard) = mpsc::unbounded_channel();
        let _ = say.send(event(r#"{"type":"started","rate":16000}"#));
        let result = converse(
            &mut ChanTx(tx),
            &mut ChanRx(rx),
            &question(),
            &timing(),
            100.0,
        )
        .await;
        assert!(matches!(result, Err(RunError::Protocol(_))), "{result:?}");

        let (say, rx) = mpsc::unbounded_channel();
        let (tx, _heard) = mpsc::unbounded_channel();
        let _ = say.send(event(r#"{"type":"error","code":"rate_limited"}"#));
        let result = converse(
            &mut ChanTx(tx),
            &mut ChanRx(rx),
            &question(),
            &timing(),
            100.0,
        )
        .await;
        assert!(
            matches!(result, Err(RunError::Engine(ref c)) if c == "rate_limited"),
            "{result:?}"
        );
    }
}
