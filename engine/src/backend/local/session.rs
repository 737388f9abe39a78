//! The local pipeline as a [`Session`]: caller audio → whisper → brain → Piper, one task
//! per call.
//!
//! Caller audio goes into a ring of the last [`MAX_UTTERANCE`] (the handle writes it;
//! nothing is sent per frame). At a pause the task may transcribe the turn so far
//! speculatively; the commit that confirms the same `end_of_speech` then finds its text
//! ready, which takes whisper's time off the caller's wait. A reply runs as its own task
//! (transcript → brain tokens → sentence audio) so a barge-in can abort it at once; its
//! output passes through the session task, which owns the conversation history.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::audio::resample::resample_clip;
use crate::audio::wav::Pcm;
use crate::backend::events::{self, EventSender, EventStream};
use crate::backend::local::brain::{Brain, Speaker, Turn};
use crate::backend::local::stt::{SttPool, Transcript};
use crate::backend::local::tts::phrase_cache::PhraseCache;
use crate::backend::local::tts::{sentences, Voice};
use crate::backend::{
    BackendKind, ErrorKind, ReplyDone, Session, SessionConfig, SessionError, SessionEvent, Stage,
    Utterance,
};

/// Longest caller turn kept (whisper's window).
pub const MAX_UTTERANCE: Duration = Duration::from_secs(30);
/// Audio kept before the onset the endpointer reported (its first frames are often
/// the soft start of a word).
const PRE_ROLL: Duration = Duration::from_millis(200);
/// Silence kept after the last voiced frame (whisper transcribes a clipped last word
/// worse).
const TAIL: Duration = Duration::from_millis(150);

/// The shared parts every local session uses: loaded once per process.
#[derive(Clone)]
pub struct LocalPipeline {
    stt: SttPool,
    brain: Arc<dyn Brain>,
    voice: Arc<Voice>,
    phrases: Option<Arc<PhraseCache>>,
    /// Voices (and their phrase caches) for other languages than the default's.
    by_language: Arc<HashMap<String, LanguageVoice>>,
    /// Bounds concurrent synthesis to the cores we have; further sentences wait.
    tts_slots: Arc<Semaphore>,
}

/// A language's voice and the phrase cache of that voice.
#[derive(Debug, Clone)]
pub struct LanguageVoice {
    /// The voice.
    pub voice: Arc<Voice>,
    /// Its phrase cache.
    pub phrases: Option<Arc<PhraseCache>>,
}

impl std::fmt::Debug for LocalPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPipeline")
            .field("voice", &self.voice.cache_key())
            .finish_non_exhaustive()
    }
}

impl LocalPipeline {
    /// A pipeline from loaded parts. `phrases` serves sentences already on disk.
    pub fn new(
        stt: SttPool,
        brain: Arc<dyn Brain>,
        voice: Arc<Voice>,
        phrases: Option<Arc<PhraseCache>>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            stt,
            brain,
            voice,
            phrases,
            by_language: Arc::new(HashMap::new()),
            tts_slots: Arc::new(Semaphore::new(cores)),
        }
    }

    /// Calls in these languages speak with these voices (others with the default).
    pub fn with_language_voices(mut self, voices: HashMap<String, LanguageVoice>) -> Self {
        self.by_language = Arc::new(voices);
        self
    }

    /// The voice a call in `language` speaks with.
    pub fn voice_for(&self, language: &str) -> Arc<Voice> {
        self.by_language
            .get(language)
            .map_or_else(|| self.voice.clone(), |v| v.voice.clone())
    }

    /// Opens a session for one call (spawns its task on the current runtime).
    pub fn open(&self, config: SessionConfig) -> LocalSession {
        let mut pipeline = self.clone();
        if let Some(language) = self.by_language.get(&config.language) {
            pipeline.voice = language.voice.clone();
            pipeline.phrases = language.phrases.clone();
        }
        let ring = Arc::new(Mutex::new(AudioRing::new(config.rate)));
        let (commands_tx, commands) = mpsc::channel(16);
        let (events_tx, events) = events::channel(64);
        let task = SessionTask {
            pipeline,
            ring: ring.clone(),
            history: config.history.clone(),
            config,
            events: events_tx,
            speculation: None,
            reply: None,
        };
        tokio::spawn(task.run(commands));
        LocalSession {
            ring,
            commands: commands_tx,
            events,
        }
    }
}

