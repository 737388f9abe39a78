//! Every byte FreeSWITCH sent in the recorded sessions decodes into the messages the
//! fixtures' README describes, with nothing left over, however the stream is chunked.

mod common;

use std::collections::BTreeMap;

use common::{all_fs_streams, decode_chunks, read, transcript};
use esl_bridge::message::{Disposition, Message};
use esl_bridge::Event;
use proptest::prelude::*;

fn messages(rel: &str) -> Vec<Message> {
    let bytes = read(rel);
    decode_chunks([bytes.as_slice()])
        .into_iter()
        .map(|f| Message::from_frame(f).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::AuthRequest => "auth/request",
        Message::CommandReply(_) => "command/reply",
        Message::ApiResponse(_) => "api/response",
        Message::Event(_) => "event",
        Message::Log(_) => "log/data",
        Message::DisconnectNotice(_) => "text/disconnect-notice",
        Message::RudeRejection(_) => "text/rude-rejection",
        Message::Unknown(_) => "unknown",
    }
}

fn events(msgs: &[Message]) -> Vec<&Event> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// Counts made by an independent reference parser (Python: header block to "\n\n", then
/// Content-Length bytes, stray newlines skipped) over the same files.
#[test]
fn every_fixture_decodes_to_the_reference_message_counts() {
    let expected: BTreeMap<&str, [usize; 5]> = [
        // [auth/request, command/reply, api/response, events, log+disconnect]
        ("esl-inbound/inbound_auth_fail", [1, 1, 0, 0, 1]),
        ("esl-inbound/inbound_json_sip_call", [1, 4, 0, 23, 1]),
        ("esl-inbound/inbound_log_filter_sendevent", [1, 8, 1, 2, 66]),
        ("esl-inbound/inbound_plain_all", [1, 7, 5, 86, 1]),
        ("esl-inbound/inbound_xml_events", [1, 4, 0, 7, 1]),
        ("esl-outbound/outbound_bargein.control", [1, 3, 0, 0, 0]),
        ("esl-outbound/outbound_bargein", [0, 15, 15, 29, 1]),
        ("esl-outbound/outbound_basic.control", [1, 2, 0, 0, 0]),
        ("esl-outbound/outbound_basic", [0, 9, 1, 15, 2]),
        (
            "esl-outbound/outbound_uuid_commands.control",
            [1, 2, 0, 0, 0],
        ),
        ("esl-outbound/outbound_uuid_commands", [0, 3, 11, 9, 1]),
        (
            "esl-outbound/outbound_uuid_kill_no_linger.control",
            [1, 2, 1, 0, 0],
        ),
        ("esl-outbound/outbound_uuid_kill_no_linger", [0, 2, 0, 7, 1]),
        (
            "media-unicast/outbound_unicast_g722_l16.control",
            [1, 2, 0, 0, 0],
        ),
        ("media-unicast/outbound_unicast_g722_l16", [0, 6, 0, 11, 2]),
        (
            "media-unicast/outbound_unicast_opus_l16.control",
            [1, 2, 0, 0, 0],
        ),
        ("media-unicast/outbound_unicast_opus_l16", [0, 6, 0, 10, 2]),
        (
            "media-unicast/outbound_unicast_pcmu_l16.control",
            [1, 2, 0, 0, 0],
        ),
        ("media-unicast/outbound_unicast_pcmu_l16", [0, 7, 0, 13, 2]),
        (
            "media-unicast/outbound_unicast_pcmu_native.control",
            [1, 2, 0, 0, 0],
        ),
        (
            "media-unicast/outbound_unicast_pcmu_native",
            [0, 6, 0, 11, 2],
        ),
        ("mod_audio_stream/mod_audio_stream.esl", [1, 4, 4, 6, 1]),
    ]
    .into_iter()
    .collect();
    let files = all_fs_streams();
    assert_eq!(
        files.len(),
        expected.len(),
        "fixture set changed: {files:?}"
    );
    for rel in files {
        let stem = rel.trim_end_matches(".fs_to_client.raw");
        let want = expected
            .get(stem)
            .unwrap_or_else(|| panic!("no expectation for {stem}"));
        let msgs = messages(&rel);
        let count = |k: &[&str]| msgs.iter().filter(|m| k.contains(&kind(m))).count();
        let got = [
            count(&["auth/request"]),
            count(&["command/reply"]),
            count(&["api/response"]),
            count(&["event"]),
            count(&["log/data", "text/disconnect-notice"]),
        ];
        assert_eq!(&got, want, "{stem}");
        assert_eq!(count(&["unknown"]), 0, "{stem}");
        for e in events(&msgs) {
            assert!(e.name().is_some(), "{stem}: event without Event-Name");
        }
    }
}

