//! JWT verification for `/v1/stream`: one key, whose kind pins the algorithm.
//!
//! The algorithm comes from the configuration, never from the token: the header's `alg`
//! is compared with the pinned one before any key is used, so `alg: none` and the
//! RS256→HS256 key-confusion attack (the RSA public key used as an HMAC secret) cannot
//! select a weaker check. Time claims are checked here against a `now` passed in, so the
//! rules are tested to the second without a real clock.

use std::borrow::Cow;
use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Deserializer};

use super::AuthError;
use crate::config::{AuthConfig, ConfigError};

/// Longest token accepted. Real tokens are a few hundred bytes; the cap keeps a hostile
/// client from making us base64-decode and parse megabytes before the signature check.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Shortest HS256 secret: RFC 7518 §3.2 requires a key at least as long as the hash.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Smallest RSA modulus accepted for RS256 (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// The one algorithm a verifier accepts, fixed by which key is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedAlg {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 SHA-256 with an RSA public key.
    Rs256,
}

impl PinnedAlg {
    /// The `alg` header value, exactly as RFC 7518 spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

/// The claim rules besides the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// Required `aud`, when set. When unset, a token that names an audience is refused
    /// (RFC 7519 §4.1.3: we cannot identify with a value we were not told).
    pub audience: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Default for ClaimRules {
    fn default() -> Self {
        Self {
            audience: None,
            issuer: None,
            leeway_secs: 30,
        }
    }
}

/// What a verified token says. Only claims the engine uses are kept; `aud` and `iss`
/// were checked against the configuration already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Token id, the replay-protection key.
    pub jti: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch.
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch (informational; not checked).
    pub iat: Option<u64>,
    /// Subject: who the token was issued to, for the log.
    pub sub: Option<String>,
    /// Issuer.
    pub iss: Option<String>,
}

/// The verification key. Its Debug never shows key bytes: for HS256 they are the secret.
struct VerifyKey(DecodingKey);

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyKey([REDACTED])")
    }
}

/// Checks tokens against one pinned algorithm and key. Cheap to share (`&self` only).
#[derive(Debug)]
pub struct JwtVerifier {
    alg: PinnedAlg,
    key: VerifyKey,
    validation: Validation,
    leeway_secs: u64,
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The HS256 secret is too short to resist brute force.
    #[error("must be at least {MIN_HS256_SECRET_BYTES} bytes (RFC 7518 §3.2), got {0}")]
    SecretTooShort(usize),
    /// The PEM is not an RSA public key.
    #[error("not an RSA public key in PEM (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY)")]
    NotRsaPublicKey,
    /// The RSA key is too small.
    #[error("RSA key of {0} bits; at least {MIN_RSA_BITS} are required")]
    RsaTooSmall(usize),
}

