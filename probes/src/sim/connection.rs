//! The async shell of one WebSocket connection: moves messages between the socket and
//! its [`Session`], wakes the session when its next deadline comes, records what the
//! client sent, and drops the socket when the session or a shutdown says so.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::session::{Output, Session};
use super::wire::Encoder;
use super::Shared;

/// Serves one upgraded connection until either side ends it.
pub(crate) async fn serve(
    mut socket: WebSocket,
    mut session: Session,
    conn: u64,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut encoder = Encoder::new(conn);
    tracing::info!(conn, "connection opened");
    let mut outputs = session.open();
    loop {
        for output in outputs.drain(..) {
            match output {
                Output::Send(event) => {
                    let text = match encoder.encode(&event, session.dialect()) {
                        Ok(text) => text,
                        Err(e) => {
                            tracing::error!(conn, "cannot encode a server event: {e}");
                            continue;
                        }
                    };
                    if let Err(e) = socket.send(Message::text(text)).await {
                        tracing::info!(conn, "connection lost while sending: {e}");
                        return;
                    }
                }
                Output::Close => {
                    tracing::info!(conn, "close_after_ms fault: dropping the connection");
                    return;
                }
            }
        }
        if *shutdown.borrow() {
            return;
        }
        let deadline = session.next_deadline();
        outputs = tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    shared.recorder.record(conn, text.as_str());
                    session.on_text(text.as_str(), Instant::now(), &shared.faults())
                }
                Some(Ok(Message::Binary(_))) => {
                    shared.recorder.record(conn, "");
                    session.on_binary()
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Vec::new(),
                Some(Ok(Message::Close(_))) | None => {
                    tracing::info!(conn, "client closed the connection");
                    return;
                }
                Some(Err(e)) => {
                    tracing::info!(conn, "connection failed: {e}");
                    return;
                }
            },
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                session.on_timer(Instant::now())
            }
            _ = shutdown.changed() => return,
        };
    }
}
