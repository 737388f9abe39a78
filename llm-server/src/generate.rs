//! The model worker: one OS thread owns the llama.cpp model and its context and runs one
//! generation at a time, taking jobs from a channel and sending text deltas back through
//! each job's own channel as tokens are produced.
//!
//! Inference never runs on the async runtime: a forward pass takes milliseconds of CPU
//! and would stall every socket on that runtime thread. A job whose receiver is gone
//! (the client hung up, or a caller barged in) stops at the next token, so an abandoned
//! reply does not hold the only context.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use crate::api::{ChatMessage, FinishReason, Usage};
use crate::text::{StopFilter, Utf8Stream};

/// How to load the model and size its context.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// The GGUF file.
    pub path: PathBuf,
    /// CPU threads for generation and prompt processing.
    pub threads: u16,
    /// Context length in tokens (prompt + reply).
    pub ctx_size: u32,
    /// Prompt tokens per forward pass.
    pub batch: u32,
}

/// What one generation should do.
#[derive(Debug, Clone)]
pub struct GenParams {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Reply token limit (already defaulted and capped).
    pub max_tokens: u32,
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// `None` draws a fresh seed.
    pub seed: Option<u32>,
    /// Extra stop strings (the end-of-turn token always stops).
    pub stops: Vec<String>,
    /// Forbid the end-of-generation tokens, so the reply runs to `max_tokens`.
    pub ignore_eos: bool,
}

/// The worker's state, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The model is being loaded.
    Loading,
    /// Serving.
    Ready,
    /// The model could not be loaded; the process should exit.
    Failed(String),
}

/// Why a generation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GenerateError {
    /// The templated prompt leaves no room for a reply.
    #[error("the conversation is {prompt_tokens} tokens; this server's context holds {ctx_size} (prompt and reply)")]
    PromptTooLong {
        /// Prompt length in tokens.
        prompt_tokens: u32,
        /// The context size.
        ctx_size: u32,
    },
    /// A message contains a NUL byte, which the C template API cannot take.
    #[error("message content contains a NUL character")]
    NulInContent,
    /// llama.cpp failed (template, decode, batch).
    #[error("inference failed: {0}")]
    Inference(String),
}

/// What the worker sends for a job.
#[derive(Debug)]
pub enum Event {
    /// New reply text.
    Delta(String),
    /// The reply is complete.
    Done(Outcome),
    /// The reply failed; nothing more follows.
    Failed(GenerateError),
}

/// How a completed generation went.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// Job start → first text sent.
    pub first_token: Option<Duration>,
    /// Job start → done.
    pub total: Duration,
}

impl Outcome {
    /// Decoding speed after the first token (prompt processing excluded), if measurable.
    pub fn tokens_per_second(&self) -> Option<f64> {
        let after_first = self.total.checked_sub(self.first_token?)?.as_secs_f64();
        let tokens = self.usage.completion_tokens.checked_sub(1)?;
        (after_first > 0.0 && tokens > 0).then(|| f64::from(tokens) / after_first)
    }
}

/// One queued generation.
#[derive(Debug)]
pub struct Job {
    /// What to generate.
    pub params: GenParams,
    /// Where deltas go; sized so the worker never waits on a slow client.
    pub events: mpsc::Sender<Event>,
    /// Admission permit, released when the worker is done with the job.
    pub permit: OwnedSemaphorePermit,
    /// When the request was admitted (to log queueing time).
    pub admitted: Instant,
}

/// The handle the HTTP side holds.
#[derive(Debug, Clone)]
pub struct Worker {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// The worker thread has gone (it only ends after a failed load).
#[derive(Debug, thiserror::Error)]
#[error("the model worker has stopped")]
pub struct WorkerGone;

impl Worker {
    /// Starts the worker thread; it loads the model and reports through the returned
    /// status channel.
    pub fn spawn(options: ModelOptions) -> std::io::Result<(Self, watch::Receiver<Status>)> {
        let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<Job>();
        let (status_tx, status_rx) = watch::channel(Status::Loading);
        std::thread::Builder::new()
            .name("tom-llm-model".into())
            .spawn(move || run(options, jobs_rx, status_tx))?;
        Ok((Self { jobs: jobs_tx }, status_rx))
    }

