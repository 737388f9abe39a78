//! `tom-llm` against the real SmolLM2 model, spoken to by async-openai (the client the
//! engine's brain uses) and by raw HTTP for the wire details.

mod common;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, FinishReason,
};
use async_openai::Client;
use futures_util::StreamExt;

use common::{Server, REPLY};

const PROMPT: &str =
    "A caller asks: could I book a table for two tomorrow evening? Reply in one short sentence.";

fn client(server: &Server) -> Client<OpenAIConfig> {
    Client::with_config(OpenAIConfig::new().with_api_base(server.api_base()))
}

fn request(stream: bool, max_tokens: u32) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model("smollm2")
        .messages([
            ChatCompletionRequestSystemMessage::from("You are a friendly phone agent.").into(),
            ChatCompletionRequestUserMessage::from(PROMPT).into(),
        ])
        .max_completion_tokens(max_tokens)
        .temperature(0.0)
        .stream(stream)
        .build()
        .expect("a valid request")
}

#[tokio::test]
async fn completion_returns_text_and_usage() {
    let server = Server::start(&[]).await;
    let response = tokio::time::timeout(REPLY, client(&server).chat().create(request(false, 32)))
        .await
        .expect("reply in time")
        .expect("completion");
    assert_eq!(response.object, "chat.completion");
    assert_eq!(response.model, "smollm2");
    let choice = &response.choices[0];
    let text = choice.message.content.as_deref().unwrap_or_default();
    assert!(!text.trim().is_empty(), "empty reply");
    assert!(!text.contains("<|im_end|>"), "template leaked: {text}");
    let usage = response.usage.expect("usage");
    assert!(usage.prompt_tokens > 10, "{usage:?}");
    assert!(
        usage.completion_tokens >= 1 && usage.completion_tokens <= 32,
        "{usage:?}"
    );
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
    assert!(matches!(
        choice.finish_reason,
        Some(FinishReason::Stop | FinishReason::Length)
    ));
}

#[tokio::test]
async fn async_openai_streams_deltas_to_the_end() {
    let server = Server::start(&[]).await;
    let chat = client(&server);
    let collect = async {
        let mut stream = chat.chat().create_stream(request(true, 24)).await?;
        let (mut deltas, mut text, mut finish) = (0, String::new(), None);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            assert_eq!(chunk.object, "chat.completion.chunk");
            for choice in chunk.choices {
                if let Some(content) = choice.delta.content.filter(|c| !c.is_empty()) {
                    deltas += 1;
                    text.push_str(&content);
                }
                finish = finish.or(choice.finish_reason);
            }
        }
        Ok::<_, OpenAIError>((deltas, text, finish))
    };
    let (deltas, text, finish) = tokio::time::timeout(REPLY, collect)
        .await
        .expect("stream in time")
        .expect("stream");
    assert!(deltas >= 1, "no content deltas");
    assert!(!text.trim().is_empty());
    assert!(finish.is_some(), "no finish_reason chunk");
}

#[tokio::test]
async fn a_follow_up_turn_reuses_the_cached_prefix_without_changing_replies() {
    let server = Server::start(&[]).await;
    let chat = client(&server);
    let ask = |question: &'static str| {
        CreateChatCompletionRequestArgs::default()
            .model("smollm2")
            .messages([
                ChatCompletionRequestSystemMessage::from("You are a friendly phone agent.").into(),
                ChatCompletionRequestUserMessage::from(question).into(),
            ])
            .max_completion_tokens(16u32)
            .temperature(0.0)
            .build()
            .expect("a valid request")
    };
    let mut replies = Vec::new();
    for question in [PROMPT, "What are your opening hours?", PROMPT] {
        let response = tokio::time::timeout(REPLY, chat.chat().create(ask(question)))
            .await
            .expect("reply in time")
            .expect("completion");
        let usage = response.usage.expect("usage");
        let cached = usage
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .expect("cached_tokens");
        let text = response.choices[0]
            .message
            .content
            .clone()
            .unwrap_or_default();
        replies.push((text, cached, usage.prompt_tokens));
    }
    assert_eq!(replies[0].1, 0, "nothing cached before the first request");
    // The system prompt is shared; the first question is not.
    assert!(
        replies[1].1 > 0 && replies[1].1 < replies[1].2,
        "{replies:?}"
    );
    assert!(replies[2].1 > 0, "{replies:?}");
    // Greedy decoding gives the same reply whether the prefix came from the cache or not.
    assert_eq!(replies[0].0, replies[2].0);
}

