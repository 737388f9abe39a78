//! What operators see: Prometheus metrics (and, with the call loop, the cost log).

pub mod metrics;

pub use metrics::Metrics;
