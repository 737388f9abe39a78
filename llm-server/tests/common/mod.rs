//! Starts the real `tom-llm` binary on a free loopback port with the real SmolLM2 model.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Long enough for a cold model load on a busy 2-core machine; the tests never wait for
/// it unless something is wrong.
pub const STARTUP: Duration = Duration::from_secs(60);
/// Upper bound for one short completion.
pub const REPLY: Duration = Duration::from_secs(60);

pub const BIN: &str = env!("CARGO_BIN_EXE_tom-llm");

/// The model the tests need; a missing file fails the test with the fix.
pub fn model() -> PathBuf {
    let path = llm_server::paths::default_model();
    assert!(
        path.is_file(),
        "SmolLM2 model not found at {}; fetch it with: scripts/fetch-models.sh --only smollm2",
        path.display()
    );
    path
}

/// A running server, killed on drop.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// One server at a time: each runs llama.cpp on every core, and several at once on a
    /// 2-core machine slow each other to a token per second (seen in CI).
    _serial: tokio::sync::OwnedMutexGuard<()>,
}

impl Server {
    pub async fn start(extra: &[&str]) -> Server {
        static SERIAL: std::sync::OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
            std::sync::OnceLock::new();
        let serial = SERIAL
            .get_or_init(Default::default)
            .clone()
            .lock_owned()
            .await;
        let mut child = Command::new(BIN)
            .arg("--model")
            .arg(model())
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn tom-llm");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(STARTUP, lines.next_line())
            .await
            .expect("tom-llm did not report ready in time")
            .expect("read tom-llm stdout")
            .expect("tom-llm exited before it was ready");
        let base = line
            .strip_prefix("tom-llm ready on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Server {
            child,
            base,
            _serial: serial,
        }
    }

    /// The OpenAI API base for async-openai.
    pub fn api_base(&self) -> String {
        format!("{}/v1", self.base)
    }
}
