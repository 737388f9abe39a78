//! Server events onto the wire, in the session's dialect.
//!
//! The protocol types serialise the GA event names (the beta names are deserialisation
//! aliases only), so a beta session gets its few renamed events translated here. Every
//! event gets an `event_id`, as the real server's do.

use engine::backend::provider::protocol::{Dialect, ServerEvent};

/// GA names of the events the beta protocol calls differently, with the beta name.
const BETA_NAMES: [(&str, &str); 5] = [
    ("response.output_audio.delta", "response.audio.delta"),
    ("response.output_audio.done", "response.audio.done"),
    (
        "response.output_audio_transcript.delta",
        "response.audio_transcript.delta",
    ),
    (
        "response.output_audio_transcript.done",
        "response.audio_transcript.done",
    ),
    ("response.output_text.delta", "response.text.delta"),
];

/// The beta name of a GA event type, if it has a different one.
pub fn beta_name(ga: &str) -> Option<&'static str> {
    BETA_NAMES.iter().find_map(|&(g, b)| (g == ga).then_some(b))
}

/// Numbers the events of one connection.
#[derive(Debug)]
pub struct Encoder {
    conn: u64,
    sent: u64,
}

impl Encoder {
    /// The encoder of connection `conn`.
    pub fn new(conn: u64) -> Self {
        Self { conn, sent: 0 }
    }

    /// The JSON text of `event` for a `dialect` session.
    pub fn encode(
        &mut self,
        event: &ServerEvent,
        dialect: Dialect,
    ) -> Result<String, serde_json::Error> {
        let mut value = serde_json::to_value(event)?;
        self.sent += 1;
        if let Some(object) = value.as_object_mut() {
            if dialect == Dialect::Beta {
                let renamed = object
                    .get("type")
                    .and_then(|t| t.as_str())
                    .and_then(beta_name);
                if let Some(name) = renamed {
                    object.insert("type".into(), name.into());
                }
            }
            object.insert(
                "event_id".into(),
                format!("event_sim{}_{}", self.conn, self.sent).into(),
            );
        }
        serde_json::to_string(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::backend::provider::protocol::parse_server_event;

    #[test]
    fn beta_names_parse_back_to_the_same_event() {
        // Guards against this table drifting from the aliases in the protocol types.
        let events = [
            ServerEvent::AudioDelta {
                response_id: "r".into(),
                item_id: "i".into(),
                delta: "AAAA".into(),
            },
            ServerEvent::AudioDone {
                response_id: "r".into(),
            },
            ServerEvent::TranscriptDelta {
                response_id: "r".into(),
                delta: "hi".into(),
            },
            ServerEvent::TranscriptDone {
                response_id: "r".into(),
                transcript: "hi".into(),
            },
            ServerEvent::TextDelta {
                response_id: "r".into(),
                delta: "hi".into(),
            },
        ];
        let mut enc = Encoder::new(1);
        for event in events {
            let ga = enc.encode(&event, Dialect::Ga).unwrap();
            let beta = enc.encode(&event, Dialect::Beta).unwrap();
            assert_ne!(ga, beta);
            let beta_type: serde_json::Value = serde_json::from_str(&beta).unwrap();
            assert!(BETA_NAMES.iter().any(|(_, b)| beta_type["type"] == *b));
            assert_eq!(parse_server_event(&ga).unwrap(), event);
            assert_eq!(parse_server_event(&beta).unwrap(), event);
        }
    }

    #[test]
    fn events_are_numbered() {
        let mut enc = Encoder::new(3);
        let ev = ServerEvent::InputCommitted { item_id: None };
        let a: serde_json::Value =
            serde_json::from_str(&enc.encode(&ev, Dialect::Ga).unwrap()).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(&enc.encode(&ev, Dialect::Beta).unwrap()).unwrap();
        assert_eq!(a["event_id"], "event_sim3_1");
        assert_eq!(b["event_id"], "event_sim3_2");
        assert_eq!(b["type"], "input_audio_buffer.committed");
    }
}