    /// Queues a job (admission is the caller's semaphore).
    pub fn submit(&self, job: Job) -> Result<(), WorkerGone> {
        self.jobs.send(job).map_err(|_| WorkerGone)
    }
}

/// llama.cpp's backend may be initialised once per process.
fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp prints to stderr by default, which would break the JSON log lines.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// How the conversation becomes a prompt.
enum Template {
    /// The template from the GGUF metadata, applied by llama.cpp.
    Model(LlamaChatTemplate),
    /// ChatML, SmolLM2's format, when the model has no template llama.cpp understands.
    ChatMl,
}

fn run(options: ModelOptions, jobs: std::sync::mpsc::Receiver<Job>, status: watch::Sender<Status>) {
    let started = Instant::now();
    let loaded = backend().and_then(|backend| {
        let model =
            LlamaModel::load_from_file(backend, &options.path, &LlamaModelParams::default())
                .map_err(|e| format!("cannot load {}: {e}", options.path.display()))?;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(options.ctx_size))
            .with_n_batch(options.batch)
            .with_n_threads(i32::from(options.threads))
            .with_n_threads_batch(i32::from(options.threads));
        Ok((backend, model, params))
    });
    let (backend, model, params) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = status.send(Status::Failed(e));
            return;
        }
    };
    let mut ctx = match model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = status.send(Status::Failed(format!("cannot create a context: {e}")));
            return;
        }
    };
    if let Err(e) = warm_up(&model, &mut ctx) {
        let _ = status.send(Status::Failed(format!("warm-up decode failed: {e}")));
        return;
    }
    let template = choose_template(&model);
    tracing::info!(
        model = %options.path.display(),
        params = model.n_params(),
        ctx_size = ctx.n_ctx(),
        threads = options.threads,
        template = match template { Template::Model(_) => "gguf", Template::ChatMl => "chatml" },
        load_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    let _ = status.send(Status::Ready);

    let vocab = model.vocab();
    let end_tokens = vocab.tokens().filter(|t| vocab.is_eog(*t)).collect();
    let mut generator = Generator {
        model: &model,
        ctx: &mut ctx,
        template,
        batch: options.batch,
        end_tokens,
        cached: Vec::new(),
    };
    while let Ok(job) = jobs.recv() {
        generator.serve(job);
    }
}

/// One throw-away forward pass, so the first caller does not pay for page faults and
/// buffer allocation.
fn warm_up(model: &LlamaModel, ctx: &mut LlamaContext<'_>) -> Result<(), String> {
    let vocab = model.vocab();
    let mut batch = LlamaBatch::new(1, 1);
    batch
        .add(vocab.bos(), 0, &[0], true)
        .map_err(|e| e.to_string())?;
    ctx.decode(&mut batch).map_err(|e| e.to_string())?;
    ctx.clear_kv_cache();
    Ok(())
}

/// The model's own template when llama.cpp can apply it, else ChatML.
fn choose_template(model: &LlamaModel) -> Template {
    let probe = || -> Option<LlamaChatTemplate> {
        let template = model.chat_template(None).ok()?;
        let msg = LlamaChatMessage::new("user".into(), "hi".into()).ok()?;
        model.apply_chat_template(&template, &[msg], true).ok()?;
        Some(template)
    };
    match probe() {
        Some(template) => Template::Model(template),
        None => Template::ChatMl,
    }
}

/// ChatML: `<|im_start|>role\ncontent<|im_end|>\n` per message, then the open
/// assistant turn.
pub fn chatml(messages: &[ChatMessage]) -> String {
    let mut prompt = String::new();
    for m in messages {
        prompt.push_str("<|im_start|>");
        prompt.push_str(m.role);
        prompt.push('\n');
        prompt.push_str(&m.content);
        prompt.push_str("<|im_end|>\n");
    }
    prompt.push_str("<|im_start|>assistant\n");
    prompt
}

