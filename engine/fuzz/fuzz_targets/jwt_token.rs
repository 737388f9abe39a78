//! Stream authentication (engine::auth): `extract_token` on the upgrade request's
//! `Authorization` header and query string, and `JwtVerifier::verify_at` on the token,
//! with an HS256 verifier whose secret the fuzzer does not know.
//!
//! Input layout (UTF-8): `<authorization>\n<query>\n<token>`. An empty first or second
//! line means "absent". The token part is verified directly and so is whatever
//! `extract_token` returns, so seeds can target either.
#![no_main]

use std::sync::OnceLock;

use engine::auth::{extract_token, ClaimRules, JwtVerifier};
use libfuzzer_sys::fuzz_target;

/// The verifier's secret (seeds/make_seeds.py mints with the same one).
const SECRET: &[u8] = b"engine-fuzz-hs256-secret-of-40-bytes-!!!";
/// The clock the tokens are checked at.
const NOW: u64 = 1_800_000_000;

/// Every token in seeds/jwt_token/ that is signed with SECRET and valid at NOW. No
/// other input may verify: anything else means a forgery got through.
const VALID: [&str; 2] = [
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJqdGkiOiJmdXp6LTEiLCJleHAiOjE4MDAwMDAzMDAsImlhdCI6MTgwMDAwMDAwMCwic3ViIjoicmlnLTcifQ.qn8PoUD6f6LAxSApgAYxmbsI5oxHjQYLcu2sisooBPM",
    "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJmdXp6LTIiLCJleHAiOjE4MDAwMDAzMDAuNSwibmJmIjoxNzk5OTk5OTkwLCJpc3MiOiJ0b20tdGVzdHMifQ.g0LXj2YjYJV5GtvOyscjQvNuPWLQZMLSppi9GrJjV54",
];

fn verifier() -> &'static JwtVerifier {
    static VERIFIER: OnceLock<JwtVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        JwtVerifier::hs256(SECRET, ClaimRules::default()).expect("a 40-byte secret is accepted")
    })
}

/// The token must never show up in what is logged about it. Only tokens of 8 bytes or
/// more with a character the fixed messages lack (every JWT has a dot) are checked.
fn check_no_echo(message: &str, token: &str) {
    if token.len() >= 8
        && token
            .chars()
            .any(|c| !c.is_ascii() || ".{}\"/\\+".contains(c))
    {
        assert!(
            !message.contains(token),
            "error echoes the token: {message}"
        );
    }
}

fn verify(token: &str) {
    match verifier().verify_at(token, NOW) {
        Ok(claims) => {
            assert!(
                VALID.contains(&token),
                "a token not signed by us verified: {token:?} -> {claims:?}"
            );
            assert!(!claims.jti.is_empty());
            assert!(NOW < claims.exp.saturating_add(verifier().leeway_secs()));
        }
        Err(e) => {
            assert!(!VALID.contains(&token), "a valid token was refused: {e}");
            check_no_echo(&e.to_string(), token);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let authorization = lines.next().filter(|l| !l.is_empty());
    let query = lines.next().filter(|l| !l.is_empty());
    let token = lines.next().unwrap_or("");

    match extract_token(authorization, query) {
        Ok(found) => {
            assert!(!found.is_empty(), "an empty token was extracted");
            assert_eq!(found.trim(), found, "extracted token keeps whitespace");
            verify(&found);
        }
        Err(e) => {
            let message = e.to_string();
            for part in [authorization, query].into_iter().flatten() {
                check_no_echo(&message, part);
            }
        }
    }
    verify(token);
});
