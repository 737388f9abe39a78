//! Static phrases (greeting, goodbye, "one moment", apology, transfer) synthesized once
//! and kept on disk as WAV, keyed by voice and text:
//! `<root>/<voice key>/<sha256(text)>.wav`, written to a temporary file and renamed so
//! a crash never leaves half a file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::piper::hex;
use super::TtsError;
use crate::audio::wav::{self, Channels, Pcm};

/// Where a phrase came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from the cache.
    Disk,
    /// Synthesized now (and stored).
    Synthesized,
}

/// The on-disk phrase cache of one voice.
#[derive(Debug)]
pub struct PhraseCache {
    dir: PathBuf,
}

/// The default cache root: `$TOM_CACHE/phrases` (default `~/.cache/tom/phrases`).
pub fn default_root() -> PathBuf {
    let cache = std::env::var_os("TOM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".cache/tom")
        });
    cache.join("phrases")
}

/// Whitespace-collapsed, trimmed text: "Hello  there " and "Hello there" are one phrase.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl PhraseCache {
    /// Opens (creating) `<root>/<voice_key>/`. Use [`super::PiperVoice::cache_key`] as the
    /// key so a changed voice never serves old audio.
    pub fn open(root: &Path, voice_key: &str) -> Result<Self, TtsError> {
        let dir = root.join(voice_key);
        std::fs::create_dir_all(&dir).map_err(|source| TtsError::Cache {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The file a phrase is stored in.
    pub fn path_for(&self, text: &str) -> PathBuf {
        let digest = Sha256::digest(normalize(text).as_bytes());
        self.dir.join(format!("{}.wav", hex(&digest)))
    }

    /// The cached audio of `text`, if any. An unreadable file counts as absent (it is
    /// replaced on the next store).
    pub fn get(&self, text: &str) -> Option<Pcm> {
        let path = self.path_for(text);
        if !path.is_file() {
            return None;
        }
        match wav::read(&path, Channels::Mix) {
            Ok(pcm) => Some(pcm),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable cached phrase; synthesizing it again");
                None
            }
        }
    }

    /// Stores `pcm` as the audio of `text` (temporary file, then rename).
    pub fn put(&self, text: &str, pcm: &Pcm) -> Result<(), TtsError> {
        let path = self.path_for(text);
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("phrase"),
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = wav::write(&tmp, pcm) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        std::fs::rename(&tmp, &path).map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            TtsError::Cache {
                path: path.clone(),
                source,
            }
        })
    }

    /// The audio of `text`: from disk if cached, else from `synthesize` (then stored).
    pub fn get_or_synthesize(
        &self,
        text: &str,
        synthesize: impl FnOnce(&str) -> Result<Pcm, TtsError>,
    ) -> Result<(Pcm, Source), TtsError> {
        if let Some(pcm) = self.get(text) {
            return Ok((pcm, Source::Disk));
        }
        let pcm = synthesize(&normalize(text))?;
        self.put(text, &pcm)?;
        Ok((pcm, Source::Synthesized))
    }

    /// Makes sure every phrase is on disk; returns how many had to be synthesized.
    pub fn warm(
        &self,
        texts: &[&str],
        mut synthesize: impl FnMut(&str) -> Result<Pcm, TtsError>,
    ) -> Result<usize, TtsError> {
        let mut made = 0;
        for text in texts {
            if self.get(text).is_none() {
                let pcm = synthesize(&normalize(text))?;
                self.put(text, &pcm)?;
                made += 1;
            }
        }
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_words_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = PhraseCache::open(dir.path(), "v").expect("open");
        assert_eq!(
            cache.path_for(" one  moment "),
            cache.path_for("one moment")
        );
        assert_ne!(cache.path_for("one moment"), cache.path_for("One moment"));
    }
}
