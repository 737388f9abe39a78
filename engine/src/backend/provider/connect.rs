//! Opening the provider's WebSocket: egress gate, request with the key, handshake
//! errors classified for the failover policy, retries for transient failures only.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};

use super::config::{AuthStyle, ProviderConfig};
use super::protocol::Dialect;
use crate::backend::{BackendKind, ErrorKind, SessionError};

/// The provider's socket.
pub type ProviderSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn error(kind: ErrorKind, message: impl Into<String>) -> SessionError {
    SessionError::new(BackendKind::Provider, kind, message).fatal()
}

/// The URL to dial: the configured one, with `?model=` unless it names a model or an
/// Azure deployment already.
pub fn endpoint(config: &ProviderConfig) -> Result<url::Url, SessionError> {
    let mut url = url::Url::parse(&config.url)
        .map_err(|e| error(ErrorKind::InvalidRequest, format!("provider URL: {e}")))?;
    let named = url
        .query_pairs()
        .any(|(k, _)| k == "model" || k == "deployment");
    if !named {
        url.query_pairs_mut().append_pair("model", &config.model);
    }
    Ok(url)
}

/// Connects, retrying transient failures (connect, timeout, 5xx) with exponential
/// backoff and jitter; auth and rate-limit refusals return at once.
pub async fn connect(config: &ProviderConfig) -> Result<ProviderSocket, SessionError> {
    // Checked before anything touches the network: with egress off, no socket is
    // opened, no DNS lookup made.
    if !config.allow_egress {
        return Err(error(
            ErrorKind::EgressDisabled,
            "ALLOW_EGRESS=false: the provider is never contacted (set ALLOW_EGRESS=true to use it)",
        ));
    }
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(config.connect_attempts.saturating_sub(1))
        .with_jitter();
    (|| connect_once(config))
        .retry(backoff)
        .when(|e: &SessionError| e.kind.is_transient())
        .notify(|e, after| warn!(error = %e, retry_in_ms = after.as_millis() as u64, "provider connect failed; retrying"))
        .await
}

async fn connect_once(config: &ProviderConfig) -> Result<ProviderSocket, SessionError> {
    let url = endpoint(config)?;
    let key = config.api_key.as_ref().ok_or_else(|| {
        error(
            ErrorKind::Auth,
            "no provider API key: set OPENAI_API_KEY or TOM_PROVIDER_KEY_FILE",
        )
    })?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| error(ErrorKind::InvalidRequest, format!("provider URL: {e}")))?;
    let (name, value) = match config.auth {
        AuthStyle::Bearer => ("authorization", format!("Bearer {}", key.expose())),
        AuthStyle::ApiKeyHeader => ("api-key", key.expose().to_owned()),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        error(
            ErrorKind::Auth,
            "the provider API key contains characters not allowed in an HTTP header",
        )
    })?;
    value.set_sensitive(true);
    request.headers_mut().insert(name, value);
    if config.dialect == Dialect::Beta {
        request
            .headers_mut()
            .insert("openai-beta", HeaderValue::from_static("realtime=v1"));
    }
    debug!(
        host = url.host_str().unwrap_or(""),
        "connecting to the provider"
    );
    let attempt = tokio_tungstenite::connect_async_tls_with_config(request, None, true, None);
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Err(_) => Err(SessionError::new(
            BackendKind::Provider,
            ErrorKind::Timeout,
            format!(
                "no WebSocket handshake with the provider within {} ms",
                config.connect_timeout.as_millis()
            ),
        )
        .fatal()),
        Ok(Err(e)) => Err(classify_handshake(&e)),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

/// The failover class of a failed handshake. Messages carry the status or the I/O
/// error, never headers (which hold the key).
pub fn classify_handshake(e: &WsError) -> SessionError {
    match e {
        WsError::Http(response) => classify_status(response.status()),
        WsError::Io(io) => error(
            ErrorKind::Connect,
            format!("cannot reach the provider: {io}"),
        ),
        WsError::Tls(tls) => error(
            ErrorKind::Connect,
            format!("TLS with the provider failed: {tls}"),
        ),
        WsError::Url(url) => error(ErrorKind::InvalidRequest, format!("provider URL: {url}")),
        WsError::ConnectionClosed | WsError::AlreadyClosed => error(
            ErrorKind::Connect,
            "the provider closed the connection during the handshake",
        ),
        other => error(
            ErrorKind::Protocol,
            format!("WebSocket handshake failed: {other}"),
        ),
    }
}

/// The failover class of an HTTP status refusing the upgrade.
pub fn classify_status(status: StatusCode) -> SessionError {
    let kind = match status.as_u16() {
        401 | 403 => ErrorKind::Auth,
        429 => ErrorKind::RateLimit,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::InvalidRequest,
    };
    error(
        kind,
        format!("the provider refused the connection: HTTP {status}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_failover_classes() {
        for (status, kind) in [
            (401, ErrorKind::Auth),
            (403, ErrorKind::Auth),
            (429, ErrorKind::RateLimit),
            (500, ErrorKind::Server),
            (503, ErrorKind::Server),
            (404, ErrorKind::InvalidRequest),
        ] {
            let e = classify_status(StatusCode::from_u16(status).expect("status"));
            assert_eq!(e.kind, kind, "{status}");
            assert!(e.fatal);
        }
    }

    #[test]
    fn the_model_is_added_unless_the_url_names_one() {
        let mut config = ProviderConfig {
            url: "wss://example.invalid/v1/realtime".into(),
            model: "gpt-realtime".into(),
            ..ProviderConfig::default()
        };
        assert_eq!(
            endpoint(&config).expect("url").as_str(),
            "wss://example.invalid/v1/realtime?model=gpt-realtime"
        );
        config.url =
            "wss://x.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=rt"
                .into();
        assert!(!endpoint(&config).expect("url").as_str().contains("model="));
    }
}
