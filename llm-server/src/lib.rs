//! `tom-llm`: TOM's small local LLM as its own process, serving OpenAI-compatible chat
//! completions on loopback.
//!
//! It is a separate binary because whisper-rs and llama-cpp-2 both vendor ggml and
//! cannot be linked into one executable (docs/decisions/0006-local-llm-process.md). The
//! engine starts and supervises it (`engine::backend::local::llm_process`) and talks to
//! it with its ordinary `openai-compatible` brain.
//!
//! - [`api`]: the wire format.
//! - [`text`]: token bytes → text deltas, stop strings (sans-IO).
//! - [`generate`]: the model worker thread (llama.cpp).
//! - [`server`]: HTTP routes, admission, streaming.
//! - [`paths`]: the default model location.

pub mod api;
pub mod generate;
pub mod paths;
pub mod server;
pub mod text;
