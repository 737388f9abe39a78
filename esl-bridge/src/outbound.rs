//! The outbound server: FreeSWITCH's dialplan runs `socket <our addr> async full` and
//! connects to us, one TCP connection per channel.
//!
//! Each accepted connection is handshaken in its own task (`connect` → channel data,
//! `myevents`, `linger`), so a slow or broken peer never delays another call.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

use crate::codec::EslCodec;
use crate::command::{Command, SendMsg, UnicastParams};
use crate::connection::{
    self, next_message, ok_reply, unexpected, EslCounters, EslError, EslHandle, Execution,
    Incoming, Response, TaskOptions,
};
use crate::event::{Event, EventFormat};
use crate::frame::{FrameLimits, Headers};
use crate::message::{ApiResponse, Message, Reply};

/// Settings of the outbound listener.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Where to listen; loopback by default.
    pub listen: SocketAddr,
    /// Peers allowed to connect (FreeSWITCH hosts); loopback by default.
    pub allow: Vec<IpNet>,
    /// Limit for `connect` → channel data → `myevents` → `linger`.
    pub handshake_timeout: Duration,
    /// `linger`: keep the socket after hang-up to receive CHANNEL_HANGUP_COMPLETE.
    pub linger: bool,
    /// After the linger notice, wait at most this long for CHANNEL_HANGUP_COMPLETE
    /// before sending `exit` (FreeSWITCH never closes a `linger` socket by itself).
    pub linger_exit_grace: Duration,
    /// Format of the channel's events.
    pub event_format: EventFormat,
    /// Capacity of each call's event queue.
    pub event_queue: usize,
    /// Capacity of the queue of handshaken calls waiting for [`CallStream::next`].
    pub call_queue: usize,
    /// Framing limits.
    pub limits: FrameLimits,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8084)),
            allow: vec![
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
                IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
            ],
            handshake_timeout: Duration::from_secs(5),
            linger: true,
            linger_exit_grace: Duration::from_secs(5),
            event_format: EventFormat::Plain,
            event_queue: 1024,
            call_queue: 64,
            limits: FrameLimits::default(),
        }
    }
}

/// Counters of the listener, for the engine to export.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Connections handshaken into a [`Call`].
    pub accepted: AtomicU64,
    /// Connections refused because the peer is not allow-listed.
    pub rejected_peers: AtomicU64,
    /// Connections whose handshake failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Calls dropped because nobody took them from the queue.
    pub calls_dropped: AtomicU64,
    /// Per-connection protocol counters, summed over all calls.
    pub connections: Arc<EslCounters>,
}

/// The bound listener.
#[derive(Debug)]
pub struct OutboundServer {
    listener: TcpListener,
    config: OutboundConfig,
    counters: Arc<ServerCounters>,
}

impl OutboundServer {
    /// Binds the listener.
    pub async fn bind(config: OutboundConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            config,
            counters: Arc::default(),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The listener's counters.
    pub fn counters(&self) -> Arc<ServerCounters> {
        self.counters.clone()
    }

    /// Starts accepting. Calls come out of the returned stream once handshaken; the
    /// accept loop ends when the stream is dropped.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use esl_bridge::outbound::{OutboundConfig, OutboundServer};
    /// let mut calls = OutboundServer::bind(OutboundConfig::default()).await?.serve();
    /// while let Some(mut call) = calls.next().await {
    ///     tokio::spawn(async move {
    ///         let _ = call.answer().await;
    ///         let _ = call.hangup("NORMAL_CLEARING").await;
    ///         while call.next_event().await.is_some() {}
    ///     });
    /// }
    /// # Ok(()) }
    /// ```
    pub fn serve(self) -> CallStream {
        let (tx, rx) = mpsc::channel(self.config.call_queue.max(1));
        let counters = self.counters.clone();
        tokio::spawn(accept_loop(self, tx));
        CallStream {
            calls: rx,
            counters,
        }
    }
}

/// Handshaken calls, in the order their handshakes finished.
#[derive(Debug)]
pub struct CallStream {
    calls: mpsc::Receiver<Call>,
    counters: Arc<ServerCounters>,
}

impl CallStream {
    /// The next call; `None` if the listener failed.
    pub async fn next(&mut self) -> Option<Call> {
        self.calls.recv().await
    }

