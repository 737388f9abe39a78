//! What a [`Frame`] from FreeSWITCH means, by its `Content-Type`.

use crate::event::{decode_values, Event, EventError};
use crate::frame::{Frame, Headers};

/// A message from FreeSWITCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `auth/request`: the inbound banner; answer with `auth`.
    AuthRequest,
    /// `command/reply`: the answer to every command except `api`.
    CommandReply(Reply),
    /// `api/response`: the output of an `api` command.
    ApiResponse(ApiResponse),
    /// `text/event-plain|json|xml`.
    Event(Event),
    /// `log/data` (after `log <level>`).
    Log(LogLine),
    /// `text/disconnect-notice`: the channel or the session is going away.
    DisconnectNotice(DisconnectNotice),
    /// `text/rude-rejection`: the peer is not allowed by the ACL; FreeSWITCH closes next.
    RudeRejection(String),
    /// A content type this library does not know; kept whole for forward compatibility.
    Unknown(Frame),
}

/// Why a well-framed message could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The frame has no `Content-Type` and is not the outbound `connect` reply.
    #[error("message without Content-Type")]
    MissingContentType,
    /// A body that must be text is not UTF-8.
    #[error("{content_type} body is not valid UTF-8")]
    InvalidUtf8 {
        /// The message's content type.
        content_type: &'static str,
    },
    /// An event body failed to decode.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A header that must be a number is not.
    #[error("header {header:?} is not a number: {value:?}")]
    NotANumber {
        /// Header name.
        header: &'static str,
        /// The value received.
        value: String,
    },
}

/// The `command/reply` to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `Reply-Text` with the trailing newline removed: `+OK accepted`, `-ERR invalid`, …
    pub text: String,
    /// All headers of the reply. For the outbound `connect` reply these are the channel
    /// data, already URL-decoded.
    pub headers: Headers,
}

impl Reply {
    /// True when `Reply-Text` starts with `+OK`.
    pub fn is_ok(&self) -> bool {
        self.text.starts_with("+OK")
    }

    /// `Job-UUID` of a `bgapi` reply.
    pub fn job_uuid(&self) -> Option<&str> {
        self.headers.get("Job-UUID")
    }
}

/// The `api/response` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The command's output as FreeSWITCH wrote it.
    pub body: String,
}

impl ApiResponse {
    /// FreeSWITCH reports `api` failures in the body: `-ERR …`, or `-USAGE: …`.
    pub fn is_err(&self) -> bool {
        self.body.starts_with("-ERR") || self.body.starts_with("-USAGE")
    }

    /// The body without its trailing newline.
    pub fn text(&self) -> &str {
        self.body.strip_suffix('\n').unwrap_or(&self.body)
    }
}

/// A `log/data` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `Log-Level` (0 emergency … 7 debug).
    pub level: u8,
    /// `User-Data`: usually the channel UUID, empty when none.
    pub user_data: String,
    /// `Log-File:Log-Line` and `Log-Func`, for the curious.
    pub source: String,
    /// The log text.
    pub text: String,
}

/// How FreeSWITCH is ending our control of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The socket closes now.
    Disconnect,
    /// The channel hung up but the socket stays for the remaining events. `None` means
    /// "forever" (`Linger-Time: -1`): the client must send `exit`.
    Linger {
        /// Seconds FreeSWITCH waits before closing, if bounded.
        seconds: Option<u32>,
    },
}

/// A `text/disconnect-notice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectNotice {
    /// What FreeSWITCH does next.
    pub disposition: Disposition,
    /// `Controlled-Session-UUID`, present in outbound mode.
    pub session_uuid: Option<String>,
    /// `Channel-Name` (sent unencoded).
    pub channel_name: Option<String>,
}

impl Message {
    /// Interprets a frame.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use esl_bridge::{frame::FrameDecoder, message::Message};
    /// let mut buf = BytesMut::from(&b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"[..]);
    /// let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
    /// let Message::CommandReply(reply) = Message::from_frame(frame).unwrap() else { panic!() };
    /// assert!(reply.is_ok());
    /// ```
    pub fn from_frame(frame: Frame) -> Result<Self, MessageError> {
        let content_type = frame.content_type().unwrap_or_default();
        // The outbound `connect` reply is the one command/reply whose header block is a
        // URL-encoded event (Event-Name: CHANNEL_DATA, Reply-Text `%2BOK%0A`).
        let is_channel_data = frame.headers.get("Event-Name").is_some();
        match content_type {
            "auth/request" => Ok(Self::AuthRequest),
            "command/reply" => {
                let headers = if is_channel_data {
                    decode_values(frame.headers)?
                } else {
                    frame.headers
                };
                let text = headers
                    .get("Reply-Text")
                    .unwrap_or_default()
                    .trim_end_matches('\n')
                    .to_owned();
                Ok(Self::CommandReply(Reply { text, headers }))
            }
            "api/response" => Ok(Self::ApiResponse(ApiResponse {
                body: body_text(&frame, "api/response")?,
            })),
            "text/event-plain" => Ok(Self::Event(Event::from_plain(body_bytes(&frame))?)),
            "text/event-json" => Ok(Self::Event(Event::from_json(body_bytes(&frame))?)),
            "text/event-xml" => Ok(Self::Event(Event::from_xml(body_bytes(&frame))?)),
            "log/data" => Ok(Self::Log(log_line(&frame)?)),
            "text/disconnect-notice" => Ok(Self::DisconnectNotice(disconnect_notice(&frame)?)),
            "text/rude-rejection" => Ok(Self::RudeRejection(body_text(
                &frame,
                "text/rude-rejection",
            )?)),
            "" => Err(MessageError::MissingContentType),
            _ => Ok(Self::Unknown(frame)),
        }
    }
}

