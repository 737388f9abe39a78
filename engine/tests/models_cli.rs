//! `tom models verify` names what is wrong and how to fix it; `tom models list` shows
//! the manifest.

use std::process::Command;

#[test]
fn verify_reports_missing_and_corrupt_models_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("silero-vad")).expect("dir");
    std::fs::write(
        dir.path().join("silero-vad/silero_vad.onnx"),
        b"not the model",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tom"))
        .args(["models", "verify", "silero-vad", "onnxruntime"])
        .env("TOM_MODELS", dir.path())
        .output()
        .expect("tom runs");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("corrupt") && stdout.contains("silero_vad.onnx"),
        "{stdout}"
    );
    assert!(
        stdout.contains("missing") && stdout.contains("libonnxruntime"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scripts/fetch-models.sh --only silero-vad onnxruntime"),
        "{stderr}"
    );
}

#[test]
fn list_shows_every_manifest_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_tom"))
        .args(["models", "list"])
        .env("TOM_MODELS", dir.path())
        .output()
        .expect("tom runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for id in [
        "whisper-tiny-en-ggml",
        "piper-en-joe-medium",
        "silero-vad",
        "onnxruntime",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(id) && l.contains("missing")),
            "{id}: {stdout}"
        );
    }
}
