//! The async shell: our UDP socket, the receiver, and the `unicast` parameters.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;

use super::counters::MediaCounters;
use super::format::{Encoding, MediaFormat};
use super::sender::{UdpSink, UnicastSender};
use super::MediaError;
use crate::command::UnicastParams;

/// Default playout queue: 5 s of audio (at 48 kHz that is 480 KB, preallocated).
pub const DEFAULT_QUEUE_FRAMES: usize = 250;

/// Largest datagram we read whole; anything longer than a frame is dropped anyway, this
/// only has to exceed the largest valid size (1920 B) so oversize shows as a wrong size.
const RECV_BUFFER_BYTES: usize = 4096;

/// How to open a [`UnicastLeg`].
///
/// ```
/// use std::net::{Ipv4Addr, SocketAddr};
/// use esl_bridge::media::{MediaFormat, UnicastConfig};
///
/// let fs = SocketAddr::from((Ipv4Addr::LOCALHOST, 9000));
/// let config = UnicastConfig::new(MediaFormat::L16_8K, fs);
/// assert_eq!(config.bind, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnicastConfig {
    /// Stream format; must match the channel's codec (see [`MediaFormat`]).
    pub format: MediaFormat,
    /// Our socket (`remote-ip`/`remote-port` in the sendmsg). Port 0 picks a free one.
    /// Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// The address FreeSWITCH should send to, when `bind` is a wildcard (`0.0.0.0`).
    pub advertise_ip: Option<IpAddr>,
    /// FreeSWITCH's side (`local-ip`/`local-port`): it binds this after the sendmsg, sends
    /// the caller's audio from it and plays what arrives on it. Only datagrams from this
    /// address are accepted. We choose it; see [`free_udp_port`].
    pub freeswitch: SocketAddr,
    /// Playout queue capacity in 20 ms frames (default [`DEFAULT_QUEUE_FRAMES`]).
    pub queue_frames: usize,
}

impl UnicastConfig {
    /// Defaults: our socket on `127.0.0.1:0`, a 5 s playout queue.
    pub fn new(format: MediaFormat, freeswitch: SocketAddr) -> Self {
        Self {
            format,
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            advertise_ip: None,
            freeswitch,
            queue_frames: DEFAULT_QUEUE_FRAMES,
        }
    }
}

/// Find a UDP port on `ip` that is free right now, for FreeSWITCH's side of the stream.
///
/// FreeSWITCH binds `local-port` itself when it runs the `unicast` sendmsg, so we must
/// name one. This binds port 0, reads the port the OS chose and releases it. **Race:**
/// another process may take the port before FreeSWITCH binds it; FreeSWITCH then fails
/// to start the stream (no audio arrives). Callers that can should use a reserved range
/// instead, or retry with a new port when no audio arrives.
///
/// # Errors
/// The bind error, e.g. when `ip` is not a local address.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
///
/// let port = esl_bridge::media::free_udp_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
/// assert_ne!(port, 0);
/// ```
pub fn free_udp_port(ip: IpAddr) -> io::Result<u16> {
    let socket = std::net::UdpSocket::bind((ip, 0))?;
    Ok(socket.local_addr()?.port())
}

/// The media path of one call: a UDP socket exchanging 20 ms frames with FreeSWITCH's
/// `unicast`.
///
/// Open it, send [`params`](Self::params) as the `unicast` sendmsg (the owner's `Call`
/// does that), then [`split`](Self::split) it into a receiver (caller audio) and a paced
/// sender (bot audio). Play **all** bot audio through the sender: any `playback` on the
/// channel ends unicast for good (FreeSWITCH's park loop stops and never restarts it).
///
/// ```
/// use esl_bridge::media::{MediaFormat, UnicastConfig, UnicastLeg};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), esl_bridge::media::MediaError> {
/// // Stand-in for FreeSWITCH's unicast socket.
/// let fs = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
/// let leg = UnicastLeg::bind(UnicastConfig::new(MediaFormat::L16_8K, fs.local_addr()?)).await?;
/// let params = leg.params(); // -> Command::SendMsg { uuid: None, msg: SendMsg::Unicast(params) }
/// assert_eq!(params.local_port, fs.local_addr()?.port());
/// assert_eq!(params.remote_port, leg.local_addr().port());
///
/// let ours = leg.local_addr();
/// let (mut rx, tx) = leg.split()?;
/// fs.send_to(&[0u8; 320], ours).await?;
/// let frame = rx.recv().await?;
/// assert_eq!(frame.bytes().len(), 320);
///
/// tx.push_samples(&[0i16; 160])?;
/// let mut buf = [0u8; 2048];
/// let (n, from) = fs.recv_from(&mut buf).await?;
/// assert_eq!((n, from), (320, ours));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct UnicastLeg {
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    params: UnicastParams,
    config: UnicastConfig,
    counters: Arc<MediaCounters>,
}

