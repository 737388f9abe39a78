//! The double's ESL behaviour, sans-IO: each command from the engine (or a caller
//! action, or a timer) goes in, the bytes FreeSWITCH would write and the side effects
//! come out. The async shell in `session.rs` only moves bytes and runs the effects.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use esl_bridge::codec::Request;

use super::recording::{Block, ChannelScript, EventEncoding};
use super::{Hangup, SessionEnd, StopReason};

/// The body of every `disconnect` notice, as recorded.
const GOODBYE: &str = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";

/// Unicast defaults of FreeSWITCH's `unicast` sendmsg when a header is missing (from the
/// source, per the fixtures' README; not exercised in the captures).
const DEFAULT_LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8025);
const DEFAULT_REMOTE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8026);

/// Applications after which FreeSWITCH's park loop no longer runs unicast: the capture
/// `outbound_unicast_pcmu_l16` shows `playback` ending it for good.
const MEDIA_APPS: &[&str] = &[
    "playback",
    "speak",
    "say",
    "phrase",
    "play_and_get_digits",
    "gentones",
    "endless_playback",
];

/// What the engine asked for with `call-command: unicast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnicastRequest {
    /// FreeSWITCH's side (`local-ip:local-port`): the double binds it.
    pub local: SocketAddr,
    /// The engine's side (`remote-ip:remote-port`): caller audio goes there.
    pub remote: SocketAddr,
    /// `flags: native`.
    pub native: bool,
}

/// How long the session stays after the linger notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linger {
    /// `linger`: FreeSWITCH waits for `exit` for ever (`Linger-Time: -1`).
    Forever,
    /// `linger N`.
    Seconds(u32),
}

/// A side effect of a step, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bytes for the engine.
    Write(Vec<u8>),
    /// The `connect` command was answered.
    Connected,
    /// Bind FreeSWITCH's side and start streaming the caller.
    StartUnicast(UnicastRequest),
    /// The unicast request cannot be carried out.
    UnicastFailed(String),
    /// Stop streaming (FreeSWITCH deactivates unicast).
    StopUnicast(StopReason),
    /// The channel is gone.
    HungUp(Hangup),
    /// Waiting for `exit` after a linger notice; `None`: as long as the shell allows.
    Lingering(Option<Duration>),
    /// End the session (close the socket).
    Close(SessionEnd),
    /// A command the double answered without modelling what FreeSWITCH does.
    Unmodelled(String),
}

/// Which events the engine subscribed to.
#[derive(Debug, Default)]
struct Subscription {
    encoding: Option<EventEncoding>,
    all: bool,
    names: BTreeSet<String>,
}

impl Subscription {
    fn wants(&self, name: &str) -> Option<EventEncoding> {
        self.encoding
            .filter(|_| self.all || self.names.contains(name))
    }
}

/// The switch side of one outbound session.
#[derive(Debug)]
pub struct Switch {
    script: ChannelScript,
    events: Subscription,
    park_sent: bool,
    linger: Option<Linger>,
    answered: bool,
    hung_up: bool,
    closed: bool,
}

fn reply(text: &str) -> Action {
    Action::Write(format!("Content-Type: command/reply\nReply-Text: {text}\n\n").into_bytes())
}

