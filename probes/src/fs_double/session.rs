//! The async shell of one outbound session: reads the engine's commands, feeds them to the
//! [`Switch`], writes what it answers and runs its side effects (media, timers, close).

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use esl_bridge::codec::RequestCodec;

use super::media::{MediaSession, StreamConfig};
use super::switch::{Action, Switch};
use super::{MediaState, SessionEnd, Shared, StopReason, Timeouts};

/// What the caller's side asks of the session.
#[derive(Debug)]
pub enum Control {
    /// The caller hangs up.
    Hangup,
}

/// Runs the session until it closes.
pub async fn run(
    stream: TcpStream,
    mut switch: Switch,
    stream_config: StreamConfig,
    timeouts: Timeouts,
    shared: Arc<Shared>,
    mut control: mpsc::Receiver<Control>,
) {
    let (read, write) = stream.into_split();
    let mut requests = FramedRead::new(read, RequestCodec::default());
    let mut shell = Shell {
        write,
        media: None,
        stream_config,
        shared: shared.clone(),
        linger_until: None,
        timeouts,
    };
    loop {
        let linger_until = shell.linger_until;
        let actions = tokio::select! {
            request = requests.next() => match request {
                Some(Ok(request)) => {
                    let actions = switch.on_request(&request);
                    shared.record_request(request);
                    actions
                }
                Some(Err(e)) => {
                    shell.finish(SessionEnd::Broken(format!("engine's ESL cannot be framed: {e}"))).await;
                    return;
                }
                None => switch.engine_closed(),
            },
            ctl = control.recv() => match ctl {
                Some(Control::Hangup) => switch.caller_hangup(),
                None => {
                    // The DoubleCall is gone: nobody plays the caller any more. Close
                    // without ceremony rather than leave the engine a silent call.
                    shell.finish(SessionEnd::Abandoned).await;
                    return;
                }
            },
            () = sleep_until(linger_until) => switch.linger_expired(),
        };
        for action in actions {
            if let Some(end) = shell.apply(action).await {
                shell.finish(end).await;
                return;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Shell {
    write: OwnedWriteHalf,
    media: Option<MediaSession>,
    stream_config: StreamConfig,
    shared: Arc<Shared>,
    linger_until: Option<Instant>,
    timeouts: Timeouts,
}

impl Shell {
    /// Runs one action; `Some` when the session must end.
    async fn apply(&mut self, action: Action) -> Option<SessionEnd> {
        match action {
            Action::Write(bytes) => {
                if let Err(e) = self.write.write_all(&bytes).await {
                    return Some(SessionEnd::Broken(format!("writing to the engine: {e}")));
                }
            }
            Action::Connected => {
                self.shared.connected.send_replace(true);
            }
            Action::StartUnicast(request) => {
                // A second `unicast` replaces the first, as re-sending it after a playback
                // is how an engine restarts the stream.
                self.stop_media(StopReason::Replaced).await;
                match MediaSession::start(request, self.stream_config, self.shared.clone()).await {
                    Ok((session, player)) => {
                        self.shared.set_player(Some(player));
                        self.shared
                            .media
                            .send_replace(MediaState::Running(session.info));
                        self.media = Some(session);
                    }
                    Err(e) => {
                        self.shared
                            .media
                            .send_replace(MediaState::Failed(e.to_string()));
                    }
                }
            }
            Action::UnicastFailed(why) => {
                self.shared.media.send_replace(MediaState::Failed(why));
            }
            Action::StopUnicast(reason) => self.stop_media(reason).await,
            Action::HungUp(hangup) => {
                self.shared.hangup.send_replace(Some(hangup));
            }
            Action::Lingering(limit) => {
                let wait = limit.unwrap_or(self.timeouts.exit_after_linger);
                self.linger_until = Some(Instant::now() + wait);
            }
            Action::Close(end) => return Some(end),
            Action::Unmodelled(what) => self.shared.record_unmodelled(what),
        }
        None
    }

    async fn stop_media(&mut self, reason: StopReason) {
        if let Some(session) = self.media.take() {
            self.shared.set_player(None);
            let info = session.info;
            session.stop().await;
            self.shared
                .media
                .send_replace(MediaState::Stopped { info, reason });
        }
    }

    async fn finish(mut self, end: SessionEnd) {
        self.stop_media(StopReason::SessionEnded).await;
        // Closing is best effort: the engine may already be gone.
        let _ = self.write.shutdown().await;
        self.shared.session.send_replace(Some(end));
    }
}
