//! `jti` replay protection: a token id is accepted once until its token expires.
//!
//! In memory for one engine, or in Redis (`REDIS_URL`) so that every engine behind a
//! load balancer shares one view: a token replayed against another instance is refused
//! too. The Redis store fails closed: an unreachable Redis refuses streams (bounded in
//! time) rather than admitting tokens it cannot record.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use crate::config::RedisUrl;

/// The outcome of claiming a token id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Not seen before (or only in an expired entry): the token may be used.
    First,
    /// Already used and not yet expired: refuse.
    Replayed,
}

/// The store could not answer; the caller must refuse (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable, slow past the timeout, or answered an error.
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
    /// The memory store holds its maximum of live ids; forgetting one early would allow
    /// a replay.
    #[error("replay store full: {0} live token ids")]
    Full(usize),
}

/// Where used token ids are remembered. `Send + Sync`: one store serves every upgrade.
#[derive(Debug)]
pub enum ReplayStore {
    /// This process only.
    Memory(MemoryStore),
    /// Shared by every engine using the same Redis.
    Redis(RedisStore),
}

impl ReplayStore {
    /// Claims `jti` for a token that may be accepted until `expires_at` (seconds since
    /// the Unix epoch; the caller adds its leeway to `exp`).
    pub async fn claim(&self, jti: &str, expires_at: u64) -> Result<Claimed, StoreError> {
        self.claim_at(jti, expires_at, unix_now()).await
    }

    /// [`ReplayStore::claim`] at a given `now` (tests, and callers that already read
    /// the clock for the same request).
    pub async fn claim_at(
        &self,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<Claimed, StoreError> {
        match self {
            Self::Memory(m) => m.claim_at(jti, expires_at, now),
            Self::Redis(r) => r.claim_at(jti, expires_at, now).await,
        }
    }

    /// `memory` or `redis`, for the startup log.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }
}

/// Seconds since the Unix epoch (0 for a clock before 1970, which no token satisfies).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Longest `jti` stored as it is; longer or unusual ids are hashed so that keys stay
/// short and printable whatever a token carries.
const MAX_PLAIN_JTI: usize = 64;

/// The key for `jti`: itself when short and plain, else `sha256:<hex>`. A plain id
/// cannot contain `:`, so the two forms never collide.
fn store_key(jti: &str) -> Cow<'_, str> {
    let plain = !jti.is_empty()
        && jti.len() <= MAX_PLAIN_JTI
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        return Cow::Borrowed(jti);
    }
    let mut key = String::with_capacity(7 + 64);
    key.push_str("sha256:");
    for byte in Sha256::digest(jti.as_bytes()) {
        // Writing to a String cannot fail.
        let _ = write!(key, "{byte:02x}");
    }
    Cow::Owned(key)
}

/// How often the memory store drops expired ids even when it is not full, so that a
/// quiet engine does not keep a day's ids.
const SWEEP_EVERY_SECS: u64 = 60;

/// Used ids in this process, each kept until its token's expiry.
///
/// Bounded: expired ids are swept every minute and whenever the store is full; if it
/// is still full, claims fail ([`StoreError::Full`]) rather than evicting live ids.
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
    max_entries: usize,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the ids: up to `max_entries` of them.
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

#[derive(Default)]
struct MemoryInner {
    /// Key → expiry (seconds since the epoch).
    ids: HashMap<String, u64>,
    next_sweep: u64,
}

impl MemoryInner {
    fn sweep(&mut self, now: u64) {
        self.ids.retain(|_, expires_at| *expires_at > now);
        self.next_sweep = now.saturating_add(SWEEP_EVERY_SECS);
    }
}

