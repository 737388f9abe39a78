//! Engineers' tools: `realtime-probe` (latency measurement, not built yet),
//! `provider-sim` (an OpenAI-Realtime-protocol server with fault injection, [`sim`]) and a
//! FreeSWITCH double that places calls into an engine ([`fs_double`]).

pub mod fs_double;
pub mod sim;

/// Exit code of a tool that is not implemented yet. Deliberately outside the probe's
/// 0/1/2 latency verdicts, so no script can mistake it for a measurement.
pub const EXIT_NOT_IMPLEMENTED: i32 = 70;

/// Prints why the tool cannot run yet and returns [`EXIT_NOT_IMPLEMENTED`].
pub fn not_implemented(tool: &str, issue: &str) -> i32 {
    eprintln!("{tool}: not implemented yet ({issue}); no measurement was made");
    EXIT_NOT_IMPLEMENTED
}
