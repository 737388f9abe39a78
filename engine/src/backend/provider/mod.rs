//! The cloud realtime provider: an OpenAI Realtime protocol client over a WebSocket.

pub mod protocol;
