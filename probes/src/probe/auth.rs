//! The bearer token of each run: a fixed one, or a fresh HS256 JWT per run (the engine
//! accepts a `jti` once, so a token can never be reused across runs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

/// A secret that never shows in `Debug` output or logs (the engine's own type).
pub use engine::config::Secret;

/// Minting failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// jsonwebtoken refused (an empty secret, …).
    #[error("cannot mint a JWT: {0}")]
    Mint(String),
    /// The system clock is before 1970.
    #[error("the system clock is before the Unix epoch")]
    Clock,
}

/// The claims of a minted token (what the engine checks: `exp`, `jti`, optional `aud`
/// and `iss`; `iat` and `sub` are for its logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// A fresh UUID v4 per token.
    pub jti: String,
    /// Always `realtime-probe`.
    pub sub: String,
    /// Audience, when configured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub aud: Option<String>,
    /// Issuer, when configured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iss: Option<String>,
}

/// How each run authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// No `Authorization` header (the engine will refuse: useful only to test that).
    None,
    /// The same bearer token for every run.
    Bearer(Secret),
    /// A fresh HS256 token per run.
    Hs256 {
        /// The shared secret (`TOM_JWT_HS256_SECRET` on the engine).
        secret: Secret,
        /// `aud` claim.
        audience: Option<String>,
        /// `iss` claim.
        issuer: Option<String>,
        /// `exp` = now + this.
        ttl: Duration,
    },
}

/// Default token lifetime: long enough for one run with a slow greeting, short enough
/// that a leaked token is soon useless.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

impl Credentials {
    /// The token for one run, if any.
    pub fn token_for_run(&self) -> Result<Option<Secret>, AuthError> {
        match self {
            Self::None => Ok(None),
            Self::Bearer(token) => Ok(Some(token.clone())),
            Self::Hs256 {
                secret,
                audience,
                issuer,
                ttl,
            } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|_| AuthError::Clock)?
                    .as_secs();
                let claims = Claims {
                    exp: now.saturating_add(ttl.as_secs()),
                    iat: now,
                    jti: uuid::Uuid::new_v4().to_string(),
                    sub: "realtime-probe".into(),
                    aud: audience.clone(),
                    iss: issuer.clone(),
                };
                mint_hs256(secret, &claims).map(Some)
            }
        }
    }
}

/// Signs `claims` with HS256.
pub fn mint_hs256(secret: &Secret, claims: &Claims) -> Result<Secret, AuthError> {
    if secret.expose().is_empty() {
        return Err(AuthError::Mint("the HS256 secret is empty".into()));
    }
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .map(Secret::new)
    .map_err(|e| AuthError::Mint(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    fn decode_with(
        token: &Secret,
        secret: &str,
        aud: Option<&str>,
    ) -> jsonwebtoken::errors::Result<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        match aud {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        decode::<Claims>(
            token.expose(),
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .map(|data| data.claims)
    }

    #[test]
    fn each_run_gets_a_fresh_signed_token() {
        let credentials = Credentials::Hs256 {
            secret: Secret::new("s3cret"),
            audience: Some("tom".into()),
            issuer: Some("ci".into()),
            ttl: DEFAULT_TTL,
        };
        let a = credentials.token_for_run().unwrap().unwrap();
        let b = credentials.token_for_run().unwrap().unwrap();
        let ca = decode_with(&a, "s3cret", Some("tom")).expect("valid");
        let cb = decode_with(&b, "s3cret", Some("tom")).expect("valid");
        assert_ne!(ca.jti, cb.jti, "a jti per run");
        assert!(uuid::Uuid::parse_str(&ca.jti).is_ok());
        assert_eq!(ca.exp - ca.iat, 300);
        assert_eq!(ca.iss.as_deref(), Some("ci"));
        assert_eq!(ca.sub, "realtime-probe");
        let header = jsonwebtoken::decode_header(a.expose()).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        // Another secret does not verify it.
        assert!(decode_with(&a, "other", Some("tom")).is_err());
    }

    #[test]
    fn optional_claims_are_left_out() {
        let credentials = Credentials::Hs256 {
            secret: Secret::new("k"),
            audience: None,
            issuer: None,
            ttl: Duration::from_secs(60),
        };
        let token = credentials.token_for_run().unwrap().unwrap();
        let claims = decode_with(&token, "k", None).unwrap();
        assert_eq!((claims.aud, claims.iss), (None, None));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        let value = decode::<serde_json::Value>(
            token.expose(),
            &DecodingKey::from_secret(b"k"),
            &validation,
        )
        .unwrap()
        .claims;
        assert!(
            value.get("aud").is_none() && value.get("iss").is_none(),
            "{value}"
        );
    }

    #[test]
    fn fixed_tokens_and_bad_secrets() {
        let fixed = Credentials::Bearer(Secret::new("abc"));
        assert_eq!(fixed.token_for_run().unwrap().unwrap().expose(), "abc");
        assert_eq!(Credentials::None.token_for_run().unwrap(), None);
        let empty = Credentials::Hs256 {
            secret: Secret::new(""),
            audience: None,
            issuer: None,
            ttl: DEFAULT_TTL,
        };
        assert!(matches!(empty.token_for_run(), Err(AuthError::Mint(_))));
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "********");
        assert!(!format!("{fixed:?}").contains("abc"));
    }
}
