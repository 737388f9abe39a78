//! Typed ESL commands and their exact wire form.
//!
//! Every command is one line, optional `name: value` lines, a blank line, and for some an
//! optional body announced by `content-length`. A newline inside an argument would start a
//! second command, so any argument that must stay on one line is checked and refused.

use std::fmt;
use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use crate::event::EventFormat;

/// An `execute-app-arg` longer than this goes in the body instead, as FreeSWITCH's header
/// line buffer is bounded and a body has no such limit.
pub const MAX_INLINE_APP_ARG: usize = 1024;

/// A value that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An argument contains `\n` or `\r`, which would inject another command.
    #[error("{what} contains a line break")]
    LineBreak {
        /// Which part of the command.
        what: &'static str,
    },
    /// A required part is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which part of the command.
        what: &'static str,
    },
    /// A value that must be one word contains white space.
    #[error("{what} contains white space")]
    Whitespace {
        /// Which part of the command.
        what: &'static str,
    },
    /// A header that frames the message (`Content-Length`) is set by the encoder only;
    /// a caller-supplied one would make FreeSWITCH read the following commands as a body.
    #[error("header {name:?} is reserved for framing")]
    ReservedHeader {
        /// The name given.
        name: String,
    },
    /// A header name with characters that cannot appear in one.
    #[error("invalid header name {name:?}")]
    BadHeaderName {
        /// The name given.
        name: String,
    },
}

/// A password that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Where FreeSWITCH should stream a channel's audio (`call-command: unicast`).
///
/// FreeSWITCH binds `local` itself, sends the channel's audio from it to `remote`, and
/// plays whatever arrives on `local` to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnicastParams {
    /// FreeSWITCH's side of the media socket.
    pub local_ip: IpAddr,
    /// FreeSWITCH's port; it sends from and listens on it.
    pub local_port: u16,
    /// Our side, where FreeSWITCH sends the caller's audio.
    pub remote_ip: IpAddr,
    /// Our port.
    pub remote_port: u16,
    /// `flags: native`: raw codec frames instead of L16 at the channel rate.
    pub native: bool,
}

/// What `sendmsg` asks the channel to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendMsg {
    /// Run a dialplan application.
    Execute {
        /// Application name, e.g. `playback`.
        app: String,
        /// Its argument; sent as a body when long or multi-line.
        arg: Option<String>,
        /// `Event-UUID`: echoed as `Application-UUID` in CHANNEL_EXECUTE(_COMPLETE).
        event_uuid: Option<String>,
        /// `event-lock: true`: run before the next queued message.
        event_lock: bool,
        /// `loops`: run the application this many times.
        loops: Option<u32>,
    },
    /// Hang the channel up.
    Hangup {
        /// Hang-up cause, e.g. `NORMAL_CLEARING`.
        cause: String,
    },
    /// Stream the channel's audio over UDP.
    Unicast(UnicastParams),
}

/// A command to FreeSWITCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `auth <password>` (inbound).
    Auth(Password),
    /// `connect` (outbound: first thing after accept).
    Connect,
    /// `event <format> <names…>`; e.g. `ALL`, `CHANNEL_ANSWER`, `CUSTOM sub::class`.
    Event {
        /// Wire format of the events.
        format: EventFormat,
        /// Event names (and CUSTOM subclasses).
        names: Vec<String>,
    },
    /// `myevents [uuid] [format]`: events of one channel (outbound: our channel).
    MyEvents {
        /// The channel, inbound only.
        uuid: Option<String>,
        /// Wire format of the events.
        format: EventFormat,
    },
    /// `noevents`.
    NoEvents,
    /// `linger [seconds]`: keep the socket after hang-up for the remaining events.
    Linger(Option<u32>),
    /// `nolinger`.
    NoLinger,
    /// `filter <header> <value>`.
    Filter {
        /// Header name.
        header: String,
        /// Value to match.
        value: String,
    },
    /// `filter delete <header> [value]`.
    FilterDelete {
        /// Header name.
        header: String,
        /// Value; all filters on the header when absent.
        value: Option<String>,
    },
    /// `log <level>`.
    Log(u8),
    /// `nolog`.
    NoLog,
    /// `api <command>`: runs synchronously, answered by `api/response`.
    Api(String),
    /// `bgapi <command>`: answered at once with a Job-UUID; the result comes as the
    /// BACKGROUND_JOB event.
    BgApi {
        /// The API command line.
        command: String,
        /// A Job-UUID of our choosing (FreeSWITCH makes one when absent).
        job_uuid: Option<String>,
    },
    /// `sendmsg [uuid]`.
    SendMsg {
        /// Target channel; omitted in outbound mode (our channel).
        uuid: Option<String>,
        /// The message.
        msg: SendMsg,
    },
    /// `sendevent <name>` with headers and optional body.
    SendEvent {
        /// Event name, e.g. `CUSTOM`.
        name: String,
        /// Headers, sent as given.
        headers: Vec<(String, String)>,
        /// Optional body.
        body: Option<String>,
    },
    /// `exit`: FreeSWITCH replies `+OK bye`, sends a disconnect notice and closes.
    Exit,
    /// A one-line command this library has no type for (e.g. `nixevent CHANNEL_STATE`,
    /// `divert_events on`); refused if it contains a line break.
    Raw(String),
}

