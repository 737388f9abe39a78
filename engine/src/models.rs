//! Where the fetched models live, and the error that says how to get a missing one.
//!
//! `scripts/fetch-models.sh` puts artefact `ID` in `$TOM_CACHE/models/ID/` (default
//! `~/.cache/tom`); `models/models.toml` lists the ids and files.

use std::path::{Path, PathBuf};

/// A model file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file is not there.
    #[error("model file {path} is missing; fetch it with: scripts/fetch-models.sh --only {id}")]
    Missing {
        /// The artefact id in models/models.toml.
        id: String,
        /// The expected path.
        path: PathBuf,
    },
    /// The file is there but could not be loaded.
    #[error("model file {path} could not be loaded ({reason}); re-fetch it with: scripts/fetch-models.sh --only {id}")]
    Corrupt {
        /// The artefact id.
        id: String,
        /// The file.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },
}

/// The root of the model cache: `$TOM_MODELS`, else `$TOM_CACHE/models`, else
/// `~/.cache/tom/models`.
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

/// The path of `file` of artefact `id` under `root`, checked to exist.
pub fn model_file(root: &Path, id: &str, file: &str) -> Result<PathBuf, ModelError> {
    let path = root.join(id).join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::Missing {
            id: id.to_owned(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_the_fix() {
        let err = model_file(
            Path::new("/nonexistent"),
            "whisper-tiny-en-ggml",
            "ggml-tiny.en.bin",
        )
        .expect_err("missing");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/whisper-tiny-en-ggml/ggml-tiny.en.bin"));
        assert!(text.contains("scripts/fetch-models.sh --only whisper-tiny-en-ggml"));
    }
}
