//! What operators see: Prometheus metrics, the per-call cost log and the call record.

pub mod call_record;
pub mod cost_log;
pub mod daily_jsonl;
pub mod metrics;

pub use metrics::Metrics;
