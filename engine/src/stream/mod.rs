//! `/v1/stream`: the authenticated WebSocket media endpoint (docs/stream.md). A client
//! is admitted before the upgrade (JWT, `jti` replay store), sends `start`, then streams
//! PCM16 both ways; behind it runs the same call task as a FreeSWITCH call.

pub mod link;
pub mod protocol;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use esl_bridge::media::{MediaCounters, MediaFormat, UnicastSender};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, info_span, warn, Instrument};

use crate::auth::Refusal;
use crate::call::{self, CallNote, CallSetup, CallSlot, Services};
use crate::telemetry::call_record::CallIdentity;
use link::{
    audio_sink, finish_closing, is_too_big, limiter, write_all, StreamLink, CLOSE_POLICY,
    CLOSE_TOO_BIG,
};
use protocol::{parse_start, ProtocolError, Start};

/// How long a client has to send `start` after the upgrade.
const START_WITHIN: Duration = Duration::from_secs(10);
/// Reply audio queued in the paced sender (1 s); the call task stays a few frames ahead.
const PLAYOUT_FRAMES: usize = 50;
/// Events and audio waiting for a slow client before they are dropped.
const OUTGOING_MESSAGES: usize = 256;

fn refuse(status: StatusCode, code: &'static str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

/// The upgrade handler: admits or refuses (a short code; the reason goes to the log and
/// `tom_stream_rejected_total`), then hands the socket to its own call task.
pub async fn upgrade(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    if services.is_draining() {
        services.metrics.stream_rejected("draining");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    // Before the token is checked, so a client turned away can retry with the same
    // token (checking it spends its `jti`).
    let Some(slot) = services.try_admit() else {
        services.metrics.stream_rejected("busy");
        warn!(
            max_calls = services.config.server.max_calls,
            "stream refused: engine full"
        );
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "busy");
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = services.auth.admit(authorization, query.as_deref()).await {
        let reason = e.reason();
        services.metrics.stream_rejected(reason);
        warn!(reason, error = %e, "stream refused");
        return match e.refusal() {
            Refusal::Unavailable => refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Refusal::Unauthorized => refuse(StatusCode::UNAUTHORIZED, "unauthorized"),
        };
    }
    let limit = services.config.stream.max_message_bytes;
    let tracker = services.streams.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| tracker.track_future(serve_stream(socket, services, slot)))
}

/// Why the stream ended before its call began.
enum Opening {
    Refused(ProtocolError),
    TooBig,
    Left,
}

async fn first_start(incoming: &mut SplitStream<WebSocket>) -> Result<Start, Opening> {
    loop {
        match incoming.next().await {
            None => return Err(Opening::Left),
            Some(Err(e)) => {
                return Err(if is_too_big(e) {
                    Opening::TooBig
                } else {
                    Opening::Left
                })
            }
            Some(Ok(Message::Text(text))) => {
                return parse_start(text.as_str()).map_err(Opening::Refused)
            }
            Some(Ok(Message::Binary(_))) => {
                return Err(Opening::Refused(ProtocolError::BadStart(
                    "audio before start".into(),
                )))
            }
            Some(Ok(Message::Close(_))) => return Err(Opening::Left),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        }
    }
}

async fn serve_stream(socket: WebSocket, services: Arc<Services>, slot: CallSlot) {
    let call_id = uuid::Uuid::new_v4().to_string();
    let span = info_span!("stream", call_id = %call_id);
    async move {
        let (sink, mut incoming) = socket.split();
        let (outgoing, queued) = mpsc::channel(OUTGOING_MESSAGES);
        let writer = tokio::spawn(write_all(sink, queued));
        let start = match tokio::time::timeout(START_WITHIN, first_start(&mut incoming)).await {
            Ok(Ok(start)) => start,
            failed => {
                let (reason, code, close) = match failed {
                    Ok(Err(Opening::Refused(e))) => {
                        warn!(error = %e, "stream closed: bad start");
                        ("bad_start", e.code(), CLOSE_POLICY)
                    }
                    Ok(Err(Opening::TooBig)) => ("too_big", "too_big", CLOSE_TOO_BIG),
                    Err(_) => {
                        warn!("stream closed: no start message in time");
                        ("bad_start", "bad_start", CLOSE_POLICY)
                    }
                    Ok(Err(Opening::Left)) | Ok(Ok(_)) => ("", "", 0),
                };
                if !reason.is_empty() {
                    services.metrics.stream_rejected(reason);
                    let event =
                        serde_json::to_string(&CallNote::Error { code }).unwrap_or_default();
                    let _ = outgoing.send(Message::Text(event.into())).await;
                    let _ = outgoing
                        .send(Message::Close(Some(CloseFrame {
                            code: close,
                            reason: code.into(),
                        })))
                        .await;
                }
                drop(outgoing);
                finish_closing(incoming, writer).await;
                return;
            }
        };
        let setup = CallSetup {
            identity: CallIdentity {
                call_id,
                source: "stream",
                did: start.did.clone().unwrap_or_default(),
                caller_hash: start
                    .caller
                    .as_deref()
                    .map_or_else(|| "anonymous".to_owned(), |n| services.hasher.hash(n)),
            },
            rate: start.rate,
            telephony_ulaw: false,
            slot: Some(slot),
        };
        info!(rate = start.rate, "stream started");
        let connect = {
            let services = services.clone();
            async move {
                let format = MediaFormat::l16(start.rate)?;
                let tx = UnicastSender::spawn(
                    format,
                    PLAYOUT_FRAMES,
                    audio_sink(outgoing.clone()),
                    Arc::new(MediaCounters::default()),
                )?;
                let link = StreamLink::new(
                    incoming,
                    outgoing,
                    writer,
                    limiter(services.config.stream.rate_limit_msgs),
                    services.metrics.clone(),
                    start.rate,
                );
                Ok((link, tx))
            }
        };
        call::serve(setup, services, connect).await;
    }
    .instrument(span)
    .await;
}