    /// The listener's counters.
    pub fn counters(&self) -> Arc<ServerCounters> {
        self.counters.clone()
    }
}

async fn accept_loop(server: OutboundServer, calls: mpsc::Sender<Call>) {
    let OutboundServer {
        listener,
        config,
        counters,
    } = server;
    let config = Arc::new(config);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = calls.closed() => return,
        };
        if !config.allow.iter().any(|net| net.contains(&peer.ip())) {
            counters.rejected_peers.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, "refusing ESL connection from a peer not in the allow-list");
            drop(stream);
            continue;
        }
        let (config, counters, calls) = (config.clone(), counters.clone(), calls.clone());
        tokio::spawn(async move {
            match handshake(stream, peer, &config, counters.connections.clone()).await {
                Ok(call) => {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    info!(%peer, uuid = %call.channel.unique_id, "call handshaken");
                    if calls.try_send(call).is_err() {
                        counters.calls_dropped.fetch_add(1, Ordering::Relaxed);
                        warn!(%peer, "call queue full or closed; dropping the call");
                    }
                }
                Err(e) => {
                    counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    warn!(%peer, error = %e, "ESL outbound handshake failed");
                }
            }
        });
    }
}

/// Handshakes one accepted connection into a [`Call`]. [`OutboundServer::serve`] does
/// this for you; it is public for custom accept loops and tests.
pub async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    config: &OutboundConfig,
    counters: Arc<EslCounters>,
) -> Result<Call, EslError> {
    stream.set_nodelay(true)?;
    handshake_io(stream, peer, config, counters).await
}

async fn handshake_io<S>(
    stream: S,
    peer: SocketAddr,
    config: &OutboundConfig,
    counters: Arc<EslCounters>,
) -> Result<Call, EslError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut framed = Framed::new(stream, EslCodec::new(config.limits));
    let channel = tokio::time::timeout(config.handshake_timeout, async {
        framed.send(&Command::Connect).await?;
        match next_message(&mut framed).await? {
            Message::CommandReply(reply) if reply.is_ok() => ChannelData::from_reply(&reply),
            other => Err(unexpected("connect", &other)),
        }
    })
    .await
    .map_err(|_| EslError::Timeout("channel data after connect"))??;

    let options = TaskOptions {
        event_queue: config.event_queue,
        exit_after_linger: config.linger.then_some(config.linger_exit_grace),
        close_grace: Duration::from_secs(2),
    };
    let (handle, incoming) = connection::spawn(framed, options, counters);
    let subscribe = async {
        ok_reply(
            handle
                .send(Command::MyEvents {
                    uuid: None,
                    format: config.event_format,
                })
                .await?,
        )?;
        if config.linger {
            ok_reply(handle.send(Command::Linger(None)).await?)?;
        }
        Ok::<_, EslError>(())
    };
    tokio::time::timeout(config.handshake_timeout, subscribe)
        .await
        .map_err(|_| EslError::Timeout("myevents/linger replies"))??;
    Ok(Call {
        handle,
        incoming,
        channel,
        peer,
    })
}

/// What FreeSWITCH told us about the channel in its `connect` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelData {
    /// `Unique-ID`: the channel UUID.
    pub unique_id: String,
    /// `Channel-Name`, e.g. `sofia/internal/+4930123456@127.0.0.1`.
    pub channel_name: String,
    /// `Caller-Caller-ID-Number` (personal data: hash before logging).
    pub caller_id_number: String,
    /// `Caller-Caller-ID-Name` (personal data).
    pub caller_id_name: String,
    /// `Caller-Destination-Number`: the DID dialled.
    pub destination_number: String,
    /// `Channel-Read-Codec-Name`, e.g. `PCMU`, `G722`, `OPUS`.
    pub read_codec: String,
    /// `Channel-Read-Codec-Rate`: the rate of unicast L16 audio (8000, 16000, 48000).
    pub read_rate: u32,
    /// Every `variable_*`, without the prefix.
    pub variables: BTreeMap<String, String>,
    /// All headers, decoded.
    pub headers: Headers,
}

