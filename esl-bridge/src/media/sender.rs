//! The paced sender: a bounded playout queue drained by one task in real time.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::counters::MediaCounters;
use super::format::{Encoding, MediaFormat, FRAME_DURATION};
use super::pacer::{Pacer, PacerPoll};
use super::ring::FrameRing;
use super::MediaError;

/// Where the paced frames go: the UDP socket in production, a recorder in tests.
///
/// `send_datagram` must not block: it runs on the pacing task, whose timing is the
/// caller's audio. Any `FnMut(&[u8]) -> io::Result<()> + Send + 'static` is a sink.
///
/// ```
/// use esl_bridge::media::DatagramSink;
///
/// let mut sent = 0usize;
/// let mut sink = move |frame: &[u8]| {
///     sent += frame.len();
///     Ok(())
/// };
/// sink.send_datagram(&[0; 320]).unwrap();
/// ```
pub trait DatagramSink: Send + 'static {
    /// Send one frame as one datagram, without waiting. An error drops the frame (counted
    /// as `send_errors`); the stream goes on.
    fn send_datagram(&mut self, datagram: &[u8]) -> io::Result<()>;
}

impl<F> DatagramSink for F
where
    F: FnMut(&[u8]) -> io::Result<()> + Send + 'static,
{
    fn send_datagram(&mut self, datagram: &[u8]) -> io::Result<()> {
        self(datagram)
    }
}

/// The production sink: our unicast socket, sending to FreeSWITCH's unicast port (the same
/// socket receives, so FreeSWITCH sees one peer address in both directions).
#[derive(Debug)]
pub(crate) struct UdpSink {
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) to: SocketAddr,
}

impl DatagramSink for UdpSink {
    fn send_datagram(&mut self, datagram: &[u8]) -> io::Result<()> {
        // try_send_to never waits: a full send buffer is a dropped frame, not a stall.
        self.socket.try_send_to(datagram, self.to).map(|_| ())
    }
}

/// What [`UnicastSender::push`] did with the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued behind the frames already waiting.
    Queued,
    /// Queued, but the queue was full, so the oldest waiting frame was dropped (counted in
    /// `dropped_overflow`).
    DroppedOldest,
}

const RUNNING: u8 = 0;
/// Send what is queued, then end.
const DRAINING: u8 = 1;
/// End now.
const STOPPED: u8 = 2;

#[derive(Debug)]
struct Shared {
    queue: Mutex<FrameRing>,
    /// Wakes the pacing task: a frame arrived, a flush happened, or the state changed.
    wake: Notify,
    state: AtomicU8,
    counters: Arc<MediaCounters>,
}

impl Shared {
    /// The lock is held only for a frame copy and never across an await; a poisoned lock
    /// (impossible without a panic inside it) still holds a consistent ring.
    fn queue(&self) -> MutexGuard<'_, FrameRing> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending half of a [`super::UnicastLeg`]: queue frames, they leave in real time.
///
/// One pacing task owns the send side of the socket. Frames wait in a bounded queue of
/// preallocated slots; when it is full the **oldest** frame is dropped and counted, so
/// `push` never blocks and never allocates. [`flush`](Self::flush) empties the queue at
/// once (barge-in). Dropping the sender stops the task; [`finish`](Self::finish) plays
/// out what is queued first.
///
/// The engine should stay only a little ahead of real time: a flush makes barge-in
/// instant whatever the queue length, but a full queue drops audio, and anything queued
/// delays later audio (e.g. a filler). [`queued`](Self::queued) tells it how far ahead
/// it is.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use esl_bridge::media::{MediaCounters, MediaFormat, UnicastSender};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let sent = Arc::new(Mutex::new(0usize));
/// let sink = {
///     let sent = sent.clone();
///     move |_: &[u8]| {
///         *sent.lock().unwrap() += 1;
///         Ok(())
///     }
/// };
/// let counters = Arc::new(MediaCounters::default());
/// let tx = UnicastSender::spawn(MediaFormat::L16_8K, 50, sink, counters.clone()).unwrap();
/// for _ in 0..5 {
///     tx.push_samples(&[0i16; 160]).unwrap();
/// }
/// tx.finish().await; // 5 frames, 20 ms apart (in paused time here)
/// assert_eq!(*sent.lock().unwrap(), 5);
/// assert_eq!(counters.snapshot().frames_out, 5);
/// # }
/// ```
#[derive(Debug)]
pub struct UnicastSender {
    shared: Arc<Shared>,
    format: MediaFormat,
    task: Option<JoinHandle<()>>,
}

impl UnicastSender {
    /// Start a pacing task sending `format` frames to `sink`, with room for `queue_frames`
    /// frames. [`super::UnicastLeg::split`] calls this with the UDP socket; tests and
    /// other transports can pass their own sink.
    ///
    /// # Errors
    /// [`MediaError::Config`] if `queue_frames` is 0; [`MediaError::NoRuntime`] outside a
    /// Tokio runtime.
    pub fn spawn<S: DatagramSink>(
        format: MediaFormat,
        queue_frames: usize,
        sink: S,
        counters: Arc<MediaCounters>,
    ) -> Result<Self, MediaError> {
        if queue_frames == 0 {
            return Err(MediaError::Config("queue_frames must be at least 1"));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(FrameRing::new(queue_frames, format.frame_bytes())),
            wake: Notify::new(),
            state: AtomicU8::new(RUNNING),
            counters,
        });
        let task = runtime.spawn(pace(shared.clone(), sink, format.frame_bytes()));
        Ok(Self {
            shared,
            format,
            task: Some(task),
        })
    }

