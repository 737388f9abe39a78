//! The provider's server events (engine::backend::provider): every WebSocket text
//! message from the realtime provider goes through `parse_server_event`; `error` events
//! and failed responses through `classify_error`; audio deltas through `decode_audio`.
//! The provider is a remote peer, so all of it is hostile input.
#![no_main]

use engine::backend::provider::protocol::{
    decode_audio, encode_audio, parse_server_event, ErrorDetail, ServerEvent,
};
use engine::backend::provider::session::classify_error;
use engine::backend::{BackendKind, ErrorKind};
use libfuzzer_sys::fuzz_target;

/// Upper bound on a `ParseError`'s Display, in chars: the fixed words, the event type
/// (80 chars, Debug-escaped to at most 10 each) and serde's message clipped to 200
/// chars plus a byte count. The error goes to the log, so a peer must not be able to
/// make it large.
const MAX_PARSE_ERROR_CHARS: usize = 40 + 2 + 80 * 10 + 200 + 40;

/// `classify_error` keeps 300 chars of the provider's message; the kind and code are
/// the provider's too when there is no message, so those are unbounded by design.
const MAX_CLASSIFIED_MESSAGE_CHARS: usize = 300;

fn check_classified(detail: &ErrorDetail) {
    let error = classify_error(detail);
    assert_eq!(error.backend, BackendKind::Provider);
    assert!(!matches!(
        error.kind,
        ErrorKind::Connect
            | ErrorKind::Timeout
            | ErrorKind::Protocol
            | ErrorKind::ClosedMidResponse
            | ErrorKind::EgressDisabled
            | ErrorKind::Local
    ));
    // Only a credentials problem ends the session; the rest is for failover to weigh.
    assert_eq!(error.fatal, error.kind == ErrorKind::Auth, "{error:?}");
    let code = detail.code.as_deref().unwrap_or("");
    if code == "rate_limit_exceeded" || detail.kind == "rate_limit_error" {
        assert_eq!(error.kind, ErrorKind::RateLimit);
    }
    let message = error
        .message
        .strip_prefix("provider error: ")
        .expect("the message is prefixed");
    if !detail.message.is_empty() {
        assert!(message.chars().count() <= MAX_CLASSIFIED_MESSAGE_CHARS);
        assert!(detail.message.starts_with(message), "{message:?}");
    }
    let _ = error.to_string();
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let event = match parse_server_event(text) {
        Ok(event) => event,
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.chars().count() <= MAX_PARSE_ERROR_CHARS,
                "{} chars of error for {} bytes of input",
                shown.chars().count(),
                text.len()
            );
            if let Some(kind) = &e.event_type {
                assert!(kind.chars().count() <= 80);
            }
            return;
        }
    };

    // What we parsed, written back and read again, is the same event: no field is lost
    // or changes meaning on the way (aliases come back under the canonical name).
    let json = serde_json::to_string(&event).expect("a parsed event serializes");
    let again = parse_server_event(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(again, event, "round trip through {json}");

    match &event {
        ServerEvent::Error { error } => check_classified(error),
        ServerEvent::ResponseDone { response } | ServerEvent::ResponseCreated { response } => {
            if let Some(error) = response
                .status_details
                .as_ref()
                .and_then(|d| d.error.as_ref())
            {
                check_classified(error);
            }
        }
        ServerEvent::AudioDelta { delta, .. } => {
            if let Ok(bytes) = decode_audio(delta) {
                // Standard, padded base64 is canonical: one text per byte string.
                assert_eq!(encode_audio(&bytes), *delta);
            }
        }
        _ => {}
    }
});
