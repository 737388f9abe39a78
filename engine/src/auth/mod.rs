//! Who may open a `/v1/stream` (docs/stream.md, "Opening a stream"; DESIGN.md Security).
//!
//! [`Authenticator::admit`] runs before the WebSocket upgrade: extract the token, verify
//! it against the one configured key ([`jwt`]), then claim its `jti` so it is used once
//! ([`replay`]). The replay claim comes last, so only correctly signed tokens can take
//! space in the store.
//!
//! Every refusal is an [`AuthError`] whose [`AuthError::reason`] is a short stable label
//! for `tom_stream_rejected_total{reason}` and the log, and whose
//! [`AuthError::refusal`] says which HTTP answer it gets. Nothing here ever formats a
//! token or a key.

pub mod jwt;
pub mod replay;

use std::time::Duration;

pub use jwt::{extract_token, ClaimRules, Claims, JwtVerifier, PinnedAlg};
pub use replay::{Claimed, MemoryStore, RedisStore, ReplayStore, StoreError};

use crate::config::{AuthConfig, ConfigError};

/// Why a stream was refused. Display is a short sentence for the log; it never contains
/// the token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header and no `token` query parameter.
    #[error("no token (Authorization: Bearer or ?token=)")]
    MissingToken,
    /// Not three base64url parts of JSON, too long, or claims of the wrong type.
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// The signature does not verify with the configured key.
    #[error("token signature does not verify")]
    BadSignature,
    /// The header's `alg` is not the configured one (`none` included).
    #[error("token algorithm is not the configured one")]
    WrongAlg,
    /// `exp` plus the leeway has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` minus the leeway is still ahead.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `aud` is missing, or does not name the configured audience.
    #[error("token audience is not accepted")]
    BadAudience,
    /// `iss` is missing, or is not the configured issuer.
    #[error("token issuer is not accepted")]
    BadIssuer,
    /// No `exp`: a token without an end would be usable forever.
    #[error("token has no exp")]
    MissingExp,
    /// No `jti`: replay protection needs an id.
    #[error("token has no jti")]
    MissingJti,
    /// The `jti` was used before and its token has not expired.
    #[error("token id was already used")]
    Replayed,
    /// The replay store could not record the id, so the token cannot be admitted.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No JWT key is configured: streams are disabled.
    #[error("no JWT key is configured (TOM_JWT_HS256_SECRET or TOM_JWT_RS256_PUBLIC_KEY_FILE)")]
    NotConfigured,
}

/// How a refusal is answered (docs/stream.md): the client's fault, or ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401 `{"error":"unauthorized"}`: the token is missing or not acceptable.
    Unauthorized,
    /// 503 `{"error":"unavailable"}`: the engine cannot check tokens right now, or
    /// streams are not configured; a valid token may succeed later.
    Unavailable,
}

impl AuthError {
    /// Stable label for the metric and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::WrongAlg => "wrong_alg",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadAudience => "bad_audience",
            Self::BadIssuer => "bad_issuer",
            Self::MissingExp => "missing_exp",
            Self::MissingJti => "missing_jti",
            Self::Replayed => "replayed",
            Self::Store(StoreError::Unavailable(_)) => "store_unavailable",
            Self::Store(StoreError::Full(_)) => "store_full",
            Self::NotConfigured => "not_configured",
        }
    }

    /// Which HTTP answer the endpoint gives.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Store(_) | Self::NotConfigured => Refusal::Unavailable,
            _ => Refusal::Unauthorized,
        }
    }
}

/// Admits or refuses stream upgrades. One per engine, shared by every connection.
#[derive(Debug)]
pub struct Authenticator {
    verifier: Option<JwtVerifier>,
    store: ReplayStore,
}

