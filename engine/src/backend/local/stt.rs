//! Whisper STT (in progress).