fn body_bytes(frame: &Frame) -> &[u8] {
    frame.body.as_deref().unwrap_or_default()
}

fn body_text(frame: &Frame, content_type: &'static str) -> Result<String, MessageError> {
    String::from_utf8(body_bytes(frame).to_vec())
        .map_err(|_| MessageError::InvalidUtf8 { content_type })
}

fn log_line(frame: &Frame) -> Result<LogLine, MessageError> {
    let h = &frame.headers;
    let level = h.get("Log-Level").unwrap_or("7");
    let level = level.parse().map_err(|_| MessageError::NotANumber {
        header: "Log-Level",
        value: level.chars().take(20).collect(),
    })?;
    Ok(LogLine {
        level,
        user_data: h.get("User-Data").unwrap_or_default().to_owned(),
        source: format!(
            "{}:{} {}",
            h.get("Log-File").unwrap_or_default(),
            h.get("Log-Line").unwrap_or_default(),
            h.get("Log-Func").unwrap_or_default()
        ),
        text: body_text(frame, "log/data")?,
    })
}

fn disconnect_notice(frame: &Frame) -> Result<DisconnectNotice, MessageError> {
    let h = &frame.headers;
    let disposition = match h.get("Content-Disposition") {
        Some("linger") => {
            let raw = h.get("Linger-Time").unwrap_or("-1");
            let seconds: i64 = raw.trim().parse().map_err(|_| MessageError::NotANumber {
                header: "Linger-Time",
                value: raw.chars().take(20).collect(),
            })?;
            Disposition::Linger {
                seconds: u32::try_from(seconds).ok(),
            }
        }
        _ => Disposition::Disconnect,
    };
    Ok(DisconnectNotice {
        disposition,
        session_uuid: h.get("Controlled-Session-UUID").map(str::to_owned),
        channel_name: h.get("Channel-Name").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use bytes::BytesMut;

    fn parse(input: &[u8]) -> Result<Message, MessageError> {
        let mut buf = BytesMut::from(input);
        let frame = FrameDecoder::default()
            .decode(&mut buf)
            .expect("frames")
            .expect("one frame");
        Message::from_frame(frame)
    }

    fn plain_event(body: &str) -> Vec<u8> {
        format!(
            "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn truncated_percent_escape_in_event_is_a_typed_error() {
        let err = parse(&plain_event("Event-Name: X\nChannel-Name: sofia%2\n\n")).unwrap_err();
        assert!(
            matches!(&err, MessageError::Event(EventError::UrlDecode { header, .. }) if header == "Channel-Name"),
            "{err}"
        );
    }

    #[test]
    fn inner_body_shorter_than_announced_is_a_typed_error() {
        let err = parse(&plain_event("Event-Name: X\nContent-Length: 50\n\nshort")).unwrap_err();
        assert!(matches!(
            err,
            MessageError::Event(EventError::ShortBody {
                expected: 50,
                available: 5
            })
        ));
    }

    #[test]
    fn invalid_utf8_api_body_is_a_typed_error() {
        let err = parse(b"Content-Type: api/response\nContent-Length: 2\n\n\xff\xfe").unwrap_err();
        assert!(matches!(
            err,
            MessageError::InvalidUtf8 {
                content_type: "api/response"
            }
        ));
    }

    #[test]
    fn malformed_json_and_xml_events_are_typed_errors() {
        let json = b"Content-Length: 3\nContent-Type: text/event-json\n\n[1]";
        assert!(matches!(
            parse(json),
            Err(MessageError::Event(EventError::Json(_)))
        ));
        let xml = b"Content-Length: 7\nContent-Type: text/event-xml\n\n<event>";
        assert!(matches!(
            parse(xml),
            Err(MessageError::Event(EventError::Xml(_)))
        ));
    }

    #[test]
    fn rude_rejection_is_recognised() {
        let msg = parse(
            b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n",
        )
        .unwrap();
        assert_eq!(
            msg,
            Message::RudeRejection("Access Denied, go away.\n".into())
        );
    }

    #[test]
    fn unknown_content_type_is_kept_not_rejected() {
        assert!(matches!(
            parse(b"Content-Type: x/new\n\n"),
            Ok(Message::Unknown(_))
        ));
        assert!(matches!(
            parse(b"Foo: bar\n\n"),
            Err(MessageError::MissingContentType)
        ));
    }
}
