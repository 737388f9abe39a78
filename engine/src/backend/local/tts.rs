//! Piper TTS (in progress).
