//! Per-leg media counters, shared lock-free between the receiver, the sender and whoever
//! exports them (the engine maps them to `tom_media_frames_total{direction}` and
//! `tom_media_frames_dropped_total{reason}`; this crate stays free of Prometheus).

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one [`super::UnicastLeg`]. Cheap to update from the media path
/// (relaxed atomics: they are statistics, not synchronisation).
///
/// ```
/// use esl_bridge::media::MediaCounters;
///
/// let c = MediaCounters::default();
/// assert_eq!(c.snapshot().frames_in, 0);
/// ```
#[derive(Debug, Default)]
pub struct MediaCounters {
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) late_sends: AtomicU64,
    pub(crate) dropped_overflow: AtomicU64,
    pub(crate) dropped_bad_size: AtomicU64,
    pub(crate) wrong_source: AtomicU64,
    pub(crate) cng_frames: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) recv_errors: AtomicU64,
}

/// A point-in-time copy of [`MediaCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaCountersSnapshot {
    /// Frames received from FreeSWITCH and delivered (including CNG frames).
    pub frames_in: u64,
    /// Frames sent to FreeSWITCH.
    pub frames_out: u64,
    /// Sends a whole frame period or more behind schedule (the schedule re-anchored).
    pub late_sends: u64,
    /// Outgoing frames dropped because the playout queue was full (oldest first).
    pub dropped_overflow: u64,
    /// Incoming datagrams from FreeSWITCH with a size that is not a frame; ignored.
    pub dropped_bad_size: u64,
    /// Incoming datagrams from any address other than FreeSWITCH's unicast port; ignored.
    pub wrong_source: u64,
    /// Incoming all-`0xFF` "no media yet" frames (normally the first 3 of a stream).
    /// Also counted in `frames_in`; they are normal, not errors.
    pub cng_frames: u64,
    /// Outgoing frames the socket refused (e.g. send buffer full); dropped.
    pub send_errors: u64,
    /// Transient receive errors (e.g. ICMP port unreachable reported by the OS); skipped.
    pub recv_errors: u64,
}

impl MediaCounters {
    /// Read all counters (each individually atomic; the set is not one transaction).
    pub fn snapshot(&self) -> MediaCountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MediaCountersSnapshot {
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            late_sends: get(&self.late_sends),
            dropped_overflow: get(&self.dropped_overflow),
            dropped_bad_size: get(&self.dropped_bad_size),
            wrong_source: get(&self.wrong_source),
            cng_frames: get(&self.cng_frames),
            send_errors: get(&self.send_errors),
            recv_errors: get(&self.recv_errors),
        }
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
