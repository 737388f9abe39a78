//! The local pipeline behind the `Session` trait, with the real models: a spoken
//! question at telephone quality becomes the caller's text, a streamed reply and reply
//! audio at the call's rate; a barge-in stops the reply and no audio of it follows; a
//! commit after more speech supersedes a speculative transcription. Needs the fetched
//! models (`scripts/fetch-models.sh`, run by scripts/test.sh).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use engine::audio::g711::{ulaw_decode, ulaw_encode};
use engine::audio::resample::resample_clip;
use engine::backend::local::brain::{Brain, BrainError, Reply, ScriptedBrain, Speaker, Turn};
use engine::backend::local::session::LocalPipeline;
use engine::backend::local::stt::{SttPool, WhisperModel};
use engine::backend::local::tts::{PiperVoice, Voice, DEFAULT_VOICE_ID};
use engine::backend::{next_event, Session, SessionConfig, SessionEvent, Stage, Utterance};
use engine::models::{model_file, models_dir};
use tokio::sync::mpsc;

mod common;
use common::words;

const RATE: u32 = 8000;
const FRAME: usize = 160;
/// Safety net only: every wait below ends on an event.
const LIMIT: Duration = Duration::from_secs(60);

struct Models {
    stt: SttPool,
    voice: Arc<Voice>,
}

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let root = models_dir();
        let path = model_file(&root, "whisper-tiny-en-ggml", "ggml-tiny.en.bin")
            .expect("tiny.en fetched (scripts/fetch-models.sh)");
        let whisper = WhisperModel::load(&path, "whisper-tiny-en-ggml", 2).expect("load tiny.en");
        let voice = PiperVoice::load(&root, DEFAULT_VOICE_ID).expect("Piper voice fetched");
        Models {
            stt: SttPool::start(Arc::new(whisper), 1, 4),
            voice: Arc::new(Voice::Piper(Box::new(voice))),
        }
    })
}

fn pipeline(brain: Arc<dyn Brain>) -> LocalPipeline {
    let m = models();
    LocalPipeline::new(m.stt.clone(), brain, m.voice.clone(), None)
}

fn config() -> SessionConfig {
    SessionConfig {
        rate: RATE,
        telephony_ulaw: true,
        language: "en".into(),
        instructions: String::new(),
        history: Vec::new(),
    }
}

/// `text` in our voice, as a PCMU call delivers it (8 kHz, through µ-law).
fn phone_speech(text: &str) -> Vec<i16> {
    let Voice::Piper(voice) = &*models().voice else {
        unreachable!("the test loads a Piper voice")
    };
    let wide = voice.synthesize(text).expect("synthesize");
    resample_clip(&wide.samples, wide.rate, RATE)
        .expect("resample")
        .iter()
        .map(|&s| ulaw_decode(ulaw_encode(s)))
        .collect()
}

fn push(session: &mut dyn Session, samples: &[i16]) {
    for frame in samples.chunks(FRAME) {
        session.push_audio(frame).expect("push");
    }
}

fn ms(samples: usize) -> Duration {
    Duration::from_millis(samples as u64 * 1000 / u64::from(RATE))
}

async fn next(session: &mut dyn Session) -> SessionEvent {
    tokio::time::timeout(LIMIT, next_event(session))
        .await
        .expect("an event in time")
        .expect("session still running")
}

/// Events until the reply is done.
async fn until_done(session: &mut dyn Session) -> Vec<SessionEvent> {
    let mut events = Vec::new();
    loop {
        let event = next(session).await;
        let done = matches!(event, SessionEvent::ReplyDone(_));
        events.push(event);
        if done {
            return events;
        }
    }
}

