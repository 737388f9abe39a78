//! Piper TTS through ort + linked espeak-ng, and the phrase cache. Tests that synthesize
//! need the fetched models: `scripts/fetch-models.sh --only piper-en-joe-medium onnxruntime`
//! (`scripts/test.sh` fetches them first).

use std::cell::Cell;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use engine::audio::wav::{self, Channels, Pcm};
use engine::backend::local::tts::phonemize::{Espeak, PhonemeIdMap};
use engine::backend::local::tts::{
    init_onnxruntime, ort_dylib, sentences, PhraseCache, PiperOptions, PiperVoice, Source,
    TtsError, DEFAULT_VOICE_ID, STATIC_PHRASES,
};
use engine::models::{models_dir, ModelError};

const SENTENCE: &str = "please book a table for two people tomorrow evening";
const FETCH: &str = "scripts/fetch-models.sh --only piper-en-joe-medium onnxruntime";

/// The default voice, loaded once for the whole test binary.
fn voice() -> Arc<PiperVoice> {
    static VOICE: OnceLock<Arc<PiperVoice>> = OnceLock::new();
    VOICE
        .get_or_init(|| {
            let voice = PiperVoice::load(&models_dir(), DEFAULT_VOICE_ID)
                .unwrap_or_else(|e| panic!("{e}\n(fetch the TTS models with: {FETCH})"));
            Arc::new(voice)
        })
        .clone()
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

#[test]
fn synthesizes_the_sentence() {
    let voice = voice();
    let pcm = voice.synthesize(SENTENCE).expect("synthesize");
    assert_eq!(pcm.rate, 22_050);
    let secs = pcm.seconds();
    assert!((2.0..=5.0).contains(&secs), "{secs} s");
    assert!(rms(&pcm.samples) > 1000.0, "rms {}", rms(&pcm.samples));
    assert_eq!(voice.skipped_phonemes(), 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sentence.wav");
    wav::write(&path, &pcm).expect("write");
    let back = wav::read(&path, Channels::Mix).expect("read");
    assert_eq!(back, pcm);
}

#[test]
fn round_trip_through_whisper_when_available() {
    use engine::backend::local::stt::WhisperModel;
    let Ok(model_path) =
        engine::models::model_file(&models_dir(), "whisper-tiny-en-ggml", "ggml-tiny.en.bin")
    else {
        eprintln!("skipped: whisper-tiny-en-ggml not fetched");
        return;
    };
    let model = WhisperModel::load(&model_path, "whisper-tiny-en-ggml", 2).expect("whisper");
    let pcm = voice().synthesize(SENTENCE).expect("synthesize");
    let text = model.transcribe(&pcm, None).expect("transcribe").text;
    let heard: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .map(|w| if w == "2" { "two".to_owned() } else { w })
        .collect();
    let expected: Vec<&str> = SENTENCE.split(' ').collect();
    let hits = expected
        .iter()
        .filter(|w| heard.iter().any(|h| h == *w))
        .count();
    assert!(hits >= expected.len() - 1, "heard {text:?}");
}

#[test]
fn sentences_arrive_one_by_one() {
    let voice = voice();
    let text = "Hello there. How can I help you today?";
    let parts: Vec<_> = voice
        .sentence_audio(text)
        .collect::<Result<_, _>>()
        .expect("synthesize");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].text, "Hello there.");
    // The first sentence carries the 0.2 s pause, the last does not.
    let tail = &parts[0].pcm.samples[parts[0].pcm.samples.len() - 4410..];
    assert!(tail.iter().all(|&s| s == 0));
    assert!(parts[1].pcm.samples.last().is_some());
    // VITS samples durations (noise_w), so lengths vary a little from run to run.
    let whole = voice.synthesize(text).expect("synthesize");
    let parts_len = (parts[0].pcm.samples.len() + parts[1].pcm.samples.len()) as f64;
    let ratio = whole.samples.len() as f64 / parts_len;
    assert!((0.8..1.25).contains(&ratio), "{ratio}");
    let mut streamed = Vec::new();
    voice
        .synthesize_stream(text, |s| streamed.push(s.text))
        .expect("stream");
    assert_eq!(streamed, vec!["Hello there.", "How can I help you today?"]);
}

#[test]
fn empty_text_is_empty_audio() {
    let voice = voice();
    for text in ["", "   ", "...", "?!"] {
        let pcm = voice.synthesize(text).expect("synthesize");
        assert!(pcm.samples.is_empty(), "{text:?}");
        assert_eq!(pcm.rate, 22_050);
    }
}

