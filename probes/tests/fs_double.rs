//! The FreeSWITCH double against a tiny engine built from esl-bridge's outbound server and
//! unicast leg (the way `tom serve` echoes calls today), plus a scripted engine that
//! checks the double's ESL bytes, and the double's channel data on its own.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use esl_bridge::connection::Incoming;
use esl_bridge::frame::FrameDecoder;
use esl_bridge::media::{free_udp_port, MediaFormat as LegFormat, UnicastConfig, UnicastLeg};
use esl_bridge::message::Message;
use esl_bridge::outbound::{ChannelData, OutboundConfig, OutboundServer};
use esl_bridge::EslCodec;
use futures_util::StreamExt;
use probes::fs_double::{
    ulaw_decode, ulaw_encode, CallSpec, DoubleError, FsDouble, Hangup, Idle, MediaFormat, SentKind,
    SessionEnd, CONNECT_RECORDING,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

/// Safety net for every wait; a healthy run takes well under a second per step.
const LIMIT: Duration = Duration::from_secs(10);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A 440 Hz tone that starts off zero, so no frame of it is silent.
fn tone(frames: usize, rate: u32) -> Vec<i16> {
    let n = frames * (rate as usize / 50);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t + 0.5).sin()) as i16
        })
        .collect()
}

#[derive(Debug, Clone, Copy, Default)]
struct EngineOptions {
    /// Ask FreeSWITCH for µ-law (`flags: native`).
    native: bool,
    /// Hang up after echoing this many frames (after they have all been sent back).
    hang_up_after: Option<usize>,
}

#[derive(Debug)]
struct EngineReport {
    channel: ChannelData,
    echoed: usize,
    saw_caller_hangup: bool,
    events: Vec<String>,
}

