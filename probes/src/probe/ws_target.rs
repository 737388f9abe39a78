//! The `/v1/stream` WebSocket target (docs/stream.md): the probe is the client.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header::AUTHORIZATION, HeaderValue, Request};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::auth::Credentials;
use super::session::{converse, CallerRx, CallerTx, EngineEvent, Heard, Measured, Timing};
use super::wav::{rms_le_bytes, Question};
use super::RunError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A `/v1/stream` endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamTarget {
    /// `ws://host:port/v1/stream` or `wss://…`.
    pub url: String,
    /// Bearer token or HS256 secret.
    pub credentials: Credentials,
    /// `did` of the `start` message (selects the call profile).
    pub did: Option<String>,
    /// TCP + TLS + upgrade.
    pub connect_timeout: Duration,
}

/// Why a URL cannot be a stream target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--target {url}: {reason}")]
pub struct BadUrl {
    /// The URL, without its query.
    pub url: String,
    /// What is wrong.
    pub reason: String,
}

impl StreamTarget {
    /// Checks that the URL is a `ws://` or `wss://` URL the client can open.
    pub fn validate(&self) -> Result<(), BadUrl> {
        let bad = |reason: &str| BadUrl {
            url: without_query(&self.url),
            reason: reason.to_owned(),
        };
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(bad("must start with ws:// or wss://"));
        }
        self.url
            .as_str()
            .into_client_request()
            .map(|_| ())
            .map_err(|e| bad(&e.to_string()))
    }
}

/// The URL without its query string, which may carry a `?token=`: safe to print.
pub fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_owned()
}

fn request(target: &StreamTarget) -> Result<Request<()>, RunError> {
    let mut request = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| RunError::Protocol(format!("bad target URL: {e}")))?;
    if let Some(token) = target.credentials.token_for_run()? {
        let value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
            RunError::Protocol("the token has characters an HTTP header cannot carry".into())
        })?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    Ok(request)
}

fn classify(url: &str, e: WsError) -> RunError {
    match e {
        WsError::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).chars().take(200).collect())
                .unwrap_or_default();
            RunError::Rejected {
                status: response.status().as_u16(),
                body,
            }
        }
        WsError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            RunError::Refused {
                target: without_query(url),
            }
        }
        other => RunError::Connect {
            target: without_query(url),
            reason: other.to_string(),
        },
    }
}

struct WsTx {
    sink: SplitSink<Ws, Message>,
}

impl CallerTx for WsTx {
    async fn send_frame(&mut self, frame: &[i16]) -> Result<(), RunError> {
        let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
        self.sink
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| RunError::WebSocket(e.to_string()))
    }
}

struct WsRx {
    stream: SplitStream<Ws>,
}

impl CallerRx for WsRx {
    async fn next(&mut self) -> Result<Heard, RunError> {
        // Cancel-safe: a message is taken from the stream only in the same poll that
        // returns it.
        loop {
            let Some(message) = self.stream.next().await else {
                return Ok(Heard::Closed("the engine closed the socket".into()));
            };
            match message {
                Ok(Message::Binary(audio)) => {
                    return Ok(Heard::Audio {
                        rms: rms_le_bytes(&audio),
                    })
                }
                Ok(Message::Text(text)) => match serde_json::from_str::<EngineEvent>(&text) {
                    Ok(event) => {
                        tracing::debug!(?event, "engine event");
                        return Ok(Heard::Event(event));
                    }
                    Err(e) => tracing::debug!(error = %e, "unreadable engine event, ignored"),
                },
                Ok(Message::Close(frame)) => {
                    let why = frame.map_or_else(
                        || "the engine closed the socket".to_owned(),
                        |f| {
                            format!(
                                "the engine closed the socket ({} {})",
                                u16::from(f.code),
                                f.reason
                            )
                        },
                    );
                    return Ok(Heard::Closed(why));
                }
                // Pings are answered by tungstenite on the next write (every 20 ms).
                Ok(_) => {}
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    return Ok(Heard::Closed("the socket closed".into()))
                }
                Err(e) => return Err(RunError::WebSocket(e.to_string())),
            }
        }
    }
}

