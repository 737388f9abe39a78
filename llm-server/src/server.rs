//! The HTTP face: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`.
//!
//! Admission is a semaphore sized to the queue: one request generates while the rest
//! wait their turn, and anything beyond that is refused at once with 503 so a caller's
//! brain can fall back to a cached phrase instead of waiting behind a backlog. Every
//! refusal is an OpenAI-style error body, which async-openai turns into an `ApiError`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::api::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatRequest, Choice, ChunkChoice, Delta,
    ErrorBody, InvalidRequest, ModelEntry, ModelList,
};
use crate::generate::{Event, GenParams, GenerateError, Job, Outcome, Status, Worker};

/// Request limits and sampling defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The id `/v1/models` lists and responses carry.
    pub model_id: String,
    /// Reply limit when the request sets none (phone replies are short).
    pub default_max_tokens: u32,
    /// Upper bound on any request's reply limit.
    pub max_tokens_cap: u32,
    /// Requests admitted at once: one generating, the rest waiting.
    pub queue: usize,
    /// Temperature when the request sets none.
    pub default_temperature: f32,
    /// `top_p` when the request sets none.
    pub default_top_p: f32,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_id: "smollm2".into(),
            default_max_tokens: 64,
            max_tokens_cap: 512,
            queue: 4,
            // SmolLM2's model card recommends 0.2 / 0.9; OpenAI's default of 1.0 makes a
            // 135M model ramble.
            default_temperature: 0.2,
            default_top_p: 0.9,
            body_limit: 256 * 1024,
        }
    }
}

/// Shared by all handlers.
#[derive(Debug)]
pub struct AppState {
    worker: Worker,
    status: watch::Receiver<Status>,
    admission: Arc<Semaphore>,
    config: ServerConfig,
    created: u32,
    next_id: AtomicU64,
}

impl AppState {
    /// State around a started worker.
    pub fn new(worker: Worker, status: watch::Receiver<Status>, config: ServerConfig) -> Self {
        Self {
            worker,
            status,
            admission: Arc::new(Semaphore::new(config.queue.max(1))),
            config,
            created: unix_now(),
            next_id: AtomicU64::new(0),
        }
    }
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

fn error(status: StatusCode, kind: &str, code: &str, message: impl Into<String>) -> Response {
    error_with_param(status, kind, code, message, None)
}

fn error_with_param(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: impl Into<String>,
    param: Option<&str>,
) -> Response {
    (status, Json(ErrorBody::new(kind, code, message, param))).into_response()
}

fn invalid(e: InvalidRequest) -> Response {
    error_with_param(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_request",
        e.message,
        e.param,
    )
}

fn generate_error(e: &GenerateError) -> Response {
    match e {
        GenerateError::PromptTooLong { .. } => error_with_param(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "context_length_exceeded",
            e.to_string(),
            Some("messages"),
        ),
        GenerateError::NulInContent => error_with_param(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            e.to_string(),
            Some("messages"),
        ),
        GenerateError::Inference(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "inference_failed",
            e.to_string(),
        ),
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        "no such endpoint (POST /v1/chat/completions, GET /v1/models, GET /health)",
    )
}

async fn health(State(app): State<Arc<AppState>>) -> Response {
    let status = app.status.borrow().clone();
    match status {
        Status::Ready => Json(serde_json::json!({
            "status": "ok",
            "model": app.config.model_id,
        }))
        .into_response(),
        Status::Loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "loading" })),
        )
            .into_response(),
        Status::Failed(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "failed", "error": reason })),
        )
            .into_response(),
    }
}

async fn models(State(app): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![ModelEntry {
            id: app.config.model_id.clone(),
            object: "model",
            created: app.created,
            owned_by: "tom",
        }],
    })
}

/// A validated request.
struct Plan {
    params: GenParams,
    stream: bool,
    include_usage: bool,
}

fn plan(config: &ServerConfig, req: ChatRequest) -> Result<Plan, InvalidRequest> {
    let bad = |message: &str, param: &'static str| InvalidRequest {
        message: message.to_owned(),
        param: Some(param),
    };
    if req.n.is_some_and(|n| n != 1) {
        return Err(bad("only n=1 is supported", "n"));
    }
    if req.messages.is_empty() {
        return Err(bad("messages must not be empty", "messages"));
    }
    let messages = req
        .messages
        .iter()
        .map(|m| m.to_chat())
        .collect::<Result<Vec<_>, _>>()?;
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(config.default_max_tokens);
    if max_tokens == 0 {
        return Err(bad("max_tokens must be at least 1", "max_tokens"));
    }
    let temperature = req.temperature.unwrap_or(config.default_temperature);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad("temperature must be between 0 and 2", "temperature"));
    }
    let top_p = req.top_p.unwrap_or(config.default_top_p);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad("top_p must be in (0, 1]", "top_p"));
    }
    let stops = req.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stops.len() > 4 {
        return Err(bad("at most 4 stop sequences", "stop"));
    }
    Ok(Plan {
        params: GenParams {
            messages,
            max_tokens: max_tokens.min(config.max_tokens_cap),
            temperature,
            top_p,
            // OpenAI seeds are 64-bit; llama.cpp's are 32: keep the low bits.
            seed: req.seed.map(|s| s as u32),
            stops,
            ignore_eos: req.ignore_eos,
        },
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

async fn chat(State(app): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                rejection.status(),
                "invalid_request_error",
                "invalid_body",
                rejection.body_text(),
            )
        }
    };
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_json",
                format!("the body is not a valid chat-completions request: {e}"),
            )
        }
    };
    if *app.status.borrow() != Status::Ready {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "model_not_ready",
            "the model is not loaded yet",
        );
    }
    tracing::debug!(
        model = request.model.as_deref().unwrap_or(""),
        messages = request.messages.len(),
        "chat request"
    );
    let plan = match plan(&app.config, request) {
        Ok(plan) => plan,
        Err(e) => return invalid(e),
    };
    let Ok(permit) = app.admission.clone().try_acquire_owned() else {
        tracing::warn!(queue = app.config.queue, "busy: request refused");
        // No Retry-After: async-openai honours it (whole seconds), while without it it
        // retries a 5xx after 100, 200 and 400 ms, which suits a caller on the line.
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "server_busy",
            "the local model is busy; try again shortly",
        );
    };
    // Room for every token of the longest reply, so the worker never waits on a slow
    // client (a full channel would stall the only context).
    let capacity = app.config.max_tokens_cap as usize + 4;
    let (tx, mut rx) = mpsc::channel(capacity);
    let job = Job {
        params: plan.params,
        events: tx,
        permit,
        admitted: Instant::now(),
    };
    if app.worker.submit(job).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "worker_stopped",
            "the model worker has stopped",
        );
    }
    let n = app.next_id.fetch_add(1, Ordering::Relaxed);
    let shape = Shape {
        id: format!("chatcmpl-{:x}{n:06x}", app.created),
        created: unix_now(),
        model: app.config.model_id.clone(),
        include_usage: plan.include_usage,
    };
    // The first event decides the status line: a prompt that is too long must be a 400,
    // not an error in the middle of a 200 stream.
    let first = match rx.recv().await {
        Some(Event::Failed(e)) => return generate_error(&e),
        Some(first) => first,
        None => return worker_lost(),
    };
    if plan.stream {
        stream_reply(shape, first, rx).into_response()
    } else {
        collect_reply(shape, first, rx).await
    }
}

