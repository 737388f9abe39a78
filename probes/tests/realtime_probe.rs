//! `realtime-probe` end to end against tiny fake engines written here: a `/v1/stream`
//! WebSocket server (axum) that checks the bearer token, greets, endpoints the caller
//! and answers after a set delay with marks and tone frames; and an ESL outbound engine
//! (esl-bridge) that does the same over unicast, for `--via-esl`. Exit codes 0/1/2 come
//! from the fakes' delays, 3 from a refused connection, a 401 and a silent engine, 4
//! from a wrong backend. Loopback only; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header::AUTHORIZATION, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use engine::pii::NumberHasher;
use esl_bridge::media::{free_udp_port, MediaFormat as LegFormat, UnicastConfig, UnicastLeg};
use esl_bridge::outbound::{OutboundConfig, OutboundServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TOKEN: &str = "probe-test-token";
/// A probe run in these tests takes one or two seconds; this only stops a hang.
const LIMIT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
enum FakeAuth {
    Bearer(&'static str),
    Hs256(&'static str),
}

/// How the fake engine behaves.
#[derive(Debug, Clone)]
struct FakeConfig {
    auth: FakeAuth,
    backend: &'static str,
    greeting_ms: u64,
    /// Caller silence after voiced audio that ends the turn.
    endpoint_ms: u64,
    /// End of speech → first_token mark.
    token_ms: u64,
    /// End of speech → first reply audio (and the first_audio mark).
    reply_ms: u64,
    reply_len_ms: u64,
    /// Never reply (to test the answer timeout).
    mute: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            auth: FakeAuth::Bearer(TOKEN),
            backend: "local",
            greeting_ms: 200,
            endpoint_ms: 100,
            token_ms: 0,
            reply_ms: 0,
            reply_len_ms: 300,
            mute: false,
        }
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
struct Seen {
    starts: Vec<Value>,
    stops: usize,
    jtis: Vec<String>,
    open: usize,
    max_open: usize,
    /// Arrival instants of the caller's frames, per connection.
    frames: Vec<Vec<Instant>>,
    /// End of speech → the first reply frame sent, per turn.
    replies: Vec<Duration>,
}

#[derive(Clone)]
struct Fake {
    config: FakeConfig,
    seen: Arc<Mutex<Seen>>,
}

fn tone_frame(rate: u32, n: usize) -> Vec<i16> {
    let per = (rate / 50) as usize;
    (0..per)
        .map(|i| {
            let t = (n * per + i) as f64 / f64::from(rate);
            (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect()
}

fn rms(samples: &[i16]) -> f64 {
    probes::probe::wav::rms(samples)
}

/// The fake's endpointer and reply schedule, the same for both transports.
#[derive(Debug)]
struct Brain {
    config: FakeConfig,
    voiced: bool,
    silent_frames: u64,
    eos: Option<Instant>,
    token_sent: bool,
    reply_sent: bool,
}

enum Act {
    Token(f64),
    Reply(f64),
}

impl Brain {
    fn new(config: FakeConfig) -> Self {
        Self {
            config,
            voiced: false,
            silent_frames: 0,
            eos: None,
            token_sent: false,
            reply_sent: false,
        }
    }

    fn hear(&mut self, level: f64, now: Instant) {
        if level > 500.0 {
            self.voiced = true;
            self.silent_frames = 0;
        } else if self.voiced {
            self.silent_frames += 1;
            if self.silent_frames * 20 >= self.config.endpoint_ms && !self.config.mute {
                self.voiced = false;
                self.eos = Some(now);
                self.token_sent = false;
                self.reply_sent = false;
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        let eos = self.eos?;
        if !self.token_sent {
            Some(eos + Duration::from_millis(self.config.token_ms))
        } else if !self.reply_sent {
            Some(eos + Duration::from_millis(self.config.reply_ms))
        } else {
            None
        }
    }

    fn act(&mut self, now: Instant) -> Option<Act> {
        let eos = self.eos?;
        let ms = (now - eos).as_secs_f64() * 1000.0;
        if !self.token_sent {
            self.token_sent = true;
            return Some(Act::Token(ms));
        }
        if !self.reply_sent {
            self.reply_sent = true;
            self.eos = None;
            return Some(Act::Reply(ms));
        }
        None
    }
}

async fn authorize(fake: &Fake, headers: &HeaderMap) -> bool {
    let Some(bearer) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    match fake.config.auth {
        FakeAuth::Bearer(token) => bearer == token,
        FakeAuth::Hs256(secret) => {
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "jti"]);
            let Ok(data) = jsonwebtoken::decode::<Value>(
                bearer,
                &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
                &validation,
            ) else {
                return false;
            };
            let jti = data.claims["jti"].as_str().unwrap_or_default().to_owned();
            let mut seen = fake.seen.lock().unwrap();
            if jti.is_empty() || seen.jtis.contains(&jti) {
                return false; // a replay
            }
            seen.jtis.push(jti);
            true
        }
    }
}

async fn stream(State(fake): State<Fake>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    if !authorize(&fake, &headers).await {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized"})),
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| serve(socket, fake))
}

async fn serve(socket: WebSocket, fake: Fake) {
    let (mut tx, mut rx) = socket.split();
    let Some(Ok(Message::Text(start))) = rx.next().await else {
        return;
    };
    let start: Value = serde_json::from_str(&start).unwrap();
    let rate = start["rate"].as_u64().unwrap() as u32;
    let conn = {
        let mut seen = fake.seen.lock().unwrap();
        seen.starts.push(start);
        seen.open += 1;
        seen.max_open = seen.max_open.max(seen.open);
        seen.frames.push(Vec::new());
        seen.frames.len() - 1
    };
    let send = |v: Value| Message::Text(v.to_string().into());
    let backend = fake.config.backend;
    let _ = tx
        .send(send(json!({"type": "started", "call_id": format!("c{conn}"), "backend": backend, "rate": rate})))
        .await;
    let mut brain = Brain::new(fake.config.clone());
    let mut speak_left = fake.config.greeting_ms / 20;
    let mut spoken = 0usize;
    let mut reply_eos: Option<Instant> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    loop {
        let due = brain.next_due();
        tokio::select! {
            message = rx.next() => match message {
                Some(Ok(Message::Binary(audio))) => {
                    let now = Instant::now();
                    fake.seen.lock().unwrap().frames[conn].push(now);
                    let samples: Vec<i16> = audio
                        .chunks_exact(2)
                        .map(|p| i16::from_le_bytes([p[0], p[1]]))
                        .collect();
                    brain.hear(rms(&samples), now);
                }
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["type"] == "stop" {
                        fake.seen.lock().unwrap().stops += 1;
                        let _ = tx.send(send(json!({"type": "end", "outcome": "caller_hangup"}))).await;
                        let _ = tx.close().await;
                        break;
                    }
                }
                Some(Ok(_)) => {}
                other => {
                    eprintln!("fake: connection {conn} ended without stop: {other:?}");
                    break;
                }
            },
            () = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => {
                let now = Instant::now();
                match brain.act(now) {
                    Some(Act::Token(ms)) => {
                        let _ = tx.send(send(json!({"type": "mark", "name": "first_token", "ms": ms, "backend": backend}))).await;
                    }
                    Some(Act::Reply(ms)) => {
                        let _ = tx.send(send(json!({"type": "mark", "name": "first_audio", "ms": ms, "backend": backend}))).await;
                        speak_left = fake.config.reply_len_ms / 20;
                        reply_eos = Some(now - Duration::from_secs_f64(ms / 1000.0));
                    }
                    None => {}
                }
            }
            _ = ticker.tick() => {
                if speak_left > 0 {
                    let frame: Vec<u8> = tone_frame(rate, spoken).iter().flat_map(|s| s.to_le_bytes()).collect();
                    if tx.send(Message::Binary(frame.into())).await.is_err() {
                        break;
                    }
                    if let Some(eos) = reply_eos.take() {
                        fake.seen.lock().unwrap().replies.push(eos.elapsed());
                    }
                    spoken += 1;
                    speak_left -= 1;
                }
            }
        }
    }
    fake.seen.lock().unwrap().open -= 1;
}

async fn start_fake(config: FakeConfig) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/v1/stream", get(stream))
        .with_state(Fake {
            config,
            seen: seen.clone(),
        });
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("ws://{addr}/v1/stream"), seen)
}

/// A short question: 400 ms of tone, then 100 ms of silence, at 16 kHz.
fn short_wav(dir: &Path) -> PathBuf {
    let path = dir.join("q.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for n in 0..20 {
        for s in tone_frame(16_000, n) {
            w.write_sample(s).unwrap();
        }
    }
    for _ in 0..1600 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    path
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with the probe's environment variables cleared.
async fn probe(args: &[&str]) -> Outcome {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_realtime-probe"));
    command.args(args).kill_on_drop(true);
    for var in [
        "TOM_PROBE_TOKEN",
        "TOM_JWT_HS256_SECRET",
        "TOM_JWT_AUDIENCE",
        "TOM_JWT_ISSUER",
        "TOM_FS_PASSWORD",
        "TOM_PII_SALT",
    ] {
        command.env_remove(var);
    }
    let out = tokio::time::timeout(LIMIT, command.output())
        .await
        .expect("the probe finishes")
        .expect("the probe runs");
    let outcome = Outcome {
        code: out.status.code().expect("an exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "probe {args:?} → {}\nstdout: {}stderr: {}",
        outcome.code, outcome.stdout, outcome.stderr
    );
    outcome
}

/// The common arguments of a fast run against the fake.
fn fast<'a>(url: &'a str, wav: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--target",
        url,
        "--token",
        TOKEN,
        "--wav",
        wav.to_str().unwrap(),
        "--greeting-quiet-ms",
        "200",
    ];
    args.extend_from_slice(extra);
    args
}

/// Waits (bounded) until the fake has closed every connection: the probe process may
/// exit before the fake's tasks have handled its last `stop`.
async fn settled(seen: &Arc<Mutex<Seen>>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().open > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_fast_engine_exits_0_and_the_json_has_every_run() {
    let (url, seen) = start_fake(FakeConfig {
        token_ms: 30,
        reply_ms: 60,
        ..FakeConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let json_path = dir.path().join("out.json");
    let json_arg = json_path.to_str().unwrap();
    let out = probe(&fast(
        &url,
        &wav,
        &[
            "--runs",
            "3",
            "--warn-ms",
            "1500",
            "--fail-ms",
            "3000",
            "--json",
            json_arg,
            "--pii-salt",
            "pepper",
        ],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("realtime-probe: 3/3 runs, e2e_ms p50 "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(", backend local → exit 0 (p95 e2e_ms "),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 1);
    assert_eq!(
        out.stderr.matches("run ").count(),
        3,
        "a progress line per run"
    );

    let report = read_json(&json_path);
    assert_eq!(report["tool"], "realtime-probe");
    assert_eq!(report["target"]["kind"], "stream");
    assert_eq!(report["rate"], 16_000);
    assert_eq!(report["verdict"]["exit_code"], 0);
    assert_eq!(report["summary"]["ok"], 3);
    assert_eq!(report["summary"]["backends"]["local"], 3);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run["index"], i + 1);
        assert!(run["started_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(run["error"], Value::Null);
        assert_eq!(run["backend"], "local");
        let e2e = run["e2e_ms"].as_f64().unwrap();
        // At least the fake's endpointing and reply delay.
        assert!(e2e >= 150.0, "{e2e}");
        assert!(run["first_token_ms"].as_f64().unwrap() >= 30.0);
        assert!(run["first_audio_ms"].as_f64().unwrap() >= 60.0);
        assert!(run["greeting_ms"].as_f64().unwrap() > 100.0);
    }
    // The caller number went in the start message only; the report has its hash.
    let hash = NumberHasher::new("pepper").hash("+15550100");
    assert_eq!(report["caller_hash"], hash);
    let text = std::fs::read_to_string(&json_path).unwrap();
    for output in [&text, &out.stdout, &out.stderr] {
        assert!(!output.contains("5550100"), "the caller number leaked");
    }
    settled(&seen).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.starts.len(), 3);
    for start in &seen.starts {
        assert_eq!(start["type"], "start");
        assert_eq!(start["rate"], 16_000);
        assert_eq!(start["encoding"], "pcm16");
        assert_eq!(start["caller"], "+15550100");
    }
    assert_eq!(seen.stops, 3, "every run says stop");
    assert_eq!(seen.max_open, 1, "one call at a time by default");
}

#[tokio::test]
async fn a_slower_engine_exits_1_then_2() {
    let (url, _) = start_fake(FakeConfig {
        token_ms: 100,
        reply_ms: 400,
        ..FakeConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let json_path = dir.path().join("out.json");
    let json_arg = json_path.to_str().unwrap();
    // e2e is at least endpointing (100) + reply delay (400).
    let warn = probe(&fast(
        &url,
        &wav,
        &[
            "--runs",
            "2",
            "--warn-ms",
            "300",
            "--fail-ms",
            "5000",
            "--json",
            json_arg,
        ],
    ))
    .await;
    assert_eq!(warn.code, 1, "{}", warn.stderr);
    assert!(
        warn.stdout.contains("→ exit 1 (p95 e2e_ms "),
        "{}",
        warn.stdout
    );
    assert!(warn.stdout.contains(" ≥ 300)"), "{}", warn.stdout);
    let report = read_json(&json_path);
    for run in report["runs"].as_array().unwrap() {
        let e2e = run["e2e_ms"].as_f64().unwrap();
        assert!(e2e >= 500.0, "{e2e}");
        let first_audio = run["first_audio_ms"].as_f64().unwrap();
        assert!(
            (400.0..e2e).contains(&first_audio),
            "{first_audio} vs {e2e}"
        );
    }

    let fail = probe(&fast(
        &url,
        &wav,
        &["--runs", "1", "--warn-ms", "100", "--fail-ms", "300"],
    ))
    .await;
    assert_eq!(fail.code, 2, "{}", fail.stderr);
    assert!(
        fail.stdout.contains("→ exit 2 (p95 e2e_ms "),
        "{}",
        fail.stdout
    );

    // Judged on the engine's first_audio mark instead: 400 ms, between 300 and 5000.
    let marks = probe(&fast(
        &url,
        &wav,
        &[
            "--runs",
            "1",
            "--judge-metric",
            "first_audio_ms",
            "--judge-stat",
            "max",
            "--warn-ms",
            "300",
            "--fail-ms",
            "5000",
        ],
    ))
    .await;
    assert_eq!(marks.code, 1, "{}", marks.stderr);
    assert!(
        marks.stdout.contains("(max first_audio_ms "),
        "{}",
        marks.stdout
    );
}

#[tokio::test]
async fn a_refused_connection_exits_3() {
    let listener = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("ws://{addr}/v1/stream");
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let out = probe(&fast(&url, &wav, &["--runs", "2"])).await;
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
    assert!(out.stdout.contains("0/2 runs (2 failed)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("→ exit 3 (no run measured, 2 failed)"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_rejected_token_exits_3_and_jwts_are_fresh_per_run() {
    let (url, seen) = start_fake(FakeConfig {
        auth: FakeAuth::Hs256("hs-secret"),
        ..FakeConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let wav_arg = wav.to_str().unwrap();
    // A fixed token is not a valid JWT: 401.
    let out = probe(&fast(&url, &wav, &["--runs", "1"])).await;
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("HTTP 401"), "{}", out.stderr);
    assert!(out.stderr.contains("unauthorized"), "{}", out.stderr);
    // The wrong secret: 401.
    let args = [
        "--target",
        &url,
        "--wav",
        wav_arg,
        "--greeting-quiet-ms",
        "200",
    ];
    let wrong = probe(&[&args[..], &["--jwt-secret", "nope", "--runs", "1"]].concat()).await;
    assert_eq!(wrong.code, 3);
    // The right one: a fresh token (jti) per run, so no run is a replay.
    let right = probe(
        &[
            &args[..],
            &[
                "--jwt-secret",
                "hs-secret",
                "--runs",
                "2",
                "--warn-ms",
                "2000",
                "--fail-ms",
                "4000",
            ],
        ]
        .concat(),
    )
    .await;
    assert_eq!(right.code, 0, "{}", right.stderr);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.jtis.len(), 2);
    assert_ne!(seen.jtis[0], seen.jtis[1]);
}

#[tokio::test]
async fn the_wrong_backend_exits_4() {
    let (url, _) = start_fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let out = probe(&fast(
        &url,
        &wav,
        &["--runs", "1", "--expect-backend", "provider"],
    ))
    .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("expected backend provider, but runs were answered 1 by local"),
        "{}",
        out.stderr
    );
    let ok = probe(&fast(
        &url,
        &wav,
        &[
            "--runs",
            "1",
            "--expect-backend",
            "local",
            "--warn-ms",
            "2000",
            "--fail-ms",
            "4000",
        ],
    ))
    .await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

#[tokio::test]
async fn no_answer_is_a_failed_run_unless_allowed() {
    let (url, _) = start_fake(FakeConfig {
        mute: true,
        ..FakeConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let out = probe(&fast(
        &url,
        &wav,
        &["--runs", "1", "--answer-timeout-ms", "300"],
    ))
    .await;
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("no reply audio within 300 ms"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn concurrent_runs_and_real_time_pacing() {
    let (url, seen) = start_fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let out = probe(&fast(
        &url,
        &wav,
        &[
            "--runs",
            "4",
            "--concurrency",
            "2",
            "--warn-ms",
            "2000",
            "--fail-ms",
            "4000",
            "-q",
        ],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("run 1/4"), "-q: no progress lines");
    settled(&seen).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.starts.len(), 4);
    assert_eq!(seen.max_open, 2);
    // Frames arrive in real time: never ahead of a 20 ms schedule (a burst would be), and
    // about 50 per second overall.
    for frames in &seen.frames {
        let first = frames[0];
        for (i, at) in frames.iter().enumerate() {
            let ahead = Duration::from_millis(20) * (i as u32).saturating_sub(3);
            assert!(
                *at - first >= ahead,
                "frame {i} came early: {:?}",
                *at - first
            );
        }
        let span = (*frames.last().unwrap() - first).as_secs_f64();
        let rate = (frames.len() - 1) as f64 / span;
        assert!((40.0..=52.0).contains(&rate), "{rate} frames/s");
    }
}

#[tokio::test]
async fn the_bundled_question_is_asked_in_real_time() {
    let (url, seen) = start_fake(FakeConfig {
        reply_ms: 50,
        ..FakeConfig::default()
    })
    .await;
    let out = probe(&[
        "--target",
        &url,
        "--token",
        TOKEN,
        "--runs",
        "1",
        "--rate",
        "8000",
        "--greeting-quiet-ms",
        "200",
        "--warn-ms",
        "2000",
        "--fail-ms",
        "4000",
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    settled(&seen).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.starts[0]["rate"], 8_000);
    // The question lasts 3.7 s; with the greeting and the reply, the line was open longer.
    let frames = &seen.frames[0];
    assert!(frames.len() > 3700 / 20, "{} frames", frames.len());
}

#[tokio::test]
async fn bad_command_lines_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let wav_arg = wav.to_str().unwrap();
    let not_wav = dir.path().join("x.wav");
    std::fs::write(&not_wav, b"not a wav").unwrap();
    for args in [
        vec!["--runs", "1"],
        vec!["--target", "ws://127.0.0.1:1/v1/stream"],
        vec!["--target", "http://127.0.0.1:1/v1/stream", "--runs", "1"],
        vec![
            "--target",
            "ws://127.0.0.1:1/v1/stream",
            "--runs",
            "1",
            "--rate",
            "44100",
        ],
        vec![
            "--target",
            "ws://127.0.0.1:1/v1/stream",
            "--runs",
            "1",
            "--warn-ms",
            "900",
            "--fail-ms",
            "800",
        ],
        vec![
            "--target",
            "ws://127.0.0.1:1/v1/stream",
            "--runs",
            "1",
            "--wav",
            not_wav.to_str().unwrap(),
        ],
        vec![
            "--target",
            "ws://127.0.0.1:1/v1/stream",
            "--runs",
            "1",
            "--token",
            "a",
            "--jwt-secret",
            "b",
        ],
        vec![
            "--via-esl",
            "127.0.0.1:1",
            "--runs",
            "1",
            "--expect-backend",
            "local",
            "--wav",
            wav_arg,
        ],
        vec![
            "--via-esl",
            "127.0.0.1:1",
            "--runs",
            "1",
            "--judge-metric",
            "first_token_ms",
        ],
        vec!["--via-esl", "127.0.0.1:1", "--runs", "1", "--rate", "24000"],
        vec!["--freeswitch", "127.0.0.1:8021", "--runs", "1"],
        vec![
            "--freeswitch",
            "127.0.0.1:8021",
            "--extension",
            "loopback/1 &echo",
            "--runs",
            "1",
        ],
        vec![
            "--target",
            "ws://127.0.0.1:1/v1/stream",
            "--runs",
            "1",
            "--caller",
            "+1 555 0100",
        ],
        vec![
            "--target",
            "ws://127.0.0.1:1/v1/stream",
            "--runs",
            "1",
            "--json",
            "/nonexistent/dir/x.json",
        ],
    ] {
        let out = probe(&args).await;
        assert_eq!(out.code, 64, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("realtime-probe") || out.stderr.contains("error"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("5550100"));
    }
    let help = probe(&["--help"]).await;
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("--expect-backend"));
}

// ---------------------------------------------------------------------------------------
// --via-esl: an ESL outbound engine built from esl-bridge (the way `tom serve` attaches
// to FreeSWITCH), with the same greeting and endpointing as the WebSocket fake.

async fn start_esl_fake(config: FakeConfig) -> SocketAddr {
    let server = OutboundServer::bind(OutboundConfig {
        listen: SocketAddr::new(LOOPBACK, 0),
        ..OutboundConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let mut calls = server.serve();
    tokio::spawn(async move {
        while let Some(mut call) = calls.next().await {
            let config = config.clone();
            tokio::spawn(async move {
                let rate = call.channel().read_rate;
                let fs_side = SocketAddr::new(LOOPBACK, free_udp_port(LOOPBACK).unwrap());
                let leg =
                    UnicastLeg::bind(UnicastConfig::new(LegFormat::l16(rate).unwrap(), fs_side))
                        .await
                        .unwrap();
                call.answer().await.unwrap();
                call.start_unicast(leg.params()).await.unwrap();
                let (mut rx, tx) = leg.split().unwrap();
                let speak = |frames: u64, tx: &esl_bridge::media::UnicastSender| {
                    for n in 0..frames as usize {
                        let _ = tx.push_samples(&tone_frame(rate, n));
                    }
                };
                speak(config.greeting_ms / 20, &tx);
                let mut brain = Brain::new(config.clone());
                loop {
                    let due = brain.next_due();
                    tokio::select! {
                        frame = rx.recv() => {
                            let Ok(frame) = frame else { break };
                            let samples: Vec<i16> = frame.samples().map(Iterator::collect).unwrap_or_default();
                            brain.hear(rms(&samples), Instant::now());
                        }
                        () = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => {
                            if let Some(Act::Reply(_)) = brain.act(Instant::now()) {
                                speak(config.reply_len_ms / 20, &tx);
                            }
                        }
                        event = call.next_event() => {
                            if event.is_none() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn via_esl_measures_e2e_through_the_freeswitch_double() {
    let addr = start_esl_fake(FakeConfig {
        reply_ms: 300,
        ..FakeConfig::default()
    })
    .await
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let json_path = dir.path().join("esl.json");
    let out = probe(&[
        "--via-esl",
        &addr,
        "--wav",
        wav.to_str().unwrap(),
        "--rate",
        "8000",
        "--runs",
        "2",
        "--greeting-quiet-ms",
        "200",
        "--warn-ms",
        "200",
        "--fail-ms",
        "5000",
        "--json",
        json_path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains("2/2 runs"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("first_audio_ms n/a, first_token_ms n/a, backend unknown"),
        "{}",
        out.stdout
    );
    let report = read_json(&json_path);
    assert_eq!(report["target"]["kind"], "via_esl");
    for run in report["runs"].as_array().unwrap() {
        let e2e = run["e2e_ms"].as_f64().unwrap();
        assert!(e2e >= 400.0, "endpointing 100 + reply 300: {e2e}");
        assert_eq!(run["first_audio_ms"], Value::Null);
        assert_eq!(run["backend"], Value::Null);
        assert!(run["call_id"].as_str().is_some());
    }
}

#[tokio::test]
async fn via_esl_to_nothing_exits_3() {
    let listener = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = probe(&["--via-esl", &addr, "--runs", "1", "--rate", "8000"]).await;
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------
// --freeswitch: a fake FreeSWITCH inbound event socket (the replies recorded in
// esl-inbound/inbound_plain_all) whose originated "call" is the fake engine itself: after
// the probe's unicast sendmsg it streams what the caller hears from FreeSWITCH's side and
// listens to the caller.

#[derive(Debug, Default)]
struct FsSeen {
    commands: Vec<String>,
    unicast_headers: Vec<String>,
}

async fn fs_media(
    local: SocketAddr,
    remote: SocketAddr,
    config: FakeConfig,
    stop: Arc<tokio::sync::Notify>,
) {
    let socket = tokio::net::UdpSocket::bind(local).await.unwrap();
    let rate = 8_000;
    let mut brain = Brain::new(config.clone());
    let mut speak_left = config.greeting_ms / 20;
    let mut spoken = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut buf = [0u8; 2048];
    let give_up = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(give_up);
    loop {
        let due = brain.next_due();
        tokio::select! {
            () = stop.notified() => break,
            () = &mut give_up => break,
            received = socket.recv_from(&mut buf) => {
                // An ICMP error once the probe has gone: the call is over.
                let Ok((n, _)) = received else { break };
                let samples: Vec<i16> = buf[..n].chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect();
                brain.hear(rms(&samples), Instant::now());
            }
            () = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => {
                if let Some(Act::Reply(_)) = brain.act(Instant::now()) {
                    speak_left = config.reply_len_ms / 20;
                }
            }
            _ = ticker.tick() => {
                // A parked channel streams every 20 ms: the engine's voice, or silence.
                let frame = if speak_left > 0 {
                    speak_left -= 1;
                    spoken += 1;
                    tone_frame(rate, spoken)
                } else {
                    vec![0; 160]
                };
                let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
                let _ = socket.send_to(&bytes, remote).await;
            }
        }
    }
}

async fn start_fake_freeswitch(
    password: &'static str,
    config: FakeConfig,
) -> (SocketAddr, Arc<Mutex<FsSeen>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(FsSeen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = shared.clone();
            let config = config.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let reply =
                    |text: &str| format!("Content-Type: command/reply\nReply-Text: {text}\n\n");
                let api = |body: &str| {
                    format!(
                        "Content-Type: api/response\nContent-Length: {}\n\n{body}",
                        body.len()
                    )
                };
                let bye = "Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
                let stop = Arc::new(tokio::sync::Notify::new());
                write
                    .write_all(b"Content-Type: auth/request\n\n")
                    .await
                    .unwrap();
                while let Ok(Some(first)) = lines.next_line().await {
                    if first.is_empty() {
                        continue;
                    }
                    let mut headers = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.is_empty() {
                            break;
                        }
                        headers.push(line);
                    }
                    seen.lock().unwrap().commands.push(first.clone());
                    let out = if let Some(given) = first.strip_prefix("auth ") {
                        if given != password {
                            let _ = write
                                .write_all(format!("{}{bye}", reply("-ERR invalid")).as_bytes())
                                .await;
                            break;
                        }
                        reply("+OK accepted")
                    } else if let Some(names) = first.strip_prefix("event plain ") {
                        let _ = names;
                        reply("+OK event listener enabled plain")
                    } else if let Some(command) = first.strip_prefix("bgapi ") {
                        let job = "cd6cbd8c-b63e-4b8d-9e32-cb510dc79e7b";
                        let uuid = command
                            .split("origination_uuid=")
                            .nth(1)
                            .and_then(|r| r.split([',', '}']).next())
                            .unwrap_or_default()
                            .to_owned();
                        let result = format!("+OK {uuid}\n");
                        let body = format!(
                            "Event-Name: BACKGROUND_JOB\nJob-UUID: {job}\nJob-Command: originate\nContent-Length: {}\n\n{result}",
                            result.len()
                        );
                        format!(
                            "Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n\
                             Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
                            body.len()
                        )
                    } else if first.starts_with("api uuid_getvar ") {
                        api("8000")
                    } else if first.starts_with("api uuid_kill ") {
                        stop.notify_one();
                        api("+OK\n")
                    } else if first.starts_with("sendmsg ") {
                        let get = |name: &str| {
                            headers
                                .iter()
                                .find_map(|h| h.strip_prefix(&format!("{name}: ")))
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let local: SocketAddr =
                            format!("{}:{}", get("local-ip"), get("local-port"))
                                .parse()
                                .unwrap();
                        let remote: SocketAddr =
                            format!("{}:{}", get("remote-ip"), get("remote-port"))
                                .parse()
                                .unwrap();
                        seen.lock().unwrap().unicast_headers = headers.clone();
                        tokio::spawn(fs_media(local, remote, config.clone(), stop.clone()));
                        reply("+OK")
                    } else if first == "exit" {
                        let _ = write
                            .write_all(format!("{}{bye}", reply("+OK bye")).as_bytes())
                            .await;
                        break;
                    } else {
                        reply("-ERR command not found")
                    };
                    if write.write_all(out.as_bytes()).await.is_err() {
                        break;
                    }
                }
                stop.notify_one();
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn freeswitch_mode_originates_parks_and_measures_over_unicast() {
    let (addr, seen) = start_fake_freeswitch(
        "s3cret",
        FakeConfig {
            reply_ms: 300,
            ..FakeConfig::default()
        },
    )
    .await;
    let addr = addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let wav = short_wav(dir.path());
    let json_path = dir.path().join("fs.json");
    let base = [
        "--freeswitch",
        &addr,
        "--extension",
        "loopback/9999",
        "--wav",
        wav.to_str().unwrap(),
        "--runs",
        "1",
        "--greeting-quiet-ms",
        "200",
    ];
    let out = probe(
        &[
            &base[..],
            &[
                "--password",
                "s3cret",
                "--warn-ms",
                "200",
                "--fail-ms",
                "5000",
                "--json",
                json_path.to_str().unwrap(),
            ],
        ]
        .concat(),
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report = read_json(&json_path);
    assert_eq!(report["target"]["kind"], "freeswitch");
    let run = &report["runs"][0];
    let e2e = run["e2e_ms"].as_f64().unwrap();
    assert!(e2e >= 400.0, "endpointing 100 + reply 300: {e2e}");
    assert!(run["greeting_ms"].as_f64().unwrap() > 100.0);
    let uuid = run["call_id"].as_str().unwrap().to_owned();
    {
        let seen = seen.lock().unwrap();
        let originate = seen
            .commands
            .iter()
            .find(|c| c.starts_with("bgapi originate "))
            .unwrap();
        assert_eq!(
            originate,
            &format!(
                "bgapi originate {{origination_uuid={uuid},origination_caller_id_number=+15550100,\
                 origination_caller_id_name=realtime-probe}}loopback/9999 &park()"
            )
        );
        assert!(seen
            .commands
            .contains(&format!("api uuid_getvar {uuid} read_rate")));
        assert!(seen.commands.contains(&format!("sendmsg {uuid}")));
        assert!(seen.commands.contains(&format!("api uuid_kill {uuid}")));
        assert_eq!(seen.commands.last().map(String::as_str), Some("exit"));
        assert_eq!(seen.unicast_headers[0], "call-command: unicast");
        assert!(seen.unicast_headers.contains(&"transport: udp".to_owned()));
    }

    let refused = probe(&[&base[..], &["--password", "wrong"]].concat()).await;
    assert_eq!(refused.code, 3);
    assert!(
        refused
            .stderr
            .contains("FreeSWITCH refused the event socket password: -ERR invalid"),
        "{}",
        refused.stderr
    );
}
