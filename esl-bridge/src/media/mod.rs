//! The unicast media leg: raw L16 audio between FreeSWITCH and us over UDP.
//!
//! FreeSWITCH's `unicast` sendmsg (see [`crate::command::UnicastParams`]) makes it bind
//! `local-ip:local-port`, send the caller's audio from there to `remote-ip:remote-port`
//! (us) as one headerless datagram per 20 ms frame, and play whatever arrives on its port
//! to the caller, at once, with no jitter buffer. So this module:
//!
//! * [`UnicastLeg`] binds our socket and produces the [`UnicastParams`](crate::UnicastParams);
//! * [`UnicastReceiver`] delivers FreeSWITCH's frames, ignoring (and counting) datagrams
//!   from anyone else or of the wrong size;
//! * [`UnicastSender`] queues bot audio in a bounded, drop-oldest queue that one task
//!   drains on a real-time [`Pacer`] schedule, with an instant [`UnicastSender::flush`]
//!   for barge-in;
//! * [`MediaCounters`] counts frames in/out, late sends, drops and strangers;
//! * [`PortPool`] leases FreeSWITCH's side a port no other live call holds.
//!
//! Formats, from the recorded captures: L16 little-endian at the channel's codec rate
//! (PCMU/PCMA 8 kHz = 320 B, G722 16 kHz = 640 B, OPUS 48 kHz = 1920 B per frame), or the
//! raw codec with `flags: native` (PCMU = 160 B). The first ~3 frames of every stream are
//! all `0xFF` ("no media yet"); they are normal (see [`InboundFrame::is_cng`]).
//!
//! Any `playback` on the channel ends unicast for good, so the engine must play all its
//! audio through [`UnicastSender`].

mod counters;
mod format;
mod leg;
mod pacer;
mod ports;
mod ring;
mod sender;

use std::net::SocketAddr;

pub use counters::{MediaCounters, MediaCountersSnapshot};
pub use format::{Encoding, MediaFormat, FRAME_DURATION};
pub use leg::{
    free_udp_port, InboundFrame, UnicastConfig, UnicastLeg, UnicastReceiver, DEFAULT_QUEUE_FRAMES,
};
pub use pacer::{Pacer, PacerPoll};
pub use ports::{PortLease, PortPool, DEFAULT_PORT_RANGE};
pub use sender::{DatagramSink, PushOutcome, UnicastSender};

/// Errors of the media leg.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The L16 rate is not one FreeSWITCH frames in whole samples per 20 ms.
    #[error("unsupported L16 rate {0} Hz (8000..=48000, a multiple of 50)")]
    UnsupportedRate(u32),
    /// A frame of the wrong length was given to the sender.
    #[error("frame is {got} bytes, expected {expected}")]
    FrameSize {
        /// Bytes given.
        got: usize,
        /// Bytes in one frame of the leg's format.
        expected: usize,
    },
    /// Samples were given to a native-format (G.711) sender.
    #[error("samples given to a native (non-L16) media leg")]
    NotL16,
    /// A configuration that cannot work.
    #[error("invalid media configuration: {0}")]
    Config(&'static str),
    /// Our UDP socket could not be bound.
    #[error("cannot bind the media socket on {addr}: {source}")]
    Bind {
        /// The address we tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The pacing task needs a Tokio runtime.
    #[error("no Tokio runtime to run the media pacing task")]
    NoRuntime,
    /// A socket error.
    #[error("media socket: {0}")]
    Io(#[from] std::io::Error),
}