impl Command {
    /// `api <command>`.
    pub fn api(command: impl Into<String>) -> Self {
        Self::Api(command.into())
    }

    /// `sendmsg` execute of `app` with an optional argument (outbound: our channel).
    pub fn execute(app: impl Into<String>, arg: Option<String>) -> Self {
        Self::SendMsg {
            uuid: None,
            msg: SendMsg::Execute {
                app: app.into(),
                arg,
                event_uuid: None,
                event_lock: false,
                loops: None,
            },
        }
    }

    /// `sendmsg` hangup with a cause (outbound: our channel).
    pub fn hangup(cause: impl Into<String>) -> Self {
        Self::SendMsg {
            uuid: None,
            msg: SendMsg::Hangup {
                cause: cause.into(),
            },
        }
    }

    /// True for commands answered by `api/response` rather than `command/reply`.
    pub fn expects_api_response(&self) -> bool {
        matches!(self, Self::Api(_))
    }

    /// Appends the exact wire bytes of this command to `out`.
    ///
    /// ```
    /// use esl_bridge::command::Command;
    /// let mut out = bytes::BytesMut::new();
    /// Command::hangup("NORMAL_CLEARING").encode(&mut out).unwrap();
    /// assert_eq!(&out[..], b"sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING\n\n");
    /// ```
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), CommandError> {
        let mut w = Writer::default();
        match self {
            Self::Auth(Password(p)) => w.line(&["auth", one_line(p, "password")?]),
            Self::Connect => w.line(&["connect"]),
            Self::Event { format, names } => {
                let names = joined(names, "event name")?;
                w.line(&["event", format.as_str(), &names]);
            }
            Self::MyEvents { uuid, format } => {
                let mut parts = vec!["myevents"];
                if let Some(uuid) = uuid {
                    parts.push(one_line(uuid, "uuid")?);
                }
                if *format != EventFormat::Plain {
                    parts.push(format.as_str());
                }
                w.line(&parts);
            }
            Self::NoEvents => w.line(&["noevents"]),
            Self::Linger(None) => w.line(&["linger"]),
            Self::Linger(Some(s)) => w.line(&["linger", &s.to_string()]),
            Self::NoLinger => w.line(&["nolinger"]),
            Self::Filter { header, value } => w.line(&[
                "filter",
                one_word(header, "filter header")?,
                one_line(value, "filter value")?,
            ]),
            Self::FilterDelete { header, value } => {
                let mut parts = vec!["filter delete", one_word(header, "filter header")?];
                if let Some(v) = value {
                    parts.push(one_line(v, "filter value")?);
                }
                w.line(&parts);
            }
            Self::Log(level) => w.line(&["log", &level.to_string()]),
            Self::NoLog => w.line(&["nolog"]),
            Self::Api(cmd) => w.line(&[
                "api",
                non_empty(one_line(cmd, "api command")?, "api command")?,
            ]),
            Self::BgApi { command, job_uuid } => {
                w.line(&[
                    "bgapi",
                    non_empty(one_line(command, "bgapi command")?, "bgapi command")?,
                ]);
                if let Some(id) = job_uuid {
                    w.header("Job-UUID", one_line(id, "Job-UUID")?)?;
                }
            }
            Self::SendMsg { uuid, msg } => {
                match uuid {
                    Some(uuid) => w.line(&["sendmsg", one_word(uuid, "uuid")?]),
                    None => w.line(&["sendmsg"]),
                }
                encode_sendmsg(&mut w, msg)?;
            }
            Self::SendEvent {
                name,
                headers,
                body,
            } => {
                w.line(&["sendevent", one_word(name, "event name")?]);
                for (n, v) in headers {
                    if n.trim().eq_ignore_ascii_case("content-length") {
                        return Err(CommandError::ReservedHeader {
                            name: n.chars().take(40).collect(),
                        });
                    }
                    w.header(n, one_line(v, "event header value")?)?;
                }
                if let Some(body) = body {
                    w.body("Content-Length", body);
                }
            }
            Self::Exit => w.line(&["exit"]),
            Self::Raw(line) => w.line(&[non_empty(one_line(line, "command")?, "command")?]),
        }
        w.finish(out);
        Ok(())
    }
}

