//! FreeSWITCH events in their three wire formats, decoded into one [`Event`] type.
//!
//! * plain: the body is a header block with URL-encoded values, then (if the event has a
//!   body) an inner `Content-Length` and that many bytes;
//! * json: one object of string values, not URL-encoded, body under `_body`;
//! * xml: `<event><headers>…</headers><Content-Length>…</Content-Length><body>…</body></event>`,
//!   header values URL-encoded, body not.

use crate::frame::{content_length_of, parse_header_lines, FrameError, Headers};
use crate::urlcode::{url_decode, UrlDecodeError};

/// The format an event subscription asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventFormat {
    /// `text/event-plain` (FreeSWITCH's default).
    #[default]
    Plain,
    /// `text/event-json`.
    Json,
    /// `text/event-xml`.
    Xml,
}

impl EventFormat {
    /// The word used in `event <format> …` commands.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Json => "json",
            Self::Xml => "xml",
        }
    }
}

/// Why an event body could not be decoded. The frame around it was fine, so the
/// connection goes on; the event is counted and skipped.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The plain header block is malformed.
    #[error("malformed plain event: {0}")]
    Plain(#[from] FrameError),
    /// A URL-encoded value is malformed.
    #[error("header {header:?}: {source}")]
    UrlDecode {
        /// The header whose value is bad.
        header: String,
        /// What is wrong with it.
        source: UrlDecodeError,
    },
    /// The inner `Content-Length` promises more bytes than the event carries.
    #[error("inner body announces {expected} bytes but {available} are present")]
    ShortBody {
        /// Announced length.
        expected: usize,
        /// Bytes present.
        available: usize,
    },
    /// The body is not UTF-8.
    #[error("event is not valid UTF-8")]
    InvalidUtf8,
    /// The JSON is not an object.
    #[error("malformed json event: {0}")]
    Json(String),
    /// The XML does not have the expected shape.
    #[error("malformed xml event: {0}")]
    Xml(String),
}

/// A FreeSWITCH event: decoded headers (in wire order) and optional body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    headers: Headers,
    body: Option<String>,
}

impl Event {
    /// Builds an event from decoded parts (for simulators and tests).
    pub fn new(headers: Headers, body: Option<String>) -> Self {
        Self { headers, body }
    }

    /// Decodes a `text/event-plain` body.
    pub fn from_plain(raw: &[u8]) -> Result<Self, EventError> {
        let text = std::str::from_utf8(raw).map_err(|_| EventError::InvalidUtf8)?;
        let (block, rest) = match text.find("\n\n") {
            Some(end) => (&text[..end], &text[end + 2..]),
            None => (text.trim_end_matches('\n'), ""),
        };
        let headers = parse_header_lines(block.split('\n'))?;
        let headers = decode_values(headers)?;
        let body = match content_length_of(&headers)? {
            Some(expected) => {
                let inner = rest.get(..expected).ok_or(EventError::ShortBody {
                    expected,
                    available: rest.len(),
                })?;
                Some(inner.to_owned())
            }
            None => None,
        };
        Ok(Self { headers, body })
    }

    /// Decodes a `text/event-json` body.
    pub fn from_json(raw: &[u8]) -> Result<Self, EventError> {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(raw).map_err(|e| EventError::Json(e.to_string()))?;
        let mut headers = Headers::new();
        let mut body = None;
        for (name, value) in object {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            if name == "_body" {
                body = Some(value);
            } else {
                headers.push(name, value);
            }
        }
        Ok(Self { headers, body })
    }

    /// Decodes a `text/event-xml` body.
    pub fn from_xml(raw: &[u8]) -> Result<Self, EventError> {
        let text = std::str::from_utf8(raw).map_err(|_| EventError::InvalidUtf8)?;
        xml::parse(text)
    }

    /// `Event-Name`, e.g. `CHANNEL_ANSWER`.
    pub fn name(&self) -> Option<&str> {
        self.header("Event-Name")
    }

    /// `Event-Subclass` of a CUSTOM event, e.g. `mod_audio_stream::play`.
    pub fn subclass(&self) -> Option<&str> {
        self.header("Event-Subclass")
    }

    /// `Unique-ID`: the channel the event is about.
    pub fn unique_id(&self) -> Option<&str> {
        self.header("Unique-ID")
    }

    /// `Job-UUID` of a BACKGROUND_JOB.
    pub fn job_uuid(&self) -> Option<&str> {
        self.header("Job-UUID")
    }