struct Generator<'m, 'c> {
    model: &'m LlamaModel,
    ctx: &'c mut LlamaContext<'m>,
    template: Template,
    batch: u32,
    /// Every end-of-generation token (for `ignore_eos`).
    end_tokens: Vec<LlamaToken>,
    /// The tokens whose entries are in the context's cache, in position order.
    cached: Vec<LlamaToken>,
}

impl Generator<'_, '_> {
    fn serve(&mut self, job: Job) {
        let Job {
            params,
            events,
            permit,
            admitted,
        } = job;
        if events.is_closed() {
            tracing::info!("request abandoned while queued");
            return;
        }
        let queue_ms = admitted.elapsed().as_millis() as u64;
        let outcome = self.generate(&params, &events);
        // The next request may start as soon as this one's tokens are out.
        drop(permit);
        match outcome {
            Ok(Some(outcome)) => {
                tracing::info!(
                    queue_ms,
                    prompt_tokens = outcome.usage.prompt_tokens,
                    cached_tokens = outcome.usage.prompt_tokens_details.cached_tokens,
                    completion_tokens = outcome.usage.completion_tokens,
                    first_token_ms = outcome.first_token.map(|d| d.as_millis() as u64),
                    total_ms = outcome.total.as_millis() as u64,
                    tokens_per_s = outcome.tokens_per_second(),
                    finish_reason = outcome.finish_reason.as_str(),
                    "completion"
                );
                let _ = events.blocking_send(Event::Done(outcome));
            }
            Ok(None) => tracing::info!(queue_ms, "request abandoned mid-reply"),
            Err(e) => {
                tracing::warn!(queue_ms, error = %e, "completion failed");
                let _ = events.blocking_send(Event::Failed(e));
            }
        }
    }

    fn prompt(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
        match &self.template {
            Template::ChatMl => Ok(chatml(messages)),
            Template::Model(template) => {
                let chat = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.into(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| GenerateError::NulInContent)?;
                self.model
                    .apply_chat_template(template, &chat, true)
                    .map_err(|e| GenerateError::Inference(format!("chat template: {e}")))
            }
        }
    }

