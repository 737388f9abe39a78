//! The inbound client and the outbound server run recorded sessions end to end against
//! a double that plays FreeSWITCH's recorded side over loopback TCP.

mod common;

use std::time::Duration;

use common::replay::{play, script};
use esl_bridge::command::{Command, Password, SendMsg};
use esl_bridge::connection::{EslError, Incoming, Response};
use esl_bridge::inbound::{InboundClient, InboundConfig, RetryPolicy};
use esl_bridge::message::Disposition;
use esl_bridge::outbound::{OutboundConfig, OutboundServer};
use esl_bridge::EventFormat;
use tokio::net::{TcpListener, TcpStream};

/// Safety net for a whole scenario; a healthy run takes milliseconds.
const SCENARIO: Duration = Duration::from_secs(30);

async fn fs_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

#[tokio::test]
async fn inbound_plain_all_runs_end_to_end() {
    let (listener, addr) = fs_listener().await;
    let fs = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        play(
            stream,
            script("esl-inbound/inbound_plain_all.transcript.jsonl"),
        )
        .await
    });
    let client = async {
        let client = InboundClient::connect(InboundConfig::new(addr, Password::new("ClueCon")))
            .await
            .expect("login");
        let status = client.api("status").await.expect("status");
        assert!(status.text().contains("is ready"));
        let missing = client.api("no_such_command foo").await.expect("api");
        assert!(missing.is_err());
        assert_eq!(missing.text(), "-ERR no_such_command Command not found!");
        let kill = client
            .api("uuid_kill 00000000-0000-0000-0000-000000000000")
            .await
            .expect("api");
        assert_eq!(kill.text(), "-ERR No such channel!");
        let bogus = client
            .send(Command::Raw("bogus_esl_command".into()))
            .await
            .expect("reply");
        assert!(matches!(bogus, Response::Reply(r) if r.text == "-ERR command not found"));
        client
            .send(Command::Event {
                format: EventFormat::Plain,
                names: vec!["ALL".into()],
            })
            .await
            .expect("subscribe");
        let job = client
            .bgapi("originate {origination_uuid=f21b3926-988d-454f-b354-d8a43393e6e4,origination_caller_id_number=+4930123456,origination_caller_id_name=Fixture%20Caller}loopback/9998 &park()")
            .await
            .expect("bgapi");
        assert_eq!(job.job_uuid, "cd6cbd8c-b63e-4b8d-9e32-cb510dc79e7b");
        client.api("show channels").await.expect("show channels");
        client
            .api("uuid_dump f21b3926-988d-454f-b354-d8a43393e6e4")
            .await
            .expect("uuid_dump");
        let originated = job.result().await.expect("job result");
        assert_eq!(
            originated.text(),
            "+OK f21b3926-988d-454f-b354-d8a43393e6e4"
        );
        let failed = client
            .bgapi("originate loopback/0000 &park()")
            .await
            .expect("bgapi");
        let failed = failed.result().await.expect("job result");
        assert!(failed.is_err());
        assert_eq!(failed.text(), "-ERR NO_ROUTE_DESTINATION");
        client.send(Command::NoEvents).await.expect("noevents");
        let mut names = Vec::new();
        let mut events = client;
        // Drain what was streamed, then exit.
        while let Ok(Some(item)) = tokio::time::timeout(Duration::ZERO, events.next()).await {
            if let Incoming::Event(e) = item {
                names.push(e.name().unwrap_or_default().to_owned());
            }
        }
        events.exit().await.expect("exit");
        names
    };
    let names = tokio::time::timeout(SCENARIO, client)
        .await
        .expect("scenario");
    let report = fs.await.expect("join").expect("FreeSWITCH side");
    assert!(report.trailing.is_empty(), "{:?}", report.trailing);
    assert_eq!(report.requests.len(), 12);
    for name in [
        "CHANNEL_CREATE",
        "CHANNEL_ANSWER",
        "PLAYBACK_START",
        "CHANNEL_HANGUP_COMPLETE",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not streamed");
    }
    // BACKGROUND_JOB events are streamed too, after resolving their futures.
    assert_eq!(names.iter().filter(|n| *n == "BACKGROUND_JOB").count(), 2);
}

