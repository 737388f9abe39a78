//! The Redis `jti` store against a real `redis-server` on loopback: shared by two
//! engines, keys expiring with their tokens, and failing closed, quickly, when Redis is
//! dead, frozen or not there yet.
//!
//! Each test runs its own server on a free port in a temporary directory; the
//! `RedisServer` guard kills it when the test ends, pass or fail.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine::auth::replay::{unix_now, REDIS_KEY_PREFIX};
use engine::auth::{AuthError, Authenticator, Claimed, RedisStore, Refusal, StoreError};
use engine::config::{AuthConfig, RedisUrl, Secret};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const TIMEOUT: Duration = Duration::from_millis(500);
/// What "bounded" means in these tests: the store's timeout plus scheduling slack on a
/// busy 2-core machine.
const BOUND: Duration = Duration::from_secs(2);
const SECRET: &str = "an-hs256-test-secret-of-32-bytes!";

/// A `redis-server` of this test's own; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Self {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not on PATH: run scripts/bootstrap.sh, which installs it \
                 (these tests need a real Redis)"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let mut server = Self { child, port, dir };
        server.wait_ready();
        server
    }

    /// Polls PING a bounded number of times; each failed attempt is a refused connect
    /// (instant), so a short pause keeps the loop from spinning.
    fn wait_ready(&mut self) {
        for _ in 0..400 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server exited ({status}): {}", self.log());
            }
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not answer PING in 10 s: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn url(&self) -> RedisUrl {
        url(self.port)
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A plain synchronous connection, to look at the keys the store wrote.
    fn inspect(&self) -> redis::Connection {
        redis::Client::open(self.url().expose())
            .expect("client")
            .get_connection_with_timeout(BOUND)
            .expect("inspection connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn url(port: u16) -> RedisUrl {
    RedisUrl::parse(&format!("redis://127.0.0.1:{port}/0")).expect("url")
}

fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect_lazy(&server.url(), TIMEOUT).expect("store")
}

fn auth_config(redis: RedisUrl) -> AuthConfig {
    AuthConfig {
        hs256_secret: Some(Secret::new(SECRET)),
        redis_url: Some(redis),
        redis_timeout_ms: TIMEOUT.as_millis() as u64,
        ..AuthConfig::default()
    }
}

fn bearer(jti: &str, exp: u64) -> String {
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"jti": jti, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode");
    format!("Bearer {token}")
}

#[tokio::test]
async fn two_engines_share_replay_state() {
    let server = RedisServer::start();
    let (a, b) = (store(&server), store(&server));
    let now = unix_now();
    let until = now + 300;
    assert_eq!(a.claim_at("jti-1", until, now).await, Ok(Claimed::First));
    assert_eq!(b.claim_at("jti-1", until, now).await, Ok(Claimed::Replayed));
    assert_eq!(a.claim_at("jti-1", until, now).await, Ok(Claimed::Replayed));
    assert_eq!(b.claim_at("jti-2", until, now).await, Ok(Claimed::First));
    assert_eq!(a.claim_at("jti-3", until, now).await, Ok(Claimed::First));
    assert_eq!(a.claim_at("jti-2", until, now).await, Ok(Claimed::Replayed));

    // The same through two Authenticators, as two engines behind a load balancer.
    let one = Authenticator::from_config(&auth_config(server.url()))
        .await
        .expect("engine one");
    let two = Authenticator::from_config(&auth_config(server.url()))
        .await
        .expect("engine two");
    let token = bearer("call-42", now + 120);
    let admitted = one.admit(Some(&token), None).await.expect("first use");
    assert_eq!(admitted.jti, "call-42");
    let replayed = two.admit(Some(&token), None).await.expect_err("replay");
    assert_eq!(replayed, AuthError::Replayed);
    assert_eq!(replayed.refusal(), Refusal::Unauthorized);
}

#[tokio::test]
async fn concurrent_claims_from_two_engines_admit_exactly_one() {
    let server = RedisServer::start();
    let (a, b) = (store(&server), store(&server));
    let now = unix_now();
    for round in 0..20 {
        let jti = format!("race-{round}");
        let (x, y) = tokio::join!(
            a.claim_at(&jti, now + 60, now),
            b.claim_at(&jti, now + 60, now)
        );
        let mut outcomes = [x.expect("a"), y.expect("b")];
        outcomes.sort_by_key(|c| *c == Claimed::Replayed);
        assert_eq!(outcomes, [Claimed::First, Claimed::Replayed], "{jti}");
    }
}

#[tokio::test]
async fn keys_live_as_long_as_their_tokens() {
    let server = RedisServer::start();
    let s = store(&server);
    let now = unix_now();
    assert_eq!(
        s.claim_at("ttl-1", now + 120, now).await,
        Ok(Claimed::First)
    );
    let long = "x".repeat(1000);
    assert_eq!(s.claim_at(&long, now + 600, now).await, Ok(Claimed::First));

    let mut con = server.inspect();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{REDIS_KEY_PREFIX}ttl-1"))
        .query(&mut con)
        .expect("TTL");
    assert!(
        (115..=120).contains(&ttl),
        "TTL {ttl}, expected about 120 s"
    );
    // A long id is stored under a bounded, hashed key, with its own TTL.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{REDIS_KEY_PREFIX}*"))
        .query(&mut con)
        .expect("KEYS");
    let hashed: Vec<&String> = keys.iter().filter(|k| k.contains("sha256:")).collect();
    assert_eq!(hashed.len(), 1, "{keys:?}");
    assert!(hashed[0].len() < 100, "{}", hashed[0]);
    let ttl: i64 = redis::cmd("TTL")
        .arg(hashed[0])
        .query(&mut con)
        .expect("TTL");
    assert!(
        (595..=600).contains(&ttl),
        "TTL {ttl}, expected about 600 s"
    );
}

#[tokio::test]
async fn a_killed_redis_is_unavailable_within_the_timeout() {
    let mut server = RedisServer::start();
    let s = store(&server);
    let now = unix_now();
    assert_eq!(
        s.claim_at("before", now + 60, now).await,
        Ok(Claimed::First)
    );
    server.kill();
    for attempt in 0..3 {
        let started = Instant::now();
        let r = s.claim_at(&format!("after-{attempt}"), now + 60, now).await;
        let took = started.elapsed();
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "attempt {attempt}: {r:?}"
        );
        assert!(took < BOUND, "attempt {attempt} took {took:?}");
    }
}

