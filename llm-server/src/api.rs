//! The OpenAI chat-completions wire format: the part of the request we honour, the
//! responses and stream chunks async-openai parses, and OpenAI-style error bodies.
//!
//! Requests are parsed leniently (unknown fields are ignored, as OpenAI-compatible
//! servers do) but validated strictly where the answer would otherwise be wrong: no
//! messages, an unknown role, a non-text content part, `n > 1`.

use serde::{Deserialize, Serialize};

/// A chat-completions request.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The model the caller asked for; this server has one, so it is only echoed in logs.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Reply length limit (legacy name).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Reply length limit (current name; wins over `max_tokens`).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0..=2; 0 is greedy.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, (0, 1].
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Stream `chat.completion.chunk`s as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Sampling seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Number of choices; only 1 is supported.
    #[serde(default)]
    pub n: Option<u32>,
    /// llama.cpp server extension: never end the turn before the token limit (benchmarks,
    /// tests that need a long reply).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with `usage` and no choices.
    #[serde(default)]
    pub include_usage: bool,
}

/// `stop`: one string or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// system, developer, user or assistant.
    pub role: String,
    /// Text, or a list of parts of which only text parts are supported.
    #[serde(default)]
    pub content: Option<Content>,
}

/// Message content.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Deserialize)]
pub struct Part {
    /// `text` is the only type a text model can use.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// A message reduced to what the chat template needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// system, user or assistant (developer is folded into system).
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// Why a request cannot be served as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidRequest {
    /// What is wrong, for the caller.
    pub message: String,
    /// The offending parameter, if one.
    pub param: Option<&'static str>,
}

impl InvalidRequest {
    fn new(message: impl Into<String>, param: &'static str) -> Self {
        Self {
            message: message.into(),
            param: Some(param),
        }
    }
}

impl Message {
    /// The message as template input.
    pub fn to_chat(&self) -> Result<ChatMessage, InvalidRequest> {
        let role = match self.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(InvalidRequest::new(
                    format!(
                        "unsupported message role '{other}' (system, developer, user, assistant)"
                    ),
                    "messages",
                ))
            }
        };
        let content = match &self.content {
            None => String::new(),
            Some(Content::Text(text)) => text.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(InvalidRequest::new(
                                format!(
                                    "unsupported content part '{kind}': this model reads text only"
                                ),
                                "messages",
                            ))
                        }
                    }
                }
                text
            }
        };
        Ok(ChatMessage { role, content })
    }
}

/// OpenAI-style error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable.
    pub message: String,
    /// `invalid_request_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter.
    pub param: Option<String>,
    /// A stable machine-readable code.
    pub code: Option<String>,
}

impl ErrorBody {
    /// A body for `kind` / `code`.
    pub fn new(kind: &str, code: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.to_owned(),
                param: param.map(str::to_owned),
                code: Some(code.to_owned()),
            },
        }
    }
}

/// Token counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the templated prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// The sum.
    pub total_tokens: u32,
    /// How much of the prompt was served from the cache.
    pub prompt_tokens_details: PromptTokensDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose cache entries were kept from the previous request.
    pub cached_tokens: u32,
}

impl Usage {
    /// Usage from the counts.
    pub fn new(prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

/// Why generation ended, as OpenAI names it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of turn or a stop string.
    Stop,
    /// The token limit.
    Length,
}

impl FinishReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A non-streaming response (`chat.completion`).
#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u32,
    /// The served model id.
    pub model: String,
    /// Exactly one choice.
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: Usage,
}

/// The single choice of a [`ChatCompletion`].
#[derive(Debug, Serialize)]
pub struct Choice {
    /// Always 0.
    pub index: u32,
    /// The reply.
    pub message: AssistantMessage,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Not computed.
    pub logprobs: Option<()>,
}

/// The reply message.
#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// A streamed chunk (`chat.completion.chunk`).
#[derive(Debug, Serialize)]
pub struct ChatCompletionChunk {
    /// The same id for every chunk of one reply.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u32,
    /// The served model id.
    pub model: String,
    /// One choice, or none in the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Only in the final usage chunk (`stream_options.include_usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// The choice of a [`ChatCompletionChunk`].
#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    /// Always 0.
    pub index: u32,
    /// What is new.
    pub delta: Delta,
    /// Set on the last content chunk.
    pub finish_reason: Option<FinishReason>,
}

/// The new part of the reply.
#[derive(Debug, Default, Serialize)]
pub struct Delta {
    /// `assistant` on the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The one model.
    pub data: Vec<ModelEntry>,
}

/// One model.
#[derive(Debug, Serialize)]
pub struct ModelEntry {
    /// The id clients put in `model`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds (when the server started).
    pub created: u32,
    /// Always `tom`.
    pub owned_by: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_accepts_openai_shapes_and_ignores_unknown_fields() {
        let body = r#"{"model":"x","messages":[
            {"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]},
            {"role":"assistant","content":null}],
            "max_completion_tokens":8,"stop":"\n","logit_bias":{},"stream":true,
            "stream_options":{"include_usage":true}}"#;
        let req: ChatRequest = serde_json::from_str(body).unwrap();
        let msgs: Vec<_> = req.messages.iter().map(|m| m.to_chat().unwrap()).collect();
        assert_eq!(msgs[0].role, "system");
        assert_eq!(msgs[1].content, "hi there");
        assert_eq!(msgs[2].content, "");
        assert_eq!(req.stop.unwrap().into_vec(), vec!["\n"]);
        assert!(req.stream_options.unwrap().include_usage);
    }

    #[test]
    fn tool_role_and_image_parts_are_refused() {
        let tool: Message = serde_json::from_str(r#"{"role":"tool","content":"x"}"#).unwrap();
        assert!(tool.to_chat().unwrap_err().message.contains("'tool'"));
        let image: Message = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}"#,
        )
        .unwrap();
        assert!(image.to_chat().unwrap_err().message.contains("image_url"));
    }

    #[test]
    fn first_chunk_has_role_and_no_finish_reason_key_value() {
        let chunk = ChatCompletionChunk {
            id: "c".into(),
            object: "chat.completion.chunk",
            created: 1,
            model: "m".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                },
                finish_reason: None,
            }],
            usage: None,
        };
        let json = serde_json::to_value(&chunk).unwrap();
        assert_eq!(json["choices"][0]["delta"]["role"], "assistant");
        assert!(json["choices"][0]["finish_reason"].is_null());
        assert!(json.get("usage").is_none());
    }
}