#[tokio::test]
async fn inbound_wrong_password_is_a_typed_error_not_retried() {
    let (listener, addr) = fs_listener().await;
    let fs = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let report = play(
            stream,
            script("esl-inbound/inbound_auth_fail.transcript.jsonl"),
        )
        .await;
        // A second connection would mean the client retried a permanent failure.
        let again = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        (report, again.is_ok())
    });
    let mut config = InboundConfig::new(addr, Password::new("WrongPassword"));
    config.retry = RetryPolicy {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retries: Some(3),
    };
    let err = tokio::time::timeout(SCENARIO, InboundClient::connect_with_retry(config))
        .await
        .expect("no hang")
        .expect_err("must fail");
    assert!(
        matches!(&err, EslError::AuthRejected { reply } if reply == "-ERR invalid"),
        "{err}"
    );
    let (report, retried) = fs.await.expect("join");
    report.expect("FreeSWITCH side");
    assert!(!retried);
}

#[tokio::test]
async fn inbound_retries_a_refused_connection_until_it_gives_up() {
    // A port nobody listens on: every attempt is refused (a transient error).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut config = InboundConfig::new(format!("127.0.0.1:{port}"), Password::new("ClueCon"));
    config.retry = RetryPolicy {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        max_retries: Some(2),
    };
    let err = tokio::time::timeout(SCENARIO, InboundClient::connect_with_retry(config))
        .await
        .expect("bounded")
        .expect_err("nobody listens");
    assert!(err.is_transient(), "{err}");
}

async fn outbound_pair(
    config: OutboundConfig,
    transcript: &'static str,
) -> (
    esl_bridge::outbound::Call,
    tokio::task::JoinHandle<Result<common::replay::Report, String>>,
) {
    let server = OutboundServer::bind(config).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    let mut calls = server.serve();
    let fs = tokio::spawn(async move {
        let stream = TcpStream::connect(addr).await.expect("FreeSWITCH connects");
        play(stream, script(transcript)).await
    });
    let call = tokio::time::timeout(SCENARIO, calls.next())
        .await
        .expect("handshake")
        .expect("call");
    (call, fs)
}

fn test_config() -> OutboundConfig {
    OutboundConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..OutboundConfig::default()
    }
}

#[tokio::test]
async fn outbound_basic_runs_end_to_end() {
    let (mut call, fs) = outbound_pair(
        test_config(),
        "esl-outbound/outbound_basic.transcript.jsonl",
    )
    .await;
    let scenario = async {
        let ch = call.channel().clone();
        assert_eq!(ch.unique_id, "8bb67b32-2d9c-4933-ab0c-fec0f984b6af");
        assert_eq!(ch.caller_id_number, "+4930123456");
        assert_eq!(ch.destination_number, "9999");
        assert_eq!((ch.read_codec.as_str(), ch.read_rate), ("PCMU", 8000));
        assert_eq!(
            ch.variables.get("read_codec").map(String::as_str),
            Some("PCMU")
        );
        assert_eq!(ch.headers.get("Socket-Mode"), Some("async"));

        call.answer().await.expect("answer");
        let playback = call
            .execute("playback", Some("/opt/fs-test/sounds/reply_8k.wav"))
            .await
            .expect("playback");
        let (response, event) = playback.completed().await.expect("playback completes");
        assert_eq!(response, "FILE PLAYED");
        assert_eq!(event.header("Application"), Some("playback"));
        call.send(Command::execute(
            "set",
            Some("fixture_var=hello world".into()),
        ))
        .await
        .expect("set");
        let tone = Command::SendMsg {
            uuid: None,
            msg: SendMsg::Execute {
                app: "playback".into(),
                arg: Some("tone_stream://%(300,100,600);loops=2".into()),
                event_uuid: None,
                event_lock: true,
                loops: None,
            },
        };
        call.send(tone).await.expect("tone");
        let var = call
            .api(format!("uuid_getvar {} fixture_var", ch.unique_id))
            .await
            .expect("getvar");
        assert_eq!(var.body, "hello world");
        call.hangup("NORMAL_CLEARING").await.expect("hangup");
        // The call ends by itself: linger notice, remaining events, our `exit`, close.
        let mut seen = Vec::new();
        while let Some(item) = call.next_event().await {
            seen.push(item);
        }
        seen
    };
    let seen = tokio::time::timeout(SCENARIO, scenario)
        .await
        .expect("scenario");
    let report = fs.await.expect("join").expect("FreeSWITCH side");
    assert_eq!(
        report.requests.last().map(|r| r.line.as_str()),
        Some("exit")
    );
    assert!(report.trailing.is_empty());
    let dispositions: Vec<&Disposition> = seen
        .iter()
        .filter_map(|i| match i {
            Incoming::Disconnect(n) => Some(&n.disposition),
            _ => None,
        })
        .collect();
    assert_eq!(
        dispositions,
        [
            &Disposition::Linger { seconds: None },
            &Disposition::Disconnect
        ]
    );
    assert!(seen
        .iter()
        .any(|i| matches!(i, Incoming::Event(e) if e.name() == Some("CHANNEL_HANGUP_COMPLETE"))));
}

