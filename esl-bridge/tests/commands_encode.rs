//! Our typed commands produce what the recorded clients sent, and FreeSWITCH's side of
//! the codec (`RequestCodec`) reads every recorded client stream.

mod common;

use bytes::BytesMut;
use common::{fixture_dir, read};
use esl_bridge::codec::{Request, RequestCodec};
use esl_bridge::command::{CommandError, Password, SendMsg, UnicastParams};
use esl_bridge::{Command, EventFormat};
use tokio_util::codec::Decoder;

fn requests(bytes: &[u8]) -> Vec<Request> {
    let mut codec = RequestCodec::default();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(r) = codec.decode_eof(&mut buf).expect("request framing") {
        out.push(r);
    }
    assert!(buf.is_empty());
    out
}

fn encode(cmds: &[Command]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for c in cmds {
        c.encode(&mut out).expect("encodable");
    }
    out.to_vec()
}

#[test]
fn every_recorded_client_stream_parses_as_requests() {
    let mut total = 0;
    for dir in [
        "esl-inbound",
        "esl-outbound",
        "media-unicast",
        "mod_audio_stream",
    ] {
        for entry in std::fs::read_dir(fixture_dir().join(dir)).expect("dir") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with("client_to_fs.raw") {
                let reqs = requests(&read(&format!("{dir}/{name}")));
                assert!(!reqs.is_empty(), "{name}");
                total += reqs.len();
            }
        }
    }
    assert!(total > 60, "{total}");
}

#[test]
fn outbound_basic_commands_are_reproduced() {
    let sendmsg = |msg| Command::SendMsg { uuid: None, msg };
    let ours = encode(&[
        Command::Connect,
        Command::MyEvents {
            uuid: None,
            format: EventFormat::Plain,
        },
        Command::Linger(None),
        sendmsg(SendMsg::Execute {
            app: "answer".into(),
            arg: None,
            event_uuid: Some("f7d7540b-4bc6-4ba9-b0e6-acc70af9da07".into()),
            event_lock: false,
            loops: None,
        }),
        sendmsg(SendMsg::Execute {
            app: "playback".into(),
            arg: Some("/opt/fs-test/sounds/reply_8k.wav".into()),
            event_uuid: Some("7c137fe0-d272-4be3-b0ee-eee7a91d8a9f".into()),
            event_lock: false,
            loops: None,
        }),
        sendmsg(SendMsg::Execute {
            app: "set".into(),
            // Multi-line arguments travel as a body; so do long ones.
            arg: Some(format!("fixture_var=hello world{}", "")),
            event_uuid: None,
            event_lock: false,
            loops: None,
        }),
        sendmsg(SendMsg::Execute {
            app: "playback".into(),
            arg: Some("tone_stream://%(300,100,600);loops=2".into()),
            event_uuid: None,
            event_lock: true,
            loops: None,
        }),
        Command::api("uuid_getvar 8bb67b32-2d9c-4933-ab0c-fec0f984b6af fixture_var"),
        Command::hangup("NORMAL_CLEARING"),
        Command::Exit,
    ]);
    let recorded = requests(&read("esl-outbound/outbound_basic.client_to_fs.raw"));
    let ours = requests(&ours);
    assert_eq!(ours.len(), recorded.len());
    for (i, (a, b)) in ours.iter().zip(&recorded).enumerate() {
        if i == 5 {
            // The harness sent `set`'s argument as a body; a short one-line argument is
            // sent inline by us. FreeSWITCH takes either (the body when the header is absent).
            assert_eq!(b.body.as_deref(), Some(&b"fixture_var=hello world"[..]));
            assert_eq!(
                a.headers.get("execute-app-arg"),
                Some("fixture_var=hello world")
            );
            continue;
        }
        assert_eq!(a, b, "command {i}");
    }
}

#[test]
fn long_or_multiline_app_args_go_in_a_body_like_the_fixture() {
    let arg = "fixture_var=hello world\nsecond line".to_owned();
    let bytes = encode(&[Command::execute("set", Some(arg.clone()))]);
    let text = String::from_utf8(bytes.clone()).expect("utf8");
    assert!(text.starts_with(
        "sendmsg\ncall-command: execute\nexecute-app-name: set\ncontent-type: text/plain\ncontent-length: 35\n\n"
    ));
    let req = &requests(&bytes)[0];
    assert_eq!(req.body.as_deref(), Some(arg.as_bytes()));
    assert!(req.headers.get("execute-app-arg").is_none());

    let long = "x".repeat(5000);
    let req = &requests(&encode(&[Command::execute("set", Some(long.clone()))]))[0];
    assert_eq!(req.body.as_deref(), Some(long.as_bytes()));
}

