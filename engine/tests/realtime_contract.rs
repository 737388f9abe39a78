//! Contract tests for the OpenAI Realtime protocol types (`backend::provider::protocol`):
//! every client event we send serialises to the documented JSON shape, and every server
//! event we handle parses from the documented example JSON, under both its GA and its
//! beta name. The simulator (`probes/src/sim`) speaks through the same types, so these
//! also hold it to the documented wire.
//!
//! Sources (each constant below names its own):
//! - GA client events: <https://developers.openai.com/api/reference/resources/realtime/client-events>
//! - GA server events: <https://developers.openai.com/api/reference/resources/realtime/server-events>
//!   (both read as the pages' Markdown variants, `….md`, the "### Example" blocks)
//! - Beta (`OpenAI-Beta: realtime=v1`) events: the earlier reference pages
//!   <https://platform.openai.com/docs/api-reference/realtime-client-events> and
//!   `…/realtime-server-events`, read from the Markdown export in the GitHub repository
//!   `tourze/open-ai-api-bundle`, folder `openai-docs-api-reference/realtime-{client,server}-events/`.
//!
//! The examples are copied as published. Where a published example is not valid JSON (a
//! trailing comma) the comment says so and the comma is the only change. Where no example
//! is published the shape is written from the reference's field list and the comment
//! says that too.

use std::collections::BTreeSet;

use engine::backend::provider::protocol::{
    decode_audio, encode_audio, parse_client_event, parse_server_event, BetaTurnDetection,
    ClientEvent, ContentPart, Dialect, ErrorDetail, InputTokenDetails, ItemInfo, MessageItem,
    OutputTokenDetails, RateLimit, ResponseInfo, ResponseUsage, ServerEvent, SessionRequest,
    SessionSettings, StatusDetails, TurnDetection, WireAudio,
};
use serde_json::{json, Value};

// ── Documented client events, GA ─────────────────────────────────────────────────────

/// GA, client-events page, `session.update` example (the only one published: tools, no audio).
const GA_SESSION_UPDATE: &str = r#"{
  "type": "session.update",
  "session": {
    "type": "realtime",
    "instructions": "You are a creative assistant that helps with design tasks.",
    "tools": [
      {
        "type": "function",
        "name": "display_color_palette",
        "description": "Call this function when a user asks for a color palette.",
        "parameters": {
          "type": "object",
          "properties": {
            "theme": {
              "type": "string",
              "description": "Description of the theme for the color scheme."
            },
            "colors": {
              "type": "array",
              "description": "Array of five hex color codes based on the theme.",
              "items": {
                "type": "string",
                "description": "Hex color code"
              }
            }
          },
          "required": [
            "theme",
            "colors"
          ]
        }
      }
    ],
    "tool_choice": "auto"
  }
}"#;

/// GA, client-events page, `session.update` description: "To turn off input audio noise
/// reduction, send this Realtime event" (a partial update of `audio.input`).
const GA_SESSION_UPDATE_NOISE_REDUCTION_OFF: &str = r#"{"type":"session.update","session":{"type":"realtime","audio":{"input":{"noise_reduction":null}}}}"#;

/// GA, client-events page, `input_audio_buffer.append` example.
const GA_APPEND: &str = r#"{
    "event_id": "event_456",
    "type": "input_audio_buffer.append",
    "audio": "Base64EncodedAudioData"
}"#;

/// GA, client-events page, `input_audio_buffer.commit` example.
const GA_COMMIT: &str = r#"{
    "event_id": "event_789",
    "type": "input_audio_buffer.commit"
}"#;

/// GA, client-events page, `input_audio_buffer.clear` example.
const GA_CLEAR: &str = r#"{
    "event_id": "event_012",
    "type": "input_audio_buffer.clear"
}"#;

/// GA, client-events page, `response.create`, first example ("Trigger a response with the
/// default Conversation and no special parameters"). Published as `{"type": "response.create",}`;
/// the trailing comma (invalid JSON) is removed.
const GA_RESPONSE_CREATE: &str = r#"{
  "type": "response.create"
}"#;

/// GA, client-events page, `response.cancel` example.
const GA_RESPONSE_CANCEL: &str = r#"{
    "type": "response.cancel",
    "response_id": "resp_12345"
}"#;

/// GA, client-events page, `conversation.item.truncate` example.
const GA_ITEM_TRUNCATE: &str = r#"{
    "event_id": "event_678",
    "type": "conversation.item.truncate",
    "item_id": "item_002",
    "content_index": 0,
    "audio_end_ms": 1500
}"#;

/// GA, client-events page, `conversation.item.create` example (a user `input_text` message).
const GA_ITEM_CREATE_USER: &str = r#"{
  "type": "conversation.item.create",
  "item": {
    "type": "message",
    "role": "user",
    "content": [
      {
        "type": "input_text",
        "text": "hi"
      }
    ]
  }
}"#;

/// GA, no published example of an assistant message: written from the client-events field
/// list (`RealtimeConversationItemAssistantMessage`: `type: "message"`, `role: "assistant"`,
/// `content[].type: "output_text" | "output_audio"`, `content[].text`).
const GA_ITEM_CREATE_ASSISTANT: &str = r#"{
  "type": "conversation.item.create",
  "item": {
    "type": "message",
    "role": "assistant",
    "content": [
      {
        "type": "output_text",
        "text": "Your table for two is booked."
      }
    ]
  }
}"#;

// ── Documented client events, beta ───────────────────────────────────────────────────

/// Beta, realtime-client-events/session/update.md example.
const BETA_SESSION_UPDATE: &str = r#"{
    "event_id": "event_123",
    "type": "session.update",
    "session": {
        "modalities": ["text", "audio"],
        "instructions": "You are a helpful assistant.",
        "voice": "sage",
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_transcription": {
            "model": "whisper-1"
        },
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
            "create_response": true
        },
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Get the current weather...",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": { "type": "string" }
                    },
                    "required": ["location"]
                }
            }
        ],
        "tool_choice": "auto",
        "temperature": 0.8,
        "max_response_output_tokens": "inf"
    }
}"#;

/// Beta, realtime-client-events/response/create.md example (response parameters we never send).
const BETA_RESPONSE_CREATE: &str = r#"{
    "event_id": "event_234",
    "type": "response.create",
    "response": {
        "modalities": ["text", "audio"],
        "instructions": "Please assist the user.",
        "voice": "sage",
        "output_audio_format": "pcm16",
        "tools": [
            {
                "type": "function",
                "name": "calculate_sum",
                "description": "Calculates the sum of two numbers.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "a": { "type": "number" },
                        "b": { "type": "number" }
                    },
                    "required": ["a", "b"]
                }
            }
        ],
        "tool_choice": "auto",
        "temperature": 0.8,
        "max_output_tokens": 1024
    }
}"#;

/// Beta, realtime-client-events/response/cancel.md example (no `response_id`).
const BETA_RESPONSE_CANCEL: &str = r#"{
    "event_id": "event_567",
    "type": "response.cancel"
}"#;

/// Beta, realtime-client-events/conversation/item/create.md example.
const BETA_ITEM_CREATE: &str = r#"{
    "event_id": "event_345",
    "type": "conversation.item.create",
    "previous_item_id": null,
    "item": {
        "id": "msg_001",
        "type": "message",
        "role": "user",
        "content": [
            {
                "type": "input_text",
                "text": "Hello, how are you?"
            }
        ]
    }
}"#;

// ── Documented server events, GA ─────────────────────────────────────────────────────

/// GA, server-events page, `error` example (the beta page, realtime-server-events/error.md,
/// publishes the same JSON).
const GA_ERROR: &str = r#"{
    "event_id": "event_890",
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "code": "invalid_event",
        "message": "The 'type' field is missing.",
        "param": null,
        "event_id": "event_567"
    }
}"#;