/// The last [`MAX_UTTERANCE`] of caller audio.
#[derive(Debug)]
struct AudioRing {
    rate: u32,
    samples: VecDeque<i16>,
    capacity: usize,
}

impl AudioRing {
    fn new(rate: u32) -> Self {
        let capacity = (MAX_UTTERANCE.as_secs_f64() * f64::from(rate)) as usize;
        Self {
            rate,
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    fn push(&mut self, pcm: &[i16]) {
        let pcm = &pcm[pcm.len().saturating_sub(self.capacity)..];
        let excess = (self.samples.len() + pcm.len()).saturating_sub(self.capacity);
        self.samples.drain(..excess);
        self.samples.extend(pcm);
    }

    fn samples_in(&self, d: Duration) -> usize {
        (d.as_secs_f64() * f64::from(self.rate)).round() as usize
    }

    /// The caller's turn: onset (minus pre-roll) to the last voiced frame (plus a tail).
    fn utterance(&self, turn: &Utterance) -> Pcm {
        let len = self.samples.len();
        let trailing = self.samples_in(turn.trailing).min(len);
        let end = len - trailing + self.samples_in(TAIL).min(trailing);
        let start = (len - trailing).saturating_sub(self.samples_in(turn.voiced + PRE_ROLL));
        Pcm {
            rate: self.rate,
            samples: self.samples.range(start..end).copied().collect(),
        }
    }
}

/// A local session's handle (what the call loop holds).
#[derive(Debug)]
pub struct LocalSession {
    ring: Arc<Mutex<AudioRing>>,
    commands: mpsc::Sender<Command>,
    events: EventStream,
}

#[derive(Debug)]
enum Command {
    Pause(Utterance),
    Commit(Utterance, Instant),
    Cancel { epoch: u64 },
}

impl LocalSession {
    fn send(&self, command: Command) -> Result<(), SessionError> {
        self.commands.try_send(command).map_err(|e| {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "session is not keeping up with commands",
                mpsc::error::TrySendError::Closed(_) => "session has stopped",
            };
            SessionError::new(BackendKind::Local, ErrorKind::Local, why)
        })
    }
}

impl Session for LocalSession {
    fn backend(&self) -> BackendKind {
        BackendKind::Local
    }

    fn push_audio(&mut self, pcm: &[i16]) -> Result<(), SessionError> {
        // Held for a copy of one frame; the task takes it only to snapshot a turn.
        match self.ring.lock() {
            Ok(mut ring) => ring.push(pcm),
            Err(poisoned) => poisoned.into_inner().push(pcm),
        }
        Ok(())
    }

    fn commit(&mut self, turn: Utterance) -> Result<(), SessionError> {
        self.send(Command::Commit(turn, Instant::now()))
    }

    fn pause(&mut self, turn: Utterance) -> Result<(), SessionError> {
        self.send(Command::Pause(turn))
    }