impl MemoryStore {
    /// A store of at most `max_entries` live ids.
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(MemoryInner::default()),
            max_entries: max_entries.max(1),
        }
    }

    /// Ids held, live or not yet swept.
    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Claims `jti` until `expires_at`, at `now`.
    pub fn claim_at(&self, jti: &str, expires_at: u64, now: u64) -> Result<Claimed, StoreError> {
        let key = store_key(jti);
        let mut inner = self.lock();
        if now >= inner.next_sweep {
            inner.sweep(now);
        }
        if inner
            .ids
            .get(key.as_ref())
            .is_some_and(|&until| until > now)
        {
            return Ok(Claimed::Replayed);
        }
        if inner.ids.len() >= self.max_entries && !inner.ids.contains_key(key.as_ref()) {
            inner.sweep(now);
            if inner.ids.len() >= self.max_entries {
                return Err(StoreError::Full(inner.ids.len()));
            }
        }
        // At least a second, like the Redis TTL, so an id is never stored already dead.
        let until = expires_at.max(now.saturating_add(1));
        inner.ids.insert(key.into_owned(), until);
        Ok(Claimed::First)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock leaves a consistent map (every mutation is one
        // call), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Prefix of every key, so the ids share a Redis with other data safely.
pub const REDIS_KEY_PREFIX: &str = "tom:jti:";

/// Used ids in Redis, shared by every engine: `SET tom:jti:<id> 1 NX EX <ttl>`, one
/// atomic round trip, so two engines racing on one token cannot both win.
///
/// The connection is made lazily and re-made in the background after failures, so a
/// Redis that is down at startup does not stop the engine; until it is back, claims
/// fail with [`StoreError::Unavailable`] within `timeout`.
pub struct RedisStore {
    conn: ConnectionManager,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the connection: its Debug shows the client's connection info, password
        // included.
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `url` whose connects and commands each give up after `timeout`.
    /// Does not connect; must be called inside a Tokio runtime (the connection manager
    /// spawns its reconnect task there).
    pub fn connect_lazy(url: &RedisUrl, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url.expose())
            .map_err(|_| StoreError::Unavailable("REDIS_URL is not a Redis URL".into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // One quick retry inside a connect attempt; longer outages are covered by
            // the manager reconnecting on the next claim.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(describe(&e)))?;
        Ok(Self { conn, timeout })
    }

    /// Round trip to Redis within the timeout, for the startup log.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.timeout, ping.query_async::<redis::Value>(&mut conn)).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Unavailable(describe(&e))),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Claims `jti` until `expires_at`, at `now` (which sets the TTL).
    pub async fn claim_at(
        &self,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<Claimed, StoreError> {
        let key = format!("{REDIS_KEY_PREFIX}{}", store_key(jti));
        let ttl = expires_at.saturating_sub(now).max(1);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(1).arg("NX").arg("EX").arg(ttl);
        let mut conn = self.conn.clone();
        // The manager has its own timeouts; this one also bounds waiting for a
        // reconnect already under way.
        match tokio::time::timeout(self.timeout, set.query_async::<redis::Value>(&mut conn)).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(e)) => Err(StoreError::Unavailable(describe(&e))),
            Ok(Ok(redis::Value::Nil)) => Ok(Claimed::Replayed),
            Ok(Ok(redis::Value::Okay)) => Ok(Claimed::First),
            Ok(Ok(redis::Value::SimpleString(s))) if s == "OK" => Ok(Claimed::First),
            Ok(Ok(other)) => Err(StoreError::Unavailable(format!(
                "unexpected reply to SET NX: {other:?}"
            ))),
        }
    }

    fn timed_out(&self) -> StoreError {
        StoreError::Unavailable(format!("no answer within {} ms", self.timeout.as_millis()))
    }
}

/// A Redis error for the log: kind and message, never the connection info.
fn describe(e: &redis::RedisError) -> String {
    format!("redis: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn assert_shareable<T: Send + Sync + 'static>() {}

    #[test]
    fn stores_are_shareable_between_tasks() {
        assert_shareable::<ReplayStore>();
        assert_shareable::<MemoryStore>();
        assert_shareable::<RedisStore>();
    }

    #[test]
    fn an_id_is_accepted_once_until_it_expires() {
        let s = MemoryStore::new(10);
        assert_eq!(s.claim_at("a", NOW + 60, NOW), Ok(Claimed::First));
        assert_eq!(s.claim_at("a", NOW + 60, NOW + 1), Ok(Claimed::Replayed));
        assert_eq!(s.claim_at("a", NOW + 60, NOW + 59), Ok(Claimed::Replayed));
        assert_eq!(s.claim_at("b", NOW + 60, NOW), Ok(Claimed::First));
        // Once the token has expired it is refused by the verifier anyway; the id may go.
        assert_eq!(s.claim_at("a", NOW + 120, NOW + 60), Ok(Claimed::First));
    }

    #[test]
    fn expired_ids_are_swept_every_minute() {
        let s = MemoryStore::new(1000);
        for i in 0..100 {
            s.claim_at(&format!("id-{i}"), NOW + 10, NOW)
                .expect("claim");
        }
        s.claim_at("late", NOW + 600, NOW + 30).expect("claim");
        assert_eq!(s.len(), 101, "no sweep within the minute");
        s.claim_at("later", NOW + 600, NOW + SWEEP_EVERY_SECS + 1)
            .expect("claim");
        assert_eq!(s.len(), 2, "the expired hundred are gone");
    }

    #[test]
    fn a_full_store_prunes_expired_ids_then_refuses() {
        let s = MemoryStore::new(3);
        s.claim_at("a", NOW + 5, NOW).expect("claim");
        s.claim_at("b", NOW + 100, NOW).expect("claim");
        s.claim_at("c", NOW + 100, NOW).expect("claim");
        // Full, but "a" has expired: it makes room.
        assert_eq!(s.claim_at("d", NOW + 100, NOW + 10), Ok(Claimed::First));
        assert_eq!(s.len(), 3);
        // Full of live ids: refused, not evicted (an evicted id could be replayed).
        assert_eq!(
            s.claim_at("e", NOW + 100, NOW + 11),
            Err(StoreError::Full(3))
        );
        assert_eq!(s.claim_at("b", NOW + 100, NOW + 11), Ok(Claimed::Replayed));
        // Memory never grows past the bound.
        for i in 0..50 {
            let _ = s.claim_at(&format!("x{i}"), NOW + 100, NOW + 12);
        }
        assert_eq!(s.len(), 3);
        // Once they expire there is room again.
        assert_eq!(s.claim_at("e", NOW + 300, NOW + 100), Ok(Claimed::First));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn an_already_expired_claim_still_counts_for_a_second() {
        let s = MemoryStore::new(10);
        assert_eq!(s.claim_at("a", NOW - 5, NOW), Ok(Claimed::First));
        assert_eq!(s.claim_at("a", NOW - 5, NOW), Ok(Claimed::Replayed));
    }

    #[test]
    fn long_or_odd_ids_are_hashed_into_bounded_keys() {
        assert_eq!(
            store_key("8f14e45f-ceea-467f-a8f6"),
            "8f14e45f-ceea-467f-a8f6"
        );
        for jti in [
            "x".repeat(10_000),
            "a b".into(),
            "tom:jti:x".into(),
            "ünï".into(),
        ] {
            let key = store_key(&jti);
            assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
        }
        assert_ne!(store_key("a b"), store_key("a  b"));
        // Hashed and plain ids are kept apart in the store as well.
        let s = MemoryStore::new(10);
        let long = "y".repeat(500);
        assert_eq!(s.claim_at(&long, NOW + 60, NOW), Ok(Claimed::First));
        assert_eq!(s.claim_at(&long, NOW + 60, NOW), Ok(Claimed::Replayed));
        assert_eq!(
            s.claim_at(&"y".repeat(499), NOW + 60, NOW),
            Ok(Claimed::First)
        );
    }

    #[tokio::test]
    async fn concurrent_claims_of_one_id_admit_exactly_one() {
        let store = std::sync::Arc::new(ReplayStore::Memory(MemoryStore::new(100)));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.claim_at("same", NOW + 60, NOW).await })
            })
            .collect();
        let mut first = 0;
        for task in tasks {
            if task.await.expect("task") == Ok(Claimed::First) {
                first += 1;
            }
        }
        assert_eq!(first, 1);
    }
}
