//! ESL framing: a header block of `Name: value\n` lines ended by an empty line, then
//! exactly `Content-Length` body bytes when that header is present.
//!
//! This layer knows nothing about what a message means; [`crate::message`] does. A
//! framing error is fatal for the connection (the byte stream cannot be resynchronised),
//! whereas a message that frames correctly but says something malformed is not.

use bytes::{Buf, Bytes, BytesMut};

/// Upper bounds that keep a hostile or broken peer from making us buffer without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest header block, in bytes. The outbound `connect` reply, the largest header
    /// block in the recorded traces, is about 7 KiB.
    pub max_header_bytes: usize,
    /// Largest `Content-Length` accepted. Recorded events reach ~9 KiB; `api` output such
    /// as `show channels` on a busy switch can be far larger.
    pub max_body_bytes: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Why the byte stream could not be cut into frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// No blank line within [`FrameLimits::max_header_bytes`].
    #[error("header block exceeds {limit} bytes without a blank line")]
    HeaderBlockTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// A header line has no `:`.
    #[error("malformed header line {line:?}")]
    MalformedHeader {
        /// The offending line, cut to 80 characters.
        line: String,
    },
    /// The header block is not UTF-8.
    #[error("header block is not valid UTF-8")]
    InvalidUtf8,
    /// `Content-Length` is not a non-negative decimal number.
    #[error("invalid Content-Length {value:?}")]
    InvalidContentLength {
        /// The value as received.
        value: String,
    },
    /// `Content-Length` is larger than [`FrameLimits::max_body_bytes`].
    #[error("Content-Length {length} exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The announced length.
        length: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The stream ended inside a header block (no terminating blank line).
    #[error("stream ended inside a header block ({buffered} bytes without a blank line)")]
    UnterminatedHeaders {
        /// Bytes buffered when the stream ended.
        buffered: usize,
    },
    /// The stream ended before the announced body was complete.
    #[error("stream ended inside a body: {received} of {expected} bytes")]
    TruncatedBody {
        /// The announced length.
        expected: usize,
        /// Bytes that arrived.
        received: usize,
    },
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// An ordered header list with case-insensitive lookup (FreeSWITCH itself is
/// case-insensitive on names, and clients write `content-length` in lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Appends a header (duplicates are kept, as FreeSWITCH does for multi-valued ones).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// All headers in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies `f` to every value, stopping at the first error.
    pub(crate) fn try_map_values<E>(
        self,
        mut f: impl FnMut(&str, String) -> Result<String, E>,
    ) -> Result<Self, E> {
        self.0
            .into_iter()
            .map(|(n, v)| f(&n, v).map(|v| (n, v)))
            .collect::<Result<Vec<_>, E>>()
            .map(Self)
    }
}

impl FromIterator<(String, String)> for Headers {
    fn from_iter<T: IntoIterator<Item = (String, String)>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// One framed ESL message: its outer headers and optional body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Outer headers, values exactly as received.
    pub headers: Headers,
    /// The `Content-Length` bytes that followed, if that header was present.
    pub body: Option<Bytes>,
}

impl Frame {
    /// The frame's `Content-Type`, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("Content-Type")
    }
}

/// Incremental state for cutting a byte stream into header blocks and bodies. Shared by
/// the FreeSWITCH-side frame decoder and the client-side request decoder; `H` is the
/// parsed form of a header block.
#[derive(Debug)]
pub(crate) struct BlockCutter<H> {
    limits: FrameLimits,
    /// Where to resume looking for the blank line, so a slow trickle stays linear.
    scan_from: usize,
    /// A header block already parsed, waiting for its body.
    pending: Option<PendingBlock<H>>,
}

#[derive(Debug)]
struct PendingBlock<H> {
    head: H,
    block_len: usize,
    body_len: Option<usize>,
}

