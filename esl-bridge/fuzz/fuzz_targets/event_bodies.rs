//! Event bodies in all three wire formats: no input may panic a parser, and a decoded
//! plain event re-encoded the way FreeSWITCH writes it must decode to the same event.
#![no_main]

use esl_bridge::event::Event;
use esl_bridge::urlcode::url_encode;
use libfuzzer_sys::fuzz_target;

/// Writes `event` as a `text/event-plain` body: `Name: url-encoded value` lines, a
/// blank line, then the body (whose length the event's own `Content-Length` gives).
fn to_plain(event: &Event) -> String {
    let mut out = String::new();
    for (name, value) in event.headers().iter() {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(&url_encode(value));
        out.push('\n');
    }
    out.push('\n');
    if let Some(body) = event.body() {
        out.push_str(body);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The same bytes go to every parser: a fuzzer-found input that is nearly valid for
    // one format is still hostile input for the others.
    if let Ok(event) = Event::from_plain(data) {
        // A body exists exactly when the (decoded) headers announce one, with that length.
        match event.header("Content-Length") {
            Some(cl) => {
                let n: usize = cl.trim().parse().expect("accepted a bad Content-Length");
                assert_eq!(event.body().map(str::len), Some(n));
            }
            None => assert!(event.body().is_none()),
        }
        let plain = to_plain(&event);
        let again = Event::from_plain(plain.as_bytes())
            .unwrap_or_else(|e| panic!("re-encoded event {plain:?} rejected: {e}"));
        assert_eq!(again, event, "plain re-encoding round trip via {plain:?}");
    }

    if let Ok(event) = Event::from_json(data) {
        // `_body` is the body, never a header.
        assert!(event.header("_body").is_none());
    }

    let _ = Event::from_xml(data);
});
