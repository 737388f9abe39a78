//! The brain of the local pipeline: given the conversation so far, what to say next.
//!
//! Replies stream as text chunks so the TTS can start on the first sentence (and so
//! `first_token_ms` means the same thing as for the provider). Two brains:
//! [`scripted::ScriptedBrain`] (config-driven intents → fixed replies; deterministic, used
//! in tests and as the embedded default) and [`openai_compat::OpenAiCompatBrain`] (chat
//! completions streamed from any OpenAI-compatible server: llama.cpp, vLLM, Ollama).

pub mod openai_compat;
pub mod scripted;

pub use openai_compat::{LlmConfig, OpenAiCompatBrain};
pub use scripted::{Intent, ScriptedBrain};

use tokio::sync::mpsc;

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The person on the phone.
    Caller,
    /// Us.
    Agent,
}

/// One turn of the conversation (also what a failover carries over from the provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Who spoke.
    pub speaker: Speaker,
    /// What was said (transcribed for the caller).
    pub text: String,
}

/// Why a brain could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrainError {
    /// There is no caller turn to answer.
    #[error("nothing to answer: the conversation has no caller turn")]
    NoCallerTurn,
    /// The brain's backend failed (LLM server down, …).
    #[error("brain backend failed: {0}")]
    Backend(String),
}

/// A reply in progress.
#[derive(Debug)]
pub struct Reply {
    /// Text chunks in order; the channel closes after the last one.
    pub chunks: mpsc::Receiver<Result<String, BrainError>>,
    /// The intent recognised, if the brain knows such things.
    pub intent: Option<String>,
    /// The reply ends the call (goodbye): play it, then hang up.
    pub ends_call: bool,
}

/// Something that answers the caller.
pub trait Brain: Send + Sync {
    /// Starts answering the last caller turn of `history`.
    fn respond(&self, history: &[Turn]) -> Result<Reply, BrainError>;
}

/// Collects a reply's chunks into one string (tests, phrase caching).
pub async fn collect(mut reply: Reply) -> Result<String, BrainError> {
    let mut text = String::new();
    while let Some(chunk) = reply.chunks.recv().await {
        text.push_str(&chunk?);
    }
    Ok(text)
}
