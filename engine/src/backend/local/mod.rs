//! The local pipeline: whisper STT → brain → Piper TTS, all on this machine.

pub mod stt;
pub mod tts;
