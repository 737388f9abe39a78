//! The OpenAI-compatible brain against a scripted chat-completions server on loopback:
//! deltas stream through in order, the request carries the conversation, and a failing,
//! silent or absent server is a prompt error rather than a hang.

use std::time::Duration;

use engine::backend::local::brain::{
    collect, Brain, BrainError, LlmConfig, OpenAiCompatBrain, Speaker, Turn,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Safety net only.
const LIMIT: Duration = Duration::from_secs(10);

enum Answer {
    Stream(Vec<&'static str>),
    Status(u16),
    Silent,
}

/// Serves one request; sends the request body (JSON) back to the test.
async fn fake_server(answer: Answer) -> (String, oneshot::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let (body_tx, body_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, length) = loop {
            let n = socket.read(&mut chunk).await.expect("read");
            assert!(n > 0, "client closed early");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().expect("len"))
                    })
                    .unwrap_or(0);
                break (end + 4, length);
            }
        };
        while buf.len() < head_end + length {
            let n = socket.read(&mut chunk).await.expect("read body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: serde_json::Value =
            serde_json::from_slice(&buf[head_end..head_end + length]).expect("json body");
        let _ = body_tx.send(body);
        match answer {
            Answer::Stream(deltas) => {
                let mut out = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n");
                for d in deltas {
                    let event = serde_json::json!({
                        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": d}, "finish_reason": null}]
                    });
                    out.push_str(&format!("data: {event}\n\n"));
                }
                out.push_str("data: [DONE]\n\n");
                socket.write_all(out.as_bytes()).await.expect("write");
            }
            Answer::Status(code) => {
                let body = r#"{"error":{"message":"model overloaded","type":"server_error","param":null,"code":null}}"#;
                let out = format!("HTTP/1.1 {code} Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                socket.write_all(out.as_bytes()).await.expect("write");
            }
            Answer::Silent => {
                // Keep the socket open and say nothing.
                tokio::time::sleep(LIMIT).await;
            }
        }
    });
    (base, body_rx)
}

fn history() -> Vec<Turn> {
    vec![
        Turn {
            speaker: Speaker::Caller,
            text: "hello".into(),
        },
        Turn {
            speaker: Speaker::Agent,
            text: "Hello! How can I help?".into(),
        },
        Turn {
            speaker: Speaker::Caller,
            text: "a table for two, please".into(),
        },
    ]
}

fn config(base: String) -> LlmConfig {
    let mut c = LlmConfig::local(base, "smollm2");
    c.first_token_timeout = Duration::from_millis(500);
    c.idle_timeout = Duration::from_millis(500);
    c
}

#[tokio::test]
async fn streams_deltas_in_order_and_sends_the_conversation() {
    let (base, body) = fake_server(Answer::Stream(vec!["Sure", ", a table", " for two."])).await;
    let brain = OpenAiCompatBrain::new(config(base));
    let reply = brain.respond(&history()).expect("reply");
    let text = tokio::time::timeout(LIMIT, collect(reply))
        .await
        .expect("bounded")
        .expect("text");
    assert_eq!(text, "Sure, a table for two.");
    let body = body.await.expect("request body");
    assert_eq!(body["model"], "smollm2");
    assert_eq!(body["stream"], true);
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(body["messages"][3]["content"], "a table for two, please");
}

#[tokio::test]
async fn server_errors_are_backend_errors() {
    let (base, _body) = fake_server(Answer::Status(503)).await;
    let reply = OpenAiCompatBrain::new(config(base))
        .respond(&history())
        .expect("reply");
    let result = tokio::time::timeout(LIMIT, collect(reply))
        .await
        .expect("bounded");
    assert!(matches!(result, Err(BrainError::Backend(_))), "{result:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (base, _body) = fake_server(Answer::Silent).await;
    let reply = OpenAiCompatBrain::new(config(base))
        .respond(&history())
        .expect("reply");
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(LIMIT, collect(reply))
        .await
        .expect("bounded");
    assert!(
        matches!(result, Err(BrainError::Backend(ref m)) if m.contains("in time")),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_absent_server_fails_fast_and_the_key_is_never_printed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut c = config(format!("http://127.0.0.1:{port}/v1"));
    c.api_key = Some("sk-secret-123".into());
    assert!(!format!("{c:?}").contains("sk-secret-123"));
    let reply = OpenAiCompatBrain::new(c)
        .respond(&history())
        .expect("reply");
    let result = tokio::time::timeout(LIMIT, collect(reply))
        .await
        .expect("bounded");
    assert!(matches!(result, Err(BrainError::Backend(_))), "{result:?}");
}

#[test]
fn without_a_caller_turn_or_runtime_it_refuses() {
    let brain = OpenAiCompatBrain::new(LlmConfig::local("http://127.0.0.1:9/v1", "m"));
    assert_eq!(brain.respond(&[]).err(), Some(BrainError::NoCallerTurn));
    assert!(matches!(
        brain.respond(&history()).err(),
        Some(BrainError::Backend(_))
    ));
}
