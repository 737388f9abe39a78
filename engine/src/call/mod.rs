//! One call, one task: FreeSWITCH channel → unicast media → VAD/endpointer → backend
//! session → playout → paced frames back, with barge-in, a mid-call switch to the local
//! backend when the provider fails, metrics and the cost record.
//!
//! The task owns all of the call's state; nothing here is shared with other calls except
//! the read-only [`Services`]. Every wait is on an event (a frame, a backend event, a
//! 20 ms tick, the channel), so tests can run it under paused time.

pub mod playout;
pub mod services;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use esl_bridge::connection::Incoming;
use esl_bridge::media::{free_udp_port, MediaFormat, UnicastConfig, UnicastLeg, UnicastSender};
use esl_bridge::outbound::Call;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::audio::endpointer::{EndpointEvent, Endpointer, EndpointerConfig};
use crate::audio::vad::{detector_for_call, VoiceDetector};
use crate::backend::local::brain::{Speaker, Turn};
use crate::backend::provider::ProviderSession;
use crate::backend::{
    next_event, BackendKind, ErrorKind, Session, SessionConfig, SessionError, SessionEvent, Stage,
    Utterance,
};
use crate::config::CallProfile;
use crate::failover::{CallDecision, CallPolicy, FailoverReason};
use crate::telemetry::cost_log::CallCost;
use playout::Playout;
pub use services::Services;

/// Frames handed to the sender ahead of real time: a barge-in flush drops at most this.
const AHEAD_FRAMES: usize = 3;
/// Caller audio kept for replaying a turn to the local backend after a mid-call switch.
const REPLAY_SECONDS: u32 = 30;
/// A reply later than this after the end of speech gets the filler phrase first.
const FILLER_AFTER: Duration = Duration::from_millis(1000);
/// Consecutive voiced frames needed to interrupt our own speech (echo/noise guard).
const BARGE_IN_FRAMES: u32 = 10;
/// Frame instants remembered for mapping endpointer frame numbers to times.
const INSTANTS_KEPT: usize = 256;

/// How a call ended (`tom_calls_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// We said goodbye and hung up.
    Completed,
    /// The caller hung up.
    CallerHangup,
    /// The turn limit was reached.
    MaxTurns,
    /// The duration limit was reached.
    MaxDuration,
    /// Something failed; the call was ended.
    Error,
    /// Refused while draining.
    Rejected,
    /// Ended by the engine's shutdown.
    Shutdown,
}

impl Outcome {
    /// The metric and cost-log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::CallerHangup => "caller_hangup",
            Self::MaxTurns => "max_turns",
            Self::MaxDuration => "max_duration",
            Self::Error => "error",
            Self::Rejected => "rejected",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Serves one FreeSWITCH call to its end; never panics on what FreeSWITCH or a backend
/// sends; always writes a cost record.
pub async fn serve_call(call: Call, services: Arc<Services>) -> Outcome {
    let channel = call.channel().clone();
    let caller = services.hasher.hash(&channel.caller_id_number);
    let span = info_span!("call", call_id = %channel.unique_id, caller = %caller);
    async move {
        services.metrics.calls_active.inc();
        let started = SystemTime::now();
        let mut cost = CallCost::start_at(
            channel.unique_id.clone(),
            caller.clone(),
            BackendKind::Local,
            started,
        );
        info!(did = %channel.destination_number, codec = %channel.read_codec, rate = channel.read_rate, "call started");
        let outcome = match run(call, &services, &mut cost).await {
            Ok(outcome) => outcome,
            Err(e) => {
                warn!(error = %e, "call failed");
                Outcome::Error
            }
        };
        services.metrics.calls_active.dec();
        services
            .metrics
            .calls_total
            .with_label_values(&[outcome.as_str()])
            .inc();
        let ended = SystemTime::now();
        let record = cost.finish(outcome.as_str(), ended, &services.config.prices);
        for (component, eur) in [
            ("stt", record.stt_cost_eur),
            ("llm", record.llm_cost_eur),
            ("tts", record.tts_cost_eur),
            ("provider", record.provider_cost_eur),
        ] {
            services
                .metrics
                .cost_eur_total
                .with_label_values(&[component])
                .inc_by(eur);
        }
        let log = services.cost_log.clone();
        match tokio::task::spawn_blocking(move || log.append(&record, ended)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "cost record not written"),
            Err(e) => warn!(error = %e, "cost record task failed"),
        }
        info!(outcome = outcome.as_str(), "call ended");
        outcome
    }
    .instrument(span)
    .await
}