fn encode_sendmsg(w: &mut Writer, msg: &SendMsg) -> Result<(), CommandError> {
    match msg {
        SendMsg::Execute {
            app,
            arg,
            event_uuid,
            event_lock,
            loops,
        } => {
            w.header("call-command", "execute")?;
            w.header(
                "execute-app-name",
                non_empty(one_word(app, "application name")?, "application name")?,
            )?;
            let as_body = arg
                .as_deref()
                .filter(|a| a.len() > MAX_INLINE_APP_ARG || a.contains(['\n', '\r']));
            if let (Some(arg), None) = (arg, as_body) {
                w.header("execute-app-arg", arg)?;
            }
            if let Some(id) = event_uuid {
                w.header("Event-UUID", one_line(id, "Event-UUID")?)?;
            }
            if *event_lock {
                w.header("event-lock", "true")?;
            }
            if let Some(n) = loops {
                w.header("loops", &n.to_string())?;
            }
            if let Some(body) = as_body {
                w.header("content-type", "text/plain")?;
                w.body("content-length", body);
            }
        }
        SendMsg::Hangup { cause } => {
            w.header("call-command", "hangup")?;
            w.header("hangup-cause", one_word(cause, "hangup cause")?)?;
        }
        SendMsg::Unicast(p) => {
            w.header("call-command", "unicast")?;
            w.header("local-ip", &p.local_ip.to_string())?;
            w.header("local-port", &p.local_port.to_string())?;
            w.header("remote-ip", &p.remote_ip.to_string())?;
            w.header("remote-port", &p.remote_port.to_string())?;
            w.header("transport", "udp")?;
            if p.native {
                w.header("flags", "native")?;
            }
        }
    }
    Ok(())
}

/// Builds one command in a scratch buffer so a failed check writes nothing to `out`.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
    /// The body and the spelling of its length header (each as the recorded clients
    /// wrote it: `content-length` in sendmsg, `Content-Length` in sendevent).
    body: Option<(&'static str, Vec<u8>)>,
}

impl Writer {
    fn line(&mut self, parts: &[&str]) {
        self.buf.extend_from_slice(parts.join(" ").as_bytes());
        self.buf.push(b'\n');
    }

    fn header(&mut self, name: &str, value: &str) -> Result<(), CommandError> {
        if name.is_empty() || name.bytes().any(|b| b == b':' || b.is_ascii_whitespace()) {
            return Err(CommandError::BadHeaderName {
                name: name.chars().take(40).collect(),
            });
        }
        one_line(value, "header value")?;
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(b'\n');
        Ok(())
    }

    fn body(&mut self, length_header: &'static str, body: &str) {
        self.body = Some((length_header, body.as_bytes().to_vec()));
    }

    fn finish(self, out: &mut BytesMut) {
        out.reserve(self.buf.len() + 32 + self.body.as_ref().map_or(0, |(_, b)| b.len()));
        out.put_slice(&self.buf);
        if let Some((length_header, body)) = self.body {
            out.put_slice(format!("{length_header}: {}\n\n", body.len()).as_bytes());
            out.put_slice(&body);
        } else {
            out.put_u8(b'\n');
        }
    }
}

fn one_line<'a>(value: &'a str, what: &'static str) -> Result<&'a str, CommandError> {
    if value.contains(['\n', '\r']) {
        Err(CommandError::LineBreak { what })
    } else {
        Ok(value)
    }
}

fn one_word<'a>(value: &'a str, what: &'static str) -> Result<&'a str, CommandError> {
    let value = non_empty(one_line(value, what)?, what)?;
    if value.contains(char::is_whitespace) {
        return Err(CommandError::Whitespace { what });
    }
    Ok(value)
}

fn non_empty<'a>(value: &'a str, what: &'static str) -> Result<&'a str, CommandError> {
    if value.trim().is_empty() {
        Err(CommandError::Empty { what })
    } else {
        Ok(value)
    }
}

fn joined(names: &[String], what: &'static str) -> Result<String, CommandError> {
    if names.is_empty() {
        return Err(CommandError::Empty { what });
    }
    for n in names {
        one_line(n, what)?;
    }
    Ok(names.join(" "))
}