fn caller_text(events: &[SessionEvent]) -> String {
    events
        .iter()
        .find_map(|e| match e {
            SessionEvent::CallerText(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a caller text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_question_gets_a_spoken_answer() {
    let mut session = pipeline(Arc::new(ScriptedBrain::restaurant_demo())).open(config());
    let question = phone_speech("Could I book a table for two people tomorrow evening?");
    let silence = vec![0i16; RATE as usize / 2];
    push(&mut session, &silence);
    push(&mut session, &question);
    push(&mut session, &silence);
    session
        .commit(Utterance {
            end_of_speech: Instant::now(),
            voiced: ms(question.len()),
            trailing: ms(silence.len()),
        })
        .expect("commit");
    let events = until_done(&mut session).await;

    let heard = words(&caller_text(&events));
    for word in ["book", "table", "two", "people", "tomorrow", "evening"] {
        assert!(heard.contains(&word.to_owned()), "heard {heard:?}");
    }
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::ReplyText(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert!(text.contains("noted your request for a table"), "{text}");
    let audio: usize = events
        .iter()
        .map(|e| match e {
            SessionEvent::ReplyAudio(pcm) => pcm.len(),
            _ => 0,
        })
        .sum();
    // Two sentences of speech at 8 kHz: seconds, not silence or a blip.
    assert!(audio > RATE as usize * 2, "{audio} samples of reply");
    for stage in [Stage::Stt, Stage::LlmFirstToken, Stage::TtsFirstAudio] {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, SessionEvent::StageLatency { stage: s, .. } if *s == stage)),
            "no {stage:?} latency in {events:?}"
        );
    }
    let Some(SessionEvent::ReplyDone(done)) = events.last() else {
        unreachable!()
    };
    assert!(!done.cancelled && !done.ends_call);

    // The reply is heard back as the words the brain chose.
    let reply_audio: Vec<i16> = events
        .iter()
        .flat_map(|e| match e {
            SessionEvent::ReplyAudio(pcm) => pcm.clone(),
            _ => Vec::new(),
        })
        .collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stt = models().stt.clone();
    tokio::spawn(async move {
        let pcm = engine::audio::wav::Pcm {
            rate: RATE,
            samples: reply_audio,
        };
        let _ = tx.send(stt.transcribe(pcm, None).await);
    });
    let back = rx.await.expect("stt").expect("transcribe reply");
    let back = words(&back.text);
    assert!(
        back.contains(&"table".to_owned()) && back.contains(&"anything".to_owned()),
        "reply heard as {back:?}"
    );

    // The conversation is remembered: "goodbye" ends the call.
    let bye = phone_speech("Thank you, goodbye.");
    push(&mut session, &bye);
    push(&mut session, &silence);
    session
        .commit(Utterance {
            end_of_speech: Instant::now(),
            voiced: ms(bye.len()),
            trailing: ms(silence.len()),
        })
        .expect("commit");
    let events = until_done(&mut session).await;
    let Some(SessionEvent::ReplyDone(done)) = events.last() else {
        unreachable!()
    };
    assert!(done.ends_call, "{events:?}");
}

/// Talks forever, one sentence at a time, until the session drops the reply.
struct Chatterbox {
    histories: Mutex<Vec<Vec<Turn>>>,
}

impl Brain for Chatterbox {
    fn respond(&self, history: &[Turn]) -> Result<Reply, BrainError> {
        if let Ok(mut h) = self.histories.lock() {
            h.push(history.to_vec());
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut n = 0u32;
            while tx
                .send(Ok(format!("This is sentence number {n}. ")))
                .await
                .is_ok()
            {
                n += 1;
            }
        });
        Ok(Reply {
            chunks: rx,
            intent: None,
            ends_call: false,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_stops_the_reply_and_no_audio_of_it_follows() {
    let brain = Arc::new(Chatterbox {
        histories: Mutex::new(Vec::new()),
    });
    let mut session = pipeline(brain.clone()).open(config());
    let question = phone_speech("Tell me about your menu.");
    let silence = vec![0i16; RATE as usize / 2];
    push(&mut session, &question);
    push(&mut session, &silence);
    let turn = Utterance {
        end_of_speech: Instant::now(),
        voiced: ms(question.len()),
        trailing: ms(silence.len()),
    };
    session.commit(turn).expect("commit");
    loop {
        if let SessionEvent::ReplyAudio(_) = next(&mut session).await {
            break;
        }
    }
    session.cancel(Duration::from_millis(300)).expect("cancel");
    // The reply keeps being produced on the other side until the cancel lands; none of
    // it may come out.
    loop {
        match next(&mut session).await {
            SessionEvent::ReplyDone(done) => {
                assert!(done.cancelled);
                break;
            }
            SessionEvent::ReplyAudio(_) | SessionEvent::ReplyText(_) => {
                panic!("reply output after the cancel")
            }
            _ => {}
        }
    }

    // The next turn's history has the interrupted reply as it was said so far.
    let again = phone_speech("What about dessert?");
    push(&mut session, &again);
    push(&mut session, &silence);
    session
        .commit(Utterance {
            end_of_speech: Instant::now(),
            voiced: ms(again.len()),
            trailing: ms(silence.len()),
        })
        .expect("commit");
    loop {
        if let SessionEvent::ReplyAudio(_) = next(&mut session).await {
            break;
        }
    }
    session.close();
    let histories = brain.histories.lock().expect("lock").clone();
    let second = histories.get(1).expect("asked twice");
    let speakers: Vec<Speaker> = second.iter().map(|t| t.speaker).collect();
    assert_eq!(
        speakers,
        [Speaker::Caller, Speaker::Agent, Speaker::Caller],
        "{second:?}"
    );
    assert!(second[1].text.starts_with("This is sentence number 0."));
    // Closing stops the session: its event stream ends.
    let end = tokio::time::timeout(LIMIT, async {
        while next_event(&mut session).await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "session did not stop after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_after_a_pause_supersedes_the_speculative_transcript() {
    let mut session = pipeline(Arc::new(ScriptedBrain::restaurant_demo())).open(config());
    let first = phone_speech("I would like to book a table");
    let gap = vec![0i16; RATE as usize * 3 / 10];
    push(&mut session, &first);
    push(&mut session, &gap);
    session
        .pause(Utterance {
            end_of_speech: Instant::now(),
            voiced: ms(first.len()),
            trailing: ms(gap.len()),
        })
        .expect("pause");
    // The caller goes on; the turn ends later.
    let second = phone_speech("for two people tomorrow evening.");
    let silence = vec![0i16; RATE as usize / 2];
    push(&mut session, &second);
    push(&mut session, &silence);
    session
        .commit(Utterance {
            end_of_speech: Instant::now(),
            voiced: ms(first.len() + gap.len() + second.len()),
            trailing: ms(silence.len()),
        })
        .expect("commit");
    let heard = words(&caller_text(&until_done(&mut session).await));
    for word in ["book", "table", "two", "people", "tomorrow", "evening"] {
        assert!(heard.contains(&word.to_owned()), "heard {heard:?}");
    }
}
