//! `tom bench local`: latency figures of the local pipeline on this machine, as JSON.
//!
//! The question is spoken by our own Piper voice, brought to 8 kHz µ-law (what a PCMU call
//! delivers), and fed through the real parts in turn. Times are measured from the moment
//! the endpointer would have confirmed end of speech, so the endpointer's hangover (the
//! silence it waits for, 500 ms by default) comes on top of `pipeline_ms`; it is reported
//! separately as `endpoint_hangover_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audio::endpointer::{EndpointEvent, Endpointer, EndpointerConfig};
use crate::audio::g711::{ulaw_decode, ulaw_encode};
use crate::audio::resample::resample_clip;
use crate::audio::silero::SileroModel;
use crate::audio::vad::detector_for_call;
use crate::audio::wav::Pcm;
use crate::backend::local::brain::{Brain, ScriptedBrain, Speaker, Turn};
use crate::backend::local::session::LocalPipeline;
use crate::backend::local::stt::WhisperModel;
use crate::backend::local::tts::phrase_cache::PhraseCache;
use crate::backend::local::tts::PiperVoice;
use crate::backend::{next_event, Session, SessionConfig, SessionEvent, Utterance};

/// The question asked in every run (about 3 s of speech).
pub const QUESTION: &str = "Hello, could I book a table for two people tomorrow evening?";

/// p50/p95/max of a series, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile (nearest rank).
    pub p95_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Samples.
    pub runs: usize,
}

impl Summary {
    /// Summarises durations.
    pub fn of(samples: &[Duration]) -> Self {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len().max(1)) - 1;
            ms.get(i).copied().unwrap_or(f64::NAN)
        };
        Self {
            p50_ms: round(rank(0.5)),
            p95_ms: round(rank(0.95)),
            max_ms: round(ms.last().copied().unwrap_or(f64::NAN)),
            runs: ms.len(),
        }
    }
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// The figures `tom bench local` prints.
#[derive(Debug, Clone, Serialize)]
pub struct LocalReport {
    /// Seconds of the question audio.
    pub question_seconds: f64,
    /// What tiny.en heard in the first run.
    pub transcript: String,
    /// End of speech (confirmed) → final text, per STT model id.
    pub stt: Vec<(String, Summary)>,
    /// Brain reply (scripted) → all text.
    pub brain: Summary,
    /// Text → first sentence's audio, synthesized.
    pub tts_first_audio: Summary,
    /// Text → audio from the phrase cache.
    pub phrase_cache_hit: Summary,
    /// End of speech (confirmed) → first reply audio: tiny.en + scripted brain + the first
    /// sentence synthesized (the worst case: a reply not in the phrase cache).
    pub pipeline: Summary,
    /// The endpointer's hangover, which precedes the confirmation.
    pub endpoint_hangover_ms: f64,
    /// Voice to voice through a local `Session` fed in real time, VAD and endpointer
    /// included (filled in by [`voice_to_voice`]).
    pub voice_to_voice: Vec<VoiceToVoice>,
}

/// Voice-to-voice figures of one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct VoiceToVoice {
    /// Whether whisper started at the endpointer's pause (speculation).
    pub speculative: bool,
    /// `first_audio_ms`: the caller's last voiced frame → first reply audio.
    pub first_audio: Summary,
    /// The endpointer's confirmation → first reply audio.
    pub after_confirmation: Summary,
}

/// Runs the benchmark `runs` times with the models given.
pub fn run_local(
    voice: &PiperVoice,
    stt_models: &[(String, WhisperModel)],
    cache: &PhraseCache,
    runs: usize,
) -> anyhow::Result<LocalReport> {
    let runs = runs.max(1);
    let spoken = voice.synthesize(QUESTION)?;
    let narrow = resample_clip(&spoken.samples, spoken.rate, 8000)?;
    let question = Pcm {
        rate: 8000,
        samples: narrow
            .iter()
            .map(|&s| ulaw_decode(ulaw_encode(s)))
            .collect(),
    };
    let brain = ScriptedBrain::restaurant_demo();

    let mut stt = Vec::new();
    let mut transcript = String::new();
    for (id, model) in stt_models {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = model.transcribe(&question, None)?;
            if transcript.is_empty() {
                transcript.clone_from(&t.text);
            }
            times.push(t.elapsed);
        }
        stt.push((id.clone(), Summary::of(&times)));
    }

    let (mut brain_t, mut tts_t, mut cache_t, mut pipeline_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let reply_text = first_reply(&brain, &transcript)?;
    cache.put(&reply_text, &voice.synthesize(&reply_text)?)?;
    let (_, first_model) = stt_models
        .first()
        .ok_or_else(|| anyhow::anyhow!("no STT model to benchmark"))?;
    for _ in 0..runs {
        let started = Instant::now();
        let _ = first_reply(&brain, &transcript)?;
        brain_t.push(started.elapsed());

        let started = Instant::now();
        first_sentence_audio(voice, &reply_text)?;
        tts_t.push(started.elapsed());

        let started = Instant::now();
        let hit = cache.get(&reply_text);
        cache_t.push(started.elapsed());
        anyhow::ensure!(hit.is_some(), "phrase cache missed a stored phrase");

        let started = Instant::now();
        let heard = first_model.transcribe(&question, None)?;
        let reply = first_reply(&brain, &heard.text)?;
        first_sentence_audio(voice, &reply)?;
        pipeline_t.push(started.elapsed());
    }
    Ok(LocalReport {
        question_seconds: round(question.seconds() * 1e3) / 1e3,
        transcript,
        stt,
        brain: Summary::of(&brain_t),
        tts_first_audio: Summary::of(&tts_t),
        phrase_cache_hit: Summary::of(&cache_t),
        pipeline: Summary::of(&pipeline_t),
        endpoint_hangover_ms: f64::from(EndpointerConfig::default().hangover) * 20.0,
        voice_to_voice: Vec::new(),
    })
}

