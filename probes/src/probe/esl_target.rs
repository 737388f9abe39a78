//! `--via-esl`: the probe plays FreeSWITCH against the engine's ESL outbound listener
//! with [`crate::fs_double`] (recorded channel data and events, unicast L16 over UDP),
//! so the call takes the same path as a real phone call minus SIP and RTP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::session::{Measured, Timing};
use super::wav::Question;
use super::RunError;
use crate::fs_double::{CallSpec, DoubleCall, DoubleError, FsDouble, Timeouts};

/// The engine's ESL outbound listener (`TOM_ESL_LISTEN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaEslTarget {
    /// Its address.
    pub addr: SocketAddr,
    /// The dialled number in the channel data (`Caller-Destination-Number`).
    pub did: String,
    /// TCP connect plus the engine's `connect`, and the wait for its `unicast`.
    pub connect_timeout: Duration,
}

impl From<DoubleError> for RunError {
    fn from(e: DoubleError) -> Self {
        match e {
            DoubleError::Connect { addr, source }
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                RunError::Refused {
                    target: addr.to_string(),
                }
            }
            DoubleError::Connect { addr, source } => RunError::Connect {
                target: addr.to_string(),
                reason: source.to_string(),
            },
            DoubleError::Timeout { what, after } => RunError::Timeout {
                what,
                ms: after.as_millis() as u64,
            },
            other => RunError::Esl(other.to_string()),
        }
    }
}

/// One call through the double: place it, wait for unicast and the greeting, ask,
/// time the reply, hang up.
pub(crate) async fn run(
    target: &ViaEslTarget,
    double: &FsDouble,
    question: &Question,
    caller: &str,
    timing: &Timing,
    reply_rms: f64,
) -> Result<Measured, RunError> {
    let spec = CallSpec {
        caller: caller.to_owned(),
        destination: target.did.clone(),
        rate: question.rate,
        reply_rms_threshold: reply_rms,
        timeouts: Timeouts {
            connect: target.connect_timeout,
            media: target.connect_timeout,
            exit_after_linger: Duration::from_secs(2),
            hangup: Duration::from_secs(5),
        },
        ..CallSpec::default()
    };
    let placed = Instant::now();
    let call = double.place(target.addr, spec).await?;
    let result = talk(&call, placed, question, timing).await;
    if let Err(e) = call.hangup().await {
        // The engine may have hung up first; the measurement stands either way.
        tracing::debug!(error = %e, "hang-up");
    }
    let mut measured = result?;
    measured.call_id = Some(call.uuid().to_owned());
    Ok(measured)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn talk(
    call: &DoubleCall,
    placed: Instant,
    question: &Question,
    timing: &Timing,
) -> Result<Measured, RunError> {
    call.wait_for_media().await?;
    let mut greeting_ms = None;
    if !timing.no_greeting {
        greeting_ms = wait_for_greeting(call, placed, timing).await?;
    }
    let samples = question.frames.concat();
    call.play(&samples).await?;
    // The double logs every frame it sent; the question's last voiced frame is the last
    // played frame above the same threshold the probe found it with.
    let spoke = call
        .last_voiced_frame_sent(question.voiced_threshold)
        .ok_or_else(|| RunError::Protocol("the question's voiced frames were not sent".into()))?;
    let left = timing.answer_timeout.saturating_sub(spoke.elapsed());
    let reply = match call.wait_for_reply_after(spoke, left).await {
        Ok(reply) => reply,
        Err(DoubleError::Timeout { .. }) => {
            return Err(RunError::NoAnswer {
                ms: timing.answer_timeout.as_millis() as u64,
            })
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Measured {
        e2e_ms: ms(reply.saturating_duration_since(spoke)),
        greeting_ms,
        ..Measured::default()
    })
}

/// Waits until the greeting has begun and then been quiet for `greeting_quiet`; `None`
/// when no greeting began within `greeting_timeout`.
async fn wait_for_greeting(
    call: &DoubleCall,
    placed: Instant,
    timing: &Timing,
) -> Result<Option<f64>, RunError> {
    let deadline = placed + timing.greeting_timeout;
    let left = deadline.saturating_duration_since(Instant::now());
    let began = match call.wait_for_reply_after(placed, left).await {
        Ok(began) => began,
        Err(DoubleError::Timeout { .. }) => {
            tracing::debug!("no greeting heard; asking anyway");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    loop {
        let last = call.last_reply_frame().unwrap_or(began);
        let quiet_at = last + timing.greeting_quiet;
        let now = Instant::now();
        if now >= quiet_at {
            return Ok(Some(ms(last.saturating_duration_since(began))));
        }
        if now >= deadline {
            return Err(RunError::GreetingTooLong {
                ms: timing.greeting_timeout.as_millis() as u64,
            });
        }
        // Wakes on the next loud frame, or when the quiet (or the bound) is reached.
        let wait = quiet_at.min(deadline).saturating_duration_since(now);
        match call
            .wait_for_reply_after(last + Duration::from_micros(1), wait)
            .await
        {
            Ok(_) | Err(DoubleError::Timeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
