//! Endpointing on generated telephone audio: espeak-ng speech, resampled to 8 kHz,
//! through G.711 µ-law, embedded in white noise. Ground truth comes from the clean
//! speech; the VAD + endpointer must find onset and end of speech close to it, and must
//! not start on noise alone.

use std::sync::{Arc, OnceLock};

use engine::audio::endpointer::{EndpointEvent, Endpointer, EndpointerConfig};
use engine::audio::g711::{ulaw_decode, ulaw_encode};
use engine::audio::resample::resample_clip;
use engine::audio::silero::{SileroModel, SileroVad, DEFAULT_SILERO_THRESHOLD};
use engine::audio::vad::{builtin_detector, Aggressiveness, NeuralVad, VoiceDetector, WebrtcVad};
use engine::models::models_dir;

mod common;

const RATE: u32 = 8000;
const FRAME: usize = 160; // 20 ms

/// espeak-ng speech at 8 kHz telephone quality (resampled, through µ-law).
fn telephone_speech(text: &str) -> Vec<i16> {
    let pcm = common::espeak(text);
    let narrow = resample_clip(&pcm.samples, pcm.rate, RATE).expect("resample");
    narrow
        .iter()
        .map(|&s| ulaw_decode(ulaw_encode(s)))
        .collect()
}

