//! One call, one task: FreeSWITCH channel → unicast media → VAD/endpointer → backend
//! session → playout → paced frames back, with barge-in, a mid-call switch to the local
//! backend when the provider fails, metrics and the cost record.
//!
//! The task owns all of the call's state; nothing here is shared with other calls except
//! the read-only [`Services`]. Every wait is on an event (a frame, a backend event, a
//! 20 ms tick, the channel), so tests can run it under paused time.

pub mod freeswitch;
pub mod link;
pub mod playout;
pub mod services;
pub mod slots;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use esl_bridge::media::UnicastSender;
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
use crate::telemetry::call_record::{CallIdentity, Role, Transcript};
use crate::telemetry::cost_log::CallCost;
use freeswitch::FreeswitchLink;
pub use link::{CallNote, CallerLink, Heard};
use playout::Playout;
pub use services::Services;
pub use slots::CallSlot;

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
    /// Turned away unanswered: the engine was at `max_calls`.
    Busy,
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
            Self::Busy => "busy",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Who is calling and how their audio is carried.
#[derive(Debug)]
pub struct CallSetup {
    /// Call id, caller hash, DID, source.
    pub identity: CallIdentity,
    /// Audio rate both ways (Hz).
    pub rate: u32,
    /// The caller's line is G.711 µ-law (the provider may take it as is).
    pub telephony_ulaw: bool,
    /// The call's place under `max_calls`, held until it ends; `None`: the engine is
    /// full and the call is turned away before its link is set up.
    pub slot: Option<CallSlot>,
}

/// Serves one FreeSWITCH call to its end; never panics on what FreeSWITCH or a backend
/// sends; always writes a cost record.
pub async fn serve_call(call: Call, services: Arc<Services>) -> Outcome {
    let channel = call.channel().clone();
    let setup = CallSetup {
        identity: CallIdentity {
            call_id: channel.unique_id.clone(),
            source: "freeswitch",
            did: channel.destination_number.clone(),
            caller_hash: services.hasher.hash(&channel.caller_id_number),
        },
        rate: channel.read_rate,
        telephony_ulaw: channel.read_codec.eq_ignore_ascii_case("PCMU"),
        slot: services.try_admit(),
    };
    let media_ip = services.config.server.media_ip;
    info!(call_id = %setup.identity.call_id, codec = %channel.read_codec, "FreeSWITCH call");
    let metrics = services.metrics.clone();
    let ports = services.fs_media_ports.clone();
    serve(
        setup,
        services,
        FreeswitchLink::connect(call, media_ip, &ports, metrics),
    )
    .await
}

