//! A FreeSWITCH double: it places one call into an engine's ESL outbound listener and
//! plays the caller, for end-to-end tests of the engine and for `realtime-probe
//! --via-esl`. The engine is a black box reached over TCP (ESL) and UDP (unicast).
//!
//! ```no_run
//! # async fn demo(engine: std::net::SocketAddr) -> Result<(), probes::fs_double::DoubleError> {
//! use probes::fs_double::{CallSpec, FsDouble};
//! let call = FsDouble::call(engine, CallSpec::default()).await?;
//! call.wait_for_media().await?;
//! let speech = vec![3000i16; 16_000]; // 2 s at 8 kHz
//! call.play(&speech).await?;
//! let spoke = call.last_voiced_frame_sent(500.0).expect("voiced audio");
//! let reply = call.wait_for_reply_after(spoke, std::time::Duration::from_secs(5)).await?;
//! println!("e2e_ms = {}", (reply - spoke).as_millis());
//! call.hangup().await?;
//! # Ok(()) }
//! ```
//!
//! # What it mirrors, and from which recording
//!
//! All recordings are in the fixtures directory (`TOM_FIXTURES`, else
//! `../../shared/fixtures/freeswitch` from this package), made with FreeSWITCH 1.10.12.
//!
//! * **Connecting** like the `socket … async full` application: the double connects and
//!   sends nothing until the engine's `connect`, then answers with the recorded channel
//!   data of `esl-outbound/outbound_basic` (`Content-Type` near the end, values
//!   URL-encoded, `Reply-Text: %2BOK%0A`). Only the lines carrying the UUID, the caller
//!   number, the dialled number and (for 16 kHz) the codec change; every other line keeps
//!   its recorded bytes. The 16 kHz codec lines come from the G722 capture
//!   `media-unicast/outbound_unicast_g722_l16`. The recorded channel was answered by the
//!   fixtures' dialplan before `socket`; with the product's dialplan (`socket` only, the
//!   default here, see [`CallSpec::answered_by_dialplan`]) the four answer-state lines
//!   say `ringing` until the engine answers, as `esl-inbound/inbound_plain_all` shows for
//!   a channel before `answer`.
//! * **Command replies** with the recorded texts: `myevents` (`+OK Events Enabled`, then
//!   CHANNEL_PARK as the first event), `event <fmt> …`, `noevents`, `linger [N]`,
//!   `filter [delete] …`, `log N`/`nolog`, `sendmsg` (`+OK` at once), `exit` (`+OK bye`, the
//!   disconnect notice, close), unknown commands (`-ERR command not found`, as for
//!   `bogus_esl_command` in `esl-inbound/inbound_plain_all`). `api uuid_*` gives an
//!   `api/response` (`+OK\n`; `uuid_getvar` the bare value; `uuid_broadcast`
//!   `+OK Message sent`; `uuid_displace`/`uuid_record` `+OK Success`; another UUID
//!   `-ERR No such channel!`).
//! * **Applications** (`sendmsg` `execute`): CHANNEL_EXECUTE and CHANNEL_EXECUTE_COMPLETE
//!   from the recorded `answer` pair, carrying the `Event-UUID` as `Application-UUID` (a
//!   fresh one when none is sent), the argument from `execute-app-arg` or a text body,
//!   and `Application-Response` (`FILE PLAYED` for playback-like apps, else `_none_`).
//!   `answer` on an unanswered channel adds CHANNEL_ANSWER; `set`/`export` store the
//!   variable for `uuid_getvar`; `playback` and friends **end unicast for good**, as
//!   the capture `outbound_unicast_pcmu_l16` shows.
//! * **Hang-up** (`sendmsg` `hangup`, `execute hangup`, `api uuid_kill`, or the caller via
//!   [`DoubleCall::hangup`]): CHANNEL_HANGUP, CHANNEL_UNPARK, CHANNEL_EXECUTE_COMPLETE
//!   (`socket`), CHANNEL_STATE ×2, CHANNEL_HANGUP_COMPLETE from
//!   `esl-outbound/outbound_uuid_kill_no_linger`, with the cause and the BYE direction
//!   (`send_bye` / `recv_bye`) filled in. Then, without `linger`, the disconnect notice
//!   and the close (that recording); with `linger`, the linger notice (after
//!   CHANNEL_HANGUP_COMPLETE as in `outbound_basic`, or right after CHANNEL_HANGUP for
//!   `uuid_kill` as in `outbound_uuid_commands`) and a wait for `exit`; with `linger N`
//!   the disconnect notice and close N+1 s later (the captures closed ~3 s after
//!   `linger 2`).
//! * **Unicast** (`call-command: unicast`): the double binds `local-ip:local-port` (the
//!   end the engine chose for FreeSWITCH), sends from it to `remote-ip:remote-port` and
//!   records every datagram that arrives on it. Frames are 20 ms: L16 little-endian at
//!   the channel rate, or µ-law with `flags: native`. The stream opens with 3 all-`0xFF`
//!   frames at the decoded size (every capture does) and, like a parked channel, keeps
//!   sending every 20 ms: the caller's audio while [`DoubleCall::play`] runs, silence in
//!   between ([`Idle`]).
//! * **Time** is the tokio clock throughout ([`tokio::time::Instant`], `interval`), so a
//!   test with paused time works when the engine runs in the same runtime.
//!
//! # What it does not mirror
//!
//! No SIP or RTP (the caller is the double itself), no codecs beyond L16 (8/16 kHz) and
//! PCMU native, no real dialplan (nothing runs after `socket`; the channel is answered or
//! not as [`CallSpec::answered_by_dialplan`] says), no application runs for real
//! (`playback` completes at once and plays nothing), no application latency (FreeSWITCH
//! took 20–41 ms to start one), no `bgapi`, `sendevent`, `nolinger`, `nixevent`,
//! `divert_events` or `log/data` lines (such commands are answered `-ERR command not
//! found` and listed by [`DoubleCall::unmodelled`]), no XML events (sent as plain, and
//! listed), no event filters, no bridging or transfer (each [`DoubleCall`] is one
//! channel). Event timestamps and other channel variables (SIP headers, SDP, RTP ports)
//! are the recorded ones; `Event-Sequence` is renumbered.

