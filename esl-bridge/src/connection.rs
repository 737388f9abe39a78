//! The async shell around the codec shared by the inbound client and the outbound server:
//! one task owns the socket; handles send it commands over a channel.
//!
//! ESL answers commands strictly in order, so replies are matched to a FIFO of waiters.
//! Two kinds of answer come later, as events, and are matched by id instead: a `bgapi`'s
//! BACKGROUND_JOB (by `Job-UUID`) and an `execute`'s CHANNEL_EXECUTE_COMPLETE (by the
//! `Event-UUID` we chose, echoed as `Application-UUID`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tracing::{debug, warn};

use crate::codec::{EncodeError, EslCodec};
use crate::command::{Command, CommandError, SendMsg};
use crate::event::{Event, EventFormat};
use crate::frame::FrameError;
use crate::message::{ApiResponse, DisconnectNotice, Disposition, LogLine, Message, Reply};

/// Errors of the async client and server.
#[derive(Debug, thiserror::Error)]
pub enum EslError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// FreeSWITCH sent bytes that cannot be framed; the connection was dropped.
    #[error("protocol framing error: {0}")]
    Frame(#[from] FrameError),
    /// The command cannot be put on the wire.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// `auth` was answered with `-ERR`.
    #[error("authentication rejected: {reply}")]
    AuthRejected {
        /// FreeSWITCH's reply text, e.g. `-ERR invalid`.
        reply: String,
    },
    /// FreeSWITCH refused the peer by ACL (`text/rude-rejection`).
    #[error("rejected by FreeSWITCH's access list: {0}")]
    RudeRejection(String),
    /// A command that must succeed was answered with `-ERR`.
    #[error("command failed: {reply}")]
    CommandFailed {
        /// FreeSWITCH's reply text.
        reply: String,
    },
    /// The connection ended before the answer arrived.
    #[error("connection closed")]
    Closed,
    /// A step did not finish in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// FreeSWITCH sent something else than the protocol step expects.
    #[error("unexpected message during {step}: {got}")]
    Unexpected {
        /// The protocol step.
        step: &'static str,
        /// A short description of what arrived.
        got: String,
    },
}

impl From<EncodeError> for EslError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::Command(c) => Self::Command(c),
            EncodeError::Io(io) => Self::Io(io),
        }
    }
}

/// What a connection delivers besides command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An event.
    Event(Event),
    /// A `log/data` line.
    Log(LogLine),
    /// FreeSWITCH is ending the session (or, with linger, the channel).
    Disconnect(DisconnectNotice),
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `command/reply`.
    Reply(Reply),
    /// `api/response`.
    Api(ApiResponse),
}

impl Response {
    /// The reply text or api body, for messages and logs.
    pub fn text(&self) -> &str {
        match self {
            Self::Reply(r) => &r.text,
            Self::Api(a) => a.text(),
        }
    }
}

/// Counters of one connection or of a whole server, for the engine to export.
#[derive(Debug, Default)]
pub struct EslCounters {
    /// Well-framed messages that could not be understood (skipped).
    pub malformed_messages: AtomicU64,
    /// Connections dropped because the byte stream could not be framed.
    pub framing_errors: AtomicU64,
    /// Events dropped because the consumer did not keep up.
    pub events_dropped: AtomicU64,
    /// Replies that arrived with no command waiting for them.
    pub unexpected_replies: AtomicU64,
}

impl EslCounters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Options of one connection's task.
#[derive(Debug, Clone)]
pub(crate) struct TaskOptions {
    /// Capacity of the incoming-event queue; when full, new events are dropped and counted.
    pub event_queue: usize,
    /// Outbound mode: after a linger disconnect notice, send `exit` once
    /// CHANNEL_HANGUP_COMPLETE has arrived, or after this grace period at the latest.
    pub exit_after_linger: Option<Duration>,
    /// How long to wait for FreeSWITCH to close after we sent `exit`.
    pub close_grace: Duration,
}

type ReplyTx = oneshot::Sender<Result<Response, EslError>>;

enum Op {
    Send {
        cmd: Command,
        reply: ReplyTx,
        /// Resolved by the BACKGROUND_JOB of a bgapi.
        job: Option<oneshot::Sender<Event>>,
        /// Resolved by CHANNEL_EXECUTE_COMPLETE with this Application-UUID.
        execution: Option<(String, oneshot::Sender<Event>)>,
    },
}

struct Pending {
    reply: Option<ReplyTx>,
    job: Option<oneshot::Sender<Event>>,
}