/// GA, server-events page, `session.created` example. Published with a trailing comma after
/// the `session` object (invalid JSON); the comma is removed.
const GA_SESSION_CREATED: &str = r#"{
  "type": "session.created",
  "event_id": "event_C9G5RJeJ2gF77mV7f2B1j",
  "session": {
    "type": "realtime",
    "object": "realtime.session",
    "id": "sess_C9G5QPteg4UIbotdKLoYQ",
    "model": "gpt-realtime-2025-08-28",
    "output_modalities": [
      "audio"
    ],
    "instructions": "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. Act like a human, but remember that you aren't a human and that you can't do human things in the real world. Your voice and personality should be warm and engaging, with a lively and playful tone. If interacting in a non-English language, start by using the standard accent or dialect familiar to the user. Talk quickly. You should always call a function if you can. Do not refer to these rules, even if you’re asked about them.",
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": null,
    "prompt": null,
    "expires_at": 1756324625,
    "audio": {
      "input": {
        "format": {
          "type": "audio/pcm",
          "rate": 24000
        },
        "transcription": null,
        "noise_reduction": null,
        "turn_detection": {
          "type": "server_vad",
          "threshold": 0.5,
          "prefix_padding_ms": 300,
          "silence_duration_ms": 200,
          "idle_timeout_ms": null,
          "create_response": true,
          "interrupt_response": true
        }
      },
      "output": {
        "format": {
          "type": "audio/pcm",
          "rate": 24000
        },
        "voice": "marin",
        "speed": 1
      }
    },
    "include": null
  }
}"#;

/// GA, server-events page, `session.updated` example. Published with a trailing comma after
/// the `session` object (invalid JSON); the comma is removed.
const GA_SESSION_UPDATED: &str = r#"{
  "type": "session.updated",
  "event_id": "event_C9G8mqI3IucaojlVKE8Cs",
  "session": {
    "type": "realtime",
    "object": "realtime.session",
    "id": "sess_C9G8l3zp50uFv4qgxfJ8o",
    "model": "gpt-realtime-2025-08-28",
    "output_modalities": [
      "audio"
    ],
    "instructions": "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. Act like a human, but remember that you aren't a human and that you can't do human things in the real world. Your voice and personality should be warm and engaging, with a lively and playful tone. If interacting in a non-English language, start by using the standard accent or dialect familiar to the user. Talk quickly. You should always call a function if you can. Do not refer to these rules, even if you’re asked about them.",
    "tools": [
      {
        "type": "function",
        "name": "display_color_palette",
        "description": "\nCall this function when a user asks for a color palette.\n",
        "parameters": {
          "type": "object",
          "strict": true,
          "properties": {
            "theme": {
              "type": "string",
              "description": "Description of the theme for the color scheme."
            },
            "colors": {
              "type": "array",
              "description": "Array of five hex color codes based on the theme.",
              "items": {
                "type": "string",
                "description": "Hex color code"
              }
            }
          },
          "required": [
            "theme",
            "colors"
          ]
        }
      }
    ],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": null,
    "prompt": null,
    "expires_at": 1756324832,
    "audio": {
      "input": {
        "format": {
          "type": "audio/pcm",
          "rate": 24000
        },
        "transcription": null,
        "noise_reduction": null,
        "turn_detection": {
          "type": "server_vad",
          "threshold": 0.5,
          "prefix_padding_ms": 300,
          "silence_duration_ms": 200,
          "idle_timeout_ms": null,
          "create_response": true,
          "interrupt_response": true
        }
      },
      "output": {
        "format": {
          "type": "audio/pcm",
          "rate": 24000
        },
        "voice": "marin",
        "speed": 1
      }
    },
    "include": null
  }
}"#;

/// GA, server-events page, `input_audio_buffer.speech_started` example.
const GA_SPEECH_STARTED: &str = r#"{
    "event_id": "event_1516",
    "type": "input_audio_buffer.speech_started",
    "audio_start_ms": 1000,
    "item_id": "msg_003"
}"#;

/// GA, server-events page, `input_audio_buffer.speech_stopped` example.
const GA_SPEECH_STOPPED: &str = r#"{
    "event_id": "event_1718",
    "type": "input_audio_buffer.speech_stopped",
    "audio_end_ms": 2000,
    "item_id": "msg_003"
}"#;

/// GA, server-events page, `input_audio_buffer.committed` example.
const GA_COMMITTED: &str = r#"{
    "event_id": "event_1121",
    "type": "input_audio_buffer.committed",
    "previous_item_id": "msg_001",
    "item_id": "msg_002"
}"#;

/// GA, server-events page, `conversation.item.input_audio_transcription.completed` example.
const GA_TRANSCRIPTION_COMPLETED: &str = r#"{
  "type": "conversation.item.input_audio_transcription.completed",
  "event_id": "event_CCXGRvtUVrax5SJAnNOWZ",
  "item_id": "item_CCXGQ4e1ht4cOraEYcuR2",
  "content_index": 0,
  "transcript": "Hey, can you hear me?",
  "usage": {
    "type": "tokens",
    "total_tokens": 22,
    "input_tokens": 13,
    "input_token_details": {
      "text_tokens": 0,
      "audio_tokens": 13
    },
    "output_tokens": 9
  }
}"#;

/// GA, server-events page, `response.created` example. Published with a trailing comma after
/// the `response` object (invalid JSON); the comma is removed.
const GA_RESPONSE_CREATED: &str = r#"{
  "type": "response.created",
  "event_id": "event_C9G8pqbTEddBSIxbBN6Os",
  "response": {
    "object": "realtime.response",
    "id": "resp_C9G8p7IH2WxLbkgPNouYL",
    "status": "in_progress",
    "status_details": null,
    "output": [],
    "conversation_id": "conv_C9G8mmBkLhQJwCon3hoJN",
    "output_modalities": [
      "audio"
    ],
    "max_output_tokens": "inf",
    "audio": {
      "output": {
        "format": {
          "type": "audio/pcm",
          "rate": 24000
        },
        "voice": "marin"
      }
    },
    "usage": null,
    "metadata": null
  }
}"#;

/// GA, server-events page, `response.output_item.added` example (the beta page,
/// realtime-server-events/response/output_item/added.md, publishes the same JSON).
const GA_OUTPUT_ITEM_ADDED: &str = r#"{
    "event_id": "event_3334",
    "type": "response.output_item.added",
    "response_id": "resp_001",
    "output_index": 0,
    "item": {
        "id": "msg_007",
        "object": "realtime.item",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": []
    }
}"#;

/// GA, server-events page, `response.output_audio.delta` example.
const GA_AUDIO_DELTA: &str = r#"{
    "event_id": "event_4950",
    "type": "response.output_audio.delta",
    "response_id": "resp_001",
    "item_id": "msg_008",
    "output_index": 0,
    "content_index": 0,
    "delta": "Base64EncodedAudioDelta"
}"#;

/// GA, server-events page, `response.output_audio.done` example.
const GA_AUDIO_DONE: &str = r#"{
    "event_id": "event_5152",
    "type": "response.output_audio.done",
    "response_id": "resp_001",
    "item_id": "msg_008",
    "output_index": 0,
    "content_index": 0
}"#;

/// GA, server-events page, `response.output_audio_transcript.delta` example.
const GA_TRANSCRIPT_DELTA: &str = r#"{
    "event_id": "event_4546",
    "type": "response.output_audio_transcript.delta",
    "response_id": "resp_001",
    "item_id": "msg_008",
    "output_index": 0,
    "content_index": 0,
    "delta": "Hello, how can I a"
}"#;

/// GA, server-events page, `response.output_audio_transcript.done` example.
const GA_TRANSCRIPT_DONE: &str = r#"{
    "event_id": "event_4748",
    "type": "response.output_audio_transcript.done",
    "response_id": "resp_001",
    "item_id": "msg_008",
    "output_index": 0,
    "content_index": 0,
    "transcript": "Hello, how can I assist you today?"
}"#;

/// GA, server-events page, `response.output_text.delta` example.
const GA_TEXT_DELTA: &str = r#"{
    "event_id": "event_4142",
    "type": "response.output_text.delta",
    "response_id": "resp_001",
    "item_id": "msg_007",
    "output_index": 0,
    "content_index": 0,
    "delta": "Sure, I can h"
}"#;

/// GA, server-events page, `response.done` example (completed, full usage).
const GA_RESPONSE_DONE: &str = r#"{
  "type": "response.done",
  "event_id": "event_CCXHxcMy86rrKhBLDdqCh",
  "response": {
    "object": "realtime.response",
    "id": "resp_CCXHw0UJld10EzIUXQCNh",
    "status": "completed",
    "status_details": null,
    "output": [
      {
        "id": "item_CCXHwGjjDUfOXbiySlK7i",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [
          {
            "type": "output_audio",
            "transcript": "Loud and clear! I can hear you perfectly. How can I help you today?"
          }
        ]
      }
    ],
    "conversation_id": "conv_CCXHsurMKcaVxIZvaCI5m",
    "output_modalities": [
      "audio"
    ],
    "max_output_tokens": "inf",
    "audio": {
      "output": {
        "format": {
          "type": "audio/pcm",
          "rate": 24000
        },
        "voice": "alloy"
      }
    },
    "usage": {
      "total_tokens": 253,
      "input_tokens": 132,
      "output_tokens": 121,
      "input_token_details": {
        "text_tokens": 119,
        "audio_tokens": 13,
        "image_tokens": 0,
        "cached_tokens": 64,
        "cached_tokens_details": {
          "text_tokens": 64,
          "audio_tokens": 0,
          "image_tokens": 0
        }
      },
      "output_token_details": {
        "text_tokens": 30,
        "audio_tokens": 91
      }
    },
    "metadata": null
  }
}"#;

