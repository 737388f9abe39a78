//! The recorded FreeSWITCH messages the double replays, and how they are made to describe
//! the double's call (sans-IO).
//!
//! Every message the double sends to the engine over ESL is either a recorded message
//! with the call's identity substituted (channel data, events) or a short reply whose
//! exact bytes the recordings show (`command/reply`, `api/response`, disconnect notices).
//! Header lines that the substitution does not touch keep their recorded bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use esl_bridge::frame::{Frame, FrameDecoder, Headers};
use esl_bridge::urlcode::{url_decode, url_encode};

use super::DoubleError;

/// The outbound session whose `connect` reply, CHANNEL_PARK and `answer` execute events
/// the double replays.
pub const CONNECT_RECORDING: &str = "esl-outbound/outbound_basic.fs_to_client.raw";
/// The outbound session whose hang-up sequence (CHANNEL_HANGUP … CHANNEL_HANGUP_COMPLETE)
/// the double replays: it has no stray application variables, unlike the others.
pub const HANGUP_RECORDING: &str = "esl-outbound/outbound_uuid_kill_no_linger.fs_to_client.raw";
/// A G722 call: the codec headers of a 16 kHz channel come from its `connect` reply.
pub const G722_RECORDING: &str = "media-unicast/outbound_unicast_g722_l16.fs_to_client.raw";

/// Headers that describe the negotiated codec; copied from [`G722_RECORDING`] for 16 kHz.
const CODEC_HEADERS: &[&str] = &[
    "Channel-Read-Codec-Name",
    "Channel-Read-Codec-Rate",
    "Channel-Read-Codec-Bit-Rate",
    "Channel-Write-Codec-Name",
    "Channel-Write-Codec-Rate",
    "Channel-Write-Codec-Bit-Rate",
    "variable_switch_r_sdp",
    "variable_ep_codec_string",
    "variable_rtp_audio_recv_pt",
    "variable_rtp_use_codec_name",
    "variable_rtp_use_codec_rate",
    "variable_rtp_use_codec_ptime",
    "variable_rtp_last_audio_codec_string",
    "variable_read_codec",
    "variable_original_read_codec",
    "variable_read_rate",
    "variable_original_read_rate",
    "variable_write_codec",
    "variable_write_rate",
    "variable_rtp_local_sdp_str",
    "variable_rtp_use_pt",
];

/// Headers whose whole value is the dialled number.
const DESTINATION_HEADERS: &[&str] = &[
    "Channel-Destination-Number",
    "Caller-Destination-Number",
    "variable_sip_req_user",
    "variable_sip_to_user",
    "variable_destination_number",
];

/// One `Name: value` line; `value` is exactly as recorded (URL-encoded where FreeSWITCH
/// encodes), `spaced` whether a space followed the colon.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    name: String,
    value: String,
    spaced: bool,
}

/// A header block (outer headers of the `connect` reply, or a plain event's body) that
/// renders back to the recorded bytes unless a value is changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    lines: Vec<Line>,
}

