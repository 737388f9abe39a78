//! Endpointing on generated telephone audio: espeak-ng speech, resampled to 8 kHz,
//! through G.711 µ-law, embedded in white noise. Ground truth comes from the clean
//! speech; the VAD + endpointer must find onset and end of speech close to it, and must
//! not start on noise alone.

use std::path::PathBuf;
use std::process::Command;

use engine::audio::endpointer::{EndpointEvent, Endpointer, EndpointerConfig};
use engine::audio::g711::{ulaw_decode, ulaw_encode};
use engine::audio::resample::resample_clip;
use engine::audio::vad::{default_detector, Aggressiveness, NeuralVad, VoiceDetector, WebrtcVad};
use engine::audio::wav::{self, Channels};

const RATE: u32 = 8000;
const FRAME: usize = 160; // 20 ms

/// Speech from espeak-ng (installed by scripts/bootstrap.sh), at 8 kHz telephone quality.
fn telephone_speech(text: &str) -> Vec<i16> {
    let path: PathBuf =
        std::env::temp_dir().join(format!("tom-ep-{}-{}.wav", std::process::id(), text.len()));
    let status = Command::new("espeak-ng")
        .args(["-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed (scripts/bootstrap.sh installs it)");
    assert!(status.success());
    let pcm = wav::read(&path, Channels::Mix).expect("espeak wav");
    let _ = std::fs::remove_file(&path);
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
fn default_detector_finds_one_utterance_in_noisy_telephone_speech() {
    // Measured: end +4 frames at 20 dB and above, +15 at 10 dB, +3 at 5 dB.
    for (snr, late_end) in [(30.0, 8), (20.0, 8), (10.0, 16), (5.0, 16)] {
        let s = scene("please book a table for two people tomorrow evening", snr);
        let mut vad = default_detector(RATE).expect("vad");
        let events = endpoint(&s.mixed, &mut vad, EndpointerConfig::default());
        assert_one_utterance(&events, s.truth, late_end, &format!("{snr} dB"));
    }
}

#[test]
fn default_detector_never_starts_on_five_seconds_of_noise() {
    // Line and room noise up to RMS 1000 (-30 dBFS). Much louder white noise (RMS 3000)
    // does false-start after ~2 s: a known limit, recorded in docs/decisions/0003.
    for (level, seed) in [(100.0, 1), (300.0, 2), (600.0, 5), (1000.0, 3)] {
        let quiet = noise(5 * RATE as usize, level, seed);
        let mut vad = default_detector(RATE).expect("vad");
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
