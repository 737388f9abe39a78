//! `/v1/stream` end to end against `engine::serve::start` on its local backend: a JWT
//! admits the client, a spoken question streamed in real time is answered with events
//! and reply audio, the stream's cost and call records are written without the caller's
//! number; bad tokens, replays, bad starts, oversized messages and message floods are
//! refused with a short code, a close code and a metric. Loopback only; needs the
//! fetched models (scripts/test.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::config::{Config, Secret};
use engine::serve::{start, Running};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &str = "stream-test-secret-of-at-least-32-bytes";
const CALLER: &str = "+4930123456";
const LIMIT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Engines load whisper; one at a time keeps the timing honest on a small machine.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

fn config(records: &Path) -> Config {
    let mut config = Config::default();
    config.server.esl_listen = "127.0.0.1:0".parse().unwrap();
    config.server.http_addr = "127.0.0.1:0".parse().unwrap();
    config.server.cost_log_dir = records.to_owned();
    config.server.drain_secs = 5;
    config.auth.hs256_secret = Some(Secret::new(SECRET));
    config
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token_with(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn token() -> String {
    token_with(
        SECRET,
        serde_json::json!({ "jti": uuid::Uuid::new_v4().to_string(), "exp": now() + 300 }),
    )
}

fn url(engine: &Running) -> String {
    format!("ws://{}/v1/stream", engine.http_addr)
}

async fn connect(url: &str, token: Option<&str>) -> Result<Ws, WsError> {
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status and body of a refused upgrade.
async fn refused(url: &str, token: Option<&str>) -> (u16, String) {
    match connect(url, token).await {
        Err(WsError::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("not an HTTP refusal: {e}"),
        Ok(_) => panic!("admitted"),
    }
}

fn metric(engine: &Running, series: &str) -> f64 {
    engine
        .services
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn rejected(engine: &Running, reason: &str) -> f64 {
    metric(
        engine,
        &format!(r#"tom_stream_rejected_total{{reason="{reason}"}}"#),
    )
}

async fn start_stream(ws: &mut Ws, rate: u32) -> serde_json::Value {
    ws.send(Message::text(
        serde_json::json!({"type": "start", "rate": rate, "caller": CALLER}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("started in time")
        {
            Some(Ok(Message::Text(text))) => {
                let event: serde_json::Value = serde_json::from_str(&text).unwrap();
                if event["type"] == "started" {
                    return event;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("stream ended before started: {other:?}"),
        }
    }
}

/// Reads until the close frame; returns the events and its close code.
async fn until_close(ws: &mut Ws) -> (Vec<serde_json::Value>, Option<CloseCode>) {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Text(text))) => events.push(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => return (events, frame.map(|f| f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (events, None),
        }
    }
}

fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn question() -> Vec<i16> {
    let voice = engine::backend::local::tts::PiperVoice::load(
        &engine::models::models_dir(),
        engine::backend::local::tts::DEFAULT_VOICE_ID,
    )
    .expect("Piper voice fetched (scripts/fetch-models.sh)");
    engine::bench::phone_question(&voice).expect("question")
}

fn records(dir: &Path, prefix: &str) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_question_is_answered_with_events_audio_and_records() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = start(config(dir.path())).await.expect("engine");
    let ws = connect(&url(&engine), Some(&token()))
        .await
        .expect("admitted");
    let (mut sink, mut stream) = ws.split();
    sink.send(Message::text(
        serde_json::json!({"type": "start", "rate": 8000, "caller": CALLER, "did": "9999"})
            .to_string(),
    ))
    .await
    .unwrap();

    // The caller: 4 s of silence while the greeting plays, the question, then silence,
    // in real time; the listener records events and reply audio with arrival times.
    let question = question();
    let listener = tokio::spawn(async move {
        let mut events: Vec<(Instant, serde_json::Value)> = Vec::new();
        let mut audio: Vec<(Instant, Vec<u8>)> = Vec::new();
        while let Ok(Some(message)) = tokio::time::timeout(LIMIT, stream.next()).await {
            match message {
                Ok(Message::Text(text)) => {
                    events.push((Instant::now(), serde_json::from_str(&text).unwrap()))
                }
                Ok(Message::Binary(frame)) => audio.push((Instant::now(), frame.to_vec())),
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        (events, audio)
    });
    let silence = vec![0i16; 160];
    let mut frames: Vec<&[i16]> = vec![&silence[..]; 200];
    let spoken_at_frame = frames.len();
    frames.extend(question.chunks(160));
    frames.extend(std::iter::repeat_n(&silence[..], 250));
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut question_end = Instant::now();
    for (n, frame) in frames.iter().enumerate() {
        ticks.tick().await;
        sink.send(Message::binary(pcm_bytes(frame))).await.unwrap();
        if n == spoken_at_frame + question.len() / 160 {
            question_end = Instant::now();
        }
    }
    sink.send(Message::text(r#"{"type":"stop"}"#))
        .await
        .unwrap();
    let (events, audio) = listener.await.unwrap();
    engine.shutdown().await.expect("shutdown");

    let of = |kind: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e["type"] == kind)
            .collect()
    };
    let started = of("started");
    assert_eq!(started.len(), 1, "{events:?}");
    assert_eq!(started[0]["backend"], "local");
    assert_eq!(started[0]["rate"], 8000);
    assert!(
        audio.iter().all(|(_, f)| f.len() == 320),
        "20 ms frames at 8 kHz"
    );
    assert!(
        audio.iter().any(|(at, _)| *at < question_end),
        "no greeting before the question"
    );
    assert!(
        audio.iter().any(|(at, _)| *at > question_end),
        "no reply audio after the question"
    );
    assert!(
        of("transcript").iter().any(|e| e["role"] == "caller"
            && e["text"].as_str().unwrap().to_lowercase().contains("table")),
        "{events:?}"
    );
    assert!(of("transcript").iter().any(|e| e["role"] == "agent"));
    let marks: Vec<&str> = of("mark")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        marks.contains(&"first_token") && marks.contains(&"first_audio"),
        "{marks:?}"
    );
    assert_eq!(of("turn_end").len(), 1, "{events:?}");
    assert_eq!(
        of("end").last().map(|e| e["outcome"].clone()),
        Some("caller_hangup".into())
    );

    let costs = records(dir.path(), "costs_");
    let calls = records(dir.path(), "calls_");
    let call_id = started[0]["call_id"].as_str().unwrap();
    assert!(costs.contains(call_id), "{costs}");
    let call: serde_json::Value = serde_json::from_str(calls.trim()).unwrap();
    assert_eq!(call["call_id"], call_id);
    assert_eq!(call["source"], "stream");
    assert_eq!(call["did"], "9999");
    for text in [&costs, &calls] {
        assert!(
            !text.contains(CALLER.trim_start_matches('+')),
            "caller number in a record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_replays_are_refused_with_a_short_code() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = start(config(dir.path())).await.expect("engine");
    let url = url(&engine);
    let jti = || uuid::Uuid::new_v4().to_string();

    assert_eq!(
        refused(&url, None).await,
        (401, r#"{"error":"unauthorized"}"#.to_owned())
    );
    let wrong_key = token_with(
        "another-secret-that-is-long-enough-too",
        serde_json::json!({"jti": jti(), "exp": now() + 300}),
    );
    assert_eq!(refused(&url, Some(&wrong_key)).await.0, 401);
    let expired = token_with(
        SECRET,
        serde_json::json!({"jti": jti(), "exp": now() - 120}),
    );
    assert_eq!(refused(&url, Some(&expired)).await.0, 401);
    let early = token_with(
        SECRET,
        serde_json::json!({"jti": jti(), "exp": now() + 600, "nbf": now() + 300}),
    );
    assert_eq!(refused(&url, Some(&early)).await.0, 401);
    let unsigned = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
        base64_url(&serde_json::json!({"jti": jti(), "exp": now() + 300}).to_string())
    );
    assert_eq!(refused(&url, Some(&unsigned)).await.0, 401);

    // A good token works once, in the header or the query; its replay is refused.
    let once = token();
    let mut ws = connect(&format!("{url}?token={once}"), None)
        .await
        .expect("admitted by ?token=");
    start_stream(&mut ws, 16_000).await;
    ws.send(Message::text(r#"{"type":"stop"}"#)).await.unwrap();
    let (events, code) = until_close(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Normal), "{events:?}");
    assert_eq!(refused(&url, Some(&once)).await.0, 401);

    for reason in [
        "missing_token",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "replayed",
    ] {
        assert_eq!(rejected(&engine, reason), 1.0, "{reason}");
    }
    assert!(rejected(&engine, "wrong_alg") + rejected(&engine, "malformed") >= 1.0);
    engine.shutdown().await.expect("shutdown");
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_close_with_a_code_and_an_error_event() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = start(config(dir.path())).await.expect("engine");
    let url = url(&engine);

    // A start with a rate we do not speak.
    let mut ws = connect(&url, Some(&token())).await.unwrap();
    ws.send(Message::text(r#"{"type":"start","rate":44100}"#))
        .await
        .unwrap();
    let (events, code) = until_close(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Policy));
    assert_eq!(
        events.last().map(|e| e["code"].clone()),
        Some("bad_start".into())
    );

    // Audio that is not whole samples.
    let mut ws = connect(&url, Some(&token())).await.unwrap();
    start_stream(&mut ws, 8000).await;
    ws.send(Message::binary(vec![0u8; 321])).await.unwrap();
    let (events, code) = until_close(&mut ws).await;
    assert_eq!(code, Some(CloseCode::Policy));
    assert!(
        events.iter().any(|e| e["code"] == "bad_audio"),
        "{events:?}"
    );

    // A message over the size limit.
    let mut ws = connect(&url, Some(&token())).await.unwrap();
    start_stream(&mut ws, 8000).await;
    let _ = ws.send(Message::binary(vec![0u8; 128 * 1024])).await;
    let (_, code) = until_close(&mut ws).await;
    assert!(
        matches!(code, Some(CloseCode::Size) | None),
        "closed with {code:?}"
    );
    assert_eq!(rejected(&engine, "too_big"), 1.0);
    assert_eq!(rejected(&engine, "bad_start"), 1.0);
    assert_eq!(rejected(&engine, "protocol"), 1.0);
    engine.shutdown().await.expect("shutdown");
}

/// Sends 10 ms audio messages at `per_second` for up to `seconds`; returns when the
/// engine closed the stream (with its code), or `None` if it stayed open.
async fn flood(
    url: &str,
    per_second: u64,
    seconds: u64,
) -> Option<(Option<CloseCode>, Vec<serde_json::Value>)> {
    let mut ws = connect(url, Some(&token())).await.unwrap();
    start_stream(&mut ws, 8000).await;
    let (mut sink, mut stream) = ws.split();
    let frame = pcm_bytes(&[0i16; 80]);
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
    let mut events = Vec::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        tokio::select! {
            _ = ticks.tick() => {
                if sink.send(Message::binary(frame.clone())).await.is_err() {
                    // Closed under us: the close frame is still to be read.
                    while let Ok(Some(message)) = tokio::time::timeout(LIMIT, stream.next()).await {
                        match message {
                            Ok(Message::Text(text)) => events.push(serde_json::from_str(&text).unwrap()),
                            Ok(Message::Close(frame)) => return Some((frame.map(|f| f.code), events)),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    return Some((None, events));
                }
            }
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => events.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(frame))) => return Some((frame.map(|f| f.code), events)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Some((None, events)),
            }
        }
    }
    let _ = sink.send(Message::text(r#"{"type":"stop"}"#)).await;
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_flood_is_closed_and_a_normal_rate_is_not() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = start(config(dir.path())).await.expect("engine");
    let url = url(&engine);
    assert!(
        flood(&url, 100, 2).await.is_none(),
        "100 messages/s were closed (the limit is 120)"
    );
    let (code, events) = flood(&url, 200, 4).await.expect("200 messages/s closed");
    assert_eq!(code, Some(CloseCode::Policy));
    assert!(
        events.iter().any(|e| e["code"] == "rate_limited"),
        "{events:?}"
    );
    assert_eq!(rejected(&engine, "rate_limited"), 1.0);
    engine.shutdown().await.expect("shutdown");
}

/// At `max_calls`, a new stream is refused at the upgrade with 503 `busy`, before its
/// token is checked (so a retry elsewhere can use the same token); the live one goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_max_calls_is_refused_busy() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.server.max_calls = 1;
    let engine = start(config).await.expect("engine");
    let url = url(&engine);
    let mut live = connect(&url, Some(&token())).await.unwrap();
    start_stream(&mut live, 8000).await;
    assert_eq!(
        refused(&url, Some(&token())).await,
        (503, r#"{"error":"busy"}"#.to_owned())
    );
    assert_eq!(rejected(&engine, "busy"), 1.0);
    assert_eq!(
        rejected(&engine, "replayed") + rejected(&engine, "bad_signature"),
        0.0,
        "the refused token was not checked"
    );
    live.send(Message::text(r#"{"type":"stop"}"#))
        .await
        .unwrap();
    let (_, code) = until_close(&mut live).await;
    assert_eq!(
        code,
        Some(CloseCode::Normal),
        "the live stream ended as asked"
    );
    engine.shutdown().await.expect("shutdown");
}
