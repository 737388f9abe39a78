//! Where the default model lives: the same rule as the engine's `models.rs`
//! (`$TOM_MODELS`, else `$TOM_CACHE/models`, else `~/.cache/tom/models`), duplicated
//! because this crate must not depend on the engine (whisper.cpp and llama.cpp both
//! vendor ggml and cannot be linked into one binary).

use std::path::{Path, PathBuf};

/// The artefact id of SmolLM2 in `models/models.toml`.
pub const MODEL_ID: &str = "smollm2";
/// Its file.
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The root of the model cache.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOM_MODELS") {
        return dir.into();
    }
    let cache = std::env::var_os("TOM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            home.join(".cache/tom")
        });
    cache.join("models")
}

/// The default model file.
pub fn default_model() -> PathBuf {
    models_dir().join(MODEL_ID).join(MODEL_FILE)
}

/// The model file is not there.
#[derive(Debug, thiserror::Error)]
#[error("model file {} is missing; fetch it with: scripts/fetch-models.sh --only {MODEL_ID} (or pass --model PATH)", path.display())]
pub struct MissingModel {
    /// The path that was tried.
    pub path: PathBuf,
}

/// `path`, checked to be a file.
pub fn check_model(path: &Path) -> Result<&Path, MissingModel> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(MissingModel {
            path: path.to_owned(),
        })
    }
}