impl Authenticator {
    /// From the `[auth]` settings. Reads the key file now. With `REDIS_URL` it tries
    /// Redis once (bounded by `redis_timeout_ms`) only to log whether it answers: a
    /// Redis that is down must not keep the engine from starting, it only refuses
    /// streams (`store_unavailable`) until it is back.
    ///
    /// Must run inside a Tokio runtime (the Redis connection manager spawns there).
    pub async fn from_config(config: &AuthConfig) -> Result<Self, ConfigError> {
        let verifier = JwtVerifier::from_config(config)?;
        let store = match &config.redis_url {
            None => ReplayStore::Memory(MemoryStore::new(config.memory_max_entries)),
            Some(url) => {
                let timeout = Duration::from_millis(config.redis_timeout_ms);
                let store =
                    RedisStore::connect_lazy(url, timeout).map_err(|e| ConfigError::Env {
                        name: "REDIS_URL",
                        problem: e.to_string(),
                    })?;
                if verifier.is_some() {
                    match store.ping().await {
                        Ok(()) => tracing::info!(redis = %url.masked(), "jti replay store: redis"),
                        Err(e) => tracing::warn!(
                            redis = %url.masked(),
                            error = %e,
                            "jti replay store: redis does not answer; streams are refused until it does"
                        ),
                    }
                }
                ReplayStore::Redis(store)
            }
        };
        match &verifier {
            Some(v) => tracing::info!(
                alg = v.algorithm().name(),
                store = store.kind(),
                "/v1/stream: JWT required"
            ),
            None => tracing::warn!(
                "/v1/stream: no JWT key configured (TOM_JWT_HS256_SECRET or \
                 TOM_JWT_RS256_PUBLIC_KEY_FILE); every stream is refused"
            ),
        }
        Ok(Self::new(verifier, store))
    }

    /// From parts; `None` for the verifier disables streams.
    pub fn new(verifier: Option<JwtVerifier>, store: ReplayStore) -> Self {
        Self { verifier, store }
    }