    fn cancel(&mut self, _played: Duration) -> Result<(), SessionError> {
        let epoch = self.events.cancel();
        self.send(Command::Cancel { epoch })
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>> {
        self.events.poll_event(cx)
    }

    fn close(&mut self) {
        // Dropping the sender ends the task's command loop; the reply task is aborted
        // by the task on its way out.
        let (closed, _) = mpsc::channel(1);
        self.commands = closed;
    }
}

type SttJob = JoinHandle<Result<Transcript, SessionError>>;

struct Speculation {
    end_of_speech: Instant,
    job: SttJob,
}

/// What a reply task reports to the session task.
enum ReplyOutput {
    Event(SessionEvent),
    /// The caller's words were heard (for the history).
    Heard(String),
    Finished {
        ends_call: bool,
    },
}

struct ReplyInProgress {
    task: JoinHandle<()>,
    output: mpsc::Receiver<ReplyOutput>,
    heard: Option<String>,
    said: String,
}

struct SessionTask {
    pipeline: LocalPipeline,
    ring: Arc<Mutex<AudioRing>>,
    config: SessionConfig,
    history: Vec<Turn>,
    events: EventSender,
    speculation: Option<Speculation>,
    reply: Option<ReplyInProgress>,
}

impl SessionTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let output = async {
                match self.reply.as_mut() {
                    Some(reply) => reply.output.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Pause(turn)) => self.speculate(turn),
                    Some(Command::Commit(turn, committed)) => self.answer(turn, committed).await,
                    Some(Command::Cancel { epoch }) => {
                        self.events.set_epoch(epoch);
                        if self.stop_reply(true).await.is_err() {
                            break;
                        }
                    }
                },
                output = output => {
                    if self.forward(output).await.is_err() {
                        break;
                    }
                }
            }
        }
        if let Some(reply) = self.reply.take() {
            reply.task.abort();
        }
        if let Some(speculation) = self.speculation.take() {
            speculation.job.abort();
        }
    }

    fn transcribe(&self, turn: &Utterance) -> SttJob {
        let pcm = match self.ring.lock() {
            Ok(ring) => ring.utterance(turn),
            Err(poisoned) => poisoned.into_inner().utterance(turn),
        };
        let stt = self.pipeline.stt.clone();
        let language = Some(self.config.language.clone());
        tokio::spawn(async move {
            stt.transcribe(pcm, language)
                .await
                .map_err(|e| SessionError::new(BackendKind::Local, ErrorKind::Local, e.to_string()))
        })
    }

    fn speculate(&mut self, turn: Utterance) {
        if let Some(old) = self.speculation.take() {
            old.job.abort();
        }
        debug!("caller paused: transcribing speculatively");
        self.speculation = Some(Speculation {
            end_of_speech: turn.end_of_speech,
            job: self.transcribe(&turn),
        });
    }

    async fn answer(&mut self, turn: Utterance, committed: Instant) {
        // A commit while a reply is still running means the caller spoke over it
        // without a barge-in: the old reply is superseded.
        if self.stop_reply(false).await.is_err() {
            return;
        }
        let job = match self.speculation.take() {
            Some(s) if s.end_of_speech == turn.end_of_speech => s.job,
            Some(stale) => {
                stale.job.abort();
                self.transcribe(&turn)
            }
            None => self.transcribe(&turn),
        };
        let (tx, output) = mpsc::channel(32);
        let work = ReplyWork {
            pipeline: self.pipeline.clone(),
            history: self.history.clone(),
            rate: self.config.rate,
            out: tx,
        };
        self.reply = Some(ReplyInProgress {
            task: tokio::spawn(work.run(job, committed)),
            output,
            heard: None,
            said: String::new(),
        });
    }

    /// Forwards one reply output; `Err` when the handle is gone.
    async fn forward(&mut self, output: Option<ReplyOutput>) -> Result<(), ()> {
        let Some(reply) = self.reply.as_mut() else {
            return Ok(());
        };
        let event = match output {
            Some(ReplyOutput::Event(event)) => {
                if let SessionEvent::ReplyText(text) = &event {
                    reply.said.push_str(text);
                }
                event
            }
            Some(ReplyOutput::Heard(text)) => {
                reply.heard = Some(text.clone());
                SessionEvent::CallerText(text)
            }
            Some(ReplyOutput::Finished { ends_call }) => {
                self.finish_reply();
                SessionEvent::ReplyDone(ReplyDone {
                    cancelled: false,
                    ends_call,
                    usage: None,
                })
            }
            // The reply task ended without finishing (it reported an error first): the
            // turn is still over for the call loop.
            None => {
                self.finish_reply();
                SessionEvent::ReplyDone(ReplyDone {
                    cancelled: false,
                    ends_call: false,
                    usage: None,
                })
            }
        };
        if self.events.send(event).await {
            Ok(())
        } else {
            Err(())
        }
    }

    fn finish_reply(&mut self) {
        if let Some(reply) = self.reply.take() {
            self.remember(reply.heard, reply.said);
        }
    }

    fn remember(&mut self, heard: Option<String>, said: String) {
        if let Some(heard) = heard.filter(|t| !t.is_empty()) {
            self.history.push(Turn {
                speaker: Speaker::Caller,
                text: heard,
            });
        }
        let said = said.trim();
        if !said.is_empty() {
            self.history.push(Turn {
                speaker: Speaker::Agent,
                text: said.to_owned(),
            });
        }
    }

    /// Aborts the reply in progress, if any. A barge-in (`announce`) reports it as a
    /// cancelled reply. `Err` when the handle is gone.
    async fn stop_reply(&mut self, announce: bool) -> Result<(), ()> {
        let Some(reply) = self.reply.take() else {
            return Ok(());
        };
        reply.task.abort();
        self.remember(reply.heard, reply.said);
        if announce {
            let done = SessionEvent::ReplyDone(ReplyDone {
                cancelled: true,
                ends_call: false,
                usage: None,
            });
            if !self.events.send(done).await {
                return Err(());
            }
        }
        Ok(())
    }
}

