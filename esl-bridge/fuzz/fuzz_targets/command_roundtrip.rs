//! Typed commands: `Command::encode` either refuses or writes bytes that FreeSWITCH
//! (here `RequestCodec`, which frames the way mod_event_socket does) reads as exactly one
//! command, the one we meant. Anything else would let an argument inject a second
//! command or swallow the next one.
#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use bytes::BytesMut;
use esl_bridge::codec::RequestCodec;
use esl_bridge::command::{Command, Password, SendMsg, UnicastParams, MAX_INLINE_APP_ARG};
use esl_bridge::event::EventFormat;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

// Mirrors of the public command types: the crate does not derive `Arbitrary` (and
// should not depend on it), so the fuzz crate builds commands from these.

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Format {
    Plain,
    Json,
    Xml,
}

#[derive(Arbitrary, Debug)]
enum Msg {
    Execute {
        app: String,
        arg: Option<String>,
        event_uuid: Option<String>,
        event_lock: bool,
        loops: Option<u32>,
    },
    Hangup {
        cause: String,
    },
    Unicast {
        local_ip: IpAddr,
        local_port: u16,
        remote_ip: IpAddr,
        remote_port: u16,
        native: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum Cmd {
    Auth(String),
    Connect,
    Event {
        format: Format,
        names: Vec<String>,
    },
    MyEvents {
        uuid: Option<String>,
        format: Format,
    },
    NoEvents,
    Linger(Option<u32>),
    NoLinger,
    Filter {
        header: String,
        value: String,
    },
    FilterDelete {
        header: String,
        value: Option<String>,
    },
    Log(u8),
    NoLog,
    Api(String),
    BgApi {
        command: String,
        job_uuid: Option<String>,
    },
    SendMsg {
        uuid: Option<String>,
        msg: Msg,
    },
    SendEvent {
        name: String,
        headers: Vec<(String, String)>,
        body: Option<String>,
    },
    Exit,
    Raw(String),
}

fn format(f: Format) -> EventFormat {
    match f {
        Format::Plain => EventFormat::Plain,
        Format::Json => EventFormat::Json,
        Format::Xml => EventFormat::Xml,
    }
}

fn build(cmd: Cmd) -> Command {
    match cmd {
        Cmd::Auth(p) => Command::Auth(Password::new(p)),
        Cmd::Connect => Command::Connect,
        Cmd::Event { format: f, names } => Command::Event {
            format: format(f),
            names,
        },
        Cmd::MyEvents { uuid, format: f } => Command::MyEvents {
            uuid,
            format: format(f),
        },
        Cmd::NoEvents => Command::NoEvents,
        Cmd::Linger(s) => Command::Linger(s),
        Cmd::NoLinger => Command::NoLinger,
        Cmd::Filter { header, value } => Command::Filter { header, value },
        Cmd::FilterDelete { header, value } => Command::FilterDelete { header, value },
        Cmd::Log(l) => Command::Log(l),
        Cmd::NoLog => Command::NoLog,
        Cmd::Api(c) => Command::Api(c),
        Cmd::BgApi { command, job_uuid } => Command::BgApi { command, job_uuid },
        Cmd::SendMsg { uuid, msg } => Command::SendMsg {
            uuid,
            msg: match msg {
                Msg::Execute {
                    app,
                    arg,
                    event_uuid,
                    event_lock,
                    loops,
                } => SendMsg::Execute {
                    app,
                    arg,
                    event_uuid,
                    event_lock,
                    loops,
                },
                Msg::Hangup { cause } => SendMsg::Hangup { cause },
                Msg::Unicast {
                    local_ip,
                    local_port,
                    remote_ip,
                    remote_port,
                    native,
                } => SendMsg::Unicast(UnicastParams {
                    local_ip,
                    local_port,
                    remote_ip,
                    remote_port,
                    native,
                }),
            },
        },
        Cmd::SendEvent {
            name,
            headers,
            body,
        } => Command::SendEvent {
            name,
            headers,
            body,
        },
        Cmd::Exit => Command::Exit,
        Cmd::Raw(line) => Command::Raw(line),
    }
}

/// The first word FreeSWITCH dispatches on. Deliberately exhaustive: a new command
/// variant fails to compile here until the mirror above covers it.
fn verb(cmd: &Command) -> &str {
    match cmd {
        Command::Auth(_) => "auth",
        Command::Connect => "connect",
        Command::Event { .. } => "event",
        Command::MyEvents { .. } => "myevents",
        Command::NoEvents => "noevents",
        Command::Linger(_) => "linger",
        Command::NoLinger => "nolinger",
        Command::Filter { .. } | Command::FilterDelete { .. } => "filter",
        Command::Log(_) => "log",
        Command::NoLog => "nolog",
        Command::Api(_) => "api",
        Command::BgApi { .. } => "bgapi",
        Command::SendMsg { .. } => "sendmsg",
        Command::SendEvent { .. } => "sendevent",
        Command::Exit => "exit",
        Command::Raw(line) => line.split(' ').next().unwrap_or_default(),
    }
}

/// The body the command must carry, if any.
fn expected_body(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::SendEvent { body, .. } => body.as_deref(),
        Command::SendMsg {
            msg: SendMsg::Execute { arg: Some(arg), .. },
            ..
        } if arg.len() > MAX_INLINE_APP_ARG || arg.contains(['\n', '\r']) => Some(arg),
        _ => None,
    }
}

fuzz_target!(|cmd: Cmd| {
    let cmd = build(cmd);
    let mut out = BytesMut::new();
    if cmd.encode(&mut out).is_err() {
        // "a failed check writes nothing to `out`"
        assert!(out.is_empty(), "refused {cmd:?} but wrote {out:?}");
        return;
    }
    let wire = out.clone();
    let mut codec = RequestCodec::default();
    let request = match codec.decode_eof(&mut out) {
        Ok(Some(request)) => request,
        Ok(None) => panic!("{cmd:?} encoded as {wire:?}, which frames as no command"),
        Err(e) => panic!("{cmd:?} encoded as {wire:?}, which does not frame: {e}"),
    };
    assert!(
        out.is_empty(),
        "{cmd:?} encoded as {wire:?}: {out:?} left over after one command (injection)"
    );
    assert!(matches!(codec.decode_eof(&mut out), Ok(None)), "{wire:?}");

    assert_eq!(request.verb(), verb(&cmd), "{wire:?}");
    match &cmd {
        Command::Api(c) => assert_eq!(request.line, format!("api {c}")),
        Command::BgApi { command, .. } => assert_eq!(request.line, format!("bgapi {command}")),
        Command::Raw(line) => assert_eq!(&request.line, line),
        _ => {}
    }
    assert_eq!(
        request.body.as_deref(),
        expected_body(&cmd).map(str::as_bytes),
        "{cmd:?} encoded as {wire:?}"
    );
});