/// Serves one call over any transport: `connect` sets up the caller's link and the
/// sender of reply audio. Counts the call, and writes its cost record and call record
/// however it ends.
pub async fn serve<L, C>(setup: CallSetup, services: Arc<Services>, connect: C) -> Outcome
where
    L: CallerLink,
    C: Future<Output = anyhow::Result<(L, UnicastSender)>> + Send,
{
    let identity = setup.identity.clone();
    let span = info_span!("call", call_id = %identity.call_id, caller = %identity.caller_hash);
    async move {
        services.metrics.calls_active.inc();
        let started = SystemTime::now();
        let mut cost = CallCost::start_at(
            identity.call_id.clone(),
            identity.caller_hash.clone(),
            BackendKind::Local,
            started,
        );
        let mut transcript = Transcript::start();
        info!(did = %identity.did, source = identity.source, rate = setup.rate, "call started");
        let outcome = match &setup.slot {
            // `connect` is dropped unawaited: a FreeSWITCH call's socket closes without
            // an answer, and FreeSWITCH resumes its dialplan (the fallback).
            None => {
                warn!(
                    max_calls = services.config.server.max_calls,
                    "engine full: call turned away unanswered"
                );
                Outcome::Busy
            }
            Some(_) => match connect.await {
                Ok((link, tx)) => {
                    converse(link, tx, &setup, &services, &mut cost, &mut transcript).await
                }
                Err(e) => {
                    warn!(error = %e, "call setup failed");
                    Outcome::Error
                }
            },
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
        let call_record = transcript.finish(identity, started, ended, outcome.as_str());
        let cost_log = services.cost_log.clone();
        let call_log = services.call_records.clone();
        let written = tokio::task::spawn_blocking(move || {
            let cost = cost_log.append(&record, ended).map(drop);
            let call = call_log.map_or(Ok(()), |log| log.append(&call_record, ended).map(drop));
            (cost, call)
        })
        .await;
        match written {
            Ok((cost, call)) => {
                if let Err(e) = cost {
                    warn!(error = %e, "cost record not written");
                }
                if let Err(e) = call {
                    warn!(error = %e, "call record not written");
                }
            }
            Err(e) => warn!(error = %e, "record task failed"),
        }
        info!(outcome = outcome.as_str(), "call ended");
        outcome
    }
    .instrument(span)
    .await
}

/// The conversation: greeting, then caller audio → endpointer → backend → playout until
/// the call ends; then the link is closed.
async fn converse<L: CallerLink>(
    mut link: L,
    tx: UnicastSender,
    setup: &CallSetup,
    services: &Services,
    cost: &mut CallCost,
    transcript: &mut Transcript,
) -> Outcome {
    let rate = setup.rate;
    let outcome = match detector_for_call(services.silero.as_ref(), rate) {
        Ok(vad) => {
            let profile = services.config.calls.for_did(&setup.identity.did).clone();
            let decision = services.fleet.backend_for_new_call();
            let endpointer = Endpointer::new(EndpointerConfig {
                hangover: profile.end_of_turn_ms / 20,
                ..EndpointerConfig::default()
            });
            let mut task = CallTask {
                policy: CallPolicy::new(&services.config.failover, decision.backend),
                opening: None,
                ready_provider: None,
                services,
                profile,
                rate,
                telephony_ulaw: setup.telephony_ulaw,
                tx,
                vad,
                endpointer,
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
                transcript,
                notes: Vec::new(),
            };
            task.notes.push(CallNote::Started {
                call_id: setup.identity.call_id.clone(),
                backend: BackendKind::Local,
                rate,
            });
            let outcome = task.run(&mut link).await;
            if let Some(mut session) = task.session.take() {
                session.close();
            }
            if let Some(handle) = task.opening.take() {
                handle.abort();
            }
            task.tx.flush();
            for note in task.notes.drain(..) {
                link.note(note);
            }
            outcome
        }
        Err(e) => {
            warn!(error = %e, "no voice detector for this call");
            Outcome::Error
        }
    };
    link.note(CallNote::End {
        outcome: outcome.as_str(),
    });
    link.close(outcome).await;
    outcome
}

/// The turn being answered.
#[derive(Debug, Clone, Copy)]
struct TurnInFlight {
    utterance: Utterance,
    /// First reply text from the backend.
    first_token: Option<Instant>,
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
    transcript: &'a mut Transcript,
    /// Notes for the caller's link, sent after each event.
    notes: Vec<CallNote>,
}

impl CallTask<'_> {
    /// Runs the call until it ends; the caller's link brings audio and the hang-up and
    /// receives the call's notes.
    async fn run<L: CallerLink>(&mut self, link: &mut L) -> Outcome {
        let services = self.services;
        if services.is_draining() {
            // Shutting down: a polite message instead of a conversation, then hang up.
            self.say_in_english(services::DRAINING);
            self.ending = Some(Outcome::Rejected);
        } else {
            // The call starts on the local pipeline at once (the greeting plays while the
            // provider connects) and moves to the provider when it is ready, between turns.
            self.session = Some(Box::new(services.local.open(self.session_config())));
            if self.policy.backend() == BackendKind::Provider {
                self.open_provider();
            }
            self.say(&self.profile.greeting.clone());
        }
        let max = Duration::from_secs(services.config.server.max_call_secs);
        let deadline = tokio::time::sleep(max);
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut samples: Vec<i16> = Vec::with_capacity(self.playout.frame_len());
        let mut end_calls = services.calls_ended();
        loop {
            for note in self.notes.drain(..) {
                link.note(note);
            }
            let session = self.session.as_mut();
            let backend_event = async {
                match session {
                    Some(s) => next_event(s.as_mut()).await,
                    None => std::future::pending().await,
                }
            };
            let opening = self.opening.as_mut();
            let opened = async {
                match opening {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = opened => {
                    self.opening = None;
                    self.provider_opened(result.unwrap_or_else(|e| Err(SessionError::new(
                        BackendKind::Provider,
                        ErrorKind::Connect,
                        format!("connect task failed: {e}"),
                    ).fatal())));
                }
                heard = link.next_frame(&mut samples) => match heard {
                    Ok(Heard::Frame) => self.caller_frame(&samples).await,
                    Ok(Heard::Gone) => return Outcome::CallerHangup,
                    Err(e) => {
                        warn!(error = %e, "caller media failed");
                        return Outcome::Error;
                    }
                },
                event = backend_event => self.backend_event(event).await,
                _ = ticks.tick() => {
                    self.feed_sender();
                    if let Some(outcome) = self.ending {
                        if self.playout.is_empty() && self.tx.queued() == 0 {
                            return outcome;
                        }
                    }
                    self.check_deadline().await;
                }
                () = &mut deadline => {
                    info!("maximum call duration reached");
                    return Outcome::MaxDuration;
                }
                // Only ever set to true; the sender lives as long as the services.
                Ok(()) = end_calls.changed() => return Outcome::Shutdown,
            }
        }
    }

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
        self.switched(BackendKind::Provider, "provider_ready");
    }

    /// The call now runs on `to`: cost record and the caller's link learn why.
    fn switched(&mut self, to: BackendKind, reason: &str) {
        self.cost.switch(to, reason, SystemTime::now());
        self.notes.push(CallNote::Backend {
            backend: to,
            reason: reason.to_owned(),
        });
    }

    fn count_failover(&mut self, reason: &FailoverReason, e: &SessionError) {
        warn!(error = %e, reason = reason.as_str(), detail = %reason, "provider unusable: this call continues on the local backend");
        self.services.metrics.backend_error(e.backend, e.kind);
        self.services
            .metrics
            .provider_failover_total
            .with_label_values(&[reason.as_str()])
            .inc();
        self.switched(BackendKind::Local, reason.as_str());
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
                self.notes.push(CallNote::SpeechStarted);
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
            first_token: None,
            first_audio: None,
            filled: false,
        });
        self.policy.turn_started(utterance.end_of_turn());
        self.services.metrics.stage(
            Stage::Endpoint,
            self.backend(),
            utterance.trailing.as_secs_f64() * 1e3,
        );
        self.reply_text.clear();
        self.notes.push(CallNote::TurnEnd {
            voiced_ms: utterance.voiced.as_millis() as u64,
        });
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
        self.notes.push(CallNote::Bargein { ms: ms as u64 });
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
        self.remember_reply(true);
        self.turn = None;
    }

    fn backend(&self) -> BackendKind {
        self.session
            .as_ref()
            .map_or(BackendKind::Local, |s| s.backend())
    }

    /// The reply so far goes into the history (the brain's context) and the transcript.
    fn remember_reply(&mut self, interrupted: bool) {
        let said = std::mem::take(&mut self.reply_text);
        if said.trim().is_empty() {
            return;
        }
        let first_audio = self.turn.and_then(|t| {
            t.first_audio.map(|at| {
                at.saturating_duration_since(Instant::from_std(t.utterance.end_of_speech))
            })
        });
        self.transcript
            .agent(&said, self.backend(), first_audio, interrupted);
        self.history.push(Turn {
            speaker: Speaker::Agent,
            text: said.trim().to_owned(),
        });
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
                    self.transcript.caller(&text, backend);
                    self.notes.push(CallNote::Transcript {
                        role: Role::Caller,
                        text: text.trim().to_owned(),
                    });
                    self.history.push(Turn {
                        speaker: Speaker::Caller,
                        text,
                    });
                }
            }
            SessionEvent::ReplyText(text) => {
                if let Some(turn) = self.turn.as_mut() {
                    if turn.first_token.is_none() {
                        let now = Instant::now();
                        turn.first_token = Some(now);
                        let eos = Instant::from_std(turn.utterance.end_of_speech);
                        self.notes.push(CallNote::Mark {
                            name: "first_token",
                            ms: now.saturating_duration_since(eos).as_millis() as u64,
                            backend,
                        });
                    }
                }
                self.reply_text.push_str(&text);
                self.notes.push(CallNote::Transcript {
                    role: Role::Agent,
                    text,
                });
            }
            SessionEvent::ReplyAudio(pcm) => {
                if let Some(turn) = self.turn.as_mut() {
                    if turn.first_audio.is_none() {
                        let now = Instant::now();
                        turn.first_audio = Some(now);
                        let eos = Instant::from_std(turn.utterance.end_of_speech);
                        let ms = now.saturating_duration_since(eos).as_secs_f64() * 1e3;
                        self.services.metrics.e2e(backend, ms);
                        // The fleet judges the backend's response, not the caller's
                        // endpointing wait (docs/decisions/0008-failover-yardstick.md).
                        let end_of_turn = Instant::from_std(turn.utterance.end_of_turn());
                        self.services
                            .fleet
                            .record_turn(backend, now.saturating_duration_since(end_of_turn));
                        info!(
                            backend = backend.as_str(),
                            first_audio_ms = ms as u64,
                            "reply started"
                        );
                        // A turn counts as answered once the caller hears the reply,
                        // even if they hang up or interrupt before it ends.
                        self.cost.turn();
                        self.notes.push(CallNote::Mark {
                            name: "first_audio",
                            ms: ms as u64,
                            backend,
                        });
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
                    Stage::Endpoint => {}
                }
            }
            SessionEvent::ReplyDone(done) => {
                if let Some(usage) = &done.usage {
                    self.cost.add_usage(usage);
                }
                self.notes.push(CallNote::ReplyDone {
                    cancelled: done.cancelled,
                });
                if done.cancelled {
                    return;
                }
                self.remember_reply(false);
                let response = self.turn.and_then(|t| {
                    t.first_audio.map(|at| {
                        at.saturating_duration_since(Instant::from_std(t.utterance.end_of_turn()))
                    })
                });
                self.turn = None;
                if let CallDecision::MoveToLocal(reason) =
                    self.policy.turn_finished(backend, response)
                {
                    self.move_to_local(&reason).await;
                }
                self.turn_boundary().await;
                self.turns += 1;
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
                // A provider error before the turn's first audio leaves the caller
                // waiting for a reply that will not come (the failed response ends the
                // turn without audio): answer it locally now, as for a hard failure.
                // (Not for a refused request, e.g. a late truncate: that says nothing
                // about this turn's response.)
                let unanswered = self.turn.as_ref().is_some_and(|t| t.first_audio.is_none());
                let response_failed = matches!(
                    e.kind,
                    ErrorKind::Server | ErrorKind::RateLimit | ErrorKind::Timeout | ErrorKind::Auth
                );
                if e.fatal || (e.backend == BackendKind::Provider && unanswered && response_failed)
                {
                    // Counted (metric, fleet) where the switch happens.
                    self.backend_failed(e).await;
                } else {
                    self.services.metrics.backend_error(e.backend, e.kind);
                    if e.backend == BackendKind::Provider {
                        self.services.fleet.record_error(e.backend, e.kind);
                    }
                    // One line per failed turn: under saturation this is what tells the
                    // operator which calls heard an apology instead of an answer.
                    warn!(error = %e, kind = e.kind.as_str(), "backend error");
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
        self.switched(BackendKind::Local, reason);
        self.open_local_and_replay().await;
    }

    /// The call leaves the provider for good (slow turns), at a turn boundary.
    async fn move_to_local(&mut self, reason: &FailoverReason) {
        warn!(reason = reason.as_str(), detail = %reason, "this call moves to the local backend");
        self.services
            .metrics
            .provider_failover_total
            .with_label_values(&[reason.as_str()])
            .inc();
        self.switched(BackendKind::Local, reason.as_str());
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
        warn!(reason = reason.as_str(), detail = %reason, "provider missed the first-audio deadline: this turn is answered locally");
        self.services.fleet.record_turn(
            BackendKind::Provider,
            now.saturating_duration_since(Instant::from_std(turn.utterance.end_of_turn())),
        );
        if let Some(mut session) = self.session.take() {
            let _ = session.cancel(Duration::ZERO);
            session.close();
        }
        self.switch_to_local(reason.as_str()).await;
    }
}
