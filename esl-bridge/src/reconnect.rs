//! An inbound session that outlives its TCP connections: when FreeSWITCH restarts or the
//! network drops, a supervisor task logs in again with exponential backoff and jitter and
//! re-subscribes to the configured events.
//!
//! Commands are never queued across a reconnect: while disconnected they fail at once
//! with [`EslError::Closed`], because an `api` or `bgapi` replayed minutes later (an
//! `originate`, a `uuid_kill`) could do harm. The caller sees every change of state in
//! the event stream and decides.

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::command::Command;
use crate::connection::{BackgroundJob, EslError, EslHandle, Incoming, Response};
use crate::inbound::{InboundClient, InboundConfig};
use crate::message::ApiResponse;

/// What a [`ReconnectingClient`] reports.
#[derive(Debug)]
pub enum SessionEvent {
    /// Logged in (again) and subscribed; commands work.
    Connected,
    /// The connection ended; a new one is being attempted.
    Disconnected,
    /// A message from FreeSWITCH.
    Incoming(Incoming),
    /// A permanent failure (wrong password, ACL refusal, retries exhausted): the
    /// supervisor has stopped and the stream ends after this.
    GaveUp(EslError),
}

/// A supervised inbound session.
///
/// ```no_run
/// # async fn demo() {
/// use esl_bridge::command::Password;
/// use esl_bridge::inbound::InboundConfig;
/// use esl_bridge::reconnect::{ReconnectingClient, SessionEvent};
/// let mut session = ReconnectingClient::start(InboundConfig::new("127.0.0.1:8021", Password::new("ClueCon")));
/// while let Some(event) = session.next().await {
///     match event {
///         SessionEvent::Connected => println!("{:?}", session.api("status").await),
///         SessionEvent::GaveUp(e) => eprintln!("giving up: {e}"),
///         _ => {}
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct ReconnectingClient {
    current: watch::Receiver<Option<EslHandle>>,
    events: mpsc::Receiver<SessionEvent>,
    supervisor: JoinHandle<()>,
}

impl ReconnectingClient {
    /// Starts the supervisor; the first [`SessionEvent::Connected`] says when the session
    /// is usable. Must be called inside a Tokio runtime.
    pub fn start(config: InboundConfig) -> Self {
        let (handle_tx, current) = watch::channel(None);
        let (events_tx, events) = mpsc::channel(config.event_queue.max(1));
        let supervisor = tokio::spawn(supervise(config, handle_tx, events_tx));
        Self {
            current,
            events,
            supervisor,
        }
    }

    /// The live connection's handle, if connected now.
    pub fn handle(&self) -> Option<EslHandle> {
        self.current.borrow().clone()
    }

    /// The next event; `None` after [`SessionEvent::GaveUp`].
    pub async fn next(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// `api <command>` on the live connection; [`EslError::Closed`] while disconnected.
    pub async fn api(&self, command: impl Into<String>) -> Result<ApiResponse, EslError> {
        self.live()?.api(command).await
    }

    /// `bgapi <command>` on the live connection; [`EslError::Closed`] while disconnected.
    pub async fn bgapi(&self, command: impl Into<String>) -> Result<BackgroundJob, EslError> {
        self.live()?.bgapi(command).await
    }

    /// Any command on the live connection; [`EslError::Closed`] while disconnected.
    pub async fn send(&self, cmd: Command) -> Result<Response, EslError> {
        self.live()?.send(cmd).await
    }

    fn live(&self) -> Result<EslHandle, EslError> {
        self.handle().ok_or(EslError::Closed)
    }
}

impl Drop for ReconnectingClient {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

async fn supervise(
    config: InboundConfig,
    current: watch::Sender<Option<EslHandle>>,
    events: mpsc::Sender<SessionEvent>,
) {
    loop {
        let mut client = match InboundClient::connect_with_retry(config.clone()).await {
            Ok(client) => client,
            Err(e) => {
                error!(addr = %config.addr, error = %e, "ESL session gave up");
                let _ = events.send(SessionEvent::GaveUp(e)).await;
                return;
            }
        };
        info!(addr = %config.addr, "ESL session connected");
        current.send_replace(Some(client.handle()));
        if events.send(SessionEvent::Connected).await.is_err() {
            return;
        }
        while let Some(item) = client.next().await {
            if events.send(SessionEvent::Incoming(item)).await.is_err() {
                return;
            }
        }
        current.send_replace(None);
        info!(addr = %config.addr, "ESL session lost; reconnecting");
        if events.send(SessionEvent::Disconnected).await.is_err() {
            return;
        }
    }
}
