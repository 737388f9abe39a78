//! Engineers' tools: `realtime-probe` (latency measurement, [`probe`]), `provider-sim`
//! (an OpenAI-Realtime-protocol server with fault injection, [`sim`]) and a FreeSWITCH
//! double that places calls into an engine ([`fs_double`]).

#![warn(missing_docs)]

pub mod fs_double;
pub mod probe;
pub mod sim;
