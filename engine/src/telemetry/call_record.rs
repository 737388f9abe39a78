//! The call record: what was said in a call, one JSON line per call in
//! `<dir>/calls_YYYYMMDD.jsonl`, written when the call ends (like the cost record, and
//! beside it). It holds what callers said, so it is personal data: operators can switch
//! it off (`TOM_CALL_RECORDS=false`). The caller's number appears only hashed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::cost_log::rfc3339;
use super::daily_jsonl::{DailyJsonl, JsonlError};
use crate::backend::BackendKind;

/// Who spoke a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The caller, as the backend heard them.
    Caller,
    /// The engine's reply, as far as it was spoken.
    Agent,
}

/// One line of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// Milliseconds since the call started.
    pub at_ms: u64,
    /// Who spoke.
    pub role: Role,
    /// What was said.
    pub text: String,
    /// The backend that heard or produced it.
    pub backend: BackendKind,
    /// The caller's end of speech → first reply audio, on agent lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_audio_ms: Option<u64>,
    /// The caller talked over this reply (barge-in); `text` is what was produced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// One line of the call-record log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call (FreeSWITCH channel UUID or stream id), as in the cost log.
    pub call_id: String,
    /// Where the call came from: `freeswitch` or `stream`.
    pub source: String,
    /// The number dialled (selects the call profile).
    pub did: String,
    /// The caller's number, hashed.
    pub caller_hash: String,
    /// Call start, RFC 3339 UTC.
    pub start_time: String,
    /// Call end, RFC 3339 UTC.
    pub end_time: String,
    /// How the call ended.
    pub outcome: String,
    /// The conversation in order.
    pub transcript: Vec<TranscriptLine>,
}

/// A call's conversation as it happens; the call task owns it.
#[derive(Debug, Clone)]
pub struct Transcript {
    started: tokio::time::Instant,
    lines: Vec<TranscriptLine>,
}

impl Transcript {
    /// A conversation starting now.
    pub fn start() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            lines: Vec::new(),
        }
    }

    fn at_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The caller said `text` (as `backend` heard it).
    pub fn caller(&mut self, text: &str, backend: BackendKind) {
        let at_ms = self.at_ms();
        self.lines.push(TranscriptLine {
            at_ms,
            role: Role::Caller,
            text: text.trim().to_owned(),
            backend,
            first_audio_ms: None,
            interrupted: false,
        });
    }

    /// The engine replied `text`.
    pub fn agent(
        &mut self,
        text: &str,
        backend: BackendKind,
        first_audio: Option<Duration>,
        interrupted: bool,
    ) {
        let at_ms = self.at_ms();
        self.lines.push(TranscriptLine {
            at_ms,
            role: Role::Agent,
            text: text.trim().to_owned(),
            backend,
            first_audio_ms: first_audio.map(|d| d.as_millis() as u64),
            interrupted,
        });
    }

    /// The lines so far.
    pub fn lines(&self) -> &[TranscriptLine] {
        &self.lines
    }

    /// The record of a call that ended at `ended`.
    pub fn finish(
        self,
        call: CallIdentity,
        started: SystemTime,
        ended: SystemTime,
        outcome: &str,
    ) -> CallRecord {
        CallRecord {
            call_id: call.call_id,
            source: call.source.to_owned(),
            did: call.did,
            caller_hash: call.caller_hash,
            start_time: rfc3339(started),
            end_time: rfc3339(ended),
            outcome: outcome.to_owned(),
            transcript: self.lines,
        }
    }
}

/// Who the record is about.
#[derive(Debug, Clone)]
pub struct CallIdentity {
    /// The call id.
    pub call_id: String,
    /// `freeswitch` or `stream`.
    pub source: &'static str,
    /// The number dialled.
    pub did: String,
    /// The caller's number, hashed.
    pub caller_hash: String,
}

/// Appends call records to `calls_YYYYMMDD.jsonl`. Blocking I/O.
#[derive(Debug)]
pub struct CallRecordLog(DailyJsonl);

impl CallRecordLog {
    /// A log in `dir` (created when missing).
    pub fn open(dir: &Path) -> Result<Self, JsonlError> {
        DailyJsonl::open(dir, "calls", "call record").map(Self)
    }

    /// Appends `record` (one line) and syncs it to disk.
    pub fn append(&self, record: &CallRecord, ended: SystemTime) -> Result<PathBuf, JsonlError> {
        self.0.append(record, ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_conversation_is_recorded_in_order_with_times() {
        let mut t = Transcript::start();
        tokio::time::advance(Duration::from_millis(1500)).await;
        t.caller(" a table for two ", BackendKind::Local);
        tokio::time::advance(Duration::from_millis(600)).await;
        t.agent(
            "Certainly.",
            BackendKind::Provider,
            Some(Duration::from_millis(540)),
            true,
        );
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_028_800);
        let record = t.finish(
            CallIdentity {
                call_id: "c1".into(),
                source: "stream",
                did: "100".into(),
                caller_hash: "abcd".into(),
            },
            started,
            started + Duration::from_secs(5),
            "completed",
        );
        assert_eq!(record.transcript.len(), 2);
        assert_eq!(record.transcript[0].at_ms, 1500);
        assert_eq!(record.transcript[0].text, "a table for two");
        assert_eq!(record.transcript[1].role, Role::Agent);
        assert_eq!(record.transcript[1].first_audio_ms, Some(540));
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(json["transcript"][0]["role"], "caller");
        assert!(json["transcript"][0].get("interrupted").is_none());
        assert_eq!(json["transcript"][1]["interrupted"], true);
        assert_eq!(json["end_time"], "2025-11-25T00:00:05Z");
    }

    #[test]
    fn records_go_to_the_day_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = CallRecordLog::open(dir.path()).expect("open");
        let ended = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_028_860);
        let record = Transcript::start().finish(
            CallIdentity {
                call_id: "c2".into(),
                source: "freeswitch",
                did: "100".into(),
                caller_hash: "h".into(),
            },
            ended,
            ended,
            "caller_hangup",
        );
        let path = log.append(&record, ended).expect("append");
        assert!(path.ends_with("calls_20251125.jsonl"));
        let back: CallRecord =
            serde_json::from_str(std::fs::read_to_string(path).expect("read").trim())
                .expect("parse");
        assert_eq!(back, record);
    }
}