impl Block {
    /// Parses `Name: value` lines (no terminating blank line).
    pub fn parse(text: &str) -> Result<Self, String> {
        let lines = text
            .split('\n')
            .filter(|l| !l.is_empty())
            .map(|line| {
                let (name, rest) = line
                    .split_once(':')
                    .ok_or_else(|| format!("header line without ':': {line:.80}"))?;
                let (value, spaced) = match rest.strip_prefix(' ') {
                    Some(v) => (v, true),
                    None => (rest, false),
                };
                Ok(Line {
                    name: name.to_owned(),
                    value: value.to_owned(),
                    spaced,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { lines })
    }

    fn from_headers(headers: &Headers) -> Self {
        // esl-bridge keeps values as received, minus the one space after the colon, which
        // every recorded FreeSWITCH header has.
        Self {
            lines: headers
                .iter()
                .map(|(n, v)| Line {
                    name: n.to_owned(),
                    value: v.to_owned(),
                    spaced: true,
                })
                .collect(),
        }
    }

    /// The decoded value of the first `name` header.
    pub fn get(&self, name: &str) -> Option<String> {
        self.lines
            .iter()
            .find(|l| l.name == name)
            .and_then(|l| url_decode(&l.value).ok())
            .map(|v| v.into_owned())
    }

    /// Every header, decoded (a value that does not decode is kept as recorded).
    pub fn decoded(&self) -> impl Iterator<Item = (&str, String)> {
        self.lines.iter().map(|l| {
            let value = url_decode(&l.value).map_or_else(|_| l.value.clone(), |v| v.into_owned());
            (l.name.as_str(), value)
        })
    }

    /// Sets every `name` header that exists to `value`; false if there is none.
    pub fn replace(&mut self, name: &str, value: &str) -> bool {
        let mut found = false;
        for line in self.lines.iter_mut().filter(|l| l.name == name) {
            found = true;
            if url_decode(&line.value).ok().as_deref() != Some(value) {
                line.value = url_encode(value).into_owned();
            }
        }
        found
    }

    /// Inserts `name: value` after the first `anchor` header (or at the end).
    pub fn insert_after(&mut self, anchor: &str, name: &str, value: &str) {
        let at = self
            .lines
            .iter()
            .position(|l| l.name == anchor)
            .map_or(self.lines.len(), |i| i + 1);
        self.lines.insert(
            at,
            Line {
                name: name.to_owned(),
                value: url_encode(value).into_owned(),
                spaced: true,
            },
        );
    }

    /// Removes every `name` header.
    pub fn remove(&mut self, name: &str) {
        self.lines.retain(|l| l.name != name);
    }

    /// Applies `f` to every decoded value; a line changes only when `f` returns a
    /// different value, so untouched lines keep their recorded bytes.
    fn map_values(&mut self, mut f: impl FnMut(&str, &str) -> Option<String>) {
        for line in &mut self.lines {
            let Ok(decoded) = url_decode(&line.value) else {
                continue;
            };
            if let Some(new) = f(&line.name, &decoded) {
                if new != decoded {
                    line.value = url_encode(&new).into_owned();
                }
            }
        }
    }

    /// The lines, each ended by `\n` (no terminating blank line).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            out.push_str(&line.name);
            out.push_str(if line.spaced { ": " } else { ":" });
            out.push_str(&line.value);
            out.push('\n');
        }
        out
    }
}

/// Who the channel is: what the substitution replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `Unique-ID`.
    pub uuid: String,
    /// `Caller-Caller-ID-Number`.
    pub caller: String,
    /// `Caller-Destination-Number`.
    pub destination: String,
}

impl Identity {
    fn of(block: &Block, path: &Path) -> Result<Self, DoubleError> {
        let get = |name: &str| {
            block.get(name).ok_or_else(|| DoubleError::FixtureFormat {
                path: path.to_owned(),
                what: format!("connect reply without {name}"),
            })
        };
        Ok(Self {
            uuid: get("Unique-ID")?,
            caller: get("Caller-Caller-ID-Number")?,
            destination: get("Caller-Destination-Number")?,
        })
    }
}

/// Rewrites a recorded block from the recording's identity to the call's.
fn personalize(block: &mut Block, from: &Identity, to: &Identity, codec: Option<&Block>) {
    if let Some(codec) = codec {
        for line in &codec.lines {
            for target in block.lines.iter_mut().filter(|l| l.name == line.name) {
                target.value.clone_from(&line.value);
            }
        }
    }
    let from_dest_at = format!("{}@", from.destination);
    let to_dest_at = format!("{}@", to.destination);
    let pairs = [
        (from.uuid.as_str(), to.uuid.as_str()),
        (from.caller.as_str(), to.caller.as_str()),
        (from_dest_at.as_str(), to_dest_at.as_str()),
    ];
    block.map_values(|name, value| {
        if name == "variable_sip_from_user_stripped" && value == strip_plus(&from.caller) {
            return Some(strip_plus(&to.caller).to_owned());
        }
        if DESTINATION_HEADERS.contains(&name) && value == from.destination {
            return Some(to.destination.clone());
        }
        replace_all(value, &pairs)
    });
}

fn strip_plus(number: &str) -> &str {
    number.strip_prefix('+').unwrap_or(number)
}