/// GA, no published example of a cancelled response: written from the server-events field
/// list of `response.done` (`response.status: "cancelled"`, `response.status_details`:
/// `RealtimeResponseStatus { type, reason: "turn_detected" | "client_cancelled" | …, error }`).
const GA_RESPONSE_DONE_CANCELLED: &str = r#"{
  "type": "response.done",
  "event_id": "event_cancel_1",
  "response": {
    "object": "realtime.response",
    "id": "resp_cancel_1",
    "status": "cancelled",
    "status_details": {
      "type": "cancelled",
      "reason": "turn_detected"
    },
    "output": [],
    "usage": {
      "total_tokens": 40,
      "input_tokens": 32,
      "output_tokens": 8,
      "input_token_details": {
        "text_tokens": 20,
        "audio_tokens": 12,
        "cached_tokens": 0
      },
      "output_token_details": {
        "text_tokens": 2,
        "audio_tokens": 6
      }
    }
  }
}"#;

/// GA, no published example of a failed response: written from the server-events field list
/// (`response.status: "failed"`, `status_details.error` is `{ type, code }`; no `message`).
const GA_RESPONSE_DONE_FAILED: &str = r#"{
  "type": "response.done",
  "event_id": "event_failed_1",
  "response": {
    "object": "realtime.response",
    "id": "resp_failed_1",
    "status": "failed",
    "status_details": {
      "type": "failed",
      "error": {
        "type": "server_error",
        "code": "server_error"
      }
    },
    "output": [],
    "usage": null
  }
}"#;

/// GA, server-events page, `rate_limits.updated` example.
const GA_RATE_LIMITS: &str = r#"{
    "event_id": "event_5758",
    "type": "rate_limits.updated",
    "rate_limits": [
        {
            "name": "requests",
            "limit": 1000,
            "remaining": 999,
            "reset_seconds": 60
        },
        {
            "name": "tokens",
            "limit": 50000,
            "remaining": 49950,
            "reset_seconds": 60
        }
    ]
}"#;

/// GA, server-events page, `conversation.item.truncated` example.
const GA_ITEM_TRUNCATED: &str = r#"{
    "event_id": "event_2526",
    "type": "conversation.item.truncated",
    "item_id": "msg_004",
    "content_index": 0,
    "audio_end_ms": 1500
}"#;

/// GA, server-events page, `conversation.item.added` example (an event we do not act on).
const GA_ITEM_ADDED: &str = r#"{
  "type": "conversation.item.added",
  "event_id": "event_C9G8pjSJCfRNEhMEnYAVy",
  "previous_item_id": null,
  "item": {
    "id": "item_C9G8pGVKYnaZu8PH5YQ9O",
    "type": "message",
    "status": "completed",
    "role": "user",
    "content": [
      {
        "type": "input_text",
        "text": "hi"
      }
    ]
  }
}"#;

/// GA, server-events page, `response.content_part.added` example (an event we do not act on).
const GA_CONTENT_PART_ADDED: &str = r#"{
    "event_id": "event_3738",
    "type": "response.content_part.added",
    "response_id": "resp_001",
    "item_id": "msg_007",
    "output_index": 0,
    "content_index": 0,
    "part": {
        "type": "text",
        "text": ""
    }
}"#;

// ── Documented server events, beta ───────────────────────────────────────────────────

/// Beta, realtime-server-events/session/created.md example.
const BETA_SESSION_CREATED: &str = r#"{
    "event_id": "event_1234",
    "type": "session.created",
    "session": {
        "id": "sess_001",
        "object": "realtime.session",
        "model": "gpt-4o-realtime-preview",
        "modalities": ["text", "audio"],
        "instructions": "...model instructions here...",
        "voice": "sage",
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_transcription": null,
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 200
        },
        "tools": [],
        "tool_choice": "auto",
        "temperature": 0.8,
        "max_response_output_tokens": "inf"
    }
}"#;

/// Beta, realtime-server-events/conversation/item/input_audio_transcription/completed.md example.
const BETA_TRANSCRIPTION_COMPLETED: &str = r#"{
    "event_id": "event_2122",
    "type": "conversation.item.input_audio_transcription.completed",
    "item_id": "msg_003",
    "content_index": 0,
    "transcript": "Hello, how are you?"
}"#;

/// Beta, realtime-server-events/response/created.md example.
const BETA_RESPONSE_CREATED: &str = r#"{
    "event_id": "event_2930",
    "type": "response.created",
    "response": {
        "id": "resp_001",
        "object": "realtime.response",
        "status": "in_progress",
        "status_details": null,
        "output": [],
        "usage": null
    }
}"#;

/// Beta, realtime-server-events/response/audio/delta.md example.
const BETA_AUDIO_DELTA: &str = r#"{
    "event_id": "event_4950",
    "type": "response.audio.delta",
    "response_id": "resp_001",
    "item_id": "msg_008",
    "output_index": 0,
    "content_index": 0,
    "delta": "Base64EncodedAudioDelta"
}"#;

/// Beta, realtime-server-events/response/audio/done.md example.
const BETA_AUDIO_DONE: &str = r#"{
    "event_id": "event_5152",
    "type": "response.audio.done",
    "response_id": "resp_001",
    "item_id": "msg_008",
    "output_index": 0,
    "content_index": 0
}"#;

/// Beta, realtime-server-events/response/audio_transcript/delta.md example.
const BETA_TRANSCRIPT_DELTA: &str = r#"{
    "event_id": "event_4546",
    "type": "response.audio_transcript.delta",
    "response_id": "resp_001",
    "item_id": "msg_008",
    "output_index": 0,
    "content_index": 0,
    "delta": "Hello, how can I a"
}"#;

/// Beta, realtime-server-events/response/audio_transcript/done.md example.
const BETA_TRANSCRIPT_DONE: &str = r#"{
    "event_id": "event_4748",
    "type": "response.audio_transcript.done",
    "response_id": "resp_001",
    "item_id": "msg_008",
    "output_index": 0,
    "content_index": 0,
    "transcript": "Hello, how can I assist you today?"
}"#;

/// Beta, realtime-server-events/response/text/delta.md example.
const BETA_TEXT_DELTA: &str = r#"{
    "event_id": "event_4142",
    "type": "response.text.delta",
    "response_id": "resp_001",
    "item_id": "msg_007",
    "output_index": 0,
    "content_index": 0,
    "delta": "Sure, I can h"
}"#;

/// Beta, realtime-server-events/response/done.md example (completed, full usage).
const BETA_RESPONSE_DONE: &str = r#"{
    "event_id": "event_3132",
    "type": "response.done",
    "response": {
        "id": "resp_001",
        "object": "realtime.response",
        "status": "completed",
        "status_details": null,
        "output": [
            {
                "id": "msg_006",
                "object": "realtime.item",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "text",
                        "text": "Sure, how can I assist you today?"
                    }
                ]
            }
        ],
        "usage": {
            "total_tokens":275,
            "input_tokens":127,
            "output_tokens":148,
            "input_token_details": {
                "cached_tokens":384,
                "text_tokens":119,
                "audio_tokens":8,
                "cached_tokens_details": {
                    "text_tokens": 128,
                    "audio_tokens": 256
                }
            },
            "output_token_details": {
              "text_tokens":36,
              "audio_tokens":112
            }
        }
    }
}"#;

/// Beta, realtime-server-events/output_audio_buffer/started.md example (an event we do not
/// act on; the GA page publishes `{}` as its example).
const BETA_OUTPUT_AUDIO_BUFFER_STARTED: &str = r#"{
    "event_id": "event_abc123",
    "type": "output_audio_buffer.started",
    "response_id": "resp_abc123"
}"#;

// ── Helpers ──────────────────────────────────────────────────────────────────────────

/// A documented example as a JSON value.
fn doc(text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("documented example is not JSON ({e}):\n{text}"))
}