/// A cloneable handle for sending commands on a connection.
#[derive(Debug, Clone)]
pub struct EslHandle {
    ops: mpsc::Sender<Op>,
    counters: Arc<EslCounters>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Op::Send { cmd, .. } = self;
        f.debug_struct("Op")
            .field("cmd", cmd)
            .finish_non_exhaustive()
    }
}

/// A `bgapi` in flight: the Job-UUID now, the result when FreeSWITCH has run it.
#[derive(Debug)]
pub struct BackgroundJob {
    /// The Job-UUID FreeSWITCH assigned.
    pub job_uuid: String,
    result: oneshot::Receiver<Event>,
}

impl BackgroundJob {
    /// Waits for the BACKGROUND_JOB event; its body is the command's output
    /// (`+OK <uuid>\n`, `-ERR NO_ROUTE_DESTINATION\n`, …).
    pub async fn result(self) -> Result<ApiResponse, EslError> {
        let event = self.result.await.map_err(|_| EslError::Closed)?;
        Ok(ApiResponse {
            body: event.body().unwrap_or_default().to_owned(),
        })
    }
}

/// An application started with `execute`, whose completion can be awaited.
#[derive(Debug)]
pub struct Execution {
    /// The `Event-UUID` sent, echoed as `Application-UUID`.
    pub application_uuid: String,
    complete: oneshot::Receiver<Event>,
}

impl Execution {
    /// Waits for CHANNEL_EXECUTE_COMPLETE; returns `Application-Response`
    /// (e.g. `FILE PLAYED`, `_none_`) and the whole event.
    pub async fn completed(self) -> Result<(String, Event), EslError> {
        let event = self.complete.await.map_err(|_| EslError::Closed)?;
        let response = event
            .header("Application-Response")
            .unwrap_or_default()
            .to_owned();
        Ok((response, event))
    }
}

impl EslHandle {
    /// Sends a command and waits for its reply (`command/reply` or `api/response`).
    pub async fn send(&self, cmd: Command) -> Result<Response, EslError> {
        self.submit(cmd, None, None).await
    }

    /// `api <command>`; FreeSWITCH's `-ERR` output is returned as the body, not an error.
    pub async fn api(&self, command: impl Into<String>) -> Result<ApiResponse, EslError> {
        match self.send(Command::api(command)).await? {
            Response::Api(api) => Ok(api),
            Response::Reply(r) => Err(EslError::Unexpected {
                step: "api",
                got: format!("command/reply {:?}", r.text),
            }),
        }
    }

    /// `bgapi <command>`: returns once FreeSWITCH has queued the job. Subscribes to
    /// BACKGROUND_JOB first if the connection is not yet listening for it.
    pub async fn bgapi(&self, command: impl Into<String>) -> Result<BackgroundJob, EslError> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::BgApi {
            command: command.into(),
            job_uuid: None,
        };
        let reply = ok_reply(self.submit(cmd, Some(tx), None).await?)?;
        let job_uuid = reply.job_uuid().ok_or_else(|| EslError::Unexpected {
            step: "bgapi",
            got: "reply without Job-UUID".into(),
        })?;
        Ok(BackgroundJob {
            job_uuid: job_uuid.to_owned(),
            result: rx,
        })
    }

    /// `sendmsg [uuid]` execute of `app`; await [`Execution::completed`] for the end.
    pub async fn execute(
        &self,
        uuid: Option<&str>,
        app: &str,
        arg: Option<&str>,
    ) -> Result<Execution, EslError> {
        let application_uuid = uuid::Uuid::new_v4().to_string();
        let cmd = Command::SendMsg {
            uuid: uuid.map(str::to_owned),
            msg: SendMsg::Execute {
                app: app.to_owned(),
                arg: arg.map(str::to_owned),
                event_uuid: Some(application_uuid.clone()),
                event_lock: false,
                loops: None,
            },
        };
        let (tx, rx) = oneshot::channel();
        let execution = Some((application_uuid.clone(), tx));
        ok_reply(self.submit(cmd, None, execution).await?)?;
        Ok(Execution {
            application_uuid,
            complete: rx,
        })
    }

    /// The connection's counters.
    pub fn counters(&self) -> &Arc<EslCounters> {
        &self.counters
    }

    /// True once the connection's task has ended.
    pub fn is_closed(&self) -> bool {
        self.ops.is_closed()
    }

    async fn submit(
        &self,
        cmd: Command,
        job: Option<oneshot::Sender<Event>>,
        execution: Option<(String, oneshot::Sender<Event>)>,
    ) -> Result<Response, EslError> {
        let (reply, rx) = oneshot::channel();
        self.ops
            .send(Op::Send {
                cmd,
                reply,
                job,
                execution,
            })
            .await
            .map_err(|_| EslError::Closed)?;
        rx.await.map_err(|_| EslError::Closed)?
    }
}