#[test]
fn odd_text_does_not_panic_or_lose_words() {
    let voice = voice();
    for text in [
        "Wait—what… really?",
        "Dr. Smith costs 3.5 euros, e.g. at 10:30; ok!",
        "\"Quoted\" (bracketed) ¿question? ümlaut café 😀",
        &"long clause without punctuation ".repeat(40),
    ] {
        let ids = voice.phoneme_ids(text).expect("phonemes");
        assert!(ids.ids.len() > 10, "{text:?}");
        if text.len() < 100 {
            voice.synthesize(text).expect("synthesize");
        }
    }
}

#[test]
fn phonemes_and_ids_follow_piper() {
    // espeak-ng (linked) gives the IPA of `espeak-ng -q --ipa -v en-us`, clause by clause,
    // with Piper's punctuation.
    let espeak = Espeak::new("en-us").expect("espeak-ng");
    let p = espeak
        .phonemize("Hello, world. How are you?")
        .expect("phonemize");
    assert_eq!(p.phonemes, "həlˈoʊ, wˈɜːld. hˈaʊ ɑːɹ juː?");
    assert_eq!(p.recovered_clauses, 0);
    let p = espeak.phonemize("one moment please").expect("phonemize");
    assert_eq!(p.phonemes, "wˈʌn mˈoʊmənt plˈiːz");

    // Ids: BOS, PAD, then each phoneme followed by PAD, then EOS (piper-phonemize's
    // phonemes_to_ids with intersperse_pad), with a voice-style map (no model needed).
    let raw = [
        ("_", 0),
        ("^", 1),
        ("$", 2),
        (" ", 3),
        (",", 8),
        ("h", 20),
        ("ə", 59),
        ("l", 24),
        ("ˈ", 120),
        ("o", 27),
        ("ʊ", 100),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), vec![v]))
    .collect();
    let map = PhonemeIdMap::new(&raw).expect("map");
    let hello = espeak.phonemize("hello").expect("phonemize").phonemes;
    assert_eq!(hello, "həlˈoʊ");
    let ids = map.ids(&hello);
    assert_eq!(
        ids.ids,
        vec![1, 0, 20, 0, 59, 0, 24, 0, 120, 0, 27, 0, 100, 0, 2]
    );
    assert_eq!(ids.skipped, 0);
}

#[test]
fn voice_ids_for_a_word_match_the_voice_map() {
    // Against the real voice's map: "hi" → h aɪ with stress.
    let ids = voice().phoneme_ids("hi").expect("ids").ids;
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            models_dir()
                .join(DEFAULT_VOICE_ID)
                .join("en_US-joe-medium.onnx.json"),
        )
        .expect("voice json"),
    )
    .expect("json");
    let id = |c: &str| {
        json["phoneme_id_map"][c][0]
            .as_i64()
            .expect("known phoneme")
    };
    let (pad, bos, eos) = (id("_"), id("^"), id("$"));
    let mut expected = vec![bos, pad];
    for c in ["h", "ˈ", "a", "ɪ"] {
        expected.extend([id(c), pad]);
    }
    expected.push(eos);
    assert_eq!(ids, expected);
}

#[test]
fn splitter_gives_sentences() {
    assert_eq!(
        sentences("Hi. I'm Tom! Can I help?"),
        vec!["Hi.", "I'm Tom!", "Can I help?"]
    );
}

fn fake_pcm(n: usize) -> Pcm {
    Pcm {
        rate: 22_050,
        samples: (0..n).map(|i| (i % 200) as i16 * 10).collect(),
    }
}

#[test]
fn phrase_cache_hits_disk_and_keys_by_voice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let calls = Cell::new(0);
    let synth = |_: &str| {
        calls.set(calls.get() + 1);
        Ok(fake_pcm(1000))
    };
    let cache = PhraseCache::open(dir.path(), "voice-a").expect("open");
    let (first, source) = cache
        .get_or_synthesize("One moment, please.", synth)
        .expect("first");
    assert_eq!(source, Source::Synthesized);
    let (second, source) = cache
        .get_or_synthesize("One moment, please.", synth)
        .expect("second");
    assert_eq!(source, Source::Disk);
    assert_eq!(first, second);
    assert_eq!(calls.get(), 1);

    // A new instance (a restart) finds it too.
    let again = PhraseCache::open(dir.path(), "voice-a").expect("reopen");
    let (third, source) = again
        .get_or_synthesize("One moment, please.", synth)
        .expect("third");
    assert_eq!((source, calls.get()), (Source::Disk, 1));
    assert_eq!(third, first);

    // Another voice does not see voice-a's audio.
    let other = PhraseCache::open(dir.path(), "voice-b").expect("other");
    assert_ne!(
        other.path_for("One moment, please."),
        cache.path_for("One moment, please.")
    );
    let (_, source) = other
        .get_or_synthesize("One moment, please.", synth)
        .expect("other");
    assert_eq!((source, calls.get()), (Source::Synthesized, 2));

    // Warm makes only what is missing; no temporary files are left.
    let made = cache
        .warm(&["One moment, please.", "Goodbye."], synth)
        .expect("warm");
    assert_eq!((made, calls.get()), (1, 3));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("voice-a"))
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    // A damaged file is synthesized again, not an error.
    std::fs::write(cache.path_for("Goodbye."), b"RIFF garbage").expect("damage");
    let (_, source) = cache.get_or_synthesize("Goodbye.", synth).expect("repair");
    assert_eq!((source, calls.get()), (Source::Synthesized, 4));
    assert!(cache.get("Goodbye.").is_some());

    // Synthesis errors pass through and store nothing.
    let err = cache
        .get_or_synthesize("never", |_| Err(TtsError::Espeak("boom".into())))
        .expect_err("error");
    assert!(matches!(err, TtsError::Espeak(_)));
    assert!(!cache.path_for("never").exists());
}

