//! A replay double that plays FreeSWITCH's side of a recorded session: it writes the
//! recorded FreeSWITCH chunks in order and, where the client spoke in the recording,
//! waits for the client under test to send the same commands.
//!
//! Commands are compared by meaning, not bytes: an `execute-app-arg` may travel inline or
//! as a body, and the `Event-UUID`s our client generates replace the recorded ones in
//! every later FreeSWITCH chunk (both are 36-character UUIDs, so lengths stay valid).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use esl_bridge::codec::{Request, RequestCodec};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, FramedRead};

use super::transcript;

/// Safety net only: a step that takes this long means the client under test is stuck.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum Step {
    /// FreeSWITCH writes these bytes.
    Write(Bytes),
    /// The client is expected to send this command.
    Expect(Request),
}

/// The steps of a recorded session, FreeSWITCH's point of view.
pub fn script(transcript_rel: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut client_bytes = BytesMut::new();
    let mut codec = RequestCodec::default();
    for chunk in transcript(transcript_rel) {
        if chunk.from_fs {
            steps.push(Step::Write(chunk.bytes));
        } else {
            client_bytes.extend_from_slice(&chunk.bytes);
            while let Some(req) = codec.decode(&mut client_bytes).expect("recorded request") {
                steps.push(Step::Expect(req));
            }
        }
    }
    steps
}

/// What the client did, for assertions.
#[derive(Debug, Default)]
pub struct Report {
    /// The commands the client sent, in order.
    pub requests: Vec<Request>,
    /// Anything the client sent after the script ended, before it closed.
    pub trailing: Vec<u8>,
}

/// A request reduced to what FreeSWITCH acts on.
fn meaning(r: &Request) -> (String, BTreeMap<String, String>) {
    let mut headers: BTreeMap<String, String> = r
        .headers
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("content-type")
        })
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    headers.remove("event-uuid");
    if let Some(body) = &r.body {
        let key = if r.line == "sendmsg" || r.line.starts_with("sendmsg ") {
            "execute-app-arg"
        } else {
            "body"
        };
        headers.insert(key.into(), String::from_utf8_lossy(body).into_owned());
    }
    (r.line.clone(), headers)
}

/// Plays FreeSWITCH's side of `steps` on `stream`, then closes and reports.
pub async fn play(mut stream: TcpStream, steps: Vec<Step>) -> Result<Report, String> {
    let (read_half, mut write_half) = stream.split();
    let mut requests = FramedRead::new(read_half, RequestCodec::default());
    let mut report = Report::default();
    let mut uuid_map: Vec<(String, String)> = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Write(bytes) => {
                let mut bytes = bytes.to_vec();
                for (recorded, actual) in &uuid_map {
                    replace_all(&mut bytes, recorded.as_bytes(), actual.as_bytes());
                }
                write_half
                    .write_all(&bytes)
                    .await
                    .map_err(|e| format!("step {i}: write: {e}"))?;
            }
            Step::Expect(want) => {
                let got = tokio::time::timeout(STEP_TIMEOUT, requests.next())
                    .await
                    .map_err(|_| format!("step {i}: client never sent {:?}", want.line))?
                    .ok_or_else(|| format!("step {i}: client closed; expected {:?}", want.line))?
                    .map_err(|e| format!("step {i}: bad request: {e}"))?;
                if meaning(&got) != meaning(&want) {
                    return Err(format!(
                        "step {i}: expected {:?}\n got {:?}",
                        meaning(&want),
                        meaning(&got)
                    ));
                }
                if let (Some(recorded), Some(actual)) = (
                    want.headers.get("Event-UUID"),
                    got.headers.get("Event-UUID"),
                ) {
                    uuid_map.push((recorded.to_owned(), actual.to_owned()));
                }
                report.requests.push(got);
            }
        }
    }
    // FreeSWITCH closed the socket at the end of every recording.
    write_half
        .shutdown()
        .await
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut rest = requests.read_buffer().to_vec();
    let mut read_half = requests.into_inner();
    tokio::time::timeout(STEP_TIMEOUT, read_half.read_to_end(&mut rest))
        .await
        .map_err(|_| "client did not close after FreeSWITCH closed".to_owned())?
        .map_err(|e| format!("read trailing: {e}"))?;
    report.trailing = rest;
    Ok(report)
}

fn replace_all(haystack: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len(), "substitutions keep lengths");
    let mut i = 0;
    while i + from.len() <= haystack.len() {
        if &haystack[i..i + from.len()] == from {
            haystack[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
}