fn worker_lost() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "inference_failed",
        "the model worker ended the reply without finishing it",
    )
}

/// What every chunk of one reply shares.
struct Shape {
    id: String,
    created: u32,
    model: String,
    include_usage: bool,
}

impl Shape {
    fn chunk(&self, delta: Delta, finish_reason: Option<crate::api::FinishReason>) -> SseEvent {
        self.event(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage: None,
        })
    }

    fn event(&self, value: &impl serde::Serialize) -> SseEvent {
        // These types always serialise; an empty event would be skipped by the client.
        SseEvent::default().data(serde_json::to_string(value).unwrap_or_default())
    }

    fn events(&self, event: Event) -> Vec<SseEvent> {
        match event {
            Event::Delta(text) => vec![self.chunk(
                Delta {
                    role: None,
                    content: Some(text),
                },
                None,
            )],
            Event::Done(outcome) => {
                let mut events = vec![self.chunk(Delta::default(), Some(outcome.finish_reason))];
                if self.include_usage {
                    events.push(self.event(&ChatCompletionChunk {
                        id: self.id.clone(),
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: self.model.clone(),
                        choices: vec![],
                        usage: Some(outcome.usage),
                    }));
                }
                events.push(SseEvent::default().data("[DONE]"));
                events
            }
            // Headers are sent; all that is left is to say so in the stream, which
            // async-openai reports as an error rather than a truncated reply.
            Event::Failed(e) => {
                let (kind, code) = match e {
                    GenerateError::Inference(_) => ("server_error", "inference_failed"),
                    _ => ("invalid_request_error", "invalid_request"),
                };
                vec![self.event(&ErrorBody::new(kind, code, e.to_string(), None))]
            }
        }
    }
}

fn stream_reply(
    shape: Shape,
    first: Event,
    rx: mpsc::Receiver<Event>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let role = shape.chunk(
        Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        },
        None,
    );
    let events = stream::unfold((rx, Some(first)), |(mut rx, first)| async move {
        let event = match first {
            Some(event) => event,
            None => rx.recv().await?,
        };
        Some((event, (rx, None)))
    });
    let body = stream::iter([role])
        .chain(events.flat_map(move |event| stream::iter(shape.events(event))))
        .map(Ok);
    Sse::new(body)
}

async fn collect_reply(shape: Shape, first: Event, mut rx: mpsc::Receiver<Event>) -> Response {
    let mut content = String::new();
    let mut next = Some(first);
    while let Some(event) = next {
        match event {
            Event::Delta(text) => content.push_str(&text),
            Event::Done(Outcome {
                finish_reason,
                usage,
                ..
            }) => {
                return Json(ChatCompletion {
                    id: shape.id,
                    object: "chat.completion",
                    created: shape.created,
                    model: shape.model,
                    choices: vec![Choice {
                        index: 0,
                        message: AssistantMessage {
                            role: "assistant",
                            content,
                        },
                        finish_reason,
                        logprobs: None,
                    }],
                    usage,
                })
                .into_response()
            }
            Event::Failed(e) => return generate_error(&e),
        }
        next = rx.recv().await;
    }
    worker_lost()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ChatRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_and_cap_apply() {
        let config = ServerConfig::default();
        let p = plan(
            &config,
            request(r#"{"messages":[{"role":"user","content":"hi"}]}"#),
        )
        .ok()
        .unwrap();
        assert_eq!(p.params.max_tokens, 64);
        assert!(!p.stream);
        let p = plan(
            &config,
            request(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":100000,"max_completion_tokens":9000}"#),
        )
        .ok()
        .unwrap();
        assert_eq!(p.params.max_tokens, 512);
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        let config = ServerConfig::default();
        for (body, param) in [
            (r#"{"messages":[]}"#, "messages"),
            (r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                "temperature",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"top_p":0}"#,
                "top_p",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
                "stop",
            ),
        ] {
            let e = plan(&config, request(body)).err().unwrap();
            assert_eq!(e.param, Some(param), "{body}");
        }
    }
}
