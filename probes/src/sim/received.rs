//! The record of what clients sent: kept in memory for tests and `GET /received`, and
//! optionally appended to a JSONL file, one line per client message.
//!
//! Audio is recorded as its byte count, never as base64, so the record stays small and
//! readable; the API key never reaches it (it travels in HTTP headers, not events).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

/// Entries kept in memory; older ones are dropped (the file keeps everything). An hour
/// of 20 ms appends is 180 000 entries: bounded so a long drill cannot exhaust memory.
pub const MEMORY_LIMIT: usize = 100_000;

/// Messages larger than this are recorded without their body.
const BODY_LIMIT: usize = 64 * 1024;

/// The `type` recorded for a message that is not a JSON object with a string `type`.
pub const INVALID: &str = "(invalid)";

/// One client message as the sim received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedEvent {
    /// ms since the sim started.
    pub t_ms: u64,
    /// Connection number (1 for the first connection).
    pub conn: u64,
    /// The event's `type`, or `(invalid)`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Decoded size of an `input_audio_buffer.append`'s audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_bytes: Option<u64>,
    /// The event as received (without the audio of an append; absent when too large or
    /// not JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
}

impl ReceivedEvent {
    /// The record of `text`, received on `conn` at `t_ms`.
    pub fn from_text(t_ms: u64, conn: u64, text: &str) -> Self {
        let mut record = Self {
            t_ms,
            conn,
            kind: INVALID.into(),
            audio_bytes: None,
            event: None,
        };
        let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(text) else {
            return record;
        };
        if let Some(kind) = object.get("type").and_then(Value::as_str) {
            record.kind = kind.chars().take(80).collect();
        }
        if record.kind == "input_audio_buffer.append" {
            if let Some(Value::String(audio)) = object.remove("audio") {
                record.audio_bytes = Some(base64_len(&audio));
            }
        }
        if text.len() <= BODY_LIMIT {
            record.event = Some(Value::Object(object));
        }
        record
    }
}

/// Decoded length of base64 text, without decoding it.
fn base64_len(text: &str) -> u64 {
    let text = text.trim_end();
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count().min(2) as u64;
    (text.len() as u64 / 4 * 3).saturating_sub(padding)
}

/// Why the log file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open log file {path}: {source}")]
pub struct LogFileError {
    /// The file.
    pub path: PathBuf,
    /// What the OS said.
    #[source]
    pub source: std::io::Error,
}

/// Where received events go.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    memory: Mutex<VecDeque<ReceivedEvent>>,
    // A std file behind a mutex: one short buffered line per event on a local disk is
    // cheaper than a writer task, and keeps lines in receive order.
    file: Option<Mutex<LineWriter<File>>>,
}

impl Recorder {
    /// A recorder whose clock starts now, appending to `log` if given.
    pub fn new(log: Option<&Path>) -> Result<Self, LogFileError> {
        let file = log
            .map(|path| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map(|f| Mutex::new(LineWriter::new(f)))
                    .map_err(|source| LogFileError {
                        path: path.to_path_buf(),
                        source,
                    })
            })
            .transpose()?;
        Ok(Self {
            started: Instant::now(),
            memory: Mutex::new(VecDeque::new()),
            file,
        })
    }

    /// Records one client message.
    pub fn record(&self, conn: u64, text: &str) {
        let t_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let event = ReceivedEvent::from_text(t_ms, conn, text);
        if let Some(file) = &self.file {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            let written = serde_json::to_writer(&mut *file, &event)
                .map_err(std::io::Error::from)
                .and_then(|()| file.write_all(b"\n"));
            if let Err(e) = written {
                tracing::warn!("cannot write the received-event log: {e}");
            }
        }
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if memory.len() == MEMORY_LIMIT {
            memory.pop_front();
        }
        memory.push_back(event);
    }

    /// Everything recorded (up to [`MEMORY_LIMIT`] most recent).
    pub fn snapshot(&self) -> Vec<ReceivedEvent> {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.iter().cloned().collect()
    }

    /// Forgets the in-memory record (the file is kept).
    pub fn clear(&self) {
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_is_recorded_as_a_byte_count() {
        let text = r#"{"type":"input_audio_buffer.append","audio":"AAECAwQ=","event_id":"e1"}"#;
        let r = ReceivedEvent::from_text(5, 2, text);
        assert_eq!(r.kind, "input_audio_buffer.append");
        assert_eq!(r.audio_bytes, Some(5));
        assert_eq!(
            r.event,
            Some(serde_json::json!({"type": "input_audio_buffer.append", "event_id": "e1"}))
        );
        for (b64, n) in [("", 0), ("AA==", 1), ("AAA=", 2), ("AAAA", 3)] {
            assert_eq!(base64_len(b64), n);
        }
    }

    #[test]
    fn garbage_is_recorded_as_invalid() {
        for text in ["not json", "[1,2]", r#"{"no":"type"}"#, r#"{"type":5}"#] {
            let r = ReceivedEvent::from_text(0, 1, text);
            assert_eq!(r.kind, INVALID, "{text}");
        }
    }

    #[test]
    fn file_gets_one_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rx.jsonl");
        let rec = Recorder::new(Some(&path)).unwrap();
        rec.record(1, r#"{"type":"response.create"}"#);
        rec.record(1, r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<ReceivedEvent> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, rec.snapshot());
        assert!(!text.contains("AAAA"));
        rec.clear();
        assert!(rec.snapshot().is_empty());
    }
}