#[tokio::test]
async fn outbound_uuid_kill_without_linger_ends_cleanly() {
    let config = OutboundConfig {
        linger: false,
        ..test_config()
    };
    let (mut call, fs) = outbound_pair(
        config,
        "esl-outbound/outbound_uuid_kill_no_linger.transcript.jsonl",
    )
    .await;
    let mut names = Vec::new();
    let mut last = None;
    let drain = async {
        while let Some(item) = call.next_event().await {
            if let Incoming::Event(e) = &item {
                names.push(e.name().unwrap_or_default().to_owned());
            }
            last = Some(item);
        }
    };
    tokio::time::timeout(SCENARIO, drain).await.expect("ends");
    let report = fs.await.expect("join").expect("FreeSWITCH side");
    // Only the handshake was sent: no linger, and no exit on a socket FreeSWITCH closes.
    let lines: Vec<&str> = report.requests.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(lines, ["connect", "myevents"]);
    assert!(report.trailing.is_empty());
    assert_eq!(names.first().map(String::as_str), Some("CHANNEL_PARK"));
    assert!(names.iter().any(|n| n == "CHANNEL_HANGUP"));
    assert!(
        matches!(last, Some(Incoming::Disconnect(n)) if n.disposition == Disposition::Disconnect)
    );
}

#[tokio::test]
async fn peers_outside_the_allow_list_are_refused() {
    let config = OutboundConfig {
        allow: vec!["10.0.0.0/8".parse().expect("net")],
        ..test_config()
    };
    let server = OutboundServer::bind(config).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    let mut calls = server.serve();
    let counters = calls.counters();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 16];
    use tokio::io::AsyncReadExt;
    let n = tokio::time::timeout(SCENARIO, stream.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the server must close without speaking");
    assert_eq!(
        counters
            .rejected_peers
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(50), calls.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_broken_peer_does_not_affect_another_call() {
    let config = OutboundConfig {
        linger: false,
        ..test_config()
    };
    let server = OutboundServer::bind(config).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    let mut calls = server.serve();
    let counters = calls.counters();
    // First peer: answers `connect` with garbage that cannot be framed... and stays open.
    let mut bad = TcpStream::connect(addr).await.expect("connect");
    use tokio::io::AsyncWriteExt;
    bad.write_all(b"Content-Length: banana\n\n")
        .await
        .expect("write");
    // Second peer: a real recorded session.
    let fs = tokio::spawn(async move {
        let stream = TcpStream::connect(addr).await.expect("connect");
        play(
            stream,
            script("esl-outbound/outbound_uuid_kill_no_linger.transcript.jsonl"),
        )
        .await
    });
    let mut call = tokio::time::timeout(SCENARIO, calls.next())
        .await
        .expect("good call")
        .expect("call");
    assert_eq!(call.channel().unique_id.len(), 36);
    tokio::time::timeout(SCENARIO, async {
        while call.next_event().await.is_some() {}
    })
    .await
    .expect("ends");
    fs.await.expect("join").expect("FreeSWITCH side");
    assert_eq!(
        counters
            .handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    drop(bad);
}
