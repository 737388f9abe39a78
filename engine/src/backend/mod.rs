//! Conversation backends. The `Session` trait shared with the provider backend arrives
//! with the provider issue; today only the local pipeline's parts exist.

pub mod local;
