//! FreeSWITCH URL coding: `url_decode` never panics, `url_encode` is its exact inverse,
//! and the encoded form is safe to put in a header line.
#![no_main]

use std::borrow::Cow;

use esl_bridge::urlcode::{url_decode, url_encode, UrlDecodeError};
use libfuzzer_sys::fuzz_target;

/// `SWITCH_URL_UNSAFE`, restated from the fixtures README rather than taken from the
/// crate, so that the target checks the implementation against the spec.
const UNSAFE: &[u8] = b"\r\n #%&+:;<=>?@[\\]^`{|}\"";

fn needs_escape(b: u8) -> bool {
    !(0x20..=0x7E).contains(&b) || UNSAFE.contains(&b)
}

fuzz_target!(|data: &[u8]| {
    // Lossy, so that every input is a test case (invalid bytes become U+FFFD, which
    // still exercises the multi-byte paths).
    let s = String::from_utf8_lossy(data);

    // 1. Encode then decode is the identity, for every string.
    let encoded = url_encode(&s);
    assert_eq!(
        url_decode(&encoded).as_deref(),
        Ok(s.as_ref()),
        "round trip of {s:?} via {encoded:?}"
    );
    // Borrows exactly when nothing needed escaping.
    assert_eq!(
        matches!(encoded, Cow::Borrowed(_)),
        !s.bytes().any(needs_escape)
    );
    // Emits only safe bytes or upper-case `%XX`: never a line break, so an encoded
    // value cannot end a header line in a plain event.
    let eb = encoded.as_bytes();
    let mut i = 0;
    while i < eb.len() {
        if eb[i] == b'%' {
            let hex = eb.get(i + 1..i + 3).expect("truncated escape emitted");
            assert!(
                hex.iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
                "bad escape emitted in {encoded:?}"
            );
            i += 3;
        } else {
            assert!(
                !needs_escape(eb[i]),
                "unescaped {:#04x} in {encoded:?}",
                eb[i]
            );
            i += 1;
        }
    }

    // 2. Decoding arbitrary text: no panic, and a result consistent with the input.
    match url_decode(&s) {
        Ok(decoded) => {
            // Borrows exactly when there is no escape; escapes only shrink the text.
            assert_eq!(matches!(decoded, Cow::Borrowed(_)), !s.contains('%'));
            assert!(decoded.len() <= s.len());
            // A decoded value survives another encode/decode unchanged.
            let again = url_encode(&decoded);
            assert_eq!(url_decode(&again).as_deref(), Ok(decoded.as_ref()));
        }
        Err(UrlDecodeError::BadEscape { offset }) => {
            // The offset names a `%` that really is not followed by two hex digits.
            let b = s.as_bytes();
            assert_eq!(b.get(offset), Some(&b'%'), "offset {offset} in {s:?}");
            let well_formed = b.len() > offset + 2
                && b[offset + 1].is_ascii_hexdigit()
                && b[offset + 2].is_ascii_hexdigit();
            assert!(
                !well_formed,
                "well-formed escape at {offset} rejected in {s:?}"
            );
        }
        Err(UrlDecodeError::InvalidUtf8) => {
            // Only an escape can produce bytes that are not UTF-8.
            assert!(s.contains('%'));
        }
    }
});
