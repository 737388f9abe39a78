//! The `/v1/stream` client protocol (engine::stream::protocol): every text frame a
//! client sends goes through `parse_start` or `parse_control`, every binary frame
//! through `decode_audio`. The input is used as a binary frame and, when it is UTF-8,
//! as a text frame to both parsers.
#![no_main]

use engine::stream::protocol::{
    decode_audio, parse_control, parse_start, Control, ProtocolError, RATES,
};
use libfuzzer_sys::fuzz_target;

/// Longest caller number or DID `parse_start` accepts (its MAX_ID_LEN).
const MAX_ID_LEN: usize = 64;

/// Whether `err` repeats the client's `text`. The engine promises not to echo client
/// text. Only inputs of 8 bytes or more that carry a character no error template uses
/// (any JSON object, string or URL has one) are checked: a plain word like "protocol"
/// is found in the fixed wording itself.
fn echoes(err: &ProtocolError, text: &str) -> bool {
    let marked = text
        .chars()
        .any(|c| !c.is_ascii() || c.is_control() || ".{}\"/\\+[]".contains(c));
    text.len() >= 8 && marked && err.to_string().contains(text)
}

fn check_id(id: &Option<String>, what: &str) {
    if let Some(id) = id {
        assert!(!id.is_empty(), "{what}: empty kept instead of None");
        assert!(id.len() <= MAX_ID_LEN, "{what}: {} bytes", id.len());
        assert!(!id.chars().any(char::is_control), "{what}: {id:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    // Binary frame: whole 16-bit little-endian samples or a refusal, nothing between.
    let mut samples: Vec<i16> = Vec::new();
    match decode_audio(data, &mut samples) {
        Ok(()) => {
            assert_eq!(data.len() % 2, 0, "odd frame accepted");
            assert_eq!(samples.len(), data.len() / 2);
            let again: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            assert_eq!(again, data, "samples do not re-encode to the frame");
        }
        Err(e) => {
            assert_eq!(data.len() % 2, 1, "even frame refused: {e}");
            assert_eq!(e, ProtocolError::OddAudio(data.len()));
            assert_eq!(e.code(), "bad_audio");
            assert!(samples.is_empty(), "a refused frame still appended samples");
        }
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    let start = parse_start(text);
    match &start {
        Ok(s) => {
            assert!(RATES.contains(&s.rate), "rate {}", s.rate);
            check_id(&s.caller, "caller");
            check_id(&s.did, "did");
        }
        Err(e) => {
            assert_eq!(e.code(), "bad_start", "{e}");
            assert!(!echoes(e, text), "parse_start echoed the input: {e}");
        }
    }

    let control = parse_control(text);
    match &control {
        Ok(Control::Stop) => assert!(start.is_err(), "a stop parsed as a start too"),
        Err(e) => {
            assert_eq!(e.code(), "protocol", "{e}");
            assert!(!echoes(e, text), "parse_control echoed the input: {e}");
            if start.is_ok() {
                assert_eq!(*e, ProtocolError::Unexpected("start sent twice"));
            }
        }
    }
});
