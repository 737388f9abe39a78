//! `tom serve` as a black box on its embedded default (local backend): a scripted
//! FreeSWITCH connects over ESL (with the recorded `connect` reply), the engine answers,
//! starts unicast and plays the greeting; the caller talks over it (barge-in) and asks a
//! question; the engine answers with speech; the caller hangs up; the call's cost record
//! is on disk. The logs carry the caller only as a hash. Needs the fetched models.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::BytesMut;
use esl_bridge::codec::{Request, RequestCodec};
use esl_bridge::frame::FrameDecoder;
use esl_bridge::urlcode::url_encode;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::{Child, Command};
use tokio_util::codec::FramedRead;

mod common;

/// Safety net only; a healthy run takes well under a second of steps (plus pacing).
const LIMIT: Duration = Duration::from_secs(30);
const CALLER: &str = "+4930123456";

fn fixtures() -> std::path::PathBuf {
    std::env::var_os("TOM_FIXTURES")
        .map(Into::into)
        .unwrap_or_else(|| std::path::PathBuf::from("../../shared/fixtures/freeswitch"))
}

/// The first message FreeSWITCH sent in `outbound_basic`: the `connect` reply.
fn recorded_connect_reply() -> Vec<u8> {
    let raw = std::fs::read(fixtures().join("esl-outbound/outbound_basic.fs_to_client.raw"))
        .expect("fixture");
    let end = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("header block")
        + 2;
    let mut buf = BytesMut::from(&raw[..end]);
    FrameDecoder::default()
        .decode(&mut buf)
        .expect("frames")
        .expect("connect reply");
    raw[..end].to_vec()
}

fn plain_event(headers: &[(&str, &str)]) -> Vec<u8> {
    let body: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {}\n", url_encode(v)))
        .chain(std::iter::once("\n".to_owned()))
        .collect();
    format!(
        "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Engine {
    child: Child,
    logs: tokio::sync::mpsc::UnboundedReceiver<String>,
}

async fn start_engine(cost_dir: &std::path::Path) -> (Engine, SocketAddr) {
    start_engine_with(cost_dir, &[]).await
}

async fn start_engine_with(
    cost_dir: &std::path::Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> (Engine, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tom"))
        .args(["serve"])
        .envs(env.iter().copied())
        .env("TOM_ESL_LISTEN", "127.0.0.1:0")
        .env("TOM_HTTP_ADDR", "127.0.0.1:0")
        .env("TOM_MAX_CALL_SECS", "60")
        .env("TOM_COST_LOG_DIR", cost_dir)
        .env("TOM_PII_SALT", "test-salt")
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tom starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (tx, mut logs) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The engine logs the address it listens on (port 0 picks a free one).
    let addr = loop {
        let line = logs.recv().await.expect("engine log");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if let Some(listen) = v["fields"]["esl"].as_str() {
            break listen.parse().expect("socket address");
        }
    };
    (Engine { child, logs }, addr)
}

async fn expect(requests: &mut FramedRead<tokio::net::tcp::ReadHalf<'_>, RequestCodec>) -> Request {
    requests
        .next()
        .await
        .expect("engine sent a command")
        .expect("well-formed command")
}

/// The caller's question as a PCMU call carries it: 8 kHz L16 frames of 320 bytes.
fn question_frames() -> Vec<[u8; 320]> {
    let speech = common::espeak("Could I book a table for two people tomorrow evening?");
    let narrow = engine::audio::resample::resample_clip(&speech.samples, speech.rate, 8000)
        .expect("resample");
    narrow
        .chunks(160)
        .map(|chunk| {
            let mut frame = [0u8; 320];
            for (out, s) in frame.chunks_exact_mut(2).zip(chunk) {
                let s = engine::audio::g711::ulaw_decode(engine::audio::g711::ulaw_encode(*s));
                out.copy_from_slice(&s.to_le_bytes());
            }
            frame
        })
        .collect()
}

fn loud(frame: &[u8]) -> bool {
    let samples = frame
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]));
    let energy: f64 = samples.map(|s| f64::from(s).powi(2)).sum::<f64>() / (frame.len() / 2) as f64;
    energy.sqrt() > 300.0
}