async fn run(mut call: Call, services: &Services, cost: &mut CallCost) -> anyhow::Result<Outcome> {
    let channel = call.channel().clone();
    let rate = channel.read_rate;
    let format = MediaFormat::l16(rate)?;
    let media_ip: IpAddr = services.config.server.media_ip;
    let fs_side = SocketAddr::new(media_ip, free_udp_port(media_ip)?);
    let mut unicast = UnicastConfig::new(format, fs_side);
    unicast.bind = SocketAddr::new(media_ip, 0);
    let leg = UnicastLeg::bind(unicast).await?;
    call.answer().await?;
    call.start_unicast(leg.params()).await?;
    let (mut rx, tx) = leg.split()?;
    let profile = services
        .config
        .calls
        .for_did(&channel.destination_number)
        .clone();
    let vad = detector_for_call(services.silero.as_ref(), rate)?;
    let decision = services.fleet.backend_for_new_call();
    let mut task = CallTask {
        policy: CallPolicy::new(&services.config.failover, decision.backend),
        opening: None,
        ready_provider: None,
        services,
        profile,
        rate,
        telephony_ulaw: channel.read_codec.eq_ignore_ascii_case("PCMU"),
        tx,
        vad,
        endpointer: Endpointer::new(EndpointerConfig::default()),
        instants: VecDeque::with_capacity(INSTANTS_KEPT),
        onset: None,
        voiced_run: 0,
        replay: VecDeque::new(),
        playout: Playout::new(rate),
        frame: Vec::new(),
        history: Vec::new(),
        session: None,
        turn: None,
        speaking: false,
        reply_text: String::new(),
        turns: 0,
        ending: None,
        cost,
    };
    if services.is_draining() {
        // Shutting down: a polite message instead of a conversation, then hang up.
        task.say_in_english(services::DRAINING);
        task.ending = Some(Outcome::Rejected);
    } else {
        // The call starts on the local pipeline at once (the greeting plays while the
        // provider connects) and moves to the provider when it is ready, between turns.
        task.session = Some(Box::new(services.local.open(task.session_config())));
        if decision.backend == BackendKind::Provider {
            task.open_provider();
        }
        task.say(&task.profile.greeting.clone());
    }
    let max = Duration::from_secs(services.config.server.max_call_secs);
    let deadline = tokio::time::sleep(max);
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut samples: Vec<i16> = Vec::with_capacity(format.samples_per_frame());
    let mut end_calls = services.calls_ended();
    let outcome = loop {
        let session = task.session.as_mut();
        let backend_event = async {
            match session {
                Some(s) => next_event(s.as_mut()).await,
                None => std::future::pending().await,
            }
        };
        let opening = task.opening.as_mut();
        let opened = async {
            match opening {
                Some(handle) => handle.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = opened => {
                task.opening = None;
                task.provider_opened(result.unwrap_or_else(|e| Err(SessionError::new(
                    BackendKind::Provider,
                    ErrorKind::Connect,
                    format!("connect task failed: {e}"),
                ).fatal())));
            }
            frame = rx.recv() => {
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => break Err(anyhow::Error::from(e)),
                };
                samples.clear();
                if let Some(iter) = frame.samples() {
                    samples.extend(iter);
                }
                task.caller_frame(&samples).await;
            }
            event = backend_event => task.backend_event(event).await,
            _ = ticks.tick() => {
                task.feed_sender();
                if let Some(outcome) = task.ending {
                    if task.playout.is_empty() && task.tx.queued() == 0 {
                        break Ok(outcome);
                    }
                }
                task.check_deadline().await;
            }
            event = call.next_event() => match event {
                Some(Incoming::Event(e)) if e.name() == Some("CHANNEL_HANGUP") => break Ok(Outcome::CallerHangup),
                Some(_) => {}
                None => break Ok(Outcome::CallerHangup),
            },
            () = &mut deadline => {
                info!("maximum call duration reached");
                break Ok(Outcome::MaxDuration);
            }
            // Only ever set to true; the sender lives as long as the services.
            Ok(()) = end_calls.changed() => break Ok(Outcome::Shutdown),
        }
    };
    if let Some(mut session) = task.session.take() {
        session.close();
    }
    if let Some(handle) = task.opening.take() {
        handle.abort();
    }
    let caller_left = matches!(outcome, Ok(Outcome::CallerHangup));
    task.tx.flush();
    drop(task);
    if !caller_left {
        let cause = if outcome.is_ok() {
            "NORMAL_CLEARING"
        } else {
            "NORMAL_TEMPORARY_FAILURE"
        };
        let _ = call.hangup(cause).await;
    }
    // Let the linger events arrive and the session close.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while call.next_event().await.is_some() {}
    })
    .await;
    outcome
}

