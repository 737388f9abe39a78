//! Caller-number hashing: phone numbers never reach logs, metrics or cost logs in clear.

use sha2::{Digest, Sha256};

/// Hashes phone numbers with a per-deployment salt.
#[derive(Clone)]
pub struct NumberHasher {
    salt: Vec<u8>,
}

impl std::fmt::Debug for NumberHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NumberHasher(***)")
    }
}

impl NumberHasher {
    /// A hasher with `salt` (keep it secret and stable, or hashes stop correlating).
    pub fn new(salt: impl Into<Vec<u8>>) -> Self {
        Self { salt: salt.into() }
    }

    /// A short, stable pseudonym: the first 16 hex digits of SHA-256(salt ‖ number).
    /// Formatting (`+49 30…` vs `004930…`) is not normalised: FreeSWITCH passes the
    /// number as signalled, and the same caller signals it the same way.
    pub fn hash(&self, number: &str) -> String {
        let digest = Sha256::new()
            .chain_update(&self.salt)
            .chain_update(number.as_bytes())
            .finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_hides_the_number_and_depends_on_the_salt() {
        let a = NumberHasher::new("salt-a");
        let h = a.hash("+4930123456");
        assert_eq!(h.len(), 16);
        assert!(!h.contains("4930123456"));
        assert_eq!(h, a.hash("+4930123456"));
        assert_ne!(h, NumberHasher::new("salt-b").hash("+4930123456"));
        assert_ne!(h, a.hash("+4930123457"));
    }
}