/// Replaces every occurrence of each `from` in one left-to-right pass (so a replacement
/// is never itself rewritten by a later pair); `None` when nothing matched.
fn replace_all(value: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut changed = false;
    'scan: while let Some(ch) = rest.chars().next() {
        for (from, to) in pairs {
            if !from.is_empty() && rest.starts_with(from) {
                out.push_str(to);
                rest = &rest[from.len()..];
                changed = true;
                continue 'scan;
            }
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    changed.then_some(out)
}

/// The channel state before `answer`, as FreeSWITCH reported it for an inbound channel
/// executing `answer` in `esl-inbound/inbound_plain_all` (the outbound recordings were
/// all answered by the dialplan before `socket`).
const RINGING: &[(&str, &str)] = &[
    ("Answer-State", "ringing"),
    ("Channel-Call-State", "RINGING"),
    ("Channel-Channel-Answered-Time", "0"),
    ("Caller-Channel-Answered-Time", "0"),
];

/// The messages loaded from the fixtures, before any call's identity is applied.
#[derive(Debug, Clone)]
pub struct Recordings {
    connect: Block,
    connect_identity: Identity,
    park: Block,
    execute: Block,
    execute_complete: Block,
    hangup: Vec<Block>,
    hangup_identity: Identity,
    g722_codec: Block,
}

/// Reads a recorded `fs_to_client` stream.
fn read(path: &Path) -> Result<Vec<u8>, DoubleError> {
    std::fs::read(path).map_err(|source| DoubleError::Fixture {
        path: path.to_owned(),
        source,
    })
}

/// Cuts a recorded `fs_to_client` stream (or a prefix of one that ends on a message
/// boundary) into frames with esl-bridge; `path` names it in errors.
fn frames(path: &Path, raw: &[u8]) -> Result<Vec<Frame>, DoubleError> {
    let bad = |what: String| DoubleError::FixtureFormat {
        path: path.to_owned(),
        what,
    };
    let mut buf = BytesMut::from(raw);
    let mut decoder = FrameDecoder::default();
    let mut out = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).map_err(|e| bad(e.to_string()))? {
        out.push(frame);
    }
    decoder.finish(&mut buf).map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

/// The plain events of a recording, in order, as blocks.
fn events(path: &Path, frames: &[Frame]) -> Result<Vec<Block>, DoubleError> {
    frames
        .iter()
        .filter(|f| f.content_type() == Some("text/event-plain"))
        .map(|f| {
            let body = f.body.as_deref().unwrap_or_default();
            let text = std::str::from_utf8(body).map_err(|_| DoubleError::FixtureFormat {
                path: path.to_owned(),
                what: "event body is not UTF-8".into(),
            })?;
            Block::parse(text).map_err(|what| DoubleError::FixtureFormat {
                path: path.to_owned(),
                what,
            })
        })
        .collect()
}

fn connect_reply(path: &Path, frames: &[Frame]) -> Result<Block, DoubleError> {
    // The connect reply is the first message and the only one whose Content-Type is not
    // its first header.
    frames
        .first()
        .filter(|f| f.headers.get("Event-Name") == Some("CHANNEL_DATA"))
        .map(|f| Block::from_headers(&f.headers))
        .ok_or_else(|| DoubleError::FixtureFormat {
            path: path.to_owned(),
            what: "the first message is not the connect reply (CHANNEL_DATA)".into(),
        })
}

fn find<'a>(
    events: &'a [Block],
    path: &Path,
    name: &str,
    application: Option<&str>,
) -> Result<&'a Block, DoubleError> {
    events
        .iter()
        .find(|e| {
            e.get("Event-Name").as_deref() == Some(name)
                && application.is_none_or(|a| e.get("Application").as_deref() == Some(a))
        })
        .ok_or_else(|| DoubleError::FixtureFormat {
            path: path.to_owned(),
            what: format!(
                "no {name} event{}",
                application.map_or(String::new(), |a| format!(" for {a}"))
            ),
        })
}

impl Recordings {
    /// Loads the recordings from a fixtures directory.
    pub fn load(dir: &Path) -> Result<Self, DoubleError> {
        let [basic_path, kill_path, g722_path] =
            [CONNECT_RECORDING, HANGUP_RECORDING, G722_RECORDING].map(|p| dir.join(p));
        let (basic, kill, g722) = (read(&basic_path)?, read(&kill_path)?, read(&g722_path)?);
        Self::from_streams(
            (basic_path.as_path(), basic.as_slice()),
            (kill_path.as_path(), kill.as_slice()),
            (g722_path.as_path(), g722.as_slice()),
        )
    }

