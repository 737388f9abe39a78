//! The engine's provider client against `provider-sim` (and, for hostile input, a raw
//! WebSocket server): a full turn both in µ-law and in 24 kHz PCM, barge-in with a
//! clamped truncate, every fault mode surfacing as its error class, history carried
//! over, malformed events survived, and no socket at all with egress off. Loopback only;
//! waits end on events, with a timeout only as a safety net.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use engine::backend::local::brain::{Speaker, Turn};
use engine::backend::provider::protocol::Dialect;
use engine::backend::provider::{ApiKey, ProviderBackend, ProviderConfig, ProviderSession};
use engine::backend::{
    next_event, ErrorKind, ReplyDone, Session, SessionConfig, SessionError, SessionEvent, Utterance,
};
use futures_util::{SinkExt, StreamExt};
use probes::sim::{Faults, ProviderSim, RateLimitMode, ReplySource, SimConfig, SimHandle};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const SAFETY: Duration = Duration::from_secs(30);
const KEY: &str = "sk-test-do-not-print";

async fn sim(faults: Faults, reply_ms: u64) -> SimHandle {
    ProviderSim::start(SimConfig {
        faults,
        api_key: Some(KEY.into()),
        reply: ReplySource::Tone { ms: reply_ms },
        reply_text: "Hello from the simulator.".into(),
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

fn config(url: String) -> ProviderConfig {
    ProviderConfig {
        url,
        api_key: Some(ApiKey::new(KEY)),
        allow_egress: true,
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(5),
        ..ProviderConfig::default()
    }
}

fn call(rate: u32, ulaw: bool) -> SessionConfig {
    SessionConfig {
        rate,
        telephony_ulaw: ulaw,
        language: "en".into(),
        instructions: "You are a test.".into(),
        history: Vec::new(),
    }
}

fn turn() -> Utterance {
    Utterance {
        end_of_speech: Instant::now(),
        voiced: Duration::from_secs(1),
        trailing: Duration::from_millis(500),
    }
}

async fn open(sim: &SimHandle, call: SessionConfig) -> ProviderSession {
    ProviderBackend::new(config(sim.ws_url()))
        .open(call)
        .await
        .expect("session opens")
}

/// One second of caller audio in 20 ms frames, then the end of the turn.
fn speak_and_commit(session: &mut dyn Session, rate: u32) {
    let frame = vec![1000i16; rate as usize / 50];
    for _ in 0..50 {
        session.push_audio(&frame).expect("push");
    }
    session.commit(turn()).expect("commit");
}

async fn next(session: &mut dyn Session) -> Option<SessionEvent> {
    tokio::time::timeout(SAFETY, next_event(session))
        .await
        .expect("an event in time")
}

async fn until_done(session: &mut dyn Session) -> (Vec<SessionEvent>, ReplyDone) {
    let mut events = Vec::new();
    loop {
        match next(session).await.expect("session running") {
            SessionEvent::ReplyDone(done) => return (events, done),
            event => events.push(event),
        }
    }
}

fn audio_samples(events: &[SessionEvent]) -> usize {
    events
        .iter()
        .map(|e| match e {
            SessionEvent::ReplyAudio(pcm) => pcm.len(),
            _ => 0,
        })
        .sum()
}

fn received_types(sim: &SimHandle) -> Vec<String> {
    sim.received().into_iter().map(|r| r.kind).collect()
}

#[tokio::test]
async fn a_full_turn_in_ulaw_keeps_telephony_audio_unresampled() {
    let sim = sim(Faults::default(), 600).await;
    let mut session = open(&sim, call(8000, true)).await;
    speak_and_commit(&mut session, 8000);
    let (events, done) = until_done(&mut session).await;

    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::CallerText(t) if t.contains("provider-sim heard"))));
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::ReplyText(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hello from the simulator.");
    // 600 ms of µ-law at 8 kHz: exactly the samples the sim sent, nothing resampled.
    assert_eq!(audio_samples(&events), 4800);
    assert!(!done.cancelled);
    let usage = done.usage.expect("usage");
    assert!(usage.input_audio_tokens > 0 && usage.output_audio_tokens > 0);

    let received = sim.received();
    let update = received
        .iter()
        .find(|r| r.kind == "session.update")
        .and_then(|r| r.event.clone())
        .expect("session.update");
    assert_eq!(
        update["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(
        update["session"]["audio"]["output"]["format"]["type"],
        "audio/pcmu"
    );
    assert!(update["session"]["audio"]["input"]["turn_detection"].is_null());
    let appended: u64 = received.iter().filter_map(|r| r.audio_bytes).sum();
    assert_eq!(appended, 8000, "one second of µ-law");
    let types = received_types(&sim);
    let commit = types.iter().position(|t| t == "input_audio_buffer.commit");
    let create = types.iter().position(|t| t == "response.create");
    assert!(commit.is_some() && create > commit, "{types:?}");
}

#[tokio::test]
async fn a_wideband_call_speaks_pcm16_at_24k_in_the_beta_dialect() {
    let sim = sim(Faults::default(), 500).await;
    let mut cfg = config(sim.ws_url());
    cfg.dialect = Dialect::Beta;
    let mut session = ProviderBackend::new(cfg)
        .open(call(16000, false))
        .await
        .expect("opens");
    speak_and_commit(&mut session, 16000);
    let (events, done) = until_done(&mut session).await;
    assert!(!done.cancelled);
    // 500 ms at 24 kHz comes back as about 500 ms at 16 kHz (the resampler's filter
    // holds back a few ms).
    let samples = audio_samples(&events);
    assert!((7600..=8000).contains(&samples), "{samples}");
    let received = sim.received();
    let update = received
        .iter()
        .find(|r| r.kind == "session.update")
        .and_then(|r| r.event.clone())
        .expect("session.update");
    assert_eq!(update["session"]["input_audio_format"], "pcm16");
    let appended: u64 = received.iter().filter_map(|r| r.audio_bytes).sum();
    // One second at 24 kHz, 16 bit, less the resampler's start-up.
    assert!((46_000..=48_000).contains(&appended), "{appended}");
}

#[tokio::test]
async fn barge_in_cancels_and_truncates_at_what_was_heard_clamped_to_what_was_sent() {
    let sim = sim(Faults::default(), 5000).await;
    let mut session = open(&sim, call(8000, true)).await;
    speak_and_commit(&mut session, 8000);
    // Let about 300 ms of the reply arrive.
    let mut heard = 0;
    while heard < 2400 {
        if let Some(SessionEvent::ReplyAudio(pcm)) = next(&mut session).await {
            heard += pcm.len();
        }
    }
    session.cancel(Duration::from_millis(200)).expect("cancel");
    loop {
        match next(&mut session).await.expect("running") {
            SessionEvent::ReplyDone(done) => {
                assert!(done.cancelled);
                break;
            }
            SessionEvent::ReplyAudio(_) => panic!("audio after the cancel"),
            SessionEvent::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    let truncate = sim
        .received()
        .into_iter()
        .find(|r| r.kind == "conversation.item.truncate")
        .and_then(|r| r.event)
        .expect("truncate sent");
    assert_eq!(truncate["audio_end_ms"], 200);
    assert!(received_types(&sim).contains(&"response.cancel".to_owned()));

    // Claiming the caller heard more than was sent is clamped, so the server accepts it.
    speak_and_commit(&mut session, 8000);
    let mut got = 0;
    while got < 800 {
        if let Some(SessionEvent::ReplyAudio(pcm)) = next(&mut session).await {
            got += pcm.len();
        }
    }
    session.cancel(Duration::from_secs(60)).expect("cancel");
    loop {
        match next(&mut session).await.expect("running") {
            SessionEvent::ReplyDone(done) => {
                assert!(done.cancelled);
                break;
            }
            SessionEvent::Error(e) => panic!("the server rejected the truncate: {e}"),
            _ => {}
        }
    }
    let truncates: Vec<u64> = sim
        .received()
        .into_iter()
        .filter(|r| r.kind == "conversation.item.truncate")
        .filter_map(|r| r.event?["audio_end_ms"].as_u64())
        .collect();
    let clamped = *truncates.last().expect("second truncate");
    assert!(
        (100..60_000).contains(&clamped),
        "clamped to the audio received, got {clamped}"
    );
    // A truncate beyond the audio the sim sent would have produced an error event.
}

async fn open_err(faults: Faults) -> SessionError {
    let sim = sim(faults, 500).await;
    let mut cfg = config(sim.ws_url());
    cfg.connect_attempts = 2;
    ProviderBackend::new(cfg)
        .open(call(8000, true))
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn refused_connections_auth_and_429_are_classified_at_connect() {
    let refused = open_err(Faults {
        refuse_connections: true,
        ..Faults::default()
    })
    .await;
    assert_eq!(refused.kind, ErrorKind::Connect, "{refused}");
    let auth = open_err(Faults {
        reject_auth: true,
        ..Faults::default()
    })
    .await;
    assert_eq!(auth.kind, ErrorKind::Auth, "{auth}");
    assert!(!format!("{auth} {auth:?}").contains(KEY));
    let limited = open_err(Faults {
        rate_limit: RateLimitMode::Http,
        ..Faults::default()
    })
    .await;
    assert_eq!(limited.kind, ErrorKind::RateLimit, "{limited}");

    // A wrong key is an auth error too, and the error never shows the key.
    let sim = sim(Faults::default(), 500).await;
    let mut cfg = config(sim.ws_url());
    cfg.api_key = Some(ApiKey::new("sk-wrong-key"));
    let e = ProviderBackend::new(cfg)
        .open(call(8000, true))
        .await
        .expect_err("wrong key");
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(!format!("{e} {e:?}").contains("sk-wrong-key"));
}

/// Runs one turn under `faults`; returns the errors seen and whether the session ended.
async fn turn_under(faults: Faults, response_timeout: Duration) -> (Vec<SessionError>, bool) {
    let sim = sim(faults, 2000).await;
    let mut cfg = config(sim.ws_url());
    cfg.response_timeout = response_timeout;
    let mut session = ProviderBackend::new(cfg)
        .open(call(8000, true))
        .await
        .expect("opens");
    speak_and_commit(&mut session, 8000);
    let mut errors = Vec::new();
    loop {
        match next(&mut session).await {
            None => return (errors, true),
            Some(SessionEvent::Error(e)) => errors.push(e),
            Some(SessionEvent::ReplyDone(_)) => return (errors, false),
            Some(_) => {}
        }
    }
}

#[tokio::test]
async fn mid_call_faults_surface_as_their_error_class() {
    let (errors, ended) = turn_under(
        Faults {
            close_after_ms: Some(300),
            ..Faults::default()
        },
        Duration::from_secs(5),
    )
    .await;
    assert!(ended);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, ErrorKind::ClosedMidResponse);
    assert!(errors[0].fatal);

    let (errors, ended) = turn_under(
        Faults {
            stall: true,
            ..Faults::default()
        },
        Duration::from_millis(300),
    )
    .await;
    assert!(ended);
    assert_eq!(
        errors.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [ErrorKind::Timeout]
    );

    let (errors, ended) = turn_under(
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
        Duration::from_secs(5),
    )
    .await;
    assert!(!ended, "a server error event does not end the session");
    assert!(!errors.is_empty());
    assert!(
        errors.iter().all(|e| e.kind == ErrorKind::Server),
        "{errors:?}"
    );

    let (errors, _) = turn_under(
        Faults {
            rate_limit: RateLimitMode::Event,
            ..Faults::default()
        },
        Duration::from_secs(5),
    )
    .await;
    assert!(!errors.is_empty());
    assert!(
        errors.iter().all(|e| e.kind == ErrorKind::RateLimit),
        "{errors:?}"
    );
}

#[tokio::test]
async fn the_conversation_so_far_is_handed_to_the_provider() {
    let sim = sim(Faults::default(), 300).await;
    let mut with_history = call(8000, true);
    with_history.history = vec![
        Turn {
            speaker: Speaker::Caller,
            text: "I want a table.".into(),
        },
        Turn {
            speaker: Speaker::Agent,
            text: "For how many?".into(),
        },
    ];
    let mut session = open(&sim, with_history).await;
    speak_and_commit(&mut session, 8000);
    until_done(&mut session).await;
    let items: Vec<serde_json::Value> = sim
        .received()
        .into_iter()
        .filter(|r| r.kind == "conversation.item.create")
        .filter_map(|r| r.event)
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["item"]["role"], "user");
    assert_eq!(items[0]["item"]["content"][0]["text"], "I want a table.");
    assert_eq!(items[1]["item"]["role"], "assistant");
}

#[tokio::test]
async fn with_egress_off_no_socket_is_opened() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut cfg = config(format!("ws://{addr}/v1/realtime"));
    cfg.allow_egress = false;
    let e = ProviderBackend::new(cfg)
        .open(call(8000, true))
        .await
        .expect_err("egress off");
    assert_eq!(e.kind, ErrorKind::EgressDisabled);
    assert!(e.message.contains("ALLOW_EGRESS"));
    // Had the client connected, its connection would be queued ahead of ours.
    let ours = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (_, peer) = listener.accept().await.expect("accept");
    assert_eq!(peer, ours.local_addr().expect("local addr"));
}

#[tokio::test]
async fn malformed_server_events_are_errors_not_panics_and_the_turn_goes_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake");
        // Wait for the commit, then answer with garbage around a valid reply.
        while let Some(Ok(msg)) = ws.next().await {
            if msg.to_text().unwrap_or("").contains("response.create") {
                break;
            }
        }
        let hostile = [
            "not json at all".to_owned(),
            r#"{"no":"type"}"#.to_owned(),
            r#"{"type":"response.output_audio.delta","delta":12}"#.to_owned(),
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"!!not base64!!"}"#.to_owned(),
            format!(r#"{{"type":"something.new","blob":"{}"}}"#, "x".repeat(1 << 20)),
            r#"{"type":"response.created","response":{"id":"r","status":"in_progress"}}"#.to_owned(),
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"//////////8="}"#.to_owned(),
            r#"{"type":"response.done","response":{"id":"r","status":"completed"}}"#.to_owned(),
        ];
        for text in hostile {
            let _ = ws.send(Message::text(text)).await;
        }
        let _ = ws.send(Message::binary(vec![0u8; 64])).await;
        // Keep the socket open until the client goes.
        while ws.next().await.is_some() {}
    });
    let mut session = ProviderBackend::new(config(format!("ws://{addr}/v1/realtime")))
        .open(call(8000, true))
        .await
        .expect("opens");
    speak_and_commit(&mut session, 8000);
    let (events, done) = until_done(&mut session).await;
    let protocol_errors = events
        .iter()
        .filter(
            |e| matches!(e, SessionEvent::Error(e) if e.kind == ErrorKind::Protocol && !e.fatal),
        )
        .count();
    assert_eq!(protocol_errors, 4, "{events:?}");
    assert_eq!(
        audio_samples(&events),
        8,
        "the one valid delta came through"
    );
    assert!(!done.cancelled);
}
