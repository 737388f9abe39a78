//! [`tokio_util::codec`] adapters: the client side ([`EslCodec`]: frames in, commands
//! out) and the FreeSWITCH side ([`RequestCodec`]: commands in, raw bytes out), the latter
//! for simulators and replay tests.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::command::{Command, CommandError};
use crate::frame::{
    content_length_of, parse_header_lines, BlockCutter, Frame, FrameDecoder, FrameError,
    FrameLimits, Headers,
};

/// Why encoding a command failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The command cannot be put on the wire.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Client-side codec: decodes FreeSWITCH's bytes into [`Frame`]s and encodes
/// [`Command`]s. Turn frames into meaning with [`crate::message::Message::from_frame`].
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// let mut codec = esl_bridge::codec::EslCodec::default();
/// let mut buf = BytesMut::from(&b"Content-Type: auth/request\n\nContent-Type: command/re"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap().content_type(), Some("auth/request"));
/// assert!(codec.decode(&mut buf).unwrap().is_none()); // waits for the rest
/// ```
#[derive(Debug, Default)]
pub struct EslCodec {
    frames: FrameDecoder,
}

impl EslCodec {
    /// A codec with explicit limits.
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            frames: FrameDecoder::new(limits),
        }
    }
}

impl Decoder for EslCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.frames.decode(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.frames.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None => self.frames.finish(src).map(|()| None),
        }
    }
}

impl Encoder<&Command> for EslCodec {
    type Error = EncodeError;

    fn encode(&mut self, cmd: &Command, dst: &mut BytesMut) -> Result<(), EncodeError> {
        Ok(cmd.encode(dst)?)
    }
}

/// A command as FreeSWITCH receives it: the command line, its headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The first line, e.g. `api status` or `sendmsg`.
    pub line: String,
    /// The `name: value` lines after it.
    pub headers: Headers,
    /// The body announced by `content-length`.
    pub body: Option<Bytes>,
}

impl Request {
    /// The first word of the command line (`api`, `sendmsg`, …).
    pub fn verb(&self) -> &str {
        self.line.split(' ').next().unwrap_or_default()
    }
}

/// FreeSWITCH-side codec: decodes the client's commands into [`Request`]s and writes raw
/// bytes back. For simulators of FreeSWITCH and replay tests.
#[derive(Debug)]
pub struct RequestCodec {
    cutter: BlockCutter<(String, Headers)>,
}

impl Default for RequestCodec {
    fn default() -> Self {
        Self {
            cutter: BlockCutter::new(FrameLimits::default()),
        }
    }
}

impl Decoder for RequestCodec {
    type Item = Request;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, FrameError> {
        let cut = self.cutter.cut(src, |text| {
            let mut lines = text.split('\n');
            let line = lines.next().unwrap_or_default().to_owned();
            let headers = parse_header_lines(lines)?;
            let body_len = content_length_of(&headers)?;
            Ok(((line, headers), body_len))
        })?;
        Ok(cut.map(|((line, headers), body)| Request {
            line,
            headers,
            body,
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Request>, FrameError> {
        match self.decode(src)? {
            Some(request) => Ok(Some(request)),
            None => self.cutter.finish(src).map(|()| None),
        }
    }
}

impl Encoder<Bytes> for RequestCodec {
    type Error = std::io::Error;

    fn encode(&mut self, bytes: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}