impl<H> BlockCutter<H> {
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            limits,
            scan_from: 0,
            pending: None,
        }
    }

    /// Cuts the next block from `buf`, or returns `None` until more bytes arrive.
    /// `parse_head` turns a header block's text into `H` and the body length it announces.
    pub fn cut(
        &mut self,
        buf: &mut BytesMut,
        parse_head: impl FnOnce(&str) -> Result<(H, Option<usize>), FrameError>,
    ) -> Result<Option<(H, Option<Bytes>)>, FrameError> {
        if self.pending.is_none() {
            // FreeSWITCH ignores stray newlines between messages; so do we.
            let leading = buf.iter().take_while(|&&b| b == b'\n').count();
            if leading > 0 {
                buf.advance(leading);
                self.scan_from = self.scan_from.saturating_sub(leading);
            }
            let Some(end) = find_blank_line(buf, self.scan_from) else {
                // A trailing `\n` may be the first half of the blank line: not header
                // bytes yet, or where a read ends would change what is accepted.
                let block_so_far = buf.len() - usize::from(buf.last() == Some(&b'\n'));
                if block_so_far > self.limits.max_header_bytes {
                    return Err(FrameError::HeaderBlockTooLarge {
                        limit: self.limits.max_header_bytes,
                    });
                }
                self.scan_from = buf.len().saturating_sub(1);
                return Ok(None);
            };
            if end > self.limits.max_header_bytes {
                return Err(FrameError::HeaderBlockTooLarge {
                    limit: self.limits.max_header_bytes,
                });
            }
            let text = std::str::from_utf8(&buf[..end]).map_err(|_| FrameError::InvalidUtf8)?;
            let (head, body_len) = parse_head(text)?;
            if let Some(length) = body_len {
                if length > self.limits.max_body_bytes {
                    return Err(FrameError::BodyTooLarge {
                        length,
                        limit: self.limits.max_body_bytes,
                    });
                }
            }
            self.scan_from = 0;
            self.pending = Some(PendingBlock {
                head,
                block_len: end + 2,
                body_len,
            });
        }
        let needed = match &self.pending {
            Some(p) => p.block_len + p.body_len.unwrap_or(0),
            None => return Ok(None),
        };
        if buf.len() < needed {
            buf.reserve(needed - buf.len());
            return Ok(None);
        }
        let Some(pending) = self.pending.take() else {
            return Ok(None);
        };
        buf.advance(pending.block_len);
        let body = pending.body_len.map(|n| buf.split_to(n).freeze());
        Ok(Some((pending.head, body)))
    }

    /// Called at end of stream with what is left in `buf`.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Result<(), FrameError> {
        let result = match self.pending.take() {
            Some(pending) => Err(FrameError::TruncatedBody {
                expected: pending.body_len.unwrap_or(0),
                received: buf.len().saturating_sub(pending.block_len),
            }),
            None if buf.iter().any(|&b| b != b'\n') => Err(FrameError::UnterminatedHeaders {
                buffered: buf.len(),
            }),
            None => Ok(()),
        };
        buf.clear();
        self.scan_from = 0;
        result
    }
}

fn find_blank_line(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.min(buf.len());
    buf[start..]
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + start)
}

/// Splits `Name: value` lines. The value keeps everything after `": "` (or `":"`), so an
/// empty value such as `User-Data: ` is preserved as `""`.
pub(crate) fn parse_header_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Headers, FrameError> {
    lines
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| FrameError::MalformedHeader {
                    line: line.chars().take(80).collect(),
                })?;
            let value = value.strip_prefix(' ').unwrap_or(value);
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Reads `Content-Length` from parsed headers.
pub(crate) fn content_length_of(headers: &Headers) -> Result<Option<usize>, FrameError> {
    headers
        .get("Content-Length")
        .map(|v| {
            let v = v.trim();
            // `usize::from_str` accepts a leading `+`; FreeSWITCH never sends one.
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FrameError::InvalidContentLength {
                    value: v.chars().take(40).collect(),
                });
            }
            v.parse::<usize>()
                .map_err(|_| FrameError::InvalidContentLength {
                    value: v.chars().take(40).collect(),
                })
        })
        .transpose()
}

/// Decodes FreeSWITCH → client bytes into [`Frame`]s.
#[derive(Debug)]
pub struct FrameDecoder {
    cutter: BlockCutter<Headers>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(FrameLimits::default())
    }
}

