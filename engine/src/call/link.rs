//! What the call task needs from whatever carries the caller: FreeSWITCH (ESL + unicast
//! UDP) or a `/v1/stream` WebSocket. Reply audio goes out through an
//! [`esl_bridge::media::UnicastSender`] in both cases (its pacing task sends to UDP or to
//! the socket's writer), so barge-in and pacing behave the same whatever the transport.

use std::future::Future;

use serde::Serialize;

use super::Outcome;
use crate::backend::BackendKind;
use crate::telemetry::call_record::Role;

/// What [`CallerLink::next_frame`] brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// A 20 ms frame of caller audio at the call's rate (empty for comfort noise).
    Frame,
    /// The caller is gone (hung up, closed the socket, or broke the protocol).
    Gone,
}

/// The caller's side of a call.
pub trait CallerLink: Send {
    /// Waits for the next caller frame (written to `out`) or the caller's departure.
    /// Must be cancel-safe: the call task races it against backend events and timers.
    fn next_frame(
        &mut self,
        out: &mut Vec<i16>,
    ) -> impl Future<Output = anyhow::Result<Heard>> + Send;

    /// Tells the caller's side what happens in the call (the stream's events); a
    /// transport without a channel for them ignores it. Never waits.
    fn note(&mut self, note: CallNote);

    /// Ends the call from our side (unless the caller already left) and releases the
    /// transport.
    fn close(self, outcome: Outcome) -> impl Future<Output = ()> + Send;
}

/// Events of a call, as the `/v1/stream` protocol sends them (docs/stream.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallNote {
    /// The call task runs; the greeting follows.
    Started {
        /// The call id (cost log, call record).
        call_id: String,
        /// The backend the call starts on.
        backend: BackendKind,
        /// Audio rate both ways.
        rate: u32,
    },
    /// The call moved to another backend.
    Backend {
        /// Now serving.
        backend: BackendKind,
        /// The failover reason label.
        reason: String,
    },
    /// The endpointer heard the caller start.
    SpeechStarted,
    /// The endpointer ended the caller's turn.
    TurnEnd {
        /// Voiced length of the turn.
        voiced_ms: u64,
    },
    /// A caller turn as heard, or reply text as it streams.
    Transcript {
        /// Who.
        role: Role,
        /// The text (a delta for the agent).
        text: String,
    },
    /// A latency mark, from the caller's end of speech (DESIGN.md names).
    Mark {
        /// `first_token` or `first_audio`.
        name: &'static str,
        /// Milliseconds since end of speech.
        ms: u64,
        /// The backend answering.
        backend: BackendKind,
    },
    /// The reply ended.
    ReplyDone {
        /// Ended by a barge-in.
        cancelled: bool,
    },
    /// The caller interrupted the reply.
    Bargein {
        /// Caller's onset → flush.
        ms: u64,
    },
    /// Something the client should know, as a short code.
    Error {
        /// E.g. `bad_start`, `rate_limited`.
        code: &'static str,
    },
    /// The call is over.
    End {
        /// `tom_calls_total` outcome.
        outcome: &'static str,
    },
}