impl UnicastLeg {
    /// Bind our UDP socket.
    ///
    /// # Errors
    /// [`MediaError::Bind`] if the socket cannot be bound; [`MediaError::Config`] if `bind`
    /// is a wildcard without `advertise_ip`, FreeSWITCH's port is 0, or the queue is empty.
    pub async fn bind(config: UnicastConfig) -> Result<Self, MediaError> {
        if config.freeswitch.port() == 0 {
            return Err(MediaError::Config(
                "FreeSWITCH's unicast port must not be 0",
            ));
        }
        if config.queue_frames == 0 {
            return Err(MediaError::Config("queue_frames must be at least 1"));
        }
        let remote_ip = match config.advertise_ip {
            Some(ip) => ip,
            None if config.bind.ip().is_unspecified() => {
                return Err(MediaError::Config(
                    "bind is a wildcard address: set advertise_ip",
                ))
            }
            None => config.bind.ip(),
        };
        let socket = UdpSocket::bind(config.bind)
            .await
            .map_err(|source| MediaError::Bind {
                addr: config.bind,
                source,
            })?;
        let local_addr = socket.local_addr()?;
        let params = UnicastParams {
            local_ip: config.freeswitch.ip(),
            local_port: config.freeswitch.port(),
            remote_ip,
            remote_port: local_addr.port(),
            native: config.format.is_native(),
        };
        Ok(Self {
            socket: Arc::new(socket),
            local_addr,
            params,
            config,
            counters: Arc::new(MediaCounters::default()),
        })
    }

    /// The `unicast` sendmsg parameters that point FreeSWITCH at this leg.
    pub fn params(&self) -> UnicastParams {
        self.params
    }

    /// Our socket's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The stream format.
    pub fn format(&self) -> MediaFormat {
        self.config.format
    }

    /// The leg's counters (shared with both halves after [`split`](Self::split)).
    pub fn counters(&self) -> Arc<MediaCounters> {
        self.counters.clone()
    }

    /// Split into the receiver and the paced sender (this starts the pacing task).
    ///
    /// # Errors
    /// [`MediaError::NoRuntime`] outside a Tokio runtime.
    pub fn split(self) -> Result<(UnicastReceiver, UnicastSender), MediaError> {
        let sink = UdpSink {
            socket: self.socket.clone(),
            to: self.config.freeswitch,
        };
        let sender = UnicastSender::spawn(
            self.config.format,
            self.config.queue_frames,
            sink,
            self.counters.clone(),
        )?;
        let receiver = UnicastReceiver {
            socket: self.socket,
            freeswitch: self.config.freeswitch,
            format: self.config.format,
            counters: self.counters,
            buf: vec![0; RECV_BUFFER_BYTES].into_boxed_slice(),
        };
        Ok((receiver, sender))
    }
}

/// One frame of caller audio, borrowed from the receiver's buffer until the next `recv`.
#[derive(Debug, Clone, Copy)]
pub struct InboundFrame<'a> {
    bytes: &'a [u8],
    cng: bool,
    format: MediaFormat,
}

impl<'a> InboundFrame<'a> {
    /// The payload: L16 little-endian, or µ-law/A-law in native mode. Always exactly
    /// [`MediaFormat::frame_bytes`] long.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// A "no media yet" frame: FreeSWITCH sends all-`0xFF` frames before the first RTP
    /// packet (3 of them, ~60 ms, in every capture). In L16 that is sample value -1 and
    /// the bytes are delivered as is; in native mode FreeSWITCH sends them at the *decoded*
    /// size (320 B for PCMU), so they are delivered as one frame of codec silence instead.
    pub fn is_cng(&self) -> bool {
        self.cng
    }

    /// The samples, for L16; `None` in native mode (decode G.711 yourself).
    pub fn samples(&self) -> Option<impl Iterator<Item = i16> + 'a> {
        let bytes = self.bytes;
        (self.format.encoding() == Encoding::L16).then(|| {
            bytes
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        })
    }
}