/// The turn being answered.
#[derive(Debug, Clone, Copy)]
struct TurnInFlight {
    utterance: Utterance,
    /// First reply audio handed to the media leg.
    first_audio: Option<Instant>,
    /// The filler phrase was played for this turn.
    filled: bool,
}

type Opening = tokio::task::JoinHandle<Result<ProviderSession, SessionError>>;

struct CallTask<'a> {
    services: &'a Services,
    /// Per-call failover rules.
    policy: CallPolicy,
    /// A provider session being opened in the background.
    opening: Option<Opening>,
    /// An opened provider session waiting for the turn boundary.
    ready_provider: Option<ProviderSession>,
    profile: CallProfile,
    rate: u32,
    telephony_ulaw: bool,
    tx: UnicastSender,
    vad: Box<dyn VoiceDetector>,
    endpointer: Endpointer,
    /// (frame number, arrival) of recent frames.
    instants: VecDeque<(u64, Instant)>,
    /// The current utterance's onset (first voiced frame's arrival).
    onset: Option<Instant>,
    /// Consecutive voiced frames (barge-in guard).
    voiced_run: u32,
    /// Recent caller audio, for replaying a turn to another backend.
    replay: VecDeque<i16>,
    playout: Playout,
    frame: Vec<i16>,
    history: Vec<Turn>,
    session: Option<Box<dyn Session>>,
    turn: Option<TurnInFlight>,
    /// Reply audio is queued or playing.
    speaking: bool,
    reply_text: String,
    turns: u32,
    /// The call ends once the playout is empty.
    ending: Option<Outcome>,
    cost: &'a mut CallCost,
}

