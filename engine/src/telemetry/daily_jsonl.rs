//! Day files of JSON lines: `<dir>/<prefix>_YYYYMMDD.jsonl` (UTC date of the record's
//! end), each line appended and synced to disk at once, so a record survives a crash or
//! a restart right after it was written. The cost log and the call record both use it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use time::OffsetDateTime;

/// Why a line could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct JsonlError {
    /// Which log ("cost log", "call record").
    pub what: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The I/O (or encoding) error.
    pub source: std::io::Error,
}

/// Appends lines to day files. Blocking I/O: call it from a blocking task.
#[derive(Debug)]
pub struct DailyJsonl {
    dir: PathBuf,
    prefix: &'static str,
    what: &'static str,
    // One writer at a time, so lines from concurrent call ends never interleave.
    lock: Mutex<()>,
}

impl DailyJsonl {
    /// Day files named `<prefix>_YYYYMMDD.jsonl` in `dir` (created when missing);
    /// `what` names the log in errors.
    pub fn open(dir: &Path, prefix: &'static str, what: &'static str) -> Result<Self, JsonlError> {
        std::fs::create_dir_all(dir).map_err(|source| JsonlError {
            what,
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            prefix,
            what,
            lock: Mutex::new(()),
        })
    }

    /// The file a record ending at `ended` goes to.
    pub fn file_for(&self, ended: SystemTime) -> PathBuf {
        let date = OffsetDateTime::from(ended).date();
        self.dir.join(format!(
            "{}_{:04}{:02}{:02}.jsonl",
            self.prefix,
            date.year(),
            u8::from(date.month()),
            date.day()
        ))
    }

    /// Appends `record` as one line and syncs it to disk.
    pub fn append<T: Serialize>(
        &self,
        record: &T,
        ended: SystemTime,
    ) -> Result<PathBuf, JsonlError> {
        let path = self.file_for(ended);
        let fail = |source: std::io::Error| JsonlError {
            what: self.what,
            path: path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(record).map_err(|e| fail(e.into()))?;
        line.push(b'\n');
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(fail)?;
        file.write_all(&line).map_err(fail)?;
        file.sync_data().map_err(fail)?;
        Ok(path)
    }
}
