//! Where the fetched models live, and the error that says how to get a missing one.
//!
//! `scripts/fetch-models.sh` puts artefact `ID` in `$TOM_CACHE/models/ID/` (default
//! `~/.cache/tom`); `models/models.toml` lists the ids and files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

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

/// The manifest this binary was built with (`models/models.toml`).
pub const MANIFEST: &str = include_str!("../../models/models.toml");

/// What the manifest says about the artefacts (only what verification needs).
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// Ids fetched by default (the local pipeline).
    pub default: Vec<String>,
    /// Every artefact by id.
    pub models: BTreeMap<String, ManifestModel>,
}

/// One artefact directory.
#[derive(Debug, Deserialize)]
pub struct ManifestModel {
    /// What it is.
    pub description: String,
    /// Its licence.
    pub licence: String,
    /// Its files.
    pub files: Vec<ManifestFile>,
}

/// One file of an artefact.
#[derive(Debug, Deserialize)]
pub struct ManifestFile {
    /// Path inside the artefact directory.
    pub path: String,
    /// Expected sha256, hex.
    pub sha256: String,
    /// Expected size in bytes.
    pub size: u64,
}

/// The ggml file name of whisper model `id`, from the embedded manifest.
pub fn whisper_ggml_file(id: &str) -> Result<String, String> {
    let manifest = Manifest::embedded()?;
    manifest
        .models
        .get(id)
        .and_then(|m| {
            m.files
                .iter()
                .find(|f| f.path.ends_with(".bin") && f.path.starts_with("ggml-"))
        })
        .map(|f| f.path.clone())
        .ok_or_else(|| format!("{id:?} is not a whisper ggml model (see `tom models list`)"))
}

impl Manifest {
    /// The embedded manifest.
    pub fn embedded() -> Result<Self, String> {
        toml::from_str(MANIFEST).map_err(|e| format!("models/models.toml: {e}"))
    }
}

/// The state of one model file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Present with the expected size and (when checked) hash.
    Ok,
    /// Not there.
    Missing,
    /// Wrong size or hash.
    Corrupt(String),
}

/// Checks the files of artefact `id` under `root`; `hash` re-reads and hashes them
/// (slow for large models), otherwise only sizes are compared.
pub fn check(
    root: &Path,
    id: &str,
    model: &ManifestModel,
    hash: bool,
) -> Vec<(PathBuf, FileState)> {
    model
        .files
        .iter()
        .map(|file| {
            let path = root.join(id).join(&file.path);
            let state = match std::fs::metadata(&path) {
                Err(_) => FileState::Missing,
                Ok(meta) if meta.len() != file.size => {
                    FileState::Corrupt(format!("size {} instead of {}", meta.len(), file.size))
                }
                Ok(_) if !hash => FileState::Ok,
                Ok(_) => match sha256_file(&path) {
                    Ok(digest) if digest.eq_ignore_ascii_case(&file.sha256) => FileState::Ok,
                    Ok(digest) => {
                        FileState::Corrupt(format!("sha256 {digest} instead of {}", file.sha256))
                    }
                    Err(e) => FileState::Corrupt(format!("unreadable: {e}")),
                },
            };
            (path, state)
        })
        .collect()
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifest_parses_and_names_the_pipeline_models() {
        let manifest = Manifest::embedded().expect("manifest");
        for id in [
            "whisper-tiny-en-ggml",
            "piper-en-joe-medium",
            "silero-vad",
            "onnxruntime",
        ] {
            assert!(
                manifest.default.iter().any(|d| d == id),
                "{id} not in the default set"
            );
            assert!(!manifest.models[id].files.is_empty());
        }
    }

    #[test]
    fn check_tells_missing_wrong_size_and_wrong_hash_apart() {
        let dir = std::env::temp_dir().join(format!("tom-models-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("m")).expect("dir");
        std::fs::write(dir.join("m/good"), b"abc").expect("write");
        std::fs::write(dir.join("m/bad"), b"abd").expect("write");
        std::fs::write(dir.join("m/short"), b"ab").expect("write");
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let file = |path: &str| ManifestFile {
            path: path.into(),
            sha256: abc.into(),
            size: 3,
        };
        let model = ManifestModel {
            description: String::new(),
            licence: String::new(),
            files: vec![file("good"), file("bad"), file("short"), file("absent")],
        };
        let states: Vec<FileState> = check(&dir, "m", &model, true)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(states[0], FileState::Ok);
        assert!(matches!(&states[1], FileState::Corrupt(m) if m.starts_with("sha256")));
        assert!(matches!(&states[2], FileState::Corrupt(m) if m.starts_with("size")));
        assert_eq!(states[3], FileState::Missing);
    }

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
