//! A FreeSWITCH call as a [`CallerLink`]: answer, start the unicast leg, read caller
//! frames from UDP and the hang-up from ESL; hang up and let the linger events drain at
//! the end.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use esl_bridge::connection::Incoming;
use esl_bridge::media::{
    MediaFormat, PortLease, PortPool, UnicastConfig, UnicastLeg, UnicastReceiver, UnicastSender,
};
use esl_bridge::outbound::Call;

use super::link::{CallNote, CallerLink, Heard};
use super::Outcome;
use crate::telemetry::metrics::Metrics;

/// The caller side of a FreeSWITCH outbound-socket call.
pub struct FreeswitchLink {
    call: Call,
    rx: UnicastReceiver,
    caller_left: bool,
    /// The leg's drop and refusal counts go here when the call ends.
    metrics: Metrics,
    /// FreeSWITCH's unicast port, held until the call is over.
    _fs_port: PortLease,
}

impl FreeswitchLink {
    /// Binds the media leg on `media_ip`, answers and starts unicast; returns the link
    /// and the paced sender of reply audio.
    pub async fn connect(
        call: Call,
        media_ip: IpAddr,
        fs_ports: &PortPool,
        metrics: Metrics,
    ) -> anyhow::Result<(Self, UnicastSender)> {
        let format = MediaFormat::l16(call.channel().read_rate)?;
        let fs_port = fs_ports.lease(media_ip)?;
        let fs_side = SocketAddr::new(media_ip, fs_port.port());
        let mut unicast = UnicastConfig::new(format, fs_side);
        unicast.bind = SocketAddr::new(media_ip, 0);
        let leg = UnicastLeg::bind(unicast).await?;
        call.answer().await?;
        call.start_unicast(leg.params()).await?;
        let (rx, tx) = leg.split()?;
        Ok((
            Self {
                call,
                rx,
                caller_left: false,
                metrics,
                _fs_port: fs_port,
            },
            tx,
        ))
    }
}

impl CallerLink for FreeswitchLink {
    async fn next_frame(&mut self, out: &mut Vec<i16>) -> anyhow::Result<Heard> {
        if self.caller_left {
            return Ok(Heard::Gone);
        }
        loop {
            tokio::select! {
                frame = self.rx.recv() => {
                    let frame = frame?;
                    out.clear();
                    if let Some(samples) = frame.samples() {
                        out.extend(samples);
                    }
                    return Ok(Heard::Frame);
                }
                event = self.call.next_event() => match event {
                    Some(Incoming::Event(e)) if e.name() == Some("CHANNEL_HANGUP") => {
                        self.caller_left = true;
                        return Ok(Heard::Gone);
                    }
                    Some(_) => {}
                    None => {
                        self.caller_left = true;
                        return Ok(Heard::Gone);
                    }
                },
            }
        }
    }

    fn note(&mut self, _note: CallNote) {}

    async fn close(mut self, outcome: Outcome) {
        self.metrics.media_leg_ended(self.rx.counters().snapshot());
        if !self.caller_left && outcome != Outcome::CallerHangup {
            let cause = if outcome == Outcome::Error {
                "NORMAL_TEMPORARY_FAILURE"
            } else {
                "NORMAL_CLEARING"
            };
            let _ = self.call.hangup(cause).await;
        }
        // Let the linger events arrive and the session close.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.call.next_event().await.is_some() {}
        })
        .await;
    }
}