#[test]
fn inbound_commands_match_the_recording() {
    let ours = encode(&[
        Command::Auth(Password::new("ClueCon")),
        Command::Log(7),
        Command::Event {
            format: EventFormat::Plain,
            names: vec![
                "CHANNEL_ANSWER".into(),
                "CHANNEL_HANGUP_COMPLETE".into(),
                "CUSTOM".into(),
                "fixture::test".into(),
            ],
        },
        Command::Filter {
            header: "Unique-ID".into(),
            value: "d89fc566-d670-460e-a717-058dc74d87f4".into(),
        },
        Command::api("originate {origination_uuid=d89fc566-d670-460e-a717-058dc74d87f4}loopback/9998 &park()"),
        Command::NoLog,
        Command::FilterDelete {
            header: "Unique-ID".into(),
            value: Some("d89fc566-d670-460e-a717-058dc74d87f4".into()),
        },
        Command::SendEvent {
            name: "CUSTOM".into(),
            headers: vec![
                ("Event-Subclass".into(), "fixture::test".into()),
                ("X-Fixture".into(), "hello world".into()),
            ],
            body: Some("body text\n\n".into()),
        },
        Command::Exit,
    ]);
    let recorded = read("esl-inbound/inbound_log_filter_sendevent.client_to_fs.raw");
    // Identical but for the header-name case of Content-Length, which FreeSWITCH treats
    // case-insensitively.
    assert_eq!(requests(&ours), requests(&recorded));
}

#[test]
fn unicast_command_matches_the_recording() {
    let cmd = Command::SendMsg {
        uuid: None,
        msg: SendMsg::Unicast(UnicastParams {
            local_ip: [127, 0, 0, 1].into(),
            local_port: 9000,
            remote_ip: [127, 0, 0, 1].into(),
            remote_port: 9001,
            native: true,
        }),
    };
    let ours = requests(&encode(&[cmd]));
    let recorded = requests(&read(
        "media-unicast/outbound_unicast_pcmu_native.client_to_fs.raw",
    ));
    let recorded_unicast = recorded
        .iter()
        .find(|r| r.headers.get("call-command") == Some("unicast"))
        .expect("unicast in recording");
    assert_eq!(&ours[0], recorded_unicast);
}

#[test]
fn line_breaks_cannot_inject_commands() {
    let mut out = BytesMut::new();
    let injected = [
        Command::api("status\n\nexit"),
        Command::Auth(Password::new("pw\nexit")),
        Command::hangup("NORMAL\r\nexit"),
        Command::Filter {
            header: "Unique-ID".into(),
            value: "x\n\nexit".into(),
        },
        Command::SendEvent {
            name: "CUSTOM".into(),
            headers: vec![("X-A".into(), "v\n\nexit".into())],
            body: None,
        },
    ];
    for cmd in injected {
        assert!(
            matches!(cmd.encode(&mut out), Err(CommandError::LineBreak { .. })),
            "{cmd:?}"
        );
    }
    assert!(out.is_empty(), "a refused command writes nothing");
    assert!(matches!(
        Command::api("  ").encode(&mut out),
        Err(CommandError::Empty { .. })
    ));
    let bad_header = Command::SendEvent {
        name: "CUSTOM".into(),
        headers: vec![("X: y".into(), "v".into())],
        body: None,
    };
    assert!(matches!(
        bad_header.encode(&mut out),
        Err(CommandError::BadHeaderName { .. })
    ));
}

#[test]
fn callers_cannot_set_the_framing_length() {
    // Found by the `command_roundtrip` fuzz target: a caller-supplied Content-Length
    // would make FreeSWITCH swallow the next commands as this event's body.
    for name in ["Content-Length", "content-length", "CONTENT-LENGTH"] {
        let cmd = Command::SendEvent {
            name: "CUSTOM".into(),
            headers: vec![(name.into(), "100".into())],
            body: None,
        };
        let mut out = BytesMut::new();
        assert!(
            matches!(
                cmd.encode(&mut out),
                Err(CommandError::ReservedHeader { .. })
            ),
            "{name}"
        );
        assert!(out.is_empty());
    }
}

#[test]
fn password_is_never_printed() {
    let cmd = Command::Auth(Password::new("ClueCon"));
    assert!(!format!("{cmd:?}").contains("ClueCon"));
}
