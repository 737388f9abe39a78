//! `realtime-probe` against the real engine (`engine::serve::start` in process) with
//! `provider-sim` as the cloud: the sim's first-audio delay is set to give each verdict
//! (exit 0 < 500 ms ≤ exit 1 < 800 ms ≤ exit 2), a refused connection exits 3, and
//! `--expect-backend` fails (exit 4) when the other backend answered. The binary runs as
//! engineers run it. Loopback only; needs the fetched models (scripts/test.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use engine::config::{Config, Secret};
use engine::serve::{start, Running};
use probes::sim::{Faults, ProviderSim, ReplySource, SimConfig, SimHandle};

const SECRET: &str = "probe-engine-test-secret-32-bytes-long";
const KEY: &str = "sk-probe";

/// Engines load whisper; one at a time keeps the figures honest on a small machine.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

fn config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.esl_listen = "127.0.0.1:0".parse().unwrap();
    config.server.http_addr = "127.0.0.1:0".parse().unwrap();
    config.server.cost_log_dir = dir.join("records");
    config.server.drain_secs = 5;
    config.auth.hs256_secret = Some(Secret::new(SECRET));
    // 200 ms of silence ends a turn: the verdict then hangs on the backend's latency
    // (with the default 500 ms, no engine could ever earn exit 0).
    config.calls.default.end_of_turn_ms = 200;
    config
}

async fn with_provider(dir: &Path, first_audio_ms: u64) -> (Running, SimHandle) {
    let sim = ProviderSim::start(SimConfig {
        faults: Faults {
            first_audio_ms,
            ..Faults::default()
        },
        api_key: Some(KEY.into()),
        reply: ReplySource::Tone { ms: 600 },
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let key = dir.join("key");
    std::fs::write(&key, KEY).unwrap();
    let mut config = config(dir);
    config.allow_egress = true;
    config.failover.allow_egress = true;
    config.provider.url = Some(sim.ws_url());
    config.provider.key_file = Some(key);
    (start(config).await.expect("engine"), sim)
}

async fn probe(target: &str, extra: &[&str], json: &Path) -> (i32, serde_json::Value, Output) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_realtime-probe"))
        .args([
            "--target",
            target,
            "--jwt-secret",
            SECRET,
            "--rate",
            "16000",
            "--runs",
            "2",
            "-q",
        ])
        .arg("--json")
        .arg(json)
        .args(extra)
        .output()
        .await
        .expect("probe runs");
    let report = std::fs::read_to_string(json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), report, output)
}

fn url(engine: &Running) -> String {
    format!("ws://{}/v1/stream", engine.http_addr)
}

fn describe(output: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_follows_the_providers_latency() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    // One engine, the sim's delay changed between probes. Each run is a new call whose
    // first turn the provider answers (it connects while the greeting plays).
    let (engine, sim) = with_provider(dir.path(), 20).await;
    let target = url(&engine);
    for (first_audio_ms, expected) in [(20, 0), (420, 1), (720, 2)] {
        sim.set_faults(Faults {
            first_audio_ms,
            ..Faults::default()
        })
        .unwrap();
        let json = dir.path().join(format!("probe-{first_audio_ms}.json"));
        let (code, report, output) = probe(&target, &["--expect-backend", "provider"], &json).await;
        assert_eq!(
            code,
            expected,
            "sim first audio {first_audio_ms} ms\n{}\n{report:#}",
            describe(&output)
        );
        let line = String::from_utf8_lossy(&output.stdout);
        assert!(line.contains("e2e_ms"), "{line}");
        let runs = report["runs"].as_array().expect("runs in the JSON");
        assert_eq!(runs.len(), 2);
        for run in runs {
            assert_eq!(run["backend"], "provider", "{run}");
            assert!(run["first_audio_ms"].as_f64().is_some(), "{run}");
        }
    }
    engine.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_exit_3_and_the_wrong_backend_exit_4() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (code, _, output) = probe(
        &format!("ws://{closed}/v1/stream"),
        &[],
        &dir.path().join("refused.json"),
    )
    .await;
    assert_eq!(code, 3, "{}", describe(&output));

    // The embedded default answers locally: a probe expecting the provider fails.
    let engine = start(config(dir.path())).await.expect("engine");
    let (code, report, output) = probe(
        &url(&engine),
        &["--expect-backend", "provider"],
        &dir.path().join("local.json"),
    )
    .await;
    assert_eq!(code, 4, "{}\n{report:#}", describe(&output));
    let (code, _, output) = probe(
        &url(&engine),
        &[
            "--expect-backend",
            "local",
            "--fail-ms",
            "20000",
            "--warn-ms",
            "10000",
        ],
        &dir.path().join("local-ok.json"),
    )
    .await;
    assert_eq!(code, 0, "{}", describe(&output));
    engine.shutdown().await.expect("shutdown");
}