/// The question as a PCMU call delivers it: 8 kHz through µ-law.
pub fn phone_question(voice: &PiperVoice) -> anyhow::Result<Vec<i16>> {
    let spoken = voice.synthesize(QUESTION)?;
    Ok(resample_clip(&spoken.samples, spoken.rate, 8000)?
        .iter()
        .map(|&s| ulaw_decode(ulaw_encode(s)))
        .collect())
}

/// Voice to voice the way a call runs it: 20 ms frames of silence, the question and
/// silence pushed in real time through the call's VAD and endpointer into a local
/// session (pause → speculative transcription when `speculative`, end → commit), timed
/// to the first reply audio the session hands back.
pub async fn voice_to_voice(
    pipeline: &LocalPipeline,
    silero: Option<&Arc<SileroModel>>,
    question: &[i16],
    runs: usize,
    speculative: bool,
) -> anyhow::Result<VoiceToVoice> {
    const FRAME: usize = 160;
    let lead = vec![0i16; FRAME * 15];
    let tail = vec![0i16; FRAME * 500];
    let frames: Vec<&[i16]> = lead
        .chunks(FRAME)
        .chain(question.chunks(FRAME))
        .chain(tail.chunks(FRAME))
        .collect();
    let frame_time = Duration::from_millis(20);
    let (mut first_audio, mut after_confirmation) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let mut session = pipeline.open(SessionConfig {
            rate: 8000,
            telephony_ulaw: true,
            language: "en".into(),
            instructions: String::new(),
            history: Vec::new(),
        });
        let mut vad = detector_for_call(silero, 8000)?;
        let mut config = EndpointerConfig::default();
        if !speculative {
            config.pause = 0;
        }
        let mut endpointer = Endpointer::new(config);
        let mut pushed_at: Vec<Instant> = Vec::with_capacity(frames.len());
        let mut ticks = tokio::time::interval(frame_time);
        let mut ended: Option<(Instant, Instant)> = None;
        let mut next_frame = frames.iter();
        let heard_at = loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let Some(frame) = next_frame.next() else {
                        anyhow::bail!("no reply audio within the benchmark's silence");
                    };
                    let frame_padded: Vec<i16> =
                        frame.iter().copied().chain(std::iter::repeat(0)).take(FRAME).collect();
                    session.push_audio(&frame_padded)?;
                    pushed_at.push(Instant::now());
                    let now_index = pushed_at.len() as u64 - 1;
                    let event = endpointer.push(vad.is_voiced(&frame_padded)?);
                    let turn = |start: u64, last_voiced: u64| Utterance {
                        end_of_speech: pushed_at[last_voiced as usize],
                        voiced: frame_time * (last_voiced - start + 1) as u32,
                        trailing: frame_time * (now_index - last_voiced) as u32,
                    };
                    match event {
                        Some(EndpointEvent::Pause { start, last_voiced }) => {
                            session.pause(turn(start, last_voiced))?;
                        }
                        Some(EndpointEvent::SpeechEnd { start, last_voiced }) => {
                            let t = turn(start, last_voiced);
                            ended = Some((t.end_of_speech, Instant::now()));
                            session.commit(t)?;
                        }
                        _ => {}
                    }
                }
                event = next_event(&mut session) => match event {
                    Some(SessionEvent::ReplyAudio(_)) => break Instant::now(),
                    Some(SessionEvent::Error(e)) => return Err(e.into()),
                    Some(_) => {}
                    None => anyhow::bail!("the session stopped"),
                }
            }
        };
        session.close();
        let (end_of_speech, confirmed) =
            ended.ok_or_else(|| anyhow::anyhow!("reply audio before the end of speech"))?;
        first_audio.push(heard_at - end_of_speech);
        after_confirmation.push(heard_at - confirmed);
    }
    Ok(VoiceToVoice {
        speculative,
        first_audio: Summary::of(&first_audio),
        after_confirmation: Summary::of(&after_confirmation),
    })
}

fn first_reply(brain: &ScriptedBrain, heard: &str) -> anyhow::Result<String> {
    let mut reply = brain.respond(&[Turn {
        speaker: Speaker::Caller,
        text: heard.to_owned(),
    }])?;
    let mut text = String::new();
    while let Ok(chunk) = reply.chunks.try_recv() {
        text.push_str(&chunk?);
    }
    Ok(text)
}

fn first_sentence_audio(voice: &PiperVoice, text: &str) -> anyhow::Result<Pcm> {
    let first = voice
        .sentence_audio(text)
        .next()
        .ok_or_else(|| anyhow::anyhow!("nothing to say"))??;
    Ok(first.pcm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank() {
        let samples: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        let s = Summary::of(&samples);
        assert_eq!(
            (s.p50_ms, s.p95_ms, s.max_ms, s.runs),
            (10.0, 19.0, 20.0, 20)
        );
        let one = Summary::of(&[Duration::from_millis(7)]);
        assert_eq!((one.p50_ms, one.p95_ms), (7.0, 7.0));
    }
}
