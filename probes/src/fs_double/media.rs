//! FreeSWITCH's side of the unicast stream: one UDP socket on `local-ip:local-port` that
//! sends the caller's frames to the engine every 20 ms and records whatever arrives.
//!
//! As in the captures, the stream is continuous while the channel is parked: it opens
//! with FreeSWITCH's "no media yet" frames, then carries the caller's audio or, between
//! plays, the caller's silence (unless the spec asks for gaps).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::audio::{FrameCodec, MediaFormat};
use super::switch::UnicastRequest;
use super::{DoubleError, Idle, MediaInfo, ReceivedFrame, SentFrame, SentKind, Shared};

/// Largest datagram read whole; FreeSWITCH's largest frame is 1920 B (OPUS, 48 kHz).
const RECV_BUFFER_BYTES: usize = 8192;

/// Audio for the caller to say, and where to report when its last frame has left.
#[derive(Debug)]
pub struct PlayJob {
    pub frames: Vec<Vec<i16>>,
    pub kind: SentKind,
    pub done: oneshot::Sender<Result<Instant, DoubleError>>,
}

/// How the stream behaves, from the call spec.
#[derive(Debug, Clone, Copy)]
pub struct StreamConfig {
    pub rate: u32,
    pub leading_cng_frames: usize,
    pub idle: Idle,
}

/// A running stream.
#[derive(Debug)]
pub struct MediaSession {
    pub info: MediaInfo,
    stop: watch::Sender<bool>,
    sender: JoinHandle<()>,
    receiver: JoinHandle<()>,
}

impl MediaSession {
    /// Binds FreeSWITCH's side and starts both directions.
    pub async fn start(
        request: UnicastRequest,
        config: StreamConfig,
        shared: Arc<Shared>,
    ) -> Result<(Self, mpsc::UnboundedSender<PlayJob>), DoubleError> {
        let format = if request.native {
            if config.rate != 8_000 {
                // FreeSWITCH would send the channel's own codec (G722 frames); the double
                // speaks only L16 and µ-law.
                return Err(DoubleError::UnsupportedMedia(format!(
                    "flags: native on a {} Hz channel (only PCMU native is mirrored)",
                    config.rate
                )));
            }
            MediaFormat::PcmuNative
        } else {
            MediaFormat::L16
        };
        let codec = FrameCodec {
            format,
            rate: config.rate,
        };
        let socket =
            UdpSocket::bind(request.local)
                .await
                .map_err(|source| DoubleError::MediaBind {
                    addr: request.local,
                    source,
                })?;
        let socket = Arc::new(socket);
        let info = MediaInfo {
            freeswitch_side: socket.local_addr()?,
            engine_side: request.remote,
            format,
            rate: config.rate,
            frame_bytes: codec.frame_bytes(),
        };
        let (stop, stopped) = watch::channel(false);
        let (play_tx, play_rx) = mpsc::unbounded_channel();
        let sender = tokio::spawn(send_loop(
            socket.clone(),
            request.remote,
            codec,
            config,
            play_rx,
            stopped.clone(),
            shared.clone(),
        ));
        let receiver = tokio::spawn(receive_loop(socket, codec, stopped, shared));
        Ok((
            Self {
                info,
                stop,
                sender,
                receiver,
            },
            play_tx,
        ))
    }

    /// Stops both directions; what the engine sent before this is still recorded.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        // Neither task panics; a JoinError can only be a runtime shutdown.
        let _ = self.sender.await;
        let _ = self.receiver.await;
    }
}

async fn send_loop(
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    codec: FrameCodec,
    config: StreamConfig,
    mut jobs: mpsc::UnboundedReceiver<PlayJob>,
    mut stopped: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    // Burst: a late tick is caught up, like RTP delayed by jitter reaching FreeSWITCH in
    // a bunch (the G722 capture shows gaps of 0.02 to 36 ms around a 20 ms mean).
    let mut ticks = tokio::time::interval(super::FRAME);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut cng_left = config.leading_cng_frames;
    let mut job: Option<(PlayJob, usize)> = None;
    let silence = vec![0i16; codec.samples_per_frame()];
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            _ = ticks.tick() => {}
        }
        if job.is_none() {
            job = jobs.try_recv().ok().map(|j| (j, 0));
        }
        let (bytes, samples, kind) = if cng_left > 0 {
            cng_left -= 1;
            let bytes = codec.cng_frame();
            // In L16 the all-0xFF frame is sample value -1; native CNG decodes as µ-law.
            let samples = FrameCodec {
                format: MediaFormat::L16,
                rate: codec.rate,
            }
            .decode(&bytes);
            (bytes, samples, SentKind::NoMediaYet)
        } else if let Some((j, next)) = &mut job {
            let samples = j.frames.get(*next).cloned().unwrap_or_default();
            *next += 1;
            (codec.encode(&samples), samples, j.kind)
        } else if config.idle == Idle::Silence {
            (codec.encode(&silence), silence.clone(), SentKind::Idle)
        } else {
            continue;
        };
        if let Err(e) = send(&socket, &bytes, to).await {
            tracing::debug!(error = %e, "caller frame not sent");
        }
        let at = Instant::now();
        shared.record_sent(SentFrame {
            at,
            kind,
            samples,
            bytes,
        });
        if job
            .as_ref()
            .is_some_and(|(j, next)| *next >= j.frames.len())
        {
            if let Some((j, _)) = job.take() {
                let _ = j.done.send(Ok(at));
            }
        }
    }
    // Whoever is waiting in `play` learns that the stream ended under it.
    let stopped = || DoubleError::MediaStopped;
    if let Some((j, _)) = job.take() {
        let _ = j.done.send(Err(stopped()));
    }
    jobs.close();
    while let Ok(j) = jobs.try_recv() {
        let _ = j.done.send(Err(stopped()));
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    socket.send_to(bytes, to).await.map(|_| ())
}

async fn receive_loop(
    socket: Arc<UdpSocket>,
    codec: FrameCodec,
    mut stopped: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            got = socket.recv_from(&mut buf) => match got {
                Ok((n, from)) => record(&shared, codec, &buf[..n.min(buf.len())], from),
                // An ICMP error from an earlier send (the engine's port closed) surfaces
                // here on Linux; it says nothing about this socket.
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "unicast receive failed");
                    break;
                }
            },
        }
    }
    // Frames the engine sent before the stream stopped are already in the socket's
    // buffer (loopback delivers synchronously): keep them.
    while let Ok((n, from)) = socket.try_recv_from(&mut buf) {
        record(&shared, codec, &buf[..n.min(buf.len())], from);
    }
}

fn record(shared: &Shared, codec: FrameCodec, bytes: &[u8], from: SocketAddr) {
    shared.record_received(ReceivedFrame {
        at: Instant::now(),
        from,
        samples: codec.decode(bytes),
        bytes: bytes.to_vec(),
    });
}