/// One reply: transcript → brain → sentence audio.
struct ReplyWork {
    pipeline: LocalPipeline,
    history: Vec<Turn>,
    rate: u32,
    out: mpsc::Sender<ReplyOutput>,
}

impl ReplyWork {
    async fn run(mut self, stt: SttJob, committed: Instant) {
        if let Err(error) = self.reply(stt, committed).await {
            let _ = self
                .out
                .send(ReplyOutput::Event(SessionEvent::Error(error)))
                .await;
        }
    }

    async fn emit(&self, event: SessionEvent) -> Result<(), SessionError> {
        self.out
            .send(ReplyOutput::Event(event))
            .await
            .map_err(|_| local_error("session stopped"))
    }

    async fn reply(&mut self, stt: SttJob, committed: Instant) -> Result<(), SessionError> {
        let transcript = stt
            .await
            .map_err(|e| local_error(format!("speech recognition task failed: {e}")))??;
        let heard_at = Instant::now();
        let text = if is_noise(&transcript.text) {
            String::new()
        } else {
            transcript.text
        };
        self.emit(SessionEvent::StageLatency {
            stage: Stage::Stt,
            took: heard_at.saturating_duration_since(committed),
        })
        .await?;
        let _ = self.out.send(ReplyOutput::Heard(text.clone())).await;
        if text.is_empty() {
            // Noise or a cough: nothing to answer.
            let _ = self
                .out
                .send(ReplyOutput::Finished { ends_call: false })
                .await;
            return Ok(());
        }
        self.history.push(Turn {
            speaker: Speaker::Caller,
            text,
        });
        let mut reply = self
            .pipeline
            .brain
            .respond(&self.history)
            .map_err(|e| local_error(e.to_string()))?;
        let mut pending = String::new();
        let mut first_token: Option<Instant> = None;
        let mut first_audio = false;
        let mut open = true;
        while open {
            let chunk = reply.chunks.recv().await;
            match chunk {
                Some(Ok(piece)) => {
                    if first_token.is_none() {
                        let now = Instant::now();
                        first_token = Some(now);
                        self.emit(SessionEvent::StageLatency {
                            stage: Stage::LlmFirstToken,
                            took: now.saturating_duration_since(heard_at),
                        })
                        .await?;
                    }
                    self.emit(SessionEvent::ReplyText(piece.clone())).await?;
                    pending.push_str(&piece);
                }
                Some(Err(e)) => return Err(local_error(e.to_string())),
                None => open = false,
            }
            // Speak every sentence that is complete (all but the last piece while the
            // brain is still talking).
            let pieces = sentences(&pending);
            let complete = if open {
                pieces.len().saturating_sub(1)
            } else {
                pieces.len()
            };
            if complete == 0 {
                continue;
            }
            let ready: Vec<String> = pieces[..complete].iter().map(|s| (*s).to_owned()).collect();
            let rest = if open {
                pieces.last().map(|s| (*s).to_owned()).unwrap_or_default()
            } else {
                String::new()
            };
            pending = rest;
            for sentence in ready {
                let pcm = self.speak(&sentence).await?;
                if !first_audio {
                    first_audio = true;
                    let since = first_token.unwrap_or(heard_at);
                    self.emit(SessionEvent::StageLatency {
                        stage: Stage::TtsFirstAudio,
                        took: since.elapsed(),
                    })
                    .await?;
                }
                self.emit(SessionEvent::ReplyAudio(pcm)).await?;
            }
        }
        let _ = self
            .out
            .send(ReplyOutput::Finished {
                ends_call: reply.ends_call,
            })
            .await;
        Ok(())
    }