impl FrameDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            cutter: BlockCutter::new(limits),
        }
    }

    /// Cuts the next frame from `buf`; `Ok(None)` means "need more bytes".
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let cut = self.cutter.cut(buf, |text| {
            let headers = parse_header_lines(text.split('\n'))?;
            let body_len = content_length_of(&headers)?;
            Ok((headers, body_len))
        })?;
        Ok(cut.map(|(headers, body)| Frame { headers, body }))
    }

    /// End of stream: any buffered partial frame is an error.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Result<(), FrameError> {
        self.cutter.finish(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], limits: FrameLimits) -> Result<Vec<Frame>, FrameError> {
        let mut decoder = FrameDecoder::new(limits);
        let mut buf = BytesMut::from(input);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf)? {
            frames.push(frame);
        }
        decoder.finish(&mut buf)?;
        Ok(frames)
    }

    #[test]
    fn oversized_content_length_is_refused_before_buffering() {
        let limits = FrameLimits {
            max_body_bytes: 1000,
            ..FrameLimits::default()
        };
        let err = decode_all(
            b"Content-Type: api/response\nContent-Length: 1001\n\n",
            limits,
        );
        assert!(matches!(
            err,
            Err(FrameError::BodyTooLarge {
                length: 1001,
                limit: 1000
            })
        ));
        let huge = decode_all(b"Content-Length: 99999999999999999999999\n\n", limits);
        assert!(matches!(huge, Err(FrameError::InvalidContentLength { .. })));
    }

    #[test]
    fn non_numeric_content_length_is_refused() {
        for bad in ["abc", "-1", "+5", "", "1 2"] {
            let input = format!("Content-Length: {bad}\n\n");
            assert!(
                matches!(
                    decode_all(input.as_bytes(), FrameLimits::default()),
                    Err(FrameError::InvalidContentLength { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn header_block_without_blank_line_is_bounded() {
        let limits = FrameLimits {
            max_header_bytes: 64,
            ..FrameLimits::default()
        };
        let mut decoder = FrameDecoder::new(limits);
        let mut buf = BytesMut::from(&[b'a'; 65][..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(FrameError::HeaderBlockTooLarge { limit: 64 })
        ));
    }

    #[test]
    fn header_block_at_the_limit_is_accepted_however_it_is_split() {
        // Found by the `decoder` fuzz target: a read ending between the two newlines
        // of a block of exactly the limit used to be refused.
        let limits = FrameLimits {
            max_header_bytes: 5,
            ..FrameLimits::default()
        };
        let mut decoder = FrameDecoder::new(limits);
        let mut buf = BytesMut::from(&b"abc:d\n"[..]);
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\n");
        let frame = decoder
            .decode(&mut buf)
            .unwrap()
            .expect("frame at the limit");
        assert_eq!(frame.headers.get("abc"), Some("d"));
        let mut over = BytesMut::from(&b"abcd:e\n"[..]);
        assert!(matches!(
            FrameDecoder::new(limits).decode(&mut over),
            Err(FrameError::HeaderBlockTooLarge { limit: 5 })
        ));
    }

    #[test]
    fn stream_ending_without_blank_line_is_an_error() {
        let err = decode_all(
            b"Content-Type: command/reply\nReply-Text: +OK",
            FrameLimits::default(),
        );
        assert!(matches!(err, Err(FrameError::UnterminatedHeaders { .. })));
    }

    #[test]
    fn stream_ending_inside_a_body_is_an_error() {
        let err = decode_all(b"Content-Length: 10\n\nabc", FrameLimits::default());
        assert!(matches!(
            err,
            Err(FrameError::TruncatedBody {
                expected: 10,
                received: 3
            })
        ));
    }

    #[test]
    fn invalid_utf8_in_headers_is_an_error() {
        let err = decode_all(b"Content-Type: \xff\xfe\n\n", FrameLimits::default());
        assert!(matches!(err, Err(FrameError::InvalidUtf8)));
    }

    #[test]
    fn header_line_without_colon_is_an_error() {
        let err = decode_all(b"Content-Type: x\ngarbage\n\n", FrameLimits::default());
        assert!(matches!(err, Err(FrameError::MalformedHeader { line }) if line == "garbage"));
    }

    #[test]
    fn body_may_be_binary_and_stray_newlines_are_skipped() {
        let frames = decode_all(
            b"\n\nContent-Type: x\nContent-Length: 2\n\n\xff\x00\n\nContent-Type: y\n\n",
            FrameLimits::default(),
        )
        .unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].body.as_deref(), Some(&b"\xff\x00"[..]));
        assert_eq!(frames[1].content_type(), Some("y"));
    }

    #[test]
    fn empty_header_value_is_kept() {
        let frames = decode_all(b"User-Data: \nLog-Level:7\n\n", FrameLimits::default()).unwrap();
        assert_eq!(frames[0].headers.get("user-data"), Some(""));
        assert_eq!(frames[0].headers.get("Log-Level"), Some("7"));
    }

    #[test]
    fn byte_at_a_time_equals_all_at_once() {
        let input =
            b"Content-Type: auth/request\n\nContent-Length: 5\nContent-Type: api/response\n\nhello";
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for b in input {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames, decode_all(input, FrameLimits::default()).unwrap());
    }
}
