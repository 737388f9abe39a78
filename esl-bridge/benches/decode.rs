//! Decoding throughput on a real FreeSWITCH stream.
//!
//! Input: `inbound_plain_all.fs_to_client.raw` (206 KB: every plain event of a whole
//! loopback call plus replies and `api` output), the busiest recorded session. Three
//! views of the same bytes:
//!
//! * `frames_only`: cutting the stream into frames, the part that runs for every byte
//!   whatever is subscribed;
//! * `frames_and_messages`: framing plus `Message::from_frame`, i.e. full event
//!   decoding with URL-decoding of every header value, what the client actually pays;
//! * `recorded_chunks`: the same full decode, fed in the `recv()` chunks FreeSWITCH
//!   actually produced (from the transcript), including copying each read into the
//!   buffer, to show that partial frames and coalesced messages cost nothing extra.
//!
//! `decode_bytes` reports MB/s, `decode_events` the same runs as events/s.
//!
//! ```text
//! cargo bench -p esl-bridge --bench decode -- --warm-up-time 1 --measurement-time 5
//! ```

use std::hint::black_box;
use std::path::PathBuf;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use esl_bridge::frame::FrameDecoder;
use esl_bridge::message::Message;

const STREAM: &str = "esl-inbound/inbound_plain_all.fs_to_client.raw";
const TRANSCRIPT: &str = "esl-inbound/inbound_plain_all.transcript.jsonl";

/// `$TOM_FIXTURES`, or the shared fixtures beside the checkout (as the tests do).
fn fixture_dir() -> PathBuf {
    std::env::var_os("TOM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("../../shared/fixtures/freeswitch"))
}

fn read_fixture(rel: &str) -> Vec<u8> {
    let path = fixture_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The FreeSWITCH -> client `recv()` chunks of the transcript, in order.
fn recorded_chunks() -> Vec<Vec<u8>> {
    let text = String::from_utf8(read_fixture(TRANSCRIPT)).expect("transcript is UTF-8");
    text.lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("transcript line");
            (v["dir"] == "fs->client")
                .then(|| v["text"].as_str().expect("chunk text").as_bytes().to_vec())
        })
        .collect()
}

/// Frames in `buf`, then the end-of-stream check. Returns the frame count so the work
/// cannot be optimised away.
fn frames_only(buf: &mut BytesMut) -> usize {
    let mut decoder = FrameDecoder::default();
    let mut frames = 0;
    while let Some(frame) = decoder.decode(buf).expect("fixture frames") {
        black_box(&frame);
        frames += 1;
    }
    decoder.finish(buf).expect("fixture ends cleanly");
    frames
}

/// Drains every complete frame from `buf` and decodes it; returns the event count.
fn drain_messages(decoder: &mut FrameDecoder, buf: &mut BytesMut) -> usize {
    let mut events = 0;
    while let Some(frame) = decoder.decode(buf).expect("fixture frames") {
        let message = Message::from_frame(frame).expect("fixture messages decode");
        events += usize::from(matches!(message, Message::Event(_)));
        black_box(message);
    }
    events
}

/// Full decode of one buffer holding the whole stream.
fn messages_whole(buf: &mut BytesMut) -> usize {
    let mut decoder = FrameDecoder::default();
    let events = drain_messages(&mut decoder, buf);
    decoder.finish(buf).expect("fixture ends cleanly");
    events
}

/// Full decode fed read by read, as a socket would deliver it.
fn messages_chunked(chunks: &[Vec<u8>]) -> usize {
    let mut decoder = FrameDecoder::default();
    // Like tokio's FramedRead, start from a modest buffer and let the decoder reserve.
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut events = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        events += drain_messages(&mut decoder, &mut buf);
    }
    decoder.finish(&mut buf).expect("fixture ends cleanly");
    events
}

fn decode(c: &mut Criterion) {
    let stream = read_fixture(STREAM);
    let chunks = recorded_chunks();
    assert_eq!(
        chunks.concat(),
        stream,
        "the transcript's fs->client chunks must add up to the raw stream"
    );
    let bytes = stream.len() as u64;
    let frames = frames_only(&mut BytesMut::from(&stream[..]));
    let events = messages_whole(&mut BytesMut::from(&stream[..]));
    assert_eq!(messages_chunked(&chunks), events);
    println!(
        "{STREAM}: {bytes} bytes, {frames} frames, {events} events, {} recorded reads",
        chunks.len()
    );

    // The copy into a fresh buffer happens in the untimed setup, so these two measure
    // decoding alone; `recorded_chunks` includes its copies, as a real read would.
    let fresh = || BytesMut::from(&stream[..]);

    let mut group = c.benchmark_group("decode_bytes");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("frames_only", |b| {
        b.iter_batched_ref(fresh, frames_only, BatchSize::SmallInput)
    });
    group.bench_function("frames_and_messages", |b| {
        b.iter_batched_ref(fresh, messages_whole, BatchSize::SmallInput)
    });
    group.bench_function("recorded_chunks", |b| {
        b.iter(|| messages_chunked(black_box(&chunks)))
    });
    group.finish();

    // Same work, reported per event: the number that matters against a call's event rate.
    let mut group = c.benchmark_group("decode_events");
    group.throughput(Throughput::Elements(events as u64));
    group.bench_function("frames_and_messages", |b| {
        b.iter_batched_ref(fresh, messages_whole, BatchSize::SmallInput)
    });
    group.bench_function("recorded_chunks", |b| {
        b.iter(|| messages_chunked(black_box(&chunks)))
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