    /// Builds the recordings from the bytes of [`CONNECT_RECORDING`], [`HANGUP_RECORDING`]
    /// and [`G722_RECORDING`] (each with the path that names it in errors). A prefix of a
    /// recording that ends on a message boundary is enough: of [`CONNECT_RECORDING`] up to
    /// the `answer` CHANNEL_EXECUTE_COMPLETE, of [`HANGUP_RECORDING`] up to
    /// CHANNEL_HANGUP_COMPLETE, of [`G722_RECORDING`] the `connect` reply.
    pub fn from_streams(
        (basic_path, basic): (&Path, &[u8]),
        (kill_path, kill): (&Path, &[u8]),
        (g722_path, g722): (&Path, &[u8]),
    ) -> Result<Self, DoubleError> {
        let basic = frames(basic_path, basic)?;
        let connect = connect_reply(basic_path, &basic)?;
        let connect_identity = Identity::of(&connect, basic_path)?;
        let basic_events = events(basic_path, &basic)?;
        let park = find(&basic_events, basic_path, "CHANNEL_PARK", None)?.clone();
        let execute = find(&basic_events, basic_path, "CHANNEL_EXECUTE", Some("answer"))?.clone();
        let execute_complete = find(
            &basic_events,
            basic_path,
            "CHANNEL_EXECUTE_COMPLETE",
            Some("answer"),
        )?
        .clone();

        let kill = frames(kill_path, kill)?;
        let hangup_identity = Identity::of(&connect_reply(kill_path, &kill)?, kill_path)?;
        let kill_events = events(kill_path, &kill)?;
        let start = kill_events
            .iter()
            .position(|e| e.get("Event-Name").as_deref() == Some("CHANNEL_HANGUP"));
        let end = kill_events
            .iter()
            .position(|e| e.get("Event-Name").as_deref() == Some("CHANNEL_HANGUP_COMPLETE"));
        let hangup = match (start, end) {
            (Some(s), Some(e)) if s < e => kill_events[s..=e].to_vec(),
            _ => {
                return Err(DoubleError::FixtureFormat {
                    path: kill_path.to_owned(),
                    what: "no CHANNEL_HANGUP … CHANNEL_HANGUP_COMPLETE sequence".into(),
                })
            }
        };

        let g722 = connect_reply(g722_path, &frames(g722_path, g722)?)?;
        let g722_codec = Block {
            lines: g722
                .lines
                .into_iter()
                .filter(|l| CODEC_HEADERS.contains(&l.name.as_str()))
                .collect(),
        };
        Ok(Self {
            connect,
            connect_identity,
            park,
            execute,
            execute_complete,
            hangup,
            hangup_identity,
            g722_codec,
        })
    }

    /// The identity of the recorded call the connect reply comes from.
    pub fn recorded_identity(&self) -> &Identity {
        &self.connect_identity
    }

    /// The recorded messages rewritten for one call.
    pub fn script(&self, to: &Identity, rate: u32, answered: bool) -> ChannelScript {
        // The recordings are PCMU calls; only a 16 kHz call needs other codec headers.
        let codec = (rate != 8_000).then_some(&self.g722_codec);
        let from_basic = |block: &Block| {
            let mut block = block.clone();
            personalize(&mut block, &self.connect_identity, to, codec);
            block
        };
        let mut connect = from_basic(&self.connect);
        let mut park = from_basic(&self.park);
        let mut execute = from_basic(&self.execute);
        let execute_complete = from_basic(&self.execute_complete);
        if !answered {
            for block in [&mut connect, &mut park, &mut execute] {
                for (name, value) in RINGING {
                    block.replace(name, value);
                }
            }
        }
        let hangup = self
            .hangup
            .iter()
            .map(|block| {
                let mut block = block.clone();
                personalize(&mut block, &self.hangup_identity, to, codec);
                block
            })
            .collect();
        let sequence = connect
            .get("Event-Sequence")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let variables = connect
            .decoded()
            .filter_map(|(n, v)| n.strip_prefix("variable_").map(|n| (n.to_owned(), v)))
            .collect();
        ChannelScript {
            channel_name: connect.get("Channel-Name").unwrap_or_default(),
            connect,
            park,
            execute,
            execute_complete,
            hangup,
            sequence,
            variables,
            uuid: to.uuid.clone(),
        }
    }
}

/// Where the fixtures are: `TOM_FIXTURES`, else `../../shared/fixtures/freeswitch`
/// relative to this package's root.
pub fn default_fixtures_dir() -> PathBuf {
    std::env::var_os("TOM_FIXTURES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/freeswitch"),
        PathBuf::from,
    )
}