    /// Queue one encoded frame (exactly [`MediaFormat::frame_bytes`] bytes).
    ///
    /// # Errors
    /// [`MediaError::FrameSize`] if the length is wrong (FreeSWITCH would play a short or
    /// long frame as is, shifting the timing).
    pub fn push(&self, frame: &[u8]) -> Result<PushOutcome, MediaError> {
        let expected = self.format.frame_bytes();
        if frame.len() != expected {
            return Err(MediaError::FrameSize {
                got: frame.len(),
                expected,
            });
        }
        Ok(self.push_with(|slot| slot.copy_from_slice(frame)))
    }

    /// Queue one L16 frame given as samples ([`MediaFormat::samples_per_frame`] of them),
    /// encoded little-endian straight into the queue slot.
    ///
    /// # Errors
    /// [`MediaError::NotL16`] for a native format; [`MediaError::FrameSize`] (in bytes) if
    /// the sample count is wrong.
    pub fn push_samples(&self, samples: &[i16]) -> Result<PushOutcome, MediaError> {
        if self.format.encoding() != Encoding::L16 {
            return Err(MediaError::NotL16);
        }
        let expected = self.format.frame_bytes();
        if samples.len() * 2 != expected {
            return Err(MediaError::FrameSize {
                got: samples.len() * 2,
                expected,
            });
        }
        Ok(self.push_with(|slot| {
            for (out, s) in slot.chunks_exact_mut(2).zip(samples) {
                out.copy_from_slice(&s.to_le_bytes());
            }
        }))
    }

    fn push_with(&self, fill: impl FnOnce(&mut [u8])) -> PushOutcome {
        let dropped = self.shared.queue().push_with(fill);
        self.shared.wake.notify_one();
        if dropped {
            MediaCounters::inc(&self.shared.counters.dropped_overflow);
            PushOutcome::DroppedOldest
        } else {
            PushOutcome::Queued
        }
    }

    /// Discard every queued frame now (barge-in) and return how many were discarded.
    ///
    /// At most the one frame already taken by the pacing task (copied out, being handed to
    /// the socket) still leaves; nothing queued before the call is sent after it. The next
    /// frame pushed plays at once, or at the end of the frame that is still playing.
    pub fn flush(&self) -> usize {
        let discarded = self.shared.queue().clear();
        self.shared.wake.notify_one();
        discarded
    }

    /// Frames waiting to be sent.
    pub fn queued(&self) -> usize {
        self.shared.queue().len()
    }

    /// The queue's capacity in frames.
    pub fn capacity(&self) -> usize {
        self.shared.queue().capacity()
    }

    /// The frame format this sender expects.
    pub fn format(&self) -> MediaFormat {
        self.format
    }

    /// The counters this sender updates.
    pub fn counters(&self) -> &Arc<MediaCounters> {
        &self.shared.counters
    }

    /// Stop accepting frames, send what is queued (paced as usual), and wait for the pacing
    /// task to end. Use before hanging up after a goodbye prompt.
    pub async fn finish(mut self) {
        self.shared.state.store(DRAINING, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(task) = self.task.take() {
            // The task never panics; a JoinError can only be a runtime shutdown.
            let _ = task.await;
        }
    }
}

impl Drop for UnicastSender {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.shared.state.store(STOPPED, Ordering::Release);
            self.shared.wake.notify_one();
        }
    }
}

/// The pacing task: the only place that decides when a frame leaves.
async fn pace<S: DatagramSink>(shared: Arc<Shared>, mut sink: S, frame_bytes: usize) {
    let mut pacer = Pacer::new(FRAME_DURATION);
    // The one buffer a frame is copied into, so the lock is not held while sending.
    let mut frame = vec![0u8; frame_bytes].into_boxed_slice();
    loop {
        let state = shared.state.load(Ordering::Acquire);
        if state == STOPPED {
            break;
        }
        let now = Instant::now();
        // Check, decide and pop under one lock so a flush cannot slip between the pacer's
        // decision and the pop.
        let decision = {
            let mut queue = shared.queue();
            if queue.is_empty() {
                None
            } else {
                let poll = pacer.poll(now.into_std());
                if let PacerPoll::Send { .. } = poll {
                    queue.pop_into(&mut frame);
                }
                Some(poll)
            }
        };
        match decision {
            None => {
                pacer.idle();
                if state == DRAINING {
                    break;
                }
                shared.wake.notified().await;
            }
            Some(PacerPoll::Send { late }) => {
                if late {
                    MediaCounters::inc(&shared.counters.late_sends);
                }
                match sink.send_datagram(&frame) {
                    Ok(()) => MediaCounters::inc(&shared.counters.frames_out),
                    Err(e) => {
                        MediaCounters::inc(&shared.counters.send_errors);
                        tracing::debug!(error = %e, "unicast frame not sent");
                    }
                }
            }
            Some(PacerPoll::WaitUntil(due)) => {
                // A push, flush or stop wakes us early; the loop re-decides from scratch.
                tokio::select! {
                    () = tokio::time::sleep_until(Instant::from_std(due)) => {}
                    () = shared.wake.notified() => {}
                }
            }
        }
    }
}
