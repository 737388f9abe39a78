//! Audio basics: codecs and sans-IO speech detection, independent of sockets and models.

pub mod endpointer;
pub mod g711;
pub mod resample;
pub mod silero;
pub mod vad;
pub mod wav;
