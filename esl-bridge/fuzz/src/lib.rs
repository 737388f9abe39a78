//! Shared harness for the esl-bridge fuzz targets.
//!
//! The decoders are incremental: a TCP read can end anywhere, so the one property that
//! matters most is that *where* the stream is cut never changes *what* is decoded. The
//! harness feeds the same bytes once whole and once cut up, and checks every decode call
//! against the original stream (the decoder may only remove bytes from the front of the
//! buffer, and only the bytes of what it returned plus stray newlines between messages).

use bytes::BytesMut;
use esl_bridge::codec::Request;
use esl_bridge::frame::{Frame, FrameError, FrameLimits, Headers};
use tokio_util::codec::Decoder;

/// How to cut the stream, taken from the first bytes of the fuzz input so that the
/// fuzzer explores chunkings as well as contents.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// End of the first chunk (0..=len).
    pub split: usize,
    /// After the split, feed the rest in pieces of this many bytes; 0 means in one piece.
    /// Small steps exercise the "resume the blank-line scan" path.
    pub step: usize,
    /// Decoder limits. Small limits make the limit checks reachable with short inputs.
    pub limits: FrameLimits,
}

/// Length of the prefix [`Plan::parse`] consumes.
pub const PLAN_LEN: usize = 4;

impl Plan {
    /// Splits `data` into a plan and the stream. Layout: split point (u16 LE, taken
    /// modulo len + 1), step, limits (high bit clear: defaults; set: header limit =
    /// low 7 bits, body limit = 8 × that). Inputs shorter than the prefix are used whole
    /// with default limits.
    pub fn parse(data: &[u8]) -> (Self, &[u8]) {
        let Some((prefix, stream)) = data.split_first_chunk::<PLAN_LEN>() else {
            let plan = Self {
                split: 0,
                step: 0,
                limits: FrameLimits::default(),
            };
            return (plan, data);
        };
        let split = usize::from(u16::from_le_bytes([prefix[0], prefix[1]])) % (stream.len() + 1);
        let limits = if prefix[3] & 0x80 == 0 {
            FrameLimits::default()
        } else {
            let small = usize::from(prefix[3] & 0x7F);
            FrameLimits {
                max_header_bytes: small,
                max_body_bytes: small * 8,
            }
        };
        let plan = Self {
            split,
            step: usize::from(prefix[2]),
            limits,
        };
        (plan, stream)
    }

    /// The chunk end offsets for a stream of `len` bytes (strictly increasing except
    /// for a possible empty first chunk, always ending at `len`).
    pub fn cuts(&self, len: usize) -> Vec<usize> {
        let mut cuts = vec![self.split];
        if self.step == 0 {
            cuts.push(len);
        } else {
            let mut at = self.split;
            while at < len {
                at = (at + self.step).min(len);
                cuts.push(at);
            }
        }
        cuts
    }
}

/// What a decoder made of a whole stream.
#[derive(Debug)]
pub struct Outcome<T> {
    /// Every item, in order.
    pub items: Vec<T>,
    /// The error that ended decoding (`Display` form), if any. Framing errors are fatal,
    /// so nothing is decoded after one.
    pub error: Option<String>,
}

/// Feeds `stream` to `dec` in chunks ending at `cuts`, draining the decoder after each
/// chunk, then signals end of stream with `decode_eof`. `check` receives each item with
/// the exact stream bytes that producing it removed from the buffer.
///
/// Panics (i.e. reports a finding) when the decoder touches the buffer other than by
/// advancing its front, or removes bytes without returning them (other than `\n`
/// between messages, which FreeSWITCH also skips).
pub fn drive<D>(
    dec: &mut D,
    stream: &[u8],
    cuts: &[usize],
    mut check: impl FnMut(&[u8], &D::Item),
) -> Outcome<D::Item>
where
    D: Decoder<Error = FrameError>,
{
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut consumed = 0;
    let mut items = Vec::new();

    // Called after every decode call: accounts for the bytes that call removed.
    let mut account = |buf: &BytesMut, consumed: &mut usize, fed: usize, item: Option<&D::Item>| {
        let now = fed.checked_sub(buf.len()).expect("decoder grew the buffer");
        assert!(now >= *consumed, "decoder put bytes back");
        assert_eq!(
            &buf[..],
            &stream[now..fed],
            "decoder altered buffered bytes"
        );
        let taken = &stream[*consumed..now];
        match item {
            Some(item) => check(taken, item),
            None => assert!(
                taken.iter().all(|&b| b == b'\n'),
                "decoder swallowed {taken:?} without returning an item"
            ),
        }
        *consumed = now;
    };

    for &end in cuts {
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(item)) => {
                    account(&buf, &mut consumed, fed, Some(&item));
                    items.push(item);
                }
                Ok(None) => {
                    account(&buf, &mut consumed, fed, None);
                    break;
                }
                Err(e) => {
                    return Outcome {
                        items,
                        error: Some(e.to_string()),
                    }
                }
            }
        }
    }
    loop {
        // `decode_eof` clears the buffer, so only a clean end can be accounted for.
        let before = buf.clone();
        match dec.decode_eof(&mut buf) {
            Ok(Some(item)) => {
                account(&buf, &mut consumed, fed, Some(&item));
                items.push(item);
            }
            Ok(None) => {
                assert!(
                    before.iter().all(|&b| b == b'\n'),
                    "clean end of stream with {before:?} still buffered"
                );
                break;
            }
            Err(e) => {
                return Outcome {
                    items,
                    error: Some(e.to_string()),
                }
            }
        }
    }
    Outcome {
        items,
        error: None,
    }
}