#[test]
fn phrase_cache_with_the_real_voice() {
    let voice = voice();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = PhraseCache::open(dir.path(), voice.cache_key()).expect("open");
    let (made, source) = cache
        .get_or_synthesize(STATIC_PHRASES[1], |t| voice.synthesize(t))
        .expect("synthesize");
    assert_eq!(source, Source::Synthesized);
    let started = Instant::now();
    let (hit, source) = cache
        .get_or_synthesize(STATIC_PHRASES[1], |_| panic!("must come from disk"))
        .expect("hit");
    let hit_time = started.elapsed();
    assert_eq!(source, Source::Disk);
    assert_eq!(hit, made);
    assert!(hit_time < Duration::from_millis(200), "{hit_time:?}");
    assert!(voice.cache_key().starts_with("piper-en-joe-medium-"));
}

fn copy_voice_to(root: &Path) {
    let src = models_dir().join(DEFAULT_VOICE_ID);
    let dst = root.join(DEFAULT_VOICE_ID);
    std::fs::create_dir_all(&dst).expect("mkdir");
    for f in ["en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"] {
        std::os::unix::fs::symlink(src.join(f), dst.join(f)).expect("symlink");
    }
}

#[test]
fn missing_voice_names_file_and_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = PiperVoice::load(dir.path(), DEFAULT_VOICE_ID).expect_err("missing");
    assert!(
        matches!(err, TtsError::Model(ModelError::Missing { .. })),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("piper-en-joe-medium"), "{text}");
    assert!(
        text.contains("scripts/fetch-models.sh --only piper-en-joe-medium"),
        "{text}"
    );

    // The .onnx without its .json.
    let voice_dir = dir.path().join(DEFAULT_VOICE_ID);
    std::fs::create_dir_all(&voice_dir).expect("mkdir");
    std::fs::write(voice_dir.join("x.onnx"), b"not a model").expect("write");
    let text = PiperVoice::load(dir.path(), DEFAULT_VOICE_ID)
        .expect_err("json")
        .to_string();
    assert!(
        text.contains("x.onnx.json") && text.contains("--only piper-en-joe-medium"),
        "{text}"
    );
}

#[test]
fn missing_or_corrupt_onnxruntime_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_voice_to(dir.path());
    let err = PiperVoice::load(dir.path(), DEFAULT_VOICE_ID).expect_err("no dylib");
    let text = err.to_string();
    assert!(
        matches!(err, TtsError::Model(ModelError::Missing { .. })),
        "{text}"
    );
    assert!(text.contains("libonnxruntime.so"), "{text}");
    assert!(
        text.contains("scripts/fetch-models.sh --only onnxruntime"),
        "{text}"
    );

    // Not a shared library at all: rejected before ort sees it.
    let ort_dir = dir.path().join("onnxruntime");
    std::fs::create_dir_all(&ort_dir).expect("mkdir");
    std::fs::write(
        ort_dir.join("libonnxruntime.so.1.32.0"),
        b"<html>404</html>",
    )
    .expect("write");
    let dylib = ort_dylib(dir.path()).expect("found");
    let err = init_onnxruntime(&dylib).expect_err("corrupt");
    assert!(matches!(err, ModelError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("--only onnxruntime"), "{err}");
}

