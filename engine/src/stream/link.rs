//! A `/v1/stream` WebSocket as a [`CallerLink`]: caller audio from binary messages
//! (re-framed into 20 ms), control from text messages, every message rate limited;
//! events and paced reply audio go out through one writer task.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::protocol::{decode_audio, parse_control, Control};
use crate::call::{CallNote, CallerLink, Heard, Outcome};
use crate::telemetry::Metrics;

/// WebSocket close codes (RFC 6455).
pub(crate) const CLOSE_NORMAL: u16 = 1000;
pub(crate) const CLOSE_POLICY: u16 = 1008;
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;

/// Caller audio buffered ahead of the call task before the oldest is dropped.
const MAX_BUFFERED: Duration = Duration::from_secs(2);

/// How long the server waits for its close to go out and for the client's close in reply.
const CLOSING_HANDSHAKE: Duration = Duration::from_secs(2);

/// The caller side of a stream.
pub struct StreamLink {
    incoming: SplitStream<WebSocket>,
    outgoing: mpsc::Sender<Message>,
    writer: JoinHandle<()>,
    limiter: DefaultDirectRateLimiter,
    metrics: Metrics,
    samples: VecDeque<i16>,
    frame_len: usize,
    max_buffered: usize,
    /// Set when the caller left or broke the rules; the close code to send, if any.
    gone: Option<Option<(u16, &'static str)>>,
}

/// A rate limiter allowing `per_second` messages a second with a burst of as many.
pub(crate) fn limiter(per_second: u32) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate))
}

impl StreamLink {
    /// A link over the socket's read half; `outgoing` feeds the writer task.
    pub(crate) fn new(
        incoming: SplitStream<WebSocket>,
        outgoing: mpsc::Sender<Message>,
        writer: JoinHandle<()>,
        limiter: DefaultDirectRateLimiter,
        metrics: Metrics,
        rate: u32,
    ) -> Self {
        Self {
            incoming,
            outgoing,
            writer,
            limiter,
            metrics,
            samples: VecDeque::new(),
            frame_len: (rate / 50) as usize,
            max_buffered: (f64::from(rate) * MAX_BUFFERED.as_secs_f64()) as usize,
            gone: None,
        }
    }

    /// The client broke the protocol: tell it why (a short code), count it, close.
    fn refuse(&mut self, reason: &'static str, code: &'static str, close: u16) {
        self.metrics.stream_rejected(reason);
        self.note(CallNote::Error { code });
        self.gone = Some(Some((close, code)));
    }

    fn take(&mut self, message: Message) {
        match message {
            Message::Binary(bytes) => {
                if let Err(e) = decode_audio(&bytes, &mut self.samples) {
                    debug!(error = %e, "stream audio refused");
                    self.refuse("protocol", e.code(), CLOSE_POLICY);
                    return;
                }
                let excess = self.samples.len().saturating_sub(self.max_buffered);
                if excess > 0 {
                    self.samples.drain(..excess);
                    self.metrics
                        .media_frames_dropped_total
                        .with_label_values(&["stream_overflow"])
                        .inc();
                }
            }
            Message::Text(text) => match parse_control(text.as_str()) {
                Ok(Control::Stop) => self.gone = Some(Some((CLOSE_NORMAL, "stop"))),
                Err(e) => {
                    debug!(error = %e, "stream control refused");
                    self.refuse("protocol", e.code(), CLOSE_POLICY);
                }
            },
            Message::Close(_) => self.gone = Some(None),
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

/// Whether a read error is a message over the size limit.
pub(crate) fn is_too_big(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)))
}

impl CallerLink for StreamLink {
    async fn next_frame(&mut self, out: &mut Vec<i16>) -> anyhow::Result<Heard> {
        loop {
            if self.samples.len() >= self.frame_len {
                out.clear();
                out.extend(self.samples.drain(..self.frame_len));
                return Ok(Heard::Frame);
            }
            if self.gone.is_some() {
                return Ok(Heard::Gone);
            }
            match self.incoming.next().await {
                None => self.gone = Some(None),
                Some(Err(e)) => {
                    if is_too_big(e) {
                        self.refuse("too_big", "too_big", CLOSE_TOO_BIG);
                    } else {
                        self.gone = Some(None);
                    }
                }
                Some(Ok(message)) => {
                    if self.limiter.check().is_err() {
                        warn!("stream over its message rate: closing");
                        self.refuse("rate_limited", "rate_limited", CLOSE_POLICY);
                    } else {
                        self.take(message);
                    }
                }
            }
        }
    }

    fn note(&mut self, note: CallNote) {
        match serde_json::to_string(&note) {
            Ok(json) => {
                if self.outgoing.try_send(Message::Text(json.into())).is_err() {
                    debug!("stream event dropped: the client does not read");
                }
            }
            Err(e) => warn!(error = %e, "stream event not encoded"),
        }
    }

    async fn close(self, outcome: Outcome) {
        let (code, reason) = match self.gone {
            Some(Some(close)) => close,
            Some(None) => (CLOSE_NORMAL, "caller closed"),
            None => (CLOSE_NORMAL, outcome.as_str()),
        };
        let _ = self
            .outgoing
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
        drop(self.outgoing);
        finish_closing(self.incoming, self.writer).await;
    }
}

/// The server's half of the RFC 6455 closing handshake, once its close is queued: let the
/// writer send it, and read (discarding) until the client's close or the end of the
/// stream. Dropping the socket while the client still sends makes the kernel reset the
/// connection, and a reset can discard the close frame (and its code) before the client
/// reads it; a client flooding the stream would then never learn why it was closed.
pub(crate) async fn finish_closing(
    mut incoming: SplitStream<WebSocket>,
    mut writer: JoinHandle<()>,
) {
    let client_closed = async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let handshake = async {
        let _ = tokio::join!(&mut writer, client_closed);
    };
    if tokio::time::timeout(CLOSING_HANDSHAKE, handshake)
        .await
        .is_err()
    {
        debug!("stream closing handshake not completed in time");
        writer.abort();
    }
}

/// Sends what the call produces, in order, until a close message has gone out.
pub(crate) async fn write_all(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut outgoing: mpsc::Receiver<Message>,
) {
    use futures_util::SinkExt;
    while let Some(message) = outgoing.recv().await {
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Audio frames for the paced sender's sink: copies the L16 (little-endian) frame into a
/// binary message; a full queue drops the frame (counted by the sender as a send error).
pub(crate) fn audio_sink(
    outgoing: mpsc::Sender<Message>,
) -> impl FnMut(&[u8]) -> std::io::Result<()> + Send + 'static {
    move |frame: &[u8]| {
        outgoing
            .try_send(Message::Binary(axum::body::Bytes::copy_from_slice(frame)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::WouldBlock))
    }
}
