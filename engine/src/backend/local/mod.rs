//! The local pipeline: whisper STT → brain → Piper TTS, all on this machine.

pub mod brain;
pub mod session;
pub mod stt;
pub mod tts;