    /// `Application-UUID` of CHANNEL_EXECUTE / CHANNEL_EXECUTE_COMPLETE.
    pub fn application_uuid(&self) -> Option<&str> {
        self.header("Application-UUID")
    }

    /// A header by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// A channel variable: the header `variable_<name>`.
    pub fn variable(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.strip_prefix("variable_") == Some(name))
            .map(|(_, v)| v)
    }

    /// All headers in wire order.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The event's body, if it has one (BACKGROUND_JOB result, CUSTOM payload).
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }
}

/// URL-decodes every header value, naming the header on failure.
pub(crate) fn decode_values(headers: Headers) -> Result<Headers, EventError> {
    headers.try_map_values(|name, value| match url_decode(&value) {
        Ok(std::borrow::Cow::Borrowed(_)) => Ok(value),
        Ok(std::borrow::Cow::Owned(decoded)) => Ok(decoded),
        Err(source) => Err(EventError::UrlDecode {
            header: name.to_owned(),
            source,
        }),
    })
}

mod xml {
    use super::{decode_values, Event, EventError};
    use crate::frame::Headers;
    use quick_xml::events::Event as Xml;
    use quick_xml::Reader;

    /// Where the reader is inside `<event>`.
    enum Place {
        Outside,
        Event,
        Headers,
        Header(String),
        ContentLength,
        Body,
    }

    pub(super) fn parse(text: &str) -> Result<Event, EventError> {
        let mut reader = Reader::from_str(text);
        let mut place = Place::Outside;
        let mut headers = Headers::new();
        let mut value = String::new();
        let mut content_length: Option<usize> = None;
        let mut body: Option<String> = None;
        let bad = |msg: &str| EventError::Xml(msg.to_owned());
        loop {
            let token = reader
                .read_event()
                .map_err(|e| EventError::Xml(e.to_string()))?;
            match token {
                Xml::Start(start) => {
                    let name = std::str::from_utf8(start.name().as_ref())
                        .map_err(|_| EventError::InvalidUtf8)?
                        .to_owned();
                    value.clear();
                    place = match (place, name.as_str()) {
                        (Place::Outside, "event") => Place::Event,
                        (Place::Event, "headers") => Place::Headers,
                        (Place::Event, "Content-Length") => Place::ContentLength,
                        (Place::Event, "body") => Place::Body,
                        (Place::Headers, _) => Place::Header(name),
                        _ => return Err(bad(&format!("unexpected element <{name}>"))),
                    };
                }
                Xml::Empty(start) => {
                    // `<Name/>`: a header with an empty value.
                    if let Place::Headers = place {
                        let name = std::str::from_utf8(start.name().as_ref())
                            .map_err(|_| EventError::InvalidUtf8)?
                            .to_owned();
                        headers.push(name, String::new());
                    }
                }
                Xml::Text(t) => {
                    let decoded = t.decode().map_err(|e| EventError::Xml(e.to_string()))?;
                    value.push_str(&decoded);
                }
                Xml::GeneralRef(r) => {
                    let name = r.decode().map_err(|e| EventError::Xml(e.to_string()))?;
                    let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| bad(&format!("unknown entity &{name};")))?;
                    value.push_str(resolved);
                }
                Xml::CData(c) => {
                    value.push_str(std::str::from_utf8(&c).map_err(|_| EventError::InvalidUtf8)?)
                }
                Xml::End(_) => {
                    place = match place {
                        Place::Header(name) => {
                            headers.push(name, std::mem::take(&mut value));
                            Place::Headers
                        }
                        Place::ContentLength => {
                            content_length = Some(
                                value
                                    .trim()
                                    .parse()
                                    .map_err(|_| bad("Content-Length is not a number"))?,
                            );
                            Place::Event
                        }
                        Place::Body => {
                            body = Some(std::mem::take(&mut value));
                            Place::Event
                        }
                        Place::Headers => Place::Event,
                        Place::Event | Place::Outside => Place::Outside,
                    };
                }
                Xml::Eof => break,
                _ => {}
            }
        }
        if !matches!(place, Place::Outside) {
            return Err(bad("unterminated <event>"));
        }
        // FreeSWITCH pretty-prints the closing tag after the body text; the length says
        // where the real body ends.
        if let (Some(text), Some(n)) = (body.as_mut(), content_length) {
            if let Some(cut) = text.get(..n) {
                *text = cut.to_owned();
            }
        }
        Ok(Event::new(decode_values(headers)?, body))
    }
}