/// `Ok` for a `+OK` command/reply, the reply text as an error otherwise.
pub(crate) fn ok_reply(response: Response) -> Result<Reply, EslError> {
    match response {
        Response::Reply(r) if r.is_ok() => Ok(r),
        Response::Reply(r) => Err(EslError::CommandFailed { reply: r.text }),
        Response::Api(a) => Err(EslError::Unexpected {
            step: "command",
            got: format!("api/response {:?}", a.text()),
        }),
    }
}

/// Starts the task that owns `framed`; returns the handle and the incoming stream.
pub(crate) fn spawn<S>(
    framed: Framed<S, EslCodec>,
    options: TaskOptions,
    counters: Arc<EslCounters>,
) -> (EslHandle, mpsc::Receiver<Incoming>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ops_tx, ops_rx) = mpsc::channel(64);
    let (in_tx, in_rx) = mpsc::channel(options.event_queue.max(1));
    let task = Task {
        framed,
        options,
        counters: counters.clone(),
        incoming: in_tx,
        pending: VecDeque::new(),
        jobs: HashMap::new(),
        executions: HashMap::new(),
        listening_for_jobs: false,
        event_format: EventFormat::Plain,
        hangup_complete: false,
        exit_at: None,
        exit_sent: false,
    };
    tokio::spawn(task.run(ops_rx));
    (
        EslHandle {
            ops: ops_tx,
            counters,
        },
        in_rx,
    )
}

struct Task<S> {
    framed: Framed<S, EslCodec>,
    options: TaskOptions,
    counters: Arc<EslCounters>,
    incoming: mpsc::Sender<Incoming>,
    pending: VecDeque<Pending>,
    jobs: HashMap<String, oneshot::Sender<Event>>,
    executions: HashMap<String, oneshot::Sender<Event>>,
    listening_for_jobs: bool,
    event_format: EventFormat,
    hangup_complete: bool,
    /// When to send `exit` (outbound linger handling, or all handles dropped).
    exit_at: Option<Instant>,
    exit_sent: bool,
}

