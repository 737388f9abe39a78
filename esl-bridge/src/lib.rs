//! # esl-bridge
//!
//! Everything that speaks FreeSWITCH, and nothing about AI:
//!
//! * a sans-IO codec for the Event Socket protocol ([`frame`], [`message`], [`event`],
//!   [`command`], [`codec`]), checked against byte-exact traces of FreeSWITCH 1.10.12;
//! * an async [`inbound`] client (we connect to `mod_event_socket`);
//! * an async [`outbound`] server (the dialplan's `socket` app connects to us) with a
//!   per-channel [`outbound::Call`] handle;
//! * the [`media`] leg: raw L16 audio over UDP with FreeSWITCH's `unicast`.
//!
//! The protocol facts this crate relies on are the ones observed on the wire, listed in
//! the fixtures' README; see `docs/decisions/0001-esl-library.md` for why the codec is ours.

#![warn(missing_docs)]

pub mod codec;
pub mod command;
pub mod connection;
pub mod event;
pub mod frame;
pub mod inbound;
pub mod media;
pub mod message;
pub mod outbound;
pub mod reconnect;
pub mod urlcode;

pub use codec::EslCodec;
pub use command::{Command, SendMsg, UnicastParams};
pub use event::{Event, EventFormat};
pub use message::Message;
