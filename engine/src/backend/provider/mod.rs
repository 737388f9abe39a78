//! The cloud realtime provider: an OpenAI Realtime protocol client over a WebSocket
//! (tokio-tungstenite, rustls). `config` reads the operator's settings, `connect` opens
//! the socket (egress gate, key, classified handshake errors, retries), `wire_audio`
//! converts call audio, `session` runs one call's conversation, `protocol` is the JSON.

pub mod config;
pub mod connect;
pub mod protocol;
pub mod session;
pub mod wire_audio;

pub use config::{ApiKey, AuthStyle, ProviderConfig};
pub use session::{ProviderBackend, ProviderSession};
