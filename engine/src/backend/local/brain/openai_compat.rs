//! A brain backed by any OpenAI-compatible chat-completions server (llama.cpp's server,
//! vLLM, Ollama, or the provider itself), streamed with async-openai.
//!
//! The request runs on a task of the current runtime and forwards content deltas as
//! they arrive. Dropping the [`Reply`] (barge-in) ends the task at the next delta. A
//! server that does not answer within `first_token_timeout`, or goes quiet for
//! `idle_timeout` mid-reply, yields a [`BrainError::Backend`] so the call can fall back
//! to a cached phrase instead of leaving the caller in silence.

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequestArgs,
};
use async_openai::Client;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{Brain, BrainError, Reply, Speaker, Turn};

/// Where and how to ask.
#[derive(Clone)]
pub struct LlmConfig {
    /// Base URL of the API, e.g. `http://127.0.0.1:8081/v1`.
    pub base_url: String,
    /// API key, if the server wants one. Never printed.
    pub api_key: Option<String>,
    /// Model name as the server knows it.
    pub model: String,
    /// The system prompt.
    pub instructions: String,
    /// Upper bound on the reply length, in tokens.
    pub max_tokens: u32,
    /// Limit for connecting and the first delta.
    pub first_token_timeout: Duration,
    /// Limit for silence between two deltas.
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl LlmConfig {
    /// Defaults for a local server: no key, short replies, 2 s to the first token.
    pub fn local(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            instructions: "You are a friendly phone agent. Answer in one or two short sentences."
                .into(),
            max_tokens: 96,
            first_token_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(2),
        }
    }
}

/// The brain.
#[derive(Debug, Clone)]
pub struct OpenAiCompatBrain {
    client: Client<OpenAIConfig>,
    config: LlmConfig,
}

impl OpenAiCompatBrain {
    /// A brain talking to `config.base_url`.
    pub fn new(config: LlmConfig) -> Self {
        let mut api = OpenAIConfig::new().with_api_base(config.base_url.clone());
        if let Some(key) = &config.api_key {
            api = api.with_api_key(key.clone());
        }
        Self {
            client: Client::with_config(api),
            config,
        }
    }

    fn messages(&self, history: &[Turn]) -> Vec<ChatCompletionRequestMessage> {
        let system = ChatCompletionRequestMessage::System(
            ChatCompletionRequestSystemMessage::from(self.config.instructions.as_str()),
        );
        std::iter::once(system)
            .chain(history.iter().map(|turn| match turn.speaker {
                Speaker::Caller => ChatCompletionRequestMessage::User(
                    ChatCompletionRequestUserMessage::from(turn.text.as_str()),
                ),
                Speaker::Agent => ChatCompletionRequestMessage::Assistant(
                    ChatCompletionRequestAssistantMessage::from(turn.text.as_str()),
                ),
            }))
            .collect()
    }
}

impl Brain for OpenAiCompatBrain {
    fn respond(&self, history: &[Turn]) -> Result<Reply, BrainError> {
        if !history.iter().any(|t| t.speaker == Speaker::Caller) {
            return Err(BrainError::NoCallerTurn);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| BrainError::Backend("no async runtime to run the request on".into()))?;
        let request = CreateChatCompletionRequestArgs::default()
            .model(self.config.model.clone())
            .messages(self.messages(history))
            .max_completion_tokens(self.config.max_tokens)
            .stream(true)
            .build()
            .map_err(|e| BrainError::Backend(e.to_string()))?;
        let (tx, rx) = mpsc::channel(64);
        let (client, config) = (self.client.clone(), self.config.clone());
        runtime.spawn(async move {
            let fail = |what: String| BrainError::Backend(what);
            let chat = client.chat();
            let stream =
                tokio::time::timeout(config.first_token_timeout, chat.create_stream(request)).await;
            let mut stream = match stream {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(fail(e.to_string()))).await;
                    return;
                }
                Err(_) => {
                    let _ = tx
                        .send(Err(fail("no answer from the LLM server in time".into())))
                        .await;
                    return;
                }
            };
            let mut wait = config.first_token_timeout;
            loop {
                let next = match tokio::time::timeout(wait, stream.next()).await {
                    Ok(Some(next)) => next,
                    Ok(None) => return,
                    Err(_) => {
                        let _ = tx
                            .send(Err(fail("the LLM server went quiet mid-reply".into())))
                            .await;
                        return;
                    }
                };
                let chunk = match next {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        let _ = tx.send(Err(fail(e.to_string()))).await;
                        return;
                    }
                };
                for content in chunk.choices.into_iter().filter_map(|c| c.delta.content) {
                    if !content.is_empty() && tx.send(Ok(content)).await.is_err() {
                        return; // the reply was dropped: barge-in
                    }
                }
                wait = config.idle_timeout;
            }
        });
        Ok(Reply {
            chunks: rx,
            intent: None,
            ends_call: false,
        })
    }
}