/// The recorded messages of one call, with its identity applied.
#[derive(Debug, Clone)]
pub struct ChannelScript {
    connect: Block,
    park: Block,
    execute: Block,
    execute_complete: Block,
    hangup: Vec<Block>,
    /// The last `Event-Sequence` used; events are renumbered from the connect reply's.
    sequence: u64,
    /// `variable_*` of the channel data, for `uuid_getvar`.
    pub variables: BTreeMap<String, String>,
    /// `Channel-Name`, decoded.
    pub channel_name: String,
    /// The channel UUID.
    pub uuid: String,
}

/// How FreeSWITCH frames an event body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEncoding {
    /// `text/event-plain`: the body is a header block with URL-encoded values.
    Plain,
    /// `text/event-json`: one JSON object of decoded string values.
    Json,
}

impl ChannelScript {
    /// The `connect` reply: the channel data header block and its blank line.
    pub fn connect_reply(&self) -> Vec<u8> {
        let mut out = self.connect.render();
        out.push('\n');
        out.into_bytes()
    }

    /// CHANNEL_PARK.
    pub fn park(&self) -> Block {
        self.park.clone()
    }

    /// CHANNEL_EXECUTE and CHANNEL_EXECUTE_COMPLETE of `app`, from the recorded `answer`
    /// pair with the application's headers changed the way the recorded `playback` and
    /// `set` pairs show them.
    pub fn execute(
        &self,
        app: &str,
        arg: Option<&str>,
        application_uuid: &str,
        response: &str,
    ) -> (Block, Block) {
        let mut start = self.execute.clone();
        let mut complete = self.execute_complete.clone();
        for block in [&mut start, &mut complete] {
            block.replace("variable_current_application", app);
            block.replace("Application", app);
            block.replace("Application-UUID", application_uuid);
            if let Some(arg) = arg {
                block.insert_after(
                    "variable_current_application",
                    "variable_current_application_data",
                    arg,
                );
                block.insert_after("Application", "Application-Data", arg);
            }
        }
        complete.replace("Application-Response", response);
        (start, complete)
    }

    /// CHANNEL_ANSWER, derived from the `answer` CHANNEL_EXECUTE (same channel headers)
    /// with the event's own headers as recorded for CHANNEL_ANSWER in
    /// `esl-inbound/inbound_plain_all`. No outbound recording has one: the fixture
    /// dialplan answered before `socket`.
    pub fn answer(&self) -> Block {
        let mut block = self.execute.clone();
        block.replace("Event-Name", "CHANNEL_ANSWER");
        block.replace("Event-Calling-File", "switch_channel.c");
        block.replace(
            "Event-Calling-Function",
            "switch_channel_perform_mark_answered",
        );
        block.replace("Event-Calling-Line-Number", "3846");
        block.replace("Answer-State", "answered");
        block.replace("Channel-Call-State", "RINGING");
        block.replace(
            "Channel-Channel-Answered-Time",
            &self
                .execute_complete
                .get("Channel-Channel-Answered-Time")
                .unwrap_or_default(),
        );
        block.replace(
            "Caller-Channel-Answered-Time",
            &self
                .execute_complete
                .get("Caller-Channel-Answered-Time")
                .unwrap_or_default(),
        );
        for name in ["Application", "Application-UUID", "Application-Data"] {
            block.remove(name);
        }
        block
    }

    /// CHANNEL_HANGUP … CHANNEL_HANGUP_COMPLETE as recorded, with the cause and which side
    /// sent the BYE (`send_bye` when the switch hung up, `recv_bye` when the caller did,
    /// as `media-unicast/outbound_unicast_pcmu_l16` shows for a caller hang-up).
    pub fn hangup(&self, cause: &str, disposition: &str) -> Vec<Block> {
        self.hangup
            .iter()
            .map(|block| {
                let mut block = block.clone();
                block.replace("Hangup-Cause", cause);
                block.replace("variable_hangup_cause", cause);
                if let Some(code) = q850(cause) {
                    block.replace("variable_hangup_cause_q850", code);
                }
                block.replace("variable_sip_hangup_disposition", disposition);
                block
            })
            .collect()
    }