#[test]
fn corrupt_voice_model_is_an_error() {
    voice(); // ONNX Runtime loaded
    let dir = tempfile::tempdir().expect("tempdir");
    let voice_dir = dir.path().join(DEFAULT_VOICE_ID);
    std::fs::create_dir_all(&voice_dir).expect("mkdir");
    let onnx = voice_dir.join("en_US-joe-medium.onnx");
    std::fs::write(&onnx, vec![7u8; 4096]).expect("write");
    std::fs::copy(
        models_dir()
            .join(DEFAULT_VOICE_ID)
            .join("en_US-joe-medium.onnx.json"),
        voice_dir.join("en_US-joe-medium.onnx.json"),
    )
    .expect("copy json");
    let dylib = ort_dylib(&models_dir()).expect("dylib");
    let err = PiperVoice::load_files(DEFAULT_VOICE_ID, &onnx, &dylib, &PiperOptions::default())
        .expect_err("corrupt");
    let text = err.to_string();
    assert!(
        matches!(err, TtsError::Model(ModelError::Corrupt { .. })),
        "{text}"
    );
    assert!(
        text.contains("en_US-joe-medium.onnx") && text.contains("--only piper-en-joe-medium"),
        "{text}"
    );

    // A broken config.
    std::fs::write(voice_dir.join("en_US-joe-medium.onnx.json"), b"{").expect("write");
    let text = PiperVoice::load_files(DEFAULT_VOICE_ID, &onnx, &dylib, &PiperOptions::default())
        .expect_err("bad json")
        .to_string();
    assert!(
        text.contains("onnx.json") && text.contains("could not be loaded"),
        "{text}"
    );
}

/// A real ELF that is not ONNX Runtime makes `ort` panic inside; we must return an
/// error instead. `ort` remembers the first library path for the whole process, so
/// this runs in a child process (this test binary, filtered to the child test).
#[test]
fn wrong_shared_library_is_an_error_not_a_panic() {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "child_wrong_shared_library",
            "--ignored",
            "--nocapture",
        ])
        .env("TOM_TTS_CHILD", "1")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CHILD-OK"), "{stdout}");
}

#[test]
#[ignore = "run by wrong_shared_library_is_an_error_not_a_panic in a child process"]
fn child_wrong_shared_library() {
    if std::env::var_os("TOM_TTS_CHILD").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("libonnxruntime.so.1.32.0");
    let some_elf = ["/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1", "/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("an ELF file");
    std::fs::copy(some_elf, &fake).expect("copy");
    let err = init_onnxruntime(&fake).expect_err("not onnxruntime");
    assert!(matches!(err, ModelError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("--only onnxruntime"), "{err}");
    // A second attempt gives the same error, still no panic.
    assert!(init_onnxruntime(&fake).is_err());
    println!("CHILD-OK: {err}");
}

/// Figures for the ADR: `cargo test --release -p engine --test tts -- --ignored
/// --nocapture tts_figures`.
#[test]
#[ignore = "measurement; run in release"]
fn tts_figures() {
    let started = Instant::now();
    let voice = voice();
    println!("load: {:?}", started.elapsed());
    voice.synthesize("warm up").expect("warm");
    let text = "Sure, I can book that for you. A table for two people tomorrow evening at seven. Is there anything else I can help you with?";
    let mut ttfa = Vec::new();
    let mut rtf = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut first = None;
        let mut audio = 0usize;
        for s in voice.sentence_audio(text) {
            let s = s.expect("synth");
            first.get_or_insert(started.elapsed());
            audio += s.pcm.samples.len();
        }
        let total = started.elapsed();
        ttfa.push(first.expect("first").as_secs_f64() * 1000.0);
        rtf.push(total.as_secs_f64() / (audio as f64 / 22_050.0));
    }
    let started = Instant::now();
    let pcm = voice.synthesize(SENTENCE).expect("synth");
    let one = started.elapsed();
    println!("time to first audio (3-sentence reply), ms: {ttfa:.0?}");
    println!("RTF whole reply: {rtf:.3?}");
    println!(
        "'{SENTENCE}': {:.2} s audio in {one:?} (RTF {:.3})",
        pcm.seconds(),
        one.as_secs_f64() / pcm.seconds()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = PhraseCache::open(dir.path(), voice.cache_key()).expect("cache");
    let started = Instant::now();
    let made = cache
        .warm(STATIC_PHRASES, |t| voice.synthesize(t))
        .expect("warm");
    println!("warm {made} static phrases: {:?}", started.elapsed());
    let mut hits = Vec::new();
    for p in STATIC_PHRASES {
        let started = Instant::now();
        let (_, source) = cache.get_or_synthesize(p, |_| panic!("miss")).expect("hit");
        assert_eq!(source, Source::Disk);
        hits.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!("phrase-cache hit, ms: {hits:.2?}");

    let two = PiperVoice::load_with(
        &models_dir(),
        DEFAULT_VOICE_ID,
        &PiperOptions {
            intra_threads: 2,
            ..PiperOptions::default()
        },
    )
    .expect("load");
    two.synthesize("warm up").expect("warm");
    let mut rtf2 = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let pcm = two.synthesize(SENTENCE).expect("synth");
        rtf2.push(started.elapsed().as_secs_f64() / pcm.seconds());
    }
    println!("RTF with 2 intra-op threads: {rtf2:.3?}");
}