mod audio;
mod media;
mod recording;
mod session;
mod switch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use esl_bridge::codec::Request;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

pub use audio::{rms, ulaw_decode, ulaw_encode, MediaFormat};
pub use recording::{default_fixtures_dir, CONNECT_RECORDING, G722_RECORDING, HANGUP_RECORDING};

use audio::FrameCodec;
use media::{PlayJob, StreamConfig};
use recording::{Identity, Recordings};
use session::Control;
use switch::Switch;

/// Duration of one unicast frame.
pub const FRAME: Duration = Duration::from_millis(20);

/// Default RMS (in sample units) above which a received frame counts as reply audio:
/// about -50 dBFS, above FreeSWITCH's "no media yet" frames (RMS 1) and digital silence.
pub const REPLY_RMS_THRESHOLD: f64 = 100.0;

/// Errors of the double.
#[derive(Debug, thiserror::Error)]
pub enum DoubleError {
    /// A fixture file cannot be read.
    #[error("fixture {path}: {source}")]
    Fixture {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A fixture file does not hold what the double replays.
    #[error("fixture {path}: {what}")]
    FixtureFormat {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// The call spec cannot describe a FreeSWITCH call the double mirrors.
    #[error("invalid call spec: {0}")]
    InvalidSpec(String),
    /// The engine's ESL listener cannot be reached.
    #[error("cannot connect to the engine's ESL listener at {addr}: {source}")]
    Connect {
        /// The listener.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// FreeSWITCH's unicast side cannot be bound where the engine asked.
    #[error("cannot bind FreeSWITCH's unicast socket on {addr}: {source}")]
    MediaBind {
        /// `local-ip:local-port` of the engine's request.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The engine asked for a stream the double does not mirror.
    #[error("unsupported unicast request: {0}")]
    UnsupportedMedia(String),
    /// The engine's unicast request failed (bad address, bind error, …).
    #[error("unicast failed: {0}")]
    MediaFailed(String),
    /// The engine asked for another format than the spec expects.
    #[error("the spec expects {expected:?} unicast but the engine asked for {requested:?}")]
    FormatMismatch {
        /// From the spec.
        expected: MediaFormat,
        /// From the engine's `flags`.
        requested: MediaFormat,
    },
    /// No unicast stream is running (not started yet, or stopped).
    #[error("no unicast stream is running")]
    NoMedia,
    /// The stream stopped before the audio was sent (hang-up, `playback`, …).
    #[error("the unicast stream stopped before the audio was sent")]
    MediaStopped,
    /// `play` was given no samples.
    #[error("nothing to play")]
    NothingToPlay,
    /// The call ended before what was awaited.
    #[error("the call ended ({0:?})")]
    CallEnded(Hangup),
    /// The ESL session ended before what was awaited.
    #[error("the ESL session ended ({0:?})")]
    SessionEnded(SessionEnd),
    /// A socket error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// How the caller's line behaves between plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Silence frames every 20 ms, like a parked channel whose caller says nothing (the
    /// engine's endpointer sees the end of speech).
    Silence,
    /// No datagrams between plays (makes echo comparisons exact).
    Nothing,
}

/// Limits that keep a misbehaving engine from hanging a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus the engine's `connect` command.
    pub connect: Duration,
    /// [`DoubleCall::wait_for_media`].
    pub media: Duration,
    /// After a `linger` (for ever) notice, how long the double waits for `exit` before it
    /// closes the socket itself (FreeSWITCH would wait for ever).
    pub exit_after_linger: Duration,
    /// [`DoubleCall::hangup`]: until the session is over.
    pub hangup: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            media: Duration::from_secs(10),
            exit_after_linger: Duration::from_secs(10),
            hangup: Duration::from_secs(15),
        }
    }
}

/// The call to place.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSpec {
    /// Channel UUID (`Unique-ID`).
    pub uuid: String,
    /// Caller number (`Caller-Caller-ID-Number`).
    pub caller: String,
    /// Dialled number (`Caller-Destination-Number`).
    pub destination: String,
    /// Channel rate: 8000 (a PCMU call) or 16000 (a G722 call).
    pub rate: u32,
    /// The unicast format the engine is expected to ask for (`flags: native` or not).
    pub format: MediaFormat,
    /// The dialplan answered before `socket` (as the fixtures' dialplan did): the channel
    /// data says `answered` and the engine's `answer` produces no CHANNEL_ANSWER. False
    /// (the default) is the product's dialplan (`socket` only): `ringing` until the
    /// engine answers.
    pub answered_by_dialplan: bool,
    /// FreeSWITCH's all-`0xFF` frames before the caller's audio (3 in every capture).
    pub leading_cng_frames: usize,
    /// What the line carries between plays.
    pub idle: Idle,
    /// RMS above which a received frame is reply audio.
    pub reply_rms_threshold: f64,
    /// Limits.
    pub timeouts: Timeouts,
}