/// One call over `/v1/stream`: connect, `start`, converse, `stop`, close.
pub(crate) async fn run(
    target: &StreamTarget,
    question: &Question,
    caller: Option<&str>,
    timing: &Timing,
    reply_rms: f64,
) -> Result<Measured, RunError> {
    let request = request(target)?;
    let limit = target.connect_timeout;
    let (ws, _) = tokio::time::timeout(limit, tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| RunError::Timeout {
            what: "the WebSocket upgrade",
            ms: limit.as_millis() as u64,
        })?
        .map_err(|e| classify(&target.url, e))?;
    let (sink, stream) = ws.split();
    let mut tx = WsTx { sink };
    let mut rx = WsRx { stream };
    // The caller number goes here and nowhere else.
    let mut start = serde_json::json!({
        "type": "start",
        "rate": question.rate,
        "encoding": "pcm16",
    });
    if let Some(caller) = caller {
        start["caller"] = caller.into();
    }
    if let Some(did) = &target.did {
        start["did"] = did.as_str().into();
    }
    tx.sink
        .send(Message::Text(start.to_string().into()))
        .await
        .map_err(|e| RunError::WebSocket(e.to_string()))?;
    let result = converse(&mut tx, &mut rx, question, timing, reply_rms).await;
    // Hang up politely whatever happened: `stop`, then read until the engine closes
    // (its `end` comes first). Dropping the socket with the engine's audio still unread
    // would make the kernel reset the connection, and the engine could lose the `stop`.
    let bye = async {
        let stop = Message::Text(r#"{"type":"stop"}"#.into());
        if tx.sink.send(stop).await.is_ok() {
            while let Some(Ok(message)) = rx.stream.next().await {
                if let Message::Close(_) = message {
                    break;
                }
            }
            let _ = tx.sink.close().await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(2), bye)
        .await
        .is_err()
    {
        tracing::debug!("the engine did not take the stop in time; dropping the socket");
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::auth::Secret;
    use super::*;

    fn target(url: &str, credentials: Credentials) -> StreamTarget {
        StreamTarget {
            url: url.into(),
            credentials,
            did: None,
            connect_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn urls_are_checked_and_printed_without_query() {
        assert!(target("ws://127.0.0.1:9090/v1/stream", Credentials::None)
            .validate()
            .is_ok());
        assert!(target("wss://tom.example/v1/stream", Credentials::None)
            .validate()
            .is_ok());
        let err = target("http://x/v1/stream?token=abc", Credentials::None)
            .validate()
            .unwrap_err();
        assert_eq!(err.url, "http://x/v1/stream");
        assert!(!err.to_string().contains("abc"));
        assert!(target("ws://", Credentials::None).validate().is_err());
        assert_eq!(
            without_query("ws://h/v1/stream?token=t#x"),
            "ws://h/v1/stream"
        );
    }

    #[test]
    fn the_bearer_header_carries_the_token() {
        let req = request(&target(
            "ws://127.0.0.1:1/v1/stream",
            Credentials::Bearer(Secret::new("tok")),
        ))
        .unwrap();
        assert_eq!(req.headers()[AUTHORIZATION], "Bearer tok");
        let req = request(&target("ws://127.0.0.1:1/v1/stream", Credentials::None)).unwrap();
        assert!(req.headers().get(AUTHORIZATION).is_none());
        let bad = request(&target(
            "ws://127.0.0.1:1/v1/stream",
            Credentials::Bearer(Secret::new("a\nb")),
        ));
        assert!(matches!(bad, Err(RunError::Protocol(_))));
    }

    #[test]
    fn engine_events_parse() {
        let parse = |s: &str| serde_json::from_str::<EngineEvent>(s).unwrap();
        assert_eq!(
            parse(r#"{"type":"mark","name":"first_audio","ms":412,"backend":"local"}"#),
            EngineEvent::Mark {
                name: "first_audio".into(),
                ms: 412.0,
                backend: Some("local".into())
            }
        );
        assert_eq!(
            parse(r#"{"type":"started","call_id":"c1","backend":"provider","rate":16000}"#),
            EngineEvent::Started {
                call_id: Some("c1".into()),
                backend: Some("provider".into()),
                rate: Some(16_000)
            }
        );
        assert_eq!(
            parse(r#"{"type":"transcript","role":"agent","text":"hi"}"#),
            EngineEvent::Other
        );
        assert_eq!(
            parse(r#"{"type":"end"}"#),
            EngineEvent::End { outcome: None }
        );
    }
}
