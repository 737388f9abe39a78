//! The local pipeline: whisper STT → brain → Piper TTS, all on this machine (the LLM
//! brain's model runs in a supervised child process, [`llm_process`]).

pub mod brain;
pub mod llm_process;
pub mod session;
pub mod stt;
pub mod tts;