impl Default for CallSpec {
    /// A PCMU call at 8 kHz with L16 unicast, from "+4930123456" to "9999" (the
    /// recordings' numbers), with a fresh UUID.
    fn default() -> Self {
        Self {
            uuid: uuid::Uuid::new_v4().to_string(),
            caller: "+4930123456".into(),
            destination: "9999".into(),
            rate: 8_000,
            format: MediaFormat::L16,
            answered_by_dialplan: false,
            leading_cng_frames: 3,
            idle: Idle::Silence,
            reply_rms_threshold: REPLY_RMS_THRESHOLD,
            timeouts: Timeouts::default(),
        }
    }
}

impl CallSpec {
    /// Checks that the spec describes a call the double can mirror.
    pub fn validate(&self) -> Result<(), DoubleError> {
        let bad = |what: String| Err(DoubleError::InvalidSpec(what));
        for (name, value) in [
            ("uuid", &self.uuid),
            ("caller", &self.caller),
            ("destination", &self.destination),
        ] {
            if value.is_empty() || value.contains(char::is_whitespace) {
                return bad(format!("{name} {value:?} must be one non-empty word"));
            }
        }
        if !matches!(self.rate, 8_000 | 16_000) {
            return bad(format!("rate {} (8000 or 16000)", self.rate));
        }
        if self.format == MediaFormat::PcmuNative && self.rate != 8_000 {
            return bad("PCMU native is an 8 kHz format".into());
        }
        if !self.reply_rms_threshold.is_finite() || self.reply_rms_threshold < 0.0 {
            return bad(format!("reply_rms_threshold {}", self.reply_rms_threshold));
        }
        Ok(())
    }