/// The receiving half of a [`UnicastLeg`]: caller audio from FreeSWITCH.
///
/// Only datagrams from FreeSWITCH's unicast address are accepted (others are counted as
/// `wrong_source`); datagrams that are not exactly one frame are counted as
/// `dropped_bad_size`. Neither is an error: the stream goes on.
#[derive(Debug)]
pub struct UnicastReceiver {
    socket: Arc<UdpSocket>,
    freeswitch: SocketAddr,
    format: MediaFormat,
    counters: Arc<MediaCounters>,
    buf: Box<[u8]>,
}

impl UnicastReceiver {
    /// Wait for the next frame from FreeSWITCH.
    ///
    /// Cancel-safe (nothing is lost if the future is dropped before it completes), so it
    /// can sit in a `select!` with the call's other inputs. There is no timeout here: use
    /// `tokio::time::timeout` to notice a stream that stopped (e.g. after a `playback`).
    ///
    /// # Errors
    /// [`MediaError::Io`] on a socket error other than the transient
    /// "connection refused/reset" that an ICMP error can leave on a UDP socket (those are
    /// counted in `recv_errors` and skipped).
    pub async fn recv(&mut self) -> Result<InboundFrame<'_>, MediaError> {
        let frame_bytes = self.format.frame_bytes();
        let len = loop {
            let (len, from) = match self.socket.recv_from(&mut self.buf).await {
                Ok(got) => got,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    MediaCounters::inc(&self.counters.recv_errors);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if !is_from(self.freeswitch, from) {
                MediaCounters::inc(&self.counters.wrong_source);
                tracing::debug!(%from, expected = %self.freeswitch, "unicast datagram from a stranger");
                continue;
            }
            if len == frame_bytes {
                break len;
            }
            if self.format.is_native()
                && len == self.format.decoded_frame_bytes()
                && all_ff(self.buf.get(..len).unwrap_or_default())
            {
                // Native-mode CNG comes at the decoded size; deliver one frame of silence.
                let silence = self.format.silence_byte();
                if let Some(frame) = self.buf.get_mut(..frame_bytes) {
                    frame.fill(silence);
                }
                MediaCounters::inc(&self.counters.cng_frames);
                MediaCounters::inc(&self.counters.frames_in);
                return Ok(InboundFrame {
                    bytes: self.buf.get(..frame_bytes).unwrap_or_default(),
                    cng: true,
                    format: self.format,
                });
            }
            MediaCounters::inc(&self.counters.dropped_bad_size);
            tracing::debug!(
                len,
                expected = frame_bytes,
                "unicast datagram of the wrong size"
            );
        };
        let bytes = self.buf.get(..len).unwrap_or_default();
        let cng = all_ff(bytes);
        if cng {
            MediaCounters::inc(&self.counters.cng_frames);
        }
        MediaCounters::inc(&self.counters.frames_in);
        Ok(InboundFrame {
            bytes,
            cng,
            format: self.format,
        })
    }

    /// The stream format.
    pub fn format(&self) -> MediaFormat {
        self.format
    }

    /// The counters this receiver updates.
    pub fn counters(&self) -> &Arc<MediaCounters> {
        &self.counters
    }
}

/// FreeSWITCH's unicast socket sends from the address it binds; a wildcard `local-ip`
/// means any of the host's addresses, so then only the port is checked.
fn is_from(expected: SocketAddr, from: SocketAddr) -> bool {
    from.port() == expected.port()
        && (expected.ip().is_unspecified()
            || expected.ip().to_canonical() == from.ip().to_canonical())
}

fn all_ff(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|b| *b == 0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn source_check() {
        let fs = SocketAddr::from((Ipv4Addr::LOCALHOST, 9000));
        assert!(is_from(fs, fs));
        assert!(!is_from(fs, SocketAddr::from((Ipv4Addr::LOCALHOST, 9001))));
        assert!(!is_from(
            fs,
            SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 9000))
        ));
        let mapped = SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 9000));
        assert!(is_from(fs, mapped));
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9000));
        assert!(is_from(any, SocketAddr::from((Ipv6Addr::LOCALHOST, 9000))));
        assert!(!is_from(any, SocketAddr::from((Ipv6Addr::LOCALHOST, 9001))));
    }

    #[test]
    fn cng_detection() {
        assert!(all_ff(&[0xFF; 320]));
        assert!(!all_ff(&[]));
        let mut frame = [0xFF; 320];
        frame[319] = 0xFE;
        assert!(!all_ff(&frame));
    }
}