    /// Whether streams can be admitted at all (a key is configured).
    pub fn is_enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// Checks an upgrade request: the `Authorization` header value and the raw query
    /// string, as received. On success the token's id is spent.
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        query: Option<&str>,
    ) -> Result<Claims, AuthError> {
        self.admit_at(authorization, query, replay::unix_now())
            .await
    }

    /// [`Authenticator::admit`] at a given `now` (seconds since the Unix epoch).
    pub async fn admit_at(
        &self,
        authorization: Option<&str>,
        query: Option<&str>,
        now: u64,
    ) -> Result<Claims, AuthError> {
        let verifier = self.verifier.as_ref().ok_or(AuthError::NotConfigured)?;
        let token = extract_token(authorization, query)?;
        let claims = verifier.verify_at(&token, now)?;
        // Kept as long as the verifier would still accept the token.
        let until = claims.exp.saturating_add(verifier.leeway_secs());
        match self.store.claim_at(&claims.jti, until, now).await? {
            Claimed::First => Ok(claims),
            Claimed::Replayed => Err(AuthError::Replayed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const SECRET: &str = "an-hs256-test-secret-of-32-bytes!";

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encode")
    }

    fn authenticator(max_entries: usize) -> Authenticator {
        let verifier = JwtVerifier::hs256(SECRET.as_bytes(), ClaimRules::default()).expect("key");
        Authenticator::new(
            Some(verifier),
            ReplayStore::Memory(MemoryStore::new(max_entries)),
        )
    }

    #[tokio::test]
    async fn a_token_is_admitted_once() {
        let auth = authenticator(10);
        let t = token(json!({"jti": "j1", "exp": NOW + 60}));
        let bearer = format!("Bearer {t}");
        let claims = auth
            .admit_at(Some(&bearer), None, NOW)
            .await
            .expect("admitted");
        assert_eq!(claims.jti, "j1");
        // Again, by header or by query: replayed.
        let again = auth.admit_at(Some(&bearer), None, NOW + 1).await;
        assert_eq!(again, Err(AuthError::Replayed));
        let query = format!("token={t}");
        let again = auth.admit_at(None, Some(&query), NOW + 1).await;
        assert_eq!(again.map_err(|e| e.reason()), Err("replayed"));
        // Still refused within the leeway after exp (the verifier still accepts it).
        let late = auth.admit_at(Some(&bearer), None, NOW + 80).await;
        assert_eq!(late, Err(AuthError::Replayed));
        // Past exp + leeway it is expired, whatever the store says.
        let expired = auth.admit_at(Some(&bearer), None, NOW + 90).await;
        assert_eq!(expired, Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn refused_tokens_do_not_spend_their_id() {
        let auth = authenticator(10);
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"jti": "j2", "exp": NOW + 60}),
            &EncodingKey::from_secret(b"not-the-secret-but-32-bytes-long!"),
        )
        .expect("encode");
        let r = auth
            .admit_at(Some(&format!("Bearer {forged}")), None, NOW)
            .await;
        assert_eq!(r, Err(AuthError::BadSignature));
        let real = token(json!({"jti": "j2", "exp": NOW + 60}));
        assert!(auth
            .admit_at(Some(&format!("Bearer {real}")), None, NOW)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn without_a_key_every_stream_is_refused() {
        let auth = Authenticator::new(None, ReplayStore::Memory(MemoryStore::new(10)));
        assert!(!auth.is_enabled());
        let t = token(json!({"jti": "j", "exp": NOW + 60}));
        let err = auth
            .admit_at(Some(&format!("Bearer {t}")), None, NOW)
            .await
            .expect_err("refused");
        assert_eq!(err.reason(), "not_configured");
        assert_eq!(err.refusal(), Refusal::Unavailable);
    }

    #[tokio::test]
    async fn a_full_store_refuses_as_unavailable() {
        let auth = authenticator(1);
        for (jti, want) in [("a", Ok("a")), ("b", Err("store_full"))] {
            let t = token(json!({"jti": jti, "exp": NOW + 60}));
            let r = auth.admit_at(Some(&format!("Bearer {t}")), None, NOW).await;
            assert_eq!(
                r.as_ref().map(|c| c.jti.as_str()).map_err(|e| e.reason()),
                want
            );
            if let Err(e) = r {
                assert_eq!(e.refusal(), Refusal::Unavailable);
            }
        }
    }

    #[tokio::test]
    async fn from_config_reads_the_settings() {
        let config = AuthConfig {
            hs256_secret: Some(crate::config::Secret::new(SECRET)),
            audience: Some("tom".into()),
            ..AuthConfig::default()
        };
        let auth = Authenticator::from_config(&config).await.expect("config");
        assert!(auth.is_enabled());
        let t = token(json!({"jti": "j", "exp": NOW + 60}));
        let r = auth.admit_at(Some(&format!("Bearer {t}")), None, NOW).await;
        assert_eq!(r, Err(AuthError::BadAudience));
        let disabled = Authenticator::from_config(&AuthConfig::default())
            .await
            .expect("config");
        assert!(!disabled.is_enabled());
    }

    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: T) {}

    #[tokio::test]
    async fn one_authenticator_serves_every_connection_task() {
        // The endpoint shares one Authenticator between handlers and awaits `admit` in
        // spawned tasks: both must be Send.
        let auth = authenticator(10);
        assert_send_sync(&auth);
        assert_send(auth.admit(None, None));
        assert!(!format!("{auth:?}").contains(SECRET));
    }

    #[test]
    fn reasons_are_stable_and_refusals_follow_the_contract() {
        let cases = [
            (
                AuthError::MissingToken,
                "missing_token",
                Refusal::Unauthorized,
            ),
            (AuthError::Malformed, "malformed", Refusal::Unauthorized),
            (
                AuthError::BadSignature,
                "bad_signature",
                Refusal::Unauthorized,
            ),
            (AuthError::WrongAlg, "wrong_alg", Refusal::Unauthorized),
            (AuthError::Expired, "expired", Refusal::Unauthorized),
            (
                AuthError::NotYetValid,
                "not_yet_valid",
                Refusal::Unauthorized,
            ),
            (
                AuthError::BadAudience,
                "bad_audience",
                Refusal::Unauthorized,
            ),
            (AuthError::BadIssuer, "bad_issuer", Refusal::Unauthorized),
            (AuthError::MissingExp, "missing_exp", Refusal::Unauthorized),
            (AuthError::MissingJti, "missing_jti", Refusal::Unauthorized),
            (AuthError::Replayed, "replayed", Refusal::Unauthorized),
            (
                AuthError::Store(StoreError::Unavailable("down".into())),
                "store_unavailable",
                Refusal::Unavailable,
            ),
            (
                AuthError::Store(StoreError::Full(3)),
                "store_full",
                Refusal::Unavailable,
            ),
            (
                AuthError::NotConfigured,
                "not_configured",
                Refusal::Unavailable,
            ),
        ];
        for (err, reason, refusal) in cases {
            assert_eq!(err.reason(), reason);
            assert_eq!(err.refusal(), refusal, "{reason}");
            assert!(!err.to_string().is_empty());
        }
    }
}
