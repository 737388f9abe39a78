//! Whisper STT on generated speech, wideband and at 8 kHz telephone quality. Needs the
//! fetched models (`scripts/fetch-models.sh`, which `scripts/test.sh` runs first).

use std::process::Command;
use std::sync::Arc;

use engine::audio::g711::{ulaw_decode, ulaw_encode};
use engine::audio::resample::resample_clip;
use engine::audio::wav::{self, Pcm};
use engine::backend::local::stt::{SttError, SttPool, WhisperModel};
use engine::models::{model_file, models_dir};

mod common;
use common::{espeak, words};

const SENTENCE: &str = "please book a table for two people tomorrow evening";

fn tiny_en() -> WhisperModel {
    let path = model_file(&models_dir(), "whisper-tiny-en-ggml", "ggml-tiny.en.bin")
        .unwrap_or_else(|e| panic!("{e}"));
    WhisperModel::load(&path, "whisper-tiny-en-ggml", 2).expect("load tiny.en")
}

#[test]
fn transcribes_the_sentence_wideband_and_over_the_phone() {
    let model = tiny_en();
    let wide = espeak(SENTENCE);
    let phone = Pcm {
        rate: 8000,
        samples: resample_clip(&wide.samples, wide.rate, 8000)
            .expect("resample")
            .into_iter()
            .map(|s| ulaw_decode(ulaw_encode(s)))
            .collect(),
    };
    let t = model.transcribe(&wide, None).expect("transcribe");
    eprintln!(
        "wideband: {:?} ({:.2} s audio in {:?})",
        t.text, t.audio_seconds, t.elapsed
    );
    assert_eq!(words(&t.text), words(SENTENCE), "wideband");
    // espeak's robotic voice at 8 kHz: tiny.en hears "book" as "work". Allow one wrong
    // word here; the round trip through our own Piper voice must be exact.
    let t = model.transcribe(&phone, None).expect("transcribe");
    eprintln!(
        "8 kHz µ-law: {:?} ({:.2} s audio in {:?})",
        t.text, t.audio_seconds, t.elapsed
    );
    let (got, want) = (words(&t.text), words(SENTENCE));
    let wrong =
        got.iter().zip(&want).filter(|(a, b)| a != b).count() + got.len().abs_diff(want.len());
    assert!(wrong <= 1, "8 kHz: {got:?}");
}

#[tokio::test]
async fn pool_answers_and_refuses_when_saturated() {
    let pool = SttPool::start(Arc::new(tiny_en()), 1, 1);
    let pcm = espeak("good morning");
    // One running and one queued fit; more are refused at once instead of waiting.
    let first = tokio::spawn({
        let (pool, pcm) = (pool.clone(), pcm.clone());
        async move { pool.transcribe(pcm, None).await }
    });
    let mut refused = 0;
    let mut queued = Vec::new();
    for _ in 0..4 {
        let (pool, pcm) = (pool.clone(), pcm.clone());
        queued.push(tokio::spawn(
            async move { pool.transcribe(pcm, None).await },
        ));
    }
    for handle in queued {
        match handle.await.expect("join") {
            Err(SttError::Busy { queued: 1 }) => refused += 1,
            Ok(t) => assert!(
                words(&t.text).contains(&"morning".to_owned()),
                "{:?}",
                t.text
            ),
            Err(e) => panic!("{e}"),
        }
    }
    let first = first.await.expect("join").expect("first transcription");
    assert!(
        words(&first.text).contains(&"morning".to_owned()),
        "{:?}",
        first.text
    );
    assert!(
        refused >= 2,
        "a saturated pool must refuse, refused {refused}"
    );
}

#[test]
fn tom_transcribe_prints_the_words_and_fails_clearly_without_a_model() {
    let path = std::env::temp_dir().join(format!("tom-cli-{}.wav", std::process::id()));
    wav::write(&path, &espeak(SENTENCE)).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tom"))
        .arg("transcribe")
        .arg(&path)
        .output()
        .expect("tom runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        words(&String::from_utf8_lossy(&out.stdout)),
        words(SENTENCE)
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_tom"))
        .arg("transcribe")
        .arg(&path)
        .env("TOM_MODELS", "/nonexistent")
        .output()
        .expect("tom runs");
    let _ = std::fs::remove_file(&path);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("scripts/fetch-models.sh --only whisper-tiny-en-ggml"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