    /// Keeps the cache entries of the longest prefix `tokens` shares with what the
    /// context holds (never all of `tokens`) and returns its length.
    fn reuse_prefix(&mut self, tokens: &[LlamaToken]) -> usize {
        let shared = self
            .cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len().saturating_sub(1));
        let trimmed = u32::try_from(shared)
            .ok()
            .and_then(|from| self.ctx.clear_kv_cache_seq(Some(0), Some(from), None).ok())
            .unwrap_or(false);
        if shared > 0 && trimmed {
            self.cached.truncate(shared);
            shared
        } else {
            self.ctx.clear_kv_cache();
            self.cached.clear();
            0
        }
    }

    /// Decodes `batch` (whose tokens are `tokens`) and records them as cached; on
    /// failure the cache is in an unknown state and is dropped.
    fn decode(
        &mut self,
        batch: &mut LlamaBatch<'_>,
        tokens: &[LlamaToken],
    ) -> Result<(), GenerateError> {
        match self.ctx.decode(batch) {
            Ok(()) => {
                self.cached.extend_from_slice(tokens);
                Ok(())
            }
            Err(e) => {
                self.ctx.clear_kv_cache();
                self.cached.clear();
                Err(GenerateError::Inference(e.to_string()))
            }
        }
    }

    /// Runs one generation; `Ok(None)` when the receiver went away.
    fn generate(
        &mut self,
        params: &GenParams,
        events: &mpsc::Sender<Event>,
    ) -> Result<Option<Outcome>, GenerateError> {
        let started = Instant::now();
        let fail = |e: &dyn std::fmt::Display| GenerateError::Inference(e.to_string());
        let prompt = self.prompt(&params.messages)?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        let ctx_size = self.ctx.n_ctx();
        let prompt_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        if tokens.is_empty() {
            return Err(GenerateError::Inference("the prompt is empty".into()));
        }
        if prompt_tokens >= ctx_size {
            return Err(GenerateError::PromptTooLong {
                prompt_tokens,
                ctx_size,
            });
        }
        let max_tokens = params.max_tokens.min(ctx_size - prompt_tokens);

        // Each turn of a call resends the whole conversation, so the previous request's
        // tokens are usually a prefix of this one: keep their cache entries and only
        // process what is new (the system prompt and earlier turns cost nothing twice).
        // At least the last prompt token is always processed, for its logits.
        let reused = self.reuse_prefix(&tokens);
        let batch_size = self.batch as usize;
        let mut batch = LlamaBatch::new(batch_size, 1);
        let last = tokens.len() - 1;
        for (chunk_index, chunk) in tokens[reused..].chunks(batch_size).enumerate() {
            batch.clear();
            for (i, token) in chunk.iter().enumerate() {
                let pos = reused + chunk_index * batch_size + i;
                batch
                    .add(*token, pos as i32, &[0], pos == last)
                    .map_err(|e| fail(&e))?;
            }
            self.decode(&mut batch, chunk)?;
        }

        let mut sampler = sampler(params, self.model.n_vocab(), &self.end_tokens);
        let mut utf8 = Utf8Stream::default();
        let mut stops = StopFilter::new(params.stops.iter().cloned());
        let mut position = tokens.len() as i32;
        let mut completion_tokens = 0u32;
        let mut first_token = None;
        let mut send = |text: String| -> bool {
            if text.is_empty() {
                return true;
            }
            first_token.get_or_insert_with(|| started.elapsed());
            events.blocking_send(Event::Delta(text)).is_ok()
        };
        let finish_reason = loop {
            if completion_tokens >= max_tokens {
                break FinishReason::Length;
            }
            let token: LlamaToken = sampler.sample(self.ctx, batch.n_tokens() - 1);
            if vocab.is_eog(token) {
                break FinishReason::Stop;
            }
            completion_tokens += 1;
            // Control tokens render as nothing; a stray `<|im_end|>` typed out as text
            // is caught by the stop filter.
            let piece = vocab.token_to_piece(token, false, None);
            let text = stops.push(&utf8.push(&piece));
            if !send(text) {
                return Ok(None);
            }
            if stops.stopped() {
                break FinishReason::Stop;
            }
            batch.clear();
            batch
                .add(token, position, &[0], true)
                .map_err(|e| fail(&e))?;
            position += 1;
            self.decode(&mut batch, &[token])?;
        };
        let tail = stops.push(&utf8.finish()) + &stops.finish();
        if !send(tail) {
            return Ok(None);
        }
        Ok(Some(Outcome {
            finish_reason,
            usage: Usage::new(prompt_tokens, completion_tokens, reused as u32),
            first_token,
            total: started.elapsed(),
        }))
    }
}

/// llama.cpp's `LLAMA_DEFAULT_SEED`: the sampler draws a random seed.
const RANDOM_SEED: u32 = u32::MAX;

fn sampler(params: &GenParams, n_vocab: i32, end_tokens: &[LlamaToken]) -> LlamaSampler {
    let mut chain = Vec::with_capacity(5);
    if params.ignore_eos {
        let biases: Vec<_> = end_tokens
            .iter()
            .map(|t| LlamaLogitBias::new(*t, f32::NEG_INFINITY))
            .collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        chain.extend([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(params.top_p, 1),
            LlamaSampler::temp(params.temperature),
            LlamaSampler::dist(params.seed.unwrap_or(RANDOM_SEED)),
        ]);
    }
    LlamaSampler::chain_simple(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_ends_with_an_open_assistant_turn() {
        let prompt = chatml(&[
            ChatMessage {
                role: "system",
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user",
                content: "Hi".into(),
            },
        ]);
        assert_eq!(
            prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
