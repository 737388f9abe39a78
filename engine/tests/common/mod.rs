//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use engine::audio::wav::{self, Channels, Pcm};

/// Speech from espeak-ng (installed by scripts/bootstrap.sh), at its own rate (22050 Hz).
pub fn espeak(text: &str) -> Pcm {
    // One file per call: tests run in parallel, often on the same text.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("tom-espeak-{}-{n}.wav", std::process::id()));
    let ok = Command::new("espeak-ng")
        .arg("-w")
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed (scripts/bootstrap.sh installs it)")
        .success();
    assert!(ok, "espeak-ng failed on {text:?}");
    let pcm = wav::read(&path, Channels::Mix).expect("espeak wav");
    let _ = std::fs::remove_file(&path);
    pcm
}

/// Lower-case words without punctuation, digits "2" read as "two", for comparing
/// transcripts with the text spoken.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .map(|w| if w == "2" { "two".to_owned() } else { w })
        .collect()
}