    /// One sentence's audio at the call's rate: from the phrase cache, else synthesized.
    async fn speak(&self, sentence: &str) -> Result<Vec<i16>, SessionError> {
        let cached = self.pipeline.phrases.as_ref().and_then(|c| c.get(sentence));
        let pcm = match cached {
            Some(pcm) => pcm,
            None => {
                let _slot = self
                    .pipeline
                    .tts_slots
                    .acquire()
                    .await
                    .map_err(|_| local_error("speech synthesis stopped"))?;
                let voice = self.pipeline.voice.clone();
                let sentence = sentence.to_owned();
                tokio::task::spawn_blocking(move || voice.synthesize_sentence(&sentence))
                    .await
                    .map_err(|e| local_error(format!("speech synthesis task failed: {e}")))?
                    .map_err(|e| local_error(e.to_string()))?
            }
        };
        resample_clip(&pcm.samples, pcm.rate, self.rate).map_err(|e| {
            warn!(error = %e, "could not resample reply audio");
            local_error(e.to_string())
        })
    }
}

fn local_error(message: impl Into<String>) -> SessionError {
    SessionError::new(BackendKind::Local, ErrorKind::Local, message)
}

/// Whisper's way of saying it heard nothing: empty, or only bracketed non-speech tags
/// such as "[BLANK_AUDIO]" or "(coughs)".
fn is_noise(text: &str) -> bool {
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '[' | '(' | '*' => depth += 1,
            ']' | ')' => depth -= 1,
            c if c.is_alphanumeric() && depth <= 0 => return false,
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_tags_are_not_words() {
        assert!(is_noise(""));
        assert!(is_noise(" [BLANK_AUDIO] "));
        assert!(is_noise("(coughs) [Music]"));
        assert!(!is_noise("Yes."));
        assert!(!is_noise("[laughs] okay then"));
    }

    fn turn(voiced_ms: u64, trailing_ms: u64) -> Utterance {
        Utterance {
            end_of_speech: Instant::now(),
            voiced: Duration::from_millis(voiced_ms),
            trailing: Duration::from_millis(trailing_ms),
        }
    }

    #[test]
    fn the_utterance_is_cut_around_the_voiced_part() {
        let mut ring = AudioRing::new(1000);
        // 1 s of silence (0), 0.5 s of speech (1), 0.5 s of silence (2).
        ring.push(&[0; 1000]);
        ring.push(&[1; 500]);
        ring.push(&[2; 500]);
        let pcm = ring.utterance(&turn(500, 500));
        // 200 ms pre-roll + 500 ms speech + 150 ms tail.
        assert_eq!(pcm.samples.len(), 200 + 500 + 150);
        assert_eq!(&pcm.samples[..200], &[0; 200][..]);
        assert_eq!(&pcm.samples[200..700], &[1; 500][..]);
        assert_eq!(&pcm.samples[700..], &[2; 150][..]);
    }

    #[test]
    fn the_ring_keeps_only_the_latest_audio_and_clamps_odd_turns() {
        let mut ring = AudioRing::new(100);
        for i in 0..40 {
            ring.push(&[i; 100]);
        }
        assert_eq!(ring.samples.len(), 3000);
        assert_eq!(ring.samples.front(), Some(&10));
        // A turn longer than what is kept gives what is kept, never a panic.
        let pcm = ring.utterance(&turn(60_000, 90_000));
        assert!(pcm.samples.len() <= 3000);
        let mut small = AudioRing::new(100);
        small.push(&[7; 5000]);
        assert_eq!(small.samples.len(), 3000);
    }
}