    /// Frames an event, numbering it after the previous one.
    pub fn event_frame(&mut self, mut block: Block, encoding: EventEncoding) -> Vec<u8> {
        self.sequence += 1;
        block.replace("Event-Sequence", &self.sequence.to_string());
        match encoding {
            EventEncoding::Plain => {
                let body = block.render() + "\n";
                format!(
                    "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            EventEncoding::Json => {
                // JSON values are not URL-encoded (inbound_json_sip_call); all are strings.
                let map: serde_json::Map<String, serde_json::Value> = block
                    .decoded()
                    .map(|(n, v)| (n.to_owned(), serde_json::Value::String(v)))
                    .collect();
                let body = serde_json::Value::Object(map).to_string();
                format!(
                    "Content-Length: {}\nContent-Type: text/event-json\n\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        }
    }
}

/// Q.850 codes of the common hang-up causes (FreeSWITCH's `switch_cause_t`).
fn q850(cause: &str) -> Option<&'static str> {
    Some(match cause {
        "UNSPECIFIED" => "0",
        "NORMAL_CLEARING" => "16",
        "USER_BUSY" => "17",
        "NO_USER_RESPONSE" => "18",
        "NO_ANSWER" => "19",
        "CALL_REJECTED" => "21",
        "NORMAL_UNSPECIFIED" => "31",
        "NORMAL_TEMPORARY_FAILURE" => "41",
        "SWITCH_CONGESTION" => "42",
        "ORIGINATOR_CANCEL" => "487",
        "MANAGER_REQUEST" => "503",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recordings() -> Recordings {
        Recordings::load(&default_fixtures_dir()).expect("fixtures")
    }

    fn recorded_connect_bytes() -> Vec<u8> {
        let raw = std::fs::read(default_fixtures_dir().join(CONNECT_RECORDING)).unwrap();
        let end = raw.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        raw[..end].to_vec()
    }

    #[test]
    fn identity_rewrite_reproduces_the_recorded_connect_reply() {
        let rec = recordings();
        let same = rec.recorded_identity().clone();
        let script = rec.script(&same, 8_000, true);
        assert_eq!(script.connect_reply(), recorded_connect_bytes());
    }

    #[test]
    fn recorded_events_render_byte_exact() {
        let rec = recordings();
        let raw = std::fs::read(default_fixtures_dir().join(CONNECT_RECORDING)).unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let script = rec.script(rec.recorded_identity(), 8_000, true);
        for block in [
            script.park(),
            script.execute.clone(),
            script.execute_complete.clone(),
        ] {
            let body = block.render() + "\n";
            let framed = format!(
                "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
                body.len()
            );
            assert!(raw.contains(&framed), "{:?}", block.get("Event-Name"));
        }
    }

    #[test]
    fn rewrite_touches_only_identity_lines() {
        let rec = recordings();
        let to = Identity {
            uuid: "11111111-2222-3333-4444-555555555555".into(),
            caller: "+15550001111".into(),
            destination: "4242".into(),
        };
        let script = rec.script(&to, 8_000, true);
        let reply = String::from_utf8(script.connect_reply()).unwrap();
        let recorded = String::from_utf8(recorded_connect_bytes()).unwrap();
        let changed: Vec<(&str, &str)> = recorded
            .lines()
            .zip(reply.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(recorded.lines().count(), reply.lines().count());
        for (old, new) in &changed {
            assert!(
                old.contains("8bb67b32") || old.contains("4930123456") || old.contains("9999"),
                "{old} -> {new}"
            );
        }
        assert!(reply.contains("\nCaller-Caller-ID-Number: %2B15550001111\n"));
        assert!(reply.contains("\nvariable_sip_from_user_stripped: 15550001111\n"));
        assert!(reply.contains("\nChannel-Name: sofia/internal/%2B15550001111%40127.0.0.1\n"));
        assert!(reply.contains("\nvariable_sip_req_uri: 4242%40127.0.0.1%3A5060\n"));
        assert!(reply.contains("\nCaller-Destination-Number: 4242\n"));
        assert!(!reply.contains("8bb67b32"));
        assert!(!reply.contains("4930123456"));
        // Timestamps and other numbers that merely contain digits stay as recorded.
        assert!(reply.contains("\nvariable_sip_network_port: 5080\n"));
    }

    #[test]
    fn sixteen_khz_takes_the_g722_codec_headers() {
        let rec = recordings();
        let script = rec.script(rec.recorded_identity(), 16_000, true);
        let reply = String::from_utf8(script.connect_reply()).unwrap();
        assert!(reply.contains("\nChannel-Read-Codec-Name: G722\n"));
        assert!(reply.contains("\nChannel-Read-Codec-Rate: 16000\n"));
        assert!(reply.contains("\nvariable_read_rate: 16000\n"));
        // As recorded: G722's RTP clock stays 8000 while the channel rate is 16000.
        assert!(reply.contains("\nvariable_rtp_use_codec_rate: 8000\n"));
    }

    #[test]
    fn unanswered_channel_reports_ringing_until_answer() {
        let rec = recordings();
        let script = rec.script(rec.recorded_identity(), 8_000, false);
        let reply = String::from_utf8(script.connect_reply()).unwrap();
        assert!(reply.contains("\nAnswer-State: ringing\n"));
        assert!(reply.contains("\nChannel-Channel-Answered-Time: 0\n"));
        let answer = script.answer();
        assert_eq!(answer.get("Event-Name").as_deref(), Some("CHANNEL_ANSWER"));
        assert_eq!(answer.get("Answer-State").as_deref(), Some("answered"));
        assert_eq!(answer.get("Application"), None);
        assert_ne!(
            answer.get("Caller-Channel-Answered-Time").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn execute_pair_carries_the_application() {
        let rec = recordings();
        let script = rec.script(rec.recorded_identity(), 8_000, true);
        let (start, complete) =
            script.execute("playback", Some("/x y.wav"), "app-1", "FILE PLAYED");
        assert_eq!(start.get("Application").as_deref(), Some("playback"));
        assert_eq!(start.get("Application-Data").as_deref(), Some("/x y.wav"));
        assert_eq!(start.get("Application-UUID").as_deref(), Some("app-1"));
        assert_eq!(start.get("Application-Response"), None);
        assert_eq!(
            complete.get("Application-Response").as_deref(),
            Some("FILE PLAYED")
        );
        assert!(complete
            .render()
            .ends_with("Application: playback\nApplication-Data: /x%20y.wav\nApplication-Response: FILE%20PLAYED\nApplication-UUID: app-1\n"));
    }

    #[test]
    fn hangup_sequence_has_the_recorded_order_and_cause() {
        let rec = recordings();
        let script = rec.script(rec.recorded_identity(), 8_000, true);
        let events = script.hangup("USER_BUSY", "recv_bye");
        let names: Vec<String> = events.iter().filter_map(|e| e.get("Event-Name")).collect();
        assert_eq!(
            names,
            [
                "CHANNEL_HANGUP",
                "CHANNEL_UNPARK",
                "CHANNEL_EXECUTE_COMPLETE",
                "CHANNEL_STATE",
                "CHANNEL_STATE",
                "CHANNEL_HANGUP_COMPLETE"
            ]
        );
        let complete = events.last().unwrap().render();
        // Hangup-Cause appears twice in the recorded CHANNEL_HANGUP_COMPLETE; both change.
        assert_eq!(complete.matches("Hangup-Cause: USER_BUSY\n").count(), 2);
        assert!(complete.contains("variable_hangup_cause_q850: 17\n"));
        assert!(complete.contains("variable_sip_hangup_disposition: recv_bye\n"));
        assert!(complete.contains(&format!("Unique-ID: {}\n", rec.recorded_identity().uuid)));
    }

    #[test]
    fn events_are_framed_and_numbered() {
        let rec = recordings();
        let mut script = rec.script(rec.recorded_identity(), 8_000, true);
        let park = script.park();
        let first = script.event_frame(park.clone(), EventEncoding::Plain);
        let second = script.event_frame(park, EventEncoding::Json);
        let mut buf = BytesMut::from(&first[..]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        let event = esl_bridge::Event::from_plain(frame.body.as_deref().unwrap()).unwrap();
        assert_eq!(event.name(), Some("CHANNEL_PARK"));
        assert_eq!(event.header("Event-Sequence"), Some("885"));
        let mut buf = BytesMut::from(&second[..]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        let event = esl_bridge::Event::from_json(frame.body.as_deref().unwrap()).unwrap();
        assert_eq!(event.header("Event-Sequence"), Some("886"));
        assert_eq!(
            event.header("Channel-Name"),
            Some("sofia/internal/+4930123456@127.0.0.1")
        );
    }

    #[test]
    fn replace_all_is_single_pass() {
        assert_eq!(
            replace_all("+49@x +49", &[("+49", "+4949"), ("49", "0")]).as_deref(),
            Some("+4949@x +4949")
        );
        assert_eq!(replace_all("abc", &[("x", "y")]), None);
    }
}