/// Adapts [`esl_bridge::frame::FrameDecoder`] (decode/finish) to the `Decoder` trait, so
/// the chunked run uses the raw sans-IO API and the whole-stream run the tokio codec.
pub struct RawFrames(pub esl_bridge::frame::FrameDecoder);

impl Decoder for RawFrames {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.0.decode(buf)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        // `drive` has already drained `decode`, so this is the bare end-of-stream check.
        self.0.finish(buf).map(|()| None)
    }
}

/// Checks that `raw` (what decoding one message removed from the stream) is exactly
/// stray newlines, the header block whose lines are `first_line` (requests only) and
/// `headers`, a blank line, and `body`.
pub fn check_block(raw: &[u8], first_line: Option<&str>, headers: &Headers, body: Option<&[u8]>) {
    let lead = raw.iter().take_while(|&&b| b == b'\n').count();
    let raw = &raw[lead..];
    let body_len = body.map_or(0, <[u8]>::len);
    assert!(
        raw.len() >= body_len + 2,
        "item longer than the bytes it came from"
    );
    let (head, tail) = raw.split_at(raw.len() - body_len);
    if let Some(body) = body {
        assert_eq!(tail, body, "body is not the bytes after the header block");
    }
    let head = head
        .strip_suffix(b"\n\n")
        .expect("header block not ended by a blank line");
    assert!(
        !head.windows(2).any(|w| w == b"\n\n"),
        "header block spans a blank line"
    );
    let text = std::str::from_utf8(head).expect("accepted a non-UTF-8 header block");
    let mut lines = text.split('\n');
    if let Some(expected) = first_line {
        assert_eq!(lines.next(), Some(expected), "request line");
    }
    let lines: Vec<&str> = lines.collect();
    assert_eq!(
        lines.len(),
        headers.len(),
        "header count vs lines {lines:?}"
    );
    for (line, (name, value)) in lines.iter().zip(headers.iter()) {
        assert!(
            *line == format!("{name}: {value}") || *line == format!("{name}:{value}"),
            "header {name:?}={value:?} is not the line {line:?}"
        );
    }
    // Content-Length and the body must agree: present iff there is a body, same size.
    match headers.get("Content-Length") {
        Some(cl) => {
            assert_eq!(
                cl.trim().parse::<usize>().ok(),
                Some(body_len),
                "Content-Length"
            );
            assert!(body.is_some(), "Content-Length without a body");
        }
        None => assert!(body.is_none(), "body without Content-Length"),
    }
}

/// [`check_block`] for a frame.
pub fn check_frame(raw: &[u8], frame: &Frame) {
    check_block(raw, None, &frame.headers, frame.body.as_deref());
}

/// [`check_block`] for a request.
pub fn check_request(raw: &[u8], request: &Request) {
    check_block(
        raw,
        Some(&request.line),
        &request.headers,
        request.body.as_deref(),
    );
}

/// Asserts that two runs over the same bytes agree.
pub fn assert_same<T: PartialEq + std::fmt::Debug>(
    whole: &Outcome<T>,
    chunked: &Outcome<T>,
    plan: &Plan,
) {
    assert_eq!(
        whole.items, chunked.items,
        "chunking changed the decoded items ({plan:?})"
    );
    assert_eq!(
        whole.error, chunked.error,
        "chunking changed the outcome ({plan:?})"
    );
}
