//! The TOM realtime engine as a library; the `tom` binary is a thin CLI over it.
//!
//! `serve` accepts FreeSWITCH calls and runs each in a `call` task over the conversation
//! backends (`backend`: local pipeline, cloud provider); `failover` decides which backend
//! serves; `telemetry` exports metrics and the cost log; `config` holds the settings.
//! See the README for what is not real yet.

pub mod audio;
pub mod auth;
pub mod backend;
pub mod bench;
pub mod call;
pub mod config;
pub mod config_reference;
pub mod failover;
pub mod fleet;
pub mod http;
pub mod models;
pub mod pii;
pub mod serve;
pub mod stream;
pub mod telemetry;