impl<S> Task<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(mut self, mut ops: mpsc::Receiver<Op>) {
        let mut ops_open = true;
        loop {
            let exit_at = self.exit_at;
            tokio::select! {
                op = ops.recv(), if ops_open => match op {
                    Some(op) => self.handle_op(op).await,
                    None => {
                        // Every handle is gone: nobody can use the session any more.
                        ops_open = false;
                        self.schedule_exit(Instant::now());
                    }
                },
                frame = self.framed.next() => match frame {
                    Some(Ok(frame)) => match Message::from_frame(frame) {
                        Ok(msg) => self.dispatch(msg).await,
                        Err(e) => {
                            EslCounters::bump(&self.counters.malformed_messages);
                            warn!(error = %e, "skipping malformed ESL message");
                        }
                    },
                    Some(Err(e)) => {
                        EslCounters::bump(&self.counters.framing_errors);
                        warn!(error = %e, "ESL stream cannot be framed; closing connection");
                        break;
                    }
                    None => break,
                },
                () = sleep_until_opt(exit_at) => {
                    if self.exit_sent {
                        debug!("FreeSWITCH did not close after exit; dropping the socket");
                        break;
                    }
                    self.send_exit().await;
                }
            }
        }
        // Dropping the waiters tells every caller the connection is closed.
        self.pending.clear();
    }

    fn schedule_exit(&mut self, at: Instant) {
        if !self.exit_sent {
            self.exit_at = Some(self.exit_at.map_or(at, |t| t.min(at)));
        }
    }

    async fn send_exit(&mut self) {
        self.exit_sent = true;
        self.exit_at = Some(Instant::now() + self.options.close_grace);
        self.pending.push_back(Pending {
            reply: None,
            job: None,
        });
        if let Err(e) = self.framed.send(&Command::Exit).await {
            debug!(error = %e, "could not send exit");
        }
    }

    async fn handle_op(&mut self, op: Op) {
        let Op::Send {
            cmd,
            reply,
            job,
            execution,
        } = op;
        if self.exit_sent {
            let _ = reply.send(Err(EslError::Closed));
            return;
        }
        match &cmd {
            Command::Event { format, names } => {
                self.event_format = *format;
                if names.iter().any(|n| n == "ALL" || n == "BACKGROUND_JOB") {
                    self.listening_for_jobs = true;
                }
            }
            Command::NoEvents => self.listening_for_jobs = false,
            Command::BgApi { .. } if !self.listening_for_jobs => {
                // Without this subscription the BACKGROUND_JOB never comes and the
                // job's future would wait for ever.
                let subscribe = Command::Event {
                    format: self.event_format,
                    names: vec!["BACKGROUND_JOB".into()],
                };
                if self.write(&subscribe).await.is_ok() {
                    self.listening_for_jobs = true;
                    self.pending.push_back(Pending {
                        reply: None,
                        job: None,
                    });
                }
            }
            _ => {}
        }
        if let Err(e) = self.write(&cmd).await {
            let _ = reply.send(Err(e));
            return;
        }
        if let Some((id, tx)) = execution {
            self.executions.insert(id, tx);
        }
        self.pending.push_back(Pending {
            reply: Some(reply),
            job,
        });
    }

    async fn write(&mut self, cmd: &Command) -> Result<(), EslError> {
        self.framed.send(cmd).await.map_err(EslError::from)
    }

    async fn dispatch(&mut self, msg: Message) {
        match msg {
            Message::CommandReply(reply) => self.answer(Response::Reply(reply)),
            Message::ApiResponse(api) => self.answer(Response::Api(api)),
            Message::Event(event) => {
                match event.name() {
                    Some("BACKGROUND_JOB") => {
                        if let Some(tx) = event.job_uuid().and_then(|id| self.jobs.remove(id)) {
                            let _ = tx.send(event.clone());
                        }
                    }
                    Some("CHANNEL_EXECUTE_COMPLETE") => {
                        let id = event.application_uuid();
                        if let Some(tx) = id.and_then(|id| self.executions.remove(id)) {
                            let _ = tx.send(event.clone());
                        }
                    }
                    Some("CHANNEL_HANGUP_COMPLETE") => {
                        self.hangup_complete = true;
                        if self.exit_at.is_some() && self.options.exit_after_linger.is_some() {
                            self.schedule_exit(Instant::now());
                        }
                    }
                    _ => {}
                }
                self.deliver(Incoming::Event(event));
            }
            Message::Log(line) => self.deliver(Incoming::Log(line)),
            Message::DisconnectNotice(notice) => {
                if let (Disposition::Linger { .. }, Some(grace)) =
                    (&notice.disposition, self.options.exit_after_linger)
                {
                    let wait = if self.hangup_complete {
                        Duration::ZERO
                    } else {
                        grace
                    };
                    self.schedule_exit(Instant::now() + wait);
                }
                self.deliver(Incoming::Disconnect(notice));
            }
            Message::RudeRejection(text) => {
                warn!(text = %text.trim_end(), "FreeSWITCH rejected this client by ACL");
                self.deliver(Incoming::Disconnect(DisconnectNotice {
                    disposition: Disposition::Disconnect,
                    session_uuid: None,
                    channel_name: None,
                }));
            }
            Message::AuthRequest | Message::Unknown(_) => {
                debug!("ignoring message outside its protocol step");
            }
        }
    }

    fn answer(&mut self, response: Response) {
        let Some(pending) = self.pending.pop_front() else {
            EslCounters::bump(&self.counters.unexpected_replies);
            warn!(reply = response.text(), "reply with no command waiting");
            return;
        };
        if let (Some(job), Response::Reply(reply)) = (pending.job, &response) {
            if let Some(id) = reply.job_uuid() {
                self.jobs.insert(id.to_owned(), job);
            }
        }
        if let Some(tx) = pending.reply {
            let _ = tx.send(Ok(response));
        }
    }

    fn deliver(&mut self, item: Incoming) {
        match self.incoming.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                EslCounters::bump(&self.counters.events_dropped);
                warn!("event queue full; dropping event");
            }
            // Nobody listens for events; answers still flow.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next message during a handshake (before the connection task owns the socket).
pub(crate) async fn next_message<S>(framed: &mut Framed<S, EslCodec>) -> Result<Message, EslError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = framed.next().await.ok_or(EslError::Closed)??;
    Message::from_frame(frame).map_err(|e| EslError::Unexpected {
        step: "handshake",
        got: e.to_string(),
    })
}

pub(crate) fn unexpected(step: &'static str, msg: &Message) -> EslError {
    let got = match msg {
        Message::AuthRequest => "auth/request".to_owned(),
        Message::CommandReply(r) => format!("command/reply {:?}", r.text),
        Message::ApiResponse(a) => format!("api/response {:?}", a.text()),
        Message::Event(e) => format!("event {}", e.name().unwrap_or("?")),
        Message::Log(_) => "log/data".to_owned(),
        Message::DisconnectNotice(_) => "disconnect notice".to_owned(),
        Message::RudeRejection(_) => "rude rejection".to_owned(),
        Message::Unknown(f) => format!("unknown {:?}", f.content_type()),
    };
    EslError::Unexpected { step, got }
}