#[test]
fn recorded_chunk_boundaries_give_the_same_messages() {
    for rel in all_fs_streams() {
        let stem = rel.trim_end_matches(".fs_to_client.raw");
        let chunks = transcript(&format!("{stem}.transcript.jsonl"));
        let fs_chunks: Vec<&[u8]> = chunks
            .iter()
            .filter(|c| c.from_fs)
            .map(|c| &c.bytes[..])
            .collect();
        let whole = read(&rel);
        assert_eq!(
            fs_chunks.concat(),
            whole,
            "{stem}: transcript and raw differ"
        );
        assert_eq!(
            decode_chunks(fs_chunks),
            decode_chunks([whole.as_slice()]),
            "{stem}"
        );
    }
}

#[test]
fn fixtures_contain_both_split_and_coalesced_messages() {
    // The point of the chunk test above is moot unless the transcripts really split
    // messages across reads and pack several into one read.
    let chunks = transcript("esl-inbound/inbound_plain_all.transcript.jsonl");
    let coalesced = chunks.iter().filter(|c| c.from_fs).any(|c| {
        c.bytes
            .windows(14)
            .filter(|w| w == b"Content-Type: ")
            .count()
            > 1
    });
    let split = transcript("mod_audio_stream/mod_audio_stream.esl.transcript.jsonl")
        .iter()
        .any(|c| c.from_fs && c.bytes.starts_with(b"Event-Name: CHANNEL_ANSWER"));
    assert!(coalesced && split);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_split_points_give_the_same_messages(
        file in proptest::sample::select(all_fs_streams()),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let whole = read(&file);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(whole.len() + 1)).collect();
        points.push(0);
        points.push(whole.len());
        points.sort_unstable();
        points.dedup();
        let pieces: Vec<&[u8]> = points.windows(2).map(|w| &whole[w[0]..w[1]]).collect();
        prop_assert_eq!(decode_chunks(pieces), decode_chunks([whole.as_slice()]));
    }
}