/// The engine: answer, start unicast, echo every frame; hang up after N frames or when the
/// caller leaves, then let the linger events arrive until esl-bridge exits.
async fn start_engine(options: EngineOptions) -> (SocketAddr, JoinHandle<EngineReport>) {
    let config = OutboundConfig {
        listen: SocketAddr::new(LOOPBACK, 0),
        ..OutboundConfig::default()
    };
    let server = OutboundServer::bind(config).await.expect("bind");
    let addr = server.local_addr().expect("address");
    let mut calls = server.serve();
    let task = tokio::spawn(async move {
        let mut call = calls.next().await.expect("a call");
        let channel = call.channel().clone();
        let format = if options.native {
            LegFormat::PCMU
        } else {
            LegFormat::l16(channel.read_rate).expect("rate")
        };
        let fs_side = SocketAddr::new(LOOPBACK, free_udp_port(LOOPBACK).expect("port"));
        let leg = UnicastLeg::bind(UnicastConfig::new(format, fs_side))
            .await
            .expect("leg");
        call.answer().await.expect("answer");
        call.start_unicast(leg.params()).await.expect("unicast");
        let (mut rx, tx) = leg.split().expect("split");
        let mut events = Vec::new();
        let mut echoed = 0;
        let mut saw_caller_hangup = false;
        loop {
            tokio::select! {
                frame = rx.recv() => {
                    tx.push(frame.expect("frame").bytes()).expect("echo");
                    echoed += 1;
                    if Some(echoed) == options.hang_up_after {
                        break;
                    }
                }
                event = call.next_event() => match event {
                    Some(Incoming::Event(e)) => {
                        let name = e.name().unwrap_or_default().to_owned();
                        events.push(name.clone());
                        if name == "CHANNEL_HANGUP" {
                            saw_caller_hangup = true;
                            break;
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
        if saw_caller_hangup {
            tx.flush();
        } else {
            // Everything echoed reaches the caller before the hang-up.
            tx.finish().await;
            call.hangup("NORMAL_CLEARING").await.expect("hangup");
        }
        while let Some(item) = call.next_event().await {
            if let Incoming::Event(e) = item {
                events.push(e.name().unwrap_or_default().to_owned());
            }
        }
        EngineReport {
            channel,
            echoed,
            saw_caller_hangup,
            events,
        }
    });
    (addr, task)
}

async fn report(task: JoinHandle<EngineReport>) -> EngineReport {
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("engine finishes")
        .expect("engine task")
}

#[tokio::test]
async fn l16_call_is_answered_echoed_and_hung_up_by_the_engine() {
    let frames = 25;
    let spec = CallSpec {
        idle: Idle::Nothing,
        ..CallSpec::default()
    };
    let cng = spec.leading_cng_frames;
    let (addr, engine) = start_engine(EngineOptions {
        hang_up_after: Some(cng + frames),
        ..EngineOptions::default()
    })
    .await;
    let call = FsDouble::call(addr, spec).await.expect("call placed");
    let media = call.wait_for_media().await.expect("unicast");
    assert_eq!(media.format, MediaFormat::L16);
    assert_eq!((media.rate, media.frame_bytes), (8_000, 320));

    let speech = tone(frames, 8_000);
    let last_sent = call.play(&speech).await.expect("played");
    assert_eq!(
        call.wait_for_hangup(LIMIT).await.expect("hang-up"),
        Hangup::Engine {
            cause: "NORMAL_CLEARING".into()
        }
    );
    assert_eq!(
        call.wait_for_session_end(LIMIT).await.expect("session end"),
        SessionEnd::Exit
    );
    assert!(call.closed_by_engine());
    let engine = report(engine).await;
    assert_eq!(engine.echoed, cng + frames);
    assert!(!engine.saw_caller_hangup);
    assert_eq!(engine.channel.unique_id, call.uuid());
    assert_eq!(engine.channel.caller_id_number, "+4930123456");
    assert_eq!(
        engine.events.last().map(String::as_str),
        Some("CHANNEL_HANGUP_COMPLETE"),
        "{:?}",
        engine.events
    );

    // What the engine said to FreeSWITCH, in order.
    assert_eq!(
        call.commands(),
        ["connect", "myevents", "linger", "sendmsg", "sendmsg", "sendmsg", "exit"]
    );
    let requests = call.requests();
    assert_eq!(requests[3].headers.get("call-command"), Some("execute"));
    assert_eq!(requests[3].headers.get("execute-app-name"), Some("answer"));
    assert!(requests[3].headers.get("Event-UUID").is_some());
    assert_eq!(requests[4].headers.get("call-command"), Some("unicast"));
    assert_eq!(requests[4].headers.get("flags"), None);
    assert_eq!(requests[5].headers.get("call-command"), Some("hangup"));
    assert!(call.unmodelled().is_empty(), "{:?}", call.unmodelled());

    // The echo is byte-exact: FreeSWITCH's no-media frames (-1 in L16), then the speech.
    let received = call.received_frames();
    assert_eq!(received.len(), cng + frames);
    assert!(received.iter().all(|f| f.from == media.engine_side));
    assert!(received[..cng].iter().all(|f| f.bytes == vec![0xFF; 320]));
    assert_eq!(call.received_audio()[cng * 160..], speech[..]);
    let sent = call.sent_frames();
    for (s, r) in sent[cng..].iter().zip(&received[cng..]) {
        assert_eq!(s.bytes, r.bytes);
        assert!(r.at >= s.at);
    }

    // e2e from the last voiced frame: one echo hop plus the engine's pacing.
    let spoke = call.last_voiced_frame_sent(500.0).expect("voiced frames");
    assert_eq!(spoke, last_sent);
    let e2e = call.e2e_after(spoke).expect("reply after the last frame");
    assert!(e2e < Duration::from_millis(250), "e2e {e2e:?}");
    let first_played = sent[cng].at;
    let first_reply = call.first_reply_frame_after(first_played).expect("reply");
    assert!(first_reply - first_played < Duration::from_millis(250));
    assert!(call.last_reply_frame().expect("last reply") >= spoke);
}

#[tokio::test]
async fn caller_hang_up_ends_the_engines_call() {
    let (addr, engine) = start_engine(EngineOptions::default()).await;
    let call = FsDouble::call(addr, CallSpec::default())
        .await
        .expect("call placed");
    call.wait_for_media().await.expect("unicast");
    let spoke = call.play(&tone(10, 8_000)).await.expect("played");
    let reply = call
        .wait_for_reply_after(spoke, LIMIT)
        .await
        .expect("echo of the last frame");
    assert!(reply >= spoke);
    // Silence keeps flowing after the play, as on a parked channel.
    call.wait_for_received_frames(3 + 10 + 5, LIMIT)
        .await
        .expect("idle frames echoed");
    assert!(call.sent_frames().iter().any(|f| f.kind == SentKind::Idle));

    assert_eq!(call.hangup().await.expect("hang-up"), SessionEnd::Exit);
    assert_eq!(call.hangup_state(), Some(Hangup::Caller));
    assert!(!call.closed_by_engine());
    let engine = report(engine).await;
    assert!(engine.saw_caller_hangup, "{:?}", engine.events);
    assert!(engine
        .events
        .contains(&"CHANNEL_HANGUP_COMPLETE".to_owned()));
    assert_eq!(
        call.commands(),
        ["connect", "myevents", "linger", "sendmsg", "sendmsg", "exit"]
    );
    assert!(matches!(
        call.hangup().await,
        Err(DoubleError::CallEnded(Hangup::Caller))
    ));
}

#[tokio::test]
async fn pcmu_native_call_carries_ulaw_both_ways() {
    let frames = 20;
    let spec = CallSpec {
        format: MediaFormat::PcmuNative,
        idle: Idle::Nothing,
        ..CallSpec::default()
    };
    let cng = spec.leading_cng_frames;
    let (addr, engine) = start_engine(EngineOptions {
        native: true,
        hang_up_after: Some(cng + frames),
    })
    .await;
    let call = FsDouble::call(addr, spec).await.expect("call placed");
    let media = call.wait_for_media().await.expect("unicast");
    assert_eq!(media.format, MediaFormat::PcmuNative);
    assert_eq!(media.frame_bytes, 160);
    let speech = tone(frames, 8_000);
    call.play(&speech).await.expect("played");
    call.wait_for_session_end(LIMIT).await.expect("session end");
    report(engine).await;

    assert_eq!(
        call.requests()[4].headers.get("flags"),
        Some("native"),
        "{:?}",
        call.requests()[4]
    );
    // FreeSWITCH's no-media frames are 320 B even in native mode; the engine's leg turns
    // each into one frame of µ-law silence, which comes back as such.
    let sent = call.sent_frames();
    assert!(sent[..cng].iter().all(|f| f.bytes.len() == 320));
    let received = call.received_frames();
    assert_eq!(received.len(), cng + frames);
    assert!(received[..cng].iter().all(|f| f.bytes == vec![0xFF; 160]));
    for (s, r) in sent[cng..].iter().zip(&received[cng..]) {
        assert_eq!(s.bytes, r.bytes, "µ-law echoed byte for byte");
    }
    let expected: Vec<i16> = speech
        .iter()
        .map(|&s| ulaw_decode(ulaw_encode(s)))
        .collect();
    assert_eq!(call.received_audio()[cng * 160..], expected[..]);
    assert!(call.received_audio()[..cng * 160].iter().all(|&s| s == 0));
}

#[tokio::test]
async fn a_format_the_spec_does_not_expect_is_reported() {
    let (addr, engine) = start_engine(EngineOptions::default()).await;
    let spec = CallSpec {
        format: MediaFormat::PcmuNative,
        ..CallSpec::default()
    };
    let call = FsDouble::call(addr, spec).await.expect("call placed");
    assert!(matches!(
        call.wait_for_media().await,
        Err(DoubleError::FormatMismatch {
            expected: MediaFormat::PcmuNative,
            requested: MediaFormat::L16
        })
    ));
    assert_eq!(call.hangup().await.expect("hang-up"), SessionEnd::Exit);
    report(engine).await;
}

#[tokio::test(start_paused = true)]
async fn play_is_paced_on_the_tokio_clock() {
    let (addr, engine) = start_engine(EngineOptions::default()).await;
    let spec = CallSpec {
        idle: Idle::Nothing,
        leading_cng_frames: 0,
        ..CallSpec::default()
    };
    let call = FsDouble::call(addr, spec).await.expect("call placed");
    call.wait_for_media().await.expect("unicast");
    let frames = 50;
    let last = call.play(&tone(frames, 8_000)).await.expect("played");
    let played: Vec<_> = call
        .sent_frames()
        .into_iter()
        .filter(|f| f.kind == SentKind::Played)
        .collect();
    assert_eq!(played.len(), frames);
    assert_eq!(played.last().map(|f| f.at), Some(last));
    for pair in played.windows(2) {
        assert_eq!(pair[1].at - pair[0].at, Duration::from_millis(20));
    }
    let silence_end = call
        .play_silence(Duration::from_millis(50))
        .await
        .expect("silence");
    assert_eq!(silence_end - last, Duration::from_millis(60));
    assert_eq!(call.hangup().await.expect("hang-up"), SessionEnd::Exit);
    report(engine).await;
}

/// Reads FreeSWITCH messages off the scripted engine's socket.
async fn next_message(
    messages: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, EslCodec>,
) -> Option<Message> {
    let frame = tokio::time::timeout(LIMIT, messages.next())
        .await
        .expect("a message in time")?
        .expect("well-framed");
    Some(Message::from_frame(frame).expect("understood"))
}

#[tokio::test]
async fn scripted_engine_sees_the_recorded_protocol() {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let spec = CallSpec {
        answered_by_dialplan: true,
        ..CallSpec::default()
    };
    let uuid = spec.uuid.clone();
    let placing = tokio::spawn(FsDouble::call(addr, spec));
    let (stream, _) = listener.accept().await.expect("FreeSWITCH connects");
    let (read, mut write) = stream.into_split();
    let mut messages = FramedRead::new(read, EslCodec::default());

    write.write_all(b"connect\n\n").await.expect("write");
    let Some(Message::CommandReply(reply)) = next_message(&mut messages).await else {
        panic!("connect reply");
    };
    assert_eq!(reply.text, "+OK");
    assert_eq!(reply.headers.get("Unique-ID"), Some(uuid.as_str()));
    let call = placing.await.expect("task").expect("call placed");

    write.write_all(b"myevents\n\n").await.expect("write");
    assert!(matches!(next_message(&mut messages).await,
        Some(Message::CommandReply(r)) if r.text == "+OK Events Enabled"));
    assert!(matches!(next_message(&mut messages).await,
        Some(Message::Event(e)) if e.name() == Some("CHANNEL_PARK")));

    write
        .write_all(b"bogus_esl_command\n\n")
        .await
        .expect("write");
    assert!(matches!(next_message(&mut messages).await,
        Some(Message::CommandReply(r)) if r.text == "-ERR command not found"));

    write
        .write_all(format!("api uuid_getvar {uuid} read_codec\n\n").as_bytes())
        .await
        .expect("write");
    assert!(matches!(next_message(&mut messages).await,
        Some(Message::ApiResponse(a)) if a.body == "PCMU"));

    // The channel was answered by the dialplan: `answer` gives no CHANNEL_ANSWER.
    write
        .write_all(b"sendmsg\ncall-command: execute\nexecute-app-name: answer\nEvent-UUID: e-1\n\n")
        .await
        .expect("write");
    assert!(matches!(next_message(&mut messages).await,
        Some(Message::CommandReply(r)) if r.text == "+OK"));
    for expected in ["CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE"] {
        let Some(Message::Event(e)) = next_message(&mut messages).await else {
            panic!("{expected}");
        };
        assert_eq!(e.name(), Some(expected));
        assert_eq!(e.application_uuid(), Some("e-1"));
    }

    // No linger: uuid_kill → +OK, the hang-up events, the disconnect notice, the close.
    write
        .write_all(format!("api uuid_kill {uuid} USER_BUSY\n\n").as_bytes())
        .await
        .expect("write");
    assert!(matches!(next_message(&mut messages).await,
        Some(Message::ApiResponse(a)) if a.body == "+OK\n"));
    let mut names = Vec::new();
    let mut rest = Vec::new();
    while let Some(message) = next_message(&mut messages).await {
        match message {
            Message::Event(e) => {
                assert_eq!(e.unique_id(), Some(uuid.as_str()));
                assert_eq!(e.header("Hangup-Cause"), Some("USER_BUSY"));
                names.push(e.name().unwrap_or_default().to_owned());
            }
            other => rest.push(other),
        }
    }
    assert_eq!(
        names,
        [
            "CHANNEL_HANGUP",
            "CHANNEL_UNPARK",
            "CHANNEL_EXECUTE_COMPLETE",
            "CHANNEL_STATE",
            "CHANNEL_STATE",
            "CHANNEL_HANGUP_COMPLETE"
        ]
    );
    assert!(
        matches!(&rest[..], [Message::DisconnectNotice(n)] if n.session_uuid.as_deref() == Some(uuid.as_str())),
        "{rest:?}"
    );
    assert_eq!(
        call.wait_for_session_end(LIMIT).await.expect("closed"),
        SessionEnd::Disconnected
    );
    assert_eq!(
        call.hangup_state(),
        Some(Hangup::Engine {
            cause: "USER_BUSY".into()
        })
    );
    assert_eq!(call.unmodelled(), ["bogus_esl_command"]);
    assert!(matches!(
        call.wait_for_media().await,
        Err(DoubleError::CallEnded(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn an_engine_that_never_exits_after_linger_is_cut_off() {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut spec = CallSpec::default();
    spec.timeouts.exit_after_linger = Duration::from_secs(3);
    let placing = tokio::spawn(FsDouble::call(addr, spec));
    let (stream, _) = listener.accept().await.expect("FreeSWITCH connects");
    let (read, mut write) = stream.into_split();
    let mut messages = FramedRead::new(read, EslCodec::default());
    write
        .write_all(b"connect\n\nlinger\n\nsendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING\n\n")
        .await
        .expect("write");
    let call = placing.await.expect("task").expect("call placed");
    let started = tokio::time::Instant::now();
    // Not subscribed to events: replies, then only the linger notice; never `exit`.
    let mut notices = 0;
    while let Some(message) = next_message(&mut messages).await {
        if let Message::DisconnectNotice(n) = message {
            assert_eq!(
                n.disposition,
                esl_bridge::message::Disposition::Linger { seconds: None }
            );
            notices += 1;
        }
    }
    assert_eq!(notices, 1);
    assert_eq!(
        call.wait_for_session_end(LIMIT).await.expect("closed"),
        SessionEnd::ExitNeverCame
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[test]
fn connect_reply_is_channel_data_with_the_specs_values() {
    let double = FsDouble::from_default_fixtures().expect("fixtures");
    let spec = CallSpec {
        uuid: "0d7a0a5e-7d2b-4c6e-9a51-3f1c2b9d8e70".into(),
        caller: "+15551234567".into(),
        destination: "4242".into(),
        rate: 16_000,
        ..CallSpec::default()
    };
    let bytes = double.connect_reply(&spec).expect("reply");
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = FrameDecoder::default()
        .decode(&mut buf)
        .expect("frames")
        .expect("one frame");
    assert!(buf.is_empty(), "exactly one message");
    let Message::CommandReply(reply) = Message::from_frame(frame).expect("message") else {
        panic!("a command/reply");
    };
    assert!(reply.is_ok());
    let channel = ChannelData::from_reply(&reply).expect("channel data");
    assert_eq!(channel.unique_id, spec.uuid);
    assert_eq!(channel.caller_id_number, "+15551234567");
    assert_eq!(channel.destination_number, "4242");
    assert_eq!(channel.read_codec, "G722");
    assert_eq!(channel.read_rate, 16_000);
    assert_eq!(
        channel.channel_name,
        "sofia/internal/+15551234567@127.0.0.1"
    );
    assert_eq!(channel.variables["uuid"], spec.uuid);
    assert_eq!(channel.variables["sip_to_user"], "4242");
    assert_eq!(channel.headers.get("Answer-State"), Some("ringing"));
    assert_eq!(channel.headers.get("Socket-Mode"), Some("async"));

    // With the recording's own identity and dialplan, the bytes are the recording's.
    let recorded = std::fs::read(probes::fs_double::default_fixtures_dir().join(CONNECT_RECORDING))
        .expect("fixture");
    let reply = double
        .connect_reply(&double.recorded_call())
        .expect("reply");
    assert_eq!(reply[..], recorded[..reply.len()]);
    assert_eq!(&recorded[reply.len() - 2..reply.len()], b"\n\n");

    assert!(matches!(
        double.connect_reply(&CallSpec {
            rate: 48_000,
            ..CallSpec::default()
        }),
        Err(DoubleError::InvalidSpec(_))
    ));
}

#[test]
fn the_built_in_recordings_are_prefixes_of_the_fixtures_and_give_the_same_calls() {
    let fixtures = probes::fs_double::default_fixtures_dir();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/freeswitch");
    for (embedded, recording) in [
        ("outbound_basic.head.raw", CONNECT_RECORDING),
        (
            "outbound_uuid_kill_no_linger.head.raw",
            probes::fs_double::HANGUP_RECORDING,
        ),
        (
            "outbound_unicast_g722_l16.head.raw",
            probes::fs_double::G722_RECORDING,
        ),
    ] {
        let head = std::fs::read(data.join(embedded)).expect("built-in recording");
        let full = std::fs::read(fixtures.join(recording)).expect("fixture");
        assert!(
            full.starts_with(&head),
            "{embedded} is a prefix of {recording}"
        );
    }
    let built_in = FsDouble::embedded().expect("built-in recordings");
    let loaded = FsDouble::from_default_fixtures().expect("fixtures");
    for rate in [8_000, 16_000] {
        for answered_by_dialplan in [false, true] {
            let spec = CallSpec {
                rate,
                answered_by_dialplan,
                ..CallSpec::default()
            };
            assert_eq!(
                built_in.connect_reply(&spec).expect("reply"),
                loaded.connect_reply(&spec).expect("reply")
            );
        }
    }
    assert_eq!(built_in.recorded_call().uuid, loaded.recorded_call().uuid);
}