impl JwtVerifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8], rules: ClaimRules) -> Result<Self, KeyError> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        Ok(Self::new(
            PinnedAlg::Hs256,
            DecodingKey::from_secret(secret),
            rules,
        ))
    }

    /// A verifier for RS256 tokens, from an RSA public key in PEM (SPKI or PKCS#1).
    ///
    /// The key is parsed here, not by `jsonwebtoken`, whose PEM reader also takes a
    /// private key or a malformed body and would then fail every token as a bad
    /// signature instead of failing at startup.
    pub fn rs256_pem(pem: &str, rules: ClaimRules) -> Result<Self, KeyError> {
        let key = rsa::RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem))
            .map_err(|_| KeyError::NotRsaPublicKey)?;
        let bits = key.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(KeyError::RsaTooSmall(bits));
        }
        let key =
            DecodingKey::from_rsa_raw_components(&key.n().to_bytes_be(), &key.e().to_bytes_be());
        Ok(Self::new(PinnedAlg::Rs256, key, rules))
    }

    /// The verifier the configuration asks for; `None` when no key is configured, which
    /// disables streams. Errors name the variable at fault.
    pub fn from_config(config: &AuthConfig) -> Result<Option<Self>, ConfigError> {
        let rules = ClaimRules {
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
            leeway_secs: config.leeway_secs,
        };
        match (&config.hs256_secret, &config.rs256_public_key_file) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                key: "auth",
                problem: "TOM_JWT_HS256_SECRET and TOM_JWT_RS256_PUBLIC_KEY_FILE are both set; \
                          configure one key, which pins the algorithm"
                    .into(),
            }),
            (Some(secret), None) => Self::hs256(secret.expose().as_bytes(), rules)
                .map(Some)
                .map_err(|e| ConfigError::Env {
                    name: "TOM_JWT_HS256_SECRET",
                    problem: e.to_string(),
                }),
            (None, Some(path)) => {
                let env_error = |problem: String| ConfigError::Env {
                    name: "TOM_JWT_RS256_PUBLIC_KEY_FILE",
                    problem: format!("{}: {problem}", path.display()),
                };
                let pem = std::fs::read_to_string(path).map_err(|e| env_error(e.to_string()))?;
                Self::rs256_pem(&pem, rules)
                    .map(Some)
                    .map_err(|e| env_error(e.to_string()))
            }
            (None, None) => Ok(None),
        }
    }

    fn new(alg: PinnedAlg, key: DecodingKey, rules: ClaimRules) -> Self {
        let mut validation = Validation::new(alg.algorithm());
        // Time claims are checked in `verify_at` against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let mut required = HashSet::from(["exp".to_owned()]);
        if let Some(aud) = &rules.audience {
            validation.set_audience(&[aud]);
            required.insert("aud".to_owned());
        }
        if let Some(iss) = &rules.issuer {
            validation.set_issuer(&[iss]);
            required.insert("iss".to_owned());
        }
        validation.required_spec_claims = required;
        Self {
            alg,
            key: VerifyKey(key),
            validation,
            leeway_secs: rules.leeway_secs,
        }
    }

    /// The pinned algorithm.
    pub fn algorithm(&self) -> PinnedAlg {
        self.alg
    }

    /// The clock skew allowed; the replay store keeps an id this long past `exp` too,
    /// since the token is accepted that long.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        self.check_header(token)?;
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.key.0, &self.validation)
            .map_err(map_jwt_error)?;
        let raw = data.claims;
        let exp = raw.exp.ok_or(AuthError::MissingExp)?;
        // RFC 7519 §4.1.4: valid only *before* exp.
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = raw.nbf {
            if now.saturating_add(self.leeway_secs) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        let jti = raw
            .jti
            .filter(|j| !j.is_empty())
            .ok_or(AuthError::MissingJti)?;
        Ok(Claims {
            jti,
            exp,
            nbf: raw.nbf,
            iat: raw.iat,
            sub: raw.sub,
            iss: raw.iss,
        })
    }

    /// Refuses any `alg` but the pinned one, with its own reason, before a key is used.
    /// `jsonwebtoken` would refuse them too, but as a JSON error for `none`.
    fn check_header(&self, token: &str) -> Result<(), AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| AuthError::Malformed)?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        // RFC 7515 §4.1.11: extensions marked critical that we do not implement (all of
        // them) make the token invalid.
        if header.contains_key("crit") {
            return Err(AuthError::Malformed);
        }
        match header.get("alg").and_then(|a| a.as_str()) {
            Some(alg) if alg == self.alg.name() => Ok(()),
            Some(_) => Err(AuthError::WrongAlg),
            None => Err(AuthError::Malformed),
        }
    }
}

/// The claims as the token carries them; presence rules are applied in `verify_at`.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
}

/// RFC 7519 NumericDate: seconds since the epoch, integer or not. Negative or
/// non-numeric values make the token malformed.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => match n.as_u64() {
            Some(secs) => Ok(Some(secs)),
            None => match n.as_f64() {
                Some(f) if (0.0..1e15).contains(&f) => Ok(Some(f as u64)),
                _ => Err(D::Error::custom("NumericDate out of range")),
            },
        },
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::WrongAlg,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::BadAudience,
        ErrorKind::InvalidIssuer => AuthError::BadIssuer,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "aud" => AuthError::BadAudience,
            "iss" => AuthError::BadIssuer,
            "exp" => AuthError::MissingExp,
            _ => AuthError::Malformed,
        },
        _ => AuthError::Malformed,
    }
}