#[tokio::test]
async fn raw_stream_is_sse_chunks_then_done() {
    let server = Server::start(&[]).await;
    let body = serde_json::json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 8,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let response = tokio::time::timeout(
        REPLY,
        reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", server.base))
            .body(body.to_string())
            .send(),
    )
    .await
    .expect("in time")
    .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = tokio::time::timeout(REPLY, response.text())
        .await
        .expect("in time")
        .expect("body");
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert!(content_chunks >= 1, "{text}");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"].as_array().map(Vec::len), Some(0));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() <= 8);
}

#[tokio::test]
async fn bad_requests_get_openai_errors_not_crashes() {
    let server = Server::start(&[]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", server.base);
    for (body, code) in [
        ("{not json", "invalid_json"),
        (r#"{"messages": "hello"}"#, "invalid_json"),
        (r#"{"messages": []}"#, "invalid_request"),
        (
            r#"{"messages": [{"role": "tool", "content": "x"}]}"#,
            "invalid_request",
        ),
    ] {
        let response = http.post(&url).body(body).send().await.expect("request");
        assert_eq!(response.status(), 400, "{body}");
        let error: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(error["error"]["code"], code, "{body}");
    }
    let huge = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(300_000)
    );
    let response = http.post(&url).body(huge).send().await.expect("request");
    assert_eq!(response.status(), 413);

    // async-openai surfaces the body as an API error, as the brain will see it.
    let mut bad = request(false, 8);
    bad.temperature = Some(5.0);
    match client(&server).chat().create(bad).await {
        Err(OpenAIError::ApiError(e)) => {
            assert_eq!(e.api_error.param.as_deref(), Some("temperature"))
        }
        other => panic!("expected an API error, got {other:?}"),
    }

    // Still serving after all that.
    let health = http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn health_and_models() {
    let server = Server::start(&["--model-id", "local-smol"]).await;
    let http = reqwest::Client::new();
    let health: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/health", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(health["status"], "ok");
    let models: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/v1/models", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "local-smol");
    let missing = http
        .get(format!("{}/v1/embeddings", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_request_beyond_the_queue_is_refused_with_503() {
    let server = Server::start(&["--queue", "1"]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", server.base);
    // `ignore_eos` keeps the only slot busy for 400 tokens, whatever the model says.
    let long = serde_json::json!({
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": 400,
        "ignore_eos": true,
        "stream": true,
    });
    let mut first = http
        .post(&url)
        .body(long.to_string())
        .send()
        .await
        .expect("first");
    assert_eq!(first.status(), 200);
    // A body chunk means the first request holds the slot and is generating.
    let chunk = tokio::time::timeout(REPLY, first.chunk())
        .await
        .expect("first chunk");
    assert!(chunk.expect("read").is_some());
    // Raw HTTP: async-openai would retry the 503 (three times, 100–400 ms apart).
    let short = serde_json::json!({"messages": [{"role": "user", "content": "Hi"}]});
    let second = http
        .post(&url)
        .body(short.to_string())
        .send()
        .await
        .expect("second");
    assert_eq!(second.status(), 503);
    let error: serde_json::Value = serde_json::from_str(&second.text().await.unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "server_busy");
    assert_eq!(error["error"]["type"], "server_error");
    // Hanging up frees the slot at the next token; the server keeps serving.
    drop(first);
    let health = http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn ignore_eos_runs_to_the_token_limit() {
    let server = Server::start(&[]).await;
    let mut extra = serde_json::to_value(request(false, 40)).unwrap();
    extra["ignore_eos"] = true.into();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.base))
        .body(extra.to_string())
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 40, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn exits_when_the_supervisor_pipe_closes() {
    let mut server = Server::start(&["--exit-on-stdin-eof"]).await;
    // Serving while the pipe is open…
    let health = reqwest::Client::new()
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // …and gone once it closes.
    drop(server.child.stdin.take());
    let status = tokio::time::timeout(REPLY, server.child.wait())
        .await
        .expect("exit in time")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_missing_model_exits_non_zero_with_the_fix() {
    let output = tokio::time::timeout(
        REPLY,
        tokio::process::Command::new(common::BIN)
            .args([
                "--model",
                "/nonexistent/smol.gguf",
                "--listen",
                "127.0.0.1:0",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("exit in time")
    .expect("run tom-llm");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/smol.gguf"), "{stderr}");
    assert!(
        stderr.contains("scripts/fetch-models.sh --only smollm2"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "no ready line for a server that cannot serve"
    );
}
