//! provider-sim driven from outside: a raw WebSocket client speaking the engine's
//! protocol types, the admin API over HTTP, and the binary's --help. Loopback only;
//! timing assertions run under paused tokio time, and every wait is for an event, with
//! a generous timeout only as a safety net.
// The helpers below are test code too; clippy's test exemption only sees #[test] fns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use engine::backend::provider::protocol::{
    decode_audio, encode_audio, parse_server_event, ClientEvent, Dialect, ServerEvent,
    SessionRequest, WireAudio,
};
use futures_util::{SinkExt, StreamExt};
use probes::sim::{Faults, ProviderSim, RateLimitMode, ReplySource, SimConfig, SimHandle};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Safety net for a wait that should end on an event (in paused time it costs nothing).
const SAFETY: Duration = Duration::from_secs(120);

async fn sim_with(faults: Faults) -> SimHandle {
    ProviderSim::start(SimConfig {
        faults,
        reply: ReplySource::Tone { ms: 1000 },
        reply_text: "one two three four five six".into(),
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

async fn sim() -> SimHandle {
    sim_with(Faults::default()).await
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn connect(sim: &SimHandle) -> Self {
        Self::connect_with(sim, &[]).await.expect("connects")
    }

    async fn connect_with(
        sim: &SimHandle,
        headers: &[(&'static str, &str)],
    ) -> Result<Self, tungstenite::Error> {
        let mut request = format!("{}?model=gpt-realtime", sim.ws_url())
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().unwrap());
        }
        // No Nagle: a paused-time test must never wait on a kernel timer.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
        let mut client = Self { ws };
        let (_, first) = client.recv().await;
        assert!(
            matches!(first, ServerEvent::SessionCreated { .. }),
            "{first:?}"
        );
        Ok(client)
    }

    async fn send(&mut self, event: &ClientEvent) {
        self.send_text(serde_json::to_string(event).unwrap()).await;
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next server event, raw and parsed.
    async fn recv(&mut self) -> (Value, ServerEvent) {
        match self.next_message(SAFETY).await {
            Some(Ok(text)) => {
                let event = parse_server_event(&text).unwrap();
                (serde_json::from_str(&text).unwrap(), event)
            }
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next text message within `wait`: `None` when none came, `Some(Err)` when the
    /// connection ended.
    async fn next_message(&mut self, wait: Duration) -> Option<Result<String, String>> {
        loop {
            let message = timeout(wait, self.ws.next()).await.ok()?;
            return Some(match message {
                Some(Ok(Message::Text(text))) => Ok(text.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => Err(format!("{other:?}")),
            });
        }
    }

    /// Events up to and including the first that `last` accepts.
    async fn until(&mut self, last: impl Fn(&ServerEvent) -> bool) -> Vec<(Value, ServerEvent)> {
        let mut events = Vec::new();
        loop {
            let (raw, event) = self.recv().await;
            let done = last(&event);
            events.push((raw, event));
            if done {
                return events;
            }
        }
    }

    async fn setup(&mut self, dialect: Dialect, audio: WireAudio, server_vad: bool) -> Value {
        let request = SessionRequest {
            model: "gpt-realtime".into(),
            instructions: "Be brief.".into(),
            voice: "alloy".into(),
            audio,
            server_vad,
            transcription_model: Some("whisper-1".into()),
            language: Some("en".into()),
        };
        self.send(&ClientEvent::SessionUpdate {
            session: Box::new(request.settings(dialect)),
        })
        .await;
        let (raw, event) = self.recv().await;
        assert!(matches!(event, ServerEvent::SessionUpdated { .. }), "{raw}");
        raw
    }

    /// Appends `ms` of µ-law audio (a loud square wave, or silence) in 100 ms pieces.
    async fn append_pcmu(&mut self, ms: usize, loud: bool) {
        for _ in 0..ms / 100 {
            let level = if loud { 8000 } else { 0 };
            let mut bytes = Vec::new();
            engine::audio::g711::ulaw_encode_into(&[level, -level].repeat(400), &mut bytes);
            self.send(&ClientEvent::InputAudioAppend {
                audio: encode_audio(&bytes),
            })
            .await;
        }
    }
}

fn is_done(event: &ServerEvent) -> bool {
    matches!(event, ServerEvent::ResponseDone { .. })
}

fn done_of(events: &[(Value, ServerEvent)]) -> &engine::backend::provider::protocol::ResponseInfo {
    events
        .iter()
        .find_map(|(_, e)| match e {
            ServerEvent::ResponseDone { response } => Some(response),
            _ => None,
        })
        .expect("a response.done")
}

fn audio_bytes(events: &[(Value, ServerEvent)]) -> usize {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            ServerEvent::AudioDelta { delta, .. } => Some(decode_audio(delta).unwrap().len()),
            _ => None,
        })
        .sum()
}

fn types(events: &[(Value, ServerEvent)]) -> Vec<String> {
    events
        .iter()
        .map(|(raw, _)| raw["type"].as_str().unwrap().to_string())
        .collect()
}

fn assert_invalid_request(event: &ServerEvent) {
    match event {
        ServerEvent::Error { error } => assert_eq!(error.kind, "invalid_request_error"),
        other => panic!("expected an invalid_request_error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn full_pcmu_turn_streams_the_reply_with_usage() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let sim = ProviderSim::start(SimConfig {
        reply: ReplySource::Tone { ms: 1000 },
        log: Some(log.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = Client::connect(&sim).await;
    let updated = c.setup(Dialect::Ga, WireAudio::Pcmu, false).await;
    assert_eq!(
        updated["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(
        updated["session"]["audio"]["output"]["format"]["type"],
        "audio/pcmu"
    );

    c.append_pcmu(1000, true).await;
    c.send(&ClientEvent::InputAudioCommit {}).await;
    let (_, committed) = c.recv().await;
    let ServerEvent::InputCommitted {
        item_id: Some(user_item),
    } = committed
    else {
        panic!("{committed:?}");
    };
    let (_, transcript) = c.recv().await;
    assert_eq!(
        transcript,
        ServerEvent::InputTranscript {
            item_id: Some(user_item),
            transcript: "(provider-sim heard 1.0 s of audio)".into(),
        }
    );

    c.send(&ClientEvent::ResponseCreate {}).await;
    let events = c.until(is_done).await;
    let names = types(&events);
    assert_eq!(names[0], "response.created");
    assert_eq!(names[1], "response.output_item.added");
    assert!(names.contains(&"response.output_audio.delta".to_string()));
    assert!(names.contains(&"response.output_audio_transcript.delta".to_string()));
    let tail = &names[names.len() - 3..];
    assert_eq!(
        tail,
        [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.done"
        ]
    );
    let reply = sim.reply_audio().bytes(WireAudio::Pcmu).len();
    assert_eq!(reply, 8000);
    assert_eq!(audio_bytes(&events), reply);
    let deltas = events
        .iter()
        .filter(|(_, e)| matches!(e, ServerEvent::AudioDelta { .. }))
        .count();
    assert_eq!(deltas, 10, "100 ms per delta");
    let text: String = events
        .iter()
        .filter_map(|(_, e)| match e {
            ServerEvent::TranscriptDelta { delta, .. } => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, probes::sim::DEFAULT_REPLY_TEXT);
    let done = done_of(&events);
    assert_eq!(done.status, "completed");
    let usage = done.usage.expect("usage");
    assert_eq!(
        usage.output_token_details.audio_tokens, 20,
        "1 s at 50 ms/token"
    );
    assert_eq!(
        usage.input_token_details.audio_tokens, 10,
        "1 s at 100 ms/token"
    );
    assert!(usage.input_token_details.text_tokens > 0);
    assert_eq!(usage.total_tokens, usage.input_tokens + usage.output_tokens);
    let (_, limits) = c.recv().await;
    assert!(
        matches!(limits, ServerEvent::RateLimitsUpdated { ref rate_limits } if !rate_limits.is_empty())
    );

    let received = sim.received();
    let kinds: Vec<&str> = received.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds[0], "session.update");
    assert_eq!(kinds[1..11], ["input_audio_buffer.append"; 10]);
    assert_eq!(
        kinds[11..],
        ["input_audio_buffer.commit", "response.create"]
    );
    assert!(received.iter().all(|r| r.conn == 1));
    assert!(received[1..11].iter().all(|r| r.audio_bytes == Some(800)));
    let file: Vec<probes::sim::ReceivedEvent> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(file, received);
}

#[tokio::test(start_paused = true)]
async fn beta_sessions_get_beta_event_names() {
    let sim = sim().await;
    let mut c = Client::connect_with(&sim, &[("openai-beta", "realtime=v1")])
        .await
        .unwrap();
    let updated = c.setup(Dialect::Beta, WireAudio::Pcm24k, false).await;
    assert_eq!(updated["session"]["input_audio_format"], "pcm16");
    assert!(updated["session"]["turn_detection"].is_null());
    c.send(&ClientEvent::ResponseCreate {}).await;
    let events = c.until(is_done).await;
    let names = types(&events);
    for beta in [
        "response.audio.delta",
        "response.audio_transcript.delta",
        "response.audio.done",
        "response.audio_transcript.done",
    ] {
        assert!(
            names.iter().any(|n| n == beta),
            "{beta} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("output_audio")),
        "{names:?}"
    );
    assert_eq!(audio_bytes(&events), 48_000, "1 s of 24 kHz PCM16");
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_the_stream_at_once() {
    let sim = sim().await;
    let mut c = Client::connect(&sim).await;
    c.setup(Dialect::Ga, WireAudio::Pcmu, false).await;
    c.send(&ClientEvent::ResponseCreate {}).await;
    c.until(|e| matches!(e, ServerEvent::AudioDelta { .. }))
        .await;
    c.send(&ClientEvent::ResponseCancel { response_id: None })
        .await;
    let (_, done) = c.recv().await;
    let ServerEvent::ResponseDone { response } = done else {
        panic!("{done:?}");
    };
    assert_eq!(response.status, "cancelled");
    let details = response.status_details.unwrap();
    assert_eq!(details.kind.as_deref(), Some("cancelled"));
    assert_eq!(details.reason.as_deref(), Some("client_cancelled"));
    let (_, limits) = c.recv().await;
    assert!(matches!(limits, ServerEvent::RateLimitsUpdated { .. }));
    // Nothing more, however long we wait.
    assert_eq!(c.next_message(Duration::from_secs(10)).await, None);
    // A second cancel has nothing to cancel.
    c.send(&ClientEvent::ResponseCancel { response_id: None })
        .await;
    assert_invalid_request(&c.recv().await.1);
}

#[tokio::test(start_paused = true)]
async fn truncate_is_checked_against_the_audio_sent() {
    let sim = sim().await;
    let mut c = Client::connect(&sim).await;
    c.setup(Dialect::Ga, WireAudio::Pcmu, false).await;
    c.send(&ClientEvent::ResponseCreate {}).await;
    let events = c.until(is_done).await;
    let item = events
        .iter()
        .find_map(|(_, e)| match e {
            ServerEvent::OutputItemAdded { item, .. } => Some(item.id.clone()),
            _ => None,
        })
        .unwrap();
    c.recv().await; // rate_limits.updated
    let truncate = |item_id: &str, audio_end_ms| ClientEvent::ItemTruncate {
        item_id: item_id.into(),
        content_index: 0,
        audio_end_ms,
    };
    c.send(&truncate(&item, 1500)).await;
    let (_, beyond) = c.recv().await;
    assert_invalid_request(&beyond);
    c.send(&truncate(&item, 400)).await;
    let (_, within) = c.recv().await;
    assert_eq!(
        within,
        ServerEvent::ItemTruncated {
            item_id: item.clone(),
            audio_end_ms: 400
        }
    );
    c.send(&truncate("item_nobody", 1)).await;
    assert_invalid_request(&c.recv().await.1);
}

#[tokio::test(start_paused = true)]
async fn first_audio_waits_the_configured_delay() {
    let sim = sim_with(Faults {
        first_audio_ms: 1500,
        ..Faults::default()
    })
    .await;
    let mut c = Client::connect(&sim).await;
    c.setup(Dialect::Ga, WireAudio::Pcmu, false).await;
    c.send(&ClientEvent::ResponseCreate {}).await;
    let asked = Instant::now();
    let events = c
        .until(|e| {
            matches!(
                e,
                ServerEvent::AudioDelta { .. } | ServerEvent::TranscriptDelta { .. }
            )
        })
        .await;
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(waited < Duration::from_millis(1600), "{waited:?}");
    assert_eq!(
        types(&events)[..2],
        ["response.created", "response.output_item.added"]
    );
    // The rest comes paced at real time: 9 more deltas of 100 ms.
    let rest = c.until(is_done).await;
    let total = asked.elapsed();
    assert!(total >= Duration::from_millis(2400), "{total:?}");
    assert_eq!(audio_bytes(&events) + audio_bytes(&rest), 8000);
}

#[tokio::test(start_paused = true)]
async fn server_vad_commits_and_answers_by_itself() {
    let sim = sim().await;
    let mut c = Client::connect(&sim).await;
    c.setup(Dialect::Ga, WireAudio::Pcmu, true).await;
    c.append_pcmu(300, false).await;
    c.append_pcmu(800, true).await;
    c.append_pcmu(600, false).await;
    let events = c.until(is_done).await;
    let names = types(&events);
    assert_eq!(
        names[..5],
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.completed",
            "response.created",
        ]
    );
    assert!(matches!(
        events[0].1,
        ServerEvent::SpeechStarted {
            audio_start_ms: 0,
            ..
        }
    ));
    assert!(matches!(
        events[1].1,
        ServerEvent::SpeechStopped {
            audio_end_ms: 1600,
            ..
        }
    ));
    assert_eq!(done_of(&events).status, "completed");
}

#[tokio::test(start_paused = true)]
async fn malformed_events_get_errors_and_the_connection_goes_on() {
    let sim = sim().await;
    let mut c = Client::connect(&sim).await;
    for text in [
        "{not json",
        r#"{"type":"no.such.event","event_id":"evt_1"}"#,
        r#"{"type":"input_audio_buffer.append","audio":"%%%"}"#,
        r#"{"type":"conversation.item.truncate"}"#,
    ] {
        c.send_text(text.into()).await;
        assert_invalid_request(&c.recv().await.1);
    }
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_invalid_request(&c.recv().await.1);
    c.setup(Dialect::Ga, WireAudio::Pcmu, false).await;
    let kinds: Vec<String> = sim.received().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds[0], "(invalid)");
    assert_eq!(kinds[1], "no.such.event");
}

#[tokio::test]
async fn refuse_connections_drops_before_the_handshake() {
    let sim = sim_with(Faults {
        refuse_connections: true,
        ..Faults::default()
    })
    .await;
    let refused = Client::connect_with(&sim, &[]).await;
    assert!(refused.is_err());
    sim.set_faults(Faults::default()).unwrap();
    Client::connect(&sim).await;
}

fn http_status(result: Result<Client, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a connection"),
    }
}

#[tokio::test]
async fn auth_is_checked_and_can_be_rejected() {
    let sim = ProviderSim::start(SimConfig {
        api_key: Some("sk-sim-test".into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(http_status(Client::connect_with(&sim, &[]).await), 401);
    let wrong = [("authorization", "Bearer sk-wrong")];
    assert_eq!(http_status(Client::connect_with(&sim, &wrong).await), 401);
    let bearer = [("authorization", "Bearer sk-sim-test")];
    Client::connect_with(&sim, &bearer).await.unwrap();
    Client::connect_with(&sim, &[("api-key", "sk-sim-test")])
        .await
        .unwrap();
    sim.set_faults(Faults {
        reject_auth: true,
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(http_status(Client::connect_with(&sim, &bearer).await), 401);
}

#[tokio::test]
async fn rate_limit_refuses_upgrades_or_fails_responses() {
    let sim = sim_with(Faults {
        rate_limit: RateLimitMode::Http,
        ..Faults::default()
    })
    .await;
    assert_eq!(http_status(Client::connect_with(&sim, &[]).await), 429);
    sim.set_faults(Faults {
        rate_limit: RateLimitMode::Event,
        ..Faults::default()
    })
    .unwrap();
    let mut c = Client::connect(&sim).await;
    c.send(&ClientEvent::ResponseCreate {}).await;
    let events = c.until(is_done).await;
    let error = events
        .iter()
        .find_map(|(_, e)| match e {
            ServerEvent::Error { error } => Some(error),
            _ => None,
        })
        .expect("an error event");
    assert_eq!(error.code.as_deref(), Some("rate_limit_exceeded"));
    assert_eq!(done_of(&events).status, "failed");
    assert_eq!(audio_bytes(&events), 0);
}

#[tokio::test(start_paused = true)]
async fn close_after_ms_drops_the_socket_mid_response() {
    let sim = sim_with(Faults {
        close_after_ms: Some(550),
        ..Faults::default()
    })
    .await;
    let mut c = Client::connect(&sim).await;
    c.setup(Dialect::Ga, WireAudio::Pcmu, false).await;
    c.send(&ClientEvent::ResponseCreate {}).await;
    let mut deltas = 0;
    loop {
        match c.next_message(SAFETY).await {
            Some(Ok(text)) => {
                let event = parse_server_event(&text).unwrap();
                assert!(!is_done(&event), "the response must not finish");
                deltas += usize::from(matches!(event, ServerEvent::AudioDelta { .. }));
            }
            Some(Err(_)) => break,
            None => panic!("the connection stayed open"),
        }
    }
    assert_eq!(deltas, 3, "deltas at 300, 400 and 500 ms; closed at 550");
}

#[tokio::test(start_paused = true)]
async fn stall_never_answers_but_the_connection_lives() {
    let sim = sim_with(Faults {
        stall: true,
        ..Faults::default()
    })
    .await;
    let mut c = Client::connect(&sim).await;
    c.setup(Dialect::Ga, WireAudio::Pcmu, false).await;
    c.append_pcmu(500, true).await;
    c.send(&ClientEvent::InputAudioCommit {}).await;
    c.send(&ClientEvent::ResponseCreate {}).await;
    assert_eq!(c.next_message(Duration::from_secs(30)).await, None);
    c.setup(Dialect::Ga, WireAudio::Pcmu, false).await;
}

#[tokio::test(start_paused = true)]
async fn error_rate_one_fails_every_response() {
    let sim = sim_with(Faults {
        error_rate: 1.0,
        seed: Some(42),
        ..Faults::default()
    })
    .await;
    let mut c = Client::connect(&sim).await;
    for _ in 0..3 {
        c.send(&ClientEvent::ResponseCreate {}).await;
        let events = c.until(is_done).await;
        let error = events.iter().find_map(|(_, e)| match e {
            ServerEvent::Error { error } => Some(error),
            _ => None,
        });
        assert_eq!(error.map(|e| e.kind.as_str()), Some("server_error"));
        let done = done_of(&events);
        assert_eq!(done.status, "failed");
        let details = done.status_details.as_ref().unwrap();
        assert_eq!(details.error.as_ref().unwrap().kind, "server_error");
        c.recv().await; // rate_limits.updated
    }
}

#[tokio::test]
async fn admin_api_round_trips_faults_and_refuses_bad_ones() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let faults_url = format!("{}/faults", sim.admin_url());
    let get = || async {
        let text = http
            .get(&faults_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str::<Faults>(&text).unwrap()
    };
    assert_eq!(get().await, Faults::default());

    let put = |body: &'static str| {
        let request = http.put(&faults_url).body(body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, _) = put(r#"{"first_audio_ms":1500,"rate_limit":"event","seed":7}"#).await;
    assert_eq!(status, 200);
    let expected = Faults {
        first_audio_ms: 1500,
        rate_limit: RateLimitMode::Event,
        seed: Some(7),
        ..Faults::default()
    };
    assert_eq!(get().await, expected);
    assert_eq!(sim.faults(), expected);

    for bad in [
        "{not json",
        r#"{"first_audio":1500}"#,
        r#"{"error_rate":2}"#,
        r#"{"rate_limit":"sometimes"}"#,
    ] {
        let (status, body) = put(bad).await;
        assert_eq!(status, 400, "{bad}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid faults"),
            "{body}"
        );
    }
    let (_, body) = put(r#"{"first_audio":1500}"#).await;
    assert!(body.contains("unknown field"), "{body}");
    assert_eq!(sim.faults(), expected, "a refused PUT changes nothing");

    // PUT replaces: what is not given goes back to its default.
    assert_eq!(put("{}").await.0, 200);
    assert_eq!(get().await, Faults::default());

    let mut c = Client::connect(&sim).await;
    c.send(&ClientEvent::InputAudioClear {}).await;
    c.send(&ClientEvent::ResponseCreate {}).await;
    c.recv().await;
    let received: Vec<probes::sim::ReceivedEvent> = http
        .get(format!("{}/received", sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json_text()
        .await;
    let kinds: Vec<&str> = received.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["input_audio_buffer.clear", "response.create"]);
}

/// reqwest is built without its `json` feature here (to share the engine's build).
trait JsonText {
    async fn json_text<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonText for reqwest::Response {
    async fn json_text<T: serde::de::DeserializeOwned>(self) -> T {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}

#[test]
fn help_documents_every_fault_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_provider-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let faults = serde_json::to_value(Faults::default()).unwrap();
    let names: Vec<String> = faults
        .as_object()
        .unwrap()
        .keys()
        .map(|k| format!("--{}", k.replace('_', "-")))
        .collect();
    assert_eq!(names.len(), 10);
    for flag in names.iter().map(String::as_str).chain([
        "--listen",
        "--admin",
        "--reply-wav",
        "--reply-text",
        "--log",
        "--api-key",
    ]) {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains("does NOT transcribe"));
}

#[tokio::test]
async fn shutdown_ends_connections_and_listening() {
    let sim = sim().await;
    let addr = sim.ws_addr();
    let mut c = Client::connect(&sim).await;
    sim.shutdown().await;
    assert!(matches!(c.next_message(SAFETY).await, Some(Err(_))));
    assert!(TcpStream::connect(addr).await.is_err());
}