    fn identity(&self) -> Identity {
        Identity {
            uuid: self.uuid.clone(),
            caller: self.caller.clone(),
            destination: self.destination.clone(),
        }
    }
}

/// Who ended the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hangup {
    /// The engine hung up (`sendmsg` hangup, `execute hangup`, `api uuid_kill`).
    Engine {
        /// The hang-up cause it gave.
        cause: String,
    },
    /// The caller hung up ([`DoubleCall::hangup`]).
    Caller,
    /// The engine sent `exit` or closed the socket while the channel was up; with nothing
    /// after `socket` in the dialplan, FreeSWITCH then ends the call.
    EngineLeft,
}

/// How the ESL session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The engine sent `exit`.
    Exit,
    /// No linger: the disconnect notice and the close right after the hang-up.
    Disconnected,
    /// `linger N` ran out.
    LingerExpired,
    /// After a `linger` notice the engine never sent `exit`; the double closed after
    /// [`Timeouts::exit_after_linger`] (FreeSWITCH would have kept the socket for ever).
    ExitNeverCame,
    /// The engine closed the socket.
    EngineClosed,
    /// The engine sent bytes that cannot be framed, or the socket failed.
    Broken(String),
    /// The [`DoubleCall`] was dropped while the session was open.
    Abandoned,
}

/// Why the unicast stream stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The channel hung up.
    Hangup,
    /// An application that FreeSWITCH runs outside the park loop (`playback`, …).
    Application(String),
    /// The engine sent another `unicast`.
    Replaced,
    /// The ESL session ended.
    SessionEnded,
}

/// The unicast stream as the engine set it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaInfo {
    /// FreeSWITCH's side, bound by the double (`local-ip:local-port`).
    pub freeswitch_side: SocketAddr,
    /// The engine's side (`remote-ip:remote-port`).
    pub engine_side: SocketAddr,
    /// L16 or µ-law, as the engine's `flags` asked.
    pub format: MediaFormat,
    /// Channel rate.
    pub rate: u32,
    /// Bytes of one frame the double sends.
    pub frame_bytes: usize,
}

/// Where the unicast stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaState {
    /// The engine has not sent `unicast` yet.
    NotStarted,
    /// Streaming.
    Running(MediaInfo),
    /// The request could not be carried out.
    Failed(String),
    /// Streamed, then stopped.
    Stopped {
        /// The stream that ran.
        info: MediaInfo,
        /// Why it stopped.
        reason: StopReason,
    },
}

/// What a sent frame carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentKind {
    /// FreeSWITCH's all-`0xFF` "no media yet" frame.
    NoMediaYet,
    /// Silence between plays ([`Idle::Silence`]).
    Idle,
    /// Audio given to [`DoubleCall::play`].
    Played,
    /// Silence given to [`DoubleCall::play_silence`].
    Silence,
}

/// A frame the double sent to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFrame {
    /// When it left (tokio clock).
    pub at: Instant,
    /// What it carried.
    pub kind: SentKind,
    /// The samples (before µ-law encoding in native mode).
    pub samples: Vec<i16>,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// A datagram the engine sent to FreeSWITCH's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// When it arrived (tokio clock).
    pub at: Instant,
    /// Its source address.
    pub from: SocketAddr,
    /// Decoded as the stream's format (L16 LE or µ-law).
    pub samples: Vec<i16>,
    /// The datagram.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Log {
    requests: Vec<Request>,
    unmodelled: Vec<String>,
    sent: Vec<SentFrame>,
    received: Vec<ReceivedFrame>,
}