#[test]
fn inbound_plain_all_matches_the_readme() {
    let msgs = messages("esl-inbound/inbound_plain_all.fs_to_client.raw");
    assert_eq!(msgs[0], Message::AuthRequest);
    let Message::CommandReply(auth) = &msgs[1] else {
        panic!("{:?}", msgs[1])
    };
    assert_eq!(auth.text, "+OK accepted");

    let apis: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::ApiResponse(a) => Some(a.body.as_str()),
            _ => None,
        })
        .collect();
    assert!(apis[0].starts_with("UP 0 years") && apis[0].lines().count() > 5);
    assert_eq!(apis[1], "-ERR no_such_command Command not found!\n");
    assert_eq!(apis[2], "-ERR No such channel!\n");

    let replies: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::CommandReply(r) => Some(r.text.as_str()),
            _ => None,
        })
        .collect();
    assert!(replies.contains(&"-ERR command not found"));
    assert!(replies.contains(&"+OK event listener enabled plain"));
    assert!(replies.contains(&"+OK no longer listening for events"));
    assert_eq!(replies.last(), Some(&"+OK bye"));
    let bgapi = msgs
        .iter()
        .find_map(|m| match m {
            Message::CommandReply(r) if r.job_uuid().is_some() => Some(r),
            _ => None,
        })
        .expect("bgapi reply");
    let job = bgapi.job_uuid().expect("job uuid");
    assert_eq!(bgapi.text, format!("+OK Job-UUID: {job}"));

    let evs = events(&msgs);
    let names: std::collections::BTreeSet<&str> = evs.iter().filter_map(|e| e.name()).collect();
    for name in [
        "CODEC",
        "CHANNEL_UUID",
        "CHANNEL_OUTGOING",
        "CHANNEL_CREATE",
        "CHANNEL_ORIGINATE",
        "CHANNEL_STATE",
        "CHANNEL_CALLSTATE",
        "CHANNEL_EXECUTE",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_ANSWER",
        "PLAYBACK_START",
        "PLAYBACK_STOP",
        "CALL_UPDATE",
        "API",
        "BACKGROUND_JOB",
        "CHANNEL_PARK",
        "CHANNEL_UNPARK",
        "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE",
        "CHANNEL_DESTROY",
    ] {
        assert!(names.contains(name), "missing {name}");
    }
    let jobs: Vec<&&Event> = evs
        .iter()
        .filter(|e| e.name() == Some("BACKGROUND_JOB"))
        .collect();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].job_uuid(), Some(job));
    assert_eq!(
        jobs[0].body(),
        Some("+OK f21b3926-988d-454f-b354-d8a43393e6e4\n")
    );
    assert_eq!(jobs[1].body(), Some("-ERR NO_ROUTE_DESTINATION\n"));

    // URL-decoded values.
    let create = evs
        .iter()
        .find(|e| e.name() == Some("CHANNEL_CREATE"))
        .expect("create");
    assert!(create
        .header("Event-Date-Local")
        .expect("date")
        .contains(' '));
    assert_eq!(create.header("FreeSWITCH-IPv6"), Some("fd00::2"));
    assert!(evs
        .iter()
        .any(|e| e.header("Caller-Caller-ID-Name") == Some("Fixture Caller")));
    assert!(evs
        .iter()
        .any(|e| e.header("Caller-Caller-ID-Number") == Some("+4930123456")));
    let Some(Message::DisconnectNotice(bye)) = msgs.last() else {
        panic!()
    };
    assert_eq!(bye.disposition, Disposition::Disconnect);
}

#[test]
fn auth_failure_is_reply_then_disconnect() {
    let msgs = messages("esl-inbound/inbound_auth_fail.fs_to_client.raw");
    let Message::CommandReply(r) = &msgs[1] else {
        panic!()
    };
    assert_eq!(r.text, "-ERR invalid");
    assert!(!r.is_ok());
    assert!(
        matches!(&msgs[2], Message::DisconnectNotice(n) if n.disposition == Disposition::Disconnect)
    );
}

#[test]
fn json_events_are_not_url_encoded_and_carry_body() {
    let msgs = messages("esl-inbound/inbound_json_sip_call.fs_to_client.raw");
    let evs = events(&msgs);
    assert!(evs.iter().any(|e| e
        .header("Channel-Name")
        .is_some_and(|n| n.starts_with("sofia/") && n.contains("+4930123456@"))));
    let job = evs
        .iter()
        .find(|e| e.name() == Some("BACKGROUND_JOB"))
        .expect("job");
    assert_eq!(
        job.body(),
        Some("+OK c4f65a9d-b162-4e3a-b434-ebde3e78b058\n")
    );
    assert!(job.header("_body").is_none());
    assert!(evs
        .iter()
        .any(|e| e.variable("rtp_use_codec_name").is_some() || e.variable("read_codec").is_some()));
}

#[test]
fn xml_events_decode_headers_and_body() {
    let msgs = messages("esl-inbound/inbound_xml_events.fs_to_client.raw");
    let evs = events(&msgs);
    let job = evs
        .iter()
        .find(|e| e.name() == Some("BACKGROUND_JOB"))
        .expect("job");
    assert_eq!(
        job.body(),
        Some("+OK d8b16b57-d476-4296-9e0c-17b19068e6b4\n")
    );
    assert_eq!(
        job.header("Job-Command-Arg"),
        Some("{origination_uuid=d8b16b57-d476-4296-9e0c-17b19068e6b4}loopback/9998 &park()")
    );
    let names: Vec<&str> = evs.iter().filter_map(|e| e.name()).collect();
    assert!(names.contains(&"CHANNEL_HANGUP_COMPLETE") && names.contains(&"CHANNEL_ANSWER"));
}