/// The token of an upgrade request: an `Authorization: Bearer` header wins, else the
/// `token` query parameter (percent-decoded). Pure, so the endpoint passes what it has.
///
/// A non-Bearer `Authorization` (a proxy's Basic credentials) is ignored rather than
/// refused, so the query can still carry the token. Two `token` parameters are refused
/// as malformed: which one was meant is ambiguous.
pub fn extract_token<'a>(
    authorization: Option<&'a str>,
    query: Option<&'a str>,
) -> Result<Cow<'a, str>, AuthError> {
    if let Some((scheme, rest)) = authorization.and_then(|h| h.trim().split_once(' ')) {
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            return if token.is_empty() {
                Err(AuthError::MissingToken)
            } else {
                Ok(Cow::Borrowed(token))
            };
        }
    }
    let Some(query) = query else {
        return Err(AuthError::MissingToken);
    };
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut tokens = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "token")
        .map(|(_, v)| v);
    match (tokens.next(), tokens.next()) {
        (None, _) => Err(AuthError::MissingToken),
        (Some(_), Some(_)) => Err(AuthError::Malformed),
        (Some(t), None) if t.trim().is_empty() => Err(AuthError::MissingToken),
        (Some(t), None) => Ok(Cow::Owned(t.trim().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{json, Value};
    use std::path::Path;

    const NOW: u64 = 1_800_000_000;
    const SECRET: &[u8] = b"an-hs256-test-secret-of-32-bytes!";
    const OTHER_SECRET: &[u8] = b"another-hs256-secret-of-32-bytes!";

    fn data(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/jwt")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn claims() -> Value {
        json!({"jti": "call-1", "exp": NOW + 300, "iat": NOW, "sub": "rig-7"})
    }

    fn hs256_token(secret: &[u8], claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("encode")
    }

    fn rs256_token(private_pem: &str, claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            claims,
            &EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("private key"),
        )
        .expect("encode")
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
    }

    /// A token built by hand, for headers `jsonwebtoken` will not produce.
    fn hand_made(header: &Value, claims: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header),
            b64(claims),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        // The key-confusion attacker's HMAC, written out (RFC 2104) so the test does not
        // depend on a signing path of the library under test.
        use sha2::{Digest, Sha256};
        let mut k = if key.len() > 64 {
            Sha256::digest(key).to_vec()
        } else {
            key.to_vec()
        };
        k.resize(64, 0);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .to_vec()
    }

    fn hs256() -> JwtVerifier {
        JwtVerifier::hs256(SECRET, ClaimRules::default()).expect("verifier")
    }

    fn rs256() -> JwtVerifier {
        JwtVerifier::rs256_pem(&data("rs256-public.pem"), ClaimRules::default()).expect("verifier")
    }

    fn reason(result: Result<Claims, AuthError>) -> &'static str {
        match result {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.reason(),
        }
    }

    #[test]
    fn a_valid_hs256_token_is_accepted() {
        let claims = hs256()
            .verify_at(&hs256_token(SECRET, &claims()), NOW)
            .expect("valid");
        assert_eq!(claims.jti, "call-1");
        assert_eq!(claims.exp, NOW + 300);
        assert_eq!(claims.sub.as_deref(), Some("rig-7"));
        assert_eq!(claims.iat, Some(NOW));
    }

    #[test]
    fn a_valid_rs256_token_is_accepted() {
        let token = rs256_token(&data("rs256-private.pem"), &claims());
        let claims = rs256().verify_at(&token, NOW).expect("valid");
        assert_eq!(claims.jti, "call-1");
    }

    #[test]
    fn alg_none_is_refused() {
        for alg in ["none", "None", "NONE"] {
            let unsigned = hand_made(&json!({"alg": alg, "typ": "JWT"}), &claims(), b"");
            // With and without the trailing dot of an empty signature.
            let bare = unsigned.trim_end_matches('.').to_owned();
            for token in [&unsigned, &bare] {
                let hs = reason(hs256().verify_at(token, NOW));
                let rs = reason(rs256().verify_at(token, NOW));
                assert!(matches!(hs, "wrong_alg" | "malformed"), "{alg}: {hs}");
                assert!(matches!(rs, "wrong_alg" | "malformed"), "{alg}: {rs}");
            }
            assert_eq!(reason(hs256().verify_at(&unsigned, NOW)), "wrong_alg");
        }
    }

    #[test]
    fn rs256_public_key_as_hmac_secret_is_refused() {
        // The classic key confusion: the attacker knows the public key and signs an HS256
        // token with its PEM bytes, hoping the verifier feeds the same bytes to HMAC.
        let public_pem = data("rs256-public.pem");
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let signing_input = format!("{}.{}", b64(&header), b64(&claims()));
        for key in [public_pem.as_bytes(), public_pem.trim().as_bytes()] {
            let token = format!(
                "{signing_input}.{}",
                URL_SAFE_NO_PAD.encode(hmac_sha256(key, signing_input.as_bytes()))
            );
            assert_eq!(reason(rs256().verify_at(&token, NOW)), "wrong_alg");
        }
        // The library's own HS256 path with the same bytes, for good measure.
        let token = hs256_token(public_pem.as_bytes(), &claims());
        assert_eq!(reason(rs256().verify_at(&token, NOW)), "wrong_alg");
    }

    #[test]
    fn the_library_refuses_the_wrong_family_too() {
        // Defence in depth: even without our header check, `jsonwebtoken` must not verify
        // an HS256 token with the RSA key, nor an RS256 token with the secret.
        let rs = rs256();
        let hs_token = hs256_token(data("rs256-public.pem").as_bytes(), &claims());
        let err = jsonwebtoken::decode::<RawClaims>(&hs_token, &rs.key.0, &rs.validation)
            .map(drop)
            .expect_err("refused");
        assert_eq!(map_jwt_error(err), AuthError::WrongAlg);
        let hs = hs256();
        let rs_token = rs256_token(&data("rs256-private.pem"), &claims());
        let err = jsonwebtoken::decode::<RawClaims>(&rs_token, &hs.key.0, &hs.validation)
            .map(drop)
            .expect_err("refused");
        assert_eq!(map_jwt_error(err), AuthError::WrongAlg);
    }

    #[test]
    fn an_rs256_token_is_refused_by_an_hs256_verifier() {
        let token = rs256_token(&data("rs256-private.pem"), &claims());
        assert_eq!(reason(hs256().verify_at(&token, NOW)), "wrong_alg");
    }

    #[test]
    fn other_algorithms_are_refused() {
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = jsonwebtoken::encode(
                &Header::new(alg),
                &claims(),
                &EncodingKey::from_secret(SECRET),
            )
            .expect("encode");
            assert_eq!(
                reason(hs256().verify_at(&token, NOW)),
                "wrong_alg",
                "{alg:?}"
            );
        }
        let pss = jsonwebtoken::encode(
            &Header::new(Algorithm::PS256),
            &claims(),
            &EncodingKey::from_rsa_pem(data("rs256-private.pem").as_bytes()).expect("key"),
        )
        .expect("encode");
        assert_eq!(reason(rs256().verify_at(&pss, NOW)), "wrong_alg");
    }

    #[test]
    fn a_wrong_key_is_a_bad_signature() {
        let token = hs256_token(OTHER_SECRET, &claims());
        assert_eq!(reason(hs256().verify_at(&token, NOW)), "bad_signature");
        let token = rs256_token(&data("other-private.pem"), &claims());
        assert_eq!(reason(rs256().verify_at(&token, NOW)), "bad_signature");
    }

    #[test]
    fn a_tampered_payload_is_a_bad_signature() {
        let token = hs256_token(SECRET, &claims());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims();
        forged["sub"] = json!("admin");
        parts[1] = b64(&forged);
        assert_eq!(
            reason(hs256().verify_at(&parts.join("."), NOW)),
            "bad_signature"
        );
    }

    #[test]
    fn expiry_honours_the_leeway() {
        let v = hs256();
        let token = hs256_token(SECRET, &json!({"jti": "a", "exp": NOW}));
        // Accepted until exp + 30 s, refused from then on.
        assert!(v.verify_at(&token, NOW + 29).is_ok());
        assert_eq!(reason(v.verify_at(&token, NOW + 30)), "expired");
        let strict = JwtVerifier::hs256(
            SECRET,
            ClaimRules {
                leeway_secs: 0,
                ..ClaimRules::default()
            },
        )
        .expect("verifier");
        assert!(strict.verify_at(&token, NOW - 1).is_ok());
        assert_eq!(reason(strict.verify_at(&token, NOW)), "expired");
    }

    #[test]
    fn exp_is_required() {
        let token = hs256_token(SECRET, &json!({"jti": "a"}));
        assert_eq!(reason(hs256().verify_at(&token, NOW)), "missing_exp");
        let token = hs256_token(SECRET, &json!({"jti": "a", "exp": "tomorrow"}));
        assert!(matches!(
            reason(hs256().verify_at(&token, NOW)),
            "malformed" | "missing_exp"
        ));
        let token = hs256_token(SECRET, &json!({"jti": "a", "exp": -5}));
        assert_eq!(reason(hs256().verify_at(&token, NOW)), "malformed");
    }

    #[test]
    fn a_fractional_exp_is_a_numeric_date() {
        let token = hs256_token(SECRET, &json!({"jti": "a", "exp": (NOW + 60) as f64 + 0.5}));
        assert_eq!(hs256().verify_at(&token, NOW).expect("valid").exp, NOW + 60);
    }

    #[test]
    fn nbf_is_honoured_when_present() {
        let v = hs256();
        let token = hs256_token(
            SECRET,
            &json!({"jti": "a", "exp": NOW + 600, "nbf": NOW + 100}),
        );
        assert_eq!(reason(v.verify_at(&token, NOW)), "not_yet_valid");
        assert_eq!(reason(v.verify_at(&token, NOW + 69)), "not_yet_valid");
        assert!(v.verify_at(&token, NOW + 70).is_ok(), "within the leeway");
        assert!(v.verify_at(&token, NOW + 100).is_ok());
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let v = JwtVerifier::hs256(
            SECRET,
            ClaimRules {
                audience: Some("tom".into()),
                issuer: Some("https://idp.example".into()),
                leeway_secs: 30,
            },
        )
        .expect("verifier");
        let with = |extra: Value| {
            let mut c = claims();
            for (k, val) in extra.as_object().expect("object") {
                c[k] = val.clone();
            }
            hs256_token(SECRET, &c)
        };
        let good = with(json!({"aud": "tom", "iss": "https://idp.example"}));
        assert!(v.verify_at(&good, NOW).is_ok());
        let list = with(json!({"aud": ["other", "tom"], "iss": "https://idp.example"}));
        assert!(
            v.verify_at(&list, NOW).is_ok(),
            "tom among several audiences"
        );
        for (token, want) in [
            (
                with(json!({"aud": "other", "iss": "https://idp.example"})),
                "bad_audience",
            ),
            (with(json!({"iss": "https://idp.example"})), "bad_audience"),
            (
                with(json!({"aud": "tom", "iss": "https://evil.example"})),
                "bad_issuer",
            ),
            (with(json!({"aud": "tom"})), "bad_issuer"),
        ] {
            assert_eq!(reason(v.verify_at(&token, NOW)), want);
        }
        // Unconfigured: no issuer rule; an audience we cannot identify with is refused.
        assert!(hs256()
            .verify_at(&with(json!({"iss": "anyone"})), NOW)
            .is_ok());
        assert_eq!(
            reason(hs256().verify_at(&with(json!({"aud": "someone-else"})), NOW)),
            "bad_audience"
        );
    }

    #[test]
    fn jti_is_required() {
        for claims in [
            json!({"exp": NOW + 60}),
            json!({"exp": NOW + 60, "jti": ""}),
        ] {
            let token = hs256_token(SECRET, &claims);
            assert_eq!(reason(hs256().verify_at(&token, NOW)), "missing_jti");
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let v = hs256();
        let good = hs256_token(SECRET, &claims());
        let oversize = format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES));
        let crit = {
            let header = json!({"alg": "HS256", "crit": ["exp"], "exp": 1});
            let input = format!("{}.{}", b64(&header), b64(&claims()));
            let sig = hmac_sha256(SECRET, input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
        };
        for token in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.???.###",
            &format!("{good}.extra"),
            &oversize,
            &crit,
            &hand_made(&json!({"typ": "JWT"}), &claims(), b"sig"),
        ] {
            assert_eq!(reason(v.verify_at(token, NOW)), "malformed", "{token:.40}");
        }
    }

    #[test]
    fn errors_never_show_the_token_or_the_secret() {
        let v = hs256();
        let secret = std::str::from_utf8(SECRET).expect("utf8");
        assert!(!format!("{v:?}").contains(secret));
        assert!(!format!("{v:?}").contains("an-hs256"));
        for token in [
            hs256_token(OTHER_SECRET, &claims()),
            hs256_token(SECRET, &json!({"jti": "a", "exp": NOW - 100})),
            "not.a.token".to_owned(),
        ] {
            let err = v.verify_at(&token, NOW).expect_err("refused");
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains(&token), "{shown}");
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }

    #[test]
    fn weak_or_wrong_keys_are_refused() {
        assert_eq!(
            JwtVerifier::hs256(b"short", ClaimRules::default()).map(drop),
            Err(KeyError::SecretTooShort(5))
        );
        // A private key where the public one belongs: refused at startup, not per token.
        assert_eq!(
            JwtVerifier::rs256_pem(&data("rs256-private.pem"), ClaimRules::default()).map(drop),
            Err(KeyError::NotRsaPublicKey)
        );
        assert_eq!(
            JwtVerifier::rs256_pem(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                ClaimRules::default()
            )
            .map(drop),
            Err(KeyError::NotRsaPublicKey)
        );
    }

    #[test]
    fn tokens_come_from_the_bearer_header_or_the_query() {
        let t = |h: Option<&str>, q: Option<&str>| extract_token(h, q).map(Cow::into_owned);
        assert_eq!(
            t(Some("Bearer abc.def.ghi"), None),
            Ok("abc.def.ghi".into())
        );
        assert_eq!(t(Some("bearer   abc "), None), Ok("abc".into()));
        assert_eq!(t(Some("BEARER abc"), Some("token=zzz")), Ok("abc".into()));
        assert_eq!(t(None, Some("token=abc.def")), Ok("abc.def".into()));
        assert_eq!(t(None, Some("?x=1&token=a%2Eb%2Ec&y")), Ok("a.b.c".into()));
        assert_eq!(
            t(Some("Basic dXNlcjpwdw=="), Some("token=abc")),
            Ok("abc".into())
        );
        assert_eq!(t(None, None), Err(AuthError::MissingToken));
        assert_eq!(t(Some("Bearer "), None), Err(AuthError::MissingToken));
        assert_eq!(
            t(Some("Basic dXNlcjpwdw=="), None),
            Err(AuthError::MissingToken)
        );
        assert_eq!(t(None, Some("x=1")), Err(AuthError::MissingToken));
        assert_eq!(t(None, Some("token=")), Err(AuthError::MissingToken));
        assert_eq!(t(None, Some("token=a&token=b")), Err(AuthError::Malformed));
    }
}