/// State shared by the session task, the media tasks and the [`DoubleCall`].
#[derive(Debug)]
struct Shared {
    log: Mutex<Log>,
    player: Mutex<Option<mpsc::UnboundedSender<PlayJob>>>,
    connected: watch::Sender<bool>,
    media: watch::Sender<MediaState>,
    hangup: watch::Sender<Option<Hangup>>,
    session: watch::Sender<Option<SessionEnd>>,
    received: watch::Sender<usize>,
}

impl Shared {
    fn new() -> Self {
        Self {
            log: Mutex::default(),
            player: Mutex::default(),
            connected: watch::Sender::new(false),
            media: watch::Sender::new(MediaState::NotStarted),
            hangup: watch::Sender::new(None),
            session: watch::Sender::new(None),
            received: watch::Sender::new(0),
        }
    }

    /// The lock is never held across an await; a poisoned one still holds whole entries.
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_request(&self, request: Request) {
        self.log().requests.push(request);
    }

    fn record_unmodelled(&self, what: String) {
        self.log().unmodelled.push(what);
    }

    fn record_sent(&self, frame: SentFrame) {
        self.log().sent.push(frame);
    }

    fn record_received(&self, frame: ReceivedFrame) {
        let count = {
            let mut log = self.log();
            log.received.push(frame);
            log.received.len()
        };
        self.received.send_replace(count);
    }

    fn set_player(&self, player: Option<mpsc::UnboundedSender<PlayJob>>) {
        *self.player.lock().unwrap_or_else(PoisonError::into_inner) = player;
    }