#[test]
fn log_filter_and_sendevent_session() {
    let msgs = messages("esl-inbound/inbound_log_filter_sendevent.fs_to_client.raw");
    let logs: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Log(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(logs.len(), 65);
    assert!(logs.iter().all(|l| l.level <= 7 && !l.text.is_empty()));
    assert!(logs
        .iter()
        .any(|l| l.text.contains("New Channel loopback/9998-b")));
    let custom = events(&msgs)
        .into_iter()
        .find(|e| e.name() == Some("CUSTOM"))
        .expect("custom");
    assert_eq!(custom.subclass(), Some("fixture::test"));
    assert_eq!(custom.header("X-Fixture"), Some("hello world"));
    assert_eq!(custom.body(), Some("body text\n\n"));
    let replies: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::CommandReply(r) => Some(r.text.as_str()),
            _ => None,
        })
        .collect();
    assert!(replies.contains(&"+OK log level 7 [7]"));
    assert!(replies
        .iter()
        .any(|r| r.starts_with("+OK filter added. [Unique-ID]=[")));
    assert!(replies.iter().any(|r| r.starts_with("+OK filter deleted.")));
}

#[test]
fn outbound_connect_reply_is_decoded_channel_data() {
    let msgs = messages("esl-outbound/outbound_basic.fs_to_client.raw");
    let Message::CommandReply(connect) = &msgs[0] else {
        panic!("{:?}", msgs[0])
    };
    assert_eq!(connect.text, "+OK");
    assert!(connect.is_ok());
    let h = &connect.headers;
    assert_eq!(h.get("Event-Name"), Some("CHANNEL_DATA"));
    assert_eq!(h.get("Socket-Mode"), Some("async"));
    assert_eq!(h.get("Control"), Some("full"));
    assert_eq!(
        h.get("Unique-ID"),
        Some("8bb67b32-2d9c-4933-ab0c-fec0f984b6af")
    );
    assert_eq!(h.get("Caller-Caller-ID-Number"), Some("+4930123456"));
    assert_eq!(
        h.get("Channel-Name"),
        Some("sofia/internal/+4930123456@127.0.0.1")
    );
    // Linger notice (unencoded Channel-Name), then the exit disconnect.
    let notices: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::DisconnectNotice(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices[0].disposition,
        Disposition::Linger { seconds: None }
    );
    assert_eq!(
        notices[0].channel_name.as_deref(),
        Some("sofia/internal/+4930123456@127.0.0.1")
    );
    assert_eq!(
        notices[0].session_uuid.as_deref(),
        Some("8bb67b32-2d9c-4933-ab0c-fec0f984b6af")
    );
    assert_eq!(notices[1].disposition, Disposition::Disconnect);
    let completes: Vec<_> = events(&msgs)
        .into_iter()
        .filter(|e| e.name() == Some("CHANNEL_EXECUTE_COMPLETE"))
        .collect();
    assert!(completes.iter().any(|e| {
        e.application_uuid() == Some("7c137fe0-d272-4be3-b0ee-eee7a91d8a9f")
            && e.header("Application-Response") == Some("FILE PLAYED")
    }));
}

#[test]
fn linger_two_seconds_is_bounded() {
    let msgs = messages("media-unicast/outbound_unicast_pcmu_l16.fs_to_client.raw");
    assert!(msgs.iter().any(|m| matches!(m, Message::DisconnectNotice(n)
        if n.disposition == Disposition::Linger { seconds: Some(2) })));
    assert!(msgs
        .iter()
        .any(|m| matches!(m, Message::CommandReply(r) if r.text == "+OK will linger 2 seconds")));
}

#[test]
fn mod_audio_stream_custom_events() {
    let msgs = messages("mod_audio_stream/mod_audio_stream.esl.fs_to_client.raw");
    let evs = events(&msgs);
    let connect = evs
        .iter()
        .find(|e| e.subclass() == Some("mod_audio_stream::connect"))
        .expect("connect");
    assert_eq!(connect.body(), Some("{\"status\":\"connected\"}"));
    let play = evs
        .iter()
        .find(|e| e.subclass() == Some("mod_audio_stream::play"))
        .expect("play");
    let body: serde_json::Value = serde_json::from_str(play.body().expect("body")).expect("json");
    assert_eq!(body["sampleRate"], 8000);
    assert!(msgs
        .iter()
        .any(|m| matches!(m, Message::ApiResponse(a) if a.body == "+OK Success\n")));
}