impl ChannelData {
    /// Reads the channel data from a decoded `connect` reply.
    pub fn from_reply(reply: &Reply) -> Result<Self, EslError> {
        let h = &reply.headers;
        let required = |name: &'static str| {
            h.get(name).map(str::to_owned).ok_or(EslError::Unexpected {
                step: "connect",
                got: format!("channel data without {name}"),
            })
        };
        let rate = h.get("Channel-Read-Codec-Rate").unwrap_or("8000");
        let read_rate = rate.parse().map_err(|_| EslError::Unexpected {
            step: "connect",
            got: format!("Channel-Read-Codec-Rate {rate:?}"),
        })?;
        Ok(Self {
            unique_id: required("Unique-ID")?,
            channel_name: h.get("Channel-Name").unwrap_or_default().to_owned(),
            caller_id_number: h
                .get("Caller-Caller-ID-Number")
                .unwrap_or_default()
                .to_owned(),
            caller_id_name: h
                .get("Caller-Caller-ID-Name")
                .unwrap_or_default()
                .to_owned(),
            destination_number: h
                .get("Caller-Destination-Number")
                .unwrap_or_default()
                .to_owned(),
            read_codec: h
                .get("Channel-Read-Codec-Name")
                .unwrap_or_default()
                .to_owned(),
            read_rate,
            variables: h
                .iter()
                .filter_map(|(n, v)| {
                    n.strip_prefix("variable_")
                        .map(|n| (n.to_owned(), v.to_owned()))
                })
                .collect(),
            headers: h.clone(),
        })
    }
}

/// One channel under our control.
#[derive(Debug)]
pub struct Call {
    handle: EslHandle,
    incoming: mpsc::Receiver<Incoming>,
    channel: ChannelData,
    peer: SocketAddr,
}

impl Call {
    /// The channel data from the `connect` reply.
    pub fn channel(&self) -> &ChannelData {
        &self.channel
    }

    /// The FreeSWITCH address that connected.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Answers the channel and waits until `answer` has completed.
    pub async fn answer(&self) -> Result<(), EslError> {
        self.execute("answer", None)
            .await?
            .completed()
            .await
            .map(|_| ())
    }

    /// Runs a dialplan application; await [`Execution::completed`] for its end.
    pub async fn execute(&self, app: &str, arg: Option<&str>) -> Result<Execution, EslError> {
        self.handle.execute(None, app, arg).await
    }

    /// Hangs the channel up with a cause such as `NORMAL_CLEARING`.
    pub async fn hangup(&self, cause: &str) -> Result<(), EslError> {
        ok_reply(self.handle.send(Command::hangup(cause)).await?).map(|_| ())
    }

    /// Points the channel's audio at a UDP leg (see [`crate::media`]).
    pub async fn start_unicast(&self, params: UnicastParams) -> Result<(), EslError> {
        let cmd = Command::SendMsg {
            uuid: None,
            msg: SendMsg::Unicast(params),
        };
        ok_reply(self.handle.send(cmd).await?).map(|_| ())
    }

    /// `api <command>`.
    pub async fn api(&self, command: impl Into<String>) -> Result<ApiResponse, EslError> {
        self.handle.api(command).await
    }

    /// Any command.
    pub async fn send(&self, cmd: Command) -> Result<Response, EslError> {
        self.handle.send(cmd).await
    }

    /// The next event of this channel (or disconnect notice); `None` once the
    /// connection has ended (after hang-up, the linger events and `exit`).
    pub async fn next_event(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Waits for the next event named `name`, passing over others.
    pub async fn wait_for(&mut self, name: &str) -> Option<Event> {
        while let Some(item) = self.incoming.recv().await {
            if let Incoming::Event(e) = item {
                if e.name() == Some(name) {
                    return Some(e);
                }
            }
        }
        None
    }

    /// A handle for sending commands from other tasks.
    pub fn handle(&self) -> EslHandle {
        self.handle.clone()
    }

    /// Ends our control: sends `exit` and waits for FreeSWITCH to close.
    pub async fn exit(mut self) -> Result<(), EslError> {
        let reply = self.handle.send(Command::Exit).await;
        while self.incoming.recv().await.is_some() {}
        debug!(uuid = %self.channel.unique_id, "outbound session closed");
        reply.map(|_| ())
    }
}
