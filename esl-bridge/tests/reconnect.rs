//! The supervised inbound session logs in again after FreeSWITCH drops the connection,
//! re-subscribes, and gives up at once on a refused password.

use std::time::Duration;

use esl_bridge::codec::RequestCodec;
use esl_bridge::command::Password;
use esl_bridge::connection::EslError;
use esl_bridge::inbound::{InboundConfig, RetryPolicy};
use esl_bridge::reconnect::{ReconnectingClient, SessionEvent};
use esl_bridge::EventFormat;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;

/// Safety net only; a healthy run takes milliseconds.
const LIMIT: Duration = Duration::from_secs(20);

/// Plays a FreeSWITCH that accepts `password`, answers each command with `+OK` (and
/// `api` with a body), and returns the command lines it saw. Drops the connection after
/// `commands` commands.
async fn fake_switch(mut stream: TcpStream, password: &str, commands: usize) -> Vec<String> {
    let (read, mut write) = stream.split();
    let mut requests = FramedRead::new(read, RequestCodec::default());
    write
        .write_all(b"Content-Type: auth/request\n\n")
        .await
        .expect("banner");
    let mut seen = Vec::new();
    while seen.len() < commands {
        let Some(Ok(req)) = requests.next().await else {
            break;
        };
        let reply: Vec<u8> = if req.line.starts_with("auth ") {
            if req.line == format!("auth {password}") {
                b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n".to_vec()
            } else {
                b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\nContent-Type: text/disconnect-notice\nContent-Length: 0\n\n".to_vec()
            }
        } else if req.line.starts_with("api ") {
            b"Content-Type: api/response\nContent-Length: 3\n\nUP\n".to_vec()
        } else {
            b"Content-Type: command/reply\nReply-Text: +OK\n\n".to_vec()
        };
        write.write_all(&reply).await.expect("reply");
        seen.push(req.line);
    }
    seen
}

fn config(addr: String, password: &str) -> InboundConfig {
    let mut config = InboundConfig::new(addr, Password::new(password));
    config.events = Some((EventFormat::Plain, vec!["CHANNEL_ANSWER".into()]));
    config.retry = RetryPolicy {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        max_retries: Some(5),
    };
    config
}

#[tokio::test]
async fn reconnects_and_resubscribes_after_a_drop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (down_checked, go) = tokio::sync::oneshot::channel::<()>();
    let switch = tokio::spawn(async move {
        let (first, _) = listener.accept().await.expect("first");
        let first_seen = fake_switch(first, "ClueCon", 2).await; // auth, event; then drop
                                                                 // The client's next TCP connect lands in the backlog, but no banner comes until
                                                                 // this accept, so the session stays down while the test checks that.
        go.await.expect("test checked the down state");
        let (second, _) = listener.accept().await.expect("second");
        let second_seen = fake_switch(second, "ClueCon", 3).await; // auth, event, api
        (first_seen, second_seen)
    });
    let mut session = ReconnectingClient::start(config(addr, "ClueCon"));
    let run = async {
        assert!(matches!(
            session.next().await,
            Some(SessionEvent::Connected)
        ));
        assert!(matches!(
            session.next().await,
            Some(SessionEvent::Disconnected)
        ));
        // While down, commands fail at once rather than being replayed later.
        assert!(session.handle().is_none());
        assert!(matches!(session.api("status").await, Err(EslError::Closed)));
        down_checked.send(()).expect("switch waiting");
        assert!(matches!(
            session.next().await,
            Some(SessionEvent::Connected)
        ));
        session.api("status").await.expect("api after reconnect")
    };
    let status = tokio::time::timeout(LIMIT, run).await.expect("bounded");
    assert_eq!(status.text(), "UP");
    let (first, second) = switch.await.expect("join");
    let subscribe = "event plain CHANNEL_ANSWER";
    assert_eq!(first, ["auth ClueCon", subscribe]);
    assert_eq!(&second[..2], ["auth ClueCon", subscribe]);
}

#[tokio::test]
async fn gives_up_at_once_on_a_refused_password() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let switch = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        fake_switch(stream, "ClueCon", 1).await;
        tokio::time::timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_ok()
    });
    let mut session = ReconnectingClient::start(config(addr, "wrong"));
    let event = tokio::time::timeout(LIMIT, session.next())
        .await
        .expect("bounded");
    assert!(
        matches!(
            event,
            Some(SessionEvent::GaveUp(EslError::AuthRejected { .. }))
        ),
        "{event:?}"
    );
    assert!(session.next().await.is_none());
    assert!(
        !switch.await.expect("join"),
        "a refused password must not be retried"
    );
}