#[tokio::test]
async fn a_frozen_redis_times_out_instead_of_hanging() {
    // SIGSTOP: the socket stays open and accepts the command, but nothing answers,
    // the case a timeout exists for.
    let server = RedisServer::start();
    let s = store(&server);
    let now = unix_now();
    assert_eq!(
        s.claim_at("before", now + 60, now).await,
        Ok(Claimed::First)
    );
    server.signal("STOP");
    let started = Instant::now();
    let r = s.claim_at("frozen", now + 60, now).await;
    let took = started.elapsed();
    server.signal("CONT");
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(
        took >= TIMEOUT - Duration::from_millis(50),
        "gave up before the timeout: {took:?}"
    );
    assert!(took < BOUND, "took {took:?}");
}

#[tokio::test]
async fn a_redis_down_at_startup_refuses_streams_until_it_is_back() {
    let port = free_port();
    let started = Instant::now();
    let auth = Authenticator::from_config(&auth_config(url(port)))
        .await
        .expect("the engine starts without its Redis");
    assert!(
        started.elapsed() < BOUND,
        "startup waited {:?}",
        started.elapsed()
    );
    let now = unix_now();
    let started = Instant::now();
    let err = auth
        .admit(Some(&bearer("early", now + 60)), None)
        .await
        .expect_err("no Redis");
    assert!(
        started.elapsed() < BOUND,
        "admit took {:?}",
        started.elapsed()
    );
    assert_eq!(err.reason(), "store_unavailable");
    assert_eq!(err.refusal(), Refusal::Unavailable);

    let _server = RedisServer::start_on(port);
    // The store reconnects on use; a reconnect started while Redis was down may still
    // fail once or twice.
    let mut outcomes = Vec::new();
    for attempt in 0..20 {
        match auth
            .admit(Some(&bearer(&format!("late-{attempt}"), now + 60)), None)
            .await
        {
            Ok(_) => break,
            Err(e) => outcomes.push(e.reason()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(outcomes.len() < 20, "never recovered: {outcomes:?}");
    assert!(
        outcomes.iter().all(|r| *r == "store_unavailable"),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn the_redis_password_never_shows() {
    let url = RedisUrl::parse("redis://:hunter2@127.0.0.1:6399/0").expect("url");
    let s = RedisStore::connect_lazy(&url, TIMEOUT).expect("store");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert!(!format!("{url:?}").contains("hunter2"));
}

/// Two whole engines (`tom serve` in process) behind one Redis: a token spent on one is
/// refused by the other at the WebSocket upgrade, and with Redis gone both fail closed
/// with 503 and `tom_stream_rejected_total{reason="store_unavailable"}`. Needs the
/// fetched models (scripts/test.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serving_engines_refuse_a_token_spent_on_the_other() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{Error as WsError, Message};

    let mut server = RedisServer::start();
    let records = tempfile::tempdir().expect("tempdir");
    let engine = || {
        let mut config = engine::config::Config::default();
        config.server.esl_listen = "127.0.0.1:0".parse().expect("addr");
        config.server.http_addr = "127.0.0.1:0".parse().expect("addr");
        config.server.cost_log_dir = records.path().to_owned();
        config.server.drain_secs = 2;
        config.auth = auth_config(server.url());
        engine::serve::start(config)
    };
    let one = engine().await.expect("engine one");
    let two = engine().await.expect("engine two");
    let upgrade = |engine: &engine::serve::Running, token: &str| {
        let mut request = format!("ws://{}/v1/stream", engine.http_addr)
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("authorization", token.parse().expect("header"));
        tokio_tungstenite::connect_async(request)
    };
    let status = |result: Result<_, WsError>| match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("not an HTTP refusal: {e}"),
        Ok(_) => 101,
    };

    let token = bearer(&uuid::Uuid::new_v4().to_string(), unix_now() + 120);
    let (mut ws, _) = upgrade(&one, &token).await.expect("admitted by engine one");
    ws.send(Message::text(r#"{"type":"start","rate":8000}"#))
        .await
        .expect("start");
    ws.send(Message::text(r#"{"type":"stop"}"#))
        .await
        .expect("stop");
    assert_eq!(status(upgrade(&two, &token).await.map(drop)), 401);
    assert_eq!(status(upgrade(&one, &token).await.map(drop)), 401);

    server.kill();
    let fresh = bearer(&uuid::Uuid::new_v4().to_string(), unix_now() + 120);
    assert_eq!(status(upgrade(&two, &fresh).await.map(drop)), 503);
    assert!(two
        .services
        .metrics
        .render()
        .contains(r#"tom_stream_rejected_total{reason="store_unavailable"} 1"#));
    one.shutdown().await.expect("shutdown one");
    two.shutdown().await.expect("shutdown two");
}