/// Deterministic white noise (a fixed LCG), so the test is the same on every run.
fn noise(len: usize, rms: f64, seed: u64) -> Vec<i16> {
    let mut state = seed;
    let amplitude = rms * 3f64.sqrt(); // uniform on [-a, a] has rms a/√3
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let unit = ((state >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0;
            (unit * amplitude) as i16
        })
        .collect()
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

struct Scene {
    mixed: Vec<i16>,
    /// First and last 20 ms frame where the clean speech is audible.
    truth: (u64, u64),
}

fn scene(text: &str, snr_db: f64) -> Scene {
    let speech = telephone_speech(text);
    let lead = RATE as usize; // 1 s of noise before, 1 s after
    let total = lead + speech.len() + lead;
    let speech_rms = rms(&speech);
    let mut mixed = noise(total, speech_rms / 10f64.powf(snr_db / 20.0), 7);
    for (i, &s) in speech.iter().enumerate() {
        mixed[lead + i] = mixed[lead + i].saturating_add(s);
    }
    let loud: Vec<u64> = speech
        .chunks(FRAME)
        .enumerate()
        .filter(|(_, f)| rms(f) > 0.1 * speech_rms)
        .map(|(i, _)| (lead / FRAME + i) as u64)
        .collect();
    Scene {
        mixed,
        truth: (loud[0], *loud.last().expect("speech")),
    }
}

fn endpoint(
    samples: &[i16],
    vad: &mut dyn VoiceDetector,
    config: EndpointerConfig,
) -> Vec<EndpointEvent> {
    let mut ep = Endpointer::new(config);
    samples
        .chunks_exact(FRAME)
        .filter_map(|f| ep.push(vad.is_voiced(f).expect("20 ms frame")))
        // Pauses are speculation hints between words; these tests judge onset and end.
        .filter(|e| !matches!(e, EndpointEvent::Pause { .. }))
        .collect()
}

/// `late_end` is how many frames after the truth the end may be reported: noise keeps a
/// detector voiced for a while after the last word, more so the louder it is.
fn assert_one_utterance(events: &[EndpointEvent], truth: (u64, u64), late_end: u64, what: &str) {
    let [EndpointEvent::SpeechStart { frame: onset }, EndpointEvent::SpeechEnd { start, last_voiced }] =
        events
    else {
        panic!("{what}: expected one utterance, got {events:?} (truth {truth:?})");
    };
    assert_eq!(onset, start);
    // Onset at most 160 ms late (8 frames); end of speech no earlier than 40 ms before
    // the truth (a cut-off word) and no later than `late_end` frames after it.
    assert!(
        (truth.0..=truth.0 + 8).contains(onset),
        "{what}: onset {onset} vs {truth:?}"
    );
    assert!(
        (truth.1 - 2..=truth.1 + late_end).contains(last_voiced),
        "{what}: end {last_voiced} vs {truth:?}"
    );
}

#[test]
fn builtin_detector_finds_one_utterance_in_noisy_telephone_speech() {
    // Measured: end +4 frames at 20 dB and above, +15 at 10 dB, +3 at 5 dB.
    for (snr, late_end) in [(30.0, 8), (20.0, 8), (10.0, 16), (5.0, 16)] {
        let s = scene("please book a table for two people tomorrow evening", snr);
        let mut vad = builtin_detector(RATE).expect("vad");
        let events = endpoint(&s.mixed, &mut vad, EndpointerConfig::default());
        assert_one_utterance(&events, s.truth, late_end, &format!("{snr} dB"));
    }
}

#[test]
fn builtin_detector_never_starts_on_five_seconds_of_noise() {
    // Line and room noise up to RMS 1000 (-30 dBFS). Much louder white noise (RMS 3000)
    // does false-start after ~2 s: a known limit, recorded in docs/decisions/0003.
    for (level, seed) in [(100.0, 1), (300.0, 2), (600.0, 5), (1000.0, 3)] {
        let quiet = noise(5 * RATE as usize, level, seed);
        let mut vad = builtin_detector(RATE).expect("vad");
        let events = endpoint(&quiet, &mut vad, EndpointerConfig::default());
        assert!(events.is_empty(), "noise rms {level}: {events:?}");
    }
}

#[test]
fn webrtc_detector_is_exact_on_clean_telephone_speech() {
    let s = scene("please book a table for two people tomorrow evening", 30.0);
    let mut vad = WebrtcVad::new(RATE, Aggressiveness::VeryAggressive).expect("vad");
    let events = endpoint(&s.mixed, &mut vad, EndpointerConfig::default());
    assert_one_utterance(&events, s.truth, 8, "webrtc 30 dB");
}

/// The Silero model (`scripts/fetch-models.sh --only silero-vad onnxruntime`), loaded once
/// for the whole test binary.
fn silero_model() -> Arc<SileroModel> {
    static MODEL: OnceLock<Arc<SileroModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| SileroModel::load(&models_dir()).unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

#[test]
fn silero_finds_one_utterance_in_noisy_telephone_speech() {
    // Measured at threshold 0.5: onset 55 (57 at 0 dB); end +5 frames at 20 dB, +11 at
    // 10 dB, +13 at 5 and 0 dB. It is the only detector tried that ends at 0 dB.
    for (snr, late_end) in [(20.0, 8), (10.0, 16), (5.0, 16), (0.0, 16)] {
        let s = scene("please book a table for two people tomorrow evening", snr);
        let mut vad = SileroVad::new(silero_model(), RATE, DEFAULT_SILERO_THRESHOLD).expect("vad");
        let events = endpoint(&s.mixed, &mut vad, EndpointerConfig::default());
        assert_one_utterance(&events, s.truth, late_end, &format!("silero {snr} dB"));
        assert_eq!(vad.inference_failures(), 0);
    }
}

#[test]
fn silero_never_starts_on_ten_seconds_of_noise() {
    // Measured: not one voiced frame on white noise up to RMS 6000 (-15 dBFS), where the
    // default detector false-starts from RMS 3000.
    for (level, seed) in [
        (100.0, 1),
        (300.0, 2),
        (1000.0, 3),
        (3000.0, 4),
        (6000.0, 6),
    ] {
        let quiet = noise(10 * RATE as usize, level, seed);
        let mut vad = SileroVad::new(silero_model(), RATE, DEFAULT_SILERO_THRESHOLD).expect("vad");
        let events = endpoint(&quiet, &mut vad, EndpointerConfig::default());
        assert!(events.is_empty(), "noise rms {level}: {events:?}");
    }
}

#[test]
fn silero_calls_sharing_one_model_keep_their_own_state() {
    let s = scene("please book a table for two people tomorrow evening", 20.0);
    let model = silero_model();
    let alone = {
        let mut vad = SileroVad::new(model.clone(), RATE, 0.5).expect("vad");
        endpoint(&s.mixed, &mut vad, EndpointerConfig::default())
    };
    // Two calls on the same session, frames interleaved: one speaks, one is silent.
    let mut talker = SileroVad::new(model.clone(), RATE, 0.5).expect("vad");
    let mut silent = SileroVad::new(model, RATE, 0.5).expect("vad");
    let mut ep = Endpointer::new(EndpointerConfig::default());
    let mut events = Vec::new();
    for frame in s.mixed.chunks_exact(FRAME) {
        events.extend(
            ep.push(talker.is_voiced(frame).expect("frame"))
                .filter(|e| !matches!(e, EndpointEvent::Pause { .. })),
        );
        assert_eq!(silent.is_voiced(&[0; FRAME]), Ok(false));
    }
    assert_eq!(events, alone);
    // After a reset the detector behaves as new.
    talker.reset();
    assert_eq!(
        endpoint(&s.mixed, &mut talker, EndpointerConfig::default()),
        alone
    );
}

/// The comparison behind the default (docs/decisions/0003-vad-crate.md):
/// `cargo test -p engine --release --test endpointing -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn measure_vad_choices() {
    for snr in [20.0, 10.0, 5.0, 0.0] {
        let s = scene("please book a table for two people tomorrow evening", snr);
        let quiet = noise(5 * RATE as usize, 300.0, 11);
        let mut detectors: Vec<(String, Box<dyn VoiceDetector>)> = Vec::new();
        for mode in [
            Aggressiveness::Quality,
            Aggressiveness::LowBitrate,
            Aggressiveness::Aggressive,
            Aggressiveness::VeryAggressive,
        ] {
            detectors.push((
                format!("webrtc {mode:?}"),
                Box::new(WebrtcVad::new(RATE, mode).expect("vad")),
            ));
        }
        for threshold in [0.5f32, 0.6, 0.65, 0.7] {
            detectors.push((
                format!("neural {threshold}"),
                Box::new(NeuralVad::new(RATE, threshold).expect("vad")),
            ));
        }
        let silero = silero_model();
        for threshold in [0.3f32, 0.5, 0.7, 0.85] {
            detectors.push((
                format!("silero {threshold}"),
                Box::new(SileroVad::new(silero.clone(), RATE, threshold).expect("vad")),
            ));
        }
        for (name, mut vad) in detectors {
            let voiced_noise = quiet
                .chunks_exact(FRAME)
                .filter(|f| vad.is_voiced(f).unwrap_or(false))
                .count();
            vad.reset();
            let events = endpoint(&s.mixed, vad.as_mut(), EndpointerConfig::default());
            println!("{snr:>4} dB | {name:<24} | noise frames voiced {voiced_noise:>3}/250 | {events:?} | truth {:?}", s.truth);
        }
    }
}

/// False onsets on white noise alone, by level (docs/decisions/0003-vad-crate.md):
/// `cargo test -p engine --release --test endpointing -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn measure_vad_on_noise_alone() {
    for (level, seed) in [
        (100.0, 1),
        (300.0, 2),
        (1000.0, 3),
        (3000.0, 4),
        (6000.0, 6),
    ] {
        let quiet = noise(10 * RATE as usize, level, seed);
        let mut detectors: Vec<(String, Box<dyn VoiceDetector>)> = vec![(
            "neural 0.7 (default)".to_owned(),
            Box::new(builtin_detector(RATE).expect("vad")),
        )];
        for threshold in [0.5f32, 0.7] {
            detectors.push((
                format!("silero {threshold}"),
                Box::new(SileroVad::new(silero_model(), RATE, threshold).expect("vad")),
            ));
        }
        for (name, mut vad) in detectors {
            let voiced = quiet
                .chunks_exact(FRAME)
                .filter(|f| vad.is_voiced(f).unwrap_or(false))
                .count();
            vad.reset();
            let events = endpoint(&quiet, vad.as_mut(), EndpointerConfig::default());
            println!(
                "noise rms {level:>5} | {name:<20} | frames voiced {voiced:>3}/500 | {events:?}"
            );
        }
    }
}

#[test]
fn a_call_gets_silero_when_loaded_and_the_builtin_detector_otherwise() {
    use engine::audio::silero::SileroModel;
    use engine::audio::vad::detector_for_call;
    let fallback = detector_for_call(None, RATE).expect("builtin");
    assert_eq!(fallback.name(), "neural");
    let model = SileroModel::load(&engine::models::models_dir()).unwrap_or_else(|e| panic!("{e}"));
    let chosen = detector_for_call(Some(&model), RATE).expect("silero");
    assert_eq!(chosen.name(), "silero");
}
