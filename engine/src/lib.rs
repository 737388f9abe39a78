//! The TOM realtime engine as a library; the `tom` binary is a thin CLI over it.
//!
//! Built so far: the FreeSWITCH-facing `serve` shell (echo), caller-number hashing, the
//! sans-IO audio basics (G.711, endpointer), the conversation backends and the sans-IO
//! failover policy (the last two not yet wired into calls). See the README for what is
//! not real yet.

pub mod audio;
pub mod backend;
pub mod bench;
pub mod config;
pub mod failover;
pub mod models;
pub mod pii;
pub mod serve;
pub mod telemetry;