fn api_response(body: &str) -> Action {
    Action::Write(
        format!(
            "Content-Type: api/response\nContent-Length: {}\n\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl Switch {
    /// A session for `script`'s channel; `answered`: the dialplan ran `answer` before
    /// `socket` (as in the fixtures' dialplan).
    pub fn new(script: ChannelScript, answered: bool) -> Self {
        Self {
            script,
            events: Subscription::default(),
            park_sent: false,
            linger: None,
            answered,
            hung_up: false,
            closed: false,
        }
    }

    /// The channel UUID.
    #[cfg(test)]
    pub fn uuid(&self) -> &str {
        &self.script.uuid
    }

    /// One command from the engine.
    pub fn on_request(&mut self, req: &Request) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        let line = req.line.trim();
        let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
        let args = args.trim();
        match verb {
            "connect" => vec![
                Action::Write(self.script.connect_reply()),
                Action::Connected,
            ],
            "myevents" => self.myevents(args),
            "event" => self.event(args),
            "noevents" => {
                self.events = Subscription::default();
                vec![reply("+OK no longer listening for events")]
            }
            "linger" => self.set_linger(args),
            "filter" => vec![reply(&filter_reply(args))],
            "log" => {
                let level = args.split_whitespace().next().unwrap_or("7");
                vec![reply(&format!("+OK log level {level} [{level}]"))]
            }
            "nolog" => vec![reply("+OK no longer logging")],
            "sendmsg" => self.sendmsg(args, req),
            "api" => self.api(args),
            "exit" => self.exit(),
            _ => vec![
                Action::Unmodelled(line.to_owned()),
                reply("-ERR command not found"),
            ],
        }
    }

    /// The caller hung up (a BYE from the caller's side).
    pub fn caller_hangup(&mut self) -> Vec<Action> {
        self.hangup("NORMAL_CLEARING", Hangup::Caller, false)
    }

    /// The engine closed its end of the socket.
    pub fn engine_closed(&mut self) -> Vec<Action> {
        let mut actions = self.leave();
        actions.push(self.close(SessionEnd::EngineClosed));
        actions
    }

    /// The linger period is over (or the shell stopped waiting for `exit`).
    pub fn linger_expired(&mut self) -> Vec<Action> {
        match self.linger {
            // As recorded with `linger 2`: the disconnect notice, then the close.
            Some(Linger::Seconds(_)) => vec![
                self.disconnect_notice(),
                self.close(SessionEnd::LingerExpired),
            ],
            // FreeSWITCH would wait for ever; the double gives up silently.
            _ => vec![self.close(SessionEnd::ExitNeverCame)],
        }
    }

    fn close(&mut self, end: SessionEnd) -> Action {
        self.closed = true;
        Action::Close(end)
    }

    /// The session ends while the channel is up: with nothing after `socket` in the
    /// dialplan, FreeSWITCH hangs the call up.
    fn leave(&mut self) -> Vec<Action> {
        if self.hung_up {
            return Vec::new();
        }
        self.hung_up = true;
        vec![
            Action::StopUnicast(StopReason::Hangup),
            Action::HungUp(Hangup::EngineLeft),
        ]
    }

    fn emit(&mut self, block: Block) -> Option<Action> {
        let name = block.get("Event-Name").unwrap_or_default();
        let encoding = self.events.wants(&name)?;
        Some(Action::Write(self.script.event_frame(block, encoding)))
    }

    fn subscribe(&mut self, format: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        self.events.encoding = Some(match format {
            "json" => EventEncoding::Json,
            "plain" => EventEncoding::Plain,
            other => {
                actions.push(Action::Unmodelled(format!(
                    "event format {other:?}: events are sent as plain"
                )));
                EventEncoding::Plain
            }
        });
        actions
    }

    /// The socket app parks the channel once it runs; the recordings show CHANNEL_PARK as
    /// the first event after `myevents`.
    fn park_if_listening(&mut self) -> Option<Action> {
        if self.park_sent || self.hung_up {
            return None;
        }
        let park = self.script.park();
        let action = self.emit(park)?;
        self.park_sent = true;
        Some(action)
    }

    fn myevents(&mut self, args: &str) -> Vec<Action> {
        // `myevents [uuid] [plain|json|xml]`; in outbound mode the uuid is ours.
        let format = args
            .split_whitespace()
            .find(|w| matches!(*w, "plain" | "json" | "xml"))
            .unwrap_or("plain");
        let mut actions = self.subscribe(format);
        self.events.all = true;
        actions.push(reply("+OK Events Enabled"));
        actions.extend(self.park_if_listening());
        actions
    }

    fn event(&mut self, args: &str) -> Vec<Action> {
        let mut words = args.split_whitespace();
        let format = words.next().unwrap_or("plain");
        let mut actions = self.subscribe(format);
        for name in words {
            if name == "ALL" {
                self.events.all = true;
            } else {
                self.events.names.insert(name.to_owned());
            }
        }
        actions.push(reply(&format!("+OK event listener enabled {format}")));
        actions.extend(self.park_if_listening());
        actions
    }

    fn set_linger(&mut self, args: &str) -> Vec<Action> {
        match args.parse::<u32>() {
            Ok(seconds) if seconds > 0 => {
                self.linger = Some(Linger::Seconds(seconds));
                vec![reply(&format!("+OK will linger {seconds} seconds"))]
            }
            _ => {
                self.linger = Some(Linger::Forever);
                vec![reply("+OK will linger")]
            }
        }
    }

    fn sendmsg(&mut self, args: &str, req: &Request) -> Vec<Action> {
        // `sendmsg` is answered `+OK` at once in async mode, whatever it asks for.
        let mut actions = vec![reply("+OK")];
        if !args.is_empty() && args != self.script.uuid {
            actions.push(Action::Unmodelled(format!(
                "sendmsg to another channel {args}"
            )));
            return actions;
        }
        let h = &req.headers;
        match h.get("call-command").unwrap_or_default() {
            "execute" => {
                let app = h.get("execute-app-name").unwrap_or_default().to_owned();
                // A long or multi-line argument comes as a text/plain body (outbound_basic).
                let body = req
                    .body
                    .as_deref()
                    .and_then(|b| std::str::from_utf8(b).ok());
                let arg = h.get("execute-app-arg").or(body).map(str::to_owned);
                let app_uuid = h
                    .get("Event-UUID")
                    .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
                actions.extend(self.execute(&app, arg.as_deref(), &app_uuid));
            }
            "hangup" => {
                let cause = h
                    .get("hangup-cause")
                    .unwrap_or("NORMAL_CLEARING")
                    .to_owned();
                actions.extend(self.hangup(
                    &cause,
                    Hangup::Engine {
                        cause: cause.clone(),
                    },
                    false,
                ));
            }
            "unicast" => actions.push(unicast_request(h)),
            other => actions.push(Action::Unmodelled(format!(
                "sendmsg call-command {other:?}"
            ))),
        }
        actions
    }

    fn execute(&mut self, app: &str, arg: Option<&str>, app_uuid: &str) -> Vec<Action> {
        if self.hung_up {
            return Vec::new();
        }
        let response = if MEDIA_APPS.contains(&app) {
            "FILE PLAYED"
        } else {
            "_none_"
        };
        let (start, complete) = self.script.execute(app, arg, app_uuid, response);
        let mut actions: Vec<Action> = self.emit(start).into_iter().collect();
        match app {
            "answer" if !self.answered => {
                self.answered = true;
                let answer = self.script.answer();
                actions.extend(self.emit(answer));
            }
            "hangup" => {
                let cause = arg.filter(|a| !a.is_empty()).unwrap_or("NORMAL_CLEARING");
                let by = Hangup::Engine {
                    cause: cause.to_owned(),
                };
                actions.extend(self.hangup(cause, by, false));
                return actions;
            }
            "set" | "export" => {
                if let Some((name, value)) = arg.and_then(|a| a.split_once('=')) {
                    self.script
                        .variables
                        .insert(name.to_owned(), value.to_owned());
                }
            }
            _ if MEDIA_APPS.contains(&app) => {
                actions.push(Action::StopUnicast(StopReason::Application(app.to_owned())));
            }
            "answer" | "park" | "sleep" | "record_session" | "pre_answer" | "ring_ready" => {}
            other => actions.push(Action::Unmodelled(format!(
                "application {other:?} completes at once without effect"
            ))),
        }
        actions.extend(self.emit(complete));
        actions
    }

    fn api(&mut self, args: &str) -> Vec<Action> {
        let mut words = args.split_whitespace();
        let command = words.next().unwrap_or_default();
        let target = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        if !command.starts_with("uuid_") {
            return vec![
                Action::Unmodelled(format!("api {args}")),
                // The recorded form for an API command FreeSWITCH does not know.
                api_response(&format!("-ERR {command} Command not found!\n")),
            ];
        }
        if target != self.script.uuid {
            return vec![api_response("-ERR No such channel!\n")];
        }
        match command {
            "uuid_kill" => {
                let cause = rest
                    .first()
                    .copied()
                    .unwrap_or("NORMAL_CLEARING")
                    .to_owned();
                let mut actions = vec![api_response("+OK\n")];
                actions.extend(self.hangup(
                    &cause,
                    Hangup::Engine {
                        cause: cause.clone(),
                    },
                    true,
                ));
                actions
            }
            // As recorded: the value without a newline, `hello world` / `PCMU`.
            "uuid_getvar" => {
                let value = rest
                    .first()
                    .and_then(|name| self.script.variables.get(*name))
                    .map_or("_undef_", String::as_str)
                    .to_owned();
                vec![api_response(&value)]
            }
            "uuid_broadcast" => {
                // Recorded: `+OK Message sent`, then the playback's execute events; the
                // playback ends unicast like any other.
                let mut actions = vec![api_response("+OK Message sent\n")];
                let file = rest.first().copied();
                let app_uuid = uuid::Uuid::new_v4().to_string();
                actions.extend(self.execute("playback", file, &app_uuid));
                actions
            }
            "uuid_displace" | "uuid_record" => vec![api_response("+OK Success\n")],
            "uuid_break" | "uuid_audio" => vec![api_response("+OK\n")],
            other => vec![
                Action::Unmodelled(format!("api {other} answered +OK without effect")),
                api_response("+OK\n"),
            ],
        }
    }

    fn exit(&mut self) -> Vec<Action> {
        let mut actions = self.leave();
        actions.push(reply("+OK bye"));
        actions.push(self.disconnect_notice());
        actions.push(self.close(SessionEnd::Exit));
        actions
    }

    /// The hang-up sequence. `notice_early`: the linger notice right after CHANNEL_HANGUP,
    /// as recorded for `api uuid_kill` (`outbound_uuid_commands`); otherwise after
    /// CHANNEL_HANGUP_COMPLETE, as recorded for `sendmsg hangup` (`outbound_basic`) and a
    /// caller's BYE (`outbound_unicast_pcmu_l16`).
    fn hangup(&mut self, cause: &str, by: Hangup, notice_early: bool) -> Vec<Action> {
        if self.hung_up {
            return Vec::new();
        }
        self.hung_up = true;
        let disposition = if by == Hangup::Caller {
            "recv_bye"
        } else {
            "send_bye"
        };
        let mut actions = vec![Action::StopUnicast(StopReason::Hangup), Action::HungUp(by)];
        for (i, event) in self
            .script
            .hangup(cause, disposition)
            .into_iter()
            .enumerate()
        {
            actions.extend(self.emit(event));
            if i == 0 && notice_early {
                actions.extend(self.linger_notice());
            }
        }
        match self.linger {
            Some(linger) => {
                if !notice_early {
                    actions.extend(self.linger_notice());
                }
                actions.push(Action::Lingering(match linger {
                    // `linger 2` closed about 3 s after the notice in the captures.
                    Linger::Seconds(s) => Some(Duration::from_secs(u64::from(s) + 1)),
                    Linger::Forever => None,
                }));
            }
            // As recorded in outbound_uuid_kill_no_linger: the notice, then the close.
            None => {
                actions.push(self.disconnect_notice());
                actions.push(self.close(SessionEnd::Disconnected));
            }
        }
        actions
    }

    fn linger_notice(&self) -> Option<Action> {
        let time = match self.linger? {
            Linger::Forever => -1,
            Linger::Seconds(s) => i64::from(s),
        };
        // Channel-Name is not URL-encoded in this notice (outbound_basic).
        Some(Action::Write(
            format!(
                "Content-Type: text/disconnect-notice\nControlled-Session-UUID: {}\nContent-Disposition: linger\nChannel-Name: {}\nLinger-Time: {time}\nContent-Length: 0\n\n",
                self.script.uuid, self.script.channel_name
            )
            .into_bytes(),
        ))
    }

    fn disconnect_notice(&self) -> Action {
        Action::Write(
            format!(
                "Content-Type: text/disconnect-notice\nControlled-Session-UUID: {}\nContent-Disposition: disconnect\nContent-Length: {}\n\n{GOODBYE}",
                self.script.uuid,
                GOODBYE.len()
            )
            .into_bytes(),
        )
    }
}

/// `filter <header> <value>` / `filter delete <header> [value]`, replied as recorded.
/// Filters are not applied: the double has one channel, so a `Unique-ID` filter (the
/// recorded use) changes nothing.
fn filter_reply(args: &str) -> String {
    match args.strip_prefix("delete ") {
        Some(rest) => {
            let (header, value) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
            format!("+OK filter deleted. [{header}][{value}]")
        }
        None => {
            let (header, value) = args.split_once(' ').unwrap_or((args, ""));
            format!("+OK filter added. [{header}]=[{value}]")
        }
    }
}

fn unicast_request(h: &esl_bridge::frame::Headers) -> Action {
    let addr = |ip_name: &str, port_name: &str, default: SocketAddr| {
        let ip = match h.get(ip_name) {
            Some(v) => v
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("{ip_name} {v:?} is not an IP address"))?,
            None => default.ip(),
        };
        let port = match h.get(port_name) {
            Some(v) => v
                .trim()
                .parse::<u16>()
                .map_err(|_| format!("{port_name} {v:?} is not a port"))?,
            None => default.port(),
        };
        Ok::<_, String>(SocketAddr::new(ip, port))
    };
    let request = addr("local-ip", "local-port", DEFAULT_LOCAL).and_then(|local| {
        let remote = addr("remote-ip", "remote-port", DEFAULT_REMOTE)?;
        let native = h
            .get("flags")
            .is_some_and(|f| f.split(['|', ',', ' ']).any(|w| w == "native"));
        Ok(UnicastRequest {
            local,
            remote,
            native,
        })
    });
    match request {
        Ok(r) => Action::StartUnicast(r),
        Err(e) => Action::UnicastFailed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::recording::{default_fixtures_dir, Recordings};
    use super::*;
    use bytes::BytesMut;
    use esl_bridge::codec::RequestCodec;
    use tokio_util::codec::Decoder;

    fn switch(answered: bool) -> Switch {
        let rec = Recordings::load(&default_fixtures_dir()).unwrap();
        Switch::new(
            rec.script(rec.recorded_identity(), 8_000, answered),
            answered,
        )
    }

    fn request(wire: &str) -> Request {
        RequestCodec::default()
            .decode(&mut BytesMut::from(wire))
            .unwrap()
            .unwrap()
    }

    fn written(actions: &[Action]) -> String {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Write(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn event_names(actions: &[Action]) -> Vec<String> {
        let text = written(actions);
        text.lines()
            .filter_map(|l| l.strip_prefix("Event-Name: "))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn replies_are_the_recorded_bytes() {
        let mut sw = switch(true);
        let out = written(&sw.on_request(&request("myevents\n\n")));
        assert!(out.starts_with("Content-Type: command/reply\nReply-Text: +OK Events Enabled\n\n"));
        assert_eq!(
            written(&sw.on_request(&request("linger\n\n"))),
            "Content-Type: command/reply\nReply-Text: +OK will linger\n\n"
        );
        assert_eq!(
            written(&sw.on_request(&request("linger 2\n\n"))),
            "Content-Type: command/reply\nReply-Text: +OK will linger 2 seconds\n\n"
        );
        assert_eq!(
            written(&sw.on_request(&request("bogus_esl_command\n\n"))),
            "Content-Type: command/reply\nReply-Text: -ERR command not found\n\n"
        );
        assert_eq!(
            written(&sw.on_request(&request("filter Unique-ID abc\n\n"))),
            "Content-Type: command/reply\nReply-Text: +OK filter added. [Unique-ID]=[abc]\n\n"
        );
        assert_eq!(
            written(&sw.on_request(&request("filter delete Unique-ID abc\n\n"))),
            "Content-Type: command/reply\nReply-Text: +OK filter deleted. [Unique-ID][abc]\n\n"
        );
        let uuid = sw.uuid().to_owned();
        assert_eq!(
            written(&sw.on_request(&request(&format!("api uuid_getvar {uuid} read_codec\n\n")))),
            "Content-Type: api/response\nContent-Length: 4\n\nPCMU"
        );
        assert_eq!(
            written(&sw.on_request(&request(
                "api uuid_kill 00000000-0000-0000-0000-000000000000\n\n"
            ))),
            "Content-Type: api/response\nContent-Length: 22\n\n-ERR No such channel!\n"
        );
    }

    #[test]
    fn myevents_parks_and_answer_executes() {
        let mut sw = switch(false);
        let actions = sw.on_request(&request("myevents\n\n"));
        assert_eq!(event_names(&actions), ["CHANNEL_PARK"]);
        let actions = sw.on_request(&request(
            "sendmsg\ncall-command: execute\nexecute-app-name: answer\nEvent-UUID: abc\n\n",
        ));
        assert_eq!(
            event_names(&actions),
            [
                "CHANNEL_EXECUTE",
                "CHANNEL_ANSWER",
                "CHANNEL_EXECUTE_COMPLETE"
            ]
        );
        assert!(written(&actions).starts_with("Content-Type: command/reply\nReply-Text: +OK\n\n"));
        assert_eq!(
            written(&actions).matches("Application-UUID: abc\n").count(),
            2
        );
        // Answering twice does not answer again.
        let again = sw.on_request(&request(
            "sendmsg\ncall-command: execute\nexecute-app-name: answer\n\n",
        ));
        assert_eq!(
            event_names(&again),
            ["CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE"]
        );
    }

    #[test]
    fn set_takes_its_argument_from_the_body() {
        let mut sw = switch(true);
        sw.on_request(&request(
            "sendmsg\ncall-command: execute\nexecute-app-name: set\ncontent-type: text/plain\ncontent-length: 23\n\nfixture_var=hello world",
        ));
        let uuid = sw.uuid().to_owned();
        let out =
            written(&sw.on_request(&request(&format!("api uuid_getvar {uuid} fixture_var\n\n"))));
        assert_eq!(
            out,
            "Content-Type: api/response\nContent-Length: 11\n\nhello world"
        );
    }

    #[test]
    fn engine_hangup_with_linger_waits_for_exit() {
        let mut sw = switch(true);
        sw.on_request(&request("myevents\n\n"));
        sw.on_request(&request("linger\n\n"));
        let actions = sw.on_request(&request(
            "sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING\n\n",
        ));
        assert!(actions.contains(&Action::StopUnicast(StopReason::Hangup)));
        assert!(actions.contains(&Action::HungUp(Hangup::Engine {
            cause: "NORMAL_CLEARING".into()
        })));
        assert_eq!(actions.last(), Some(&Action::Lingering(None)));
        let out = written(&actions);
        assert!(out.ends_with("Content-Disposition: linger\nChannel-Name: sofia/internal/+4930123456@127.0.0.1\nLinger-Time: -1\nContent-Length: 0\n\n"));
        assert_eq!(event_names(&actions).len(), 6);
        let exit = sw.on_request(&request("exit\n\n"));
        assert!(written(&exit).starts_with("Content-Type: command/reply\nReply-Text: +OK bye\n\nContent-Type: text/disconnect-notice\n"));
        assert_eq!(exit.last(), Some(&Action::Close(SessionEnd::Exit)));
    }

    #[test]
    fn uuid_kill_puts_the_linger_notice_after_channel_hangup() {
        let mut sw = switch(true);
        sw.on_request(&request("myevents\n\n"));
        sw.on_request(&request("linger\n\n"));
        let uuid = sw.uuid().to_owned();
        let out = written(&sw.on_request(&request(&format!("api uuid_kill {uuid}\n\n"))));
        let hangup = out.find("Event-Name: CHANNEL_HANGUP\n").unwrap();
        let notice = out.find("Content-Disposition: linger").unwrap();
        let unpark = out.find("Event-Name: CHANNEL_UNPARK").unwrap();
        assert!(out.starts_with("Content-Type: api/response\nContent-Length: 4\n\n+OK\n"));
        assert!(hangup < notice && notice < unpark);
    }

    #[test]
    fn caller_hangup_without_linger_disconnects() {
        let mut sw = switch(true);
        sw.on_request(&request("myevents\n\n"));
        let actions = sw.caller_hangup();
        assert_eq!(
            actions.last(),
            Some(&Action::Close(SessionEnd::Disconnected))
        );
        let out = written(&actions);
        assert!(out.contains("variable_sip_hangup_disposition: recv_bye\n"));
        assert!(out.ends_with(&format!(
            "Content-Disposition: disconnect\nContent-Length: 67\n\n{GOODBYE}"
        )));
        // Nothing more once closed.
        assert!(sw.on_request(&request("exit\n\n")).is_empty());
    }

    #[test]
    fn linger_seconds_close_after_the_notice() {
        let mut sw = switch(true);
        sw.on_request(&request("linger 2\n\n"));
        let actions = sw.caller_hangup();
        assert_eq!(
            actions.last(),
            Some(&Action::Lingering(Some(Duration::from_secs(3))))
        );
        assert!(written(&actions).contains("Linger-Time: 2\n"));
        let expired = sw.linger_expired();
        assert!(written(&expired).contains("Content-Disposition: disconnect\n"));
        assert_eq!(
            expired.last(),
            Some(&Action::Close(SessionEnd::LingerExpired))
        );
    }

    #[test]
    fn no_events_without_subscription() {
        let mut sw = switch(true);
        let actions = sw.on_request(&request(
            "sendmsg\ncall-command: execute\nexecute-app-name: answer\n\n",
        ));
        assert!(event_names(&actions).is_empty());
    }

    #[test]
    fn playback_ends_unicast_and_unicast_is_parsed() {
        let mut sw = switch(true);
        let actions = sw.on_request(&request(
            "sendmsg\ncall-command: unicast\nlocal-ip: 127.0.0.1\nlocal-port: 9000\nremote-ip: 127.0.0.1\nremote-port: 9001\ntransport: udp\nflags: native\n\n",
        ));
        assert_eq!(
            actions[1],
            Action::StartUnicast(UnicastRequest {
                local: "127.0.0.1:9000".parse().unwrap(),
                remote: "127.0.0.1:9001".parse().unwrap(),
                native: true,
            })
        );
        let actions = sw.on_request(&request(
            "sendmsg\ncall-command: execute\nexecute-app-name: playback\nexecute-app-arg: x.wav\n\n",
        ));
        assert!(
            actions.contains(&Action::StopUnicast(StopReason::Application(
                "playback".into()
            )))
        );
        let bad = sw.on_request(&request(
            "sendmsg\ncall-command: unicast\nlocal-port: nine\n\n",
        ));
        assert!(matches!(bad[1], Action::UnicastFailed(_)));
    }
}
