//! The inbound client: we connect to FreeSWITCH's `mod_event_socket` (port 8021).

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tracing::warn;

use crate::codec::EslCodec;
use crate::command::{Command, Password};
use crate::connection::{
    self, next_message, ok_reply, unexpected, BackgroundJob, EslCounters, EslError, EslHandle,
    Incoming, Response, TaskOptions,
};
use crate::event::EventFormat;
use crate::frame::FrameLimits;
use crate::message::{ApiResponse, Message};

/// How to reach and log in to FreeSWITCH.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// `host:port` of `mod_event_socket`.
    pub addr: String,
    /// The event socket password.
    pub password: Password,
    /// Events to subscribe to right after login (re-sent on every reconnect).
    pub events: Option<(EventFormat, Vec<String>)>,
    /// Limit for TCP connect, banner and login together.
    pub login_timeout: Duration,
    /// Retry policy of [`InboundClient::connect_with_retry`].
    pub retry: RetryPolicy,
    /// Capacity of the incoming-event queue.
    pub event_queue: usize,
    /// Framing limits.
    pub limits: FrameLimits,
}

impl InboundConfig {
    /// Defaults for `addr` with `password`: 5 s login timeout, no subscription.
    pub fn new(addr: impl Into<String>, password: Password) -> Self {
        Self {
            addr: addr.into(),
            password,
            events: None,
            login_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            event_queue: 4096,
            limits: FrameLimits::default(),
        }
    }
}

/// Exponential backoff with jitter between connection attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay.
    pub min_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Attempts after the first; `None` retries for ever.
    pub max_retries: Option<usize>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_retries: None,
        }
    }
}

impl EslError {
    /// Worth another attempt: the network or FreeSWITCH may come back. A refused
    /// password or ACL will not change by retrying.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Io(_) | Self::Closed | Self::Timeout(_) | Self::Frame(_)
        )
    }
}

/// A logged-in inbound connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), esl_bridge::connection::EslError> {
/// use esl_bridge::command::Password;
/// use esl_bridge::inbound::{InboundClient, InboundConfig};
/// let mut client = InboundClient::connect(InboundConfig::new("127.0.0.1:8021", Password::new("ClueCon"))).await?;
/// println!("{}", client.api("status").await?.text());
/// let job = client.bgapi("originate loopback/9998 &park()").await?;
/// println!("{}", job.result().await?.text());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct InboundClient {
    handle: EslHandle,
    incoming: mpsc::Receiver<Incoming>,
}

impl InboundClient {
    /// One attempt: connect, read the banner, log in, subscribe.
    pub async fn connect(config: InboundConfig) -> Result<Self, EslError> {
        tokio::time::timeout(config.login_timeout, Self::login(&config))
            .await
            .map_err(|_| EslError::Timeout("login"))?
    }

    /// Like [`connect`](Self::connect), retrying transient failures with exponential
    /// backoff and jitter. A wrong password is returned at once.
    pub async fn connect_with_retry(config: InboundConfig) -> Result<Self, EslError> {
        let policy = config.retry;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_jitter();
        backoff = match policy.max_retries {
            Some(n) => backoff.with_max_times(n),
            None => backoff.without_max_times(),
        };
        (|| Self::connect(config.clone()))
            .retry(backoff)
            .when(EslError::is_transient)
            .notify(|e, delay| warn!(error = %e, ?delay, addr = %config.addr, "ESL connect failed; retrying"))
            .await
    }

    async fn login(config: &InboundConfig) -> Result<Self, EslError> {
        let stream = TcpStream::connect(&config.addr).await?;
        stream.set_nodelay(true)?;
        let mut framed = Framed::new(stream, EslCodec::new(config.limits));
        match next_message(&mut framed).await? {
            Message::AuthRequest => {}
            Message::RudeRejection(text) => return Err(EslError::RudeRejection(text)),
            other => return Err(unexpected("banner", &other)),
        }
        framed.send(&Command::Auth(config.password.clone())).await?;
        match next_message(&mut framed).await? {
            Message::CommandReply(r) if r.is_ok() => {}
            Message::CommandReply(r) => return Err(EslError::AuthRejected { reply: r.text }),
            other => return Err(unexpected("auth", &other)),
        }
        let options = TaskOptions {
            event_queue: config.event_queue,
            exit_after_linger: None,
            close_grace: Duration::from_secs(2),
        };
        let (handle, incoming) = connection::spawn(framed, options, Arc::default());
        if let Some((format, names)) = &config.events {
            let subscribe = Command::Event {
                format: *format,
                names: names.clone(),
            };
            ok_reply(handle.send(subscribe).await?)?;
        }
        Ok(Self { handle, incoming })
    }

    /// `api <command>`.
    pub async fn api(&self, command: impl Into<String>) -> Result<ApiResponse, EslError> {
        self.handle.api(command).await
    }

    /// `bgapi <command>`; await [`BackgroundJob::result`] for the output.
    pub async fn bgapi(&self, command: impl Into<String>) -> Result<BackgroundJob, EslError> {
        self.handle.bgapi(command).await
    }

    /// Any command, answered by its reply.
    pub async fn send(&self, cmd: Command) -> Result<Response, EslError> {
        self.handle.send(cmd).await
    }

    /// The next event, log line or disconnect notice; `None` once the connection ended.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// A handle for sending commands from other tasks.
    pub fn handle(&self) -> EslHandle {
        self.handle.clone()
    }

    /// The connection's counters.
    pub fn counters(&self) -> Arc<EslCounters> {
        self.handle.counters().clone()
    }

    /// `exit`, then waits until FreeSWITCH has closed the socket.
    pub async fn exit(mut self) -> Result<(), EslError> {
        let reply = self.handle.send(Command::Exit).await;
        while self.incoming.recv().await.is_some() {}
        reply.map(|_| ())
    }
}
