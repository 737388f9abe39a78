//! What operators see: Prometheus metrics and the per-call cost log.

pub mod cost_log;
pub mod metrics;

pub use metrics::Metrics;