    fn player(&self) -> Option<mpsc::UnboundedSender<PlayJob>> {
        self.player
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The double, with its recordings loaded.
#[derive(Debug, Clone)]
pub struct FsDouble {
    recordings: Arc<Recordings>,
}

impl FsDouble {
    /// Loads the recordings from a fixtures directory.
    pub fn load(fixtures: &Path) -> Result<Self, DoubleError> {
        Ok(Self {
            recordings: Arc::new(Recordings::load(fixtures)?),
        })
    }

    /// Loads the recordings from [`default_fixtures_dir`].
    pub fn from_default_fixtures() -> Result<Self, DoubleError> {
        Self::load(&default_fixtures_dir())
    }

    /// The recordings built into this crate (`probes/data/freeswitch/`: byte-exact
    /// prefixes of the three recordings, see its README), for tools that run without the
    /// fixtures folder, such as `realtime-probe --via-esl`. The calls it places are the
    /// same as with [`from_default_fixtures`](Self::from_default_fixtures).
    pub fn embedded() -> Result<Self, DoubleError> {
        const DIR: &str = "probes/data/freeswitch (built in)";
        let name = |file: &str| PathBuf::from(format!("{DIR}/{file}"));
        let recordings = Recordings::from_streams(
            (
                &name("outbound_basic.head.raw"),
                include_bytes!("../../data/freeswitch/outbound_basic.head.raw"),
            ),
            (
                &name("outbound_uuid_kill_no_linger.head.raw"),
                include_bytes!("../../data/freeswitch/outbound_uuid_kill_no_linger.head.raw"),
            ),
            (
                &name("outbound_unicast_g722_l16.head.raw"),
                include_bytes!("../../data/freeswitch/outbound_unicast_g722_l16.head.raw"),
            ),
        )?;
        Ok(Self {
            recordings: Arc::new(recordings),
        })
    }

    /// Places one call into the engine's ESL outbound listener, with the recordings from
    /// [`default_fixtures_dir`]. Returns once the engine's `connect` has been answered.
    pub async fn call(engine_esl: SocketAddr, spec: CallSpec) -> Result<DoubleCall, DoubleError> {
        Self::from_default_fixtures()?.place(engine_esl, spec).await
    }

    /// A spec with the recorded call's identity (UUID, caller, DID) and the fixtures'
    /// dialplan (answered before `socket`): its `connect` reply is the recorded one, byte
    /// for byte.
    pub fn recorded_call(&self) -> CallSpec {
        let id = self.recordings.recorded_identity();
        CallSpec {
            uuid: id.uuid.clone(),
            caller: id.caller.clone(),
            destination: id.destination.clone(),
            answered_by_dialplan: true,
            ..CallSpec::default()
        }
    }

    /// The `connect` reply a call with `spec` sends (the channel data).
    pub fn connect_reply(&self, spec: &CallSpec) -> Result<Vec<u8>, DoubleError> {
        spec.validate()?;
        Ok(self
            .recordings
            .script(&spec.identity(), spec.rate, spec.answered_by_dialplan)
            .connect_reply())
    }

    /// Places one call (see [`FsDouble::call`]).
    pub async fn place(
        &self,
        engine_esl: SocketAddr,
        spec: CallSpec,
    ) -> Result<DoubleCall, DoubleError> {
        spec.validate()?;
        let script = self
            .recordings
            .script(&spec.identity(), spec.rate, spec.answered_by_dialplan);
        let channel_name = script.channel_name.clone();
        let switch = Switch::new(script, spec.answered_by_dialplan);
        let limit = spec.timeouts.connect;
        let stream = tokio::time::timeout(limit, TcpStream::connect(engine_esl))
            .await
            .map_err(|_| DoubleError::Timeout {
                what: "the TCP connection to the engine",
                after: limit,
            })?
            .map_err(|source| DoubleError::Connect {
                addr: engine_esl,
                source,
            })?;
        // FreeSWITCH writes each message as soon as it has it.
        stream.set_nodelay(true)?;
        let shared = Arc::new(Shared::new());
        let (control, control_rx) = mpsc::channel(4);
        let stream_config = StreamConfig {
            rate: spec.rate,
            leading_cng_frames: spec.leading_cng_frames,
            idle: spec.idle,
        };
        tokio::spawn(session::run(
            stream,
            switch,
            stream_config,
            spec.timeouts,
            shared.clone(),
            control_rx,
        ));
        let call = DoubleCall {
            spec,
            shared,
            control,
            channel_name,
        };
        let connected = call.shared.connected.subscribe();
        call.wait(connected, limit, "the engine's `connect`", |c| {
            c.then_some(())
        })
        .await?;
        Ok(call)
    }
}

/// One call placed by the double; dropping it closes the session.
#[derive(Debug)]
pub struct DoubleCall {
    spec: CallSpec,
    shared: Arc<Shared>,
    control: mpsc::Sender<Control>,
    channel_name: String,
}

impl DoubleCall {
    /// The spec the call was placed with.
    pub fn spec(&self) -> &CallSpec {
        &self.spec
    }

    /// The channel UUID.
    pub fn uuid(&self) -> &str {
        &self.spec.uuid
    }

    /// `Channel-Name` of the channel data.
    pub fn channel_name(&self) -> &str {
        &self.channel_name
    }

    /// Waits on `rx` until `ready` gives a value, the call ends, or `limit` passes.
    async fn wait<T, R>(
        &self,
        mut rx: watch::Receiver<T>,
        limit: Duration,
        what: &'static str,
        mut ready: impl FnMut(&T) -> Option<R>,
    ) -> Result<R, DoubleError> {
        let mut session = self.shared.session.subscribe();
        let waiting = async {
            loop {
                if let Some(r) = ready(&rx.borrow_and_update()) {
                    return Ok(r);
                }
                if let Some(end) = session.borrow_and_update().clone() {
                    return Err(DoubleError::SessionEnded(end));
                }
                // Both senders live in `Shared`, which `self` keeps alive: neither
                // `changed` can fail while we wait.
                tokio::select! {
                    _ = rx.changed() => {}
                    _ = session.changed() => {}
                }
            }
        };
        tokio::time::timeout(limit, waiting)
            .await
            .map_err(|_| DoubleError::Timeout { what, after: limit })?
    }

    /// Waits until the engine has started unicast (within [`Timeouts::media`]) and the
    /// stream is the spec's format.
    pub async fn wait_for_media(&self) -> Result<MediaInfo, DoubleError> {
        let media = self.shared.media.subscribe();
        let mut hangup = self.shared.hangup.subscribe();
        let state = self
            .wait(media, self.spec.timeouts.media, "unicast", |state| {
                match state {
                    MediaState::NotStarted => {
                        // The channel may end before any unicast.
                        hangup
                            .borrow_and_update()
                            .clone()
                            .map(|h| Err(DoubleError::CallEnded(h)))
                    }
                    MediaState::Running(info) | MediaState::Stopped { info, .. } => Some(Ok(*info)),
                    MediaState::Failed(why) => Some(Err(DoubleError::MediaFailed(why.clone()))),
                }
            })
            .await??;
        if state.format != self.spec.format {
            return Err(DoubleError::FormatMismatch {
                expected: self.spec.format,
                requested: state.format,
            });
        }
        Ok(state)
    }

    /// The unicast stream's state now.
    pub fn media(&self) -> MediaState {
        self.shared.media.borrow().clone()
    }

    /// Says `pcm` (mono at the channel rate) in 20 ms frames, paced by the stream's
    /// `tokio::time::interval`, after anything already queued. Returns the instant the
    /// last frame was sent; each frame's instant is in [`sent_frames`](Self::sent_frames).
    /// A last partial frame is padded with silence.
    pub async fn play(&self, pcm: &[i16]) -> Result<Instant, DoubleError> {
        self.enqueue(pcm, SentKind::Played).await
    }

    /// Says nothing for `duration` (rounded up to whole frames), as explicit silence.
    pub async fn play_silence(&self, duration: Duration) -> Result<Instant, DoubleError> {
        let frames = duration.as_micros().div_ceil(FRAME.as_micros());
        let per_frame = (self.spec.rate / audio::FRAMES_PER_SECOND) as usize;
        let samples = usize::try_from(frames)
            .map_err(|_| DoubleError::InvalidSpec(format!("silence of {duration:?}")))?
            .saturating_mul(per_frame);
        self.enqueue(&vec![0; samples], SentKind::Silence).await
    }

    async fn enqueue(&self, pcm: &[i16], kind: SentKind) -> Result<Instant, DoubleError> {
        let framing = FrameCodec {
            format: MediaFormat::L16,
            rate: self.spec.rate,
        };
        let frames = framing.frames(pcm);
        if frames.is_empty() {
            return Err(DoubleError::NothingToPlay);
        }
        let player = self.shared.player().ok_or(DoubleError::NoMedia)?;
        let (done, sent) = oneshot::channel();
        player
            .send(PlayJob { frames, kind, done })
            .map_err(|_| DoubleError::MediaStopped)?;
        // The stream's sender always answers, or drops the job when it stops.
        sent.await.map_err(|_| DoubleError::MediaStopped)?
    }

    /// Every frame sent to the engine, in order.
    pub fn sent_frames(&self) -> Vec<SentFrame> {
        self.shared.log().sent.clone()
    }

    /// Every datagram received from the engine, in order of arrival.
    pub fn received_frames(&self) -> Vec<ReceivedFrame> {
        self.shared.log().received.clone()
    }

    /// All received audio, decoded and concatenated.
    pub fn received_audio(&self) -> Vec<i16> {
        self.shared
            .log()
            .received
            .iter()
            .flat_map(|f| f.samples.iter().copied())
            .collect()
    }

    /// Waits until at least `count` datagrams have arrived.
    pub async fn wait_for_received_frames(
        &self,
        count: usize,
        limit: Duration,
    ) -> Result<(), DoubleError> {
        let received = self.shared.received.subscribe();
        self.wait(received, limit, "frames from the engine", |&n| {
            (n >= count).then_some(())
        })
        .await
    }

    fn is_reply(&self, frame: &ReceivedFrame) -> bool {
        rms(&frame.samples) > self.spec.reply_rms_threshold
    }

    /// The first received frame at or after `after` whose RMS is above
    /// [`CallSpec::reply_rms_threshold`]: reply audio, not silence or comfort noise.
    pub fn first_reply_frame_after(&self, after: Instant) -> Option<Instant> {
        self.shared
            .log()
            .received
            .iter()
            .find(|f| f.at >= after && self.is_reply(f))
            .map(|f| f.at)
    }

    /// The last received frame above the reply threshold.
    pub fn last_reply_frame(&self) -> Option<Instant> {
        self.shared
            .log()
            .received
            .iter()
            .rev()
            .find(|f| self.is_reply(f))
            .map(|f| f.at)
    }

    /// Waits (without polling) for [`first_reply_frame_after`](Self::first_reply_frame_after).
    pub async fn wait_for_reply_after(
        &self,
        after: Instant,
        limit: Duration,
    ) -> Result<Instant, DoubleError> {
        let received = self.shared.received.subscribe();
        self.wait(received, limit, "reply audio", |_| {
            self.first_reply_frame_after(after)
        })
        .await
    }

    /// The instant the caller's last voiced frame (a played frame with RMS above
    /// `threshold`) was sent: where `e2e_ms` starts.
    pub fn last_voiced_frame_sent(&self, threshold: f64) -> Option<Instant> {
        self.shared
            .log()
            .sent
            .iter()
            .rev()
            .find(|f| f.kind == SentKind::Played && rms(&f.samples) > threshold)
            .map(|f| f.at)
    }

    /// `e2e`: from `spoke` (the caller's last voiced frame sent) to the first reply frame
    /// received at or after it.
    pub fn e2e_after(&self, spoke: Instant) -> Option<Duration> {
        self.first_reply_frame_after(spoke)
            .map(|reply| reply.saturating_duration_since(spoke))
    }

    /// The caller hangs up: the hang-up events and notice as FreeSWITCH sends them for a
    /// caller's BYE, then (with linger) a wait for the engine's `exit`. Returns how the
    /// session ended, within [`Timeouts::hangup`].
    pub async fn hangup(&self) -> Result<SessionEnd, DoubleError> {
        if let Some(h) = self.hangup_state() {
            return Err(DoubleError::CallEnded(h));
        }
        if let Some(end) = self.session_end() {
            return Err(DoubleError::SessionEnded(end));
        }
        if self.control.send(Control::Hangup).await.is_err() {
            // The session ended between the check and the send.
            let end = self.session_end().unwrap_or(SessionEnd::Abandoned);
            return Err(DoubleError::SessionEnded(end));
        }
        self.wait_for_session_end(self.spec.timeouts.hangup).await
    }

    /// Waits until the channel has hung up, whoever did it.
    pub async fn wait_for_hangup(&self, limit: Duration) -> Result<Hangup, DoubleError> {
        // The hang-up is recorded before the session can end, so `wait` sees it first.
        let hangup = self.shared.hangup.subscribe();
        self.wait(hangup, limit, "the hang-up", Option::clone).await
    }

    /// Waits until the ESL session is over.
    pub async fn wait_for_session_end(&self, limit: Duration) -> Result<SessionEnd, DoubleError> {
        let mut session = self.shared.session.subscribe();
        let waiting = async {
            loop {
                if let Some(end) = session.borrow_and_update().clone() {
                    return end;
                }
                // The sender lives in `Shared`; `changed` cannot fail while we hold it.
                let _ = session.changed().await;
            }
        };
        tokio::time::timeout(limit, waiting)
            .await
            .map_err(|_| DoubleError::Timeout {
                what: "the end of the ESL session",
                after: limit,
            })
    }

    /// Who hung up, if the channel is gone.
    pub fn hangup_state(&self) -> Option<Hangup> {
        self.shared.hangup.borrow().clone()
    }

    /// How the session ended, if it has.
    pub fn session_end(&self) -> Option<SessionEnd> {
        self.shared.session.borrow().clone()
    }

    /// Did the engine end the call (hang up, or leave the socket while the call was up)?
    pub fn closed_by_engine(&self) -> bool {
        matches!(
            self.hangup_state(),
            Some(Hangup::Engine { .. } | Hangup::EngineLeft)
        )
    }

    /// The command lines received from the engine, in order (`connect`, `myevents`,
    /// `sendmsg`, `api uuid_kill …`).
    pub fn commands(&self) -> Vec<String> {
        self.shared
            .log()
            .requests
            .iter()
            .map(|r| r.line.clone())
            .collect()
    }

    /// The commands received, with their headers and bodies.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.log().requests.clone()
    }

    /// What the double answered without modelling FreeSWITCH's behaviour.
    pub fn unmodelled(&self) -> Vec<String> {
        self.shared.log().unmodelled.clone()
    }
}
