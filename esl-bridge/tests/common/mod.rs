//! Loading the recorded FreeSWITCH fixtures for tests.
#![allow(dead_code)]

pub mod replay;

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use esl_bridge::frame::{Frame, FrameDecoder};

/// `$TOM_FIXTURES`, or `../shared/fixtures/freeswitch` beside the checkout, resolved at run
/// time from the package root (cargo's working directory for tests): a path baked in at
/// compile time would go stale when a cached target dir serves another clone.
pub fn fixture_dir() -> PathBuf {
    std::env::var_os("TOM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("../../shared/fixtures/freeswitch"))
}

pub fn read(rel: &str) -> Vec<u8> {
    let path = fixture_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Every `*.fs_to_client.raw` file, relative to the fixture dir.
pub fn all_fs_streams() -> Vec<String> {
    let mut out = Vec::new();
    for dir in [
        "esl-inbound",
        "esl-outbound",
        "media-unicast",
        "mod_audio_stream",
    ] {
        let entries = std::fs::read_dir(fixture_dir().join(dir)).expect("fixture dir");
        for e in entries {
            let name = e
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".fs_to_client.raw") {
                out.push(format!("{dir}/{name}"));
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 20,
        "expected the full fixture set, found {}",
        out.len()
    );
    out
}

/// One recorded `recv()`/`send()` chunk.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub t_ms: f64,
    pub from_fs: bool,
    pub bytes: Bytes,
}

/// The wire chunks of a transcript (notes dropped).
pub fn transcript(rel: &str) -> Vec<Chunk> {
    let text = String::from_utf8(read(rel)).expect("utf8 transcript");
    text.lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("jsonl");
            let dir = v["dir"].as_str().expect("dir");
            if dir == "note" {
                return None;
            }
            assert!(v.get("b64").is_none(), "binary chunks are not expected");
            Some(Chunk {
                t_ms: v["t_ms"].as_f64().expect("t_ms"),
                from_fs: dir == "fs->client",
                bytes: Bytes::from(v["text"].as_str().expect("text").to_owned()),
            })
        })
        .collect()
}

/// Decodes `chunks` in order, asserting nothing is left over at the end.
pub fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Frame> {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = decoder.decode(&mut buf).expect("framing") {
            frames.push(frame);
        }
    }
    decoder.finish(&mut buf).expect("no leftover bytes");
    frames
}