impl CallTask<'_> {
    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            rate: self.rate,
            telephony_ulaw: self.telephony_ulaw,
            language: self.profile.language.clone(),
            instructions: self.profile.instructions.clone(),
            history: self.history.clone(),
        }
    }

    /// Starts connecting to the provider without holding up the call.
    fn open_provider(&mut self) {
        let Some(provider) = self.services.provider.clone() else {
            return;
        };
        if self.opening.is_some() {
            return;
        }
        let config = self.session_config();
        self.opening = Some(tokio::spawn(async move { provider.open(config).await }));
    }

    fn provider_opened(&mut self, result: Result<ProviderSession, SessionError>) {
        match result {
            Ok(session) => {
                self.services.fleet.record_connected();
                self.ready_provider = Some(session);
                if self.turn.is_none() {
                    self.swap_in_provider();
                }
            }
            Err(e) => {
                self.services.fleet.record_error(e.backend, e.kind);
                if let CallDecision::MoveToLocal(reason) = self.policy.hard_failure(e.kind) {
                    self.count_failover(&reason, &e);
                }
            }
        }
    }

    /// Between turns: the provider session that is ready replaces the local one.
    fn swap_in_provider(&mut self) {
        let Some(provider) = self.ready_provider.take() else {
            return;
        };
        // History may have grown while it connected; the provider gets it with the
        // next session when the call returns later, and this turn's context now.
        if let Some(mut old) = self.session.replace(Box::new(provider)) {
            old.close();
        }
        info!("call continues on the provider");
        self.cost
            .switch(BackendKind::Provider, "provider_ready", SystemTime::now());
    }

    fn count_failover(&mut self, reason: &FailoverReason, e: &SessionError) {
        warn!(error = %e, reason = reason.as_str(), %reason, "provider unusable: this call continues on the local backend");
        self.services.metrics.backend_error(e.backend, e.kind);
        self.services
            .metrics
            .provider_failover_total
            .with_label_values(&[reason.as_str()])
            .inc();
        self.cost
            .switch(BackendKind::Local, reason.as_str(), SystemTime::now());
    }

    /// Engine-wide messages (draining, apology) exist in the default voice only.
    fn say_in_english(&mut self, text: &str) {
        let language = std::mem::replace(&mut self.profile.language, "en".into());
        self.say(text);
        self.profile.language = language;
    }

    fn say(&mut self, text: &str) {
        match self
            .services
            .phrases
            .get(&self.profile.language, text, self.rate)
        {
            Some(pcm) => {
                if !self.speaking {
                    self.playout.start_reply();
                }
                self.playout.push(&pcm);
                self.speaking = true;
            }
            None => warn!(phrase = text, "phrase not in the cache; not played"),
        }
    }

    fn now_frame(&mut self) -> (u64, Instant) {
        let frame = self.endpointer.next_frame();
        let now = Instant::now();
        if self.instants.len() == INSTANTS_KEPT {
            self.instants.pop_front();
        }
        self.instants.push_back((frame, now));
        (frame, now)
    }

    fn instant_of(&self, frame: u64) -> Instant {
        self.instants
            .iter()
            .find(|(n, _)| *n == frame)
            .or_else(|| self.instants.front())
            .map_or_else(Instant::now, |(_, at)| *at)
    }

    fn utterance(&self, start: u64, last_voiced: u64, now_frame: u64) -> Utterance {
        Utterance {
            end_of_speech: self.instant_of(last_voiced).into_std(),
            voiced: Duration::from_millis((last_voiced.saturating_sub(start) + 1) * 20),
            trailing: Duration::from_millis(now_frame.saturating_sub(last_voiced) * 20),
        }
    }

    async fn caller_frame(&mut self, samples: &[i16]) {
        self.services
            .metrics
            .media_frames_total
            .with_label_values(&["in"])
            .inc();
        let (frame_no, now) = self.now_frame();
        let cap = (self.rate * REPLAY_SECONDS) as usize;
        let excess = (self.replay.len() + samples.len()).saturating_sub(cap);
        self.replay.drain(..excess.min(self.replay.len()));
        self.replay.extend(samples);
        if let Some(session) = self.session.as_mut() {
            if let Err(e) = session.push_audio(samples) {
                debug!(error = %e, "caller audio not taken by the backend");
            }
        }
        let voiced = match self.vad.is_voiced(samples) {
            Ok(v) => v,
            Err(e) => {
                debug!(error = %e, "voice detection failed on a frame");
                false
            }
        };
        self.voiced_run = if voiced { self.voiced_run + 1 } else { 0 };
        if self.speaking && self.onset.is_some() && self.voiced_run >= BARGE_IN_FRAMES {
            self.barge_in(now).await;
        }
        match self.endpointer.push(voiced) {
            Some(EndpointEvent::SpeechStart { frame }) => {
                self.onset = Some(self.instant_of(frame));
                // The caller talks over a reply that has not started yet: drop it.
                if self.turn.is_some() && !self.speaking {
                    self.cancel_reply(Duration::ZERO);
                }
            }
            Some(EndpointEvent::Pause { start, last_voiced }) => {
                let utterance = self.utterance(start, last_voiced, frame_no);
                if let Some(session) = self.session.as_mut() {
                    let _ = session.pause(utterance);
                }
            }
            Some(EndpointEvent::SpeechEnd { start, last_voiced }) => {
                self.onset = None;
                let utterance = self.utterance(start, last_voiced, frame_no);
                self.commit(utterance).await;
            }
            None => {}
        }
    }

    async fn commit(&mut self, utterance: Utterance) {
        if self.ending.is_some() {
            return;
        }
        self.turn = Some(TurnInFlight {
            utterance,
            first_audio: None,
            filled: false,
        });
        self.policy.turn_started(utterance.end_of_speech);
        self.reply_text.clear();
        info!(
            backend = self
                .session
                .as_ref()
                .map_or("none", |s| s.backend().as_str()),
            voiced_ms = utterance.voiced.as_millis() as u64,
            first_audio_due = self.policy.first_audio_due().is_some(),
            "caller turn ended"
        );
        let committed = match self.session.as_mut() {
            Some(session) => session.commit(utterance),
            None => return,
        };
        if let Err(e) = committed {
            self.backend_failed(e).await;
        }
    }

    async fn barge_in(&mut self, now: Instant) {
        let onset = self.onset.unwrap_or(now);
        let heard = self.playout.heard(self.tx.queued());
        self.tx.flush();
        self.playout.clear();
        self.speaking = false;
        self.cancel_reply(heard);
        let ms = now.saturating_duration_since(onset).as_secs_f64() * 1e3;
        self.services.metrics.bargein_ms.observe(ms);
        info!(
            bargein_ms = ms as u64,
            heard_ms = heard.as_millis() as u64,
            "barge-in"
        );
    }

    fn cancel_reply(&mut self, heard: Duration) {
        if let Some(session) = self.session.as_mut() {
            let _ = session.cancel(heard);
        }
        self.remember_reply();
        self.turn = None;
    }

    fn remember_reply(&mut self) {
        let said = std::mem::take(&mut self.reply_text);
        if !said.trim().is_empty() {
            self.history.push(Turn {
                speaker: Speaker::Agent,
                text: said.trim().to_owned(),
            });
        }
    }

    fn feed_sender(&mut self) {
        while self.tx.queued() < AHEAD_FRAMES && self.playout.next_frame(&mut self.frame) {
            if self.tx.push_samples(&self.frame).is_ok() {
                self.services
                    .metrics
                    .media_frames_total
                    .with_label_values(&["out"])
                    .inc();
            } else {
                self.services
                    .metrics
                    .media_frames_dropped_total
                    .with_label_values(&["bad_frame"])
                    .inc();
            }
        }
        if self.playout.is_empty() && self.tx.queued() == 0 {
            self.speaking = false;
        }
    }

    async fn backend_event(&mut self, event: Option<SessionEvent>) {
        let backend = self
            .session
            .as_ref()
            .map_or(BackendKind::Local, |s| s.backend());
        let Some(event) = event else {
            // The session ended on its own (after a fatal error it reported).
            self.session = None;
            if backend == BackendKind::Provider {
                self.switch_to_local("provider_failed_mid_call").await;
            } else {
                warn!("local session stopped; opening a new one");
                self.open_local_and_replay().await;
            }
            return;
        };
        match event {
            SessionEvent::CallerText(text) => {
                debug!(chars = text.len(), "caller turn transcribed");
                if !text.trim().is_empty() {
                    self.history.push(Turn {
                        speaker: Speaker::Caller,
                        text,
                    });
                }
            }
            SessionEvent::ReplyText(text) => self.reply_text.push_str(&text),
            SessionEvent::ReplyAudio(pcm) => {
                if let Some(turn) = self.turn.as_mut() {
                    if turn.first_audio.is_none() {
                        let now = Instant::now();
                        turn.first_audio = Some(now);
                        let eos = Instant::from_std(turn.utterance.end_of_speech);
                        let ms = now.saturating_duration_since(eos).as_secs_f64() * 1e3;
                        self.services.metrics.e2e(backend, ms);
                        self.services
                            .fleet
                            .record_turn(backend, now.saturating_duration_since(eos));
                        info!(
                            backend = backend.as_str(),
                            first_audio_ms = ms as u64,
                            "reply started"
                        );
                    }
                }
                if !self.speaking {
                    self.playout.start_reply();
                }
                self.playout.push(&pcm);
                self.speaking = true;
            }
            SessionEvent::StageLatency { stage, took } => {
                self.services
                    .metrics
                    .stage(stage, backend, took.as_secs_f64() * 1e3);
                match stage {
                    Stage::Stt => self.cost.add_stt(took),
                    Stage::LlmFirstToken => self.cost.add_llm(took),
                    Stage::TtsFirstAudio => self.cost.add_tts(took),
                }
            }
            SessionEvent::ReplyDone(done) => {
                if let Some(usage) = &done.usage {
                    self.cost.add_usage(usage);
                }
                if done.cancelled {
                    return;
                }
                self.remember_reply();
                let first_audio = self.turn.and_then(|t| {
                    t.first_audio.map(|at| {
                        at.saturating_duration_since(Instant::from_std(t.utterance.end_of_speech))
                    })
                });
                self.turn = None;
                if let CallDecision::MoveToLocal(reason) =
                    self.policy.turn_finished(backend, first_audio)
                {
                    self.move_to_local(&reason).await;
                }
                self.turn_boundary().await;
                self.turns += 1;
                self.cost.turn();
                if done.ends_call {
                    self.ending = Some(Outcome::Completed);
                } else if self.turns >= self.profile.max_turns {
                    let goodbye = self.profile.goodbye.clone();
                    self.say(&goodbye);
                    self.ending = Some(Outcome::MaxTurns);
                }
            }
            SessionEvent::SpeechStarted | SessionEvent::SpeechStopped => {}
            SessionEvent::Error(e) => {
                if e.fatal {
                    // Counted (metric, fleet) where the switch happens.
                    self.backend_failed(e).await;
                } else {
                    self.services.metrics.backend_error(e.backend, e.kind);
                    if e.backend == BackendKind::Provider {
                        self.services.fleet.record_error(e.backend, e.kind);
                    }
                    debug!(error = %e, "backend error");
                    if e.backend == BackendKind::Local && self.turn.is_some() {
                        self.say_in_english(services::APOLOGY);
                    }
                }
            }
        }
    }

    async fn backend_failed(&mut self, e: SessionError) {
        if e.backend == BackendKind::Local {
            self.services.metrics.backend_error(e.backend, e.kind);
        }
        if e.backend == BackendKind::Provider {
            self.services.fleet.record_error(e.backend, e.kind);
            let reason = match self.policy.hard_failure(e.kind) {
                CallDecision::MoveToLocal(reason) | CallDecision::AnswerTurnLocally(reason) => {
                    reason
                }
                CallDecision::Stay => FailoverReason::ProviderFailedMidCall { kind: e.kind },
            };
            self.count_failover(&reason, &e);
            if let Some(mut session) = self.session.take() {
                session.close();
            }
            self.open_local_and_replay().await;
        } else {
            warn!(error = %e, "local backend failed");
            self.say_in_english(services::APOLOGY);
        }
    }

    /// The provider session ended by itself (after reporting its error).
    async fn switch_to_local(&mut self, reason: &str) {
        self.services
            .metrics
            .provider_failover_total
            .with_label_values(&[reason])
            .inc();
        self.cost
            .switch(BackendKind::Local, reason, SystemTime::now());
        self.open_local_and_replay().await;
    }

    /// The call leaves the provider for good (slow turns), at a turn boundary.
    async fn move_to_local(&mut self, reason: &FailoverReason) {
        warn!(reason = reason.as_str(), %reason, "this call moves to the local backend");
        self.services
            .metrics
            .provider_failover_total
            .with_label_values(&[reason.as_str()])
            .inc();
        self.cost
            .switch(BackendKind::Local, reason.as_str(), SystemTime::now());
        if let Some(mut session) = self.session.take() {
            session.close();
        }
        self.open_local_and_replay().await;
    }

    /// Between turns: follow the per-call policy back to the provider, or bring in a
    /// provider session that connected during the turn.
    async fn turn_boundary(&mut self) {
        let on = self
            .session
            .as_ref()
            .map_or(BackendKind::Local, |s| s.backend());
        if on == BackendKind::Provider {
            return;
        }
        if self.ready_provider.is_some() {
            self.swap_in_provider();
            return;
        }
        let wants_provider = self.policy.backend() == BackendKind::Provider
            || self
                .policy
                .may_return_to_provider(self.services.fleet.state());
        if wants_provider {
            self.open_provider();
        }
    }

    /// Continues the call on the local backend; a turn in flight is answered there from
    /// the caller audio kept, with the filler first if the caller has waited long.
    async fn open_local_and_replay(&mut self) {
        let mut session: Box<dyn Session> =
            Box::new(self.services.local.open(self.session_config()));
        if let Some(turn) = self.turn {
            let now = Instant::now();
            let waited =
                now.saturating_duration_since(Instant::from_std(turn.utterance.end_of_speech));
            // The turn is answered again from the caller's audio, whether or not part
            // of the failed reply was heard: an unanswered question is worse than a
            // restart of the answer.
            let keep = (turn.utterance.voiced
                + turn.utterance.trailing
                + waited
                + Duration::from_millis(300))
            .as_secs_f64()
                * f64::from(self.rate);
            let skip = self.replay.len().saturating_sub(keep as usize);
            let audio: Vec<i16> = self.replay.iter().skip(skip).copied().collect();
            let _ = session.push_audio(&audio);
            let replayed = Utterance {
                trailing: turn.utterance.trailing + waited,
                ..turn.utterance
            };
            let _ = session.commit(replayed);
            self.reply_text.clear();
            // A reply cut off mid-sentence is dropped and bridged with the filler; one that
            // never started gets the filler only if the caller has waited long.
            let cut_off = turn.first_audio.is_some();
            if cut_off {
                self.tx.flush();
                self.playout.clear();
                self.speaking = false;
            }
            if (cut_off || waited + Duration::from_millis(300) >= FILLER_AFTER) && !turn.filled {
                let filler = self.profile.filler.clone();
                self.say(&filler);
                if let Some(t) = self.turn.as_mut() {
                    t.filled = true;
                }
            }
        }
        self.session = Some(session);
    }

    /// A provider that has not started its reply by the first-audio deadline: this turn
    /// is answered locally (and a second slow turn moves the call).
    async fn check_deadline(&mut self) {
        let Some(turn) = self.turn else { return };
        let on_provider = self
            .session
            .as_ref()
            .is_some_and(|s| s.backend() == BackendKind::Provider);
        if !on_provider || turn.first_audio.is_some() {
            return;
        }
        let Some(due) = self.policy.first_audio_due() else {
            return;
        };
        let now = Instant::now();
        if now.into_std() < due {
            return;
        }
        let reason = match self.policy.deadline_missed(now.into_std()) {
            CallDecision::Stay => return,
            CallDecision::AnswerTurnLocally(reason) | CallDecision::MoveToLocal(reason) => reason,
        };
        warn!(reason = reason.as_str(), %reason, "provider missed the first-audio deadline: this turn is answered locally");
        self.services.fleet.record_turn(
            BackendKind::Provider,
            now.saturating_duration_since(Instant::from_std(turn.utterance.end_of_speech)),
        );
        if let Some(mut session) = self.session.take() {
            let _ = session.cancel(Duration::ZERO);
            session.close();
        }
        self.switch_to_local(reason.as_str()).await;
    }
}
