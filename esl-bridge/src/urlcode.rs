//! FreeSWITCH's URL encoding of event header values.
//!
//! FreeSWITCH encodes plain and XML event values with `switch_url_encode`: every byte in
//! `SWITCH_URL_UNSAFE` (`"\r\n #%&+:;<=>?@[\]^`{|}\""`) and every byte outside `0x20..=0x7E`
//! becomes an upper-case `%XX`. FreeSWITCH's own decoder silently keeps a malformed escape;
//! we reject it instead, because a truncated escape means the value was cut or forged.

use std::borrow::Cow;

/// A value that is not valid FreeSWITCH URL encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlDecodeError {
    /// `%` not followed by two hex digits (at this byte offset).
    #[error("truncated or invalid percent-escape at byte {offset}")]
    BadEscape {
        /// Byte offset of the `%`.
        offset: usize,
    },
    /// The decoded bytes are not UTF-8.
    #[error("decoded value is not valid UTF-8")]
    InvalidUtf8,
}

/// Decodes a FreeSWITCH URL-encoded value. Borrows when there is nothing to decode.
///
/// ```
/// use esl_bridge::urlcode::url_decode;
/// assert_eq!(url_decode("sofia/internal/%2B4930123456%40127.0.0.1").unwrap(),
///            "sofia/internal/+4930123456@127.0.0.1");
/// assert!(url_decode("cut%2").is_err());
/// ```
pub fn url_decode(value: &str) -> Result<Cow<'_, str>, UrlDecodeError> {
    let bytes = value.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'%') else {
        return Ok(Cow::Borrowed(value));
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut i = first;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(UrlDecodeError::BadEscape { offset: i }),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| UrlDecodeError::InvalidUtf8)
}

/// Encodes a value the way FreeSWITCH does for plain events, so that tests and simulators
/// can produce byte-identical events.
///
/// ```
/// use esl_bridge::urlcode::url_encode;
/// assert_eq!(url_encode("2026-11-23 07:19:54"), "2026-11-23%2007%3A19%3A54");
/// ```
pub fn url_encode(value: &str) -> Cow<'_, str> {
    if !value.bytes().any(needs_escape) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 16);
    for b in value.bytes() {
        if needs_escape(b) {
            out.push('%');
            out.push(HEX_UPPER[usize::from(b >> 4)] as char);
            out.push(HEX_UPPER[usize::from(b & 0xF)] as char);
        } else {
            out.push(b as char);
        }
    }
    Cow::Owned(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const URL_UNSAFE: &[u8] = b"\r\n #%&+:;<=>?@[\\]^`{|}\"";

fn needs_escape(b: u8) -> bool {
    !(0x20..=0x7E).contains(&b) || URL_UNSAFE.contains(&b)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_fixture_values() {
        assert_eq!(url_decode("FILE%20PLAYED").unwrap(), "FILE PLAYED");
        assert_eq!(url_decode("fixture%3A%3Atest").unwrap(), "fixture::test");
        assert_eq!(url_decode("%2BOK%0A").unwrap(), "+OK\n");
        assert!(matches!(url_decode("plain"), Ok(Cow::Borrowed("plain"))));
    }

    #[test]
    fn plus_is_not_a_space() {
        assert_eq!(url_decode("a+b").unwrap(), "a+b");
    }

    #[test]
    fn rejects_truncated_and_non_hex_escapes() {
        assert_eq!(
            url_decode("abc%"),
            Err(UrlDecodeError::BadEscape { offset: 3 })
        );
        assert_eq!(
            url_decode("abc%4"),
            Err(UrlDecodeError::BadEscape { offset: 3 })
        );
        assert_eq!(
            url_decode("%zz"),
            Err(UrlDecodeError::BadEscape { offset: 0 })
        );
    }

    #[test]
    fn rejects_invalid_utf8() {
        assert_eq!(url_decode("%FF%FE"), Err(UrlDecodeError::InvalidUtf8));
    }

    #[test]
    fn encode_matches_freeswitch_set() {
        assert_eq!(url_encode("/,().-_!~*'az09"), "/,().-_!~*'az09");
        assert_eq!(url_encode("+49 30@x"), "%2B49%2030%40x");
        assert_eq!(url_encode("ü"), "%C3%BC");
    }

    proptest::proptest! {
        #[test]
        fn encode_then_decode_round_trips(s in "\\PC*") {
            let encoded = url_encode(&s);
            let decoded = url_decode(&encoded).unwrap();
            proptest::prop_assert_eq!(decoded.as_ref(), s.as_str());
        }
    }
}
