//! `tom bench local`: latency figures of the local pipeline on this machine, as JSON.
//!
//! The question is spoken by our own Piper voice, brought to 8 kHz µ-law (what a PCMU call
//! delivers), and fed through the real parts in turn. Times are measured from the moment
//! the endpointer would have confirmed end of speech, so the endpointer's hangover (the
//! silence it waits for, 500 ms by default) comes on top of `pipeline_ms`; it is reported
//! separately as `endpoint_hangover_ms`.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audio::endpointer::EndpointerConfig;
use crate::audio::g711::{ulaw_decode, ulaw_encode};
use crate::audio::resample::resample_clip;
use crate::audio::wav::Pcm;
use crate::backend::local::brain::{Brain, ScriptedBrain, Speaker, Turn};
use crate::backend::local::stt::WhisperModel;
use crate::backend::local::tts::phrase_cache::PhraseCache;
use crate::backend::local::tts::PiperVoice;

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
