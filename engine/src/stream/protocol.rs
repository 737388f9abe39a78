//! The client's side of the `/v1/stream` protocol (docs/stream.md): parsing and
//! validating what a client sends. Pure functions over bytes, so they can be fuzzed and
//! never panic on hostile input.

use serde::Deserialize;

/// Audio rates a stream may use.
pub const RATES: [u32; 3] = [8_000, 16_000, 24_000];

/// A valid `start` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Audio rate both ways.
    pub rate: u32,
    /// The caller's number, if given (hash it before it goes anywhere).
    pub caller: Option<String>,
    /// The number dialled (selects the call profile).
    pub did: Option<String>,
}

/// A control message after `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The caller hangs up.
    Stop,
}

/// Why a client message was refused; `code()` is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not JSON, or not an object with a known `type`.
    #[error("not a protocol message: {0}")]
    Malformed(String),
    /// The first message was not a valid `start`.
    #[error("bad start: {0}")]
    BadStart(String),
    /// A message that is valid JSON but not allowed now.
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// Audio with an odd number of bytes.
    #[error("audio frame of {0} bytes is not whole 16-bit samples")]
    OddAudio(usize),
}

impl ProtocolError {
    /// The short code sent to the client in an `error` event.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) | Self::Unexpected(_) => "protocol",
            Self::BadStart(_) => "bad_start",
            Self::OddAudio(_) => "bad_audio",
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    Start {
        rate: u32,
        #[serde(default)]
        encoding: Option<String>,
        #[serde(default)]
        caller: Option<String>,
        #[serde(default)]
        did: Option<String>,
    },
    Stop,
}

/// Longest caller number or DID accepted (E.164 is 15 digits; SIP users are longer).
const MAX_ID_LEN: usize = 64;

fn message(text: &str) -> Result<Message, ProtocolError> {
    serde_json::from_str(text).map_err(|e| {
        // The client's text is not echoed: only the parser's position and category.
        ProtocolError::Malformed(format!(
            "{:?} at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

fn identifier(value: Option<String>, what: &str) -> Result<Option<String>, ProtocolError> {
    match value {
        Some(v) if v.len() > MAX_ID_LEN || v.chars().any(char::is_control) => {
            Err(ProtocolError::BadStart(format!(
                "{what} is longer than {MAX_ID_LEN} or has control characters"
            )))
        }
        Some(v) if v.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// Parses the first message of a stream.
pub fn parse_start(text: &str) -> Result<Start, ProtocolError> {
    match message(text) {
        Ok(Message::Start {
            rate,
            encoding,
            caller,
            did,
        }) => {
            if !RATES.contains(&rate) {
                return Err(ProtocolError::BadStart(format!(
                    "rate {rate} is not one of 8000, 16000, 24000"
                )));
            }
            match encoding.as_deref() {
                None | Some("pcm16") => {}
                Some("opus") => {
                    return Err(ProtocolError::BadStart(
                        "opus is not supported yet; send pcm16".into(),
                    ))
                }
                Some(_) => return Err(ProtocolError::BadStart("unknown encoding".into())),
            }
            Ok(Start {
                rate,
                caller: identifier(caller, "caller")?,
                did: identifier(did, "did")?,
            })
        }
        Ok(Message::Stop) => Err(ProtocolError::BadStart("stop before start".into())),
        Err(ProtocolError::Malformed(m)) => Err(ProtocolError::BadStart(m)),
        Err(e) => Err(e),
    }
}

/// Parses a text message after `start`.
pub fn parse_control(text: &str) -> Result<Control, ProtocolError> {
    match message(text)? {
        Message::Stop => Ok(Control::Stop),
        Message::Start { .. } => Err(ProtocolError::Unexpected("start sent twice")),
    }
}

/// Appends little-endian PCM16 `bytes` to `samples`.
pub fn decode_audio(bytes: &[u8], samples: &mut impl Extend<i16>) -> Result<(), ProtocolError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(ProtocolError::OddAudio(bytes.len()));
    }
    samples.extend(
        bytes
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_gives_rate_caller_and_did() {
        let start = parse_start(r#"{"type":"start","rate":16000,"caller":"+4930123","did":"100"}"#)
            .expect("valid");
        assert_eq!(start.rate, 16_000);
        assert_eq!(start.caller.as_deref(), Some("+4930123"));
        assert_eq!(start.did.as_deref(), Some("100"));
        let bare =
            parse_start(r#"{"type":"start","rate":8000,"encoding":"pcm16"}"#).expect("valid");
        assert_eq!(bare.caller, None);
    }

    #[test]
    fn bad_starts_are_refused_with_bad_start() {
        for text in [
            "",
            "not json",
            "[]",
            r#"{"type":"start"}"#,
            r#"{"type":"start","rate":44100}"#,
            r#"{"type":"start","rate":"8000"}"#,
            r#"{"type":"start","rate":8000,"encoding":"opus"}"#,
            r#"{"type":"start","rate":8000,"encoding":"mp3"}"#,
            r#"{"type":"stop"}"#,
            r#"{"type":"hello","rate":8000}"#,
        ] {
            let err = parse_start(text).expect_err(text);
            assert_eq!(err.code(), "bad_start", "{text}: {err}");
        }
        let long = format!(
            r#"{{"type":"start","rate":8000,"caller":"{}"}}"#,
            "1".repeat(65)
        );
        assert_eq!(parse_start(&long).expect_err("long").code(), "bad_start");
    }

    #[test]
    fn the_clients_text_is_not_echoed_in_errors() {
        let err = parse_start(r#"{"type":"start","rate":8000,"caller":+4930999}"#)
            .expect_err("invalid json");
        assert!(!err.to_string().contains("4930999"), "{err}");
    }

    #[test]
    fn controls_after_start() {
        assert_eq!(parse_control(r#"{"type":"stop"}"#), Ok(Control::Stop));
        assert_eq!(
            parse_control(r#"{"type":"start","rate":8000}"#)
                .expect_err("twice")
                .code(),
            "protocol"
        );
        assert_eq!(parse_control("{").expect_err("bad").code(), "protocol");
    }

    #[test]
    fn audio_is_little_endian_and_whole_samples() {
        let mut out = Vec::new();
        decode_audio(&[0x01, 0x00, 0xff, 0x7f, 0x00, 0x80], &mut out).expect("whole");
        assert_eq!(out, [1, i16::MAX, i16::MIN]);
        assert_eq!(
            decode_audio(&[0; 3], &mut out).expect_err("odd").code(),
            "bad_audio"
        );
    }
}
