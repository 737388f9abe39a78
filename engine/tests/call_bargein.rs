//! Barge-in in the call task itself, under paused time: a scripted caller talks over the
//! greeting; the flush must stop outgoing frames within one frame of the barge-in, and
//! `bargein_ms` (the caller's onset → the flush) is reported. The call runs through
//! `engine::call::serve` with an in-memory caller link and a recording media sink, so
//! every instant is exact. Needs the fetched models (scripts/test.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::call::{serve, CallNote, CallSetup, CallerLink, Heard, Outcome, Services};
use engine::config::Config;
use engine::telemetry::call_record::CallIdentity;
use esl_bridge::media::{MediaCounters, MediaFormat, UnicastSender};
use tokio::time::Instant;

const FRAME: Duration = Duration::from_millis(20);

/// A caller who plays a script of 20 ms frames in real time, then hangs up.
struct ScriptedCaller {
    frames: VecDeque<Vec<i16>>,
    next_at: Instant,
    notes: Arc<Mutex<Vec<(Instant, CallNote)>>>,
}

impl CallerLink for ScriptedCaller {
    async fn next_frame(&mut self, out: &mut Vec<i16>) -> anyhow::Result<Heard> {
        tokio::time::sleep_until(self.next_at).await;
        self.next_at += FRAME;
        match self.frames.pop_front() {
            Some(frame) => {
                *out = frame;
                Ok(Heard::Frame)
            }
            None => Ok(Heard::Gone),
        }
    }

    fn note(&mut self, note: CallNote) {
        self.notes.lock().unwrap().push((Instant::now(), note));
    }

    async fn close(self, _outcome: Outcome) {}
}

fn question() -> Vec<i16> {
    let voice = engine::backend::local::tts::PiperVoice::load(
        &engine::models::models_dir(),
        engine::backend::local::tts::DEFAULT_VOICE_ID,
    )
    .expect("Piper voice fetched (scripts/fetch-models.sh)");
    engine::bench::phone_question(&voice).expect("question")
}

#[test]
fn talking_over_the_greeting_stops_it_within_one_frame() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.cost_log_dir = dir.path().to_owned();
    let services = Arc::new(
        Services::load(config, &engine::models::models_dir(), None).expect("models fetched"),
    );
    // One second of silence into the greeting, then the question, then silence.
    let mut script: VecDeque<Vec<i16>> = VecDeque::new();
    script.extend(std::iter::repeat_n(vec![0i16; 160], 50));
    let spoken_from = script.len();
    for chunk in question().chunks(160) {
        let mut frame = chunk.to_vec();
        frame.resize(160, 0);
        script.push_back(frame);
    }
    script.extend(std::iter::repeat_n(vec![0i16; 160], 25));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let notes: Arc<Mutex<Vec<(Instant, CallNote)>>> = Arc::default();
    let (started, outcome) = runtime.block_on(async {
        let started = Instant::now();
        let caller = ScriptedCaller {
            frames: script,
            next_at: started + FRAME,
            notes: notes.clone(),
        };
        let sink = {
            let sent = sent.clone();
            move |_: &[u8]| {
                sent.lock().unwrap().push(Instant::now());
                Ok(())
            }
        };
        let tx = UnicastSender::spawn(
            MediaFormat::L16_8K,
            50,
            sink,
            Arc::new(MediaCounters::default()),
        )
        .unwrap();
        let setup = CallSetup {
            identity: CallIdentity {
                call_id: "bargein-test".into(),
                source: "test",
                did: String::new(),
                caller_hash: "h".into(),
            },
            rate: 8_000,
            telephony_ulaw: true,
            slot: services.try_admit(),
        };
        let outcome = serve(setup, services, async move { Ok((caller, tx)) }).await;
        (started, outcome)
    });
    assert_eq!(outcome, Outcome::CallerHangup);

    let notes = notes.lock().unwrap().clone();
    let (flushed_at, bargein_ms) = notes
        .iter()
        .find_map(|(at, n)| match n {
            CallNote::Bargein { ms } => Some((*at, *ms)),
            _ => None,
        })
        .expect("a barge-in");
    let onset = started + FRAME * (spoken_from as u32 + 1);
    let sent = sent.lock().unwrap().clone();
    let before: Vec<_> = sent.iter().filter(|t| **t < flushed_at).collect();
    let after: Vec<_> = sent
        .iter()
        .filter(|t| **t >= flushed_at && **t < flushed_at + Duration::from_millis(1500))
        .collect();
    // The greeting was playing when the caller spoke...
    assert!(
        before
            .iter()
            .any(|t| **t > onset - Duration::from_millis(100)),
        "the greeting was not playing at the onset"
    );
    // ...and at most the frame already on its way leaves after the flush.
    assert!(
        after.len() <= 1 && after.iter().all(|t| **t <= flushed_at + FRAME),
        "{} frames sent after the flush, the last {:?} after it",
        after.len(),
        after.last().map(|t| t.duration_since(flushed_at))
    );
    // The guard waits for 200 ms of speech; the VAD's detection adds a little.
    let from_onset = flushed_at.duration_since(onset);
    eprintln!("bargein_ms (engine) = {bargein_ms}; caller onset → flush = {from_onset:?}");
    assert!(
        (200..=400).contains(&(from_onset.as_millis() as u64)),
        "flush {from_onset:?} after the caller's onset"
    );
}
