//! Engineers' tools: `realtime-probe` (latency measurement) and `provider-sim` (an
//! OpenAI-Realtime-protocol server with fault injection). Neither is built yet: the
//! binaries exist so the workspace layout of DESIGN.md stands, and say so when run.

/// Exit code of a tool that is not implemented yet. Deliberately outside the probe's
/// 0/1/2 latency verdicts, so no script can mistake it for a measurement.
pub const EXIT_NOT_IMPLEMENTED: i32 = 70;

/// Prints why the tool cannot run yet and returns [`EXIT_NOT_IMPLEMENTED`].
pub fn not_implemented(tool: &str, issue: &str) -> i32 {
    eprintln!("{tool}: not implemented yet ({issue}); no measurement was made");
    EXIT_NOT_IMPLEMENTED
}