#[tokio::test]
async fn tom_serve_greets_listens_and_answers_a_caller() {
    let cost_dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, addr) = tokio::time::timeout(LIMIT * 2, start_engine(cost_dir.path()))
        .await
        .expect("engine up");
    let mut stream = TcpStream::connect(addr).await.expect("FreeSWITCH connects");
    let (read, mut write) = stream.split();
    let mut requests = FramedRead::new(read, RequestCodec::default());
    let uuid = "8bb67b32-2d9c-4933-ab0c-fec0f984b6af";
    let ok = b"Content-Type: command/reply\nReply-Text: +OK\n\n";

    let script = async {
        assert_eq!(expect(&mut requests).await.line, "connect");
        write
            .write_all(&recorded_connect_reply())
            .await
            .expect("write");
        assert_eq!(expect(&mut requests).await.line, "myevents");
        write
            .write_all(b"Content-Type: command/reply\nReply-Text: +OK Events Enabled\n\n")
            .await
            .expect("write");
        assert_eq!(expect(&mut requests).await.line, "linger");
        write
            .write_all(b"Content-Type: command/reply\nReply-Text: +OK will linger\n\n")
            .await
            .expect("write");

        let answer = expect(&mut requests).await;
        assert_eq!(answer.headers.get("execute-app-name"), Some("answer"));
        let app_uuid = answer
            .headers
            .get("Event-UUID")
            .expect("Event-UUID")
            .to_owned();
        write.write_all(ok).await.expect("write");
        write
            .write_all(&plain_event(&[
                ("Event-Name", "CHANNEL_EXECUTE_COMPLETE"),
                ("Unique-ID", uuid),
                ("Application", "answer"),
                ("Application-UUID", &app_uuid),
                ("Application-Response", "_none_"),
            ]))
            .await
            .expect("write");

        let unicast = expect(&mut requests).await;
        assert_eq!(unicast.headers.get("call-command"), Some("unicast"));
        assert_eq!(unicast.headers.get("transport"), Some("udp"));
        assert_eq!(unicast.headers.get("flags"), None, "L16, not native");
        let port = |name| {
            unicast
                .headers
                .get(name)
                .expect(name)
                .parse::<u16>()
                .expect("port")
        };
        let fs_side = SocketAddr::from(([127, 0, 0, 1], port("local-port")));
        let engine_side = SocketAddr::from(([127, 0, 0, 1], port("remote-port")));
        write.write_all(ok).await.expect("write");

        // FreeSWITCH's side of the stream: PCMU channel, so L16 at 8 kHz, 320-byte frames,
        // one every 20 ms in both directions.
        let media = UdpSocket::bind(fs_side)
            .await
            .expect("bind FreeSWITCH side");
        let mut buf = [0u8; 2048];
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        let silence = [0u8; 320];
        let mut greeting = 0;
        // Silence until the greeting plays…
        while greeting < 5 {
            ticks.tick().await;
            media.send_to(&silence, engine_side).await.expect("send");
            while let Ok((n, from)) = media.try_recv_from(&mut buf) {
                assert_eq!(from, engine_side, "audio comes from the engine's socket");
                assert_eq!(n, 320);
                greeting += usize::from(loud(&buf[..n]));
            }
        }
        // …then the caller talks over it and asks; then waits (in silence) for an answer.
        let question = question_frames();
        let mut last_voiced_sent = None;
        let mut reply_frames = 0;
        let mut first_reply = None;
        let mut sent = 0usize;
        while reply_frames < 50 {
            ticks.tick().await;
            let frame = question.get(sent).unwrap_or(&silence);
            media.send_to(frame, engine_side).await.expect("send");
            if sent < question.len() && loud(frame) {
                last_voiced_sent = Some(tokio::time::Instant::now());
            }
            sent += 1;
            while let Ok((n, _)) = media.try_recv_from(&mut buf) {
                if sent > question.len() && loud(&buf[..n]) {
                    reply_frames += 1;
                    first_reply.get_or_insert_with(tokio::time::Instant::now);
                }
            }
        }
        let e2e = first_reply.expect("reply") - last_voiced_sent.expect("voiced");
        eprintln!("e2e (last voiced frame sent → first reply frame received): {e2e:?}");

        // The caller hangs up: events, the linger notice, then the engine must `exit`.
        write
            .write_all(&plain_event(&[
                ("Event-Name", "CHANNEL_HANGUP"),
                ("Unique-ID", uuid),
            ]))
            .await
            .expect("write");
        write
            .write_all(&plain_event(&[
                ("Event-Name", "CHANNEL_HANGUP_COMPLETE"),
                ("Unique-ID", uuid),
            ]))
            .await
            .expect("write");
        write
            .write_all(
                format!("Content-Type: text/disconnect-notice\nControlled-Session-UUID: {uuid}\nContent-Disposition: linger\nLinger-Time: -1\nContent-Length: 0\n\n")
                    .as_bytes(),
            )
            .await
            .expect("write");
        assert_eq!(expect(&mut requests).await.line, "exit");
        write
            .write_all(b"Content-Type: command/reply\nReply-Text: +OK bye\n\nContent-Type: text/disconnect-notice\nContent-Length: 0\n\n")
            .await
            .expect("write");
        write.shutdown().await.expect("close");
    };
    tokio::time::timeout(LIMIT * 2, script)
        .await
        .expect("call script");

    // The engine logs the end of the call; no log line carries the number in clear.
    let mut logs = Vec::new();
    let ended = tokio::time::timeout(LIMIT, async {
        while let Some(line) = engine.logs.recv().await {
            let done = line.contains("call ended");
            logs.push(line);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "no 'call ended' log line: {logs:#?}");
    let started = logs
        .iter()
        .find(|l| l.contains("call started"))
        .expect("call started log");
    let v: serde_json::Value = serde_json::from_str(started).expect("json");
    assert_eq!(
        v["span"]["caller"].as_str().map(str::len),
        Some(16),
        "{started}"
    );
    assert_eq!(v["fields"]["did"], "9999");
    for line in &logs {
        assert!(
            !line.contains(CALLER.trim_start_matches('+')),
            "caller number in clear: {line}"
        );
    }
    assert!(
        logs.iter().any(|l| l.contains("barge-in")),
        "no barge-in over the greeting"
    );

    // The call's cost record is on disk, with the turn answered; the call record beside
    // it has the transcript. Neither has the caller's number.
    let read = |prefix: &str| {
        std::fs::read_dir(cost_dir.path())
            .expect("cost dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| std::fs::read_to_string(e.path()).expect("read"))
            .collect::<String>()
    };
    let record = read("costs_");
    let call_record = read("calls_");
    assert!(call_record.contains("\"role\":\"caller\""), "{call_record}");
    assert!(!call_record.contains(CALLER.trim_start_matches('+')));
    let line: serde_json::Value =
        serde_json::from_str(record.lines().next().expect("a cost record")).expect("json");
    assert_eq!(line["call_id"], uuid);
    assert_eq!(line["backend"], "local");
    assert_eq!(line["outcome"], "caller_hangup");
    assert!(line["turns"].as_u64() >= Some(1), "{line}");
    assert!(!record.contains(CALLER.trim_start_matches('+')));
    engine.child.kill().await.expect("stop engine");
}

/// The next message `tom serve` sent to the notify socket.
async fn notification(systemd: &tokio::net::UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(LIMIT, systemd.recv(&mut buf))
        .await
        .expect("a notification in time")
        .expect("recv");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Under systemd (`Type=notify`), `tom serve` says `READY=1` once it listens with its
/// models loaded (FreeSWITCH can connect at once), and `STOPPING=1` when SIGTERM starts
/// the drain; it then exits cleanly.
#[tokio::test]
async fn tom_serve_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let systemd = tokio::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    let (mut engine, addr) = tokio::time::timeout(
        LIMIT * 2,
        start_engine_with(dir.path(), &[("NOTIFY_SOCKET", socket_path.as_os_str())]),
    )
    .await
    .expect("engine up");
    let ready = notification(&systemd).await;
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    TcpStream::connect(addr)
        .await
        .expect("listening when ready");

    let pid = engine.child.id().expect("pid").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(status.success());
    let stopping = notification(&systemd).await;
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let exit = tokio::time::timeout(LIMIT, engine.child.wait())
        .await
        .expect("exits after the drain")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
}