/// `value` without the fields at the JSON `pointers`. Every field must be there, so the
/// list of "fields the example has that we do not send" cannot drift from the example.
fn without(mut value: Value, pointers: &[&str]) -> Value {
    for pointer in pointers {
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        let removed = value
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .and_then(|object| object.remove(key));
        assert!(removed.is_some(), "{pointer} is not in {value}");
    }
    value
}

/// What goes on the wire for `event`, read back as a JSON value.
fn sent(event: &ClientEvent) -> Value {
    let text = serde_json::to_string(event).expect("client events serialise");
    serde_json::from_str(&text).expect("serialised client events are JSON")
}

/// A server text message we must understand.
fn server(text: &str) -> ServerEvent {
    parse_server_event(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A client text message the simulator must understand.
fn client(text: &str) -> ClientEvent {
    parse_client_event(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn session_update(request: &SessionRequest, dialect: Dialect) -> ClientEvent {
    ClientEvent::SessionUpdate {
        session: Box::new(request.settings(dialect)),
    }
}

fn request(audio: WireAudio, server_vad: bool) -> SessionRequest {
    SessionRequest {
        model: "gpt-realtime".into(),
        instructions: "You are a creative assistant that helps with design tasks.".into(),
        voice: "marin".into(),
        audio,
        server_vad,
        transcription_model: None,
        language: None,
    }
}

// ── Client events: session.update ────────────────────────────────────────────────────

#[test]
fn ga_session_update_with_pcmu_both_ways_and_turn_detection_off() {
    // Written from the GA field list (RealtimeSessionCreateRequest: type, model,
    // instructions, output_modalities, audio.input.{format, turn_detection},
    // audio.output.{format, voice}; PCMUAudio is `{ "type": "audio/pcmu" }`;
    // "To clear a field like turn_detection, pass null"): the only published example
    // carries tools and no audio.
    let expected = json!({
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "instructions": "You are a creative assistant that helps with design tasks.",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": { "type": "audio/pcmu" },
                    "turn_detection": null
                },
                "output": {
                    "format": { "type": "audio/pcmu" },
                    "voice": "marin"
                }
            }
        }
    });
    let ours = sent(&session_update(
        &request(WireAudio::Pcmu, false),
        Dialect::Ga,
    ));
    assert_eq!(ours, expected);
    // `null` is sent, not left out: leaving it out keeps the server's default server VAD.
    assert!(ours.pointer("/session/audio/input/turn_detection") == Some(&Value::Null));

    // The published example and ours agree on everything they share.
    assert_eq!(
        without(
            ours,
            &[
                "/session/model",
                "/session/output_modalities",
                "/session/audio"
            ]
        ),
        without(
            doc(GA_SESSION_UPDATE),
            &["/session/tools", "/session/tool_choice"]
        )
    );
}

#[test]
fn ga_session_update_with_24k_pcm_and_server_vad() {
    let mut req = request(WireAudio::Pcm24k, true);
    req.transcription_model = Some("gpt-4o-mini-transcribe".into());
    req.language = Some("en".into());
    // From the GA field list (PCMAudio `{ "type": "audio/pcm", "rate": 24000 }`, ServerVad
    // `{ type, create_response, interrupt_response, … }`, AudioTranscription
    // `{ model, language, … }`).
    let expected = json!({
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "instructions": "You are a creative assistant that helps with design tasks.",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": { "type": "audio/pcm", "rate": 24000 },
                    "turn_detection": {
                        "type": "server_vad",
                        "create_response": true,
                        "interrupt_response": true
                    },
                    "transcription": { "model": "gpt-4o-mini-transcribe", "language": "en" }
                },
                "output": {
                    "format": { "type": "audio/pcm", "rate": 24000 },
                    "voice": "marin"
                }
            }
        }
    });
    let ours = sent(&session_update(&req, Dialect::Ga));
    assert_eq!(ours, expected);

    // The format objects and turn detection are exactly what the server documents in its
    // own session object (session.created), less the VAD tuning we leave at defaults.
    let server_session = doc(GA_SESSION_CREATED)["session"].clone();
    for side in ["input", "output"] {
        let pointer = format!("/audio/{side}/format");
        assert_eq!(
            ours.pointer(&format!("/session{pointer}")),
            server_session.pointer(&pointer),
            "{side} format"
        );
    }
    assert_eq!(
        ours.pointer("/session/audio/input/turn_detection").cloned(),
        Some(without(
            server_session["audio"]["input"]["turn_detection"].clone(),
            &[
                "/threshold",
                "/prefix_padding_ms",
                "/silence_duration_ms",
                "/idle_timeout_ms"
            ]
        ))
    );
}

#[test]
fn beta_session_update_matches_the_documented_example() {
    let req = SessionRequest {
        model: "gpt-4o-realtime-preview".into(),
        instructions: "You are a helpful assistant.".into(),
        voice: "sage".into(),
        audio: WireAudio::Pcm24k,
        server_vad: true,
        transcription_model: Some("whisper-1".into()),
        language: None,
    };
    let ours = sent(&session_update(&req, Dialect::Beta));
    // The published example minus what we do not send (client event id, tools, sampling,
    // VAD tuning). We also send `interrupt_response: true` (a documented field, default
    // true) and list the modalities the other way round (a set, order irrelevant).
    let expected = without(
        doc(BETA_SESSION_UPDATE),
        &[
            "/event_id",
            "/session/tools",
            "/session/tool_choice",
            "/session/temperature",
            "/session/max_response_output_tokens",
            "/session/turn_detection/threshold",
            "/session/turn_detection/prefix_padding_ms",
            "/session/turn_detection/silence_duration_ms",
            "/session/modalities",
        ],
    );
    assert_eq!(
        without(
            ours.clone(),
            &[
                "/session/turn_detection/interrupt_response",
                "/session/modalities"
            ]
        ),
        expected
    );
    assert_eq!(
        ours["session"]["turn_detection"]["interrupt_response"],
        true
    );
    let modalities = |v: &Value| -> BTreeSet<String> {
        v["session"]["modalities"]
            .as_array()
            .expect("modalities is an array")
            .iter()
            .map(|m| m.as_str().expect("a modality name").to_owned())
            .collect()
    };
    assert_eq!(modalities(&ours), modalities(&doc(BETA_SESSION_UPDATE)));
    // Beta sets the model in the URL only; no GA-only field leaks into a beta update.
    for ga_only in ["model", "type", "output_modalities", "audio"] {
        assert!(
            ours["session"].get(ga_only).is_none(),
            "{ga_only} in {ours}"
        );
    }
}

#[test]
fn beta_session_update_with_turn_detection_off() {
    // From the beta field list (input_audio_format/output_audio_format:
    // `pcm16` | `g711_ulaw` | `g711_alaw`; turn_detection "can be set to null to turn off").
    for (audio, name) in [(WireAudio::Pcmu, "g711_ulaw"), (WireAudio::Pcm24k, "pcm16")] {
        let expected = json!({
            "type": "session.update",
            "session": {
                "instructions": "You are a creative assistant that helps with design tasks.",
                "modalities": ["audio", "text"],
                "voice": "marin",
                "input_audio_format": name,
                "output_audio_format": name,
                "turn_detection": null
            }
        });
        let ours = sent(&session_update(&request(audio, false), Dialect::Beta));
        assert_eq!(ours, expected, "{name}");
        assert!(ours.pointer("/session/turn_detection") == Some(&Value::Null));
    }
}

#[test]
fn documented_session_updates_parse_for_the_simulator() {
    // GA: tools and instructions, no audio. Parses (unknown fields ignored) and says
    // nothing about audio or turn detection.
    let ClientEvent::SessionUpdate { session } = client(GA_SESSION_UPDATE) else {
        panic!("not a session.update");
    };
    assert_eq!(session.kind.as_deref(), Some("realtime"));
    assert_eq!(
        session.instructions.as_deref(),
        Some("You are a creative assistant that helps with design tasks.")
    );
    assert_eq!(session.wire_audio(), None);
    assert_eq!(session.server_vad(), None);

    // Beta: the full documented update, with event_id, tools, sampling and VAD tuning.
    let ClientEvent::SessionUpdate { session } = client(BETA_SESSION_UPDATE) else {
        panic!("not a session.update");
    };
    assert_eq!(session.wire_audio(), Some(WireAudio::Pcm24k));
    assert_eq!(session.server_vad(), Some(true));
    assert_eq!(session.voice.as_deref(), Some("sage"));
    assert_eq!(
        session
            .input_audio_transcription
            .as_ref()
            .map(|t| t.model.as_str()),
        Some("whisper-1")
    );
    let BetaTurnDetection::On(vad) = &session.turn_detection else {
        panic!("turn detection should be on: {:?}", session.turn_detection);
    };
    assert_eq!(vad.kind, "server_vad");
    assert_eq!(vad.silence_duration_ms, Some(500));
    assert_eq!(vad.create_response, Some(true));
    assert_eq!(vad.interrupt_response, None);

    // Beta with turn detection explicitly off, and with it left out: different things.
    let off = client(
        r#"{"type":"session.update","session":{"input_audio_format":"g711_ulaw","turn_detection":null}}"#,
    );
    let absent =
        client(r#"{"type":"session.update","session":{"input_audio_format":"g711_ulaw"}}"#);
    let (
        ClientEvent::SessionUpdate { session: off },
        ClientEvent::SessionUpdate { session: absent },
    ) = (off, absent)
    else {
        panic!("not session.update events");
    };
    assert_eq!(off.wire_audio(), Some(WireAudio::Pcmu));
    assert_eq!(off.server_vad(), Some(false));
    assert_eq!(absent.server_vad(), None);
}

#[test]
fn ga_partial_audio_update_is_a_known_gap() {
    // KNOWN GAP (see the report of the contract branch): the GA reference documents this
    // partial update, but `SessionAudio` requires both `input` and `output` and
    // `AudioInput` requires `format`, so the simulator cannot read it. The engine never
    // sends it. It must still fail cleanly, naming the event. If the types learn partial
    // updates, replace this with a test that it parses and changes nothing else.
    let e = parse_client_event(GA_SESSION_UPDATE_NOISE_REDUCTION_OFF)
        .expect_err("partial GA audio updates are not modelled");
    assert_eq!(e.event_type.as_deref(), Some("session.update"));
}

#[test]
fn session_settings_read_the_servers_session_objects() {
    // What session.created / session.updated carry is the server's full session object;
    // the settings type reads the audio format and turn detection out of it, GA and beta.
    for text in [GA_SESSION_CREATED, GA_SESSION_UPDATED] {
        let session = doc(text)["session"].clone();
        let settings: SessionSettings =
            serde_json::from_value(session).expect("the server's session object");
        assert_eq!(settings.wire_audio(), Some(WireAudio::Pcm24k));
        assert_eq!(settings.server_vad(), Some(true));
        let vad = settings
            .audio
            .as_ref()
            .and_then(|a| a.input.turn_detection.as_ref())
            .expect("turn detection");
        assert_eq!(vad.silence_duration_ms, Some(200));
        assert_eq!(
            settings.audio.and_then(|a| a.output.voice).as_deref(),
            Some("marin")
        );
    }
    let settings: SessionSettings =
        serde_json::from_value(doc(BETA_SESSION_CREATED)["session"].clone())
            .expect("the beta session object");
    assert_eq!(settings.wire_audio(), Some(WireAudio::Pcm24k));
    assert_eq!(settings.server_vad(), Some(true));
    assert_eq!(settings.input_audio_transcription, None);
}

// ── Client events: audio buffer, responses, items ───────────────────────────────────

#[test]
fn input_audio_buffer_events_match_the_documented_examples() {
    let append = ClientEvent::InputAudioAppend {
        audio: "Base64EncodedAudioData".into(),
    };
    assert_eq!(sent(&append), without(doc(GA_APPEND), &["/event_id"]));
    assert_eq!(
        sent(&ClientEvent::InputAudioCommit {}),
        without(doc(GA_COMMIT), &["/event_id"])
    );
    assert_eq!(
        sent(&ClientEvent::InputAudioClear {}),
        without(doc(GA_CLEAR), &["/event_id"])
    );
    // And the simulator reads the documented ones, event_id and all.
    assert_eq!(client(GA_APPEND), append);
    assert_eq!(client(GA_COMMIT), ClientEvent::InputAudioCommit {});
    assert_eq!(client(GA_CLEAR), ClientEvent::InputAudioClear {});
}

#[test]
fn appended_audio_is_padded_standard_base64() {
    // "Base64-encoded audio bytes" in the session's input format: standard alphabet, padded.
    let ulaw = [0xff_u8, 0x7f, 0x00, 0xfe, 0x3e];
    let event = ClientEvent::InputAudioAppend {
        audio: encode_audio(&ulaw),
    };
    assert_eq!(
        sent(&event),
        json!({"type": "input_audio_buffer.append", "audio": "/38A/j4="})
    );
    assert_eq!(decode_audio("/38A/j4=").expect("valid base64"), ulaw);
    assert!(
        decode_audio("Base64EncodedAudioData").is_err(),
        "22 characters is not padded base64"
    );
}

#[test]
fn response_create_matches_the_documented_example() {
    assert_eq!(
        sent(&ClientEvent::ResponseCreate {}),
        doc(GA_RESPONSE_CREATE)
    );
    assert_eq!(client(GA_RESPONSE_CREATE), ClientEvent::ResponseCreate {});
    // A beta client's response parameters are accepted (and not modelled).
    assert_eq!(client(BETA_RESPONSE_CREATE), ClientEvent::ResponseCreate {});
}

#[test]
fn response_cancel_with_and_without_response_id() {
    let with_id = ClientEvent::ResponseCancel {
        response_id: Some("resp_12345".into()),
    };
    let without_id = ClientEvent::ResponseCancel { response_id: None };
    assert_eq!(sent(&with_id), doc(GA_RESPONSE_CANCEL));
    assert_eq!(
        sent(&without_id),
        without(doc(BETA_RESPONSE_CANCEL), &["/event_id"])
    );
    // No `"response_id": null`: absent means "the current response".
    assert!(sent(&without_id).get("response_id").is_none());
    assert_eq!(client(GA_RESPONSE_CANCEL), with_id);
    assert_eq!(client(BETA_RESPONSE_CANCEL), without_id);
}

#[test]
fn item_truncate_matches_the_documented_example() {
    let truncate = ClientEvent::ItemTruncate {
        item_id: "item_002".into(),
        content_index: 0,
        audio_end_ms: 1500,
    };
    assert_eq!(
        sent(&truncate),
        without(doc(GA_ITEM_TRUNCATE), &["/event_id"])
    );
    assert_eq!(client(GA_ITEM_TRUNCATE), truncate);
}

#[test]
fn item_create_user_and_assistant_messages() {
    let user = ClientEvent::ItemCreate {
        item: MessageItem::user("hi"),
    };
    let assistant = ClientEvent::ItemCreate {
        item: MessageItem::assistant("Your table for two is booked.", Dialect::Ga),
    };
    assert_eq!(sent(&user), doc(GA_ITEM_CREATE_USER));
    assert_eq!(sent(&assistant), doc(GA_ITEM_CREATE_ASSISTANT));
    assert_eq!(client(GA_ITEM_CREATE_USER), user);
    assert_eq!(client(GA_ITEM_CREATE_ASSISTANT), assistant);

    // The beta example, with event_id, previous_item_id and a client-chosen item id.
    assert_eq!(
        client(BETA_ITEM_CREATE),
        ClientEvent::ItemCreate {
            item: MessageItem::user("Hello, how are you?")
        }
    );
    // Beta names the assistant's text part `text` ("Message items of role assistant
    // support text content"), and a beta session is sent exactly that.
    let beta_assistant = GA_ITEM_CREATE_ASSISTANT.replace("\"output_text\"", "\"text\"");
    let beta = ClientEvent::ItemCreate {
        item: MessageItem::assistant("Your table for two is booked.", Dialect::Beta),
    };
    assert_eq!(sent(&beta), doc(&beta_assistant));
    assert_eq!(client(&beta_assistant), beta);
    assert_eq!(
        serde_json::from_value::<ContentPart>(json!({"type": "text", "text": "ok"}))
            .expect("beta text part"),
        ContentPart::Text { text: "ok".into() }
    );
}

#[test]
fn every_client_event_round_trips() {
    let mut vad = request(WireAudio::Pcm24k, true);
    vad.transcription_model = Some("gpt-4o-transcribe".into());
    vad.language = Some("de".into());
    let events = [
        session_update(&request(WireAudio::Pcmu, false), Dialect::Ga),
        session_update(&vad, Dialect::Ga),
        session_update(&request(WireAudio::Pcmu, false), Dialect::Beta),
        session_update(&vad, Dialect::Beta),
        ClientEvent::InputAudioAppend {
            audio: encode_audio(&[0x7f; 160]),
        },
        ClientEvent::InputAudioCommit {},
        ClientEvent::InputAudioClear {},
        ClientEvent::ResponseCreate {},
        ClientEvent::ResponseCancel { response_id: None },
        ClientEvent::ResponseCancel {
            response_id: Some("resp_1".into()),
        },
        ClientEvent::ItemTruncate {
            item_id: "item_1".into(),
            content_index: 0,
            audio_end_ms: 2340,
        },
        ClientEvent::ItemCreate {
            item: MessageItem::user("two people, eight o'clock"),
        },
        ClientEvent::ItemCreate {
            item: MessageItem::assistant("Booked.", Dialect::Ga),
        },
        ClientEvent::ItemCreate {
            item: MessageItem::assistant("Booked.", Dialect::Beta),
        },
    ];
    for event in events {
        let text = serde_json::to_string(&event).expect("serialises");
        assert_eq!(client(&text), event, "{text}");
    }
}

// ── Server events we handle ──────────────────────────────────────────────────────────

#[test]
fn error_event() {
    assert_eq!(
        server(GA_ERROR),
        ServerEvent::Error {
            error: ErrorDetail {
                kind: "invalid_request_error".into(),
                code: Some("invalid_event".into()),
                message: "The 'type' field is missing.".into(),
                event_id: Some("event_567".into()),
            }
        }
    );
    // `code` and `event_id` are nullable in the reference.
    let ServerEvent::Error { error } = server(
        r#"{"type":"error","event_id":"e","error":{"type":"server_error","code":null,"message":"m","param":null,"event_id":null}}"#,
    ) else {
        panic!("not an error");
    };
    assert_eq!((error.code, error.event_id), (None, None));
}

#[test]
fn session_created_and_updated() {
    let ServerEvent::SessionCreated { session } = server(GA_SESSION_CREATED) else {
        panic!("not session.created");
    };
    assert_eq!(session["id"], "sess_C9G5QPteg4UIbotdKLoYQ");
    let ServerEvent::SessionCreated { session } = server(BETA_SESSION_CREATED) else {
        panic!("not session.created");
    };
    assert_eq!(session["id"], "sess_001");
    let ServerEvent::SessionUpdated { session } = server(GA_SESSION_UPDATED) else {
        panic!("not session.updated");
    };
    assert_eq!(session["id"], "sess_C9G8l3zp50uFv4qgxfJ8o");
    assert_eq!(session["audio"]["output"]["voice"], "marin");
}

#[test]
fn input_audio_buffer_events() {
    assert_eq!(
        server(GA_SPEECH_STARTED),
        ServerEvent::SpeechStarted {
            audio_start_ms: 1000,
            item_id: Some("msg_003".into())
        }
    );
    assert_eq!(
        server(GA_SPEECH_STOPPED),
        ServerEvent::SpeechStopped {
            audio_end_ms: 2000,
            item_id: Some("msg_003".into())
        }
    );
    assert_eq!(
        server(GA_COMMITTED),
        ServerEvent::InputCommitted {
            item_id: Some("msg_002".into())
        }
    );
}

#[test]
fn input_audio_transcription_completed() {
    assert_eq!(
        server(GA_TRANSCRIPTION_COMPLETED),
        ServerEvent::InputTranscript {
            item_id: Some("item_CCXGQ4e1ht4cOraEYcuR2".into()),
            transcript: "Hey, can you hear me?".into(),
        }
    );
    assert_eq!(
        server(BETA_TRANSCRIPTION_COMPLETED),
        ServerEvent::InputTranscript {
            item_id: Some("msg_003".into()),
            transcript: "Hello, how are you?".into(),
        }
    );
}

#[test]
fn response_created() {
    let expected = |id: &str| ServerEvent::ResponseCreated {
        response: ResponseInfo {
            id: id.into(),
            status: "in_progress".into(),
            status_details: None,
            usage: None,
        },
    };
    assert_eq!(
        server(GA_RESPONSE_CREATED),
        expected("resp_C9G8p7IH2WxLbkgPNouYL")
    );
    assert_eq!(server(BETA_RESPONSE_CREATED), expected("resp_001"));
}

#[test]
fn response_output_item_added() {
    assert_eq!(
        server(GA_OUTPUT_ITEM_ADDED),
        ServerEvent::OutputItemAdded {
            response_id: "resp_001".into(),
            item: ItemInfo {
                id: "msg_007".into(),
                kind: "message".into(),
                role: Some("assistant".into()),
            },
        }
    );
}

#[test]
fn audio_delta_ga_and_beta() {
    let expected = ServerEvent::AudioDelta {
        response_id: "resp_001".into(),
        item_id: "msg_008".into(),
        delta: "Base64EncodedAudioDelta".into(),
    };
    assert_eq!(server(GA_AUDIO_DELTA), expected);
    assert_eq!(server(BETA_AUDIO_DELTA), expected);
}

#[test]
fn audio_done_ga_and_beta() {
    let expected = ServerEvent::AudioDone {
        response_id: "resp_001".into(),
    };
    assert_eq!(server(GA_AUDIO_DONE), expected);
    assert_eq!(server(BETA_AUDIO_DONE), expected);
}

#[test]
fn audio_transcript_ga_and_beta() {
    let delta = ServerEvent::TranscriptDelta {
        response_id: "resp_001".into(),
        delta: "Hello, how can I a".into(),
    };
    assert_eq!(server(GA_TRANSCRIPT_DELTA), delta);
    assert_eq!(server(BETA_TRANSCRIPT_DELTA), delta);
    let done = ServerEvent::TranscriptDone {
        response_id: "resp_001".into(),
        transcript: "Hello, how can I assist you today?".into(),
    };
    assert_eq!(server(GA_TRANSCRIPT_DONE), done);
    assert_eq!(server(BETA_TRANSCRIPT_DONE), done);
}

#[test]
fn text_delta_ga_and_beta() {
    let expected = ServerEvent::TextDelta {
        response_id: "resp_001".into(),
        delta: "Sure, I can h".into(),
    };
    assert_eq!(server(GA_TEXT_DELTA), expected);
    assert_eq!(server(BETA_TEXT_DELTA), expected);
}

#[test]
fn response_done_completed_with_full_usage() {
    let ServerEvent::ResponseDone { response } = server(GA_RESPONSE_DONE) else {
        panic!("not response.done");
    };
    assert_eq!(response.id, "resp_CCXHw0UJld10EzIUXQCNh");
    assert_eq!(response.status, "completed");
    assert_eq!(response.status_details, None);
    assert_eq!(
        response.usage,
        Some(ResponseUsage {
            total_tokens: 253,
            input_tokens: 132,
            output_tokens: 121,
            input_token_details: InputTokenDetails {
                cached_tokens: 64,
                text_tokens: 119,
                audio_tokens: 13,
            },
            output_token_details: OutputTokenDetails {
                text_tokens: 30,
                audio_tokens: 91,
            },
        })
    );

    let ServerEvent::ResponseDone { response } = server(BETA_RESPONSE_DONE) else {
        panic!("not response.done");
    };
    assert_eq!(
        (response.id.as_str(), response.status.as_str()),
        ("resp_001", "completed")
    );
    assert_eq!(
        response.usage,
        Some(ResponseUsage {
            total_tokens: 275,
            input_tokens: 127,
            output_tokens: 148,
            input_token_details: InputTokenDetails {
                cached_tokens: 384,
                text_tokens: 119,
                audio_tokens: 8,
            },
            output_token_details: OutputTokenDetails {
                text_tokens: 36,
                audio_tokens: 112,
            },
        })
    );

    // Usage with the totals only (the token details are optional in the reference) reads
    // as zero details rather than failing.
    let ServerEvent::ResponseDone { response } = server(
        r#"{"type":"response.done","response":{"id":"r","status":"completed","usage":{"input_tokens":132,"output_tokens":121}}}"#,
    ) else {
        panic!("not response.done");
    };
    let usage = response.usage.expect("usage");
    assert_eq!((usage.input_tokens, usage.output_tokens), (132, 121));
    assert_eq!(usage.input_token_details, InputTokenDetails::default());
}

#[test]
fn response_done_cancelled() {
    let ServerEvent::ResponseDone { response } = server(GA_RESPONSE_DONE_CANCELLED) else {
        panic!("not response.done");
    };
    assert_eq!(response.id, "resp_cancel_1");
    assert_eq!(response.status, "cancelled");
    assert_eq!(
        response.status_details,
        Some(StatusDetails {
            kind: Some("cancelled".into()),
            reason: Some("turn_detected".into()),
            error: None,
        })
    );
    assert_eq!(
        response.usage.map(|u| u.output_token_details.audio_tokens),
        Some(6)
    );

    // `client_cancelled`, with `error: null` (the SDKs type it optional and nullable).
    let text = GA_RESPONSE_DONE_CANCELLED.replace(
        r#""reason": "turn_detected""#,
        r#""reason": "client_cancelled", "error": null"#,
    );
    let ServerEvent::ResponseDone { response } = server(&text) else {
        panic!("not response.done");
    };
    let details = response.status_details.expect("status details");
    assert_eq!(details.reason.as_deref(), Some("client_cancelled"));
    assert_eq!(details.error, None);
}

#[test]
fn response_done_failed() {
    let ServerEvent::ResponseDone { response } = server(GA_RESPONSE_DONE_FAILED) else {
        panic!("not response.done");
    };
    assert_eq!(response.status, "failed");
    assert_eq!(response.usage, None);
    let details = response.status_details.expect("status details");
    assert_eq!(details.kind.as_deref(), Some("failed"));
    assert_eq!(details.reason, None);
    let error = details.error.expect("the error of a failed response");
    assert_eq!(error.kind, "server_error");
    assert_eq!(error.code.as_deref(), Some("server_error"));
    assert_eq!(
        error.message, "",
        "the reference's status error has no message"
    );
}

#[test]
fn rate_limits_updated() {
    assert_eq!(
        server(GA_RATE_LIMITS),
        ServerEvent::RateLimitsUpdated {
            rate_limits: vec![
                RateLimit {
                    name: "requests".into(),
                    limit: 1000,
                    remaining: 999,
                    reset_seconds: 60.0,
                },
                RateLimit {
                    name: "tokens".into(),
                    limit: 50000,
                    remaining: 49950,
                    reset_seconds: 60.0,
                },
            ]
        }
    );
}

#[test]
fn conversation_item_truncated() {
    assert_eq!(
        server(GA_ITEM_TRUNCATED),
        ServerEvent::ItemTruncated {
            item_id: "msg_004".into(),
            audio_end_ms: 1500,
        }
    );
}

#[test]
fn events_we_do_not_act_on_parse_as_unknown() {
    for text in [
        GA_ITEM_ADDED,
        GA_CONTENT_PART_ADDED,
        BETA_OUTPUT_AUDIO_BUFFER_STARTED,
        r#"{"event_id":"event_1314","type":"input_audio_buffer.cleared"}"#,
        r#"{"type":"a.type.that.does.not.exist.yet","payload":{"nested":[1,2,3]}}"#,
    ] {
        assert_eq!(server(text), ServerEvent::Unknown, "{text}");
    }
}

// ── Malformed input ──────────────────────────────────────────────────────────────────

#[test]
fn malformed_server_input_is_a_parse_error_naming_the_type() {
    // No type to name.
    for text in [
        "",
        "not json",
        "{",
        "[]",
        "42",
        "null",
        r#"{"delta":"AAAA"}"#,
        r#"{"type":7}"#,
        r#"{"type":null}"#,
        r#"{"type":"response.output_audio.delta","delta":"AA"#,
    ] {
        let e = parse_server_event(text).expect_err(text);
        assert_eq!(e.event_type, None, "{text}");
        assert!(
            e.to_string().starts_with("unparseable realtime event"),
            "{e}"
        );
    }
    // A known type with the wrong field types, or a required field missing.
    for (text, kind) in [
        (
            r#"{"type":"response.output_audio.delta","response_id":"r","delta":123}"#,
            "response.output_audio.delta",
        ),
        (
            r#"{"type":"response.audio.delta","delta":["A"]}"#,
            "response.audio.delta",
        ),
        (
            r#"{"type":"response.output_audio.delta"}"#,
            "response.output_audio.delta",
        ),
        (r#"{"type":"error","error":"boom"}"#, "error"),
        (
            r#"{"type":"response.done","response":{"id":"r","usage":{"total_tokens":"many"}}}"#,
            "response.done",
        ),
        (
            r#"{"type":"response.done","response":{"status":"completed"}}"#,
            "response.done",
        ),
        (
            r#"{"type":"rate_limits.updated","rate_limits":{"name":"tokens"}}"#,
            "rate_limits.updated",
        ),
        (
            r#"{"type":"conversation.item.truncated","item_id":"i","audio_end_ms":-5}"#,
            "conversation.item.truncated",
        ),
        (
            r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":1.5}"#,
            "input_audio_buffer.speech_started",
        ),
        (
            r#"{"type":"response.output_audio_transcript.delta","delta":"\ud800"}"#,
            "response.output_audio_transcript.delta",
        ),
    ] {
        let e = parse_server_event(text).expect_err(text);
        assert_eq!(e.event_type.as_deref(), Some(kind), "{text}");
        assert!(e.to_string().contains(&format!("{kind:?}")), "{e}");
    }
}

#[test]
fn malformed_client_input_is_a_parse_error_naming_the_type() {
    for (text, kind) in [
        ("not json", None),
        (r#"{"audio":"AAAA"}"#, None),
        (
            r#"{"type":"input_audio_buffer.append"}"#,
            Some("input_audio_buffer.append"),
        ),
        (
            r#"{"type":"input_audio_buffer.append","audio":5}"#,
            Some("input_audio_buffer.append"),
        ),
        (
            r#"{"type":"conversation.item.truncate","item_id":"i","content_index":0,"audio_end_ms":"late"}"#,
            Some("conversation.item.truncate"),
        ),
        (
            r#"{"type":"session.update","session":{"turn_detection":"off"}}"#,
            Some("session.update"),
        ),
        (
            r#"{"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/opus"}},"output":{"format":{"type":"audio/pcmu"}}}}}"#,
            Some("session.update"),
        ),
        // Client events have no catch-all: an unknown type is an error, named.
        (
            r#"{"type":"output_audio_buffer.clear"}"#,
            Some("output_audio_buffer.clear"),
        ),
    ] {
        let e = parse_client_event(text).expect_err(text);
        assert_eq!(e.event_type.as_deref(), kind, "{text}");
    }
}

#[test]
fn enormous_input_never_panics() {
    let big = "A".repeat(8 << 20);

    // An enormous but well-formed delta is just a delta.
    let text =
        format!(r#"{{"type":"response.output_audio.delta","response_id":"r","delta":"{big}"}}"#);
    let ServerEvent::AudioDelta { delta, .. } = server(&text) else {
        panic!("not an audio delta");
    };
    assert_eq!(delta.len(), big.len());

    // An enormous string where a number belongs.
    let text =
        format!(r#"{{"type":"input_audio_buffer.speech_started","audio_start_ms":"{big}"}}"#);
    let e = parse_server_event(&text).expect_err("a string is not a number");
    assert_eq!(
        e.event_type.as_deref(),
        Some("input_audio_buffer.speech_started")
    );
    // Its message (what logs and error events carry) does not echo megabytes back.
    let shown = e.to_string();
    assert!(shown.len() < 400, "{} bytes of error message", shown.len());
    assert!(shown.contains("input_audio_buffer.speech_started"));

    // Cut off in the middle of an enormous string: not JSON, so no type to name.
    let text = format!(r#"{{"type":"response.output_audio.delta","delta":"{big}"#);
    assert_eq!(
        parse_server_event(&text).expect_err("truncated").event_type,
        None
    );

    // An enormous unknown type parses as Unknown from the server; from a client it is an
    // error whose name is clipped (80 characters) rather than echoed whole.
    let text = format!(r#"{{"type":"{big}"}}"#);
    assert_eq!(server(&text), ServerEvent::Unknown);
    let e = parse_client_event(&text).expect_err("unknown client event");
    assert_eq!(e.event_type.as_deref(), Some(&big[..80]));

    // Nesting deeper than serde_json's recursion limit is an error, not a stack overflow,
    // and the type is still named.
    let deep = format!(
        r#"{{"type":"session.created","session":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = parse_server_event(&deep).expect_err("too deep");
    assert_eq!(e.event_type.as_deref(), Some("session.created"));
}

// ── Round trip: what the simulator sends reads back as sent ───────────────────────────

/// The GA wire name of each variant. The match is exhaustive on purpose: a new variant does
/// not compile until it is named here, and the round-trip test checks each is covered.
fn ga_name(event: &ServerEvent) -> &'static str {
    match event {
        ServerEvent::Error { .. } => "error",
        ServerEvent::SessionCreated { .. } => "session.created",
        ServerEvent::SessionUpdated { .. } => "session.updated",
        ServerEvent::SpeechStarted { .. } => "input_audio_buffer.speech_started",
        ServerEvent::SpeechStopped { .. } => "input_audio_buffer.speech_stopped",
        ServerEvent::InputCommitted { .. } => "input_audio_buffer.committed",
        ServerEvent::InputTranscript { .. } => {
            "conversation.item.input_audio_transcription.completed"
        }
        ServerEvent::ResponseCreated { .. } => "response.created",
        ServerEvent::OutputItemAdded { .. } => "response.output_item.added",
        ServerEvent::AudioDelta { .. } => "response.output_audio.delta",
        ServerEvent::AudioDone { .. } => "response.output_audio.done",
        ServerEvent::TranscriptDelta { .. } => "response.output_audio_transcript.delta",
        ServerEvent::TranscriptDone { .. } => "response.output_audio_transcript.done",
        ServerEvent::TextDelta { .. } => "response.output_text.delta",
        ServerEvent::ResponseDone { .. } => "response.done",
        ServerEvent::RateLimitsUpdated { .. } => "rate_limits.updated",
        ServerEvent::ItemTruncated { .. } => "conversation.item.truncated",
        ServerEvent::Unknown => "",
    }
}

/// The beta wire name where it differs (from the beta server-events pages).
fn beta_name(ga: &str) -> Option<&'static str> {
    match ga {
        "response.output_audio.delta" => Some("response.audio.delta"),
        "response.output_audio.done" => Some("response.audio.done"),
        "response.output_audio_transcript.delta" => Some("response.audio_transcript.delta"),
        "response.output_audio_transcript.done" => Some("response.audio_transcript.done"),
        "response.output_text.delta" => Some("response.text.delta"),
        _ => None,
    }
}

/// One of each event the simulator sends, in the shapes it sends them.
fn sim_events() -> Vec<ServerEvent> {
    let usage = ResponseUsage {
        total_tokens: 191,
        input_tokens: 60,
        output_tokens: 131,
        input_token_details: InputTokenDetails {
            cached_tokens: 0,
            text_tokens: 35,
            audio_tokens: 25,
        },
        output_token_details: OutputTokenDetails {
            text_tokens: 6,
            audio_tokens: 125,
        },
    };
    let settings = request(WireAudio::Pcmu, true).settings(Dialect::Ga);
    let mut session = serde_json::to_value(settings).expect("settings serialise");
    session["id"] = "sess_sim1".into();
    session["object"] = "realtime.session".into();
    vec![
        ServerEvent::SessionCreated {
            session: session.clone(),
        },
        ServerEvent::SessionUpdated {
            session: serde_json::to_value(
                request(WireAudio::Pcm24k, false).settings(Dialect::Beta),
            )
            .expect("settings serialise"),
        },
        ServerEvent::SpeechStarted {
            audio_start_ms: 1220,
            item_id: Some("item_sim1_1".into()),
        },
        ServerEvent::SpeechStopped {
            audio_end_ms: 2870,
            item_id: None,
        },
        ServerEvent::InputCommitted {
            item_id: Some("item_sim1_1".into()),
        },
        ServerEvent::InputTranscript {
            item_id: Some("item_sim1_1".into()),
            transcript: "heard 1.6 s".into(),
        },
        ServerEvent::ResponseCreated {
            response: ResponseInfo {
                id: "resp_sim1_2".into(),
                status: "in_progress".into(),
                ..ResponseInfo::default()
            },
        },
        ServerEvent::OutputItemAdded {
            response_id: "resp_sim1_2".into(),
            item: ItemInfo {
                id: "item_sim1_3".into(),
                kind: "message".into(),
                role: Some("assistant".into()),
            },
        },
        ServerEvent::TranscriptDelta {
            response_id: "resp_sim1_2".into(),
            delta: "Hello there, ".into(),
        },
        ServerEvent::AudioDelta {
            response_id: "resp_sim1_2".into(),
            item_id: "item_sim1_3".into(),
            delta: encode_audio(&[0xff; 800]),
        },
        ServerEvent::TextDelta {
            response_id: "resp_sim1_2".into(),
            delta: "Hello".into(),
        },
        ServerEvent::AudioDone {
            response_id: "resp_sim1_2".into(),
        },
        ServerEvent::TranscriptDone {
            response_id: "resp_sim1_2".into(),
            transcript: "Hello there, how can I help?".into(),
        },
        ServerEvent::ResponseDone {
            response: ResponseInfo {
                id: "resp_sim1_2".into(),
                status: "completed".into(),
                status_details: None,
                usage: Some(usage),
            },
        },
        ServerEvent::ResponseDone {
            response: ResponseInfo {
                id: "resp_sim1_4".into(),
                status: "cancelled".into(),
                status_details: Some(StatusDetails {
                    kind: Some("cancelled".into()),
                    reason: Some("client_cancelled".into()),
                    error: None,
                }),
                usage: Some(usage),
            },
        },
        ServerEvent::ResponseDone {
            response: ResponseInfo {
                id: "resp_sim1_5".into(),
                status: "failed".into(),
                status_details: Some(StatusDetails {
                    kind: Some("failed".into()),
                    reason: None,
                    error: Some(ErrorDetail {
                        kind: "rate_limit_exceeded".into(),
                        code: Some("rate_limit_exceeded".into()),
                        message: "Rate limit reached for requests.".into(),
                        event_id: None,
                    }),
                }),
                usage: Some(ResponseUsage::default()),
            },
        },
        ServerEvent::Error {
            error: ErrorDetail {
                kind: "invalid_request_error".into(),
                code: Some("input_audio_buffer_commit_empty".into()),
                message: "Error committing input audio buffer: buffer too small.".into(),
                event_id: Some("event_42".into()),
            },
        },
        ServerEvent::Error {
            error: ErrorDetail {
                kind: "server_error".into(),
                code: None,
                message: "The server had an error while processing your request.".into(),
                event_id: None,
            },
        },
        ServerEvent::RateLimitsUpdated {
            rate_limits: vec![
                RateLimit {
                    name: "requests".into(),
                    limit: 5000,
                    remaining: 4999,
                    reset_seconds: 0.012,
                },
                RateLimit {
                    name: "tokens".into(),
                    limit: 40_000,
                    remaining: 39_809,
                    reset_seconds: 191.0 * 60.0 / 40_000.0,
                },
            ],
        },
        ServerEvent::ItemTruncated {
            item_id: "item_sim1_3".into(),
            audio_end_ms: 740,
        },
    ]
}

#[test]
fn every_server_event_round_trips() {
    let events = sim_events();
    let mut covered = BTreeSet::new();
    for event in &events {
        let mut value = serde_json::to_value(event).expect("server events serialise");
        let ga = ga_name(event);
        // The simulator serialises the GA name (the beta names are aliases only).
        assert_eq!(value["type"], ga, "{value}");
        covered.insert(ga);

        let text = value.to_string();
        assert_eq!(&server(&text), event, "{text}");

        // As the simulator sends it: with an event_id, and in a beta session renamed.
        value["event_id"] = "event_sim1_1".into();
        assert_eq!(&server(&value.to_string()), event);
        if let Some(beta) = beta_name(ga) {
            value["type"] = beta.into();
            assert_eq!(&server(&value.to_string()), event, "{beta}");
        }
    }
    // Every variant but Unknown (which nothing sends) is covered.
    let all = BTreeSet::from([
        "error",
        "session.created",
        "session.updated",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.output_text.delta",
        "response.done",
        "rate_limits.updated",
        "conversation.item.truncated",
    ]);
    assert_eq!(covered, all);
}

#[test]
fn session_settings_round_trip_in_both_dialects() {
    // The simulator reads back what the engine sends, turn detection's absent/null/set
    // distinction included.
    let mut vad = request(WireAudio::Pcm24k, true);
    vad.transcription_model = Some("whisper-1".into());
    for req in [request(WireAudio::Pcmu, false), vad] {
        for dialect in [Dialect::Ga, Dialect::Beta] {
            let settings = req.settings(dialect);
            let text = serde_json::to_string(&settings).expect("serialises");
            let back: SessionSettings = serde_json::from_str(&text).expect("parses back");
            assert_eq!(back, settings, "{text}");
            assert_eq!(back.wire_audio(), Some(req.audio), "{text}");
            assert_eq!(back.server_vad(), Some(req.server_vad), "{text}");
        }
    }
    assert_eq!(
        SessionSettings::default().turn_detection,
        BetaTurnDetection::Absent
    );
    let semantic: TurnDetection =
        serde_json::from_value(json!({"type": "semantic_vad", "eagerness": "auto"}))
            .expect("semantic VAD settings read too");
    assert_eq!(semantic.kind, "semantic_vad");
}
